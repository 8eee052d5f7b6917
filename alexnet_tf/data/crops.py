"""The crops of section 4.1, one implementation for training, evaluation and serving.

Section 2: every image becomes a 256×256 image (shorter side rescaled to 256, central square);
section 4.1: the network sees 227×227 patches of it, random ones in training and, at test time,
"five 224 × 224 patches (the four corner patches and the center patch) as well as their
horizontal reflections (hence ten patches in all)" (227 in this implementation, see
`alexnet_tf.model`). `input_pipeline` cuts them from JPEG bytes, decoding only the patch where it
can; the SavedModel (`results/saved_model.py`) cuts them from a decoded image; both call the
functions here, so serving cannot drift from evaluation. `boxes.py` moves boxes with the same
offsets.
"""

from __future__ import annotations

import tensorflow as tf

from alexnet_tf.model import IMAGE_SIZE

STORED_SIZE = 256  # section 2: shorter side rescaled to 256, central 256×256 patch
CROP_RANGE = STORED_SIZE - IMAGE_SIZE + 1  # 30 crop offsets per axis, 0..29
CENTRE = (STORED_SIZE - IMAGE_SIZE) // 2  # 14
_FAR = STORED_SIZE - IMAGE_SIZE  # 29
# The ten patches of section 4.1 as (y, x) offsets in the 256×256 image, in output order:
# centre, top-left, top-right, bottom-left, bottom-right; patches 5..9 are the horizontal
# reflections of patches 0..4. Patch 0 is the single-crop evaluation input.
TEN_PATCHES = ((CENTRE, CENTRE), (0, 0), (0, _FAR), (_FAR, 0), (_FAR, _FAR))


def central_square(height, width):
    """(y, x, side) of an image's central square, in whole pixels (integer tensors or ints)."""
    side = tf.minimum(height, width)
    return (height - side) // 2, (width - side) // 2, side


def _resize_to_stored(square: tf.Tensor) -> tf.Tensor:
    resized = tf.image.resize(square, [STORED_SIZE, STORED_SIZE], antialias=True)
    return tf.cast(tf.clip_by_value(tf.round(resized), 0, 255), tf.uint8)


def stored_image(image: tf.Tensor) -> tf.Tensor:
    """Section 2: the central square of a decoded image [H, W, 3], resized to 256×256 if it is
    not (antialiased, rounded, clipped); uint8 [256, 256, 3]."""
    shape = tf.shape(image)
    y, x, side = central_square(shape[0], shape[1])
    square = image[y : y + side, x : x + side]
    image = tf.cond(side == STORED_SIZE, lambda: square, lambda: _resize_to_stored(square))
    return tf.ensure_shape(image, [STORED_SIZE, STORED_SIZE, 3])


def stored_image_from_jpeg(encoded: tf.Tensor) -> tf.Tensor:
    """`stored_image` of JPEG bytes, decoding only the central square."""
    shape = tf.image.extract_jpeg_shape(encoded)
    y, x, side = central_square(shape[0], shape[1])
    square = tf.image.decode_and_crop_jpeg(encoded, tf.stack([y, x, side, side]), channels=3)
    image = tf.cond(side == STORED_SIZE, lambda: square, lambda: _resize_to_stored(square))
    return tf.ensure_shape(image, [STORED_SIZE, STORED_SIZE, 3])


def crop_jpeg(encoded: tf.Tensor, dy, dx) -> tf.Tensor:
    """The 227×227 patch at (dy, dx) of the stored 256×256 image of JPEG bytes; decodes only
    that patch when the image's shorter side is already 256 (the converter's shards)."""
    shape = tf.image.extract_jpeg_shape(encoded)
    y, x, side = central_square(shape[0], shape[1])
    window = tf.stack([y + dy, x + dx, IMAGE_SIZE, IMAGE_SIZE])
    image = tf.cond(
        side == STORED_SIZE,
        lambda: tf.image.decode_and_crop_jpeg(encoded, window, channels=3),
        lambda: stored_image_from_jpeg(encoded)[dy : dy + IMAGE_SIZE, dx : dx + IMAGE_SIZE],
    )
    return tf.ensure_shape(image, [IMAGE_SIZE, IMAGE_SIZE, 3])


def patches(stored: tf.Tensor, ten_patch: bool) -> tf.Tensor:
    """[P, 227, 227, 3] of a 256×256 image: the centre patch (P=1), or the ten patches of
    section 4.1 in the order of `TEN_PATCHES` followed by their reflections (P=10)."""
    offsets = TEN_PATCHES if ten_patch else TEN_PATCHES[:1]  # TEN_PATCHES[0] is the centre
    cut = tf.stack([stored[y : y + IMAGE_SIZE, x : x + IMAGE_SIZE] for y, x in offsets])
    return tf.concat([cut, tf.reverse(cut, axis=[2])], axis=0) if ten_patch else cut


def eval_crops(encoded: tf.Tensor, ten_patch: bool = False) -> tf.Tensor:
    """The centre 227×227 crop, uint8 [227, 227, 3], or the ten patches of section 4.1,
    uint8 [10, 227, 227, 3] in the order of `TEN_PATCHES` followed by their reflections."""
    if not ten_patch:
        return crop_jpeg(encoded, CENTRE, CENTRE)
    return patches(stored_image_from_jpeg(encoded), True)


def crop_offsets(seed: tf.Tensor, count: tf.Tensor | int) -> tf.Tensor:
    """`count` random (dy, dx) crop offsets in 0..29, int32 [count, 2], a pure function of seed."""
    return tf.cast(tf.random.stateless_uniform([count, 2], seed) * CROP_RANGE, tf.int32)


def train_crop(encoded: tf.Tensor, offset: tf.Tensor) -> tf.Tensor:
    """The 227×227 patch at `offset` (dy, dx) of the 256×256 image, uint8 [227, 227, 3]."""
    return crop_jpeg(encoded, offset[0], offset[1])
