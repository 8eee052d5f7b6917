"""Smoke test of the training loop on real images: the real network's two steps, then a resume
and a NaN stop on the stand-in network (tests/tiny_runs.py), which goes through the same loop.

The full 227×227 network trains at a few images per second on two cores, so its run is 2 steps
of 4 images; what is checked is the bookkeeping, not the learning.
"""

import dataclasses
import glob
import os

import numpy as np
import pytest
import tensorflow as tf
from tiny_runs import assert_same_weights, tiny_alexnet

from alexnet_tf.model import layers
from alexnet_tf.runs.checkpoints import load_trained_model, read_model_config
from alexnet_tf.training import loop as training


def _tags(logdir):
    tags = set()
    for path in glob.glob(os.path.join(logdir, "events.out.tfevents.*")):
        for event in tf.compat.v1.train.summary_iterator(path):
            tags |= {value.tag for value in event.summary.value}
    return tags


def _optimizer_state(prefix):
    reader = tf.train.load_checkpoint(prefix)
    return {k: reader.get_tensor(k) for k in reader.get_variable_to_shape_map()
            if k.startswith("optimizer/")}  # fmt: skip


def test_two_steps_of_the_real_network_leave_what_the_tools_read(trained_workdir, tools_data_dir):
    # conftest's trained_workdir: two steps, checkpoint and evaluation at the end
    workdir = trained_workdir.workdir
    first = trained_workdir
    assert first.step == 2 and np.isfinite(first.loss)
    assert first.checkpoint.endswith("ckpt-2")
    assert first.eval["num_examples"] == 6  # every validation image once, padding not counted
    assert first.eval["top5_error"] <= first.eval["top1_error"]
    model_config = read_model_config(workdir)
    assert model_config["num_classes"] == 10
    assert model_config["model"] == {"init": "he", "dropout_rate": 0.5, "seed": 3}
    assert model_config["preprocessing"]["input_scale"] == pytest.approx(1 / 64)
    assert model_config["data_dir"] == os.path.abspath(tools_data_dir)
    model, _, prefix = load_trained_model(workdir)  # the evaluation tools' way back in
    assert prefix.endswith("ckpt-2") and model.get_layer("fc8").kernel.shape == (4096, 10)
    expected_tags = {
        "train/loss", "train/top1_error", "train/top5_error", "train/learning_rate",
        "train/images_per_sec", "eval/top1_error", "eval/top5_error", "conv1/filters",
    }  # fmt: skip
    tags = _tags(os.path.join(workdir, training.SUMMARY_DIR))
    assert expected_tags <= tags
    assert any(t.startswith("weights/conv1_a/kernel") for t in tags)


def test_resume_carries_the_optimizer_over_and_a_nan_loss_stops_the_run(tools_data_dir, tmp_path):
    # The stand-in network (tests/tiny_runs.py) through the same loop: two steps, then resumed,
    # beside three steps in one go
    config = training.TrainConfig(
        data_dir=tools_data_dir, workdir=str(tmp_path / "run"), train_steps=2, batch_size=4,
        eval_every_steps=0, log_every_steps=1, checkpoint_every_steps=100,
        init="he", input_scale=1 / 64, shuffle_buffer=16, seed=3, deterministic=True,
    )  # fmt: skip
    training.train(config, build_model=tiny_alexnet)
    saved = _optimizer_state(os.path.join(config.workdir, "checkpoints", "ckpt-2"))
    momentum_keys = [k for k, v in saved.items() if v.ndim == 4 and np.any(v)]
    assert momentum_keys, "the momentum of the conv kernels should be saved and non-zero"
    resumed = training.train(dataclasses.replace(config, train_steps=3), build_model=tiny_alexnet)
    assert resumed.step == 3 and resumed.checkpoint.endswith("ckpt-3")
    after = _optimizer_state(resumed.checkpoint)
    iterations = [k for k, v in after.items() if v.ndim == 0 and v.dtype.kind == "i"]
    assert [int(after[k]) for k in iterations] == [3]  # 1 if the optimizer had started over
    whole = training.train(
        dataclasses.replace(config, workdir=str(tmp_path / "whole"), train_steps=3),
        build_model=tiny_alexnet,
    )
    assert_same_weights(whole.checkpoint, resumed.checkpoint)  # momentum slots included

    # --- a loss that overflows stops the run at that step; ckpt-3 stays the latest, untouched
    ckpt_files = sorted(glob.glob(os.path.join(config.workdir, "checkpoints", "*")))
    mtimes = [os.path.getmtime(f) for f in ckpt_files]
    # NaN logits: NaN *inputs* are not enough, because oneDNN's fused convolution + ReLU maps
    # NaN to 0 (so does the LRN to huge values); diverged weights reach the logits through fc8,
    # which has no ReLU after it, and that is what this simulates.
    dense_call = layers.PlacedDense.call

    def nan_fc8(self, inputs, training=None):
        outputs = dense_call(self, inputs, training=training)
        return outputs * float("nan") if self.name == "fc8" else outputs

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(layers.PlacedDense, "call", nan_fc8)
        with pytest.raises(training.NonFiniteLossError, match=r"at step 4\b.*ckpt-3"):
            training.train(dataclasses.replace(config, train_steps=5), build_model=tiny_alexnet)
    latest = tf.train.latest_checkpoint(os.path.join(config.workdir, "checkpoints"))
    assert latest.endswith("ckpt-3")
    assert sorted(glob.glob(os.path.join(config.workdir, "checkpoints", "*"))) == ckpt_files
    assert [os.path.getmtime(f) for f in ckpt_files] == mtimes
