"""The box loss of ILSVRC-2012 task 2 ("classification with localization") and its scoring.

With `--localization` the network also regresses a box per class from fc7 (`model.box_head`).
Training adds to the paper's cross-entropy

    box_loss_weight · smooth_L1(box of the TRUE class − the example's ground-truth box)

summed over the four coordinates (ymin, xmin, ymax, xmax, normalized to the 227×227 crop). Only
the true class's box is trained: the other classes' boxes answer "where would a c be", which this
image does not show. Examples without a box add exactly zero.

Why smooth L1 and not L2: (1) an image with several objects of its class gets one of them as the
target, and a box cut by the random crop reaches past it; L2 pulls hardest on exactly those
ambiguous targets (its gradient grows with the error) and regresses towards their mean, a box
between two objects, while smooth L1 pulls with a bounded force (Fast R-CNN, Girshick 2015,
section 2.3: "less sensitive to outliers than the L2 loss ... prevent exploding gradients").
(2) L2's gradient vanishes as a box closes in, so late in training the cross-entropy drowns it;
smooth L1 keeps a constant pull down to `SMOOTH_L1_BETA`.

Weight decay (section 5) stays on the paper's layers and leaves the head out: decaying its
4096·4·K weights touches all 16.4 M of them every step (K=1000), which alone cost 1.5-2% of the
step in benchmarks/box_head.py, while the loss reads only the true class's 4096×4 slice. The head
is regularized by the dropout on its input (drop7).
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from alexnet_tf.data.boxes import patch_boxes_to_original
from alexnet_tf.model import endpoints_model
from alexnet_tf.model.box_head import BOX_LAYER, boxes_of_classes, class_boxes
from alexnet_tf.results.boxes import TOP_K, LocalizationCounter, images_with_boxes
from alexnet_tf.training import optimizer

BOX_LOSS_WEIGHT = 1.0
# Quadratic below a tenth of the crop (about 23 pixels of 227), linear above: a box within a few
# pixels of its target is refined gently, a far or cut-off one is pulled with a bounded force.
SMOOTH_L1_BETA = 0.1


__all__ = ["LocalizationCounter", "images_with_boxes"]  # re-exported for the training loop


class NoBoxesError(ValueError):
    """--localization on data without boxes; the message names --bbox_dir."""


def check_boxes(manifest) -> None:
    """Stops a --localization run at start-up when the training split has no boxes.

    Raises:
        NoBoxesError: naming the manifest and the converter's --bbox_dir.
    """
    if images_with_boxes(manifest, "train") == 0:
        raise NoBoxesError(
            f"--localization needs ground-truth boxes, but the training split of "
            f"{manifest.path} has none; convert the data with "
            "tools/build_imagenet_tfrecords.py --bbox_dir=DIR (the Annotation/ folder of "
            "bounding-box XMLs), or train without --localization"
        )


def step_box_loss(
    model: keras.Model,
    features: tf.Tensor,
    labels: tf.Tensor,
    target: tf.Tensor,
    has_box: tf.Tensor,
    normalizer: tf.Module,
    seed: tf.Tensor,
) -> tf.Tensor:
    """The training step's per-example box loss, float32 [B].

    `target` is the input pipeline's box, normalized to the crop and not yet reflected: it is
    mirrored here exactly where `normalizer(images, training=True, seed=seed)` mirrored the
    images. `features` is drop7's output; only the true class's box is computed.
    """
    target = normalizer.reflect_boxes(target, seed)
    predicted = boxes_of_classes(model.get_layer(BOX_LAYER), features, labels)
    return box_loss(predicted, target, has_box)


class BoxLossWindow:
    """The box loss summed since the last progress line: `train/box_loss` is its mean over the
    examples that have a box."""

    def __init__(self):
        self.loss, self.count = 0.0, 0.0

    def add(self, loss_sum: float = 0.0, count: float = 0.0) -> None:
        self.loss += loss_sum
        self.count += count

    def flush(self) -> dict[str, float]:
        stats = {"train/box_loss": self.loss / self.count} if self.count else {}
        self.loss, self.count = 0.0, 0.0
        return stats


def decayed_without_head(model: keras.Model) -> list:
    """The weights section 5's decay applies to: every kernel but the box head's."""
    return [v for v in optimizer.decayed_weights(model) if not v.path.startswith(f"{BOX_LAYER}/")]


def smooth_l1(error: tf.Tensor, beta: float = SMOOTH_L1_BETA) -> tf.Tensor:
    """0.5·x²/β where |x| < β, else |x| − 0.5·β (elementwise)."""
    x = tf.abs(error)
    return tf.where(x < beta, 0.5 * tf.square(x) / beta, x - 0.5 * beta)


def box_loss(predicted: tf.Tensor, target: tf.Tensor, has_box: tf.Tensor) -> tf.Tensor:
    """Per-example box loss, exactly 0 where `has_box` is False.

    Args:
        predicted: float [B, 4], the box the head gives the TRUE class
            (`box_head.boxes_of_classes(head, features, labels)`).
        target: float32 [B, 4], the ground-truth box normalized to the crop (anything where
            `has_box` is False: it never reaches the result or the gradient).
        has_box: bool [B].

    Returns:
        float32 [B]: smooth L1 summed over the four coordinates.
    """
    predicted = tf.cast(predicted, tf.float32)
    # Boxless rows get a harmless target first: tf.where passes a zero gradient to the branch it
    # does not take, but zero times the gradient of a NaN target would still be NaN.
    target = tf.where(has_box[:, None], tf.cast(target, tf.float32), tf.zeros_like(predicted))
    per_example = tf.reduce_sum(smooth_l1(predicted - target), axis=-1)
    return tf.where(has_box, per_example, tf.zeros_like(per_example))


def top_k_boxes(logits: tf.Tensor, boxes: tf.Tensor, k: int = TOP_K) -> tuple[tf.Tensor, tf.Tensor]:
    """The k best classes [B, k] (ties: lower index first, as tf.math.top_k) and their boxes."""
    k = min(k, int(logits.shape[-1]))
    classes = tf.math.top_k(logits, k=k).indices
    return classes, tf.cast(class_boxes(boxes, classes), tf.float32)


def eval_box_fn(model: keras.Model, normalizer: tf.Module):
    """A compiled `images → (top-5 classes, their boxes normalized to the crop)` for the
    evaluation during training (centre crops, inference mode)."""
    endpoints = endpoints_model(model, ["fc8", BOX_LAYER])

    @tf.function(autograph=False)
    def boxes_of(images):
        outputs = endpoints(normalizer(images, training=False), training=False)
        return top_k_boxes(tf.cast(outputs["fc8"], tf.float32), outputs[BOX_LAYER])

    return boxes_of


def count_localizations(
    counter: LocalizationCounter,
    classes: np.ndarray,
    boxes: np.ndarray,
    labels: np.ndarray,
    mask: np.ndarray,
    gt_boxes: np.ndarray,
    gt_valid: np.ndarray,
    geometry: np.ndarray,
) -> None:
    """Adds a centre-crop evaluation batch to `counter`, boxes mapped to the original image."""
    b, k = classes.shape
    per_guess = np.asarray(boxes, np.float32).reshape(b * k, 4)
    original = patch_boxes_to_original(per_guess, np.repeat(geometry, k, axis=0), ten_patch=False)
    original = np.asarray(original).reshape(b, k, 4)
    counter.update(classes, original, labels, gt_boxes, gt_valid, mask)
