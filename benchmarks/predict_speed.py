"""alexnet_tf.predict over a folder of photographs: its rate beside the network's, and its memory.

On one machine, in this order: the network's own inference rate (benchmarks/model_speed.py
--measure=infer at the same batch size and class count), then `predictions.predict` on the first
--small and on all --images files of a folder of real JPEGs (crops of scikit-learn's sample
photographs, 240×320, as a camera folder would hold), each in a fresh process that reports its
rate and its peak resident memory (ru_maxrss). Prints one JSON line: predict's steady rate
(after its first batch) as a fraction of the inference rate, and the two peaks.

    python benchmarks/predict_speed.py --model=demo_work/train
    flock /tmp/alexnet_cpu.lock python benchmarks/predict_speed.py --model=/tmp/demo_src/train
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app, flags  # noqa: E402

flags.DEFINE_string("model", None, "A training WORKDIR, ckpt-N or SavedModel.")
flags.DEFINE_integer("images", 1000, "Images of the large run.")
flags.DEFINE_integer("small", 200, "Images of the small run (memory must not grow with count).")
flags.DEFINE_integer("batch_size", 32, "Images per forward pass, for predict and the network.")
flags.DEFINE_string("folder", None, "Where the JPEGs go (default: a temporary folder).")
flags.DEFINE_integer("child", 0, "Internal: predict on the first N files of --folder.")
FLAGS = flags.FLAGS


def write_photos(folder: str, count: int) -> None:
    """`count` 240×320 JPEG crops of the two sample photographs at different offsets."""
    from sklearn.datasets import load_sample_images

    from alexnet_tf.data.demo_data import encode_jpeg

    os.makedirs(folder, exist_ok=True)
    photos = load_sample_images().images  # two 427×640
    for i in range(count):
        path = os.path.join(folder, f"photo_{i:05d}.jpg")
        if os.path.exists(path):
            continue
        photo = photos[i % 2]
        y, x = (i * 37) % (427 - 240), (i * 53) % (640 - 320)
        with open(path, "wb") as f:
            f.write(encode_jpeg(photo[y : y + 240, x : x + 320]))


def child(count: int) -> dict:
    """Predicts on the first `count` files; its rate and this process's peak memory."""
    from alexnet_tf.results import predictions

    files = sorted(os.path.join(FLAGS.folder, n) for n in os.listdir(FLAGS.folder))[:count]
    source = predictions.load_model(FLAGS.model)
    times = []
    start = time.perf_counter()
    result = predictions.predict(
        source, files, batch_size=FLAGS.batch_size, progress=False,
        on_prediction=lambda p: times.append(time.perf_counter()),
    )  # fmt: skip
    total = time.perf_counter() - start
    first = FLAGS.batch_size  # the first batch pays for tracing and the pipeline's start
    steady = (len(times) - first) / (times[-1] - times[first - 1])
    return {
        "images": result.num_images,
        "skipped": result.num_skipped,
        "images_per_sec": round(count / total, 2),
        "steady_images_per_sec": round(steady, 2),
        "max_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


def main(argv):
    del argv
    if FLAGS.child:
        print(json.dumps(child(FLAGS.child)))
        return
    if not FLAGS.model:
        raise app.UsageError("pass --model")
    from alexnet_tf.results import trained_models
    from alexnet_tf.runs.checkpoints import read_model_config

    workdir = trained_models.training_workdir(FLAGS.model)
    if workdir:  # without loading the network into this process
        num_classes = read_model_config(workdir)["num_classes"]
    else:
        num_classes = trained_models.load_source(FLAGS.model).num_classes
    folder = FLAGS.folder or tempfile.mkdtemp(prefix="predict_speed_")
    write_photos(folder, FLAGS.images)
    here = os.path.dirname(os.path.abspath(__file__))
    speed = subprocess.run(
        [sys.executable, os.path.join(here, "model_speed.py"), "--measure=infer",
         f"--batch_size={FLAGS.batch_size}", f"--num_classes={num_classes}", "--repeats=3",
         "--steps=3"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    infer = json.loads(speed.stdout.strip().splitlines()[-1])["infer_images_per_sec"]
    runs = {}
    for count in (FLAGS.small, FLAGS.images):
        out = subprocess.run(
            [sys.executable, __file__, f"--model={FLAGS.model}", f"--folder={folder}",
             f"--child={count}", f"--batch_size={FLAGS.batch_size}"],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        runs[count] = json.loads(out.stdout.strip().splitlines()[-1])
    large = runs[FLAGS.images]
    print(
        json.dumps(
            {
                "network_infer_images_per_sec": infer,
                "predict": runs,
                "steady_fraction_of_network": round(large["steady_images_per_sec"] / infer, 3),
                "overall_fraction_of_network": round(large["images_per_sec"] / infer, 3),
                "max_rss_mb_small_vs_large": [runs[FLAGS.small]["max_rss_mb"], large["max_rss_mb"]],
                "batch_size": FLAGS.batch_size,
            }
        )
    )


if __name__ == "__main__":
    app.run(main)
