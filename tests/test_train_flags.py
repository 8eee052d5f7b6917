"""Start-up checks of the training binary (messages name the flag) and the flags.cfg record."""

import pytest
from absl import flags

from alexnet_tf.cli import shared_flags as common_flags
from alexnet_tf.training import loop as training


def test_binary_stops_on_a_missing_data_dir_naming_the_flag(binary_runs):
    run = binary_runs["train"]  # --data_dir=<a folder that does not exist>
    missing = next(a for a in run["argv"] if a.startswith("--data_dir=")).split("=", 1)[1]
    assert run["code"] not in (0, None)
    assert f"--data_dir {missing!r} does not exist" in run["stderr"]
    assert "Traceback" not in run["stderr"]


def test_binary_rejects_an_unknown_schedule_naming_the_flag(binary_runs):
    run = binary_runs["train:schedule"]  # --schedule=linear
    assert run["code"] not in (0, None)
    assert "--schedule=linear" in run["stderr"] and "plateau" in run["stderr"]


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
