"""The training procedure of section 5: SGD on the multinomial logistic loss, with checkpoints.

"We trained our models using stochastic gradient descent with a batch size of 128 examples,
momentum of 0.9, and weight decay of 0.0005" ... "maximizes the average across training cases
of the log-probability of the correct label" (sections 3.5 and 5).

    python -m alexnet_tf.train --flagfile=configs/alexnet.cfg --data_dir=... --workdir=...

`train(TrainConfig(...))` wires the parts: the input (`_make_input`), the state
(`state.create_train_state`), the update and evaluation steps (`steps`), the checkpoints
(`checkpoints.RunCheckpoints`), then loops over steps. It returns a `TrainResult`. Re-running it
on the same workdir resumes from the newest intact checkpoint: weights, momentum, step, schedule
state, dropout random state and the position in the data stream. SIGTERM or SIGINT stops it
after the step in progress with a checkpoint of that step (`preemption.PreemptedError`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import math
import os
import shutil
import time
from collections.abc import Callable

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from alexnet_tf.data import input_pipeline
from alexnet_tf.data.manifest import Manifest, ManifestError, load_manifest
from alexnet_tf.files import workdir as run_files
from alexnet_tf.model import build_alexnet
from alexnet_tf.runs.checkpoints import CheckpointError, write_model_config
from alexnet_tf.training import (
    distribution,
    init_from,
    localization,
    preemption,
    schedules,
    steps,
    summaries,
)
from alexnet_tf.training.checkpoints import RunCheckpoints
from alexnet_tf.training.config import (  # noqa: F401  (the names importers know from here)
    BATCH_SIZE,
    EPOCHS,
    MIXED_PRECISION,
    ConfigError,
    NonFiniteLossError,
    TrainConfig,
    TrainResult,
)
from alexnet_tf.training.device_prefetch import DevicePrefetcher
from alexnet_tf.training.preemption import PreemptedError  # noqa: F401
from alexnet_tf.training.state import TrainState, create_train_state

SUMMARY_DIR = run_files.TENSORBOARD_DIR


@dataclasses.dataclass
class _Input:
    """The run's data: splits, the training stream (its position is checkpointed), statistics."""

    manifest: object
    train_files: list[str]
    val_files: list[str] | None
    total_steps: int
    warmup_steps: int
    iterator: object
    prefetcher: DevicePrefetcher
    normalizer: tf.Module


def train(
    config: TrainConfig, *, build_model: Callable[..., keras.Model] = build_alexnet
) -> TrainResult:
    """Trains (or resumes training of) AlexNet as configured; returns where it ended.

    Args:
        config: the run's settings; `config.validate()` is called first.
        build_model: `build_alexnet` (tests may pass a cheaper builder with the same signature).

    Raises:
        ConfigError: a setting can't work, or the workdir's checkpoints can't be resumed.
        NonFiniteLossError: the loss became NaN or infinite; earlier checkpoints are untouched.
        PreemptedError: SIGTERM or SIGINT arrived; a checkpoint of the last step was written.
        WriteError: a checkpoint or file could not be written (no space, quota, read-only).
    """
    config.validate()
    try:
        strategy = distribution.make_strategy(config.strategy)
        devices = distribution.tower_devices(config.placement, strategy)
    except ValueError as e:
        raise ConfigError(str(e)) from e
    keras.utils.set_random_seed(config.seed)
    if config.deterministic:
        tf.config.experimental.enable_op_determinism()
    chief, replicas = distribution.is_chief(strategy), strategy.num_replicas_in_sync
    if config.batch_size % replicas:
        raise ConfigError(
            f"--batch_size={config.batch_size} does not divide over the {replicas} replicas of "
            f"--strategy={config.strategy}; use a multiple of {replicas}"
        )
    workers, worker = distribution.num_workers(strategy), distribution.worker_id(strategy)
    data = _make_input(config, strategy, workers, worker)
    state = create_train_state(
        config, strategy, data.manifest.num_classes, data.normalizer,
        devices=devices, build_model=build_model,
        num_train_examples=data.manifest.split("train").num_examples,
    )  # fmt: skip
    if chief:
        write_model_config(config.workdir, {
            "num_classes": data.manifest.num_classes,
            "model": config.model_kwargs(),
            "preprocessing": data.normalizer.get_config(),
            "data_dir": os.path.abspath(config.data_dir),
            # What the layers computed in; the tools rebuild in float32 whatever it says.
            "mixed_precision": state.mixed_precision.policy,
        })  # fmt: skip
    options = steps.StepOptions(
        batch_size=config.batch_size, weight_decay=config.weight_decay, replicas=replicas,
        local_replicas=replicas // workers, xla=config.xla,
        box_loss_weight=config.box_loss_weight if config.localization else None,
        clip_gradient_norm=config.clip_gradient_norm,
    )  # fmt: skip
    step_fn = steps.make_train_step(state, options, strategy)
    # --box_loss_start_epochs: the first steps weigh the box loss 0 (what first, then where).
    box_start = config.box_loss_start_step(data.manifest.split("train").num_examples)
    stage_one = step_fn
    if config.localization and box_start:
        stage_one = steps.make_train_step(
            state, dataclasses.replace(options, box_loss_weight=0.0), strategy
        )
    eval_fn = tf.function(functools.partial(steps.eval_step, state), autograph=False)
    run_checkpoints = RunCheckpoints(
        state.checkpoint, {"iterator": data.iterator, "prefetched": data.prefetcher},
        config.workdir, worker=worker, workers=workers, chief=chief, keep=config.keep_checkpoints,
    )  # fmt: skip
    try:
        latest = run_checkpoints.restore()
    except CheckpointError as e:
        raise ConfigError(f"--workdir {config.workdir!r}: {e}") from e
    if latest:
        logging.info(
            "Resumed from %s at step %d%s", latest, int(state.step.numpy()),
            f" (its own checkpoint: --init_from={config.init_from} is not loaded again)"
            if config.init_from else "",
        )  # fmt: skip
    elif config.init_from:
        try:
            init_from.load_into(state.model, config.init_from, build_model)
        except init_from.InitFromError as e:
            raise ConfigError(str(e)) from e
    if chief:
        _warn_if_disk_short(run_checkpoints.directory, state, latest)

    writer = summaries.Writer(run_files.tensorboard(config.workdir), enabled=chief)
    step = int(state.step.numpy())
    start_step, start_time = step, time.time()
    window, last_eval, last_ckpt, lr = summaries.Window(), {}, latest, None
    box_window = localization.BoxLossWindow()
    if step >= data.total_steps:
        logging.info("Already trained %d of %d steps in %s", step, data.total_steps, config.workdir)
    try:
        with preemption.StopRequests() as stop:
            while step < data.total_steps:
                new_lr = state.schedule.learning_rate(step) * schedules.warmup_factor(
                    step, data.warmup_steps
                )
                if new_lr != lr:
                    lr = new_lr
                    state.optimizer.learning_rate.assign(lr)
                tick = time.time()
                with input_pipeline.input_errors(data.train_files):
                    parts = next(data.prefetcher)
                wish = tf.constant(float(stop.requested), tf.float32)
                sums = (step_fn if step >= box_start else stage_one)(
                    parts, tf.constant(step, tf.int64), wish
                )
                loss_sum, wrong1, wrong5, *box_sums, stops = (float(x) for x in sums)
                box_window.add(*box_sums)
                step += 1
                state.step.assign(step)
                if not math.isfinite(loss_sum):
                    raise NonFiniteLossError(
                        f"the training loss became {loss_sum / config.batch_size} at step {step}; "
                        f"stopped without saving, so the last good checkpoint "
                        f"({last_ckpt or 'none yet'}) is kept. Lower --learning_rate or "
                        "--input_scale."
                    )
                window.add(config.batch_size, loss_sum, wrong1, wrong5, time.time() - tick)
                if step % config.log_every_steps == 0 or step == data.total_steps:
                    _log_progress(
                        writer, window, step, data.total_steps, start_step, start_time, lr
                    )
                    writer.scalars(step, box_window.flush())  # train/box_loss
                at_end = step == data.total_steps
                if data.val_files is not None and (
                    at_end or (config.eval_every_steps and step % config.eval_every_steps == 0)
                ):
                    last_eval = _evaluate(config, data, eval_fn, state)
                    _after_evaluation(writer, state, step, last_eval)
                # One worker alone decides only for itself; several decide on the reduced sum,
                # which is the same on all of them (see preemption.py).
                stopping = stops > 0 if workers > 1 else stop.requested
                if at_end or step % config.checkpoint_every_steps == 0 or stopping:
                    last_ckpt = run_checkpoints.save(step)
                if stopping and not at_end:
                    raise _stopped(stop, step, last_ckpt, run_checkpoints.directory)
    except preemption.LOST_PEER_ERRORS as e:
        if workers == 1:
            raise
        raise preemption.lost_worker(e, step, last_ckpt) from None  # the cause is in the message
    finally:
        data.prefetcher.close()
        writer.close()
    return TrainResult(step, window.last_loss, last_eval, last_ckpt, config.workdir, replicas)


def checked_manifest(config: TrainConfig) -> Manifest:
    """The manifest of --data_dir, checked for what the run's flags need of it.

    Raises:
        ConfigError: --data_dir holds no converted data or no training split, --schedule=plateau
            finds no validation split, or --localization finds no boxes.
    """
    try:
        manifest = load_manifest(config.data_dir)
        manifest.split("train")
    except ManifestError as e:
        raise ConfigError(f"--data_dir: {e}") from e
    if config.schedule == "plateau" and "validation" not in manifest.splits:
        raise ConfigError(
            f"--schedule=plateau needs a validation split in {manifest.path}; "
            "convert one or use --schedule=step"
        )
    if config.localization:
        try:
            localization.check_boxes(manifest)
        except localization.NoBoxesError as e:
            raise ConfigError(str(e)) from e
    return manifest


def _make_input(
    config: TrainConfig, strategy: tf.distribute.Strategy, workers: int, worker: int
) -> _Input:
    """The training stream of this worker, the validation files and the input normalization."""
    manifest = checked_manifest(config)
    train_split = manifest.split("train")
    val_split = manifest.splits.get("validation")
    total_steps = config.total_steps(train_split.num_examples)
    # One input pipeline per worker: it yields the worker's share of the global batch, which
    # the train step splits over the worker's replicas.
    worker_context = tf.distribute.InputContext(workers, worker, workers)
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
            with_boxes=config.localization,
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
    return _Input(
        manifest, train_split.files, val_split.files if val_split else None, total_steps,
        config.warmup_steps(train_split.num_examples), iterator, prefetcher, normalizer,
    )  # fmt: skip


def _evaluate(
    config: TrainConfig, data: _Input, eval_fn: Callable, state: TrainState
) -> dict[str, float]:
    """Centre-crop top-1/top-5 error on the whole validation split, every example once; with
    --localization and validation boxes also the localization scores (top 5, centre crop)."""
    with_boxes = config.localization and localization.images_with_boxes(data.manifest, "validation")
    box_fn = localization.eval_box_fn(state.model, state.normalizer) if with_boxes else None
    # Every worker evaluates the whole split on one device: no collective can hang on uneven
    # batches, and all workers take the same schedule decision.
    eval_data = input_pipeline.make_eval_dataset(
        data.val_files, config.eval_batch_size or config.batch_size,
        label_offset=data.manifest.label_offset, with_boxes=bool(with_boxes),
    )  # fmt: skip
    totals = np.zeros(3)
    boxes = localization.LocalizationCounter()
    batches = DevicePrefetcher(
        iter(eval_data), data.prefetcher.devices[:1], config.prefetch_to_device
    )
    with input_pipeline.input_errors(data.val_files), contextlib.closing(batches):
        for ((images, labels, mask, *ground_truth),) in batches:
            totals += [float(c) for c in eval_fn(images, labels, mask)]
            if box_fn is not None:
                classes, predicted = (t.numpy() for t in box_fn(images))
                localization.count_localizations(
                    boxes, classes, predicted, labels.numpy(), mask.numpy(),
                    *(t.numpy() for t in ground_truth),
                )  # fmt: skip
    n = max(totals[2], 1.0)
    scores = {
        "top1_error": totals[0] / n,
        "top5_error": totals[1] / n,
        "num_examples": int(totals[2]),
    }
    return scores | (boxes.errors() if boxes.count else {})


def _after_evaluation(writer, state: TrainState, step: int, result: dict) -> None:
    """Logs and records an evaluation, and lets the schedule react to it."""
    logging.info(
        "step %d  eval top1_error %.4f  top5_error %.4f  (%d images)",
        step, result["top1_error"], result["top5_error"], result["num_examples"],
    )  # fmt: skip
    writer.scalars(step, {f"eval/{k}": v for k, v in result.items() if k != "num_examples"})
    if "localization_error" in result:
        logging.info(
            "step %d  eval localization_error %.4f  mean_iou %.3f",
            step, result["localization_error"], result["mean_iou"],
        )  # fmt: skip
    writer.weights(step, state.model)
    if state.schedule.update(step, result["top1_error"]):
        logging.info(
            "step %d: learning rate divided, now %.3g", step, state.schedule.learning_rate(step)
        )


def _log_progress(writer, window, step, total_steps, start_step, start_time, lr) -> None:
    elapsed = time.time() - start_time
    left = elapsed / (step - start_step) * (total_steps - step)
    stats = window.flush()
    logging.info(
        "step %d/%d  loss %.4f  top1_error %.3f  lr %.3g  %.1f images/s  %s left",
        step, total_steps, stats["loss"], stats["top1_error"], lr,
        stats["images_per_sec"], _duration(left),
    )  # fmt: skip
    writer.scalars(step, {f"train/{k}": v for k, v in stats.items()} | {"train/learning_rate": lr})


def _stopped(stop, step: int, checkpoint: str | None, directory: str) -> PreemptedError:
    cause = stop.name or "another worker's stop request"
    where = checkpoint or f"{directory}/ckpt-{step} (written by the chief)"
    message = (
        f"stopped by {cause} after step {step}; saved {where}. Run the same command again to resume"
    )
    logging.warning("%s", message)
    return PreemptedError(message, step, checkpoint)


def _warn_if_disk_short(directory: str, state: TrainState, latest: str | None) -> None:
    """Warns when the checkpoints' file system has less room than the next checkpoint needs."""
    needed = state.variable_bytes()
    if latest:  # the newest checkpoint's own size also counts the input position
        files = tf.io.gfile.glob(latest + ".*")
        needed = max(needed, sum(os.path.getsize(f) for f in files))
    os.makedirs(directory, exist_ok=True)
    free = shutil.disk_usage(directory).free
    if free < needed:
        logging.warning(
            "only %.1f MB free in %s; the next checkpoint needs about %.1f MB. Free some space "
            "or train in another --workdir, or the run will stop at its next checkpoint",
            free / 1e6, directory, needed / 1e6,
        )  # fmt: skip


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"
