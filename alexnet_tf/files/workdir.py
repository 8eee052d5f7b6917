"""The layout of a run's folder (WORKDIR): every path that training and the tools share.

    WORKDIR/flags.cfg                  resolved flags of the run (replay with --flagfile)
    WORKDIR/model_config.json          what rebuilds the model and its input normalization
    WORKDIR/checkpoints/ckpt-N.*       tf.train.Checkpoint of step N
    WORKDIR/input-worker-N/            a non-chief worker's input position (multi-worker runs)
    WORKDIR/tensorboard/               training's scalars, histograms and images
    WORKDIR/tensorboard/eval_MODE/     alexnet_tf.evaluate's scores, per mode (center, ten_patch)
    WORKDIR/tensorboard/figures/       alexnet_tf.visualize's figures
    WORKDIR/eval.json                  alexnet_tf.evaluate's scores
    WORKDIR/figures/                   alexnet_tf.visualize's PNGs
    WORKDIR/retrieval/                 alexnet_tf.retrieve's features and figure

`tensorboard --logdir WORKDIR/tensorboard` shows training and evaluation together.
"""

from __future__ import annotations

import os

FLAGS_FILE = "flags.cfg"
MODEL_CONFIG = "model_config.json"
CHECKPOINT_DIR = "checkpoints"
CHECKPOINT_NAME = "ckpt"
TENSORBOARD_DIR = "tensorboard"
EVAL_JSON = "eval.json"
FIGURES_DIR = "figures"
RETRIEVAL_DIR = "retrieval"


def flags_file(workdir: str) -> str:
    return os.path.join(workdir, FLAGS_FILE)


def model_config(workdir: str) -> str:
    return os.path.join(workdir, MODEL_CONFIG)


def checkpoints(workdir: str) -> str:
    return os.path.join(workdir, CHECKPOINT_DIR)


def worker_input(workdir: str, worker: int) -> str:
    return os.path.join(workdir, f"input-worker-{worker}")


def worker_scratch(workdir: str, worker: int) -> str:
    """Where a non-chief worker writes its share of a checkpoint, deleted right after."""
    return os.path.join(workdir, f"tmp-worker-{worker}")


def tensorboard(workdir: str, run: str = "") -> str:
    """TensorBoard's folder; `run` names a sub-run (`eval_center`, `figures`)."""
    return (
        os.path.join(workdir, TENSORBOARD_DIR, run)
        if run
        else os.path.join(workdir, TENSORBOARD_DIR)
    )


def eval_json(workdir: str) -> str:
    return os.path.join(workdir, EVAL_JSON)


def figures(workdir: str) -> str:
    return os.path.join(workdir, FIGURES_DIR)


def retrieval(workdir: str) -> str:
    return os.path.join(workdir, RETRIEVAL_DIR)
