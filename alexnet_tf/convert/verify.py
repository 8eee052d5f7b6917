"""`--verify`: re-read every shard the manifest lists and prove it is whole and readable.

For each shard: the file exists, its SHA-256 is the recorded one, it holds the recorded number of
records, and every record parses with the converter's keys, decodes as a 3-channel JPEG of the
stated height and width, has a label inside the manifest's classes, and boxes that lie inside
their image. The parsing spec is built from `records.FEATURE_SPEC` (every key required), the
one the converter writes and the input pipeline reads. Decoding uses plain tf.data and tf.io,
exactly as the training pipeline will.
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np

from alexnet_tf.convert import progress as progress_lib
from alexnet_tf.convert.shards import sha256_file
from alexnet_tf.data import manifest as manifest_lib
from alexnet_tf.data import records


@dataclasses.dataclass
class VerifyResult:
    ok: bool
    num_records: int
    problems: list[str]


def _check_records(path: str, num_classes: int, label_offset: int) -> tuple[int, list[str]]:
    """(records read, problems) of one TFRecord file."""
    import tensorflow as tf  # only --verify needs TensorFlow; the workers never import it

    from alexnet_tf.data.examples import tf_features

    spec = tf_features(required=True)  # every key of records.FEATURE_SPEC, as the converter writes

    def check(serialized):
        example = tf.io.parse_single_example(serialized, spec)
        shape = tf.shape(tf.io.decode_jpeg(example["image/encoded"], channels=0))
        stored = tf.stack([tf.sparse.to_dense(example[k]) for k in records.STORED_BOX_KEYS], 1)
        whole = tf.stack([tf.sparse.to_dense(example[k]) for k in records.ORIGINAL_BOX_KEYS], 1)
        original = tf.stack([example["image/original/height"], example["image/original/width"]])
        return (
            example["image/filename"],
            example["image/class/label"],
            shape,
            (example["image/height"], example["image/width"]),
            (stored, whole, tf.cast(original, tf.float32)),
        )

    dataset = tf.data.TFRecordDataset(path).map(check, num_parallel_calls=tf.data.AUTOTUNE)
    count, problems = 0, []
    try:
        for filename, label, shape, (height, width), boxes in dataset.as_numpy_iterator():
            count += 1
            name = filename.decode()
            if not label_offset <= label < label_offset + num_classes:
                problems.append(f"{path}: {name} has label {label} outside the classes")
            if list(shape) != [height, width, 3]:
                problems.append(f"{path}: {name} decodes to {list(shape)}, not {height}x{width}x3")
            problems += [f"{path}: {name} {p}" for p in _box_problems(*boxes)]
    except tf.errors.OpError as e:
        problems.append(f"{path}: record {count} can't be read or decoded: {e.message}")
    return count, problems


def _box_problems(stored: np.ndarray, whole: np.ndarray, original: np.ndarray) -> list[str]:
    """What is wrong with a record's boxes ([n, 4] stored fractions, [m, 4] original pixels)."""
    problems = []
    if len(stored) > len(whole):
        problems.append(f"has {len(stored)} stored boxes but {len(whole)} original ones")
    if len(stored) and not (
        np.all((stored >= 0) & (stored <= 1)) and np.all(stored[:, 2:] > stored[:, :2])
    ):
        problems.append("has a stored box outside [0, 1] or without area")
    limit = np.concatenate([original, original])
    if len(whole) and not (
        np.all((whole >= 0) & (whole <= limit)) and np.all(whole[:, 2:] > whole[:, :2])
    ):
        problems.append(f"has an original box outside its {original[1]:g}x{original[0]:g} image")
    return problems


def verify(data_dir: str, *, show_progress: bool = True) -> VerifyResult:
    """Re-reads every shard of `data_dir/manifest.json`; never raises for a bad shard.

    Raises:
        ManifestError: if the manifest itself is missing or malformed.
    """
    manifest = manifest_lib.load_manifest(data_dir)
    shards = [
        (file, expected, sha)
        for split in manifest.splits.values()
        for file, expected, sha in zip(split.files, split.num_records, split.sha256, strict=True)
    ]
    bar = progress_lib.Progress(sum(n for _, n, _ in shards), "verify") if show_progress else None
    problems, total = [], 0
    for path, expected, sha in shards:
        if not os.path.exists(path):
            problems.append(f"{path}: missing")
            continue
        if sha and sha256_file(path) != sha:
            problems.append(f"{path}: SHA-256 differs from the manifest (changed or corrupt)")
            continue
        count, shard_problems = _check_records(path, manifest.num_classes, manifest.label_offset)
        total += count
        problems += shard_problems
        if count != expected:
            problems.append(f"{path}: {count} records, the manifest says {expected}")
        if bar:
            bar.update(count)
    if bar:
        bar.close()
    return VerifyResult(ok=not problems, num_records=total, problems=problems)
