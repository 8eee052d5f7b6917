"""Start-up checks of the training binary (messages name the flag) and the flags.cfg record."""

import os
import subprocess
import sys

import pytest
from absl import flags

from alexnet_tf.cli import shared_flags as common_flags
from alexnet_tf.training import loop as training

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _train_binary(*args):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    return subprocess.run(
        [sys.executable, "-m", "alexnet_tf.train", *args],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=180,
    )  # fmt: skip


def test_binary_stops_on_a_missing_data_dir_naming_the_flag(tmp_path):
    missing = str(tmp_path / "no_such_dir")
    result = _train_binary(f"--data_dir={missing}", f"--workdir={tmp_path / 'run'}")
    assert result.returncode != 0
    assert f"--data_dir {missing!r} does not exist" in result.stderr
    assert "Traceback" not in result.stderr


def test_binary_rejects_an_unknown_schedule_naming_the_flag(tmp_path):
    result = _train_binary("--schedule=linear", f"--workdir={tmp_path}", "--data_dir=.")
    assert result.returncode != 0
    assert "--schedule=linear" in result.stderr and "plateau" in result.stderr


@pytest.mark.parametrize(
    "change, flag",
    [
        ({"batch_size": 0}, "--batch_size"),
        ({"train_steps": 0, "epochs": 0}, "--epochs"),
        ({"learning_rate": -1.0}, "--learning_rate"),
        ({"schedule": "linear"}, "--schedule"),
        ({"strategy": "tpu"}, "--strategy"),
        ({"checkpoint_every_steps": 0}, "--checkpoint_every_steps"),
        ({"prefetch_to_device": -1}, "--prefetch_to_device"),
        ({"warmup_epochs": -1.0}, "--warmup_epochs"),
        ({"data_dir": "/no/such/dir"}, "--data_dir"),
    ],
)
def test_config_errors_name_the_flag(tools_data_dir, tmp_path, change, flag):
    config = {"data_dir": tools_data_dir, "workdir": str(tmp_path), **change}
    with pytest.raises(training.ConfigError, match=flag):
        training.TrainConfig(**config).validate()


def test_flags_file_replays_the_resolved_flags(tmp_path):
    values = flags.FlagValues()
    flags.DEFINE_integer("batch_size", 128, "", flag_values=values)
    flags.DEFINE_float("learning_rate", 0.01, "", flag_values=values)
    flags.DEFINE_bool("deterministic", False, "", flag_values=values)
    flags.DEFINE_list("lr_boundaries", [], "", flag_values=values)
    values(["prog", "--batch_size=16", "--deterministic", "--lr_boundaries=10,20"])
    path = common_flags.write_flags_file(str(tmp_path), values)
    assert path == str(tmp_path / "flags.cfg")

    replay = flags.FlagValues()
    flags.DEFINE_integer("batch_size", 128, "", flag_values=replay)
    flags.DEFINE_float("learning_rate", 1.0, "", flag_values=replay)
    flags.DEFINE_bool("deterministic", False, "", flag_values=replay)
    flags.DEFINE_list("lr_boundaries", [], "", flag_values=replay)
    replay(["prog", f"--flagfile={path}"])
    assert replay.batch_size == 16 and replay.learning_rate == 0.01
    assert replay.deterministic and replay.lr_boundaries == ["10", "20"]
