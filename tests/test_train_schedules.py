"""The learning-rate schedules of section 5 and their exact restoration from a checkpoint."""

import pytest
import tensorflow as tf

from alexnet_tf.training import schedules


def test_plateau_divides_by_ten_after_patience_at_most_three_times():
    s = schedules.make_schedule("plateau", 0.01, patience=2, max_drops=3)
    rates = []
    # error improves, then stalls: a drop after 2 evaluations without improvement, 3 at most.
    for error in [0.9, 0.8, 0.8, 0.85, 0.7, 0.7, 0.7, 0.7, 0.7, 0.7, 0.7, 0.7, 0.7]:
        s.update(0, error)
        rates.append(s.learning_rate(0))
    assert rates[:3] == [0.01, 0.01, 0.01]
    assert rates[3] == pytest.approx(0.001)  # 0.8, 0.85: two evaluations not below 0.8
    assert rates[4] == pytest.approx(0.001)  # 0.7 improves
    assert rates[6] == pytest.approx(1e-4)
    assert rates[-1] == pytest.approx(1e-5)  # three drops, then no more
    assert int(s.drops.numpy()) == 3


def test_plateau_state_is_restored_exactly(tmp_path):
    s = schedules.make_schedule("plateau", 0.01, patience=2)
    for error in (0.5, 0.4, 0.45):
        s.update(0, error)
    path = tf.train.Checkpoint(schedule=s).save(str(tmp_path / "ckpt"))
    fresh = schedules.make_schedule("plateau", 0.01, patience=2)
    tf.train.Checkpoint(schedule=fresh).restore(path).assert_consumed()
    # One more stalled evaluation makes both drop: the patience count came back too.
    assert s.update(0, 0.41) and fresh.update(0, 0.41)
    assert fresh.learning_rate(0) == s.learning_rate(0) == pytest.approx(0.001)
    assert float(fresh.best.numpy()) == pytest.approx(0.41)


def test_step_schedule_is_a_function_of_the_step():
    s = schedules.make_schedule("step", 0.01, boundaries=[100, 200])
    assert [s.learning_rate(t) for t in (0, 99, 100, 199, 200, 10_000)] == pytest.approx(
        [0.01, 0.01, 0.001, 0.001, 1e-4, 1e-4]
    )
    assert schedules.make_schedule("constant", 0.02).learning_rate(10**6) == 0.02


@pytest.mark.parametrize(
    "kwargs, flag",
    [
        ({"name": "linear"}, "--schedule"),
        ({"name": "step"}, "--lr_boundaries"),
        ({"name": "step", "boundaries": [200, 100]}, "--lr_boundaries"),
        ({"name": "plateau", "initial": 0.0}, "--learning_rate"),
        ({"name": "plateau", "factor": 10.0}, "--lr_decay_factor"),
        ({"name": "plateau", "patience": 0}, "--plateau_patience"),
    ],
)
def test_bad_settings_name_the_flag(kwargs, flag):
    with pytest.raises(ValueError, match=flag):
        schedules.make_schedule(**kwargs)


def test_warmup_ramps_linearly_then_leaves_the_schedule_alone():
    assert [schedules.warmup_factor(t, 4) for t in (0, 1, 3, 4, 1000)] == [0.25, 0.5, 1, 1, 1]
    assert schedules.warmup_factor(0, 0) == 1.0  # no warm-up


def test_warmup_epochs_scale_with_the_data():
    from alexnet_tf.training.config import TrainConfig

    config = TrainConfig(data_dir="d", workdir="w", batch_size=16, warmup_epochs=0.5)
    assert config.warmup_steps(800) == 25 and config.warmup_steps(2000) == 63
    assert TrainConfig(data_dir="d", workdir="w").warmup_steps(10**6) == 0


def test_cosine_falls_from_the_rate_to_zero_over_the_run():
    s = schedules.make_schedule("cosine", 0.02, total_steps=100)
    rates = [s.learning_rate(t) for t in (0, 25, 50, 75, 100, 500)]
    assert rates == pytest.approx(
        [0.02, 0.01 + 0.01 * 0.5**0.5, 0.01, 0.01 - 0.01 * 0.5**0.5, 0, 0]
    )
    with pytest.raises(ValueError, match="--schedule=cosine"):
        schedules.make_schedule("cosine", 0.02, total_steps=0)
