r"""Converts ILSVRC-2012 (or any data in its layout) to TFRecord shards and manifest.json.

Section 2 of the paper: images rescaled so the shorter side is 256, then the central 256×256
patch (`--resize=256`); the mean image and RGB eigenvectors of sections 2 and 4.1 are computed
in the same pass. Exit status 0 only when every shard (and, with --verify, every record) is good;
1 when the output is incomplete, 2 for bad input (a flag, a folder, a labels file).

    python tools/build_imagenet_tfrecords.py \
        --train_dir=/data/ILSVRC2012/train --val_dir=/data/ILSVRC2012/val \
        --val_labels=/data/ILSVRC2012/LOC_val_solution.csv --output_dir=/data/imagenet-tfrecords

Your own photos, one sub-folder per class in both splits (any folder names; no labels file: the
validation folder names the label, the class texts are the folder names):

    python tools/build_imagenet_tfrecords.py --train_dir=mine/train --val_dir=mine/val \
        --output_dir=mine/data
"""

import sys

from absl import app, flags

from alexnet_tf.cli import startup
from alexnet_tf.convert import ConvertError, convert
from alexnet_tf.convert.converter import DEFAULT_QUALITY, DEFAULT_SEED
from alexnet_tf.convert.verify import verify  # TensorFlow is imported only by --verify
from alexnet_tf.data.manifest import ManifestError
from alexnet_tf.files.atomic import WriteError

FLAGS = flags.FLAGS
flags.DEFINE_string(
    "train_dir", None,
    "train/<wnid>/ folders, <wnid>.tar files, or ILSVRC2012_img_train.tar itself; omit to skip.",
)  # fmt: skip
flags.DEFINE_string(
    "val_dir", None,
    "Validation images: a folder with --val_labels, ILSVRC2012_img_val.tar, or a folder of "
    "class folders named as --train_dir's (no --val_labels needed).",
)  # fmt: skip
flags.DEFINE_string(
    "val_labels",
    None,
    "Validation labels: LOC_val_solution.csv, the devkit's "
    "ILSVRC2012_validation_ground_truth.txt, or one wnid per line in sorted file-name order; "
    "not needed for a --val_dir of class folders.",
)
flags.DEFINE_string(
    "val_synset_order",
    None,
    "For devkit ground truth: the devkit's meta.mat (default: beside --val_labels) or a file "
    "of wnids in ILSVRC2012_ID order.",
)
flags.DEFINE_string(
    "labels_file", None,
    "'wnid [words]' lines: label order and class texts (default: sorted folders, texts the "
    "ILSVRC words of a wnid or else the folder name).",
)  # fmt: skip
flags.DEFINE_string("bbox_dir", None, "Bounding-box XMLs (Annotation/<wnid>/*.xml), optional.")
flags.DEFINE_string("output_dir", None, "Where shards and manifest.json go.")
flags.DEFINE_integer(
    "train_shards", None, "Training shards (default 1024; fewer if under 100 files a shard)."
)
flags.DEFINE_integer(
    "val_shards", None, "Validation shards (default 128; fewer if under 100 files a shard)."
)
flags.DEFINE_integer("resize", 256, "Shorter side to N + central N×N crop; 0 keeps the bytes.")
flags.DEFINE_integer("jpeg_quality", DEFAULT_QUALITY, "Quality of re-encoded JPEGs.")
flags.DEFINE_integer("label_offset", 0, "Added to stored labels; 1 = old 1-based readers.")
flags.DEFINE_integer("num_workers", None, "Writer processes (default: all cores).")
flags.DEFINE_integer("seed", DEFAULT_SEED, "Seed of the record shuffle.")
flags.DEFINE_bool("verify", False, "Re-read every shard after writing and check it.")
flags.mark_flag_as_required("output_dir")
PROGRAM = "build_imagenet_tfrecords"
BAD_INPUT = 2  # exit status: nothing was converted; 1 is an incomplete output


def main(argv: list[str]) -> int:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}", exitcode=BAD_INPUT)
    try:
        result = convert(
            output_dir=FLAGS.output_dir,
            train_dir=FLAGS.train_dir,
            val_dir=FLAGS.val_dir,
            val_labels=FLAGS.val_labels,
            val_synset_order=FLAGS.val_synset_order,
            labels_file=FLAGS.labels_file,
            bbox_dir=FLAGS.bbox_dir,
            train_shards=FLAGS.train_shards,
            val_shards=FLAGS.val_shards,
            resize=FLAGS.resize,
            jpeg_quality=FLAGS.jpeg_quality,
            label_offset=FLAGS.label_offset,
            num_workers=FLAGS.num_workers,
            seed=FLAGS.seed,
        )
    except ConvertError as e:
        print(f"{PROGRAM}: error: {e}", file=sys.stderr)
        return BAD_INPUT
    except WriteError as e:  # no space, quota, read-only: whole shards are kept
        print(
            f"{PROGRAM}: error: {e}; free some space and run the same command to resume",
            file=sys.stderr,
        )
        return 1
    except KeyboardInterrupt:
        print(
            "\ninterrupted: whole shards are kept; run the same command to resume", file=sys.stderr
        )
        return 130
    for kind, entries in (("skipped", result.skipped), ("repaired", result.repaired)):
        for entry in entries:
            print(f"{kind}: {entry['file']}: {entry['reason']}", file=sys.stderr)
    for bad in result.bad_boxes:
        print(f"box skipped: {bad['file']} ({bad['image']}): {bad['detail']}", file=sys.stderr)
    print(
        f"{result.num_examples} records; {len(result.skipped)} skipped, {len(result.repaired)} "
        f"repaired, {len(result.bad_boxes)} boxes skipped; {result.shards_written} shards "
        f"written, {result.shards_reused} kept",
        file=sys.stderr,
    )
    if not result.complete:
        for error in result.errors:
            print(f"{PROGRAM}: error: {error}", file=sys.stderr)
        print("incomplete: run the same command again to finish", file=sys.stderr)
        return 1
    print(f"wrote {result.manifest_path}", file=sys.stderr)
    if FLAGS.verify:
        try:
            checked = verify(FLAGS.output_dir)
        except ManifestError as e:
            print(f"{PROGRAM}: error: {e}", file=sys.stderr)
            return 1
        for problem in checked.problems:
            print(f"verify: {problem}", file=sys.stderr)
        print(f"verify: {checked.num_records} records, {len(checked.problems)} problems")
        return 0 if checked.ok else 1
    return 0


if __name__ == "__main__":
    startup.quiet_start()
    startup.run(main, PROGRAM, usage_status=BAD_INPUT)
