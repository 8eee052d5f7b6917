r"""Nearest training images of validation images by fc7 distance (section 6.1, figure 4 right).

    python -m alexnet_tf.retrieve --workdir=runs/demo --num_queries=8 --k=6
    python -m alexnet_tf.retrieve --checkpoint=exported/demo --data_dir=DATA \
        --output_dir=/tmp/retrieval --num_queries=0 --max_memory_mb=4096   # all of ImageNet

Writes validation_fc7.npy and train_fc7.npy (streamed in batches), neighbours.json (indices,
labels and distances) and retrieval.png (each query, then its k neighbours, each titled with its
class text and its fc7 distance; neighbours of another class in red) to --output_dir.
"""

from __future__ import annotations

from absl import app, flags

from alexnet_tf.cli import shared_flags as common_flags
from alexnet_tf.cli import tool_errors
from alexnet_tf.files import workdir as workdir_lib
from alexnet_tf.results import retrieval

flags.adopt_module_key_flags(common_flags)  # --data_dir and --workdir in --help

CHECKPOINT = flags.DEFINE_string(
    "checkpoint", None, "A ckpt-N prefix or exported SavedModel; default: the latest of --workdir."
)
OUTPUT_DIR = flags.DEFINE_string("output_dir", None, "Default: WORKDIR/retrieval.")
NUM_QUERIES = flags.DEFINE_integer("num_queries", 8, "Validation images to query (0: all).")
MAX_DATABASE = flags.DEFINE_integer("max_database", 0, "Training images searched (0: all).")
K = flags.DEFINE_integer("k", 6, "Neighbours per query (figure 4 shows 6).")
BATCH_SIZE = flags.DEFINE_integer("batch_size", 32, "Images per forward pass.")
MAX_MEMORY_MB = flags.DEFINE_integer(
    "max_memory_mb", 1024, "Bound on the search's working memory, whatever the database size."
)
FIGURE_QUERIES = flags.DEFINE_integer("figure_queries", 8, "Rows of retrieval.png.")


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    checkpoint, _, output_dir = common_flags.model_and_output_dir(
        CHECKPOINT.value, OUTPUT_DIR.value, workdir_lib.retrieval
    )
    for flag in (NUM_QUERIES, MAX_DATABASE):
        if flag.value < 0:
            raise app.UsageError(f"--{flag.name} must be >= 0; received {flag.value}")
    for flag in (K, BATCH_SIZE, MAX_MEMORY_MB):
        if flag.value < 1:
            raise app.UsageError(f"--{flag.name} must be >= 1; received {flag.value}")
    if FIGURE_QUERIES.value < 0:
        raise app.UsageError(f"--figure_queries must be >= 0; received {FIGURE_QUERIES.value}")
    with tool_errors.reported("retrieve"):
        common_flags.check_data_dir()  # before the model loads or a file is written
        retrieval.retrieve(
            checkpoint,
            output_dir,
            data_dir=common_flags.DATA_DIR.value,
            num_queries=NUM_QUERIES.value,
            max_database=MAX_DATABASE.value,
            k=K.value,
            batch_size=BATCH_SIZE.value,
            max_memory_bytes=MAX_MEMORY_MB.value << 20,
            figure_queries=FIGURE_QUERIES.value,
        )


def run_main() -> None:
    common_flags.run(main, "retrieve")


if __name__ == "__main__":
    run_main()
