"""Images per second of the input pipelines, against decoding alone.

    python benchmarks/input_pipeline.py                      # shards of sample photos first
    python benchmarks/input_pipeline.py --data_dir=DATA      # the converter's shards (train split)

Three pipelines read the same shards on this machine in the same run, in alternating rounds:

* decode: read, parse and decode the centre 227×227 of each JPEG, batch — the limit, since
  every training image costs one crop-decode;
* train: `make_train_dataset` (shuffle, random crop-decode, batch, prefetch; the reflections
  are drawn per batch in the training step, not here);
* eval: `make_eval_dataset(ten_patch=True)` (full decode, ten patches), repeated;
* train_device: the train pipeline through `DevicePrefetcher` (depth 2) onto the device the
  training step would use (the first GPU, else the CPU, where the copy is a no-op).

Prints one JSON line: decode_images_per_sec, train_images_per_sec, eval_images_per_sec,
train_device_images_per_sec (each the median over rounds, also per core), cores,
train_fraction_of_decode (goal: >= 0.9): the median, over rounds, of the train rate divided by
the decode rate timed just before it, and device_fraction_of_train: the same for train_device
against train (what the copy stage costs; without a step to overlap, on a GPU it includes the
copy time itself). Each pipeline's CPU time per image (the process's user + system time over the
segment: every tf.data thread) is printed too, `*_cpu_ms_per_image`, with
`train_fraction_of_decode_cpu`, the median of decode's CPU time per image over train's: when both
pipelines keep every core busy this is the same ratio, less disturbed by the machine's drift.
"""

from __future__ import annotations

import gc
import json
import os
import statistics
import sys
import tempfile
import time

from absl import app, flags

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from alexnet_tf.data import input_pipeline, records  # noqa: E402
from alexnet_tf.data.manifest import load_manifest  # noqa: E402
from alexnet_tf.training import distribution
from alexnet_tf.training.device_prefetch import DevicePrefetcher  # noqa: E402

DATA_DIR = flags.DEFINE_string(
    "data_dir", None, "Converter output (manifest.json + 256×256 shards); reads its train split."
)
BATCH = flags.DEFINE_integer("batch_size", 128, "Images per batch (the paper's 128).")
BATCHES = flags.DEFINE_integer("batches", 20, "Timed batches per pipeline and round.")
ROUNDS = flags.DEFINE_integer("rounds", 7, "Alternating rounds; medians are reported.")
SHUFFLE = flags.DEFINE_integer("shuffle_buffer", 2_000, "Shuffle buffer of the train pipeline.")


WARMUP = 8  # batches before the clock starts: buffers and autotuning settle


def write_photo_shards(directory: str, num_shards: int = 8, per_shard: int = 128) -> list[str]:
    """Shards of 256×256 JPEGs cut from the photographs that ship with scikit-learn and
    scikit-image (different scales and positions, so no two records are the same)."""
    import skimage.data
    from sklearn.datasets import load_sample_images

    photos = list(load_sample_images().images)
    photos += [skimage.data.astronaut(), skimage.data.coffee(), skimage.data.chelsea()]
    rng = np.random.default_rng(0)
    files = []
    for shard in range(num_shards):
        path = os.path.join(directory, f"train-{shard:05d}-of-{num_shards:05d}")
        with tf.io.TFRecordWriter(path) as writer:
            for k in range(per_shard):
                photo = photos[(shard * per_shard + k) % len(photos)]
                side = int(rng.integers(256, min(photo.shape[:2]) + 1))
                y = int(rng.integers(0, photo.shape[0] - side + 1))
                x = int(rng.integers(0, photo.shape[1] - side + 1))
                square = tf.image.resize(photo[y : y + side, x : x + side], [256, 256])
                jpeg = tf.io.encode_jpeg(tf.cast(tf.round(square), tf.uint8), quality=90)
                writer.write(
                    records.to_example(
                        encoded=jpeg.numpy(), height=256, width=256, label=k % 7,
                        filename=f"photo_{shard}_{k}.JPEG", synset=f"c{k % 7}", text="",
                    )
                )  # fmt: skip
        files.append(path)
    return files


def decode_only(files: list[str], batch_size: int) -> tf.data.Dataset:
    """Read, parse, crop-decode the centre, batch: the work no training pipeline can skip."""
    offset = input_pipeline.CENTRE

    def decode(record):
        encoded = input_pipeline.parse_example(record)["encoded"]
        window = [offset, offset, input_pipeline.IMAGE_SIZE, input_pipeline.IMAGE_SIZE]
        return tf.image.decode_and_crop_jpeg(encoded, window, channels=3)

    records = tf.data.Dataset.from_tensor_slices(files).interleave(
        tf.data.TFRecordDataset,
        cycle_length=min(input_pipeline.CYCLE_LENGTH, len(files)),
        num_parallel_calls=tf.data.AUTOTUNE,
        deterministic=False,
    )
    images = records.repeat().map(decode, tf.data.AUTOTUNE, deterministic=False)
    return images.batch(batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE)


def segment(make_iterator, batches: int, batch_size: int) -> tuple[float, float]:
    """Images/s of a fresh iterator in steady state.

    A new iterator per segment, deleted after it: an idle iterator keeps filling its buffers in
    the background, which would steal cores from the next pipeline timed, and a full buffer at
    the start of a segment would be counted as speed. The warm-up is consumed as fast as it
    comes, so no buffer is full when the clock starts.

    Returns:
        (images per second, CPU milliseconds per image).
    """
    iterator = make_iterator()
    for _ in range(WARMUP):
        next(iterator)
    start, cpu_start = time.perf_counter(), time.process_time()
    for _ in range(batches):
        next(iterator)
    rate = batches * batch_size / (time.perf_counter() - start)
    cpu_ms = (time.process_time() - cpu_start) * 1e3 / (batches * batch_size)
    if isinstance(iterator, DevicePrefetcher):
        iterator.close()
    del iterator
    gc.collect()
    return rate, cpu_ms


def run(data_dir: str | None, batch_size: int, batches: int, rounds: int, shuffle: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        if data_dir:
            files = load_manifest(data_dir).split("train").files
        else:
            print("writing shards of sample photographs ...", file=sys.stderr)
            files = write_photo_shards(tmp)
        train = input_pipeline.make_train_dataset(files, batch_size, shuffle_buffer=shuffle)
        devices = distribution.input_devices(tf.distribute.get_strategy())
        print(f"device prefetch to {devices}", file=sys.stderr)
        pipelines = {
            "decode": decode_only(files, batch_size).__iter__,
            "train": train.__iter__,
            "eval": input_pipeline.make_eval_dataset(files, batch_size, ten_patch=True)
            .repeat()
            .__iter__,
            "train_device": lambda: DevicePrefetcher(iter(train), devices, depth=2),
        }
        rates = {name: [] for name in pipelines}
        cpu = {name: [] for name in pipelines}
        for r in range(rounds):
            for name, make_iterator in pipelines.items():
                rate, cpu_ms = segment(make_iterator, batches, batch_size)
                rates[name].append(rate)
                cpu[name].append(cpu_ms)
            print(
                f"round {r + 1}/{rounds}: "
                + ", ".join(f"{k} {v[-1]:.0f}/s" for k, v in rates.items()),
                file=sys.stderr,
            )
    cores = len(os.sched_getaffinity(0))
    result = {f"{k}_images_per_sec": round(statistics.median(v), 1) for k, v in rates.items()}
    for k, v in rates.items():
        result[f"{k}_images_per_sec_per_core"] = round(statistics.median(v) / cores, 1)
    result["cores"] = cores
    # The load of a shared machine drifts: compare train with the decode segment timed just
    # before it, round by round, and take the median of those ratios.
    ratios = [t / d for t, d in zip(rates["train"], rates["decode"])]
    result["train_fraction_of_decode"] = round(statistics.median(ratios), 3)
    ratios = [t / d for t, d in zip(rates["train_device"], rates["train"])]
    result["device_fraction_of_train"] = round(statistics.median(ratios), 3)
    for k, v in cpu.items():
        result[f"{k}_cpu_ms_per_image"] = round(statistics.median(v), 3)
    ratios = [d / t for t, d in zip(cpu["train"], cpu["decode"])]
    result["train_fraction_of_decode_cpu"] = round(statistics.median(ratios), 3)
    result["rounds"] = rounds
    result["images_per_round"] = batches * batch_size
    return result


def main(argv):
    del argv
    result = run(DATA_DIR.value, BATCH.value, BATCHES.value, ROUNDS.value, SHUFFLE.value)
    print(json.dumps(result))


if __name__ == "__main__":
    app.run(main)
