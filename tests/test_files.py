"""Atomic writes: all or nothing, one-line errors naming the path; the workdir's paths."""

import errno
import os
from pathlib import Path

import numpy as np
import pytest

from alexnet_tf.files import atomic, workdir


def test_write_replaces_only_when_complete(tmp_path):
    path = str(tmp_path / "sub" / "a.json")
    atomic.write_json(path, {"x": 1})
    with pytest.raises(RuntimeError), atomic.writing(path) as f:
        f.write("half")
        raise RuntimeError("crash in the middle")
    assert Path(path).read_text() == '{\n "x": 1\n}\n'
    assert os.listdir(tmp_path / "sub") == ["a.json"]  # no temporary file left


def test_temporary_path_for_writers_that_take_a_name(tmp_path):
    path = str(tmp_path / "f.npy")
    with atomic.temporary_path(path, suffix=".npy") as tmp:
        np.save(tmp, np.arange(3))
    np.testing.assert_array_equal(np.load(path), [0, 1, 2])


def test_folder_replaces_folder(tmp_path):
    path = str(tmp_path / "model")
    for value in ("old", "new"):
        with atomic.temporary_path(path) as tmp:
            os.makedirs(tmp)
            atomic.write_text(os.path.join(tmp, "v.txt"), value)
    assert Path(path, "v.txt").read_text() == "new"
    assert sorted(os.listdir(tmp_path)) == ["model"]


def test_full_disk_is_one_line_naming_the_path(tmp_path, monkeypatch):
    path = str(tmp_path / "a.txt")
    atomic.write_text(path, "before")

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(atomic.WriteError) as e:
        atomic.write_text(path, "after")
    assert str(e.value) == f"cannot write {path}: No space left on device"
    assert e.value.errno == errno.ENOSPC
    assert Path(path).read_text() == "before"
    assert os.listdir(tmp_path) == ["a.txt"]


def test_temporary_names_are_recognized(tmp_path):
    name = atomic.temporary_name(str(tmp_path / "eval.json"))
    assert atomic.is_temporary(name) and not atomic.is_temporary(str(tmp_path / "eval.json"))


def test_workdir_paths():
    assert workdir.checkpoints("w") == os.path.join("w", "checkpoints")
    assert workdir.tensorboard("w", "eval_center") == os.path.join(
        "w", "tensorboard", "eval_center"
    )
    assert workdir.eval_json("w") == os.path.join("w", "eval.json")
