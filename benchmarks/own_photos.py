"""Your own photos, end to end: a class-folder tree, and predict's labels beside evaluate's.

`tree` writes a tree as a user's photo folder would be laid out: one folder per class, named
after the photograph its crops come from (scikit-learn's china and flower, scikit-image's
astronaut, camera, chelsea, coffee, hubble_deep_field, rocket; `small_sets.photo_classes`),
in train/ and val/. Convert it with no labels file, train or fine-tune, then predict on val/:

    python benchmarks/own_photos.py tree --root=/tmp/own
    python tools/build_imagenet_tfrecords.py --train_dir=/tmp/own/train --val_dir=/tmp/own/val \
        --output_dir=/tmp/own/data
    python -m alexnet_tf.predict --model=RUN --output=/tmp/own/val.csv /tmp/own/val
    python benchmarks/own_photos.py compare --model=RUN --data_dir=/tmp/own/data \
        --csv=/tmp/own/val.csv --val_dir=/tmp/own/val

`compare` scores each validation record the way evaluate does (the converted 256×256 JPEG,
`crops.eval_crops`, the network), matches it to predict's row for the original file (same class
folder and file name), and prints one JSON line: both top-1 accuracies, the images whose top-1
differs, and for each its two best probabilities in both (a near tie that the converter's
resize and JPEG re-encoding can tip).
"""

from __future__ import annotations

import csv
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402
from absl import app, flags  # noqa: E402

flags.DEFINE_string("root", None, "tree: where train/ and val/ go.")
flags.DEFINE_integer("train_per_class", 40, "tree: training crops per class.")
flags.DEFINE_integer("val_per_class", 15, "tree: validation crops per class.")
flags.DEFINE_integer("image_size", 96, "tree: side of each crop, in pixels.")
flags.DEFINE_integer("seed", 0, "tree: seed of the crops.")
flags.DEFINE_string("model", None, "compare: the trained network.")
flags.DEFINE_string("data_dir", None, "compare: the converted tree.")
flags.DEFINE_string("csv", None, "compare: predict's --output of the val folder.")
flags.DEFINE_string("val_dir", None, "compare: the val folder given to predict.")
FLAGS = flags.FLAGS


def write_tree(root: str, train_per_class: int, val_per_class: int, size: int, seed: int) -> None:
    """root/{train,val}/<photograph name>/<i>.jpg, random crops (small_sets.random_crop)."""
    from alexnet_tf.data import small_sets
    from alexnet_tf.data.demo_data import encode_jpeg

    rng = np.random.default_rng(seed)
    for _, text, photo in small_sets.photo_classes():
        name = text.removeprefix("photograph ")
        for split, count in (("train", train_per_class), ("val", val_per_class)):
            folder = os.path.join(root, split, name)
            os.makedirs(folder, exist_ok=True)
            for i in range(count):
                crop = small_sets.random_crop(photo, size, rng)
                with open(os.path.join(folder, f"{name}_{i:03d}.jpg"), "wb") as f:
                    f.write(encode_jpeg(crop))


def evaluate_rows(model: str, data_dir: str) -> tuple[dict, list[str]]:
    """{(class folder, file name): evaluate's centre-crop probabilities}, and the class names."""
    import tensorflow as tf

    from alexnet_tf.data.crops import eval_crops
    from alexnet_tf.data.manifest import load_manifest
    from alexnet_tf.results.trained_models import load_source

    manifest = load_manifest(data_dir)
    source = load_source(model, manifest)
    keys, batch, out = [], [], {}

    def flush():
        probabilities = source.predict(np.stack(batch))["predictions"]
        out.update(zip(keys, probabilities, strict=True))
        keys.clear()
        batch.clear()

    for record in tf.data.TFRecordDataset(manifest.split("validation").files):
        f = tf.train.Example.FromString(record.numpy()).features.feature
        encoded = f["image/encoded"].bytes_list.value[0]
        keys.append(
            (
                f["image/class/synset"].bytes_list.value[0].decode(),
                f["image/filename"].bytes_list.value[0].decode(),
            )
        )
        batch.append(eval_crops(tf.constant(encoded)).numpy())
        if len(batch) == 32:
            flush()
    if batch:
        flush()
    return out, list(source.wnids)


def compare(model: str, data_dir: str, csv_path: str, val_dir: str) -> dict:
    evaluated, wnids = evaluate_rows(model, data_dir)
    with open(csv_path, newline="") as f:
        rows = list(csv.DictReader(f))
    differ, right_predict, right_evaluate, missing = [], 0, 0, 0
    skipped = sum(1 for row in rows if row["error"])
    rows = [row for row in rows if not row["error"]]
    for row in rows:
        folder, name = os.path.relpath(row["image"], val_dir).split(os.sep)[-2:]
        if (folder, name) not in evaluated:
            missing += 1
            continue
        probabilities = evaluated[(folder, name)]
        order = np.argsort(-probabilities, kind="stable")
        evaluate_top1 = wnids[order[0]]
        right_evaluate += evaluate_top1 == folder
        right_predict += row["class_1"] == folder
        if row["class_1"] != evaluate_top1:
            differ.append(
                {
                    "image": row["image"],
                    "predict": [row["class_1"], float(row["probability_1"]), row["class_2"],
                                float(row["probability_2"])],
                    "evaluate": [evaluate_top1, round(float(probabilities[order[0]]), 4),
                                 wnids[order[1]], round(float(probabilities[order[1]]), 4)],
                }
            )  # fmt: skip
    scored = len(rows) - missing
    return {
        "images": scored,
        "skipped": skipped,
        "not_in_records": missing,
        "predict_top1_accuracy": round(right_predict / scored, 4),
        "evaluate_top1_accuracy": round(right_evaluate / scored, 4),
        "top1_differs": len(differ),
        "differences": differ,
    }


def main(argv):
    if len(argv) != 2 or argv[1] not in ("tree", "compare"):
        raise app.UsageError("say tree or compare")
    if argv[1] == "tree":
        write_tree(
            FLAGS.root, FLAGS.train_per_class, FLAGS.val_per_class, FLAGS.image_size, FLAGS.seed
        )
        print(f"wrote {FLAGS.root}/train and {FLAGS.root}/val")
    else:
        print(json.dumps(compare(FLAGS.model, FLAGS.data_dir, FLAGS.csv, FLAGS.val_dir)))


if __name__ == "__main__":
    app.run(main)
