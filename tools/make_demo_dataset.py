r"""Writes a small labelled image tree in the ILSVRC-2012 layout, from images that ship in PyPI.

The whole system (convert -> train -> evaluate) then runs on a fresh machine without ImageNet:

    python tools/make_demo_dataset.py --output_dir=/tmp/demo && \
    python tools/build_imagenet_tfrecords.py --train_dir=/tmp/demo/train \
        --val_dir=/tmp/demo/val --val_labels=/tmp/demo/val_labels.txt --output_dir=/tmp/demo/data

With --boxes, digits placed on real photographs with ILSVRC box annotations (localization):

    python tools/make_demo_dataset.py --output_dir=/tmp/demo_boxes --boxes && \
    python tools/build_imagenet_tfrecords.py --train_dir=/tmp/demo_boxes/train \
        --val_dir=/tmp/demo_boxes/val --val_labels=/tmp/demo_boxes/val_labels.txt \
        --bbox_dir=/tmp/demo_boxes/Annotation --output_dir=/tmp/demo_boxes/data

--source=objects writes another kind of boxed set (always with boxes): ten objects cut from
scikit-image's photographs pasted on scikit-learn's (alexnet_tf/data/pasted_objects.py).
"""

import sys

from absl import app, flags

from alexnet_tf.cli import startup
from alexnet_tf.data.demo_data import SOURCES, DemoDataError, write_demo_tree
from alexnet_tf.data.pasted_objects import write_object_tree

FLAGS = flags.FLAGS
flags.DEFINE_string("output_dir", None, "Where train/, val/ and val_labels.txt are written.")
flags.DEFINE_enum(
    "source", "digits", (*SOURCES, "objects"),
    "digits: scikit-learn's digits; objects: scikit-image's photographs cut and pasted (boxed).",
)  # fmt: skip
flags.DEFINE_integer("train_per_class", 100, "Training images per class.")
flags.DEFINE_integer("val_per_class", 20, "Validation images per class.")
flags.DEFINE_integer("image_size", 64, "Side of the square JPEGs written.")
flags.DEFINE_integer("seed", 0, "Seeds the split, the colours and the validation order.")
flags.DEFINE_bool(
    "boxes",
    False,
    "Draw each digit at a random place and size on a real photograph and write its box as an "
    "ILSVRC annotation XML under OUTPUT_DIR/Annotation (for --bbox_dir).",
)
flags.mark_flag_as_required("output_dir")


def main(argv: list[str]) -> int:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    try:
        if FLAGS.source == "objects":
            info = write_object_tree(
                FLAGS.output_dir,
                train_per_class=FLAGS.train_per_class,
                val_per_class=FLAGS.val_per_class,
                image_size=FLAGS.image_size,
                seed=FLAGS.seed,
            )
        else:
            info = write_demo_tree(
                FLAGS.output_dir,
                source=FLAGS.source,
                train_per_class=FLAGS.train_per_class,
                val_per_class=FLAGS.val_per_class,
                image_size=FLAGS.image_size,
                seed=FLAGS.seed,
                boxes=FLAGS.boxes,
            )
    except DemoDataError as e:
        print(f"make_demo_dataset: error: {e}", file=sys.stderr)
        return 2
    print(
        f"wrote {info['num_train']} training and {info['num_val']} validation images of "
        f"{len(info['synsets'])} classes to {FLAGS.output_dir}"
        + (f"; boxes in {info['bbox_dir']}" if "bbox_dir" in info else "")
    )
    return 0


if __name__ == "__main__":
    startup.quiet_start()
    startup.run(main, "make_demo_dataset")
