"""The learned conv1 filters (figure 3) and validation images with their top-5 guesses (figure 4).

    python -m alexnet_tf.visualize --workdir=runs/demo               # → runs/demo/figures/*.png
    python -m alexnet_tf.visualize --checkpoint=exported/demo --data_dir=DATA --output_dir=/tmp/f

Writes conv1_kernels.png (tower a's 48 kernels in the top rows, tower b's below, each 11×11
kernel drawn 4× larger and scaled to 0–255, the towers labelled with their numbers, and with
their GPU when the run placed them on two devices), top5.png (each image with its true class and
its five best guesses with their probabilities, the true one in red), and localizations.png for
a network with the box head (the ground-truth box and the top guess's box and class).
conv1_kernels.png and top5.png also go to TensorBoard (WORKDIR/tensorboard/figures, or
--output_dir when no training run is known). Prints how learned the conv1 kernels look and
writes it to conv1_stats.json (see alexnet_tf/model/filters.py): `neighbour_correlation`
(about 0 for the random initialization, near 1 for smooth learned kernels; each colour plane's
mean removed) and per tower `colourfulness` (0: the three colour planes are equal; the paper's
first tower is colour-agnostic, its second colour-specific).
"""

from __future__ import annotations

from absl import app, flags

from alexnet_tf.cli import shared_flags as common_flags
from alexnet_tf.cli import tool_errors
from alexnet_tf.files import workdir as workdir_lib
from alexnet_tf.results import figures, localization_figure

flags.adopt_module_key_flags(common_flags)  # --data_dir and --workdir in --help

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
        CHECKPOINT.value, OUTPUT_DIR.value, workdir_lib.figures
    )
    for flag, least in ((NUM_IMAGES, 0), (COLUMNS, 1)):
        if flag.value < least:
            raise app.UsageError(f"--{flag.name} must be >= {least}; received {flag.value}")
    with tool_errors.reported("visualize"):
        common_flags.check_data_dir()  # before the model loads or a file is written
        figures.write_figures(
            checkpoint,
            output_dir,
            data_dir=common_flags.DATA_DIR.value,
            num_images=NUM_IMAGES.value,
            columns=COLUMNS.value,
            # Beside training's summaries when the run is known.
            summary_dir=workdir_lib.tensorboard(run, "figures") if run else None,
        )
        # A network with the box head (ILSVRC task 2) also gets localizations.png.
        localization_figure.write_localizations(
            checkpoint, output_dir, data_dir=common_flags.DATA_DIR.value,
            num_images=NUM_IMAGES.value, columns=COLUMNS.value,
        )  # fmt: skip


def run_main() -> None:
    common_flags.run(main, "visualize")


if __name__ == "__main__":
    run_main()
