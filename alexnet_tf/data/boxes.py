"""Box geometry of localization (ILSVRC-2012 task 2): boxes through the crops of section 4.1.

Every box is (ymin, xmin, ymax, xmax), float32, like tf.image. "Normalized" boxes are fractions
of the image or patch they refer to; "pixel" boxes are in pixels of the original image.

The frames a box passes through, with the functions that move it:

    original image ──(central square, resize: the "frame")── 256×256 stored image
        ──(a 227×227 patch at offset (dy, dx))── crop ──(reflection)── network input

* `stored_to_frame`: boxes of the record's stored image → the 256×256 frame (its central
  square; the identity for the converter's 256×256 shards).
* `frame_to_crop` / `crop_to_frame`: the 256×256 frame ↔ a 227×227 patch at (dy, dx).
* `reflect`: the horizontal mirror of a normalized box (its own inverse).
* `frame_to_original`: the frame → original-image pixels, through an example's `geometry`:
  (frame ymin, xmin, ymax, xmax in original pixels, original height, original width), the
  [B, 6] tensor `make_eval_dataset(with_boxes=True)` gives.
* `patch_boxes_to_original`: a prediction per evaluated patch (centre, or the ten patches of
  `crops.TEN_PATCHES` then their reflections) → original pixels.

The functions take NumPy arrays (and return float32 NumPy arrays) or tensors (and return
tensors), with any leading batch axes.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from alexnet_tf.data.crops import STORED_SIZE, TEN_PATCHES
from alexnet_tf.model import IMAGE_SIZE

GEOMETRY_SIZE = 6  # frame (ymin, xmin, ymax, xmax) in original pixels, original height, width


def _backend(*values):
    """tf if any input is a tensor, else NumPy (so NumPy in gives NumPy out)."""
    if any(isinstance(v, tf.Tensor | tf.Variable) for v in values):
        return tf, lambda v: tf.cast(v, tf.float32)
    return np, lambda v: np.asarray(v, np.float32)


def _corners(boxes, xp):
    return boxes[..., 0], boxes[..., 1], boxes[..., 2], boxes[..., 3]


def reflect(boxes):
    """The horizontal reflection of normalized boxes [..., 4]: x → 1 - x."""
    xp, f = _backend(boxes)
    ymin, xmin, ymax, xmax = _corners(f(boxes), xp)
    return xp.stack([ymin, 1.0 - xmax, ymax, 1.0 - xmin], axis=-1)


def clip(boxes):
    """Normalized boxes clipped to [0, 1] (the part inside the image or patch)."""
    xp, f = _backend(boxes)
    return xp.clip(f(boxes), 0.0, 1.0) if xp is np else tf.clip_by_value(f(boxes), 0.0, 1.0)


def area(boxes):
    """Areas of boxes [..., 4] ([...]); 0 where a box is empty or inverted."""
    xp, f = _backend(boxes)
    ymin, xmin, ymax, xmax = _corners(f(boxes), xp)
    return xp.maximum(ymax - ymin, 0.0) * xp.maximum(xmax - xmin, 0.0)


def stored_to_frame(boxes, height, width):
    """Boxes normalized to a stored image of `height`×`width` ([...] each) → normalized to its
    central square (whole pixels, as `crops.central_square` cuts it)."""
    xp, f = _backend(boxes, height, width)
    h, w = f(height), f(width)
    side = xp.minimum(h, w)
    y0, x0 = xp.floor((h - side) / 2), xp.floor((w - side) / 2)
    ymin, xmin, ymax, xmax = _corners(f(boxes), xp)
    return xp.stack(
        [(ymin * h - y0) / side, (xmin * w - x0) / side,
         (ymax * h - y0) / side, (xmax * w - x0) / side],
        axis=-1,
    )  # fmt: skip


def frame_to_crop(boxes, offset):
    """Boxes normalized to the 256×256 frame → normalized to the 227×227 patch at `offset`
    ((dy, dx) [..., 2], pixels). Not clipped: a box may reach past the patch."""
    xp, f = _backend(boxes, offset)
    off = f(offset)
    dy, dx = off[..., 0], off[..., 1]
    ymin, xmin, ymax, xmax = _corners(f(boxes), xp)
    s = float(STORED_SIZE)
    return xp.stack(
        [(ymin * s - dy) / IMAGE_SIZE, (xmin * s - dx) / IMAGE_SIZE,
         (ymax * s - dy) / IMAGE_SIZE, (xmax * s - dx) / IMAGE_SIZE],
        axis=-1,
    )  # fmt: skip


def crop_to_frame(boxes, offset):
    """The inverse of `frame_to_crop`: boxes of the patch at `offset` → the 256×256 frame."""
    xp, f = _backend(boxes, offset)
    off = f(offset)
    dy, dx = off[..., 0], off[..., 1]
    ymin, xmin, ymax, xmax = _corners(f(boxes), xp)
    s = float(STORED_SIZE)
    return xp.stack(
        [(ymin * IMAGE_SIZE + dy) / s, (xmin * IMAGE_SIZE + dx) / s,
         (ymax * IMAGE_SIZE + dy) / s, (xmax * IMAGE_SIZE + dx) / s],
        axis=-1,
    )  # fmt: skip


def frame_to_original(boxes, geometry):
    """Boxes normalized to the 256×256 frame → pixels of the original image.

    Args:
        boxes: [..., 4] normalized to the frame.
        geometry: [..., 6] (frame ymin, xmin, ymax, xmax in original pixels, original height,
            original width), broadcast against `boxes`' leading axes.
    """
    xp, f = _backend(boxes, geometry)
    g = f(geometry)
    fy0, fx0, fy1, fx1 = g[..., 0], g[..., 1], g[..., 2], g[..., 3]
    ymin, xmin, ymax, xmax = _corners(f(boxes), xp)
    return xp.stack(
        [fy0 + ymin * (fy1 - fy0), fx0 + xmin * (fx1 - fx0),
         fy0 + ymax * (fy1 - fy0), fx0 + xmax * (fx1 - fx0)],
        axis=-1,
    )  # fmt: skip


def original_to_frame(boxes, geometry):
    """The inverse of `frame_to_original`: original pixels → normalized to the 256×256 frame."""
    xp, f = _backend(boxes, geometry)
    g = f(geometry)
    fy0, fx0, fy1, fx1 = g[..., 0], g[..., 1], g[..., 2], g[..., 3]
    ymin, xmin, ymax, xmax = _corners(f(boxes), xp)
    return xp.stack(
        [(ymin - fy0) / (fy1 - fy0), (xmin - fx0) / (fx1 - fx0),
         (ymax - fy0) / (fy1 - fy0), (xmax - fx0) / (fx1 - fx0)],
        axis=-1,
    )  # fmt: skip


def patch_offsets(ten_patch: bool) -> np.ndarray:
    """(dy, dx) of each evaluated patch, float32 [P, 2]: the centre (P=1), or `TEN_PATCHES`
    then the same five again for their reflections (P=10)."""
    offsets = TEN_PATCHES * 2 if ten_patch else TEN_PATCHES[:1]
    return np.asarray(offsets, np.float32)


def patch_reflected(ten_patch: bool) -> np.ndarray:
    """Which evaluated patches are reflections, bool [P]."""
    return np.asarray([False] * 5 + [True] * 5 if ten_patch else [False])


def patch_boxes_to_original(boxes, geometry, ten_patch: bool):
    """Boxes predicted on the evaluated patches → pixels of each example's original image.

    Args:
        boxes: normalized to each patch; [B, 4] for the centre crop, or [B, 10, 4] for the ten
            patches in the order of `make_eval_dataset(ten_patch=True)` (`TEN_PATCHES`, then
            their reflections; the boxes of a reflected patch are un-reflected here).
        geometry: [B, 6] from `make_eval_dataset(with_boxes=True)`.
        ten_patch: which of the two layouts `boxes` has.

    Returns:
        [B, 4] or [B, 10, 4] (ymin, xmin, ymax, xmax) in original-image pixels; the ten-patch
        answer is their average, which the caller takes.
    """
    xp, f = _backend(boxes, geometry)
    boxes = f(boxes)
    if not ten_patch:
        return frame_to_original(crop_to_frame(boxes, patch_offsets(False)[0]), geometry)
    mirrored = patch_reflected(True)[:, None]
    boxes = xp.where(mirrored, reflect(boxes), boxes)
    frame = crop_to_frame(boxes, patch_offsets(True))
    return frame_to_original(frame, f(geometry)[..., None, :])
