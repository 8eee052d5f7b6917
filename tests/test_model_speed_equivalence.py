"""The faster computation of issue 7 gives the numbers of the straightforward build.

The straightforward build normalizes with TensorFlow's own LRN op (`layers.reference_lrn`); the
model computes the same formula with banded matrix multiplies and a written-out gradient
(`layers.local_response_normalization`). Outputs and gradients must agree to float32 round-off.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

from alexnet_tf import layers
from alexnet_tf.model import build_alexnet


@pytest.fixture(scope="module")
def images():
    from sklearn.datasets import load_sample_images

    photos = load_sample_images().images  # two real 427×640 photographs
    crops = np.stack([p[50 : 50 + 227, 300 : 300 + 227] for p in photos]).astype(np.float32)
    return tf.constant(crops - crops.mean(axis=(0, 1, 2)))


@pytest.fixture(scope="module")
def activations(images):
    """Post-ReLU maps of real photographs, at the scale LRN sees them in the paper's network."""
    kernel = tf.random.stateless_normal((11, 11, 3, 48), (1, 2), stddev=0.05)
    return tf.nn.relu(tf.nn.conv2d(images, kernel, 4, "VALID"))  # (2, 55, 55, 48)


def _outputs_and_gradients(model, images, labels):
    with tf.GradientTape() as tape:
        probs = model(tf.cast(images, model.compute_dtype), training=False)
        loss = tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(labels, probs))
    grads = tape.gradient(loss, model.trainable_variables)
    return probs.numpy().astype(np.float64), [g.numpy().astype(np.float64) for g in grads]


def test_model_matches_the_straightforward_build(images, monkeypatch):
    """Same outputs; gradients as close to exact arithmetic as the straightforward build's.

    The gradients of conv1-conv3 sum thousands of products of mixed sign, so the float32 result
    of either build is off from exact arithmetic by up to ~1e-3 (TensorFlow's own LRN op is the
    less accurate of the two); a float64 build with the same weights is the arbiter.
    """
    model = build_alexnet(10, seed=7, init="he")  # He init: activations of a useful size
    labels = tf.constant([3, 8])
    fast_probs, fast_grads = _outputs_and_gradients(model, images, labels)
    keras.config.set_dtype_policy("float64")
    try:
        exact = build_alexnet(10, seed=7, init="he")
    finally:
        keras.config.set_dtype_policy("float32")
    exact.set_weights([w.astype(np.float64) for w in model.get_weights()])
    exact_probs, exact_grads = _outputs_and_gradients(exact, images, labels)
    monkeypatch.setattr(layers, "local_response_normalization", layers.reference_lrn)
    ref_probs, ref_grads = _outputs_and_gradients(model, images, labels)

    np.testing.assert_allclose(fast_probs, ref_probs, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(fast_probs, exact_probs, rtol=1e-5, atol=1e-6)
    assert len(fast_grads) == len(ref_grads) == len(exact_grads) == 30
    for variable, fast, ref, want in zip(
        model.trainable_variables, fast_grads, ref_grads, exact_grads
    ):
        norm = np.linalg.norm(want)
        assert norm > 0, variable.path
        fast_err = np.linalg.norm(fast - want) / norm
        ref_err = np.linalg.norm(ref - want) / norm
        assert fast_err <= max(2 * ref_err, 1e-5), (variable.path, fast_err, ref_err)
        assert ref_err < 1e-2, (variable.path, ref_err)  # the two builds agree to float32 limits


@pytest.mark.parametrize(
    "params",
    [{}, {"k": 1.0, "n": 5, "alpha": 2e-5, "beta": 0.75}, {"k": 1.0, "n": 3, "beta": 0.5}],
)
@pytest.mark.parametrize("jit_compile", [False, True])
def test_lrn_forward_and_backward_match_tensorflows_op(activations, params, jit_compile):
    upstream = tf.sin(tf.range(tf.size(activations), dtype=tf.float32))
    upstream = tf.reshape(upstream, activations.shape)

    def run(lrn):
        @tf.function(jit_compile=jit_compile)
        def forward_backward(x):
            with tf.GradientTape() as tape:
                tape.watch(x)
                y = lrn(x, **params)
            return y, tape.gradient(y, x, upstream)

        return forward_backward(activations)

    (y, dx), (ref_y, ref_dx) = run(layers.local_response_normalization), run(layers.reference_lrn)
    # The values matter: at these magnitudes the normalization is far from the identity.
    assert float(tf.reduce_max(tf.abs(ref_y - activations))) > 1.0
    np.testing.assert_allclose(y, ref_y, rtol=2e-5, atol=1e-6)
    np.testing.assert_allclose(dx, ref_dx, rtol=1e-4, atol=1e-6 * float(tf.reduce_max(ref_dx)))


def test_lrn_in_float16_keeps_its_type_and_does_not_overflow():
    # 300² · 5 = 450,000 is far beyond float16's 65,504: the sum must be taken in float32.
    x = tf.fill((1, 2, 2, 8), 300.0)
    got = layers.local_response_normalization(tf.cast(x, tf.float16))
    assert got.dtype == tf.float16
    np.testing.assert_allclose(tf.cast(got, tf.float32), layers.reference_lrn(x), rtol=2e-3)
