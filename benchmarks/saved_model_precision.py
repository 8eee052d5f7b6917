"""The bfloat16 SavedModel against the float32 one: same answers, and how much faster it serves.

Exports a trained run twice (`alexnet_tf.export`'s `--compute_dtype=float32` and `bfloat16`), runs
both on the run's validation images (the centre patch, section 4.1, through `predict_crops`),
and prints one JSON line: the fraction of images whose top-1 class agrees, the largest
difference of a probability, and images/s of each (the median of `--repeats` interleaved
passes over `--batch_size` crops).

    python benchmarks/saved_model_precision.py --workdir=demo_work/train
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from alexnet_tf.cli import performance  # noqa: E402

performance.enable_onednn()  # before TensorFlow is imported: it reads the setting only then

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from absl import app, flags  # noqa: E402

from alexnet_tf.data.input_pipeline import make_eval_dataset  # noqa: E402
from alexnet_tf.data.manifest import load_manifest  # noqa: E402
from alexnet_tf.results import saved_model, trained_models  # noqa: E402

flags.DEFINE_string("workdir", None, "A training run (its latest checkpoint is exported).")
flags.DEFINE_string("data_dir", None, "Its data (default: the one the run recorded).")
flags.DEFINE_integer("batch_size", 128, "Crops per timed call.")
flags.DEFINE_integer("repeats", 3, "Timed passes of each model; the median is kept.")


def run(workdir: str, data_dir: str | None = None, batch_size: int = 128, repeats: int = 3):
    data_dir = trained_models.resolve_data_dir(workdir, data_dir)
    files = load_manifest(data_dir).split("validation").files
    crops, labels = [], []
    for images, label, mask in make_eval_dataset(files, 100):
        crops.append(images.numpy()[mask.numpy()])  # padding rows are not images
        labels.append(label.numpy()[mask.numpy()])
    crops, labels = np.concatenate(crops), np.concatenate(labels)
    with tempfile.TemporaryDirectory() as tmp:
        models = {
            dtype: tf.saved_model.load(
                saved_model.export(workdir, os.path.join(tmp, dtype), compute_dtype=dtype)
            )
            for dtype in saved_model.COMPUTE_DTYPES
        }
        probabilities = {
            dtype: np.concatenate(
                [
                    m.predict_crops(crops[i : i + 100])["predictions"].numpy()
                    for i in range(0, len(crops), 100)
                ]
            )  # fmt: skip
            for dtype, m in models.items()
        }
        timed = np.resize(crops, (batch_size, *crops.shape[1:]))
        seconds = {dtype: [] for dtype in models}
        for m in models.values():
            m.predict_crops(timed)["predictions"].numpy()  # warm-up
        for _ in range(repeats):
            for dtype, m in models.items():  # interleaved: load hits both alike
                start = time.perf_counter()
                m.predict_crops(timed)["predictions"].numpy()
                seconds[dtype].append(time.perf_counter() - start)
    top1 = {d: p.argmax(-1) for d, p in probabilities.items()}
    rate = {d: batch_size / statistics.median(s) for d, s in seconds.items()}
    return {
        "images": len(crops),
        "top1_agreement": round(float(np.mean(top1["bfloat16"] == top1["float32"])), 4),
        "top1_accuracy": {d: round(float(np.mean(t == labels)), 4) for d, t in top1.items()},
        "max_probability_difference": round(
            float(np.abs(probabilities["bfloat16"] - probabilities["float32"]).max()), 4
        ),
        "images_per_sec": {d: round(r, 2) for d, r in rate.items()},
        "bfloat16_speedup": round(rate["bfloat16"] / rate["float32"], 2),
        "batch_size": batch_size,
        "repeats": repeats,
    }


def main(argv):
    del argv
    f = flags.FLAGS
    if not f.workdir:
        sys.exit("saved_model_precision.py: pass --workdir (a training run)")
    print(json.dumps(run(f.workdir, f.data_dir, f.batch_size, f.repeats)), flush=True)


if __name__ == "__main__":
    app.run(main)
