"""The CPU speed setting (oneDNN kernels) leaves the model's numbers as they are.

`alexnet_tf.cli.performance.enable_onednn()` switches TensorFlow to its oneDNN CPU kernels, which
TensorFlow reads once at import: the other setting runs in a subprocess. Outputs must agree to
float32 round-off (1e-5). Gradients of conv1-conv3 sum thousands of products of mixed sign, so
in float32 either setting is off from exact arithmetic by a few 1e-3 (2026-12-05, AMD EPYC:
at most 2.7e-3, conv1's kernel with TensorFlow's own kernels; 0.9e-3 with oneDNN's); a float64
build of the same weights is the arbiter, and each setting's relative error must stay below
GRADIENT_BOUND.
"""

import os
import subprocess
import sys
import textwrap
import warnings

import background
import keras
import numpy as np
import pytest
import tensorflow as tf

from alexnet_tf.cli import performance
from alexnet_tf.model import build_alexnet, layers

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GRADIENT_BOUND = 5e-3  # relative, per variable: float32 summation over thousands of terms

# The other setting's process: its float32 outputs and gradients, and float64's on the same
# weights (the arbiter), which take the longest and so are computed beside the tests, not in them.
_RUN = textwrap.dedent(
    """
    import sys
    from alexnet_tf.cli import performance
    asked = performance.enable_onednn()  # the environment decides, before TensorFlow loads
    import numpy as np
    sys.path.insert(0, sys.argv[2])
    from test_model_speed_equivalence import _exact, _outputs_and_gradients, _real_images
    from alexnet_tf.model import build_alexnet
    model = build_alexnet(10, seed=7, init="he")  # He init: activations of a useful size
    probs, grads = _outputs_and_gradients(model, _real_images())
    exact_probs, exact_grads = _exact(model)
    np.savez(sys.argv[1], onednn=performance.onednn_enabled(), asked=asked, probs=probs,
             exact_probs=exact_probs, **{f"grad_{i}": g for i, g in enumerate(grads)},
             **{f"exact_{i}": g for i, g in enumerate(exact_grads)})
    """
)


def _real_images():
    from sklearn.datasets import load_sample_images

    photos = load_sample_images().images  # two real 427×640 photographs
    crops = np.stack([p[50 : 50 + 227, 300 : 300 + 227] for p in photos]).astype(np.float32)
    return crops - crops.mean(axis=(0, 1, 2))


def _outputs_and_gradients(model, images, labels=(3, 8)):
    with tf.GradientTape() as tape:
        probs = model(tf.cast(images, model.compute_dtype), training=False)
        loss = tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(np.array(labels), probs))
    grads = tape.gradient(loss, model.trainable_variables)
    return probs.numpy().astype(np.float64), [g.numpy().astype(np.float64) for g in grads]


def _exact_lrn(x, k=2.0, n=5, alpha=1e-4, beta=0.75):
    """Section 3.3 in plain ops, for float64 (TensorFlow's LRN op has no float64 kernel)."""
    half = n // 2
    squares = tf.pad(x * x, [[0, 0]] * 3 + [[half, half]])
    window = tf.add_n([squares[..., i : i + x.shape[-1]] for i in range(n)])
    return x * (k + alpha * window) ** -beta


@background.job()
def other_kernels(folder):
    """_RUN in a process with the other oneDNN setting than the tests': the path of its .npz,
    its exit status and stderr."""
    # The tests' setting, which importing alexnet_tf wrote into the environment (the test
    # checks that the process really ran the other one).
    here = background.ENVIRONMENT[performance.ONEDNN_VARIABLE] != "0"
    env = {
        **background.ENVIRONMENT,
        "TF_CPP_MIN_LOG_LEVEL": "2",
        "PYTHONPATH": REPO,
        performance.ONEDNN_VARIABLE: "0" if here else "1",
    }
    out = folder / "other.npz"
    proc = subprocess.run(
        [sys.executable, "-c", _RUN, str(out), os.path.dirname(os.path.abspath(__file__))],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env, timeout=300,
        cwd=REPO,
    )  # fmt: skip
    return out, proc.returncode, proc.stderr


def test_onednn_gives_the_numbers_of_tensorflows_own_kernels(other_kernels):
    here = performance.onednn_enabled()
    model = build_alexnet(10, seed=7, init="he")
    probs, grads = _outputs_and_gradients(model, _real_images())
    out, returncode, stderr = other_kernels
    assert returncode == 0, stderr[-3000:]
    other = np.load(out)
    assert bool(other["onednn"]) != here  # the two settings really differ
    assert bool(other["asked"]) == bool(other["onednn"])  # and enable_onednn() said which

    np.testing.assert_allclose(other["probs"], probs, rtol=1e-5, atol=1e-6)  # the same weights
    np.testing.assert_allclose(probs, other["exact_probs"], rtol=1e-5, atol=1e-6)
    assert len(grads) == 30
    for i, (variable, grad) in enumerate(zip(model.trainable_variables, grads)):
        exact = other[f"exact_{i}"]
        norm = np.linalg.norm(exact)
        assert norm > 0, variable.path
        # Both kernel sets are float32 approximations of the float64 gradient; how far each is
        # from it varies with the CPU (conv1's summation order), so each is held to the same
        # bound rather than to the other's error.
        own_error = np.linalg.norm(grad - exact) / norm
        other_error = np.linalg.norm(other[f"grad_{i}"] - exact) / norm
        assert max(own_error, other_error) < GRADIENT_BOUND, (variable.path, own_error, other_error)


def _exact(model):
    """Float64's outputs and gradients on `model`'s weights, LRN in plain ops."""
    keras.config.set_dtype_policy("float64")
    try:
        exact_model = build_alexnet(10, seed=7, init="he")
    finally:
        keras.config.set_dtype_policy("float32")
    exact_model.set_weights([w.astype(np.float64) for w in model.get_weights()])
    lrn = layers.local_response_normalization
    layers.local_response_normalization = _exact_lrn
    try:
        return _outputs_and_gradients(exact_model, _real_images())
    finally:
        layers.local_response_normalization = lrn


@pytest.mark.parametrize("value, expected", [(None, True), ("1", True), ("0", False)])
def test_enable_onednn_before_tensorflow_follows_the_environment(monkeypatch, value, expected):
    """Before TensorFlow is imported the answer comes from the variable, which it sets to "1"
    unless the user chose; the subprocess above shows that TensorFlow then does as it said."""
    monkeypatch.delitem(sys.modules, "tensorflow")  # as in a binary's first lines
    if value is None:
        monkeypatch.delenv(performance.ONEDNN_VARIABLE, raising=False)
    else:
        monkeypatch.setenv(performance.ONEDNN_VARIABLE, value)
    assert performance.enable_onednn() is expected
    assert os.environ[performance.ONEDNN_VARIABLE] == (value or "1")


@pytest.mark.parametrize("value, warned", [("1", True), ("0", False)])
def test_enable_onednn_after_tensorflow_warns_when_it_is_too_late(monkeypatch, value, warned):
    """TensorFlow imported without oneDNN: asking for it can only warn, and the answer is False."""
    monkeypatch.setenv(performance.ONEDNN_VARIABLE, value)
    monkeypatch.setattr(performance, "onednn_enabled", lambda: False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert performance.enable_onednn() is False
    assert [str(w.message).startswith("enable_onednn() ran after") for w in caught] == (
        [True] if warned else []
    )
    assert os.environ[performance.ONEDNN_VARIABLE] == value


def test_configure_threads_rejects_bad_counts():
    with pytest.raises(ValueError, match="intra_op threads must be an integer >= 0; received -1"):
        performance.configure_threads(-1, 0)
