"""Learning-rate schedules of section 5, kept in variables so a resumed run continues exactly.

The paper: "The learning rate was initialized at 0.01 ... we divide the learning rate by 10 when
the validation error rate stopped improving with the current learning rate ... reduced three
times prior to termination." That is `PlateauSchedule`. `StepSchedule` is the fixed alternative
(divide by 10 at given steps, as Caffe's `bvlc_alexnet` recipe does every 100,000 iterations).
`CosineSchedule` (not in the paper) lowers the rate smoothly to zero over a run of known length,
with no step to choose: the short demo runs use it.

Each is a `tf.Module` saved in the training checkpoint (`schedule=`). The plateau schedule keeps
its state in `tf.Variable`s, so a restore brings back the current rate, the best error so far and
the patience count; the others are pure functions of the step, which the checkpoint holds.
The linear warm-up (`warmup_factor`, not in the paper) multiplies whichever rate applies.

    schedule = make_schedule("plateau", 0.01, patience=1, max_drops=3)
    lr = schedule.learning_rate(step)         # before each step
    schedule.update(step, eval_top1_error)    # after each evaluation
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import tensorflow as tf

SCHEDULES = ("plateau", "step", "constant", "cosine")
LEARNING_RATE = 0.01  # section 5: "initialized at 0.01"
DECAY_FACTOR = 0.1  # section 5: "divide the learning rate by 10"
MAX_DROPS = 3  # section 5: "reduced three times prior to termination"


class PlateauSchedule(tf.Module):
    """Divides the rate by `1 / factor` when the validation error stops improving (section 5).

    "Stopped improving" is made precise as: `patience` evaluations in a row whose top-1 error is
    not below the best so far by more than `min_delta`. The paper gives neither number.
    """

    def __init__(
        self,
        initial: float = LEARNING_RATE,
        *,
        factor: float = DECAY_FACTOR,
        patience: int = 1,
        min_delta: float = 0.0,
        max_drops: int = MAX_DROPS,
    ):
        super().__init__(name="plateau_schedule")
        self.factor, self.patience = float(factor), int(patience)
        self.min_delta, self.max_drops = float(min_delta), int(max_drops)
        self.rate = tf.Variable(float(initial), dtype=tf.float64, trainable=False, name="rate")
        self.best = tf.Variable(float("inf"), dtype=tf.float64, trainable=False, name="best")
        self.bad_evals = tf.Variable(0, dtype=tf.int64, trainable=False, name="bad_evals")
        self.drops = tf.Variable(0, dtype=tf.int64, trainable=False, name="drops")

    def learning_rate(self, step: int) -> float:
        del step  # the rate changes only at evaluations
        return float(self.rate.numpy())

    def update(self, step: int, top1_error: float) -> bool:
        """Records one validation result; returns True if the rate was just divided."""
        del step
        if top1_error < float(self.best.numpy()) - self.min_delta:
            self.best.assign(top1_error)
            self.bad_evals.assign(0)
            return False
        self.bad_evals.assign_add(1)
        if int(self.bad_evals.numpy()) < self.patience or int(self.drops.numpy()) >= self.max_drops:
            return False
        self.rate.assign(self.rate * self.factor)
        self.drops.assign_add(1)
        self.bad_evals.assign(0)
        # The next rate starts its own plateau: the paper compares "with the current learning rate".
        self.best.assign(top1_error)
        return True


class StepSchedule(tf.Module):
    """Multiplies the rate by `factor` at each step in `boundaries` (a fixed schedule).

    The rate is a pure function of the step, and the step is checkpointed, so resuming restores
    it; `initial` and `boundaries` are also saved so a resumed run can check they did not change.
    """

    def __init__(
        self,
        initial: float = LEARNING_RATE,
        *,
        boundaries: Sequence[int] = (),
        factor: float = DECAY_FACTOR,
    ):
        super().__init__(name="step_schedule")
        boundaries = [int(b) for b in boundaries]
        if any(b <= 0 for b in boundaries) or boundaries != sorted(set(boundaries)):
            raise ValueError(
                f"--lr_boundaries must be increasing positive steps; received {boundaries}"
            )
        self.initial, self.boundaries, self.factor = float(initial), boundaries, float(factor)

    def learning_rate(self, step: int) -> float:
        drops = sum(1 for b in self.boundaries if step >= b)
        return self.initial * self.factor**drops

    def update(self, step: int, top1_error: float) -> bool:
        del top1_error
        return step in self.boundaries


class ConstantSchedule(StepSchedule):
    """One rate for the whole run (useful for short demos and tests)."""

    def __init__(self, initial: float = LEARNING_RATE):
        super().__init__(initial, boundaries=())


class CosineSchedule(StepSchedule):
    """`initial · (1 + cos(π · step / total_steps)) / 2`: from `initial` down to 0 at the end."""

    def __init__(self, initial: float = LEARNING_RATE, *, total_steps: int):
        super().__init__(initial, boundaries=())
        if total_steps < 1:
            raise ValueError(f"--schedule=cosine needs a run of >= 1 step; received {total_steps}")
        self.total_steps = int(total_steps)

    def learning_rate(self, step: int) -> float:
        progress = min(step, self.total_steps) / self.total_steps
        return self.initial * 0.5 * (1.0 + math.cos(math.pi * progress))


def warmup_factor(step: int, warmup_steps: int) -> float:
    """Multiplies the schedule's rate in the first `warmup_steps` updates: (step + 1) / warmup.

    A linear warm-up (not in the paper) lets a short run start at a rate that would otherwise
    blow up its first steps; it is a pure function of the step, so a resumed run needs no state.
    """
    if warmup_steps <= 0 or step >= warmup_steps:
        return 1.0
    return (step + 1) / warmup_steps


def make_schedule(
    name: str,
    initial: float = LEARNING_RATE,
    *,
    factor: float = DECAY_FACTOR,
    boundaries: Sequence[int] = (),
    patience: int = 1,
    min_delta: float = 0.0,
    max_drops: int = MAX_DROPS,
    total_steps: int = 0,
) -> PlateauSchedule | StepSchedule:
    """Builds the schedule named by `--schedule`; errors name the flag that is wrong."""
    if name not in SCHEDULES:
        raise ValueError(f"--schedule must be one of {SCHEDULES}; received {name!r}")
    if not initial > 0:
        raise ValueError(f"--learning_rate must be > 0; received {initial!r}")
    if not 0 < factor < 1:
        raise ValueError(f"--lr_decay_factor must be in (0, 1); received {factor!r}")
    if name == "plateau":
        if patience < 1:
            raise ValueError(f"--plateau_patience must be >= 1; received {patience!r}")
        return PlateauSchedule(
            initial, factor=factor, patience=patience, min_delta=min_delta, max_drops=max_drops
        )
    if name == "step":
        if not boundaries:
            raise ValueError("--schedule=step needs --lr_boundaries (steps where lr is divided)")
        return StepSchedule(initial, boundaries=boundaries, factor=factor)
    if name == "cosine":
        return CosineSchedule(initial, total_steps=total_steps)
    return ConstantSchedule(initial)
