"""Scoring boxes by the rule of ILSVRC-2012 task 2, "classification with localization".

Each image gets five guesses, each a class and a box. The image counts as localized when one
guess has the right class and its box overlaps one of the image's ground-truth boxes of that
class with intersection over union (IoU) of at least 0.5; the error is the fraction of images
that are not (the 2012 network: about 34% with five guesses).

Boxes are (ymin, xmin, ymax, xmax), like `tf.image`, compared in the original image's pixel
frame. Areas are those of continuous boxes: the ILSVRC development kit's "+1 pixel" inclusive
convention changes IoU by less than 1% for boxes of tens of pixels or more.

    localization_correct(top_classes, top_boxes, labels, gt_boxes, gt_valid)
"""

from __future__ import annotations

import dataclasses

import numpy as np

IOU_THRESHOLD = 0.5  # ILSVRC-2012 task 2: "overlap ... at least 50%"
TOP_K = 5  # five guesses


def images_with_boxes(manifest, split: str) -> int:
    """How many images of a split have ground-truth boxes, as the converter counted them
    (`manifest.json`: splits.SPLIT.boxes.images_with_boxes; 0 for data converted without
    `--bbox_dir`)."""
    entry = manifest.raw.get("splits", {}).get(split, {})
    return int(entry.get("boxes", {}).get("images_with_boxes", 0))


def iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Intersection over union of boxes `a [..., 4]` and `b [..., 4]` (broadcast).

    A box with ymax <= ymin or xmax <= xmin has no area: its IoU with anything is 0.
    """
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    height = np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0])
    width = np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1])
    inter = np.clip(height, 0, None) * np.clip(width, 0, None)
    union = _area(a) + _area(b) - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)


def _area(box: np.ndarray) -> np.ndarray:
    return np.clip(box[..., 2] - box[..., 0], 0, None) * np.clip(box[..., 3] - box[..., 1], 0, None)


def best_iou(boxes: np.ndarray, gt_boxes: np.ndarray, gt_valid: np.ndarray) -> np.ndarray:
    """For each predicted box, its IoU with the best-matching valid ground-truth box.

    Args:
        boxes: [B, 4] or [B, k, 4] predictions.
        gt_boxes: [B, G, 4] ground truth (padded).
        gt_valid: bool [B, G]: which rows of `gt_boxes` are real.

    Returns:
        [B] or [B, k]; 0 where an image has no valid box.
    """
    boxes = np.asarray(boxes)
    squeeze = boxes.ndim == 2
    boxes = boxes[:, None] if squeeze else boxes
    overlaps = iou(boxes[:, :, None, :], np.asarray(gt_boxes)[:, None, :, :])  # [B, k, G]
    overlaps = np.where(np.asarray(gt_valid, bool)[:, None, :], overlaps, 0.0)
    best = overlaps.max(axis=-1, initial=0.0)
    return best[:, 0] if squeeze else best


def localization_correct(
    top_classes: np.ndarray,
    top_boxes: np.ndarray,
    labels: np.ndarray,
    gt_boxes: np.ndarray,
    gt_valid: np.ndarray,
    threshold: float = IOU_THRESHOLD,
) -> np.ndarray:
    """The ILSVRC-2012 task-2 rule, per image.

    Args:
        top_classes: int [B, k], the guesses (most probable first; only membership matters).
        top_boxes: [B, k, 4], the box of each guess.
        labels: int [B], the true class.
        gt_boxes: [B, G, 4], the ground-truth boxes of the true class (padded).
        gt_valid: bool [B, G].
        threshold: the IoU a box needs (>= counts).

    Returns:
        bool [B]: some guess has the true class and a box with IoU >= threshold with some valid
        ground-truth box. An image without ground-truth boxes is never correct.
    """
    right_class = np.asarray(top_classes) == np.asarray(labels)[:, None]
    right_box = best_iou(top_boxes, gt_boxes, gt_valid) >= threshold
    return np.any(right_class & right_box, axis=1)


@dataclasses.dataclass
class LocalizationCounter:
    """Accumulates the localization scores of batches (only images with ground-truth boxes)."""

    count: int = 0
    wrong_top_k: int = 0
    wrong_top1: int = 0
    iou_sum: float = 0.0

    def update(
        self,
        top_classes: np.ndarray,
        top_boxes: np.ndarray,
        labels: np.ndarray,
        gt_boxes: np.ndarray,
        gt_valid: np.ndarray,
        mask: np.ndarray,
    ) -> None:
        """Adds a batch; `mask` False rows (padding) and rows without a valid box are skipped.

        `top_classes`/`top_boxes` hold at least five guesses, most probable first (fewer only
        when there are fewer classes).
        """
        gt_valid = np.asarray(gt_valid, bool)
        keep = np.asarray(mask, bool) & gt_valid.any(axis=1)
        if not keep.any():
            return
        top_classes, top_boxes = np.asarray(top_classes)[keep], np.asarray(top_boxes)[keep]
        labels, gt_boxes, gt_valid = (
            np.asarray(labels)[keep],
            np.asarray(gt_boxes)[keep],
            gt_valid[keep],
        )
        k = min(TOP_K, top_classes.shape[1])
        correct_k = localization_correct(
            top_classes[:, :k], top_boxes[:, :k], labels, gt_boxes, gt_valid
        )
        correct_1 = localization_correct(
            top_classes[:, :1], top_boxes[:, :1], labels, gt_boxes, gt_valid
        )
        self.count += int(keep.sum())
        self.wrong_top_k += int((~correct_k).sum())
        self.wrong_top1 += int((~correct_1).sum())
        self.iou_sum += float(best_iou(top_boxes[:, 0], gt_boxes, gt_valid).sum())

    def errors(self) -> dict[str, float]:
        """{"localization_error", "localization_top1_error", "mean_iou"} (NaN if none counted)."""
        n = self.count
        nan = float("nan")
        return {
            "localization_error": self.wrong_top_k / n if n else nan,
            "localization_top1_error": self.wrong_top1 / n if n else nan,
            "mean_iou": self.iou_sum / n if n else nan,
        }
