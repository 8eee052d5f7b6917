"""The tf.train.Example of one image, with the keys of the tensorflow/models ImageNet converter.

`research/slim/datasets/build_imagenet_data.py` (and `inception/data/build_imagenet_data.py`)
write these keys, so shards from either tool read the same way; ours differ only in the label
convention: label = class index (0-based) + `label_offset` (1 reproduces theirs).
"""

from __future__ import annotations

import struct
from collections.abc import Sequence

import google_crc32c

KEYS = (
    "image/encoded",
    "image/format",
    "image/height",
    "image/width",
    "image/channels",
    "image/colorspace",
    "image/filename",
    "image/class/label",
    "image/class/synset",
    "image/class/text",
    "image/object/bbox/xmin",
    "image/object/bbox/ymin",
    "image/object/bbox/xmax",
    "image/object/bbox/ymax",
    "image/object/bbox/label",
)


def _varint(value: int) -> bytes:
    value &= (1 << 64) - 1  # negative int64 as two's complement, as protobuf does
    out = bytearray()
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    """A length-delimited protobuf field (wire type 2)."""
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _bytes_feature(*values: bytes) -> bytes:  # Feature.bytes_list = 1
    return _field(1, b"".join(_field(1, v) for v in values))


def _float_feature(values: Sequence[float]) -> bytes:  # Feature.float_list = 2, packed
    packed = struct.pack(f"<{len(values)}f", *values)
    return _field(2, _field(1, packed) if values else b"")


def _int64_feature(*values: int) -> bytes:  # Feature.int64_list = 3, packed
    packed = b"".join(_varint(v) for v in values)
    return _field(3, _field(1, packed) if values else b"")


def to_example(
    *,
    encoded: bytes,
    height: int,
    width: int,
    filename: str,
    label: int,
    synset: str,
    text: str,
    bboxes: Sequence[tuple[float, float, float, float]] = (),
) -> bytes:
    """The serialized tf.train.Example of one RGB JPEG (bboxes: (xmin, ymin, xmax, ymax) in 0-1).

    Encoded here rather than through `tf.train.Example`, so the worker processes need no
    TensorFlow (seconds of start-up and ~0.4 GB each). The bytes equal
    `tf.train.Example(...).SerializeToString(deterministic=True)`: map entries sorted by key, a
    fixed order that keeps shard checksums stable between runs (tests/test_convert.py checks).
    """
    columns = list(zip(*bboxes, strict=True)) if bboxes else [(), (), (), ()]
    feature = {
        "image/encoded": _bytes_feature(encoded),
        "image/format": _bytes_feature(b"JPEG"),
        "image/height": _int64_feature(height),
        "image/width": _int64_feature(width),
        "image/channels": _int64_feature(3),
        "image/colorspace": _bytes_feature(b"RGB"),
        "image/filename": _bytes_feature(filename.encode()),
        "image/class/label": _int64_feature(label),
        "image/class/synset": _bytes_feature(synset.encode()),
        "image/class/text": _bytes_feature(text.encode()),
        "image/object/bbox/xmin": _float_feature(columns[0]),
        "image/object/bbox/ymin": _float_feature(columns[1]),
        "image/object/bbox/xmax": _float_feature(columns[2]),
        "image/object/bbox/ymax": _float_feature(columns[3]),
        "image/object/bbox/label": _int64_feature(*[label] * len(bboxes)),
    }
    entries = b"".join(  # Features.feature = 1: map entries {key = 1, value = 2}
        _field(1, _field(1, key.encode()) + _field(2, feature[key])) for key in sorted(feature)
    )
    return _field(1, entries)  # Example.features = 1


def _masked_crc(data: bytes) -> bytes:
    crc = google_crc32c.value(data)
    return struct.pack("<I", ((crc >> 15 | crc << 17) + 0xA282EAD8) & 0xFFFFFFFF)


def tfrecord(record: bytes) -> bytes:
    """One record in the TFRecord framing: length, its masked CRC-32C, data, the data's CRC."""
    length = struct.pack("<Q", len(record))
    return length + _masked_crc(length) + record + _masked_crc(record)


def crop_bboxes(
    bboxes: Sequence[tuple[float, float, float, float]], crop: tuple[float, float, float, float]
) -> list[tuple[float, float, float, float]]:
    """Boxes (fractions of the original image) moved into a crop (left, top, width, height).

    Boxes are clipped to the crop; those left with no area are dropped.
    """
    left, top, crop_width, crop_height = crop
    moved = []
    for xmin, ymin, xmax, ymax in bboxes:
        box = (
            min(max((xmin - left) / crop_width, 0.0), 1.0),
            min(max((ymin - top) / crop_height, 0.0), 1.0),
            min(max((xmax - left) / crop_width, 0.0), 1.0),
            min(max((ymax - top) / crop_height, 0.0), 1.0),
        )
        if box[2] > box[0] and box[3] > box[1]:
            moved.append(box)
    return moved
