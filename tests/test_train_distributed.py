"""Training across devices and processes: mirrored replicas, two towers, several workers, a kill.

The stand-in network of tests/tiny_runs.py (the paper's layer names, milliseconds a step) keeps
these runs short; the real network is trained by tests/test_train.py. The session has two
logical CPU devices (tests/conftest.py), so replicas and towers run in-process; several workers
and a kill need processes.
"""

import dataclasses
import logging
import os
import signal

import background
import numpy as np
import pytest
import tensorflow as tf
import tiny_runs
from tiny_runs import SMALL, TIMEOUT, assert_same_weights, tiny_alexnet

from alexnet_tf.training import loop as training


def _train(data_dir, workdir, **changes):
    config = training.TrainConfig(data_dir=data_dir, workdir=str(workdir), **{**SMALL, **changes})
    return training.train(config, build_model=tiny_alexnet)


def test_device_prefetch_splits_each_batch_over_the_two_replicas(tools_data_dir):
    from alexnet_tf.data import input_pipeline
    from alexnet_tf.data.manifest import load_manifest
    from alexnet_tf.training import distribution
    from alexnet_tf.training.device_prefetch import DevicePrefetcher

    devices = distribution.input_devices(distribution.make_strategy("mirrored"))
    assert [d[-5:] for d in devices] == ["CPU:0", "CPU:1"]

    def dataset():  # a new one each time: the same stream
        files = load_manifest(tools_data_dir).split("train").files
        return input_pipeline.make_train_dataset(files, 4, seed=1, deterministic=True)

    parts = next(DevicePrefetcher(iter(dataset()), devices, depth=1))
    assert [images.device for images, _ in parts] == devices
    joined = tf.concat([images for images, _ in parts], 0)
    np.testing.assert_array_equal(joined, next(iter(dataset()))[0])


def test_mirrored_on_two_cpus_and_two_towers(tools_data_dir, tmp_path):
    with pytest.raises(training.ConfigError) as error:
        _train(tools_data_dir, tmp_path / "bad", strategy="mirrored", batch_size=3)
    assert "--batch_size=3" in str(error.value) and "2 replicas" in str(error.value)

    mirrored = _train(tools_data_dir, tmp_path / "mirrored", strategy="mirrored")
    assert mirrored.replicas == 2 and mirrored.step == 2 and np.isfinite(mirrored.loss)
    assert os.path.exists(tmp_path / "mirrored" / "checkpoints" / "ckpt-2.index")

    towers = _train(tools_data_dir, tmp_path / "towers", placement="two_towers")
    assert tiny_alexnet.devices == ("/device:CPU:0", "/device:CPU:1")
    assert tiny_alexnet.model.get_layer("conv1_a").kernel.value.device.endswith("CPU:0")
    assert tiny_alexnet.model.get_layer("conv1_b").kernel.value.device.endswith("CPU:1")
    assert towers.step == 2


@pytest.mark.parametrize(
    "options, compute_dtype",
    [({"xla": True}, "float32"), ({"mixed_precision": "float16"}, "float16"),
     ({"mixed_precision": "bfloat16"}, "bfloat16")],
    ids=["xla", "float16", "bfloat16"],
)  # fmt: skip
def test_xla_and_mixed_precision_train(tools_data_dir, tmp_path, options, compute_dtype):
    """The accelerator options run on the CPU too (slowly), so they are tested here."""
    import keras

    result = _train(tools_data_dir, tmp_path, **options)
    assert result.step == 2 and np.isfinite(result.loss)
    fc8 = tiny_alexnet.model.get_layer("fc8")
    assert fc8.compute_dtype == compute_dtype
    assert fc8.kernel.dtype == "float32"  # the weights stay float32
    assert keras.mixed_precision.global_policy().name == "float32"  # put back after the build


def test_multi_worker_with_two_local_processes(two_workers):
    chief, worker = (tiny_runs.results(out)[-1] for out in two_workers["outputs"])
    assert chief["replicas"] == worker["replicas"] == 2
    assert chief["step"] == worker["step"] == 30
    assert chief["loss"] == pytest.approx(worker["loss"])  # one model, the global batch's loss
    assert os.path.exists(two_workers["checkpoint"] + ".index")
    assert not [d for d in os.listdir(two_workers["workdir"]) if d.startswith("tmp-worker")]


def test_worker_ids_count_the_chief_first():
    import types

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


KILLED = {**SMALL, "train_steps": 60, "checkpoint_every_steps": 5, "log_every_steps": 100,
          "deterministic": True, "seed": 7, "keep_checkpoints": 2}  # fmt: skip


@background.job("tools_data_dir")
def killed_run(folder, tools_data_dir):
    """The training binary (the stand-in network) with KILLED's flags, `kill -9`ed once its
    first checkpoint is written. Returns (its workdir, its exit status)."""
    broken = folder / "broken"
    flags = [f"--{k}={v}" for k, v in {**KILLED, "data_dir": tools_data_dir}.items()]
    process = tiny_runs.start("train", *flags, f"--workdir={broken}", step_delay=0.05)
    try:
        tiny_runs.wait_for(broken / "checkpoints" / "checkpoint", [process])
    finally:
        process.send_signal(signal.SIGKILL)
        process.communicate(timeout=TIMEOUT)
    return broken, process.returncode


def test_killed_and_resumed_run_equals_uninterrupted(killed_run, tools_data_dir, tmp_path, caplog):
    """`kill -9` of the training binary mid-run; the same command resumes to the same weights."""
    broken, returncode = killed_run
    assert returncode == -signal.SIGKILL
    killed_at = tf.train.latest_checkpoint(str(broken / "checkpoints"))
    assert killed_at is not None and not killed_at.endswith("ckpt-60")
    whole = _train(tools_data_dir, tmp_path / "whole", **KILLED)

    # Resumed without the device prefetch: the batches the killed run had copied ahead come
    # from the checkpoint, so the stream (and every weight) is the uninterrupted run's.
    config = training.TrainConfig(data_dir=tools_data_dir, workdir=str(broken), **KILLED)
    with caplog.at_level(logging.INFO):
        resumed = training.train(
            dataclasses.replace(config, prefetch_to_device=0), build_model=tiny_alexnet
        )
    assert any(m.startswith(f"Resumed from {killed_at} ") for m in caplog.messages)
    assert resumed.step == 60
    assert_same_weights(whole.checkpoint, resumed.checkpoint)
