"""Where a training run keeps its weights, and how every other binary gets them back.

A training WORKDIR holds:

    WORKDIR/flags.cfg            the resolved flags of the run (replay with --flagfile)
    WORKDIR/model_config.json    what is needed to rebuild the model and its input normalization
    WORKDIR/checkpoints/ckpt-N   tf.train.Checkpoint with at least `model=` (plus optimizer, step,
                                 schedule and data-iterator state, which only training reads)

`model_config.json`:

    {"num_classes": K,
     "model": {...keyword arguments of build_alexnet, e.g. "init": "paper", "seed": 0...},
     "preprocessing": {...keyword arguments of input_pipeline.make_normalizer...},
     "data_dir": "/abs/path/of/the/training/shards"}
"""

from __future__ import annotations

import json
import os

import keras
import tensorflow as tf

from alexnet_tf.model import build_alexnet

MODEL_CONFIG = "model_config.json"
CHECKPOINT_DIR = "checkpoints"


class CheckpointError(ValueError):
    """No usable checkpoint or model config where one was expected; the message names the path."""


def write_model_config(workdir: str, config: dict) -> str:
    """Writes WORKDIR/model_config.json atomically; returns its path."""
    os.makedirs(workdir, exist_ok=True)
    path = os.path.join(workdir, MODEL_CONFIG)
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w") as f:
        json.dump(config, f, indent=1)
    os.replace(tmp, path)
    return path


def read_model_config(workdir: str) -> dict:
    path = os.path.join(workdir, MODEL_CONFIG)
    try:
        with open(path) as f:
            return json.load(f)
    except FileNotFoundError:
        raise CheckpointError(
            f"{path} not found: is {workdir!r} the --workdir of a training run?"
        ) from None
    except (OSError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{path} can't be read: {e}") from e


def resolve_checkpoint(path: str) -> tuple[str, str]:
    """Resolves a training WORKDIR, its checkpoints/ folder, or a `ckpt-N` prefix.

    Returns:
        (checkpoint prefix, the training WORKDIR it belongs to).
    """
    if os.path.isdir(path):
        workdir = path
        if os.path.basename(os.path.normpath(path)) == CHECKPOINT_DIR:
            workdir = os.path.dirname(os.path.normpath(path))
        prefix = tf.train.latest_checkpoint(os.path.join(workdir, CHECKPOINT_DIR))
        if prefix is None:
            raise CheckpointError(f"no checkpoint in {os.path.join(workdir, CHECKPOINT_DIR)}")
        return prefix, workdir
    if tf.io.gfile.exists(path + ".index"):
        return path, os.path.dirname(os.path.dirname(os.path.abspath(path)))
    raise CheckpointError(
        f"{path!r} is neither a training workdir nor a checkpoint prefix (like .../ckpt-100)"
    )


def restore_model(model: keras.Model, checkpoint: str) -> None:
    """Loads the weights of `model` from a checkpoint prefix written by training."""
    status = tf.train.Checkpoint(model=model).restore(checkpoint)
    status.expect_partial()  # the optimizer and data state are training's business
    status.assert_existing_objects_matched()


def load_trained_model(path: str) -> tuple[keras.Model, dict, str]:
    """Rebuilds and restores the model of a training run.

    Args:
        path: a training WORKDIR (its latest checkpoint is used) or a `ckpt-N` prefix.

    Returns:
        (model, the run's model_config.json as a dict, the checkpoint prefix used).
    """
    prefix, workdir = resolve_checkpoint(path)
    config = read_model_config(workdir)
    model = build_alexnet(config["num_classes"], **config.get("model", {}))
    restore_model(model, prefix)
    return model, config, prefix
