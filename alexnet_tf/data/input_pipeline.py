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

Faults raise `InputError` naming the file: missing, empty, truncated or non-TFRecord shards are
found before the first step; errors met while iterating (a record whose image does not decode, a
shard damaged after the check) are translated by wrapping the loop in `input_errors(files)`.

    python benchmarks/input_pipeline.py --data_dir=DATA   # images/s of each pipeline
"""

from __future__ import annotations

import contextlib
import logging
import random
import re
import struct
from collections.abc import Iterator, Sequence

import tensorflow as tf

from alexnet_tf.data.augment import STORED_SIZE, Normalizer, make_normalizer
from alexnet_tf.model import IMAGE_SIZE

__all__ = [
    "InputError",
    "Normalizer",
    "TEN_PATCHES",
    "check_shards",
    "eval_crops",
    "input_errors",
    "make_eval_dataset",
    "make_normalizer",
    "make_train_dataset",
    "parse_example",
    "crop_offsets",
    "train_crop",
    "train_preprocess",
]

CROP_RANGE = STORED_SIZE - IMAGE_SIZE + 1  # 30 crop offsets per axis, 0..29
CENTRE = (STORED_SIZE - IMAGE_SIZE) // 2  # 14
_FAR = STORED_SIZE - IMAGE_SIZE  # 29
# The ten patches of section 4.1 as (y, x) offsets in the 256×256 image, in output order:
# centre, top-left, top-right, bottom-left, bottom-right; patches 5..9 are the horizontal
# reflections of patches 0..4. Patch 0 is the single-crop evaluation input.
TEN_PATCHES = ((CENTRE, CENTRE), (0, 0), (0, _FAR), (_FAR, 0), (_FAR, _FAR))
SHUFFLE_BUFFER = 10_000  # records (encoded JPEGs, ~30 KB each at 256×256), as tensorflow/models
CYCLE_LENGTH = 16  # shards read at once
READ_BUFFER = 8 << 20  # bytes of read-ahead per shard
PARSE_BLOCK = 64  # records parsed and checked together (see _parsed)
_MARK = "alexnet_tf input error: "  # starts the in-graph assertion messages input_errors reads


class InputError(ValueError):
    """A shard or record can't be read as training data; the message names the file."""


# --------------------------------------------------------------------------- records


def parse_example(serialized: tf.Tensor, label_offset: int = 0) -> dict[str, tf.Tensor]:
    """Parses one tf.train.Example with the keys of tensorflow/models' build_imagenet_data.py.

    Returns:
        {"encoded": JPEG bytes, "label": int32 class index (`image/class/label - label_offset`),
         "filename": image/filename ("" if absent), "height", "width": int32 (0 if absent)}.
    """
    return _from_features(tf.io.parse_single_example(serialized, _FEATURES), label_offset)


_FEATURES = {
    "image/encoded": tf.io.FixedLenFeature([], tf.string, default_value=""),
    "image/class/label": tf.io.FixedLenFeature([], tf.int64, default_value=-1),
    "image/filename": tf.io.FixedLenFeature([], tf.string, default_value=""),
    "image/height": tf.io.FixedLenFeature([], tf.int64, default_value=0),
    "image/width": tf.io.FixedLenFeature([], tf.int64, default_value=0),
}


def _from_features(features: dict, label_offset: int) -> dict[str, tf.Tensor]:
    """parse_example's dict from parsed features (one record's, or a block's)."""
    return {
        "encoded": features["image/encoded"],
        "label": tf.cast(features["image/class/label"] - label_offset, tf.int32),
        "filename": features["image/filename"],
        "height": tf.cast(features["image/height"], tf.int32),
        "width": tf.cast(features["image/width"], tf.int32),
    }


def _parsed(records: tf.data.Dataset, label_offset, num_classes, draw=None) -> tf.data.Dataset:
    """(encoded, label[, drawn]) per record of a dataset of (record, shard path) pairs.

    Records are parsed and checked in blocks of PARSE_BLOCK: every op of a per-record function
    costs CPU time on every image, and the vectorized parse and checks make the training
    pipeline as fast as decoding alone (BUILD.md). A record whose image is not a JPEG, or whose
    label is not a class index, stops the iterator with an assertion that names it; the message
    pieces are formatted only when a check fails, and `input_errors` joins them into a sentence.

    Args:
        draw: optional `draw(block_index, k)` giving a `[k, ...]` tensor of per-record values
            (the training crop offsets), keyed by the block's position in the stream.
    """
    upper = num_classes if num_classes is not None else tf.int32.max

    def parse(block_index, block):
        serialized, shards = block
        example = _from_features(tf.io.parse_example(serialized, _FEATURES), label_offset)
        names, labels = example["filename"], example["label"]
        jpeg = tf.strings.substr(example["encoded"], 0, 3) == b"\xff\xd8\xff"  # tf.io.is_jpeg
        in_range = (labels >= 0) & (labels < upper)
        not_jpeg = tf.argmin(tf.cast(jpeg, tf.int32))  # the first failing record (0 if none)
        bad_label = tf.argmin(tf.cast(in_range, tf.int32))
        checks = [
            tf.debugging.Assert(
                tf.reduce_all(jpeg),
                [_MARK + "record", names[not_jpeg], "in", shards[not_jpeg],
                 "has image/encoded that is not a JPEG image"],
            ),
            tf.debugging.Assert(
                tf.reduce_all(in_range),
                [_MARK + "record", names[bad_label], "in", shards[bad_label],
                 "has image/class/label", tf.cast(labels[bad_label], tf.int64) + label_offset,
                 f"which minus label_offset {label_offset} is not a class index in [0, {upper})"],
            ),
        ]  # fmt: skip
        with tf.control_dependencies(checks):
            parsed = (tf.identity(example["encoded"]), tf.identity(labels))
        if draw is not None:
            parsed += (draw(block_index, tf.shape(serialized)[0]),)
        return parsed

    return records.batch(PARSE_BLOCK).enumerate().map(parse).unbatch()


# --------------------------------------------------------------------------- crops


def _central_square(encoded):
    shape = tf.image.extract_jpeg_shape(encoded)
    side = tf.minimum(shape[0], shape[1])
    return (shape[0] - side) // 2, (shape[1] - side) // 2, side


def _resize_to_stored(square):
    resized = tf.image.resize(square, [STORED_SIZE, STORED_SIZE], antialias=True)
    return tf.cast(tf.clip_by_value(tf.round(resized), 0, 255), tf.uint8)


def _stored_image(encoded):
    """The paper's 256×256 image: the central square, resized when its side is not 256."""
    y, x, side = _central_square(encoded)
    square = tf.image.decode_and_crop_jpeg(encoded, tf.stack([y, x, side, side]), channels=3)
    image = tf.cond(side == STORED_SIZE, lambda: square, lambda: _resize_to_stored(square))
    return tf.ensure_shape(image, [STORED_SIZE, STORED_SIZE, 3])


def _crop(encoded, dy, dx):
    """The 227×227 patch at (dy, dx) of the stored 256×256 image; decodes only that patch when
    the image's shorter side is already 256 (the converter's shards)."""
    y, x, side = _central_square(encoded)
    window = tf.stack([y + dy, x + dx, IMAGE_SIZE, IMAGE_SIZE])
    image = tf.cond(
        side == STORED_SIZE,
        lambda: tf.image.decode_and_crop_jpeg(encoded, window, channels=3),
        lambda: _stored_image(encoded)[dy : dy + IMAGE_SIZE, dx : dx + IMAGE_SIZE],
    )
    return tf.ensure_shape(image, [IMAGE_SIZE, IMAGE_SIZE, 3])


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


def crop_offsets(seed: tf.Tensor, count: tf.Tensor | int) -> tf.Tensor:
    """`count` random (dy, dx) crop offsets in 0..29, int32 [count, 2], a pure function of seed."""
    return tf.cast(tf.random.stateless_uniform([count, 2], seed) * CROP_RANGE, tf.int32)


def train_crop(encoded: tf.Tensor, offset: tf.Tensor) -> tf.Tensor:
    """The 227×227 patch at `offset` (dy, dx) of the 256×256 image, uint8 [227, 227, 3]."""
    return _crop(encoded, offset[0], offset[1])


def eval_crops(encoded: tf.Tensor, ten_patch: bool = False) -> tf.Tensor:
    """The centre 227×227 crop, uint8 [227, 227, 3], or the ten patches of section 4.1,
    uint8 [10, 227, 227, 3] in the order of `TEN_PATCHES` followed by their reflections."""
    if not ten_patch:
        return _crop(encoded, CENTRE, CENTRE)
    image = _stored_image(encoded)
    patches = tf.stack([image[y : y + IMAGE_SIZE, x : x + IMAGE_SIZE] for y, x in TEN_PATCHES])
    return tf.concat([patches, tf.reverse(patches, axis=[2])], axis=0)


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

    Returns:
        A dataset of (images uint8 [B, 227, 227, 3], labels int32 [B]) that never ends; its
        iterator can be saved in a tf.train.Checkpoint and resumes exactly.

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

    def offsets(block_index, count):
        # Each example's crop comes from its position in the stream, not from the order in
        # which parallel calls happen to run; the block counter is part of the iterator state.
        return crop_offsets(tf.stack([tf.constant(seed, tf.int64), block_index * n + index]), count)

    examples = _parsed(records, label_offset, num_classes, draw=offsets)
    images = examples.map(
        lambda encoded, label, offset: (train_crop(encoded, offset), label),
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
) -> tf.data.Dataset:
    """Every example of the files exactly once: centre crops or the ten patches of section 4.1.

    Returns:
        A finite dataset of (images, labels int32 [B], mask bool [B]); images are uint8
        [B, 227, 227, 3], or [B, 10, 227, 227, 3] with `ten_patch` (order: `TEN_PATCHES`, then
        their reflections). Every batch has B rows; the rows of the last one past the end of the
        data have mask False, label 0 and black images, and must not be counted.

    Raises:
        InputError: a shard is missing, empty, truncated or not a TFRecord file.
    """
    files, per_replica = _share(files, batch_size, input_context)
    records = _records(files, input_context, shuffle_files=False, deterministic=True, seed=None)

    def preprocess(encoded, label):
        return eval_crops(encoded, ten_patch), label, tf.constant(True)

    examples = _parsed(records, label_offset, num_classes)
    batches = examples.map(preprocess, num_parallel_calls=tf.data.AUTOTUNE).batch(per_replica)
    batches = batches.map(lambda *batch: tuple(_pad_rows(t, per_replica) for t in batch))
    return batches.prefetch(tf.data.AUTOTUNE).with_options(_options(True, input_context))


def _pad_rows(tensor: tf.Tensor, size: int) -> tf.Tensor:
    """Pads the first axis to `size` with zeros (False for bool), giving a static batch shape."""
    missing = size - tf.shape(tensor)[0]
    paddings = tf.concat([[[0, missing]], tf.zeros([tensor.shape.rank - 1, 2], tf.int32)], 0)
    return tf.ensure_shape(tf.pad(tensor, paddings), [size, *tensor.shape[1:]])


# --------------------------------------------------------------------------- faults


def _crc32c_table() -> list[int]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
        table.append(crc)
    return table


_CRC32C = _crc32c_table()


def _masked_crc32c(data: bytes) -> int:
    """The checksum TFRecord frames carry (CRC-32C, rotated and offset)."""
    crc = 0xFFFFFFFF
    for byte in data:
        crc = _CRC32C[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    crc ^= 0xFFFFFFFF
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def check_shards(files: Sequence[str]) -> None:
    """Cheap up-front check of each shard: it exists, and its first record's frame is sound.

    Reads 12 bytes per file: a missing, empty or non-TFRecord file, or one cut off inside its
    first record, raises InputError naming it. Damage further in is reported while iterating
    (see `input_errors`).
    """
    for path in files:
        if not tf.io.gfile.exists(path):
            raise InputError(f"shard {path} does not exist")
        size = tf.io.gfile.stat(path).length
        if size == 0:
            raise InputError(f"shard {path} is empty (0 bytes): expected TFRecords of images")
        with tf.io.gfile.GFile(path, "rb") as f:
            header = f.read(12)
        if len(header) < 12:
            raise InputError(f"shard {path} is truncated: {size} bytes, less than one record")
        (length,), (crc,) = struct.unpack("<Q", header[:8]), struct.unpack("<I", header[8:])
        if crc != _masked_crc32c(header[:8]):
            raise InputError(
                f"shard {path} is not a TFRecord file (its first record header fails its "
                f"checksum); expected shards written by tools/build_imagenet_tfrecords.py"
            )
        if 12 + length + 4 > size:
            raise InputError(
                f"shard {path} is truncated: its first record needs {12 + length + 4} bytes, "
                f"the file has {size}"
            )


@contextlib.contextmanager
def input_errors(files: Sequence[str]) -> Iterator[None]:
    """Turns TensorFlow's data errors raised inside the block into `InputError` naming the file.

    Wrap the loop that iterates a dataset of these files (training or evaluation steps):

        with input_pipeline.input_errors(files):
            for images, labels in dataset: ...

    A damaged shard (tf.errors.DataLossError) or an image that does not decode is located by
    re-reading the files (`find_damaged_shard`, `find_undecodable_record`); this can take a
    while on a large data set, and happens only after the failure. Other errors pass through.
    """
    try:
        yield
    except tf.errors.DataLossError as e:
        raise InputError(find_damaged_shard(files) or _first_line(e)) from None
    except tf.errors.NotFoundError as e:
        raise InputError(f"a shard disappeared while reading it: {_first_line(e)}") from None
    except tf.errors.InvalidArgumentError as e:
        text = str(e)
        marked = re.search(re.escape(_MARK) + r".*", text)
        if marked:  # the pieces of a _parsed assertion: "[mark record] [name] [in] ..."
            pieces = re.findall(r"\[([^\]]*)\]", "[" + marked.group(0))
            raise InputError(" ".join(pieces).removeprefix(_MARK)) from None
        if not re.search(r"JPEG|jpeg|image file format|crop window", text):
            raise
        raise InputError(
            find_undecodable_record(files) or f"an image does not decode: {_first_line(e)}"
        ) from None


def _first_line(error: tf.errors.OpError) -> str:
    lines = [line for line in error.message.splitlines() if line.strip()]
    return re.sub(r"\{\{function_node [^}]*\}\}\s*", "", lines[-1] if lines else "").strip()


def find_damaged_shard(files: Sequence[str]) -> str | None:
    """Reads every record of every file; returns a message naming the first damaged shard."""
    logging.warning("input_errors: re-reading %d shards to find the damaged one", len(files))
    for path in files:
        try:
            tf.data.TFRecordDataset(path).reduce(0, lambda count, _: count + 1)
        except tf.errors.DataLossError as e:
            return f"shard {path} is damaged or truncated: {_first_line(e)}"
        except tf.errors.NotFoundError:
            return f"shard {path} does not exist"
    return None


def _decodes(index, record):
    encoded = parse_example(record)["encoded"]
    tf.image.extract_jpeg_shape(encoded)
    return index, tf.shape(tf.io.decode_jpeg(encoded, channels=3))[0]


def find_undecodable_record(files: Sequence[str]) -> str | None:
    """Decodes every image of every file; returns a message naming the first that fails."""
    logging.warning(
        "input_errors: decoding the images of %d shards to find the bad one", len(files)
    )
    for path in files:
        records = tf.data.TFRecordDataset(path)
        count = int(records.reduce(0, lambda count, _: count + 1))
        decoded = records.enumerate().map(_decodes, num_parallel_calls=tf.data.AUTOTUNE)
        good = {int(i) for i, _ in decoded.ignore_errors().as_numpy_iterator()}
        bad = next((i for i in range(count) if i not in good), None)
        if bad is None:
            continue
        record = next(iter(records.skip(bad).take(1)))
        name = parse_example(record)["filename"].numpy().decode("utf-8", "replace")
        try:
            _decodes(0, record)
            reason = "does not decode"
        except tf.errors.OpError as e:
            reason = f"does not decode: {_first_line(e)}"
        return f"record #{bad} ({name or 'no image/filename'}) of shard {path}: its image {reason}"
    return None
