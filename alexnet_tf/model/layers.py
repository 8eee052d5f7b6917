"""Layers of the 2012 network that Keras does not ship as they are needed.

* `LocalResponseNormalization`: section 3.3 of the paper, within one tower's maps.
* `CrossTowerLRN`: the same normalization over both towers' maps, as Caffe's `bvlc_alexnet` does
  (its conv1 is one layer of 96 kernels, so its windows cross from tower a's maps into b's).
* `Placed*`: standard Keras layers that run, and keep their variables, on one named device. The
  paper trains its two towers on two GPUs (section 3.2). In a Keras 3 functional model a
  `tf.device` scope around layer *construction* places the variables but not the operations: the
  functional graph calls each layer later, outside that scope. These layers therefore open the
  scope inside `build` (variables) and inside `call` (operations).
"""

from __future__ import annotations

import contextlib

import keras
import tensorflow as tf

_PACKAGE = "alexnet_tf"


def local_response_normalization(
    x: tf.Tensor, k: float = 2.0, n: int = 5, alpha: float = 1e-4, beta: float = 0.75
) -> tf.Tensor:
    """Section 3.3: b_i = a_i / (k + alpha * sum_{j=i-n/2}^{i+n/2} a_j^2) ** beta.

    The sum runs over `n` adjacent channels (fewer at the edges) of an NHWC tensor.
    TensorFlow's `depth_radius` is the half-width `(n - 1) / 2`, and its `alpha` multiplies the sum
    directly, as in the paper (Caffe divides its alpha by n; TensorFlow does not).

    Half precision: TensorFlow's LRN kernels (and their gradients) exist for float32 only outside
    XLA (no bfloat16 kernel on CPUs, only float32 on GPUs). A float16 or bfloat16 `x` is therefore
    normalized in float32 and the result cast back to `x`'s dtype: in bfloat16, `k + alpha * sum`
    near k = 2 would keep only 1/64 of resolution, and so drop most of the normalization.
    """
    dtype = x.dtype
    if dtype != tf.float32:
        x = tf.cast(x, tf.float32)
    out = tf.nn.local_response_normalization(
        x, depth_radius=(n - 1) // 2, bias=k, alpha=alpha, beta=beta
    )
    return out if dtype == tf.float32 else tf.cast(out, dtype)


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


@keras.saving.register_keras_serializable(package=_PACKAGE)
class CrossTowerLRN(LocalResponseNormalization):
    """One tower's share of an LRN over the channels of both towers, tower a's first.

    Called on `[own, other]` (this tower's maps, then the other tower's), it returns this tower's
    maps normalized as if both towers' maps were one tensor: the windows at the boundary take
    their missing neighbours from the other tower. Only the `(n - 1) / 2` neighbouring channels
    of the other tower are read, so each tower keeps its own output and its own layer.
    """

    def __init__(self, *args, tower: str = "a", **kwargs):
        super().__init__(*args, **kwargs)
        if tower not in ("a", "b"):
            raise ValueError(f"tower must be 'a' or 'b'; received {tower!r}")
        self.tower = tower

    def call(self, inputs):
        own, other = inputs
        half = (self.n - 1) // 2
        with _device_scope(self.device_name):
            if half == 0:
                return local_response_normalization(own, self.k, self.n, self.alpha, self.beta)
            if self.tower == "a":  # tower a's maps come first: its neighbours are b's first maps
                both = tf.concat([own, other[..., :half]], axis=-1)
                out = local_response_normalization(both, self.k, self.n, self.alpha, self.beta)
                return out[..., : own.shape[-1]]
            both = tf.concat([other[..., -half:], own], axis=-1)
            out = local_response_normalization(both, self.k, self.n, self.alpha, self.beta)
            return out[..., -own.shape[-1] :]

    def compute_output_shape(self, input_shape):
        return input_shape[0]

    def get_config(self):
        return {**super().get_config(), "tower": self.tower}


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
