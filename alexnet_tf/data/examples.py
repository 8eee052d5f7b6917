"""Reading the converter's tf.train.Example records: the parsing spec and the box fields.

The keys, kinds and defaults come from `alexnet_tf.data.records.FEATURE_SPEC`, the one
description of a record that the converter writes and `--verify` checks; this module turns it
into `tf.io` parsing specs. Records of tensorflow/models' build_imagenet_data.py read the same
(their missing `image/original/*` keys take the defaults: the stored image is the original).
"""

from __future__ import annotations

import tensorflow as tf

from alexnet_tf.data import boxes as boxes_lib
from alexnet_tf.data import records
from alexnet_tf.data.crops import central_square

_DTYPES = {records.BYTES: tf.string, records.INT64: tf.int64, records.FLOAT: tf.float32}
# What the input pipeline reads of each record: the image and label, and the box fields.
PIPELINE_KEYS = (
    "image/encoded",
    "image/class/label",
    "image/filename",
    "image/height",
    "image/width",
)
BOX_KEYS = (
    *records.STORED_BOX_KEYS,
    "image/original/height",
    "image/original/width",
    "image/original/crop",
    *records.ORIGINAL_BOX_KEYS,
)


def tf_features(keys=None, *, required: bool = False) -> dict:
    """`tf.io` parsing spec of `keys` (default: every key of the record).

    Args:
        keys: names from `records.FEATURE_SPEC`.
        required: FIXED keys without their defaults, so a record lacking one fails to parse
            (`--verify` checks the converter's own records this way).
    """
    spec = {}
    for key in keys or records.KEYS:
        feature = records.FEATURES[key]
        dtype = _DTYPES[feature.dtype]
        if feature.kind == records.VAR:
            spec[key] = tf.io.VarLenFeature(dtype)
            continue
        shape = [] if feature.length == 1 else [feature.length]
        default = None if required or feature.default is None else feature.default
        spec[key] = tf.io.FixedLenFeature(shape, dtype, default_value=default)
    return spec


FEATURES = tf_features(PIPELINE_KEYS)
BOX_FEATURES = tf_features(BOX_KEYS)  # evaluation: whole boxes and geometry
TRAIN_BOX_FEATURES = tf_features(records.STORED_BOX_KEYS)  # training: the stored image's boxes


def parse_example(serialized: tf.Tensor, label_offset: int = 0) -> dict[str, tf.Tensor]:
    """Parses one tf.train.Example with the keys of tensorflow/models' build_imagenet_data.py.

    Returns:
        {"encoded": JPEG bytes, "label": int32 class index (`image/class/label - label_offset`),
         "filename": image/filename ("" if absent), "height", "width": int32 (0 if absent)}.
    """
    return from_features(tf.io.parse_single_example(serialized, FEATURES), label_offset)


def from_features(features: dict, label_offset: int) -> dict[str, tf.Tensor]:
    """parse_example's dict from parsed features (one record's, or a block's)."""
    return {
        "encoded": features["image/encoded"],
        "label": tf.cast(features["image/class/label"] - label_offset, tf.int32),
        "filename": features["image/filename"],
        "height": tf.cast(features["image/height"], tf.int32),
        "width": tf.cast(features["image/width"], tf.int32),
    }


def _dense_boxes(features: dict, keys) -> tuple[tf.Tensor, tf.Tensor]:
    """A block's variable-length box columns → boxes float32 [N, G, 4] and valid bool [N, G],
    G >= 1 (a zero column is added so that a block without boxes still has one)."""
    columns = [features[k] for k in keys]
    dense = tf.stack([tf.sparse.to_dense(c) for c in columns], axis=-1)
    n = tf.shape(dense)[0]
    dense = tf.concat([dense, tf.zeros([n, 1, 4])], axis=1)
    counts = tf.math.bincount(tf.cast(columns[0].indices[:, 0], tf.int32), minlength=n, maxlength=n)
    valid = tf.range(tf.shape(dense)[1])[None, :] < counts[:, None]
    return dense, valid


def _stored_size(features: dict) -> tuple[tf.Tensor, tf.Tensor]:
    return (
        tf.cast(features["image/height"], tf.float32),
        tf.cast(features["image/width"], tf.float32),
    )


def train_boxes(features: dict, offsets: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """One box per record of a parsed block, normalized to its training crop.

    Of the image's boxes (`image/object/bbox/*`, the stored image's), the one with the largest
    part inside the 227×227 crop at `offsets` [N, 2], clipped to the crop: the network can only
    see, and so learn, the part of the object inside its input.

    Returns:
        boxes float32 [N, 4] (zeros where has_box is False), has_box bool [N]: False for a record
        with no box, or whose boxes all lie outside its crop.
    """
    stored, valid = _dense_boxes(features, records.STORED_BOX_KEYS)
    height, width = _stored_size(features)
    frame = boxes_lib.stored_to_frame(stored, height[:, None], width[:, None])
    crop = boxes_lib.clip(boxes_lib.frame_to_crop(frame, offsets[:, None, :]))
    visible = tf.where(valid, boxes_lib.area(crop), 0.0)
    best = tf.argmax(visible, axis=1, output_type=tf.int32)
    has_box = tf.reduce_max(visible, axis=1) > 0.0
    chosen = tf.gather(crop, best, batch_dims=1)
    return tf.where(has_box[:, None], chosen, 0.0), has_box


def geometry(features: dict) -> tf.Tensor:
    """Each record's frame in its original image, float32 [N, 6]: (frame ymin, xmin, ymax,
    xmax in original pixels, original height, original width); see `boxes.frame_to_original`."""
    height, width = _stored_size(features)
    crop = features["image/original/crop"]
    known = tf.reduce_any(crop != 0.0, axis=1)  # else: a record without image/original/*
    crop = tf.where(known[:, None], crop, tf.stack([0 * height, 0 * width, height, width], 1))
    original_h = tf.cast(features["image/original/height"], tf.float32)
    original_w = tf.cast(features["image/original/width"], tf.float32)
    original_h = tf.where(known, original_h, height)
    original_w = tf.where(known, original_w, width)
    y, x, side = central_square(features["image/height"], features["image/width"])
    y, x, side = (tf.cast(v, tf.float32) for v in (y, x, side))
    # Stored pixel → original pixel: scale (crop size / stored size), then shift by the crop.
    sy = (crop[:, 2] - crop[:, 0]) / tf.maximum(height, 1.0)
    sx = (crop[:, 3] - crop[:, 1]) / tf.maximum(width, 1.0)
    return tf.stack(
        [crop[:, 0] + y * sy, crop[:, 1] + x * sx,
         crop[:, 0] + (y + side) * sy, crop[:, 1] + (x + side) * sx,
         original_h, original_w],
        axis=1,
    )  # fmt: skip


def ground_truth(features: dict) -> tuple[tf.Tensor, tf.Tensor]:
    """Each record's whole ground-truth boxes in original pixels: float32 [N, G, 4] and valid
    bool [N, G]. From `image/original/bbox/*`; for records without them (tensorflow/models'),
    the stored image's boxes, which then are the original's."""
    original, original_valid = _dense_boxes(features, records.ORIGINAL_BOX_KEYS)
    stored, stored_valid = _dense_boxes(features, records.STORED_BOX_KEYS)
    height, width = _stored_size(features)
    crop = features["image/original/crop"]
    known = tf.reduce_any(crop != 0.0, axis=1)
    crop = tf.where(known[:, None], crop, tf.stack([0 * height, 0 * width, height, width], 1))
    scale = tf.stack([crop[:, 2] - crop[:, 0], crop[:, 3] - crop[:, 1]] * 2, 1)[:, None, :]
    shift = tf.stack([crop[:, 0], crop[:, 1]] * 2, 1)[:, None, :]
    from_stored = stored * scale + shift
    g = tf.maximum(tf.shape(original)[1], tf.shape(stored)[1])
    original, original_valid = _pad_boxes(original, original_valid, g)
    from_stored, stored_valid = _pad_boxes(from_stored, stored_valid, g)
    use_original = tf.cast(features["image/original/height"], tf.bool)[:, None]
    boxes = tf.where(use_original[..., None], original, from_stored)
    valid = tf.where(use_original, original_valid, stored_valid)
    return tf.where(valid[..., None], boxes, 0.0), valid


def _pad_boxes(boxes, valid, g):
    missing = g - tf.shape(boxes)[1]
    return (
        tf.pad(boxes, [[0, 0], [0, missing], [0, 0]]),
        tf.pad(valid, [[0, 0], [0, missing]]),
    )
