"""The tf.train.Example of one image, with the keys of the tensorflow/models ImageNet converter.

`research/slim/datasets/build_imagenet_data.py` (and `inception/data/build_imagenet_data.py`)
write the `image/*` and `image/object/bbox/*` keys, so shards from either tool read the same way;
ours differ only in the label convention: label = class index (0-based) + `label_offset` (1
reproduces theirs).

`FEATURE_SPEC` is the one description of the record, in plain Python (the converter's worker
processes never import TensorFlow): the converter writes exactly these keys, and the input
pipeline (`alexnet_tf.data.examples`) and `--verify` build their `tf.io` parsing specs from it.

Boxes (localization; ILSVRC-2012 task 2). Two sets, both of the image's own class only:

* `image/object/bbox/{xmin,ymin,xmax,ymax}`: as tensorflow/models writes them, fractions of the
  STORED image (the JPEG in the record), clipped to it; a box wholly outside the stored image
  (cut away by the central crop) is left out. These are the training targets.
* `image/original/bbox/{ymin,xmin,ymax,xmax}`: the whole ground-truth boxes in pixels of the
  ORIGINAL image, never clipped: what a guess is scored against.

`image/original/{height,width}` is the original image's size and `image/original/crop` the
(ymin, xmin, ymax, xmax) pixel box of the original image that the stored image shows (the
central square for `--resize=256`, the whole image for `--resize=0`). Records without these keys
(tensorflow/models' shards) read as if the stored image were the original.
"""

from __future__ import annotations

import dataclasses
import struct
from collections.abc import Sequence

import google_crc32c

FIXED, VAR = "fixed", "var"  # a fixed number of values per record, or any number (boxes)
BYTES, INT64, FLOAT = "string", "int64", "float32"


@dataclasses.dataclass(frozen=True)
class Feature:
    """One key of the record: its kind (FIXED or VAR), value type, length and default.

    `default` is what a reader assumes where a record lacks the key (shards of other tools);
    None: the key is required.
    """

    name: str
    kind: str
    dtype: str
    length: int = 1
    default: object = None


FEATURE_SPEC = (
    Feature("image/encoded", FIXED, BYTES, default=b""),
    Feature("image/format", FIXED, BYTES, default=b"JPEG"),
    Feature("image/height", FIXED, INT64, default=0),
    Feature("image/width", FIXED, INT64, default=0),
    Feature("image/channels", FIXED, INT64, default=3),
    Feature("image/colorspace", FIXED, BYTES, default=b"RGB"),
    Feature("image/filename", FIXED, BYTES, default=b""),
    Feature("image/class/label", FIXED, INT64, default=-1),
    Feature("image/class/synset", FIXED, BYTES, default=b""),
    Feature("image/class/text", FIXED, BYTES, default=b""),
    Feature("image/object/bbox/xmin", VAR, FLOAT),
    Feature("image/object/bbox/ymin", VAR, FLOAT),
    Feature("image/object/bbox/xmax", VAR, FLOAT),
    Feature("image/object/bbox/ymax", VAR, FLOAT),
    Feature("image/object/bbox/label", VAR, INT64),
    # 0 / all zeros: absent (tensorflow/models' shards); readers then use the stored image.
    Feature("image/original/height", FIXED, INT64, default=0),
    Feature("image/original/width", FIXED, INT64, default=0),
    Feature("image/original/crop", FIXED, FLOAT, length=4, default=(0.0, 0.0, 0.0, 0.0)),
    Feature("image/original/bbox/ymin", VAR, FLOAT),
    Feature("image/original/bbox/xmin", VAR, FLOAT),
    Feature("image/original/bbox/ymax", VAR, FLOAT),
    Feature("image/original/bbox/xmax", VAR, FLOAT),
)
FEATURES = {f.name: f for f in FEATURE_SPEC}
KEYS = tuple(FEATURES)
STORED_BOX_KEYS = tuple(f"image/object/bbox/{k}" for k in ("ymin", "xmin", "ymax", "xmax"))
ORIGINAL_BOX_KEYS = tuple(f"image/original/bbox/{k}" for k in ("ymin", "xmin", "ymax", "xmax"))


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
    original_size: tuple[int, int] | None = None,
    original_crop: tuple[float, float, float, float] | None = None,
    original_bboxes: Sequence[tuple[float, float, float, float]] = (),
) -> bytes:
    """The serialized tf.train.Example of one RGB JPEG, with every key of `FEATURE_SPEC`.

    Args:
        encoded, height, width: the stored JPEG and its size.
        filename, label, synset, text: the image's name and class.
        bboxes: (xmin, ymin, xmax, ymax) fractions of the stored image (tensorflow/models order).
        original_size: (height, width) of the original image (default: the stored size).
        original_crop: (ymin, xmin, ymax, xmax) pixels of the original that the stored image
            shows (default: all of it).
        original_bboxes: (ymin, xmin, ymax, xmax) whole ground-truth boxes, original pixels.

    Encoded here rather than through `tf.train.Example`, so the worker processes need no
    TensorFlow (seconds of start-up and ~0.4 GB each). The bytes equal
    `tf.train.Example(...).SerializeToString(deterministic=True)`: map entries sorted by key, a
    fixed order that keeps shard checksums stable between runs (tests/test_convert.py checks).
    """
    original_height, original_width = original_size or (height, width)
    crop = original_crop or (0.0, 0.0, float(original_height), float(original_width))
    columns = list(zip(*bboxes, strict=True)) if bboxes else [(), (), (), ()]
    whole = list(zip(*original_bboxes, strict=True)) if original_bboxes else [(), (), (), ()]
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
        "image/original/height": _int64_feature(original_height),
        "image/original/width": _int64_feature(original_width),
        "image/original/crop": _float_feature(crop),
        **{key: _float_feature(values) for key, values in zip(ORIGINAL_BOX_KEYS, whole)},
    }
    assert feature.keys() == FEATURES.keys(), "to_example and FEATURE_SPEC must list the same keys"
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
