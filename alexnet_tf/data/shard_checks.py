"""Finding faults in TFRecord shards, so that a bad shard or record is named, not a traceback.

Missing, empty, truncated or non-TFRecord shards are found before the first step
(`check_shards`, 12 bytes a file); errors met while iterating (a record whose image does not
decode, a shard damaged after the check) are translated by wrapping the loop in
`input_errors(files)`, which re-reads the files only after a failure to name the bad one.
"""

from __future__ import annotations

import contextlib
import logging
import re
import struct
from collections.abc import Iterator, Sequence

import google_crc32c
import tensorflow as tf

from alexnet_tf.data.examples import parse_example

# Starts the in-graph assertion messages of the input pipeline, which input_errors reads.
MARK = "alexnet_tf input error: "


class InputError(ValueError):
    """A shard or record can't be read as training data; the message names the file."""


def _masked_crc32c(data: bytes) -> int:
    """The checksum TFRecord frames carry (CRC-32C, rotated and offset)."""
    crc = google_crc32c.value(data)
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
        marked = re.search(re.escape(MARK) + r".*", text)
        if marked:  # the pieces of a _parsed assertion: "[mark record] [name] [in] ..."
            pieces = re.findall(r"\[([^\]]*)\]", "[" + marked.group(0))
            raise InputError(" ".join(pieces).removeprefix(MARK)) from None
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
