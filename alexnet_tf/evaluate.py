r"""Top-1/top-5 validation error with the centre patch and the ten patches (sections 4.1 and 6).

    python -m alexnet_tf.evaluate --workdir=runs/demo
    python -m alexnet_tf.evaluate --workdir=runs/avg --checkpoints=runs/a,runs/b,exported/c \
        --data_dir=DATA --per_class

Prints the number of scored examples (equal to the manifest's), writes WORKDIR/eval.json and
eval/top1_error, eval/top5_error to TensorBoard (runs WORKDIR/tensorboard/eval_center and
WORKDIR/tensorboard/eval_ten_patch, beside training's own).
"""

from __future__ import annotations

import os

from absl import app, flags

from alexnet_tf.cli import shared_flags as common_flags
from alexnet_tf.cli import tool_errors
from alexnet_tf.results import evaluation
from alexnet_tf.results.trained_models import resolve_data_dir, training_workdir

flags.adopt_module_key_flags(common_flags)  # --data_dir and --workdir in --help

CHECKPOINTS = flags.DEFINE_list(
    "checkpoints", [],
    "Training WORKDIRs, ckpt-N prefixes or exported SavedModels; several are averaged (model "
    "averaging, section 6). Default: --workdir.",
)  # fmt: skip
BATCH_SIZE = flags.DEFINE_integer("batch_size", 16, "Images per batch (×10 crops for ten_patch).")
MODES = flags.DEFINE_list("modes", list(evaluation.MODES), "Any of center, ten_patch.")
PER_CLASS = flags.DEFINE_bool("per_class", False, "Also write every class's errors to eval.json.")


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    workdir = common_flags.WORKDIR.value
    checkpoints = CHECKPOINTS.value or ([workdir] if workdir else [])
    if not checkpoints:
        raise app.UsageError("pass --workdir (a training run) or --checkpoints=a,b,c")
    if BATCH_SIZE.value < 1:
        raise app.UsageError(f"--batch_size must be >= 1; received {BATCH_SIZE.value}")
    unknown = [m for m in MODES.value if m not in evaluation.MODES]
    if unknown or not MODES.value:
        raise app.UsageError(
            f"--modes must name some of {list(evaluation.MODES)}; received {MODES.value}"
        )
    if not workdir:
        if len(checkpoints) > 1:
            raise app.UsageError("pass --workdir: it holds eval.json of an average of models")
        workdir = training_workdir(checkpoints[0])  # None: a SavedModel or a bad path
        if workdir is None and os.path.isdir(checkpoints[0]):
            raise app.UsageError("pass --workdir: it holds eval.json of a SavedModel")
    with tool_errors.reported("evaluate"):
        common_flags.check_data_dir()  # before the model loads or a file is written
        result = evaluation.evaluate(
            checkpoints,
            resolve_data_dir(checkpoints[0], common_flags.DATA_DIR.value),
            batch_size=BATCH_SIZE.value,
            modes=MODES.value,
            per_class=PER_CLASS.value,
            workdir=workdir,
        )
    print(f"evaluate: {result['num_examples']} validation examples scored")


def run_main() -> None:
    common_flags.run(main, "evaluate")


if __name__ == "__main__":
    run_main()
