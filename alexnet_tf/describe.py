"""Prints the layer table of the 2012 network (section 3): kernels, maps, neurons, parameters.

python -m alexnet_tf.describe [--num_classes=1000] [--localization]

With --localization the table ends with the box regressor of ILSVRC-2012 task 2 (`bbox`, 4
numbers per class on fc7), and the total counts it.
"""

from __future__ import annotations

from absl import app, flags

from alexnet_tf.cli import shared_flags as common_flags
from alexnet_tf.model import build_alexnet
from alexnet_tf.model.layer_table import format_table, layer_table

_NUM_CLASSES = flags.DEFINE_integer("num_classes", 1000, "Size of the softmax output.")
_LOCALIZATION = flags.DEFINE_bool(
    "localization", False, "Include the box regressor (bbox: 4 numbers per class on fc7)."
)


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    if _NUM_CLASSES.value < 1:
        raise app.UsageError(f"--num_classes must be >= 1; received {_NUM_CLASSES.value}")
    model = build_alexnet(_NUM_CLASSES.value, localization=_LOCALIZATION.value)
    print(format_table(layer_table(model)))


def run_main() -> None:
    common_flags.run(main, "describe")


if __name__ == "__main__":
    run_main()
