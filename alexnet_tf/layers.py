"""Layers of the 2012 network that Keras does not ship as they are needed.

* `LocalResponseNormalization`: section 3.3 of the paper, computed with banded matrix multiplies
  (faster forward and backward on CPU than TensorFlow's LRN op, same numbers).
* `Placed*`: standard Keras layers that run, and keep their variables, on one named device. The
  paper trains its two towers on two GPUs (section 3.2). In a Keras 3 functional model a
  `tf.device` scope around layer *construction* places the variables but not the operations: the
  functional graph calls each layer later, outside that scope. These layers therefore open the
  scope inside `build` (variables) and inside `call` (operations).
"""

from __future__ import annotations

import contextlib

import keras
import numpy as np
import tensorflow as tf

_PACKAGE = "alexnet_tf"


def local_response_normalization(
    x: tf.Tensor, k: float = 2.0, n: int = 5, alpha: float = 1e-4, beta: float = 0.75
) -> tf.Tensor:
    """Section 3.3: b_i = a_i / (k + alpha * sum_{j=i-n/2}^{i+n/2} a_j^2) ** beta.

    The sum runs over `n` adjacent channels (fewer at the edges) of an NHWC tensor; `alpha`
    multiplies the sum directly, as in the paper (Caffe divides its alpha by n).

    It gives the numbers of `tf.nn.local_response_normalization` (see `reference_lrn`) to float32
    round-off, forward and backward, but computes them faster on CPUs (issue 7): the window sum
    is one matrix multiply of the squares by a banded 0/1 matrix, and the gradient is written out
    (a second banded multiply) instead of TensorFlow's per-element LRNGrad kernel, 3-4 times
    faster for forward+backward on CPU. The same ops run on GPUs and under XLA. The arithmetic is
    at least float32: squared activations can overflow float16.
    """
    dtype = x.dtype if x.dtype in (tf.float32, tf.float64) else tf.float32
    y = _banded_lrn(tf.cast(x, dtype), float(k), int(n), float(alpha), float(beta))
    return tf.cast(y, x.dtype)


def reference_lrn(
    x: tf.Tensor, k: float = 2.0, n: int = 5, alpha: float = 1e-4, beta: float = 0.75
) -> tf.Tensor:
    """The straightforward build of section 3.3: TensorFlow's own LRN op.

    TensorFlow's `depth_radius` is the half-width `(n - 1) / 2`, and its `alpha` multiplies the sum
    directly, as in the paper. tests/test_model_speed_equivalence.py pins the fast version to it.
    """
    return tf.nn.local_response_normalization(
        x, depth_radius=(n - 1) // 2, bias=k, alpha=alpha, beta=beta
    )


def _band(channels: int, n: int) -> np.ndarray:
    """(C, C) 0/1 matrix, 1 where |i - j| <= n // 2: `squares @ band` sums each window."""
    i = np.arange(channels)
    return (np.abs(i[:, None] - i[None, :]) <= n // 2).astype(np.float32)


def _inverse_power(d: tf.Tensor, beta: float) -> tf.Tensor:
    if beta == 0.75:  # the paper's value: d^-0.75 = d^-0.5 · d^-0.25, cheaper than pow
        r = tf.math.rsqrt(d)
        return r * tf.sqrt(r)
    return tf.pow(d, -beta)


@tf.autograph.experimental.do_not_convert
def _banded_lrn(x: tf.Tensor, k: float, n: int, alpha: float, beta: float) -> tf.Tensor:
    channels = x.shape[-1]
    band = tf.constant(_band(channels, n), x.dtype)

    @tf.custom_gradient
    def lrn(x):
        flat = tf.reshape(x, (-1, channels))
        d = k + alpha * tf.matmul(tf.square(flat), band)
        scale = _inverse_power(d, beta)  # d_i^-beta
        y = flat * scale

        def grad(upstream):
            # dL/da_j = g_j d_j^-beta - 2 alpha beta a_j sum_{i in window(j)} g_i b_i / d_i:
            # the window is symmetric, so the sum is the same banded multiply.
            g = tf.reshape(upstream, (-1, channels))
            spread = tf.matmul(g * y / d, band)
            return tf.reshape(g * scale - (2.0 * alpha * beta) * flat * spread, tf.shape(x))

        return tf.reshape(y, tf.shape(x)), grad

    return lrn(x)


@keras.saving.register_keras_serializable(package=_PACKAGE)
class LocalResponseNormalization(keras.layers.Layer):
    """Local response normalization across channels (section 3.3), with the paper's names."""

    def __init__(
        self,
        k: float = 2.0,
        n: int = 5,
        alpha: float = 1e-4,
        beta: float = 0.75,
        device: str | None = None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if not isinstance(n, int) or n < 1 or n % 2 == 0:
            raise ValueError(f"LRN size n must be a positive odd integer; received n={n!r}")
        self.k, self.n, self.alpha, self.beta = float(k), n, float(alpha), float(beta)
        self.device_name = device

    def call(self, inputs):
        with _device_scope(self.device_name):
            return local_response_normalization(inputs, self.k, self.n, self.alpha, self.beta)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {
            **super().get_config(),
            "k": self.k,
            "n": self.n,
            "alpha": self.alpha,
            "beta": self.beta,
            "device": self.device_name,
        }


def _device_scope(device: str | None):
    return tf.device(device) if device else contextlib.nullcontext()


class _Placed:
    """Mixin: build and call the wrapped Keras layer under `tf.device(device)`."""

    def __init__(self, *args, device: str | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.device_name = device

    def build(self, input_shape):
        with _device_scope(self.device_name):
            super().build(input_shape)

    def get_config(self):
        return {**super().get_config(), "device": self.device_name}


@keras.saving.register_keras_serializable(package=_PACKAGE)
class PlacedConv2D(_Placed, keras.layers.Conv2D):
    def call(self, inputs):
        with _device_scope(self.device_name):
            return super().call(inputs)


@keras.saving.register_keras_serializable(package=_PACKAGE)
class PlacedDense(_Placed, keras.layers.Dense):
    def call(self, inputs, training=None):
        with _device_scope(self.device_name):
            return super().call(inputs, training=training)


@keras.saving.register_keras_serializable(package=_PACKAGE)
class PlacedMaxPooling2D(_Placed, keras.layers.MaxPooling2D):
    def call(self, inputs):
        with _device_scope(self.device_name):
            return super().call(inputs)


@keras.saving.register_keras_serializable(package=_PACKAGE)
class PlacedDropout(_Placed, keras.layers.Dropout):
    # The explicit `training` argument matters: Keras passes it only to calls that name it.
    def call(self, inputs, training=False):
        with _device_scope(self.device_name):
            return super().call(inputs, training=training)


@keras.saving.register_keras_serializable(package=_PACKAGE)
class PlacedConcatenate(_Placed, keras.layers.Concatenate):
    def call(self, inputs):
        with _device_scope(self.device_name):
            return super().call(inputs)


@keras.saving.register_keras_serializable(package=_PACKAGE)
class PlacedFlatten(_Placed, keras.layers.Flatten):
    def call(self, inputs):
        with _device_scope(self.device_name):
            return super().call(inputs)
