"""Training across devices and processes, each run in its own process with a timeout.

A cheap stand-in network with the paper's layer names keeps these runs to seconds; the real
network is trained by tests/test_train.py. This file is also the script the tests start:

    python tests/test_train_distributed.py MODE DATA_DIR WORKDIR '{"train_steps": 2, ...}'
"""

import json
import os
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TIMEOUT = 240
SMALL = {"batch_size": 4, "train_steps": 2, "eval_every_steps": 0, "log_every_steps": 1,
         "init": "he", "input_scale": 1 / 64, "shuffle_buffer": 16}  # fmt: skip


def tiny_alexnet(num_classes, devices=None, *, init="he", dropout_rate=0.5, seed=None, **_):
    """conv1_a / conv1_b (one per tower, on `devices`) → concat → dropout → fc8 → softmax."""
    import keras

    from alexnet_tf.model.layers import (
        PlacedConcatenate,
        PlacedConv2D,
        PlacedDense,
        PlacedDropout,
        PlacedFlatten,
    )

    tiny_alexnet.devices = devices
    place = dict(zip("ab", devices or (None, None)))
    images = keras.Input((227, 227, 3), name="images")
    towers = [
        PlacedConv2D(4, 11, strides=16, activation="relu", device=place[t], name=f"conv1_{t}",
                     kernel_initializer=keras.initializers.HeNormal(seed))(images)
        for t in "ab"
    ]  # fmt: skip
    x = PlacedFlatten(name="flatten")(PlacedConcatenate(name="concat")(towers))
    x = PlacedDropout(dropout_rate, name="drop7")(x)
    logits = PlacedDense(num_classes, name="fc8",
                         kernel_initializer=keras.initializers.HeNormal(seed))(x)  # fmt: skip
    tiny_alexnet.model = keras.Model(images, keras.layers.Softmax(name="predictions")(logits))
    return tiny_alexnet.model


def _run_helper(mode, data_dir, workdir, config, env=None, wait=True):
    args = [sys.executable, os.path.abspath(__file__), mode, data_dir, str(workdir)]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", **(env or {})}
    process = subprocess.Popen(
        [*args, json.dumps(config)], cwd=REPO, env=env, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    if not wait:
        return process
    out, _ = process.communicate(timeout=TIMEOUT)
    return process.returncode, out


def _results(out):
    return [
        json.loads(line[len("RESULT ") :])
        for line in out.splitlines()
        if line.startswith("RESULT ")
    ]


def test_mirrored_on_two_cpus_and_two_towers(tools_data_dir, tmp_path):
    rc, out = _run_helper("two_cpus", tools_data_dir, tmp_path, SMALL)
    assert rc == 0, out
    prefetch, bad_batch, mirrored, towers = _results(out)
    assert [d[-5:] for d in prefetch["devices"]] == ["CPU:0", "CPU:1"]
    assert prefetch["part_devices"] == prefetch["devices"] and prefetch["equal"]
    assert "--batch_size=3" in bad_batch["error"] and "2 replicas" in bad_batch["error"]
    assert mirrored["replicas"] == 2 and mirrored["step"] == 2 and np.isfinite(mirrored["loss"])
    assert os.path.exists(tmp_path / "mirrored" / "checkpoints" / "ckpt-2.index")
    assert towers["devices"] == ["/device:CPU:0", "/device:CPU:1"]
    assert towers["kernel_devices"]["conv1_b"].endswith("CPU:1")
    assert towers["step"] == 2


def test_xla_train(tools_data_dir, tmp_path):
    # Half precision trains the real network in tests/test_mixed_precision.py.
    rc, out = _run_helper("options", tools_data_dir, tmp_path, SMALL)
    assert rc == 0, out
    results = {r["run"]: r for r in _results(out)}
    assert sorted(results) == ["xla"]
    assert results["xla"]["step"] == 2 and np.isfinite(results["xla"]["loss"])
    assert results["xla"]["compute_dtype"] == "float32"


def _free_ports(n):
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def _run_two_workers(data_dir, workdir, config):
    """Trains with --strategy=multi_worker in two local processes; returns their outputs."""
    workers = [f"127.0.0.1:{port}" for port in _free_ports(2)]
    config = {**config, "strategy": "multi_worker", "deterministic": True}
    processes = []
    for index in range(2):
        tf_config = {"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}}
        env = {"TF_CONFIG": json.dumps(tf_config)}
        processes.append(_run_helper("default", data_dir, workdir, config, env, False))
    try:
        outputs = [p.communicate(timeout=TIMEOUT)[0] for p in processes]
    finally:
        for p in processes:
            p.kill()
    for p, out in zip(processes, outputs, strict=True):
        assert p.returncode == 0, out
    return outputs


def test_multi_worker_with_two_local_processes(tools_data_dir, tmp_path):
    outputs = _run_two_workers(tools_data_dir, tmp_path, SMALL)
    chief, worker = (_results(out)[0] for out in outputs)
    assert chief["replicas"] == worker["replicas"] == 2
    assert chief["step"] == worker["step"] == 2
    assert chief["loss"] == pytest.approx(worker["loss"])  # one model, the global batch's loss
    assert os.path.exists(tmp_path / "checkpoints" / "ckpt-2.index")
    assert not [d for d in os.listdir(tmp_path) if d.startswith("tmp-worker")]


def test_multi_worker_resume_gives_each_worker_its_own_input_back(tools_data_dir, tmp_path):
    # Each worker reads its own records: a resumed worker must continue its own stream, not
    # the chief's (which is what the chief's checkpoint holds).
    config = {**SMALL, "checkpoint_every_steps": 2, "keep_checkpoints": 2, "seed": 3}
    _run_two_workers(tools_data_dir, tmp_path / "whole", {**config, "train_steps": 6})
    _run_two_workers(tools_data_dir, tmp_path / "resumed", {**config, "train_steps": 4})
    outputs = _run_two_workers(tools_data_dir, tmp_path / "resumed", {**config, "train_steps": 6})
    assert all("Resumed from" in out and "ckpt-4" in out for out in outputs), outputs
    assert sorted(os.listdir(tmp_path / "resumed" / "input-worker-1")) == [
        "checkpoint",
        *(f"ckpt-{n}.{ext}" for n in (4, 6) for ext in ("data-00000-of-00001", "index")),
    ]  # worker 1's own input positions, pruned like the checkpoints
    expected = _state(str(tmp_path / "whole" / "checkpoints" / "ckpt-6"))
    resumed = _state(str(tmp_path / "resumed" / "checkpoints" / "ckpt-6"))
    assert expected.keys() == resumed.keys() and len(expected) > 4
    for key, value in expected.items():  # all-reduce order may differ by round-off
        np.testing.assert_allclose(resumed[key], value, rtol=1e-5, atol=1e-6, err_msg=key)


def test_worker_ids_count_the_chief_first():
    import types

    import tensorflow as tf

    from alexnet_tf.training import distribution

    spec = tf.train.ClusterSpec({"chief": ["a:1"], "worker": ["b:1", "c:1"]})
    tasks = [("chief", 0), ("worker", 0), ("worker", 1)]
    strategies = [
        types.SimpleNamespace(
            cluster_resolver=tf.distribute.cluster_resolver.SimpleClusterResolver(
                spec, task_type=task, task_id=index
            )
        )
        for task, index in tasks
    ]
    assert [distribution.worker_id(s) for s in strategies] == [0, 1, 2]
    assert [distribution.num_workers(s) for s in strategies] == [3, 3, 3]
    assert [distribution.is_chief(s) for s in strategies] == [True, False, False]


def _state(prefix):
    import tensorflow as tf

    reader = tf.train.load_checkpoint(prefix)
    keys = [k for k in reader.get_variable_to_shape_map() if k.startswith(("model/", "optimizer/"))]
    return {k: reader.get_tensor(k) for k in keys}


def test_killed_and_resumed_run_equals_uninterrupted(tools_data_dir, tmp_path):
    config = {**SMALL, "train_steps": 60, "checkpoint_every_steps": 5, "log_every_steps": 100,
              "deterministic": True, "seed": 7, "keep_checkpoints": 2}  # fmt: skip
    whole, broken = tmp_path / "whole", tmp_path / "broken"
    rc, out = _run_helper("default", tools_data_dir, whole, config)
    assert rc == 0, out

    process = _run_helper("default", tools_data_dir, broken, config, wait=False)
    state_file = broken / "checkpoints" / "checkpoint"
    deadline = time.time() + TIMEOUT
    while not state_file.exists() and process.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    os.kill(process.pid, signal.SIGKILL)
    process.communicate(timeout=TIMEOUT)
    assert process.returncode == -signal.SIGKILL, "training ended before it could be killed"
    import tensorflow as tf

    killed_at = tf.train.latest_checkpoint(str(broken / "checkpoints"))
    assert killed_at is not None and not killed_at.endswith("ckpt-60")

    # Resumed without the device prefetch: the batches the killed run had copied ahead come
    # from the checkpoint, so the stream (and every weight) is the uninterrupted run's.
    rc, out = _run_helper("default", tools_data_dir, broken, {**config, "prefetch_to_device": 0})
    assert rc == 0, out
    assert f"Resumed from {killed_at}" in out
    expected, resumed = (
        _state(str(whole / "checkpoints" / "ckpt-60")),
        _state(str(broken / "checkpoints" / "ckpt-60")),
    )
    assert expected.keys() == resumed.keys() and len(expected) > 4
    for key, value in expected.items():
        np.testing.assert_array_equal(resumed[key], value, err_msg=key)


def _main(mode, data_dir, workdir, config_json):
    import tensorflow as tf

    if mode == "two_cpus":
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * 2
        )
    from absl import logging

    from alexnet_tf.training import loop as training

    logging.set_verbosity(logging.INFO)
    if mode == "two_cpus":  # each replica's half of a batch is copied to the replica's device
        from alexnet_tf.data import input_pipeline
        from alexnet_tf.data.manifest import load_manifest
        from alexnet_tf.training import distribution
        from alexnet_tf.training.device_prefetch import DevicePrefetcher

        devices = distribution.input_devices(distribution.make_strategy("mirrored"))

        def dataset():  # a new one each time: the same stream
            files = load_manifest(data_dir).split("train").files
            return input_pipeline.make_train_dataset(files, 4, seed=1, deterministic=True)

        parts = next(DevicePrefetcher(iter(dataset()), devices, depth=1))
        joined = tf.concat([images for images, _ in parts], 0)
        print("RESULT", json.dumps({
            "devices": devices, "part_devices": [images.device for images, _ in parts],
            "equal": bool(tf.reduce_all(joined == next(iter(dataset()))[0])),
        }), flush=True)  # fmt: skip
    logging.use_absl_handler()
    config = json.loads(config_json)
    runs = {
        "default": [("", {})],
        # The accelerator option runs on the CPU too (slowly), so it is tested here.
        "options": [
            ("xla", {"xla": True}),
        ],
    }.get(mode) or [
        ("bad_batch", {"strategy": "mirrored", "batch_size": 3}),
        ("mirrored", {"strategy": "mirrored"}),
        ("towers", {"placement": "two_towers"}),
    ]
    for name, extra in runs:
        cfg = training.TrainConfig(data_dir=data_dir, workdir=os.path.join(workdir, name),
                                   **{**config, **extra})  # fmt: skip
        try:
            result = training.train(cfg, build_model=tiny_alexnet)
        except training.ConfigError as e:
            print("RESULT", json.dumps({"error": str(e)}), flush=True)
            continue
        print("RESULT", json.dumps({
            "step": result.step, "loss": result.loss,
            "replicas": result.replicas, "run": name,
            "compute_dtype": tiny_alexnet.model.get_layer("fc8").compute_dtype,
            "variable_dtype": tiny_alexnet.model.get_layer("fc8").kernel.dtype,
            "devices": list(tiny_alexnet.devices or []),
            "kernel_devices": {t: tiny_alexnet.model.get_layer(t).kernel.value.device
                               for t in ("conv1_a", "conv1_b")},
        }), flush=True)  # fmt: skip


if __name__ == "__main__":
    sys.path.insert(0, REPO)
    _main(*sys.argv[1:])
