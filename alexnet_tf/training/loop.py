"""The training procedure of section 5: SGD on the multinomial logistic loss, with checkpoints.

"We trained our models using stochastic gradient descent with a batch size of 128 examples,
momentum of 0.9, and weight decay of 0.0005" ... "maximizes the average across training cases
of the log-probability of the correct label" (sections 3.5 and 5).

    python -m alexnet_tf.train --flagfile=configs/alexnet.cfg --data_dir=... --workdir=...

`train(TrainConfig(...))` reads top to bottom: set-up, input, model and optimizer, update step,
checkpoint (and resume), evaluation, loop. It returns a `TrainResult`. Re-running it on the same
workdir resumes from the newest checkpoint: weights, momentum, step, schedule state, dropout
random state and the position in the data stream.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import shutil
import time
from collections.abc import Callable, Sequence

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from alexnet_tf.data import input_pipeline
from alexnet_tf.data.manifest import ManifestError, load_manifest
from alexnet_tf.model import build_alexnet, endpoints_model
from alexnet_tf.training import distribution, optimizer, schedules, summaries
from alexnet_tf.training.checkpoints import CHECKPOINT_DIR, write_model_config
from alexnet_tf.training.device_prefetch import DevicePrefetcher

BATCH_SIZE = 128  # section 5
EPOCHS = 90  # section 5: "roughly 90 cycles through the training set"
MIXED_PRECISION = ("none", "float16", "bfloat16")
SUMMARY_DIR = "tensorboard"


class ConfigError(ValueError):
    """A training setting is wrong; the message names the flag and what was expected."""


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or infinite; the message names the step and the checkpoint kept."""


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Everything one training run needs; the fields are the flags of `alexnet_tf.train`."""

    data_dir: str
    workdir: str
    train_steps: int = 0  # > 0 wins over `epochs`
    epochs: float = EPOCHS
    batch_size: int = BATCH_SIZE
    learning_rate: float = schedules.LEARNING_RATE
    momentum: float = optimizer.MOMENTUM
    weight_decay: float = optimizer.WEIGHT_DECAY
    schedule: str = "plateau"
    lr_decay_factor: float = schedules.DECAY_FACTOR
    lr_boundaries: Sequence[int] = ()
    lr_boundary_epochs: Sequence[float] = ()  # the same in passes over the data (if no steps)
    plateau_patience: int = 1
    plateau_min_delta: float = 0.0
    plateau_max_drops: int = schedules.MAX_DROPS
    seed: int = 0
    deterministic: bool = False
    checkpoint_every_steps: int = 1000
    keep_checkpoints: int = 3
    eval_every_steps: int = 10_000
    eval_batch_size: int = 0  # 0: same as batch_size
    log_every_steps: int = 100
    placement: str = "one_device"
    strategy: str = "default"
    mixed_precision: str = "none"
    xla: bool = False
    init: str = "paper"
    conv1_init_stddev: float = 0.0  # > 0: conv1 from N(0, this) whatever `init` says
    dropout_rate: float = 0.5
    mean: str = "image"
    pca_std: float = 0.1
    input_scale: float = 1.0
    shuffle_buffer: int = 10_000
    prefetch_to_device: int = 2  # batches copied to the accelerator ahead of the step

    def validate(self) -> None:
        """Raises ConfigError naming the first flag with a value that can't work."""
        choices = {
            "schedule": schedules.SCHEDULES,
            "placement": distribution.PLACEMENTS,
            "strategy": distribution.STRATEGIES,
            "mixed_precision": MIXED_PRECISION,
        }
        for flag, allowed in choices.items():
            if getattr(self, flag) not in allowed:
                raise ConfigError(
                    f"--{flag} must be one of {allowed}; received {getattr(self, flag)!r}"
                )
        checks = [
            (self.train_steps >= 0, "--train_steps must be >= 0 (0: use --epochs)"),
            (self.train_steps > 0 or self.epochs > 0, "--epochs must be > 0 (or --train_steps)"),
            (self.batch_size >= 1, "--batch_size must be >= 1"),
            (self.eval_batch_size >= 0, "--eval_batch_size must be >= 0"),
            (self.learning_rate > 0, "--learning_rate must be > 0"),
            (0 <= self.momentum < 1, "--momentum must be in [0, 1)"),
            (self.weight_decay >= 0, "--weight_decay must be >= 0"),
            (self.checkpoint_every_steps >= 1, "--checkpoint_every_steps must be >= 1"),
            (self.keep_checkpoints >= 1, "--keep_checkpoints must be >= 1"),
            (self.eval_every_steps >= 0, "--eval_every_steps must be >= 0 (0: only at the end)"),
            (self.log_every_steps >= 1, "--log_every_steps must be >= 1"),
            (self.prefetch_to_device >= 0, "--prefetch_to_device must be >= 0"),
            (self.input_scale > 0, "--input_scale must be > 0"),
            (self.conv1_init_stddev >= 0, "--conv1_init_stddev must be >= 0 (0: follow --init)"),
            (self.pca_std >= 0, "--pca_std must be >= 0"),
            (0 <= self.dropout_rate < 1, "--dropout_rate must be in [0, 1)"),
            (bool(self.workdir), "--workdir must be set"),
            (bool(self.data_dir), "--data_dir must be set"),
        ]
        for ok, message in checks:
            if not ok:
                flag = message.split()[0].lstrip("-")
                raise ConfigError(f"{message}; received {getattr(self, flag, None)!r}")
        if not os.path.isdir(self.data_dir):
            raise ConfigError(f"--data_dir {self.data_dir!r} does not exist")

    def model_kwargs(self) -> dict:
        """The keyword arguments of `build_alexnet` (saved in model_config.json)."""
        kwargs = {"init": self.init, "dropout_rate": self.dropout_rate, "seed": self.seed}
        if self.conv1_init_stddev:
            kwargs["conv1_init_stddev"] = self.conv1_init_stddev
        return kwargs


@dataclasses.dataclass
class TrainResult:
    step: int
    loss: float  # mean cross-entropy of the last logged window (nan if no step ran)
    eval: dict[str, float]  # last evaluation: top1_error, top5_error, num_examples
    checkpoint: str | None
    workdir: str
    replicas: int = 1  # data-parallel replicas that trained it


def train(
    config: TrainConfig, *, build_model: Callable[..., keras.Model] = build_alexnet
) -> TrainResult:
    """Trains (or resumes training of) AlexNet as configured; returns where it ended.

    Args:
        config: the run's settings; `config.validate()` is called first.
        build_model: `build_alexnet` (tests may pass a cheaper builder with the same signature).

    Raises:
        ConfigError: a setting can't work; the message names the flag.
        NonFiniteLossError: the loss became NaN or infinite; earlier checkpoints are untouched.
    """
    config.validate()
    # ---------------------------------------------------------------- set-up
    try:
        strategy = distribution.make_strategy(config.strategy)
        devices = distribution.tower_devices(config.placement, strategy)
    except ValueError as e:
        raise ConfigError(str(e)) from e
    keras.utils.set_random_seed(config.seed)
    if config.deterministic:
        tf.config.experimental.enable_op_determinism()
    chief = distribution.is_chief(strategy)
    replicas = strategy.num_replicas_in_sync
    if config.batch_size % replicas:
        raise ConfigError(
            f"--batch_size={config.batch_size} does not divide over the {replicas} replicas of "
            f"--strategy={config.strategy}; use a multiple of {replicas}"
        )
    workers = distribution.num_workers(strategy)
    local_replicas = replicas // workers

    # ---------------------------------------------------------------- input
    try:
        manifest = load_manifest(config.data_dir)
        train_split = manifest.split("train")
    except ManifestError as e:
        raise ConfigError(f"--data_dir: {e}") from e
    val_split = manifest.splits.get("validation")
    if config.schedule == "plateau" and val_split is None:
        raise ConfigError(
            f"--schedule=plateau needs a validation split in {manifest.path}; "
            "convert one or use --schedule=step"
        )
    total_steps = config.train_steps or math.ceil(
        config.epochs * train_split.num_examples / config.batch_size
    )
    # One input pipeline per worker: it yields the worker's share of the global batch, which
    # train_step splits over the worker's replicas.
    worker_context = tf.distribute.InputContext(workers, distribution.worker_id(strategy), workers)
    with tf.device("/cpu:0"):
        dataset = input_pipeline.make_train_dataset(
            train_split.files,
            config.batch_size,
            label_offset=manifest.label_offset,
            seed=config.seed,
            shuffle_buffer=config.shuffle_buffer,
            input_context=worker_context if workers > 1 else None,
            deterministic=config.deterministic,
            num_classes=manifest.num_classes,
        )
        iterator = iter(dataset)  # a plain tf.data iterator, so the checkpoint can hold it
    # Stage n+1: each batch is split over this worker's replicas and copied to their devices
    # while the step before it runs. The prefetcher is checkpointed with the iterator.
    prefetcher = DevicePrefetcher(
        iterator, distribution.input_devices(strategy), depth=config.prefetch_to_device
    )
    normalizer = input_pipeline.make_normalizer(
        manifest, mean=config.mean, pca_std=config.pca_std, input_scale=config.input_scale
    )

    # ---------------------------------------------------------------- model and optimizer
    policy = keras.mixed_precision.global_policy()
    if config.mixed_precision != "none":
        keras.mixed_precision.set_global_policy(f"mixed_{config.mixed_precision}")
    try:
        with strategy.scope():
            model = build_model(manifest.num_classes, devices, **config.model_kwargs())
            logits_model = endpoints_model(model, ["fc8"])  # softmax in the loss, for stability
            sgd = optimizer.make_sgd(config.learning_rate, config.momentum)
            if config.mixed_precision == "float16":
                sgd = keras.optimizers.LossScaleOptimizer(sgd)
            sgd.build(model.trainable_variables)  # slots must exist before a restore
            step_var = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
            # Boundaries in epochs scale with the data, like --epochs does.
            boundaries = config.lr_boundaries or [
                math.ceil(e * train_split.num_examples / config.batch_size)
                for e in config.lr_boundary_epochs
            ]
            schedule = schedules.make_schedule(
                config.schedule, config.learning_rate, factor=config.lr_decay_factor,
                boundaries=boundaries, patience=config.plateau_patience,
                min_delta=config.plateau_min_delta, max_drops=config.plateau_max_drops,
            )  # fmt: skip
    except ValueError as e:
        raise ConfigError(str(e)) from e
    finally:
        keras.mixed_precision.set_global_policy(policy)
    decayed = optimizer.decayed_weights(model)
    if chief:
        write_model_config(config.workdir, {
            "num_classes": manifest.num_classes,
            "model": config.model_kwargs(),
            "preprocessing": normalizer.get_config(),
            "data_dir": os.path.abspath(config.data_dir),
        })  # fmt: skip

    # ---------------------------------------------------------------- update step
    def gradients(images, labels, noise_seed):
        with tf.GradientTape() as tape:
            inputs = normalizer(images, training=True, seed=noise_seed)
            logits = tf.cast(logits_model(inputs, training=True)["fc8"], tf.float32)
            per_example = tf.nn.sparse_softmax_cross_entropy_with_logits(labels, logits)
            loss = tf.nn.compute_average_loss(per_example, global_batch_size=config.batch_size)
            # The L2 term whose gradient is the paper's weight decay (see optimizer.py); divided
            # by the replicas because their gradients are summed.
            loss += tf.nn.scale_regularization_loss(
                optimizer.l2_penalty(decayed, config.weight_decay)
            )
            if config.mixed_precision == "float16":
                loss = sgd.scale_loss(loss)
        grads = tape.gradient(loss, model.trainable_variables)
        return grads, (tf.reduce_sum(per_example), *_wrong_counts(logits, labels))

    if config.xla:  # the forward and backward pass; the update stays outside XLA
        gradients = tf.function(gradients, jit_compile=True, autograph=False)

    def replica_step(images, labels, step):
        # The PCA lighting noise is a pure function of (seed, step, replica): a resumed run
        # draws what the interrupted one would have drawn.
        replica = tf.distribute.get_replica_context().replica_id_in_sync_group
        noise_seed = tf.stack(
            [tf.constant(config.seed, tf.int64), step * replicas + tf.cast(replica, tf.int64)]
        )
        grads, sums = gradients(images, labels, noise_seed)
        sgd.apply(grads, model.trainable_variables)
        return sums

    @tf.function(autograph=False)
    def train_step(parts, step):
        # parts: one (images, labels) per local replica, already on the replica's device.
        inputs = strategy.experimental_distribute_values_from_function(
            lambda ctx: parts[ctx.replica_id_in_sync_group % local_replicas]
        )
        sums = strategy.run(replica_step, args=(*inputs, step))
        return [strategy.reduce("SUM", s, axis=None) for s in sums]

    # ---------------------------------------------------------------- checkpoint and resume
    rng_states = [v for v in model.variables if "seed_generator" in v.path]  # dropout's state
    # The position in the data stream is each worker's own: the chief's is in the checkpoint,
    # every other worker's in WORKDIR/input-worker-N, saved at the same steps.
    input_state = {"iterator": iterator, "prefetched": prefetcher}
    checkpoint = tf.train.Checkpoint(
        model=model, optimizer=sgd, step=step_var, schedule=schedule, normalizer=normalizer,
        dropout_rng=rng_states, **(input_state if chief else {}),
    )  # fmt: skip
    ckpt_dir = os.path.join(config.workdir, CHECKPOINT_DIR)
    input_manager = None
    if not chief:  # every worker takes part in saving; only the chief's copy is kept
        ckpt_dir = os.path.join(config.workdir, f"tmp-worker-{distribution.worker_id(strategy)}")
        input_manager = tf.train.CheckpointManager(
            tf.train.Checkpoint(**input_state),
            os.path.join(config.workdir, f"input-worker-{distribution.worker_id(strategy)}"),
            max_to_keep=config.keep_checkpoints, checkpoint_name="ckpt",
        )  # fmt: skip
    manager = tf.train.CheckpointManager(
        checkpoint, ckpt_dir, max_to_keep=config.keep_checkpoints, checkpoint_name="ckpt"
    )
    latest = tf.train.latest_checkpoint(os.path.join(config.workdir, CHECKPOINT_DIR))
    if latest:
        try:
            status = checkpoint.restore(latest).assert_existing_objects_matched()
            if input_manager is not None:
                status.expect_partial()  # the chief's input position is not this worker's
                _restore_worker_input(input_manager, os.path.basename(latest))
        except (AssertionError, ValueError, tf.errors.OpError) as e:
            raise ConfigError(
                f"--workdir {config.workdir!r} holds checkpoint {latest} of a different run "
                f"(model, optimizer or data do not match): {e}"
            ) from e
        logging.info("Resumed from %s at step %d", latest, int(step_var.numpy()))

    def save(step: int) -> str:
        path = manager.save(checkpoint_number=step)
        if not chief:
            input_manager.save(checkpoint_number=step)
            shutil.rmtree(ckpt_dir, ignore_errors=True)
        return path if chief else None

    # ---------------------------------------------------------------- evaluation
    @tf.function(autograph=False)
    def eval_step(images, labels, mask):
        logits = logits_model(normalizer(images, training=False), training=False)["fc8"]
        return _eval_counts(tf.cast(logits, tf.float32), labels, mask)

    def evaluate() -> dict[str, float]:
        # Every worker evaluates the whole split on one device: no collective can hang on
        # uneven batches, and all workers take the same schedule decision.
        eval_data = input_pipeline.make_eval_dataset(
            val_split.files, config.eval_batch_size or config.batch_size,
            label_offset=manifest.label_offset,
        )  # fmt: skip
        totals = np.zeros(3)
        batches = DevicePrefetcher(
            iter(eval_data), prefetcher.devices[:1], config.prefetch_to_device
        )
        with input_pipeline.input_errors(val_split.files), contextlib.closing(batches):
            for ((images, labels, mask),) in batches:
                totals += [float(c) for c in eval_step(images, labels, mask)]
        n = max(totals[2], 1.0)
        return {
            "top1_error": totals[0] / n,
            "top5_error": totals[1] / n,
            "num_examples": int(totals[2]),
        }

    # ---------------------------------------------------------------- loop
    writer = summaries.Writer(os.path.join(config.workdir, SUMMARY_DIR), enabled=chief)
    step = int(step_var.numpy())
    start_step, start_time = step, time.time()
    window = summaries.Window()
    last_eval, last_ckpt = {}, latest
    lr = None
    if step >= total_steps:
        logging.info("Already trained %d of %d steps in %s", step, total_steps, config.workdir)
    try:
        while step < total_steps:
            if (new_lr := schedule.learning_rate(step)) != lr:
                lr = new_lr
                sgd.learning_rate.assign(lr)
            tick = time.time()
            with input_pipeline.input_errors(train_split.files):
                parts = next(prefetcher)
            sums = train_step(parts, tf.constant(step, tf.int64))
            loss_sum, wrong1, wrong5 = (float(x) for x in sums)
            step += 1
            step_var.assign(step)
            n = config.batch_size
            if not math.isfinite(loss_sum):
                raise NonFiniteLossError(
                    f"the training loss became {loss_sum / n} at step {step}; stopped without "
                    f"saving, so the last good checkpoint ({last_ckpt or 'none yet'}) is kept. "
                    "Lower --learning_rate or --input_scale."
                )
            window.add(n, loss_sum, wrong1, wrong5, time.time() - tick)
            if step % config.log_every_steps == 0 or step == total_steps:
                elapsed = time.time() - start_time
                left = elapsed / (step - start_step) * (total_steps - step)
                stats = window.flush()
                logging.info(
                    "step %d/%d  loss %.4f  top1_error %.3f  lr %.3g  %.1f images/s  %s left",
                    step, total_steps, stats["loss"], stats["top1_error"], lr,
                    stats["images_per_sec"], _duration(left),
                )  # fmt: skip
                writer.scalars(
                    step, {f"train/{k}": v for k, v in stats.items()} | {"train/learning_rate": lr}
                )
            at_end = step == total_steps
            if val_split is not None and (
                at_end or (config.eval_every_steps and step % config.eval_every_steps == 0)
            ):
                last_eval = evaluate()
                logging.info(
                    "step %d  eval top1_error %.4f  top5_error %.4f  (%d images)",
                    step, last_eval["top1_error"], last_eval["top5_error"],
                    last_eval["num_examples"],
                )  # fmt: skip
                writer.scalars(
                    step, {f"eval/{k}": v for k, v in last_eval.items() if k != "num_examples"}
                )
                writer.weights(step, model)
                if schedule.update(step, last_eval["top1_error"]):
                    logging.info(
                        "step %d: learning rate divided, now %.3g",
                        step,
                        schedule.learning_rate(step),
                    )
            if at_end or step % config.checkpoint_every_steps == 0:
                last_ckpt = save(step)
    finally:
        prefetcher.close()
        writer.close()
    return TrainResult(step, window.last_loss, last_eval, last_ckpt, config.workdir, replicas)


def _restore_worker_input(manager: tf.train.CheckpointManager, name: str) -> None:
    """Restores a non-chief worker's input position saved beside checkpoint `name` (ckpt-N)."""
    path = os.path.join(manager.directory, name)
    if not tf.io.gfile.exists(path + ".index"):
        logging.warning(
            "%s was not saved (the run stopped between the checkpoint and it); this worker's "
            "input starts again from the beginning of its shards",
            path,
        )
        return
    manager.checkpoint.restore(path).assert_consumed()


def _wrong_counts(logits: tf.Tensor, labels: tf.Tensor, mask: tf.Tensor | None = None):
    """How many top-1 and top-5 predictions are wrong (only where `mask` is True)."""
    k = min(5, int(logits.shape[-1]))
    wrong1 = tf.logical_not(tf.math.in_top_k(labels, logits, 1))
    wrong5 = tf.logical_not(tf.math.in_top_k(labels, logits, k))
    weight = tf.ones_like(labels, tf.float32) if mask is None else tf.cast(mask, tf.float32)
    return tf.reduce_sum(tf.cast(wrong1, tf.float32) * weight), tf.reduce_sum(
        tf.cast(wrong5, tf.float32) * weight
    )


def _eval_counts(logits, labels, mask):
    wrong1, wrong5 = _wrong_counts(logits, labels, mask)
    return wrong1, wrong5, tf.reduce_sum(tf.cast(mask, tf.float32))


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"
