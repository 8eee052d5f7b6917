"""The tf.data input of section 4.1: random 227×227 crops, and the ten patches.

Training, the paper's four-stage overlap ("load batch n+3 from disk, transform n+2 on the CPU,
copy n+1 to the GPU, train on n"): the first two stages are one tf.data graph, and
`device_prefetch.DevicePrefetcher` copies its batches to the accelerator ahead of the step:

    shards ─ interleave ─ shuffle ─ repeat ─ crop-decode (uint8) ─ batch ─ prefetch ─ copy
      n+3 (read)                             n+2 (CPU)                         n+1 (device)

Records are parsed, checked and given their crop offsets in blocks of `PARSE_BLOCK` (one
vectorized op each), so only the crop-decode runs per image: the training pipeline then runs as
fast as decoding alone. Only the 227×227 crop of each 256×256 JPEG is decoded
(`tf.image.decode_and_crop_jpeg`) and the data stays `uint8`: the reflections and the float
work (`augment.Normalizer`: reflect, mean, PCA lighting) run on whole batches inside the
training step, on the accelerator where there is one.
Images whose shorter side is not 256 (shards of original-size photos, as tensorflow/models'
build_imagenet_data.py writes them) are decoded, cut to their central square and resized to
256×256 first, as the paper did (section 2).

Evaluation: the centre crop, or the paper's ten patches (`TEN_PATCHES`), in batches of a fixed
size; the last batch is padded and the `mask` says which rows are real, so every example counts
exactly once.

Localization (`with_boxes=True`): training examples carry one ground-truth box through their
random crop (`examples.train_boxes`), and `Normalizer.reflect_boxes` mirrors the boxes whose
images the batch reflection mirrored; evaluation examples carry their whole ground-truth boxes
in original-image pixels and the `geometry` that `boxes.patch_boxes_to_original` needs to map a
prediction on any evaluated patch back to the original image.

The crops themselves are in `crops.py` (shared with the SavedModel), the record keys in
`examples.py`, the box geometry in `boxes.py`. Faults raise `InputError` naming the file
(`shard_checks.py`): missing, empty, truncated or non-TFRecord shards are found before the first
step; errors met while iterating are translated by wrapping the loop in `input_errors(files)`.

    python benchmarks/input_pipeline.py --data_dir=DATA   # images/s of each pipeline
"""

from __future__ import annotations

import random
from collections.abc import Sequence

import tensorflow as tf

from alexnet_tf.data import examples as examples_lib
from alexnet_tf.data.augment import Normalizer, make_normalizer
from alexnet_tf.data.crops import (
    CENTRE,
    CROP_RANGE,
    TEN_PATCHES,
    crop_offsets,
    eval_crops,
    train_crop,
)
from alexnet_tf.data.examples import parse_example
from alexnet_tf.data.shard_checks import MARK, InputError, check_shards, input_errors
from alexnet_tf.model import IMAGE_SIZE

__all__ = [
    "CENTRE",
    "CROP_RANGE",
    "IMAGE_SIZE",
    "InputError",
    "Normalizer",
    "TEN_PATCHES",
    "check_shards",
    "crop_offsets",
    "eval_crops",
    "input_errors",
    "make_eval_dataset",
    "make_normalizer",
    "make_train_dataset",
    "parse_example",
    "train_crop",
    "train_preprocess",
]

SHUFFLE_BUFFER = 10_000  # records (encoded JPEGs, ~30 KB each at 256×256), as tensorflow/models
CYCLE_LENGTH = 16  # shards read at once
READ_BUFFER = 8 << 20  # bytes of read-ahead per shard
PARSE_BLOCK = 64  # records parsed and checked together (see _parsed)


# --------------------------------------------------------------------------- records


def _parsed(
    records: tf.data.Dataset, label_offset, num_classes, extra=None, extra_features=None
) -> tf.data.Dataset:
    """(encoded, label, *extra) per record of a dataset of (record, shard path) pairs.

    Records are parsed and checked in blocks of PARSE_BLOCK: every op of a per-record function
    costs CPU time on every image, and the vectorized parse and checks make the training
    pipeline as fast as decoding alone (BUILD.md). A record whose image is not a JPEG, or whose
    label is not a class index, stops the iterator with an assertion that names it; the message
    pieces are formatted only when a check fails, and `input_errors` joins them into a sentence.

    Args:
        extra: optional `extra(block_index, features)` giving a tuple of `[k, ...]` tensors of
            per-record values (the training crop offsets, boxes), from the block's position in
            the stream and its parsed features.
        extra_features: more keys to parse for `extra` (a `tf.io` spec).
    """
    upper = num_classes if num_classes is not None else tf.int32.max

    def parse(block_index, block):
        serialized, shards = block
        spec = {**examples_lib.FEATURES, **(extra_features or {})}
        features = tf.io.parse_example(serialized, spec)
        example = examples_lib.from_features(features, label_offset)
        names, labels = example["filename"], example["label"]
        jpeg = tf.strings.substr(example["encoded"], 0, 3) == b"\xff\xd8\xff"  # tf.io.is_jpeg
        in_range = (labels >= 0) & (labels < upper)
        not_jpeg = tf.argmin(tf.cast(jpeg, tf.int32))  # the first failing record (0 if none)
        bad_label = tf.argmin(tf.cast(in_range, tf.int32))
        checks = [
            tf.debugging.Assert(
                tf.reduce_all(jpeg),
                [MARK + "record", names[not_jpeg], "in", shards[not_jpeg],
                 "has image/encoded that is not a JPEG image"],
            ),
            tf.debugging.Assert(
                tf.reduce_all(in_range),
                [MARK + "record", names[bad_label], "in", shards[bad_label],
                 "has image/class/label", tf.cast(labels[bad_label], tf.int64) + label_offset,
                 f"which minus label_offset {label_offset} is not a class index in [0, {upper})"],
            ),
        ]  # fmt: skip
        with tf.control_dependencies(checks):
            parsed = (tf.identity(example["encoded"]), tf.identity(labels))
        if extra is not None:
            parsed += tuple(extra(block_index, features))
        return parsed

    return records.batch(PARSE_BLOCK).enumerate().map(parse).unbatch()


def train_preprocess(encoded: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
    """A random 227×227 crop of the 256×256 image (section 4.1's translations).

    Its horizontal reflection is drawn later, per batch, by `Normalizer(training=True)`: a
    per-image `tf.reverse` here cost 10-15% of the pipeline's rate (see augment.py).

    Args:
        encoded: JPEG bytes.
        seed: shape-[2] integer tensor; the crop is a pure function of it.

    Returns:
        uint8 [227, 227, 3].
    """
    return train_crop(encoded, crop_offsets(seed, 1)[0])


# --------------------------------------------------------------------------- datasets


def _records(files, context, *, shuffle_files, deterministic, seed):
    """(record, shard path) pairs of this worker's share of the files, interleaved."""
    n, index = (context.num_input_pipelines, context.input_pipeline_id) if context else (1, 0)
    by_record = n > 1 and len(files) < n  # too few files to give each worker its own
    if n > 1 and not by_record:
        files = files[index::n]
    names = tf.data.Dataset.from_tensor_slices(files)
    if shuffle_files and not by_record:
        names = names.shuffle(len(files), seed=seed)  # a new file order every epoch
    records = names.interleave(
        lambda f: tf.data.TFRecordDataset(f, buffer_size=READ_BUFFER).map(lambda r: (r, f)),
        cycle_length=min(CYCLE_LENGTH, len(files)),
        num_parallel_calls=tf.data.AUTOTUNE,
        # Sharding by record needs the same order on every worker.
        deterministic=deterministic or by_record,
    )
    if by_record:
        records = records.shard(n, index)
    return records


def _share(files: Sequence[str], batch_size: int, context) -> tuple[list[str], int]:
    if isinstance(files, str | bytes) or not files:
        raise InputError(f"expected a non-empty list of shard paths; got {files!r}")
    files = [str(f) for f in files]
    check_shards(files)
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1; got {batch_size}")
    per_replica = context.get_per_replica_batch_size(batch_size) if context else batch_size
    return files, per_replica


def _options(deterministic: bool, context) -> tf.data.Options:
    options = tf.data.Options()
    options.deterministic = deterministic
    if context is not None:  # already sharded by input_context; tf.distribute must not re-shard
        options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF
    return options


def make_train_dataset(
    files: list[str],
    batch_size: int,
    *,
    label_offset: int = 0,
    seed: int | None = None,
    shuffle_buffer: int = SHUFFLE_BUFFER,
    input_context: tf.distribute.InputContext | None = None,
    deterministic: bool = False,
    num_classes: int | None = None,
    with_boxes: bool = False,
) -> tf.data.Dataset:
    """The endless training stream of section 4.1: random crops, uint8.

    The reflections are drawn per batch by `Normalizer(training=True)` in the training step.

    Args:
        files: TFRecord shards of tf.train.Example (keys of `parse_example`).
        batch_size: the global batch; with `input_context`, each input pipeline yields
            `input_context.get_per_replica_batch_size(batch_size)` examples per batch.
        label_offset: subtracted from image/class/label (manifest.label_offset; 1 for shards
            of tensorflow/models, whose labels start at 1).
        seed: makes the file order, shuffle and crops reproducible with `deterministic`.
        shuffle_buffer: records in the shuffle buffer (they are also in iterator checkpoints).
        input_context: from `strategy.distribute_datasets_from_function`; each worker reads its
            own shards (or every n-th record when there are fewer shards than workers).
        deterministic: the same stream every run for a seed (a little slower).
        num_classes: when given, a label outside [0, num_classes) stops the run naming its record.
        with_boxes: also yield each example's ground-truth box (localization).

    Returns:
        A dataset of (images uint8 [B, 227, 227, 3], labels int32 [B]) that never ends; its
        iterator can be saved in a tf.train.Checkpoint and resumes exactly. With `with_boxes`:
        (images, labels, boxes float32 [B, 4], has_box bool [B]); `boxes` is one box of the
        image's class (the one with the largest part inside the crop), normalized to the
        227×227 crop and clipped to it, not yet reflected (`Normalizer.reflect_boxes` mirrors
        it with the image); zeros where has_box is False (no box, or none inside the crop).
        The images and labels are the same as without boxes, for the same seed.

    Raises:
        InputError: a shard is missing, empty, truncated or not a TFRecord file.
    """
    files, per_replica = _share(files, batch_size, input_context)
    n, index = (
        (input_context.num_input_pipelines, input_context.input_pipeline_id)
        if (input_context)
        else (1, 0)
    )
    if seed is None:
        seed = random.SystemRandom().randrange(2**31)
    records = _records(
        files, input_context, shuffle_files=True, deterministic=deterministic, seed=seed + index
    )
    # Shuffle before repeat: each epoch shows every example once and epochs do not blend.
    records = records.shuffle(shuffle_buffer, seed=seed + index).repeat()

    def offsets(block_index, features):
        # Each example's crop comes from its position in the stream, not from the order in
        # which parallel calls happen to run; the block counter is part of the iterator state.
        count = tf.shape(features["image/encoded"])[0]
        drawn = crop_offsets(
            tf.stack([tf.constant(seed, tf.int64), block_index * n + index]), count
        )
        if not with_boxes:
            return (drawn,)
        return (drawn, *examples_lib.train_boxes(features, drawn))

    boxes = examples_lib.TRAIN_BOX_FEATURES if with_boxes else None
    examples = _parsed(records, label_offset, num_classes, offsets, boxes)
    images = examples.map(
        lambda encoded, label, offset, *box: (train_crop(encoded, offset), label, *box),
        num_parallel_calls=tf.data.AUTOTUNE,
        deterministic=deterministic,
    )
    # Batch while still uint8: the float work is done per batch on the accelerator.
    batches = images.batch(per_replica, drop_remainder=True)
    return batches.prefetch(tf.data.AUTOTUNE).with_options(_options(deterministic, input_context))


def make_eval_dataset(
    files: list[str],
    batch_size: int,
    *,
    label_offset: int = 0,
    ten_patch: bool = False,
    input_context: tf.distribute.InputContext | None = None,
    num_classes: int | None = None,
    with_boxes: bool = False,
) -> tf.data.Dataset:
    """Every example of the files exactly once: centre crops or the ten patches of section 4.1.

    Returns:
        A finite dataset of (images, labels int32 [B], mask bool [B]); images are uint8
        [B, 227, 227, 3], or [B, 10, 227, 227, 3] with `ten_patch` (order: `TEN_PATCHES`, then
        their reflections). Every batch has B rows; the rows of the last one past the end of the
        data have mask False, label 0 and black images, and must not be counted.
        With `with_boxes`: (images, labels, mask, gt_boxes float32 [B, G, 4], gt_valid bool
        [B, G], geometry float32 [B, 6]): each image's whole ground-truth boxes (ymin, xmin,
        ymax, xmax) in ORIGINAL-image pixels, never clipped by the central crop, padded to G
        (the batch's largest count, at least 1; gt_valid says which are real), and the
        `geometry` that `boxes.patch_boxes_to_original` maps predicted boxes back with.

    Raises:
        InputError: a shard is missing, empty, truncated or not a TFRecord file.
    """
    files, per_replica = _share(files, batch_size, input_context)
    records = _records(files, input_context, shuffle_files=False, deterministic=True, seed=None)

    def preprocess(encoded, label, *box):
        return (eval_crops(encoded, ten_patch), label, tf.constant(True), *box)

    def ground_truth(block_index, features):
        return (*examples_lib.ground_truth(features), examples_lib.geometry(features))

    extra, boxes = (ground_truth, examples_lib.BOX_FEATURES) if with_boxes else (None, None)
    examples = _parsed(records, label_offset, num_classes, extra, boxes)
    crops = examples.map(preprocess, num_parallel_calls=tf.data.AUTOTUNE)
    # padded_batch: the number of boxes differs between images (it is a no-op without boxes).
    batches = crops.padded_batch(per_replica) if with_boxes else crops.batch(per_replica)
    batches = batches.map(lambda *batch: tuple(_pad_rows(t, per_replica) for t in batch))
    return batches.prefetch(tf.data.AUTOTUNE).with_options(_options(True, input_context))


def _pad_rows(tensor: tf.Tensor, size: int) -> tf.Tensor:
    """Pads the first axis to `size` with zeros (False for bool), giving a static batch shape."""
    missing = size - tf.shape(tensor)[0]
    paddings = tf.concat([[[0, missing]], tf.zeros([tensor.shape.rank - 1, 2], tf.int32)], 0)
    return tf.ensure_shape(tf.pad(tensor, paddings), [size, *tensor.shape[1:]])
