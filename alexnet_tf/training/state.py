"""The state of a training run: what a checkpoint holds and what the update step changes.

`TrainState` names the parts that `steps.train_step` reads and updates (the model, the optimizer
with its momentum, the step counter), the learning-rate schedule, the input normalization and
the random state: dropout's seed generators, and the seed from which the PCA lighting noise of
each (step, replica) is drawn. `state.checkpoint()` is the `tf.train.Checkpoint` of all of it.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence

import keras
import tensorflow as tf
from absl import logging

from alexnet_tf.model import endpoints_model, precision
from alexnet_tf.training import localization, optimizer, schedules
from alexnet_tf.training.config import ConfigError, TrainConfig


@dataclasses.dataclass
class TrainState:
    """One training run's model, optimizer, schedule, step and random state."""

    model: keras.Model
    optimizer: keras.optimizers.Optimizer  # a LossScaleOptimizer with float16
    schedule: tf.Module  # schedules.make_schedule: learning_rate(step), update(step, error)
    normalizer: tf.Module  # uint8 batches → network input (reflection, mean, PCA noise)
    step: tf.Variable  # int64: updates applied so far
    seed: int  # with (step, replica), the seed of the PCA lighting noise
    logits_model: keras.Model = None  # the model's fc8 endpoint (the loss takes logits)
    decayed: list = None  # the variables weight decay applies to
    mixed_precision: precision.Choice = None  # the layers' compute dtype, and why

    def __post_init__(self):
        if self.logits_model is None:
            self.logits_model = endpoints_model(self.model, ["fc8"])
        if self.decayed is None:
            self.decayed = optimizer.decayed_weights(self.model)

    @property
    def dropout_rng(self) -> list[tf.Variable]:
        """Dropout's seed-generator states: saved so a resumed run drops what it would have."""
        return [v for v in self.model.variables if "seed_generator" in v.path]

    @property
    def loss_scaling(self) -> bool:
        return isinstance(self.optimizer, keras.optimizers.LossScaleOptimizer)

    def checkpoint(self, **extra) -> tf.train.Checkpoint:
        """A checkpoint of the whole state, plus `extra` objects (the input position).

        With float16's loss scaling, the SGD inside the LossScaleOptimizer is saved, not the
        scale: a checkpoint then holds the same objects under every policy and resumes under any
        (a resumed float16 run starts again from the initial scale, which settles in a few steps).
        """
        sgd = self.optimizer.inner_optimizer if self.loss_scaling else self.optimizer
        return tf.train.Checkpoint(
            model=self.model, optimizer=sgd, step=self.step, schedule=self.schedule,
            normalizer=self.normalizer, dropout_rng=self.dropout_rng, **extra,
        )  # fmt: skip

    def variable_bytes(self) -> int:
        """Bytes of the model's and optimizer's variables: about a checkpoint's size."""
        variables = [*self.model.variables, *self.optimizer.variables]
        return sum(math.prod(v.shape) * tf.as_dtype(v.dtype).size for v in variables)


def create_train_state(
    config: TrainConfig,
    strategy: tf.distribute.Strategy,
    num_classes: int,
    normalizer: tf.Module,
    *,
    devices: Sequence[str] | None = None,
    build_model: Callable[..., keras.Model],
    num_train_examples: int = 0,
) -> TrainState:
    """Builds the model, SGD (its momentum slots created, so a restore fills them) and schedule.

    The variables are created in `strategy`'s scope, with the Keras policy that
    `config.mixed_precision` resolves to on this machine (`state.mixed_precision`): the layers
    compute in that dtype, the variables stay float32, so a checkpoint resumes under any policy.
    One log line says what was chosen and why; an explicit half precision that will run slower
    than float32 here is logged as a warning.

    Raises:
        ConfigError: a setting of the model, optimizer or schedule can't work.
    """
    try:
        choice = precision.resolve(config.mixed_precision)
    except ValueError as e:
        raise ConfigError(str(e)) from e
    logging.info("%s", choice.log_line())
    if choice.warning:
        logging.warning("%s", choice.warning)
    try:
        with precision.policy_scope(choice.policy), strategy.scope():
            model = build_model(num_classes, devices, **config.model_kwargs())
            # Before the optimizer is built: frozen layers get no momentum slot.
            trained = optimizer.set_trainable_layers(model, config.train_layers)
            if config.train_layers:
                logging.info("Training only %s; the other layers are frozen", ", ".join(trained))
            # Softmax in the loss, for stability; drop7 is the box head's input for its loss.
            logits_model = endpoints_model(
                model, ["fc8", "drop7"] if config.localization else ["fc8"]
            )
            sgd = optimizer.make_sgd(config.learning_rate, config.momentum)
            if choice.policy == "float16":
                # float16's range: a dynamic loss scale keeps small gradients from flushing to
                # zero; a step whose scaled gradients overflow is skipped and the scale halved.
                sgd = keras.optimizers.LossScaleOptimizer(sgd)
            sgd.build(model.trainable_variables)  # slots must exist before a restore
            step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
            schedule = schedules.make_schedule(
                config.schedule, config.learning_rate, factor=config.lr_decay_factor,
                boundaries=config.step_boundaries(num_train_examples),
                patience=config.plateau_patience, min_delta=config.plateau_min_delta,
                max_drops=config.plateau_max_drops,
                total_steps=config.total_steps(num_train_examples),
            )  # fmt: skip
    except ValueError as e:
        raise ConfigError(str(e)) from e
    return TrainState(
        model=model, optimizer=sgd, schedule=schedule, normalizer=normalizer, step=step,
        seed=config.seed, logits_model=logits_model,
        decayed=localization.decayed_without_head(model), mixed_precision=choice,
    )  # fmt: skip
