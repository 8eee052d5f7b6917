"""The learned conv1 filters (figure 3) and validation images with their top-5 guesses (figure 4).

    python -m alexnet_tf.visualize --workdir=runs/demo               # → runs/demo/figures/*.png
    python -m alexnet_tf.visualize --checkpoint=exported/demo --data_dir=DATA --output_dir=/tmp/f

Writes conv1_kernels.png (tower a's 48 kernels in the top rows, tower b's below, each 11×11
kernel drawn 4× larger and scaled to 0–255, the towers labelled with their numbers), top5.png
(each image with its true class and its five best guesses with their probabilities, the true
one in red) and the same images to TensorBoard (WORKDIR/tensorboard/figures, or --output_dir
when no training run is known). Prints how learned the conv1 kernels look and writes it to
conv1_stats.json (see alexnet_tf/model/filters.py): `neighbour_correlation` (about 0 for the
random initialization, near 1 for smooth learned kernels) and per tower `colourfulness` (0: the
three colour planes are equal; the paper's first tower is colour-agnostic, its second
colour-specific).
"""

from __future__ import annotations

import os
import sys

from absl import app, flags

from alexnet_tf.cli import shared_flags as common_flags
from alexnet_tf.cli import tool_errors
from alexnet_tf.results import figures
from alexnet_tf.results.evaluation import SUMMARY_DIR

CHECKPOINT = flags.DEFINE_string(
    "checkpoint", None, "A ckpt-N prefix or exported SavedModel; default: the latest of --workdir."
)
OUTPUT_DIR = flags.DEFINE_string("output_dir", None, "Where the PNGs go; default WORKDIR/figures.")
NUM_IMAGES = flags.DEFINE_integer("num_images", 8, "Validation images in top5.png (0: none).")
COLUMNS = flags.DEFINE_integer("columns", 4, "Images per row of top5.png.")


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    checkpoint, run, output_dir = common_flags.model_and_output_dir(
        CHECKPOINT.value, OUTPUT_DIR.value, "figures"
    )
    with tool_errors.reported("visualize"):
        figures.write_figures(
            checkpoint,
            output_dir,
            data_dir=common_flags.DATA_DIR.value,
            num_images=NUM_IMAGES.value,
            columns=COLUMNS.value,
            # Beside training's summaries when the run is known.
            summary_dir=os.path.join(run, SUMMARY_DIR, "figures") if run else None,
        )


def run_main() -> None:
    app.run(main, argv=sys.argv)


if __name__ == "__main__":
    run_main()
