"""The command line: shared flags in every --help, one-line usage errors, nothing written before
the flags are checked, reproducible exports, progress lines off a terminal."""

import io
import os
import sys

import pytest
from absl import app

from alexnet_tf.cli import shared_flags
from alexnet_tf.convert.progress import Progress


@pytest.mark.parametrize("name", ["evaluate", "export", "retrieve", "visualize", "train"])
def test_help_lists_the_shared_flags(binary_runs, name):
    help_text = binary_runs[name]["help"]
    assert "--data_dir:" in help_text and "--workdir:" in help_text


@pytest.mark.parametrize(
    "name, flag",
    [
        ("evaluate", "--batch_size must be >= 1; received 0"),
        ("export", "--top_k must be >= 1; received 0"),
        ("export:exists", "exists; pass --overwrite to replace it"),
        ("retrieve", "--k must be >= 1; received 0"),
        ("visualize", "--columns must be >= 1; received 0"),
        ("train", "--data_dir"),
        ("describe", "--num_classes must be >= 1; received 0"),
    ],
)
def test_a_usage_error_is_one_line_and_writes_nothing(binary_runs, name, flag):
    result = binary_runs[name]
    lines = [line for line in result["stderr"].splitlines() if line.strip()]
    assert len(lines) == 1 and flag in lines[0], result["stderr"]
    assert lines[0].startswith(f"{name.split(':')[0]}: error: ")  # which program is talking
    assert result["code"] not in (0, None)
    assert result["written"] == []


def test_run_turns_a_usage_error_into_one_line(monkeypatch, capsys):
    def main(argv):
        raise app.UsageError("pass --export_dir")

    monkeypatch.setattr(sys, "argv", ["export"])
    with pytest.raises(SystemExit) as exit_info:
        shared_flags.run(main, "export")
    assert exit_info.value.code == 1
    assert capsys.readouterr().err == "export: error: pass --export_dir (see --help)\n"


@pytest.mark.parametrize(
    "argv, message",
    [
        (["export", "--no_such_flag"], "Unknown command line flag 'no_such_flag'"),
        (["export", "--verbosity=loud"], "flag --verbosity=loud: invalid literal for int()"),
        (["export", "--verbosity=loud", "--help"], "flag --verbosity=loud: invalid literal"),
    ],
)
def test_run_turns_a_flag_absl_cannot_parse_into_one_line(monkeypatch, capsys, argv, message):
    monkeypatch.setattr(sys, "argv", argv)
    with pytest.raises(SystemExit) as exit_info:
        shared_flags.run(lambda _: pytest.fail("main ran"), "export")
    assert exit_info.value.code == 1
    err = capsys.readouterr().err
    assert err.startswith(f"export: error: {message}") and err.endswith(" (see --help)\n"), err
    assert err.count("\n") == 1


def test_a_flagfile_that_names_a_missing_one_says_where_paths_are_read(
    monkeypatch, capsys, tmp_path
):
    (tmp_path / "mine.cfg").write_text("--flagfile=configs/no_such.cfg\n")
    monkeypatch.setattr(sys, "argv", ["train", f"--flagfile={tmp_path / 'mine.cfg'}"])
    with pytest.raises(SystemExit) as exit_info:
        shared_flags.run(lambda _: pytest.fail("main ran"), "train")
    assert exit_info.value.code == 1
    err = capsys.readouterr().err
    assert err.startswith("train: error: ") and "configs/no_such.cfg" in err, err
    assert "relative to the current directory" in err and err.count("\n") == 1


def _files(folder):
    found = {}
    for root, _, names in os.walk(folder):
        for name in names:
            path = os.path.join(root, name)
            with open(path, "rb") as f:
                found[os.path.relpath(path, folder)] = f.read()
    return found


def test_two_exports_of_a_checkpoint_are_identical(exported_model, binary_runs):
    from tensorflow.core.protobuf import fingerprint_pb2

    # Each the first thing its process does: exported_model's own, and binary_runs' first run.
    again = binary_runs["export:ok"]
    assert again["code"] == 0, again["stderr"][-3000:]
    assert f"SavedModel written to {again['export_dir']}" in again["stdout"]
    first, second = _files(exported_model), _files(again["export_dir"])
    assert sorted(first) == sorted(second)
    assert "saved_model.pb" in first and "variables/variables.index" in first
    for name in first:
        if name != "fingerprint.pb":
            assert first[name] == second[name], name
    # The fingerprint holds hashes of the rest, and a random UUID of each save.
    prints = [
        fingerprint_pb2.FingerprintDef.FromString(f["fingerprint.pb"]) for f in (first, second)
    ]
    for fingerprint in prints:
        fingerprint.ClearField("uuid")
    assert prints[0] == prints[1]


def test_progress_off_a_terminal_is_one_line_per_interval():
    clock = [100.0]
    stream = io.StringIO()  # not a terminal: a log file or a CI console
    bar = Progress(1000, "convert", stream=stream, interval=0.5, clock=lambda: clock[0])
    clock[0] += 5.0  # the workers start: the rate counts from the first update
    for _ in range(30):
        bar.update(20)
        clock[0] += 1.0
    bar.update(400)
    bar.close()
    text = stream.getvalue()
    assert "\r" not in text
    lines = text.splitlines()
    assert len(lines) == 4, text  # after 10 s, 20 s and 30 s (never more often), and at the end
    assert lines[0].startswith("convert") and "120/1000" in lines[0]
    assert "20.00 images/s" in lines[0] and "00:44 left" in lines[0]
    assert "320/1000" in lines[1] and "20.00 images/s" in lines[1]
    assert "1000/1000" in lines[-1] and "100%" in lines[-1] and "00:00 left" in lines[-1]


class _Terminal(io.StringIO):
    def isatty(self):
        return True


def test_progress_on_a_terminal_is_tqdms_bar():
    stream = _Terminal()
    bar = Progress(50, "verify", stream=stream)
    for _ in range(5):
        bar.update(10)
    bar.close()
    last = stream.getvalue().split("\r")[-1]
    assert last.startswith("verify 100%") and "50/50" in last and "images/s" in last
