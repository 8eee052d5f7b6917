"""Fine-tuning with --train_layers: only the named layers move; the rest stay bit for bit."""

import logging

import numpy as np
import pytest
import tensorflow as tf

from alexnet_tf.data.demo_data import sample_photographs
from alexnet_tf.model import IMAGE_SIZE, build_alexnet
from alexnet_tf.training import init_from, optimizer, steps
from alexnet_tf.training.config import ConfigError, TrainConfig
from alexnet_tf.training.state import create_train_state


class _Centred(tf.Module):
    """A normalizer without augmentation: pixels centred and scaled as configs/demo.cfg does."""

    def __call__(self, images, training=False, seed=None):
        return (tf.cast(images, tf.float32) - 128.0) / 32.0


def _photos() -> np.ndarray:
    """Two real 227×227 crops (scikit-learn's china and flower) as uint8 [2, 227, 227, 3]."""
    photos = sample_photographs()
    return np.stack(
        [photos[n][100 : 100 + IMAGE_SIZE, 200 : 200 + IMAGE_SIZE] for n in ("china", "flower")]
    )


@pytest.fixture(scope="module")
def trained(tools_data_dir, tmp_path_factory):
    """A 10-class network with --train_layers=fc7,fc8, before and after two SGD steps."""
    config = TrainConfig(
        data_dir=tools_data_dir, workdir=str(tmp_path_factory.mktemp("finetune")),
        init="he", train_layers=("fc7", "fc8"), learning_rate=0.01,
    )  # fmt: skip
    config.validate()
    state = create_train_state(
        config, tf.distribute.get_strategy(), 10, _Centred(), build_model=build_alexnet
    )
    before = {v.path: v.numpy().copy() for v in state.model.weights}
    options = steps.StepOptions(batch_size=2, weight_decay=config.weight_decay)
    images, labels = tf.constant(_photos()), tf.constant([3, 7], tf.int32)
    for step in range(2):
        steps.train_step(state, options, images, labels, tf.constant(step, tf.int64))
    after = {v.path: v.numpy() for v in state.model.weights}
    return state, before, after


TRAINED = {"fc7_a/kernel", "fc7_a/bias", "fc7_b/kernel", "fc7_b/bias", "fc8/kernel", "fc8/bias"}


def test_frozen_layers_are_unchanged_bit_for_bit_and_trained_ones_move(trained):
    _, before, after = trained
    assert set(before) > TRAINED
    for path in before:
        if path in TRAINED:
            assert not np.array_equal(before[path], after[path]), path
        else:
            assert np.array_equal(before[path], after[path]), path


def test_frozen_layers_have_no_momentum_slot_and_no_decay(trained):
    state, _, _ = trained
    assert {v.path for v in state.model.trainable_variables} == TRAINED
    slots = [v for v in state.optimizer.variables if v.shape.rank]  # not the iteration counter
    assert sorted(tuple(v.shape) for v in slots) == sorted(
        tuple(v.shape) for v in state.model.trainable_variables
    )
    assert {v.path for v in state.decayed} == {"fc7_a/kernel", "fc7_b/kernel", "fc8/kernel"}


def test_frozen_layers_start_from_init_from_and_the_log_says_which_train(
    tools_data_dir, tools_workdir, tools_source, tmp_path, caplog
):
    config = TrainConfig(
        data_dir=tools_data_dir, workdir=str(tmp_path), init="he", seed=5, train_layers=("fc8",)
    )  # another seed than tools_workdir's network: equal weights come from --init_from
    with caplog.at_level(logging.INFO):
        state = create_train_state(
            config, tf.distribute.get_strategy(), 10, _Centred(), build_model=build_alexnet
        )
        assert init_from.load_into(state.model, tools_workdir, build_alexnet) == []
    assert "Training only fc8; the other layers are frozen" in caplog.text
    for name in ("conv1_a", "conv5_b", "fc7_a", "fc8"):
        np.testing.assert_array_equal(
            state.model.get_layer(name).kernel.numpy(),
            tools_source.model.get_layer(name).kernel.numpy(),
        )
    model = state.model
    assert optimizer.set_trainable_layers(model, ["conv2", "fc8"]) == ["conv2_a", "conv2_b", "fc8"]
    assert optimizer.set_trainable_layers(model, []) == [
        layer.name for layer in model.layers if layer.weights
    ]  # the default: all
    assert len(model.trainable_variables) == 2 * 15  # conv1-5 and fc6-7 in two towers, fc8


@pytest.mark.parametrize(
    "layers, localization, match",
    [
        (("fc7", "fc9"), False, r"--train_layers must name some of .*\['fc9'\] unknown"),
        (("bbox",), False, "--train_layers names bbox.*needs --localization"),
    ],
)
def test_bad_train_layers_name_the_flag(tools_data_dir, tmp_path, layers, localization, match):
    config = TrainConfig(
        data_dir=tools_data_dir, workdir=str(tmp_path), train_layers=layers,
        localization=localization,
    )  # fmt: skip
    with pytest.raises(ConfigError, match=match):
        config.validate()
