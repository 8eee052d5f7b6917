"""Trains AlexNet the way section 5 of the paper does.

    python -m alexnet_tf.train --flagfile=configs/alexnet.cfg --data_dir=DATA --workdir=RUN
    python -m alexnet_tf.train --flagfile=configs/demo.cfg          # the 10-class digit demo
    python -m alexnet_tf.train --flagfile=configs/localization.cfg --data_dir=DATA  # task 2

Re-running the same command resumes from RUN/checkpoints; RUN/flags.cfg replays the run.

Exit status: 0 when trained; 75 (EX_TEMPFAIL, `preemption.EXIT_RESUMABLE`) when stopped by
SIGTERM or SIGINT after writing a checkpoint, or when another worker was lost: run the same
command again to resume; 1 for an error the message names (a flag, a file, a full disk).
"""

from __future__ import annotations

import dataclasses
import os
import sys

from absl import app, flags, logging

from alexnet_tf.cli import shared_flags as common_flags
from alexnet_tf.data import input_pipeline, shard_checks
from alexnet_tf.files import workdir as paths
from alexnet_tf.files.atomic import WriteError
from alexnet_tf.model import INITS
from alexnet_tf.runs.checkpoints import CheckpointError, latest_intact
from alexnet_tf.training import distribution, preemption, schedules
from alexnet_tf.training import loop as training

flags.adopt_module_key_flags(common_flags)  # --data_dir and --workdir in --help

_F = training.TrainConfig  # defaults below are the paper's, from the TrainConfig fields

TRAIN_STEPS = flags.DEFINE_integer("train_steps", 0, "Steps to train; 0 means use --epochs.")
EPOCHS = flags.DEFINE_float("epochs", _F.epochs, "Passes over the training split (section 5).")
BATCH_SIZE = flags.DEFINE_integer("batch_size", _F.batch_size, "Global batch size (section 5).")
LEARNING_RATE = flags.DEFINE_float("learning_rate", _F.learning_rate, "Initial learning rate.")
MOMENTUM = flags.DEFINE_float("momentum", _F.momentum, "SGD momentum (section 5).")
WEIGHT_DECAY = flags.DEFINE_float("weight_decay", _F.weight_decay, "Weight decay (section 5).")
SCHEDULE = flags.DEFINE_enum(
    "schedule", _F.schedule, schedules.SCHEDULES,
    "plateau: divide on a validation plateau (section 5); step: at --lr_boundaries; cosine: "
    "down to 0 over the run (not in the paper).",
)  # fmt: skip
LR_DECAY_FACTOR = flags.DEFINE_float("lr_decay_factor", _F.lr_decay_factor, "Factor per drop.")
LR_BOUNDARIES = flags.DEFINE_list("lr_boundaries", [], "Steps where --schedule=step drops.")
LR_BOUNDARY_EPOCHS = flags.DEFINE_list(
    "lr_boundary_epochs", [], "Epochs where --schedule=step drops (if no --lr_boundaries)."
)
WARMUP_EPOCHS = flags.DEFINE_float(
    "warmup_epochs", _F.warmup_epochs,
    "Passes over which the rate ramps up linearly to --learning_rate before the schedule applies "
    "(not in the paper; 0: none).",
)  # fmt: skip
CLIP_GRADIENT_NORM = flags.DEFINE_float(
    "clip_gradient_norm", _F.clip_gradient_norm,
    "Scale each batch's gradient (weight decay included) down to at most this global norm "
    "(not in the paper; 0: never).",
)  # fmt: skip
PLATEAU_PATIENCE = flags.DEFINE_integer(
    "plateau_patience", _F.plateau_patience, "Evaluations without improvement before a drop."
)
PLATEAU_MIN_DELTA = flags.DEFINE_float(
    "plateau_min_delta", _F.plateau_min_delta, "Top-1 error decrease that counts as improvement."
)
PLATEAU_MAX_DROPS = flags.DEFINE_integer(
    "plateau_max_drops", _F.plateau_max_drops, "Most drops of the plateau schedule."
)
SEED = flags.DEFINE_integer("seed", _F.seed, "Seed of weights, dropout and data order.")
DETERMINISTIC = flags.DEFINE_bool(
    "deterministic",
    False,
    "Deterministic ops and data order: a resumed run equals an unbroken one.",
)
CHECKPOINT_EVERY_STEPS = flags.DEFINE_integer(
    "checkpoint_every_steps", _F.checkpoint_every_steps, "Steps between checkpoints."
)
KEEP_CHECKPOINTS = flags.DEFINE_integer("keep_checkpoints", _F.keep_checkpoints, "Kept on disk.")
EVAL_EVERY_STEPS = flags.DEFINE_integer(
    "eval_every_steps", _F.eval_every_steps, "Steps between evaluations (0: only at the end)."
)
EVAL_BATCH_SIZE = flags.DEFINE_integer("eval_batch_size", 0, "0: same as --batch_size.")
LOG_EVERY_STEPS = flags.DEFINE_integer("log_every_steps", _F.log_every_steps, "Progress lines.")
PLACEMENT = flags.DEFINE_enum(
    "placement", _F.placement, distribution.PLACEMENTS,
    "two_towers: the paper's two-GPU split of the network (section 3.2).",
)  # fmt: skip
STRATEGY = flags.DEFINE_enum(
    "strategy", _F.strategy, distribution.STRATEGIES,
    "default: one device; mirrored: all local GPUs; multi_worker: machines from TF_CONFIG.",
)  # fmt: skip
MIXED_PRECISION = flags.DEFINE_enum(
    "mixed_precision", _F.mixed_precision, training.MIXED_PRECISION,
    "Compute dtype of the layers (weights stay float32). auto: bfloat16 on GPUs of compute "
    "capability >= 8.0 and CPUs with AMX or AVX512_BF16, else float32 (model/precision.py).",
)  # fmt: skip
XLA = flags.DEFINE_bool("xla", False, "Compile the forward and backward pass with XLA.")
INIT = flags.DEFINE_enum("init", _F.init, INITS, "paper: N(0, 0.01) and biases of 1 (section 5).")
CONV1_INIT_STDDEV = flags.DEFINE_float(
    "conv1_init_stddev", _F.conv1_init_stddev, "> 0: conv1 weights from N(0, this); 0: --init."
)
DROPOUT_RATE = flags.DEFINE_float("dropout_rate", _F.dropout_rate, "Section 4.2.")
MEAN = flags.DEFINE_string("mean", _F.mean, "Mean subtracted from inputs (see input_pipeline).")
PCA_STD = flags.DEFINE_float("pca_std", _F.pca_std, "Std of the PCA colour noise (section 4.1).")
INPUT_SCALE = flags.DEFINE_float("input_scale", _F.input_scale, "Multiplies centred inputs.")
SHUFFLE_BUFFER = flags.DEFINE_integer("shuffle_buffer", _F.shuffle_buffer, "Training shuffle.")
LOCALIZATION = flags.DEFINE_bool(
    "localization", False,
    "ILSVRC-2012 task 2: add the box head (4 numbers per class on fc7) and train it with the "
    "smooth-L1 loss of the true class's box; needs data converted with --bbox_dir.",
)  # fmt: skip
BOX_LOSS_WEIGHT = flags.DEFINE_float(
    "box_loss_weight", _F.box_loss_weight, "Weight of the box loss beside the cross-entropy."
)
BOX_LOSS_START_EPOCHS = flags.DEFINE_float(
    "box_loss_start_epochs", _F.box_loss_start_epochs,
    "With --localization: passes over the data that train the classifier alone before the box "
    "loss joins (0: from the first step).",
)  # fmt: skip
INIT_FROM = flags.DEFINE_string(
    "init_from", "",
    "Start from the weights of a training WORKDIR, a ckpt-N prefix or a bvlc_alexnet.npy file: "
    "layers whose shapes match are loaded, the rest (e.g. fc8 for another class count) start "
    "fresh; step, momentum and schedule start anew. A --workdir with a checkpoint resumes "
    "from it instead.",
)  # fmt: skip
TRAIN_LAYERS = flags.DEFINE_list(
    "train_layers", [],
    "Fine-tuning: train only these layers (conv1..conv5, fc6, fc7, fc8, bbox; both towers), "
    "freeze the rest. Default: all.",
)  # fmt: skip
PREFETCH_TO_DEVICE = flags.DEFINE_integer(
    "prefetch_to_device", _F.prefetch_to_device,
    "Batches copied to the accelerator(s) while earlier steps run (the paper's stage n+1); "
    "0 copies each batch when its step starts.",
)  # fmt: skip


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments {argv[1:]}")
    if not common_flags.DATA_DIR.value or not common_flags.WORKDIR.value:
        raise app.UsageError("--data_dir and --workdir are required (or --flagfile=configs/X.cfg)")
    try:
        config = config_from_flags(common_flags.DATA_DIR.value, common_flags.WORKDIR.value)
    except training.ConfigError as e:
        sys.exit(f"train: error: {e}")
    try:
        check_before_writing(config)  # flags, data and checkpoints: nothing is written before
        common_flags.write_flags_file(config.workdir)
        result = training.train(config)
    except preemption.PreemptedError:  # its one line (where it saved) is already logged
        sys.exit(preemption.EXIT_RESUMABLE)
    except (
        training.ConfigError,
        training.NonFiniteLossError,
        input_pipeline.InputError,
        WriteError,
    ) as e:
        sys.exit(f"train: error: {e}")
    logging.info(
        "Finished at step %d: %s (checkpoint %s)", result.step, result.eval, result.checkpoint
    )


def check_before_writing(config: training.TrainConfig) -> None:
    """Checks what a run needs before it writes anything (flags.cfg, checkpoints, logs): the
    flags, the data directory (manifest, training split, shards) and the checkpoints it resumes.

    Raises:
        ConfigError: a flag's value can't work, --data_dir is not converted data, or --workdir
            has checkpoints but none can be read.
        InputError: a training shard is missing or is not a TFRecord file.
    """
    config.validate()
    manifest = training.checked_manifest(config)
    shard_checks.check_shards(manifest.split("train").files)
    check_checkpoints(config.workdir)


def check_checkpoints(workdir: str) -> None:
    """Raises ConfigError if WORKDIR has checkpoints but none of them can be read back whole."""
    if os.path.isdir(paths.checkpoints(workdir)):
        try:
            # Silent: the restore that follows names a damaged one it passes over.
            latest_intact(paths.checkpoints(workdir), warn=lambda message: None)
        except CheckpointError as e:
            raise training.ConfigError(f"--workdir {workdir!r}: {e}") from e


def config_from_flags(data_dir: str, workdir: str) -> training.TrainConfig:
    """The TrainConfig of this module's parsed flags (also used by `alexnet_tf.demo`).

    Raises:
        ConfigError: --lr_boundaries holds something that is not an integer.
    """
    try:
        boundaries = [int(b) for b in LR_BOUNDARIES.value]
        epochs = [float(e) for e in LR_BOUNDARY_EPOCHS.value]
    except ValueError as e:
        raise training.ConfigError(
            f"--lr_boundaries must be integers and --lr_boundary_epochs numbers; received "
            f"{LR_BOUNDARIES.value} and {LR_BOUNDARY_EPOCHS.value}"
        ) from e
    return training.TrainConfig(
        data_dir=data_dir,
        workdir=workdir,
        lr_boundaries=boundaries,
        lr_boundary_epochs=epochs,
        **{name: flags.FLAGS[name].value for name in _CONFIG_FLAGS},
    )


_CONFIG_FLAGS = [
    f.name for f in dataclasses.fields(training.TrainConfig)
    if f.name not in ("data_dir", "workdir", "lr_boundaries", "lr_boundary_epochs")
]  # fmt: skip


def run_main() -> None:
    common_flags.run(main, "train")


if __name__ == "__main__":
    run_main()
