"""The optimizer of section 5: SGD with momentum 0.9 and weight decay 0.0005.

The paper's update rule, for learning rate ε and batch-averaged gradient ∂L/∂w:

    v ← 0.9·v − 0.0005·ε·w − ε·∂L/∂w
    w ← w + v

How this module gets exactly that from Keras:

* `keras.optimizers.SGD(learning_rate=ε, momentum=0.9)` updates `m ← 0.9·m − ε·g; w ← w + m`
  (keras/src/optimizers/sgd.py). The learning rate multiplies the new gradient *inside* the
  velocity, as in the paper, so a change of ε affects only later gradients (PyTorch's SGD instead
  keeps `v ← 0.9·v + g` and multiplies the whole velocity by the current ε).
* Weight decay as an L2 term added to the loss: `0.5·0.0005·‖w‖² = 0.00025·‖w‖²` has gradient
  `0.0005·w`, so `g = ∂L/∂w + 0.0005·w` and `−ε·g = −0.0005·ε·w − ε·∂L/∂w`: the paper's rule.
  Keras's own `weight_decay=` argument is *decoupled* (it applies `w ← w − ε·λ·w` outside the
  momentum), which is not the paper's rule; it is deliberately left unset.

The decay applies to the weights (kernels) of conv1-5 and fc6-8, not to the biases, as in the
paper's reference implementation (cuda-convnet's `wc` is set per layer on weights; Caffe's
`bvlc_alexnet` uses `decay_mult: 0` on biases).

`--train_layers` (fine-tuning) freezes every other layer with Keras's `layer.trainable`: a
frozen layer's variables leave `model.trainable_variables`, so they get no gradient, no update,
no weight decay and no momentum slot.

tests/test_train_optimizer.py pins one update against the formula.
"""

from __future__ import annotations

from collections.abc import Sequence

import keras
import tensorflow as tf

MOMENTUM = 0.9  # section 5
WEIGHT_DECAY = 5e-4  # section 5


def make_sgd(learning_rate: float, momentum: float = MOMENTUM) -> keras.optimizers.SGD:
    """Keras SGD with classical (not Nesterov) momentum and no decoupled weight decay."""
    if not 0 <= momentum < 1:
        raise ValueError(f"--momentum must be in [0, 1); received {momentum!r}")
    return keras.optimizers.SGD(learning_rate=learning_rate, momentum=momentum, nesterov=False)


# The paper's names of the layers with weights; "bbox" is the box head of ILSVRC task 2.
TRAINABLE_LAYERS = ("conv1", "conv2", "conv3", "conv4", "conv5", "fc6", "fc7", "fc8", "bbox")


def set_trainable_layers(model: keras.Model, names: Sequence[str]) -> list[str]:
    """Freezes every layer with weights but those named (all train when `names` is empty).

    Args:
        model: the network; its layers' `trainable` flags are set.
        names: paper names from TRAINABLE_LAYERS; "conv2" covers both towers' conv2_a and
            conv2_b.

    Returns:
        The Keras names of the layers that train, in model order.
    """
    unknown = sorted(set(names) - set(TRAINABLE_LAYERS))
    if unknown:
        raise ValueError(f"--train_layers must name some of {TRAINABLE_LAYERS}; received {unknown}")
    trained = []
    for layer in model.layers:
        if not layer.weights:
            continue
        layer.trainable = not names or layer.name.split("_")[0] in names
        if layer.trainable:
            trained.append(layer.name)
    return trained


def decayed_weights(model: keras.Model) -> list:
    """The variables that weight decay applies to: every kernel of the network."""
    return [v for v in model.trainable_variables if v.path.endswith("kernel")]


def l2_penalty(weights: list, weight_decay: float = WEIGHT_DECAY) -> tf.Tensor:
    """`weight_decay / 2 · Σ‖w‖²`; its gradient is `weight_decay · w` (see module docstring)."""
    if not weights or weight_decay == 0:
        return tf.constant(0.0, tf.float32)
    return (
        0.5
        * weight_decay
        * tf.add_n([tf.reduce_sum(tf.square(tf.cast(w, tf.float32))) for w in weights])
    )
