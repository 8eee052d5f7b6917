"""--init_from: matching layers loaded bit for bit, others fresh; resume first; bad input named."""

import logging

import numpy as np
import pytest
import tensorflow as tf

from alexnet_tf.model import build_alexnet
from alexnet_tf.model.paper_weights import get_paper_weights
from alexnet_tf.training import init_from
from alexnet_tf.training import loop as training

PAPER_HIDDEN = [f"{name}_{t}" for name in ("conv1", "conv2", "conv3", "conv4", "conv5", "fc6",
                                           "fc7") for t in "ab"]  # fmt: skip


def _weights(model, name):
    return [v.numpy() for v in model.get_layer(name).trainable_weights]


@pytest.fixture(scope="module")
def source_model(tools_source):
    """The network of tools_workdir's newest checkpoint (10 classes, no box head), restored by
    TensorFlow's own reader (`load_trained_model`, conftest's `tools_source`): the values
    init_from must reproduce."""
    return tools_source.model


def test_matching_layers_load_bit_for_bit_and_the_rest_start_fresh(tools_workdir, source_model):
    # 3 classes and a box head: fc8 and bbox have other shapes than the 10-class source's.
    model = build_alexnet(3, init="he", seed=11, localization=True)
    before = {name: _weights(model, name) for name in ("fc8", "bbox")}

    fresh = init_from.load_into(model, tools_workdir)

    assert fresh == ["fc8", "bbox"]
    for name in PAPER_HIDDEN:
        for got, expected in zip(_weights(model, name), _weights(source_model, name), strict=True):
            np.testing.assert_array_equal(got, expected, err_msg=name)
    for name, values in before.items():  # untouched: still the new run's initialization
        for got, start in zip(_weights(model, name), values, strict=True):
            np.testing.assert_array_equal(got, start, err_msg=name)
    assert not np.array_equal(_weights(model, "fc8")[0], _weights(source_model, "fc8")[0][:, :3])


def test_paper_weights_file_loads_every_layer(source_model, tmp_path):
    path = str(tmp_path / "weights.npy")
    np.save(path, np.array(get_paper_weights(source_model), dtype=object), allow_pickle=True)
    model = build_alexnet(10, init="he", seed=12)

    assert init_from.load_into(model, path) == []
    for name in [*PAPER_HIDDEN, "fc8"]:
        for got, expected in zip(_weights(model, name), _weights(source_model, name), strict=True):
            np.testing.assert_array_equal(got, expected, err_msg=name)


def _tiny_checkpoint(tools_data_dir, workdir, steps=2, **changes):
    from test_train_distributed import SMALL, tiny_alexnet

    config = training.TrainConfig(
        data_dir=tools_data_dir, workdir=str(workdir), **{**SMALL, "train_steps": steps, **changes}
    )
    return training.train(config, build_model=tiny_alexnet)


def test_a_run_with_its_own_checkpoint_resumes_instead_of_loading(
    tools_data_dir, tools_workdir, tmp_path, caplog, monkeypatch
):
    run = tmp_path / "run"
    first = _tiny_checkpoint(tools_data_dir, run)
    loads = []
    monkeypatch.setattr(init_from, "load_into", lambda *a, **k: loads.append(a))

    with caplog.at_level(logging.INFO):
        second = _tiny_checkpoint(tools_data_dir, run, steps=3, init_from=tools_workdir)

    assert loads == []
    assert second.step == 3 and first.step == 2
    assert f"Resumed from {first.checkpoint} at step 2" in caplog.text
    assert "is not loaded again" in caplog.text


def test_a_new_run_starts_from_the_source_and_from_step_zero(tools_data_dir, tmp_path):
    from test_train_distributed import tiny_alexnet

    source = _tiny_checkpoint(tools_data_dir, tmp_path / "source", steps=3)
    expected = tf.train.load_checkpoint(source.checkpoint)
    # A tiny source is no AlexNet, so check_source (the binary's start-up check) is bypassed.
    model = tiny_alexnet(10, None, init="he", seed=99)
    fresh = init_from.load_into(model, str(tmp_path / "source"), build_model=tiny_alexnet)

    assert fresh == []
    # Training checkpoints keep the weights in the optimizer's list of trainable variables.
    kernels = [k for k in expected.get_variable_to_shape_map() if "_trainable_variables" in k]
    stored = sorted(expected.get_tensor(k).tobytes() for k in kernels)
    assert sorted(v.numpy().tobytes() for v in model.trainable_weights) == stored


def _bad_sources(tmp_path, tools_data_dir):
    not_checkpoint = tmp_path / "notes.txt"
    not_checkpoint.write_text("not weights")
    empty_run = tmp_path / "empty_run"
    (empty_run / "checkpoints").mkdir(parents=True)
    other_layout = str(tmp_path / "other.npy")
    np.save(other_layout, np.array({"conv1": [np.zeros((3, 3, 3, 8)), np.zeros(8)]}, object))
    other_net = _tiny_checkpoint(tools_data_dir, tmp_path / "tiny_run")  # not an AlexNet
    return {
        "not a checkpoint": (str(not_checkpoint), "neither a training workdir nor"),
        "no checkpoint": (str(empty_run), "no checkpoint in"),
        "other layout": (other_layout, "not in the bvlc_alexnet.npy layout"),
        "other network": (other_net.checkpoint, "is not of this network"),
    }


def test_each_bad_source_is_named_before_anything_is_written(tools_data_dir, tmp_path):
    for case, (source, message) in _bad_sources(tmp_path, tools_data_dir).items():
        workdir = tmp_path / f"new_{case.replace(' ', '_')}"
        config = training.TrainConfig(
            data_dir=tools_data_dir, workdir=str(workdir), init_from=source
        )
        with pytest.raises(training.ConfigError, match=message) as error:
            config.validate()
        assert source in str(error.value) and "\n" not in str(error.value), case
        assert not workdir.exists(), case


def test_binary_exits_1_with_one_line_and_writes_nothing(binary_runs):
    # python -m alexnet_tf.train --data_dir=... --workdir=NEW --init_from=MISSING --train_steps=1
    result = binary_runs["train:init_from"]
    source = result["argv"][2].split("=", 1)[1]
    assert result["code"] == 1
    errors = [line for line in result["stderr"].splitlines() if line.startswith("train: error:")]
    assert len(errors) == 1 and source in errors[0], result["stderr"][-2000:]
    assert "Traceback" not in result["stderr"]
    assert result["written"] == []  # no --workdir
