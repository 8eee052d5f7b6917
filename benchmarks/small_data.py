r"""Does configs/demo.cfg hold beyond the digits? Trained on small real sets, beside a linear model.

For each set (alexnet_tf/data/small_sets.py: the digits, in colour and in grey, crops of the
bundled photographs, and crops of ten grey textures), this writes the ILSVRC folder layout,
converts it with the real converter, trains `python -m alexnet_tf.train
--flagfile=configs/demo.cfg` with nothing changed but --data_dir and --workdir, scores it with
the ten-patch test, and fits a logistic regression (scikit-learn, standardized 32×32 RGB pixels
of the same JPEGs) on the same split:

    python benchmarks/small_data.py --output_dir=/tmp/small_data            # all sets
    python benchmarks/small_data.py --sets=photos --extra_flags=--epochs=1   # one set, a variant
    python benchmarks/small_data.py --train_per_class=200 --val_per_class=50  # bigger sets

Prints one table row per set: images, ten-patch top-1 error of the network, error of the linear
model, wall time. Run it from the repository root. Each set is minutes of training on a CPU.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import time

from absl import app, flags

from alexnet_tf.convert import convert
from alexnet_tf.data import demo_data, small_sets

OUTPUT_DIR = flags.DEFINE_string("output_dir", "/tmp/small_data", "Where sets and runs go.")
SETS = flags.DEFINE_list("sets", ["digits", "digits_grey", "photos", "textures"], "Sets to run.")
FLAGFILE = flags.DEFINE_string("flagfile_to_test", "configs/demo.cfg", "The recipe under test.")
EXTRA_FLAGS = flags.DEFINE_string("extra_flags", "", "Appended to the training command.")
LINEAR_SIZE = flags.DEFINE_integer("linear_size", 32, "Side of the pixels the linear model sees.")
TRAIN_PER_CLASS = flags.DEFINE_integer("train_per_class", 100, "Training images per class.")
VAL_PER_CLASS = flags.DEFINE_integer("val_per_class", 25, "Validation images per class.")

BUILDERS = {
    "digits": lambda root, **sizes: small_sets.write_digit_tree(root, **sizes),
    "digits_grey": lambda root, **sizes: small_sets.write_digit_tree(root, grayscale=True, **sizes),
    "photos": lambda root, **sizes: small_sets.write_photo_tree(root, **sizes),
    "textures": lambda root, **sizes: small_sets.write_photo_tree(root, textures=True, **sizes),
}


def linear_error(info: dict, size: int) -> float:
    """Validation error of a logistic regression on standardized size×size RGB pixels."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    data = small_sets.load_tree(info, size)
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    model.fit(*data["train"])
    return 1.0 - model.score(*data["validation"])


def network_error(data_dir: str, workdir: str) -> float:
    """Trains the recipe under test on `data_dir`; returns its ten-patch top-1 error."""
    from alexnet_tf.results import evaluation

    command = [
        sys.executable, "-m", "alexnet_tf.train", f"--flagfile={FLAGFILE.value}",
        f"--data_dir={data_dir}", f"--workdir={workdir}", *shlex.split(EXTRA_FLAGS.value),
    ]  # fmt: skip
    print("  " + " ".join(command), flush=True)
    subprocess.run(command, check=True)
    result = evaluation.evaluate([workdir], data_dir, modes=["ten_patch"], log=lambda _: None)
    return result["ten_patch"]["top1_error"]


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    unknown = sorted(set(SETS.value) - BUILDERS.keys())
    if unknown:
        raise app.UsageError(f"--sets: unknown {unknown}; choose from {sorted(BUILDERS)}")
    rows = []
    for name in SETS.value:
        root = os.path.join(OUTPUT_DIR.value, name)
        start = time.time()
        try:
            info = BUILDERS[name](
                os.path.join(root, "raw"),
                train_per_class=TRAIN_PER_CLASS.value,
                val_per_class=VAL_PER_CLASS.value,
            )
        except demo_data.DemoDataError as e:  # e.g. more digits per class than the scans hold
            sys.exit(f"error: --sets={name}: {e}")
        data_dir = os.path.join(root, "data")
        converted = convert(
            output_dir=data_dir, train_dir=info["train_dir"], val_dir=info["val_dir"],
            val_labels=info["val_labels"], labels_file=info["labels_file"], show_progress=False,
        )  # fmt: skip
        if not converted.complete:
            sys.exit(f"error: converting {name} failed: {converted.errors[:3]}")
        linear = linear_error(info, LINEAR_SIZE.value)
        network = network_error(data_dir, os.path.join(root, "train"))
        rows.append(
            (name, info["num_train"], info["num_val"], network, linear, time.time() - start)
        )
        print(f"{name}: network {network:.1%}, logistic regression {linear:.1%}", flush=True)
    header = ("set", "train", "val", "network ten-patch", "logistic", "wall")
    print("\n{:12} {:>6} {:>5} {:>18} {:>9} {:>7}".format(*header))
    for name, n_train, n_val, network, linear, seconds in rows:
        print(
            f"{name:12} {n_train:6d} {n_val:5d} {network:17.1%} {linear:9.1%} {seconds / 60:6.1f}m"
        )
    print(f"uptime: {os.getloadavg()}")


if __name__ == "__main__":
    app.run(main)
