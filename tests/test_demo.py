"""`python -m alexnet_tf.demo`: every stage in one command, re-runs skip finished stages."""

import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The smallest demo that runs every stage: 2 training and 1 held-out digit per class, two steps.
TINY = [
    "--train_per_class=2", "--val_per_class=1", "--train_steps=2", "--batch_size=4",
    "--eval_every_steps=0", "--checkpoint_every_steps=2", "--shuffle_buffer=8",
    "--figure_images=2", "--retrieval_queries=2", "--retrieval_k=2",
]  # fmt: skip


def run_demo(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.run(
        [sys.executable, "-m", "alexnet_tf.demo", *args],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=900,
    )  # fmt: skip


@pytest.fixture(scope="module")
def tiny_demo(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("demo") / "work"
    return workdir, run_demo(f"--workdir={workdir}", *TINY)


def test_demo_runs_every_stage_and_writes_every_figure(tiny_demo):
    workdir, proc = tiny_demo
    assert proc.returncode == 0, proc.stderr[-4000:]
    records = json.loads((workdir / "demo_stages.json").read_text())
    assert list(records) == ["data", "convert", "train", "evaluate", "figures", "retrieval"]
    train = workdir / "train"
    for path in ("figures/conv1_kernels.png", "figures/top5.png", "figures/conv1_stats.json",
                 "retrieval/retrieval.png", "eval.json"):  # fmt: skip
        assert (train / path).is_file(), path
        assert str(train / path) in proc.stdout or path == "eval.json"
    assert "ten-patch accuracy" in proc.stdout and "time per stage" in proc.stdout
    assert "neighbour_correlation" in proc.stdout
    # The demo's training flags override configs/demo.cfg, and flags.cfg replays the training.
    flags_cfg = (train / "flags.cfg").read_text()
    assert "--train_steps=2" in flags_cfg and "--batch_size=4" in flags_cfg
    assert "--train_per_class" not in flags_cfg
    assert "Traceback" not in proc.stderr


def test_a_second_run_skips_finished_stages(tiny_demo):
    workdir, first = tiny_demo
    assert first.returncode == 0, first.stderr[-4000:]
    before = (workdir / "demo_stages.json").read_text()
    proc = run_demo(f"--workdir={workdir}", *TINY)
    assert proc.returncode == 0, proc.stderr[-4000:]
    output = proc.stdout + proc.stderr
    for stage in ("data", "convert", "train", "evaluate", "figures", "retrieval"):
        assert f"demo: {stage}: finished earlier, skipped" in output
    assert (workdir / "demo_stages.json").read_text() == before


def test_unwritable_workdir_is_one_line(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    proc = run_demo(f"--workdir={blocker / 'demo'}", *TINY)
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.startswith("demo: error")]
    assert len(lines) == 1 and str(blocker / "demo") in lines[0], proc.stderr[-2000:]


def test_a_failing_stage_is_named_with_its_own_command(tmp_path):
    proc = run_demo(f"--workdir={tmp_path}", *TINY, "--learning_rate=-1")
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    assert "stage train failed: --learning_rate must be > 0" in proc.stderr
    command = f"python -m alexnet_tf.train --flagfile={tmp_path / 'train' / 'flags.cfg'}"
    assert command in proc.stderr
    records = json.loads((tmp_path / "demo_stages.json").read_text())
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
