"""The tf.train.Example of one image, with the keys of the tensorflow/models ImageNet converter.

`research/slim/datasets/build_imagenet_data.py` (and `inception/data/build_imagenet_data.py`)
write these keys, so shards from either tool read the same way; ours differ only in the label
convention: label = class index (0-based) + `label_offset` (1 reproduces theirs).
"""

from __future__ import annotations

from collections.abc import Sequence

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
    """The serialized tf.train.Example of one RGB JPEG (bboxes: (xmin, ymin, xmax, ymax) in 0-1)."""
    import tensorflow as tf

    def ints(*values):
        return tf.train.Feature(int64_list=tf.train.Int64List(value=values))

    def floats(values):
        return tf.train.Feature(float_list=tf.train.FloatList(value=values))

    def text_bytes(value):
        value = value.encode("utf-8") if isinstance(value, str) else value
        return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))

    columns = list(zip(*bboxes, strict=True)) if bboxes else [(), (), (), ()]
    feature = {
        "image/encoded": text_bytes(encoded),
        "image/format": text_bytes("JPEG"),
        "image/height": ints(height),
        "image/width": ints(width),
        "image/channels": ints(3),
        "image/colorspace": text_bytes("RGB"),
        "image/filename": text_bytes(filename),
        "image/class/label": ints(label),
        "image/class/synset": text_bytes(synset),
        "image/class/text": text_bytes(text),
        "image/object/bbox/xmin": floats(columns[0]),
        "image/object/bbox/ymin": floats(columns[1]),
        "image/object/bbox/xmax": floats(columns[2]),
        "image/object/bbox/ymax": floats(columns[3]),
        "image/object/bbox/label": ints(*[label] * len(bboxes)),
    }
    example = tf.train.Example(features=tf.train.Features(feature=feature))
    # Features is a protobuf map: without `deterministic` its order varies between processes,
    # and then so would the shard checksums that resuming relies on.
    return example.SerializeToString(deterministic=True)


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
