"""A training run read back: its model config and its checkpoints, for training and the tools.

Training resumes from these checkpoints and the tools (evaluate, export, visualize, retrieve)
restore the network from them, so how a run is found on disk lives here, below both. A WORKDIR
holds (alexnet_tf/files/workdir.py names the paths):

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

import glob
import json
import os
import re
from collections.abc import Callable

import keras
import tensorflow as tf
from absl import logging

from alexnet_tf.files import atomic
from alexnet_tf.files import workdir as run_files
from alexnet_tf.model import build_alexnet

MODEL_CONFIG = run_files.MODEL_CONFIG
CHECKPOINT_DIR = run_files.CHECKPOINT_DIR
_NUMBER = re.compile(r"-(\d+)$")


class CheckpointError(ValueError):
    """No usable checkpoint or model config where one was expected; the message names the path."""


def write_model_config(workdir: str, config: dict) -> str:
    """Writes WORKDIR/model_config.json atomically; returns its path."""
    return atomic.write_json(run_files.model_config(workdir), config)


def read_model_config(workdir: str) -> dict:
    path = run_files.model_config(workdir)
    try:
        with open(path) as f:
            return json.load(f)
    except FileNotFoundError:
        raise CheckpointError(
            f"{path} not found: is {workdir!r} the --workdir of a training run?"
        ) from None
    except (OSError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{path} can't be read: {e}") from e


def recorded_flags(workdir: str) -> dict[str, str]:
    """The `--name=value` lines of WORKDIR/flags.cfg as {name: value}; {} where there is none."""
    try:
        with open(run_files.flags_file(workdir), encoding="utf-8") as f:
            lines = [line.strip() for line in f]
    except OSError:
        return {}
    pairs = (line[2:].partition("=") for line in lines if line.startswith("--"))
    return {name: value for name, _, value in pairs}


def checkpoint_number(prefix: str) -> int:
    """N of a `.../ckpt-N` prefix (0 if it has none)."""
    match = _NUMBER.search(prefix)
    return int(match.group(1)) if match else 0


def damage(prefix: str) -> str | None:
    """Why the checkpoint `prefix` can't be read back, or None if every tensor of it reads.

    Reads the whole checkpoint (its index, and every tensor with its checksum), so a data file
    cut short, emptied or corrupted is found before a restore half-applies it.
    """
    try:
        reader = tf.train.load_checkpoint(prefix)
        for key, dtype in reader.get_variable_to_dtype_map().items():
            # RestoreV2, as a restore reads it: the reader's get_tensor can't return variants
            # (the input position), and this checks each tensor's checksum the same way.
            tf.raw_ops.RestoreV2(
                prefix=prefix, tensor_names=[key], shape_and_slices=[""], dtypes=[dtype]
            )
    except (tf.errors.OpError, IndexError, ValueError, OSError, RuntimeError) as e:
        message = str(e.message if isinstance(e, tf.errors.OpError) else e).strip()
        # "{{function_node ...}} Read less bytes than requested [Op:RestoreV2]" → the reason
        message = re.sub(
            r"^\{\{[^}]*\}\}\s*|\s*\[Op:\w+\]$", "", message.splitlines()[0] if message else ""
        )
        return message or type(e).__name__
    return None


def checkpoints_in(directory: str) -> list[str]:
    """The `ckpt-N` prefixes of `directory`, newest first.

    Those the folder's `checkpoint` state file lists (TensorFlow updates it only once a
    checkpoint is complete); if that file is missing or unreadable, every `ckpt-N.index` found.
    """
    try:
        state = tf.train.get_checkpoint_state(directory)
    except (tf.errors.OpError, ValueError):
        state = None
    if state is not None and state.all_model_checkpoint_paths:
        # get_checkpoint_state has already joined relative entries to `directory`: joining
        # again doubled a relative --workdir (demo_work/x/checkpoints/demo_work/x/...).
        prefixes = list(state.all_model_checkpoint_paths)
    else:
        pattern = os.path.join(glob.escape(directory), f"{run_files.CHECKPOINT_NAME}-*.index")
        prefixes = [path[: -len(".index")] for path in glob.glob(pattern)]
    return sorted((p for p in prefixes if _NUMBER.search(p)), key=checkpoint_number, reverse=True)


def latest_intact(
    directory: str,
    warn: Callable[[str], None] = logging.warning,
    complete: Callable[[str], bool] | None = None,
) -> str | None:
    """The newest checkpoint of `directory` that reads back whole; None if there is none at all.

    Each damaged checkpoint passed over is named in a `warn` line.

    Args:
        directory: a checkpoints/ folder.
        warn: where the warnings go.
        complete: if given, checkpoints for which it is False (a multi-worker run stopped before
            every worker saved its part) are passed over too, unless no other one is left.

    Raises:
        CheckpointError: there are checkpoints but none of them can be read; the message names
            them and what the user can do.
    """
    damaged, incomplete = [], []
    for prefix in checkpoints_in(directory):
        if complete is not None and not complete(prefix):
            incomplete.append(prefix)
            continue
        reason = damage(prefix)
        if reason is None:
            if incomplete:
                warn(f"{', '.join(incomplete)} lack another worker's part; resuming from {prefix}")
            return prefix
        damaged.append(f"{prefix} ({reason})")
        warn(f"checkpoint {prefix} can't be read ({reason}); trying an older one")
    if incomplete:  # none is whole and complete: the newest whole one, whatever its parts
        return latest_intact(directory, warn)
    if damaged:
        raise CheckpointError(
            f"no checkpoint in {directory} can be read: {'; '.join(damaged)}. Train in another "
            "--workdir, or remove these files to start that run from scratch"
        )
    return None


def resolve_checkpoint(path: str) -> tuple[str, str]:
    """Resolves a training WORKDIR, its checkpoints/ folder, or a `ckpt-N` prefix.

    A WORKDIR resolves to its newest checkpoint that reads back whole (a damaged newer one is
    named in a warning and skipped); a `ckpt-N` prefix named by the user must read back whole.

    Returns:
        (checkpoint prefix, the training WORKDIR it belongs to).

    Raises:
        CheckpointError: nothing readable at `path`; the message names the files.
    """
    if os.path.isdir(path):
        workdir = path
        if os.path.basename(os.path.normpath(path)) == CHECKPOINT_DIR:
            workdir = os.path.dirname(os.path.normpath(path))
        prefix = latest_intact(run_files.checkpoints(workdir))
        if prefix is None:
            raise CheckpointError(f"no checkpoint in {run_files.checkpoints(workdir)}")
        return prefix, workdir
    if tf.io.gfile.exists(path + ".index"):
        reason = damage(path)
        if reason is not None:
            raise CheckpointError(
                f"checkpoint {path} can't be read ({reason}); pass an older ckpt-N or the "
                "training workdir (its newest intact checkpoint is used)"
            )
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
        path: a training WORKDIR (its newest intact checkpoint is used) or a `ckpt-N` prefix.

    Returns:
        (model, the run's model_config.json as a dict, the checkpoint prefix used).
    """
    prefix, workdir = resolve_checkpoint(path)
    config = read_model_config(workdir)
    model = build_alexnet(config["num_classes"], **config.get("model", {}))
    restore_model(model, prefix)
    return model, config, prefix
