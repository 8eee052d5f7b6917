"""`python -m alexnet_tf.demo`: every stage in one command, re-runs skip finished stages.

The demo runs with conftest.DEMO_TINY's flags in the `binary_runs` interpreter: "demo:ok", then
"demo:again" in the same folder, an unwritable --workdir and a failing stage.
"""

import json
import os

import pytest

STAGES = ["data", "convert", "train", "evaluate", "figures", "retrieval"]


def test_demo_runs_every_stage_and_writes_every_figure(binary_runs):
    run = binary_runs["demo:ok"]
    assert run["code"] == 0, run["stderr"][-4000:]
    workdir = run["workdir"]
    records = json.loads(run["read"][os.path.join(workdir, "demo_stages.json")])
    assert list(records) == STAGES
    train = os.path.join(workdir, "train")
    for path in ("figures/conv1_kernels.png", "figures/top5.png", "figures/conv1_stats.json",
                 "retrieval/retrieval.png", "eval.json"):  # fmt: skip
        assert os.path.isfile(os.path.join(train, path)), path
        assert os.path.join(train, path) in run["stdout"] or path == "eval.json"
    assert "ten-patch accuracy" in run["stdout"] and "time per stage" in run["stdout"]
    assert "neighbour_correlation" in run["stdout"]
    # The demo's training flags override configs/demo.cfg, and flags.cfg replays the training.
    with open(os.path.join(train, "flags.cfg")) as f:
        flags_cfg = f.read()
    assert "--train_steps=2" in flags_cfg and "--batch_size=4" in flags_cfg
    assert "--train_per_class" not in flags_cfg
    assert "Traceback" not in run["stderr"]


def test_a_second_run_skips_finished_stages(binary_runs):
    first, again = binary_runs["demo:ok"], binary_runs["demo:again"]
    assert first["code"] == 0 and again["code"] == 0, again["stderr"][-4000:]
    output = again["stdout"] + again["stderr"]
    for stage in STAGES:
        assert f"demo: {stage}: finished earlier, skipped" in output
    assert again["read"] == first["read"]  # demo_stages.json unchanged


def test_unwritable_workdir_is_one_line(binary_runs):
    run = binary_runs["demo:unwritable"]
    assert run["code"] not in (0, None)
    assert "Traceback" not in run["stderr"]
    lines = [line for line in run["stderr"].splitlines() if line.startswith("demo: error")]
    target = os.path.join(run["workdir"], "demo")
    assert len(lines) == 1 and target in lines[0], run["stderr"][-2000:]


def test_a_failing_stage_is_named_with_its_own_command(binary_runs):
    run = binary_runs["demo:failing"]
    assert run["code"] not in (0, None)
    assert "Traceback" not in run["stderr"]
    # It passes the start-up checks and fails inside training: TF_CONFIG is not set.
    assert "stage train failed: --strategy=multi_worker needs the TF_CONFIG" in run["stderr"]
    workdir = run["workdir"]
    command = f"python -m alexnet_tf.train --flagfile={os.path.join(workdir, 'train', 'flags.cfg')}"
    assert command in run["stderr"]
    records = json.loads(run["read"][os.path.join(workdir, "demo_stages.json")])
    assert list(records) == ["data", "convert"]  # train is not recorded as finished


def test_conv1_init_stddev_sets_conv1_only():
    from alexnet_tf.model import build_alexnet

    model = build_alexnet(10, init="he", conv1_init_stddev=0.001, seed=0)
    conv1 = model.get_layer("conv1_a").kernel.numpy()
    conv2 = model.get_layer("conv2_a").kernel.numpy()
    assert abs(conv1.std() - 0.001) < 0.0001
    assert abs(conv2.std() - (2 / (5 * 5 * 48)) ** 0.5) < 0.01  # He-normal, as --init=he says
    with pytest.raises(ValueError, match="conv1_init_stddev must be > 0"):
        build_alexnet(10, conv1_init_stddev=0.0)
