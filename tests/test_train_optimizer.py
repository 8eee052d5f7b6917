"""Section 5's update rule, pinned against Keras: momentum form, learning rate and weight decay."""

import keras
import numpy as np
import tensorflow as tf

from alexnet_tf.training import optimizer


def _tiny_model():
    inputs = keras.Input((3,))
    outputs = keras.layers.Dense(2, name="fc8")(keras.layers.Dense(4, name="fc7")(inputs))
    return keras.Model(inputs, outputs)


def _update(model, sgd, x, y, weight_decay):
    """One step as training.py takes it: data loss plus the L2 term, then sgd.apply."""
    variables = model.trainable_variables
    with tf.GradientTape() as tape:
        data_loss = tf.reduce_mean(tf.square(model(x) - y))
        total = data_loss + optimizer.l2_penalty(optimizer.decayed_weights(model), weight_decay)
    with tf.GradientTape() as data_tape:
        data_only = tf.reduce_mean(tf.square(model(x) - y))
    data_grads = [g.numpy() for g in data_tape.gradient(data_only, variables)]
    sgd.apply(tape.gradient(total, variables), variables)
    return data_grads


def test_one_update_equals_the_papers_rule():
    """v ← 0.9·v − 0.0005·ε·w − ε·∂L/∂w, w ← w + v, on kernels; biases get no decay."""
    keras.utils.set_random_seed(1)
    model = _tiny_model()
    x = np.array([[0.5, -1.0, 2.0], [1.5, 0.25, -0.5]], np.float32)
    y = np.array([[1.0, -1.0], [0.0, 2.0]], np.float32)
    wd = optimizer.WEIGHT_DECAY
    sgd = optimizer.make_sgd(0.1)
    sgd.build(model.trainable_variables)
    variables = model.trainable_variables
    # First step from v = 0, then a second one with another ε: the velocity must carry over and
    # the new ε must scale only the new gradient (the paper's form, not PyTorch's).
    velocity = [np.zeros(v.shape, np.float32) for v in variables]
    for lr in (0.1, 0.03):
        sgd.learning_rate.assign(lr)
        before = [v.numpy() for v in variables]
        grads = _update(model, sgd, x, y, wd)
        for i, v in enumerate(variables):
            decay = wd if v.path.endswith("kernel") else 0.0
            velocity[i] = 0.9 * velocity[i] - decay * lr * before[i] - lr * grads[i]
            np.testing.assert_allclose(v.numpy(), before[i] + velocity[i], rtol=1e-5, atol=1e-7)


def test_keras_decoupled_weight_decay_is_not_the_papers_rule():
    """Why training.py adds an L2 term instead of passing `weight_decay=` to Keras."""
    x = np.ones((1, 3), np.float32)
    y = np.zeros((1, 2), np.float32)
    results = []
    for builtin in (False, True):
        keras.utils.set_random_seed(2)
        model = _tiny_model()
        for v in model.trainable_variables:
            v.assign(tf.ones_like(v))
        sgd = (
            keras.optimizers.SGD(0.1, momentum=0.9, weight_decay=optimizer.WEIGHT_DECAY)
            if builtin
            else optimizer.make_sgd(0.1)
        )
        for _ in range(2):
            _update(model, sgd, x, y, 0.0 if builtin else optimizer.WEIGHT_DECAY)
        results.append(model.get_layer("fc7").kernel.numpy())
    assert not np.allclose(results[0], results[1], rtol=0, atol=1e-7)


def test_decay_applies_to_kernels_only():
    model = _tiny_model()
    assert [v.path for v in optimizer.decayed_weights(model)] == ["fc7/kernel", "fc8/kernel"]
    penalty = optimizer.l2_penalty(optimizer.decayed_weights(model), 0.0005)
    expected = 0.00025 * sum(float(np.sum(v.numpy() ** 2)) for v in model.trainable_variables
                             if v.path.endswith("kernel"))  # fmt: skip
    np.testing.assert_allclose(float(penalty), expected, rtol=1e-6)
