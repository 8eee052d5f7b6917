"""Where training runs: one device, data-parallel replicas, several machines, or the two towers.

Section 3.2 of the paper splits the network over two GPUs ("model parallel"): that is
`--placement=two_towers`, which hands two devices to `build_alexnet(devices=...)`. Data
parallelism, which the paper does not use, is what makes the same recipe practical on more GPUs:

* `--strategy=default`: one device (the first GPU, or the CPU), or the two devices of
  `--placement=two_towers`.
* `--strategy=mirrored`: `tf.distribute.MirroredStrategy` over all local GPUs (or, with no GPU,
  over every logical CPU device, which is how the tests run it).
* `--strategy=multi_worker`: `tf.distribute.MultiWorkerMirroredStrategy`, configured by the
  `TF_CONFIG` environment variable, so several machines train one model.
"""

from __future__ import annotations

import json
import os

import tensorflow as tf

STRATEGIES = ("default", "mirrored", "multi_worker")
PLACEMENTS = ("one_device", "two_towers")


def make_strategy(name: str) -> tf.distribute.Strategy:
    """Builds the strategy named by `--strategy`.

    Must run before any other TensorFlow op when `name` is "multi_worker" (the collective
    runtime is configured at start-up).
    """
    if name not in STRATEGIES:
        raise ValueError(f"--strategy must be one of {STRATEGIES}; received {name!r}")
    if name == "multi_worker":
        if "TF_CONFIG" not in os.environ:
            raise ValueError(
                "--strategy=multi_worker needs the TF_CONFIG environment variable "
                '(e.g. {"cluster": {"worker": ["host1:port", "host2:port"]}, '
                '"task": {"type": "worker", "index": 0}})'
            )
        try:
            json.loads(os.environ["TF_CONFIG"])
        except json.JSONDecodeError as e:
            raise ValueError(f"--strategy=multi_worker: TF_CONFIG is not valid JSON: {e}") from e
        return tf.distribute.MultiWorkerMirroredStrategy()
    if name == "mirrored":
        gpus = tf.config.list_logical_devices("GPU")
        devices = [d.name for d in (gpus or tf.config.list_logical_devices("CPU"))]
        return tf.distribute.MirroredStrategy(devices)
    # TensorFlow's default strategy: operations go to the first GPU if there is one, and layers
    # placed with `devices` (two_towers) keep their own devices, which a OneDeviceStrategy
    # scope would override.
    return tf.distribute.get_strategy()


def tower_devices(placement: str, strategy: tf.distribute.Strategy) -> tuple[str, str] | None:
    """The two devices of `--placement=two_towers`, or None for `one_device`."""
    if placement not in PLACEMENTS:
        raise ValueError(f"--placement must be one of {PLACEMENTS}; received {placement!r}")
    if placement == "one_device":
        return None
    if strategy.num_replicas_in_sync != 1:
        raise ValueError(
            "--placement=two_towers splits one model over two devices; it can't be combined "
            f"with {strategy.num_replicas_in_sync} data-parallel replicas (use --strategy=default)"
        )
    for kind in ("GPU", "CPU"):
        devices = [d.name for d in tf.config.list_logical_devices(kind)]
        if len(devices) >= 2:
            return devices[0], devices[1]
    raise ValueError(
        "--placement=two_towers needs two GPUs (or two logical CPU devices); this machine has "
        f"{[d.name for d in tf.config.list_logical_devices()]}"
    )


def input_devices(strategy: tf.distribute.Strategy) -> list[str]:
    """The devices of this process's replicas, in replica order: where its input batches go.

    The default strategy runs on the first GPU, or on the CPU when there is none (with
    `--placement=two_towers` too: the input is normalized there, then the towers take it).
    """
    try:
        return list(strategy.extended.worker_devices)
    except RuntimeError:  # the default strategy has no worker devices of its own
        gpus = tf.config.list_logical_devices("GPU")
        return [gpus[0].name if gpus else tf.config.list_logical_devices("CPU")[0].name]


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """True for the one process that writes checkpoints, summaries and logs."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.task_type:
        return True
    if resolver.task_type == "chief":
        return True
    has_chief = "chief" in resolver.cluster_spec().as_dict()
    return resolver.task_type == "worker" and resolver.task_id == 0 and not has_chief


def worker_id(strategy: tf.distribute.Strategy) -> int:
    """This process's index among the num_workers(strategy) training processes (chief first)."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.task_type:
        return 0
    index = int(resolver.task_id or 0)
    has_chief = "chief" in resolver.cluster_spec().as_dict()
    return index + 1 if resolver.task_type == "worker" and has_chief else index


def num_workers(strategy: tf.distribute.Strategy) -> int:
    """How many processes train together (1 unless --strategy=multi_worker)."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.task_type:
        return 1
    spec = resolver.cluster_spec().as_dict()
    return sum(len(spec.get(job, [])) for job in ("chief", "worker"))
