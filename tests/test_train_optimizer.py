"""Section 5's update rule, pinned on the real update step (`steps.train_step`) of a tiny model.

The expected update is computed here by hand in NumPy (backpropagation of the mean cross-entropy
through two dense layers), so the step's loss, weight decay and momentum are all checked against
the paper's formula rather than against a second copy of the step.
"""

import keras
import numpy as np
import tensorflow as tf

from alexnet_tf.training import optimizer, schedules, steps
from alexnet_tf.training.state import TrainState

# Section 5: "momentum of 0.9, and weight decay of 0.0005" (the paper's numbers, not the code's).
MOMENTUM, WEIGHT_DECAY = 0.9, 0.0005

X = np.array([[0.5, -1.0, 2.0], [1.5, 0.25, -0.5]], np.float32)
LABELS = np.array([1, 0], np.int32)


class _Unchanged(tf.Module):
    """A normalizer that passes the inputs through (no flips, no noise)."""

    def __call__(self, images, training=False, seed=None):
        return tf.cast(images, tf.float32)


def _state(sgd=None, seed=1):
    """fc7 (3→4, linear) → fc8 (4→2 logits) → softmax, and the paper's SGD."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((3,))
    fc7 = keras.layers.Dense(4, name="fc7")(inputs)
    fc8 = keras.layers.Dense(2, name="fc8")(fc7)
    model = keras.Model(inputs, keras.layers.Softmax(name="predictions")(fc8))
    sgd = sgd or optimizer.make_sgd(0.1)
    sgd.build(model.trainable_variables)
    return TrainState(
        model=model, optimizer=sgd, schedule=schedules.make_schedule("step", 0.1, boundaries=[100]),
        normalizer=_Unchanged(), step=tf.Variable(0, dtype=tf.int64), seed=0,
    )  # fmt: skip


def _data_gradients(w7, b7, w8, b8):
    """∂L/∂(w7, b7, w8, b8) of L = mean over the batch of −log softmax(fc8)[label]."""
    z7 = X @ w7 + b7
    z8 = z7 @ w8 + b8
    p = np.exp(z8 - z8.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    dz8 = (p - np.eye(2)[LABELS]) / len(X)
    dz7 = dz8 @ w8.T
    return [X.T @ dz7, dz7.sum(0), z7.T @ dz8, dz8.sum(0)]


def test_one_update_equals_the_papers_rule():
    """v ← 0.9·v − 0.0005·ε·w − ε·∂L/∂w, w ← w + v, on kernels; biases get no decay."""
    state = _state()
    options = steps.StepOptions(batch_size=len(X))
    variables = state.model.trainable_variables
    assert [v.path for v in variables] == ["fc7/kernel", "fc7/bias", "fc8/kernel", "fc8/bias"]
    # First step from v = 0, then a second one with another ε: the velocity must carry over and
    # the new ε must scale only the new gradient (the paper's form, not PyTorch's).
    velocity = [np.zeros(v.shape, np.float32) for v in variables]
    for step, lr in enumerate((0.1, 0.03)):
        state.optimizer.learning_rate.assign(lr)
        before = [v.numpy().astype(np.float64) for v in variables]
        loss_sum, wrong1, wrong5 = steps.train_step(
            state, options, tf.constant(X), tf.constant(LABELS), tf.constant(step, tf.int64)
        )
        grads = _data_gradients(*before)
        for i, v in enumerate(variables):
            decay = WEIGHT_DECAY if v.path.endswith("kernel") else 0.0
            velocity[i] = MOMENTUM * velocity[i] - decay * lr * before[i] - lr * grads[i]
            np.testing.assert_allclose(v.numpy(), before[i] + velocity[i], rtol=1e-5, atol=1e-7)
        assert 0 <= float(wrong1) <= 2 and float(wrong5) == 0  # 2 classes: always in the top 5
        assert float(loss_sum) > 0


def test_keras_decoupled_weight_decay_is_not_the_papers_rule():
    """Why the step adds an L2 term instead of passing `weight_decay=` to Keras."""
    results = []
    for builtin in (False, True):
        sgd = keras.optimizers.SGD(0.1, momentum=MOMENTUM, weight_decay=WEIGHT_DECAY)
        state = _state(sgd if builtin else None, seed=2)
        for v in state.model.trainable_variables:
            v.assign(tf.ones_like(v))
        options = steps.StepOptions(1, weight_decay=0.0 if builtin else WEIGHT_DECAY)
        for step in range(2):
            steps.train_step(state, options, X[:1], LABELS[:1], tf.constant(step, tf.int64))
        results.append(state.model.get_layer("fc7").kernel.numpy())
    assert not np.allclose(results[0], results[1], rtol=0, atol=1e-7)


def test_decay_applies_to_kernels_only():
    model = _state().model
    assert [v.path for v in optimizer.decayed_weights(model)] == ["fc7/kernel", "fc8/kernel"]
    penalty = optimizer.l2_penalty(optimizer.decayed_weights(model), WEIGHT_DECAY)
    expected = 0.00025 * sum(float(np.sum(v.numpy() ** 2)) for v in model.trainable_variables
                             if v.path.endswith("kernel"))  # fmt: skip
    np.testing.assert_allclose(float(penalty), expected, rtol=1e-6)


def test_eval_step_counts_only_unmasked_rows():
    state = _state()
    images = np.concatenate([X, X])
    labels = np.concatenate([LABELS, LABELS])
    mask = np.array([True, True, False, False])
    wrong1, wrong5, count = steps.eval_step(state, images, labels, mask)
    logits = state.model.get_layer("fc8")(state.model.get_layer("fc7")(X)).numpy()
    expected = int(np.sum(np.argmax(logits, 1) != LABELS))
    assert (float(wrong1), float(wrong5), float(count)) == (expected, 0.0, 2.0)


def _clipped_update(before, lr, clip_norm):
    """The first update (v = 0) with the whole gradient, weight decay included, clipped."""
    grads = _data_gradients(*before)
    grads = [g + (WEIGHT_DECAY * w if w.ndim == 2 else 0) for g, w in zip(grads, before)]
    norm = np.sqrt(sum(np.sum(g**2) for g in grads))
    scale = min(1.0, clip_norm / norm)
    return [w - lr * scale * g for w, g in zip(before, grads)], norm


def test_clipping_scales_the_whole_gradient_down_to_the_norm():
    for clip_norm, clipped in ((0.05, True), (1e3, False)):
        state = _state()
        before = [v.numpy().astype(np.float64) for v in state.model.trainable_variables]
        options = steps.StepOptions(batch_size=len(X), clip_gradient_norm=clip_norm)
        steps.train_step(state, options, X, LABELS, tf.constant(0, tf.int64))
        expected, norm = _clipped_update(before, 0.1, clip_norm)
        assert (norm > clip_norm) == clipped
        for v, w in zip(state.model.trainable_variables, expected):
            np.testing.assert_allclose(v.numpy(), w, rtol=1e-5, atol=1e-7)


def test_clipping_over_two_replicas_clips_their_sum_exactly():
    """Each replica's share scaled by the factor of the summed gradient (not of its own), on
    the session's two logical CPUs (tests/conftest.py)."""
    # Not collective all-reduce: a second strategy using it in one process reuses the first's
    # collective keys (test_train_distributed.py trains one), and TensorFlow mixes them up.
    strategy = tf.distribute.MirroredStrategy(
        ["/cpu:0", "/cpu:1"], cross_device_ops=tf.distribute.ReductionToOneDevice()
    )
    with strategy.scope():
        state = _state()
    before = [v.numpy().astype(np.float64) for v in state.model.trainable_variables]
    options = steps.StepOptions(batch_size=len(X), replicas=2, clip_gradient_norm=0.05)

    def half(ctx):
        r = ctx.replica_id_in_sync_group
        return X[r::2], LABELS[r::2]

    halves = strategy.experimental_distribute_values_from_function(half)
    strategy.run(
        lambda x, y: steps.train_step(state, options, x, y, tf.constant(0, tf.int64)), args=halves
    )
    expected, norm = _clipped_update(before, 0.1, 0.05)
    assert norm > 0.05
    for v, w in zip(state.model.trainable_variables, expected):
        np.testing.assert_allclose(v.numpy(), w, rtol=1e-5, atol=1e-7)
