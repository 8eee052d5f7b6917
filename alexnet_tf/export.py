r"""Exports a trained network as a SavedModel that takes JPEG/PNG bytes (results/saved_model.py).

    python -m alexnet_tf.export --workdir=runs/demo --export_dir=exported/demo
    python -m alexnet_tf.export --workdir=runs/demo --export_dir=exported/demo10 --ten_patch
    python -m alexnet_tf.export --workdir=runs/demo --export_dir=exported/bf16 \
        --compute_dtype=bfloat16

The SavedModel needs only TensorFlow:

    saved_model_cli run --dir exported/demo --tag_set serve --signature_def serving_default \
        --inputs images=images.npy      # a numpy array of encoded image bytes (dtype S)
"""

from __future__ import annotations

import os

from absl import app, flags

from alexnet_tf.cli import shared_flags as common_flags
from alexnet_tf.cli import tool_errors
from alexnet_tf.results import saved_model as exporting

flags.adopt_module_key_flags(common_flags)  # --data_dir and --workdir in --help

EXPORT_DIR = flags.DEFINE_string("export_dir", None, "Where the SavedModel is written.")
CHECKPOINT = flags.DEFINE_string(
    "checkpoint", None, "A ckpt-N prefix to export instead of the latest one of --workdir."
)
TOP_K = flags.DEFINE_integer("top_k", 5, "Classes returned by the serving signature.")
TEN_PATCH = flags.DEFINE_bool(
    "ten_patch", False, "Average the ten patches of section 4.1 instead of the centre patch."
)
OVERWRITE = flags.DEFINE_bool("overwrite", False, "Replace an existing --export_dir.")
COMPUTE_DTYPE = flags.DEFINE_enum(
    "compute_dtype", "float32", exporting.COMPUTE_DTYPES,
    "What the exported layers compute in (weights and outputs stay float32); bfloat16 serves "
    "faster on CPUs with AMX or AVX512_BF16 and GPUs of compute capability >= 8.0.",
)  # fmt: skip


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    checkpoint = CHECKPOINT.value or common_flags.WORKDIR.value
    if not checkpoint:
        raise app.UsageError("pass --workdir (a training run) or --checkpoint")
    if not EXPORT_DIR.value:
        raise app.UsageError("pass --export_dir")
    if TOP_K.value < 1:
        raise app.UsageError(f"--top_k must be >= 1; received {TOP_K.value}")
    if os.path.exists(EXPORT_DIR.value) and not OVERWRITE.value:  # before the model loads
        raise app.UsageError(
            f"--export_dir {EXPORT_DIR.value} exists; pass --overwrite to replace it"
        )
    with tool_errors.reported("export"):
        common_flags.check_data_dir()  # before the model loads or a file is written
        path = exporting.export(
            checkpoint,
            EXPORT_DIR.value,
            data_dir=common_flags.DATA_DIR.value,
            top_k=TOP_K.value,
            ten_patch=TEN_PATCH.value,
            overwrite=OVERWRITE.value,
            compute_dtype=COMPUTE_DTYPE.value,
        )
    print(f"export: SavedModel written to {path}")


def run_main() -> None:
    common_flags.run(main, "export")


if __name__ == "__main__":
    run_main()
