"""Images per second of the converter, against this machine's JPEG decode + encode.

    python benchmarks/convert.py [--num_images=480] [--rounds=3] [--num_workers=N]

In one run, on the same real photographs (scikit-learn's and scikit-image's sample photos, 300 to
1000 pixels a side, encoded once as JPEG files in a class tree) and with the same number of
processes:

* baseline: each process reads a file, decodes it fully and encodes it again (Pillow, quality 95)
  — what the cores can decode and encode;
* resize256: the converter with --resize=256 (decode, shorter side 256 + central crop, encode,
  statistics, records, shards);
* copy: the converter with --resize=0 (original bytes kept; decoded for checking and statistics).

Each is run whole, worker start-up included, in `--rounds` interleaved rounds (the machine may
be shared: load from others then hits all three alike); the medians are reported as images per
wall-clock second and images per CPU second (this process and its joined workers: the rate per
core, which sharing affects least). Prints one JSON line; the goal is
resize256_fraction_of_baseline >= 0.8.
"""

from __future__ import annotations

import functools
import io
import json
import multiprocessing
import os
import resource
import shutil
import statistics
import sys
import tempfile
import time

from absl import app, flags

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from alexnet_tf.convert import convert  # noqa: E402
from alexnet_tf.data.demo_data import encode_jpeg, sample_photographs  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_integer("num_images", 480, "Images in the benchmark tree.")
flags.DEFINE_integer("rounds", 3, "Interleaved rounds of the three measurements; medians reported.")
flags.DEFINE_integer("num_workers", None, "Processes (default: all cores).")
flags.DEFINE_integer("jpeg_quality", 95, "Quality of every encode.")

_COLOUR_PHOTOS = (
    "china",
    "flower",
    "astronaut",
    "coffee",
    "chelsea",
    "rocket",
    "hubble_deep_field",
)


def _write_tree(root: str, count: int) -> list[str]:
    photos = sample_photographs()
    encoded = [encode_jpeg(photos[name], quality=90) for name in _COLOUR_PHOTOS]
    paths = []
    for i in range(count):
        folder = os.path.join(root, "train", f"n{i % 4:08d}")
        os.makedirs(folder, exist_ok=True)
        paths.append(os.path.join(folder, f"image_{i:05d}.JPEG"))
        with open(paths[-1], "wb") as f:
            f.write(encoded[i % len(encoded)])
    return paths


def _decode_encode(path: str, quality: int) -> int:
    from PIL import Image

    with open(path, "rb") as f:
        data = f.read()
    image = Image.open(io.BytesIO(data)).convert("RGB")
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=quality)
    return len(out.getvalue())


def _cpu_seconds() -> float:
    """CPU time of this process plus its finished children (the worker pools, once joined)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def _baseline(paths: list[str], workers: int) -> int:
    work = functools.partial(_decode_encode, quality=FLAGS.jpeg_quality)
    with multiprocessing.get_context("spawn").Pool(workers) as pool:
        pool.map(work, paths, chunksize=4)
        pool.close()
        pool.join()
    return len(paths)


def _converter(root: str, output: str, resize: int, workers: int) -> int:
    shutil.rmtree(output, ignore_errors=True)  # no shard may be kept from an earlier round
    result = convert(
        output_dir=output,
        train_dir=os.path.join(root, "train"),
        train_shards=workers * 4,
        resize=resize,
        jpeg_quality=FLAGS.jpeg_quality,
        num_workers=workers,
        show_progress=False,
    )
    assert result.complete, result.errors
    return result.num_examples["train"]


def _measure(run) -> tuple[float, float]:
    """(images per wall-clock second, images per CPU second) of one run, start-up included."""
    wall, cpu = time.perf_counter(), _cpu_seconds()
    count = run()
    return count / (time.perf_counter() - wall), count / (_cpu_seconds() - cpu)


def main(argv: list[str]) -> None:
    del argv
    workers = FLAGS.num_workers or os.cpu_count() or 1
    runs = {"baseline": [], "resize256": [], "copy": []}
    with tempfile.TemporaryDirectory() as root:
        paths = _write_tree(root, FLAGS.num_images)
        for _ in range(FLAGS.rounds):  # interleaved, so load from others hits all three alike
            runs["baseline"].append(_measure(lambda: _baseline(paths, workers)))
            for name, resize in (("resize256", 256), ("copy", 0)):
                output = os.path.join(root, name)
                runs[name].append(
                    _measure(lambda o=output, r=resize: _converter(root, o, r, workers))
                )
    wall = {k: statistics.median(w for w, _ in v) for k, v in runs.items()}
    cpu = {k: statistics.median(c for _, c in v) for k, v in runs.items()}
    report = {"images": FLAGS.num_images, "processes": workers, "rounds": FLAGS.rounds}
    for name in runs:
        report[f"{name}_images_per_sec"] = round(wall[name], 1)
        report[f"{name}_images_per_cpu_sec"] = round(cpu[name], 1)
    for name in ("resize256", "copy"):
        report[f"{name}_fraction_of_baseline"] = round(wall[name] / wall["baseline"], 2)
        report[f"{name}_cpu_fraction_of_baseline"] = round(cpu[name] / cpu["baseline"], 2)
    print(json.dumps(report))


if __name__ == "__main__":
    app.run(main)
