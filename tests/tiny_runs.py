"""A cheap stand-in network, and the whole processes that train it (a signal, a kill, workers).

`tiny_alexnet` has the builder signature of `build_alexnet` and the paper's layer names where
the training loop looks for them (conv1 per tower, fc8, predictions), so `train(config,
build_model=tiny_alexnet)` runs every part of the loop in a fraction of a second per step. Tests
use it in-process; the few behaviours only a process can show start this file as a script:

    python tests/tiny_runs.py train --data_dir=... --workdir=...     # the training binary
    python tests/tiny_runs.py worker DATA_DIR WORKDIR '{"train_steps": 30, ...}'

`train` is `python -m alexnet_tf.train` (its flags, messages and exit status) with the stand-in
network; `worker` calls `training.train` directly (TF_CONFIG makes it one of several workers).
Both print `STOPPED at N` / `RESULT {...}` lines, and with `--step_delay=S` (before the mode's
own arguments) each step takes at least S seconds, so that a signal or a kill reliably lands
while the run is still going.
"""

import json
import os
import socket
import subprocess
import sys
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TIMEOUT = 240
SMALL = {"batch_size": 4, "train_steps": 2, "eval_every_steps": 0, "log_every_steps": 1,
         "init": "he", "input_scale": 1 / 64, "shuffle_buffer": 16}  # fmt: skip
# The several-worker runs: a checkpoint every 5 of 30 steps, the last 2 kept.
TWO_WORKERS = {**SMALL, "deterministic": True, "seed": 5, "log_every_steps": 100,
               "train_steps": 30, "checkpoint_every_steps": 5, "keep_checkpoints": 2}  # fmt: skip


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


def checkpoint_state(prefix: str) -> dict:
    """The model's and optimizer's tensors of checkpoint `prefix`, by name."""
    import tensorflow as tf

    reader = tf.train.load_checkpoint(prefix)
    keys = [k for k in reader.get_variable_to_shape_map() if k.startswith(("model/", "optimizer/"))]
    return {k: reader.get_tensor(k) for k in keys}


def assert_same_weights(a: str, b: str, exact: bool = True) -> None:
    """Checkpoints `a` and `b` hold the same weights and optimizer slots (bit for bit if exact)."""
    expected, got = checkpoint_state(a), checkpoint_state(b)
    assert expected.keys() == got.keys() and len(expected) > 4
    for key, value in expected.items():
        if exact:
            np.testing.assert_array_equal(got[key], value, err_msg=key)
        else:  # all-reduce order may differ by round-off between runs
            np.testing.assert_allclose(got[key], value, rtol=1e-5, atol=1e-6, err_msg=key)


_GIVEN_PORTS = set()


def free_ports(n: int) -> list[int]:
    """`n` ports free now and not handed out before in this process: runs started side by side
    are never told the same one."""
    ports = []
    while len(ports) < n:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in _GIVEN_PORTS:
            _GIVEN_PORTS.add(port)
            ports.append(port)
    return ports


def start(mode: str, *args: str, step_delay: float = 0.0, env=None, **popen) -> subprocess.Popen:
    """Starts this file as a process (`train` FLAGS... or `worker` DATA WORKDIR CONFIG_JSON)."""
    from background import ENVIRONMENT  # not os.environ: a background job may call this

    command = [sys.executable, os.path.abspath(__file__), f"--step_delay={step_delay}", mode]
    env = {**ENVIRONMENT, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": REPO, **(env or {})}
    popen = {"stdout": subprocess.PIPE, "stderr": subprocess.STDOUT, **popen}
    return subprocess.Popen([*command, *args], cwd=REPO, env=env, text=True, **popen)


def start_workers(data_dir, workdir, config: dict, step_delay: float = 0.0, logs=None) -> list:
    """Two local --strategy=multi_worker processes training `config` in `workdir`; their output
    goes to pipes, or to the two open files `logs`."""
    workers = [f"127.0.0.1:{port}" for port in free_ports(2)]
    processes = []
    for index in range(2):
        tf_config = {"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}}
        config_json = json.dumps({**config, "strategy": "multi_worker"})
        output = {"stdout": logs[index]} if logs else {}
        processes.append(
            start("worker", data_dir, str(workdir), config_json, step_delay=step_delay,
                  env={"TF_CONFIG": json.dumps(tf_config)}, **output)
        )  # fmt: skip
    return processes


def finish(processes, timeout=TIMEOUT) -> list[str]:
    """Waits for `processes`; returns their outputs (and kills any left on the way out)."""
    try:
        return [p.communicate(timeout=timeout)[0] for p in processes]
    finally:
        for p in processes:
            p.kill()


def wait_for(path, processes, timeout=TIMEOUT) -> None:
    """Waits until `path` exists, failing if a process ends first."""
    deadline = time.time() + timeout
    while not os.path.exists(path):
        assert time.time() < deadline, f"{path} did not appear in {timeout} s"
        assert all(p.poll() is None for p in processes), finish(processes)
        time.sleep(0.02)


def results(output: str) -> list[dict]:
    return [json.loads(line[len("RESULT ") :]) for line in output.splitlines()
            if line.startswith("RESULT ")]  # fmt: skip


def _slow_steps(seconds: float) -> None:
    """Makes each training step last at least `seconds` (Window.add runs once per step)."""
    from alexnet_tf.training import summaries

    add = summaries.Window.add

    def add_slowly(self, *args):
        time.sleep(seconds)
        add(self, *args)

    summaries.Window.add = add_slowly


def _worker(data_dir, workdir, config_json):
    from absl import logging as absl_logging

    from alexnet_tf.training import loop as training
    from alexnet_tf.training.preemption import EXIT_RESUMABLE, PreemptedError

    absl_logging.set_verbosity(absl_logging.INFO)
    absl_logging.use_absl_handler()
    config = training.TrainConfig(data_dir=data_dir, workdir=workdir, **json.loads(config_json))
    try:
        result = training.train(config, build_model=tiny_alexnet)
    except PreemptedError as e:
        print(f"STOPPED at {e.step}: {e}", flush=True)
        sys.exit(EXIT_RESUMABLE)
    print("RESULT", json.dumps({"step": result.step, "loss": result.loss,
                                "replicas": result.replicas}), flush=True)  # fmt: skip


def _train_binary(argv):
    """`python -m alexnet_tf.train ARGV` with the stand-in network."""
    import runpy

    from alexnet_tf.training import loop

    real_train = loop.train
    loop.train = lambda config, **_: real_train(config, build_model=tiny_alexnet)
    sys.argv = ["alexnet_tf.train", *argv]
    runpy.run_module("alexnet_tf.train", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    sys.path.insert(0, REPO)
    delay, mode, *rest = sys.argv[1:]
    import alexnet_tf  # noqa: F401  (before TensorFlow, as in the binaries)

    if float(delay.split("=")[1]):
        _slow_steps(float(delay.split("=")[1]))
    if mode == "train":
        _train_binary(rest)
    else:
        _worker(*rest)
