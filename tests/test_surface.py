"""What a user meets first: nothing written before the inputs are checked, a quiet start, --help
that exits 0, a demo whose flags.cfg resumes its training, and dependencies that run one way."""

import ast
import contextlib
import io
import os
import subprocess
import sys

import background
import numpy as np
import pytest
from absl import flags

from alexnet_tf.cli import startup
from alexnet_tf.model import filters

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = os.path.join(REPO, "alexnet_tf")
from binaries import BINARIES, TOOLS, binary, run_main  # noqa: E402


@pytest.fixture
def empty(tmp_path):
    (tmp_path / "empty").mkdir()
    return tmp_path


@pytest.mark.parametrize(
    "name, args",
    [
        ("train", ["--flagfile=configs/demo.cfg", "--data_dir=EMPTY", "--workdir=NEW/run"]),
        ("evaluate", ["--workdir=NEW/run", "--data_dir=EMPTY"]),
        ("export", ["--workdir=NEW/run", "--data_dir=EMPTY", "--export_dir=NEW/exported"]),
        ("visualize", ["--workdir=NEW/run", "--data_dir=EMPTY", "--output_dir=NEW/figures"]),
        ("retrieve", ["--workdir=NEW/run", "--data_dir=EMPTY", "--output_dir=NEW/retrieval"]),
        ("demo", ["--flagfile=configs/demo.cfg", "--workdir=NEW/demo", "--batch_size=-3"]),
        ("demo", ["--flagfile=configs/demo.cfg", "--workdir=NEW/demo", "--retrieval_k=0"]),
        ("build_imagenet_tfrecords", ["--train_dir=EMPTY", "--output_dir=NEW/data"]),
        ("make_demo_dataset", ["--output_dir=NEW/raw", "--train_per_class=0"]),
    ],
)
def test_a_refused_run_leaves_nothing_behind(empty, monkeypatch, name, args):
    monkeypatch.chdir(REPO)  # configs/ are relative to the repository root
    args = [
        a.replace("EMPTY", str(empty / "empty")).replace("NEW", str(empty / "new")) for a in args
    ]
    code, stderr = run_main(name, *args)
    assert code not in (0, None), stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "error" in lines[0], stderr
    assert sorted(os.listdir(empty)) == ["empty"] and os.listdir(empty / "empty") == []


def test_train_checks_the_checkpoints_it_resumes_before_writing_flags_cfg(
    tools_data_dir, tmp_path, monkeypatch
):
    monkeypatch.chdir(REPO)
    checkpoints = tmp_path / "run" / "checkpoints"
    checkpoints.mkdir(parents=True)
    (checkpoints / "ckpt-4.index").write_bytes(b"not a checkpoint index")
    (checkpoints / "ckpt-4.data-00000-of-00001").write_bytes(b"")
    args = ["--flagfile=configs/demo.cfg", f"--data_dir={tools_data_dir}"]
    code, stderr = run_main("train", *args, f"--workdir={tmp_path / 'run'}")
    assert code == 1 and "no checkpoint in" in stderr and "can be read" in stderr, stderr
    assert sorted(os.listdir(tmp_path / "run")) == ["checkpoints"]  # no flags.cfg


def test_the_demos_flags_cfg_resumes_its_training_from_anywhere(tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)
    with binary("demo") as demo:
        flags.FLAGS(["demo", "--flagfile=configs/demo.cfg", "--workdir=demo_elsewhere",
                     "--epochs=3", "--retrieval_k=4"])  # fmt: skip
        folders = demo.Folders(str(tmp_path / "demo"))
        path = demo.write_train_flags(folders)
    assert path == str(tmp_path / "demo" / "train" / "flags.cfg")
    with open(path, encoding="utf-8") as f:
        lines = f.read().splitlines()
    # Absolute folders: the run's own, whichever directory the replay starts in.
    assert f"--workdir={tmp_path / 'demo' / 'train'}" in lines
    assert f"--data_dir={tmp_path / 'demo' / 'data'}" in lines
    assert "--epochs=3.0" in lines and not any(line.startswith("--retrieval_k") for line in lines)
    # What it replays into: the training binary's flags, from another current directory.
    monkeypatch.chdir(tmp_path)
    with binary("train"):
        flags.FLAGS(["train", f"--flagfile={path}"])
        assert flags.FLAGS.workdir == str(tmp_path / "demo" / "train")
        assert flags.FLAGS.data_dir == str(tmp_path / "demo" / "data")
        assert flags.FLAGS.epochs == 3.0


@pytest.mark.parametrize("name", [*BINARIES, *TOOLS])
def test_help_exits_0(name, monkeypatch):
    monkeypatch.chdir(REPO)  # the demo reads configs/demo.cfg
    stdout = io.StringIO()
    with binary(name) as module, contextlib.redirect_stdout(stdout):
        monkeypatch.setattr(sys, "argv", [name, "--help"])
        with pytest.raises(SystemExit) as exit_info:
            if name in TOOLS:
                startup.run(module.main, name)
            else:
                module.run_main()
        help_text = flags.FLAGS.module_help(module)
    assert exit_info.value.code == 0
    assert "--" in stdout.getvalue()
    if name == "demo":  # the training flags it passes on, and --workdir, beside its own five
        assert "--workdir" in help_text and "--epochs" in help_text and "--retrieval_k" in help_text


def test_help_and_verbosity_are_read_from_the_command_line():
    assert startup.asks_for_help(["x", "--help"]) and startup.asks_for_help(["x", "-h"])
    assert startup.asks_for_help(["x", "--epochs=2", "--helpfull"])
    assert not startup.asks_for_help(["x", "--nohelp"]) and not startup.asks_for_help(["x", "--"])
    assert startup.verbosity(["x", "--verbosity=1"]) == 1 and startup.verbosity(["x", "-v", "2"])
    assert startup.verbosity(["x", "--epochs=2"]) == 0 and startup.verbosity(["x", "-v=-1"]) == -1


def _start(*args: str, **env: str) -> subprocess.Popen:
    environment = {
        k: v for k, v in background.ENVIRONMENT.items() if k != startup.LOG_LEVEL_VARIABLE
    }
    return subprocess.Popen(
        [sys.executable, "-m", "alexnet_tf.describe", *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO,
        env={**environment, "PYTHONPATH": REPO, **env},
    )  # fmt: skip


@background.job()
def usage_errors_in_fresh_processes(_):
    """`describe --num_classes=0` in three fresh processes (the log level is read when
    TensorFlow loads), started together: the user's environment, CI's TF_CPP_MIN_LOG_LEVEL=2 and
    TensorFlow's logs asked for (0). Returns [(exit status, stderr)] in that order."""
    started = [
        _start("--num_classes=0"),
        _start("--num_classes=0", TF_CPP_MIN_LOG_LEVEL="2"),
        _start("--num_classes=0", TF_CPP_MIN_LOG_LEVEL="0"),
    ]
    try:
        stderrs = [p.communicate(timeout=300)[1] for p in started]
        return [(p.returncode, stderr) for p, stderr in zip(started, stderrs, strict=True)]
    finally:
        for p in started:
            p.kill()


def test_a_binary_starts_quietly_unless_asked_for_tensorflows_logs(
    usage_errors_in_fresh_processes,
):
    (code, quiet), (_, ci), (loud_code, loud) = usage_errors_in_fresh_processes
    assert code == 1
    # The program's own line is the only one: no cuInit, oneDNN or absl pre-init notice.
    assert quiet.splitlines() == [
        "describe: error: --num_classes must be >= 1; received 0 (see --help)"
    ], quiet
    assert ci == quiet
    assert loud_code == 1
    assert len(loud.splitlines()) > 1 and "absl::InitializeLog" in loud
    assert loud.splitlines()[-1].startswith("describe: error: --num_classes")


def test_neighbour_correlation_removes_each_colour_planes_own_mean():
    # A checkerboard: every weight has the opposite sign of its neighbours, correlation -1. A
    # flat cast (red +5, blue -5 everywhere) is no smoothness: still -1, plane by plane.
    checker = (np.indices((11, 11)).sum(0) % 2 * 2 - 1).astype(float)
    cast = np.array([5.0, 0.0, -5.0])
    kernel = checker[:, :, None, None] + cast[None, None, :, None]
    np.testing.assert_allclose(filters.kernel_neighbour_correlations(kernel), [-1.0])
    # A patch of a real photograph on all three planes, with the cast: the correlation of the
    # patch's own (weight, right or lower neighbour) pairs.
    skimage_data = pytest.importorskip("skimage.data")
    patch = skimage_data.camera()[240:251, 250:261].astype(float)
    kernel = patch[:, :, None, None] * 0.01 + cast[None, None, :, None]
    first = np.concatenate([patch[:, :-1].ravel(), patch[:-1, :].ravel()])
    second = np.concatenate([patch[:, 1:].ravel(), patch[1:, :].ravel()])
    expected = np.corrcoef(first, second)[0, 1]
    assert 0.2 < expected < 0.99  # textured, not flat
    np.testing.assert_allclose(filters.neighbour_correlation(kernel), expected, rtol=1e-9)


def _imports(path: str) -> set[str]:
    """The alexnet_tf modules a file imports (at the top or inside functions)."""
    names = set()
    with open(path, encoding="utf-8") as f:
        tree = ast.parse(f.read())
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return {name for name in names if name.startswith("alexnet_tf.")}


# Part -> parts it must never import. Arrows go down: the binaries (and cli/) over Training and
# Results, over runs/ (a run read back), over Model and Data; Convert over Data; Files below all.
NEVER = {
    "model": ("data", "training", "results", "convert", "runs", "cli"),
    "data": ("training", "convert", "results", "runs", "cli"),
    "convert": ("model", "training", "results", "runs", "cli"),
    "runs": ("training", "results", "data", "convert", "cli"),
    "training": ("convert", "cli"),
    "results": ("training", "convert", "cli"),
    "files": ("model", "data", "training", "results", "convert", "runs", "cli"),
}


@pytest.mark.parametrize("part", sorted(NEVER))
def test_dependencies_run_one_way(part):
    binaries = {f"alexnet_tf.{name}" for name in BINARIES}
    wrong = []
    for root, _, names in os.walk(os.path.join(PACKAGE, part)):
        for name in sorted(n for n in names if n.endswith(".py")):
            path = os.path.join(root, name)
            for module in sorted(_imports(path)):
                top = module.split(".")[1]
                if top in NEVER[part] or module in binaries:
                    wrong.append(f"{os.path.relpath(path, REPO)} imports {module}")
    assert wrong == []


def test_the_record_format_needs_no_tensorflow():
    # The converter's worker processes import it: only the standard library and google-crc32c.
    allowed = {"__future__", "dataclasses", "struct", "collections", "google_crc32c"}
    for path in ("data/__init__.py", "data/records.py"):
        with open(os.path.join(PACKAGE, path), encoding="utf-8") as f:
            tree = ast.parse(f.read())
        for node in tree.body:
            if isinstance(node, ast.Import):
                assert {a.name.split(".")[0] for a in node.names} <= allowed, path
            elif isinstance(node, ast.ImportFrom):
                assert node.module.split(".")[0] in allowed, path


def test_conv1_figure_names_gpus_only_for_a_run_on_two_devices(tmp_path):
    from alexnet_tf.results.figures import filters_figure
    from alexnet_tf.runs.checkpoints import recorded_flags

    skimage_data = pytest.importorskip("skimage.data")
    photo = skimage_data.camera().astype(float)
    patches = [photo[11 * (i // 12) : 11 * (i // 12) + 11, 11 * (i % 12) : 11 * (i % 12) + 11]
               for i in range(96)]  # fmt: skip
    kernels = np.stack(patches, -1)[:, :, None, :].repeat(3, axis=2)

    def labels(two_devices):
        return " ".join(
            t.get_text() for t in filters_figure(kernels, None, two_devices).axes[0].texts
        )

    assert "tower a" in labels(False) and "tower b" in labels(False) and "GPU" not in labels(False)
    assert "tower a\n(GPU 1)" in labels(True) and "tower b\n(GPU 2)" in labels(True)
    # The run's placement is read from its flags.cfg.
    (tmp_path / "flags.cfg").write_text("# replay\n--placement=two_towers\n--batch_size=16\n")
    assert recorded_flags(str(tmp_path)) == {"placement": "two_towers", "batch_size": "16"}
    assert recorded_flags(str(tmp_path / "none")) == {}
