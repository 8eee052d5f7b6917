"""The box regressor of ILSVRC-2012 task 2 ("classification with localization").

The 2012 network localized with the same features it classified with: a regressor on the 4096-d
last hidden layer predicts one box per class, and each of the five guesses is a class with its
own box. `build_alexnet(localization=True)` adds it beside fc8:

    fc7 → drop7 → fc8 → softmax        (unchanged)
              └──→ bbox                [B, 4K]: class c's box is columns 4c … 4c+3

A box is (ymin, xmin, ymax, xmax) normalized to the 227×227 input crop (0 … 1, like
`tf.image`); a box may reach past the crop when the object does. The head reads drop7's output,
the input fc8 gets: the dropout regularizes its 4096·4·K weights as it does fc8's. (Training
leaves the head out of weight decay: see `training/localization.py`.)
"""

from __future__ import annotations

import contextlib

import keras
import numpy as np
import tensorflow as tf

BOX_LAYER = "bbox"
FC7_UNITS = 4096
BOX_COORDINATES = 4  # ymin, xmin, ymax, xmax
# Fast R-CNN (Girshick, 2015, section 2.3) starts its box regressor from N(0, 0.001): ten times
# smaller than the classifier's, so the first steps' boxes stay near the bias.
BOX_INIT_STDDEV = 0.001
# Every class starts by guessing the whole crop, the box that needs no features to be roughly
# right: in ILSVRC most objects fill much of the image.
WHOLE_CROP = (0.0, 0.0, 1.0, 1.0)


@keras.saving.register_keras_serializable(package="alexnet_tf")
class BoxRegressor(keras.layers.Layer):
    """4 numbers per class from the 4096-d features: the `bbox` layer.

    The kernel is stored class by class, (K, 4096, 4), not as a Dense layer's (4096, 4K): the
    training step reads the 4 columns of each example's true class (`boxes_of_classes`), and
    gathering whole rows of the first axis makes the kernel's gradient a sparse one, so the
    backward pass never transposes the 16.4 M weights (half the head's cost in
    benchmarks/box_head.py). The output is the same as a Dense layer's: [B, 4K].
    """

    def __init__(
        self,
        num_classes: int,
        device: str | None = None,
        seed: int | None = None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.num_classes, self.device_name, self.seed = num_classes, device, seed

    def build(self, input_shape):
        with _device_scope(self.device_name):
            self.kernel = self.add_weight(
                name="kernel",
                shape=(self.num_classes, input_shape[-1], BOX_COORDINATES),
                initializer=keras.initializers.RandomNormal(0.0, BOX_INIT_STDDEV, seed=self.seed),
            )
            self.bias = self.add_weight(
                name="bias",
                shape=(self.num_classes, BOX_COORDINATES),
                initializer=keras.initializers.Constant(np.tile(WHOLE_CROP, (self.num_classes, 1))),
            )

    def call(self, inputs):
        with _device_scope(self.device_name):
            inputs = tf.cast(inputs, self.compute_dtype)
            kernel, bias = tf.cast(self.kernel, inputs.dtype), tf.cast(self.bias, inputs.dtype)
            boxes = tf.tensordot(inputs, kernel, axes=[[1], [1]]) + bias  # B, K, 4
            return tf.reshape(boxes, [-1, self.num_classes * BOX_COORDINATES])

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.num_classes * BOX_COORDINATES)

    def get_config(self):
        return {
            **super().get_config(),
            "num_classes": self.num_classes,
            "device": self.device_name,
            "seed": self.seed,
        }


def _device_scope(device: str | None):
    return tf.device(device) if device else contextlib.nullcontext()


def box_head(num_classes: int, device: str | None = None, seed: int | None = None) -> BoxRegressor:
    """The `bbox` layer: 4 numbers per class from the 4096-d fc7 (on `device`, like fc8)."""
    return BoxRegressor(num_classes, device=device, seed=seed, name=BOX_LAYER)


def box_head_parameters(num_classes: int) -> int:
    """Weights and biases of the head: 4096·4·K + 4·K."""
    return FC7_UNITS * BOX_COORDINATES * num_classes + BOX_COORDINATES * num_classes


def has_box_head(model: keras.Model) -> bool:
    """Whether `model` was built with `localization=True`."""
    return any(layer.name == BOX_LAYER for layer in model.layers)


def class_boxes(boxes: tf.Tensor, classes: tf.Tensor) -> tf.Tensor:
    """The boxes the head predicts for the given classes.

    Args:
        boxes: the `bbox` output, [B, 4K] (or already [B, K, 4]).
        classes: int [B] (one class per example) or [B, k] (for example the top-k guesses).

    Returns:
        float32 [B, 4] or [B, k, 4].
    """
    boxes = tf.convert_to_tensor(boxes)
    boxes = tf.reshape(boxes, [tf.shape(boxes)[0], -1, BOX_COORDINATES])
    classes = tf.cast(classes, tf.int32)
    if classes.shape.rank == 1:
        return tf.gather(boxes, classes[:, None], batch_dims=1)[:, 0]
    return tf.gather(boxes, classes, batch_dims=1)


def boxes_of_classes(head: BoxRegressor, features: tf.Tensor, classes: tf.Tensor) -> tf.Tensor:
    """`class_boxes(head(features), classes)` computed for the given classes only.

    Training needs one box per example, the true class's: this multiplies the features by that
    class's 4096×4 slice of the kernel instead of all 4K columns, so at K=1000 the head's forward
    and backward cost a fraction of a per cent of the step instead of about 2% (BUILD.md).

    Args:
        head: the `bbox` layer.
        features: [B, 4096], the head's input (drop7's output).
        classes: int [B].

    Returns:
        float32 [B, 4].
    """
    with _device_scope(head.device_name):
        classes = tf.cast(classes, tf.int32)
        rows = tf.gather(head.kernel, classes)  # B, 4096, 4: a sparse gradient
        features = tf.cast(features, rows.dtype)
        return tf.einsum("bi,bij->bj", features, rows) + tf.gather(head.bias, classes)
