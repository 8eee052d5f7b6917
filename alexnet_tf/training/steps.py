"""The update step of section 5 and the evaluation step, as plain functions of a `TrainState`.

    grads, sums = loss_and_gradients(state, options, images, labels, noise_seed)
    sums = train_step(state, options, images, labels, step)      # one replica's update
    step_fn = make_train_step(state, options, strategy)          # compiled, over all replicas
    wrong1, wrong5, count = eval_step(state, images, labels, mask)

The loss is the paper's: "maximizes the average across training cases of the log-probability of
the correct label" (section 3.5), plus the L2 term whose gradient is the weight decay of
section 5 (see optimizer.py); the update is SGD with momentum. tests/test_train_optimizer.py
pins one `train_step` against the paper's update rule.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Sequence

import tensorflow as tf

from alexnet_tf.results import metrics
from alexnet_tf.training import localization, optimizer
from alexnet_tf.training.state import TrainState


@dataclasses.dataclass(frozen=True)
class StepOptions:
    """The settings the update step reads (fixed for a run)."""

    batch_size: int  # the global batch: per-example losses are averaged over all replicas' rows
    weight_decay: float = optimizer.WEIGHT_DECAY
    replicas: int = 1  # replicas in sync: numbers the PCA noise draws of one step
    local_replicas: int = 1  # replicas of this process (one input part each)
    xla: bool = False  # compile the forward and backward pass with XLA
    box_loss_weight: float | None = None  # localization: the weight of the box loss; None: off
    clip_gradient_norm: float = 0.0  # > 0: the whole batch's gradient is scaled to at most this


def loss_and_gradients(
    state: TrainState,
    options: StepOptions,
    images: tf.Tensor,
    labels: tf.Tensor,
    noise_seed: tf.Tensor,
    *boxes: tf.Tensor,
) -> tuple[list[tf.Tensor], tuple[tf.Tensor, ...]]:
    """The forward and backward pass of one replica's share of the batch.

    `boxes` (localization only): the batch's (target boxes, has_box) of the input pipeline; the
    box loss of `training/localization.py`, weighted by `options.box_loss_weight`, joins the loss.

    Returns:
        (gradients of the trainable variables, (summed cross-entropy, top-1 wrong, top-5 wrong,
        and with boxes: summed box loss, examples with a box)).
    """
    with tf.GradientTape() as tape:
        inputs = state.normalizer(images, training=True, seed=noise_seed)
        outputs = state.logits_model(inputs, training=True)
        logits = tf.cast(outputs["fc8"], tf.float32)
        per_example = tf.nn.sparse_softmax_cross_entropy_with_logits(labels, logits)
        loss = tf.nn.compute_average_loss(per_example, global_batch_size=options.batch_size)
        box_sums = ()
        if boxes:
            box_loss = localization.step_box_loss(
                state.model, outputs["drop7"], labels, *boxes, state.normalizer, noise_seed
            )
            loss += options.box_loss_weight * tf.nn.compute_average_loss(
                box_loss, global_batch_size=options.batch_size
            )
            box_sums = (tf.reduce_sum(box_loss), tf.reduce_sum(tf.cast(boxes[1], tf.float32)))
        # The L2 term whose gradient is the paper's weight decay (see optimizer.py); divided by
        # the replicas because their gradients are summed.
        loss += tf.nn.scale_regularization_loss(
            optimizer.l2_penalty(state.decayed, options.weight_decay)
        )
        if state.loss_scaling:
            loss = state.optimizer.scale_loss(loss)
    grads = tape.gradient(loss, state.model.trainable_variables)
    sums = (tf.reduce_sum(per_example), *metrics.error_counts(logits, labels), *box_sums)
    return grads, sums


def train_step(
    state: TrainState,
    options: StepOptions,
    images: tf.Tensor,
    labels: tf.Tensor,
    step: tf.Tensor,
    gradients: Callable | None = None,
    boxes: Sequence[tf.Tensor] = (),
) -> tuple[tf.Tensor, ...]:
    """One replica's update: gradients of its share of the batch, then SGD with momentum.

    Runs in a replica context (`strategy.run`, or TensorFlow's default one when called as is).

    Args:
        state: updated in place (weights, momentum, dropout's random state).
        options: the run's settings.
        images: uint8 crops of this replica's share of the batch.
        labels: their class indices.
        step: int64 scalar, the number of updates before this one.
        gradients: `loss_and_gradients` bound to (state, options), compiled (XLA) or not; by
            default the plain function.
        boxes: localization only: (target boxes, has_box) of the same rows.

    Returns:
        (summed cross-entropy, top-1 wrong, top-5 wrong[, summed box loss, rows with a box])
        over this replica's rows.
    """
    # The PCA lighting noise is a pure function of (seed, step, replica): a resumed run draws
    # what the interrupted one would have drawn.
    replica = tf.distribute.get_replica_context().replica_id_in_sync_group
    noise_seed = tf.stack(
        [tf.constant(state.seed, tf.int64), step * options.replicas + tf.cast(replica, tf.int64)]
    )
    if gradients is None:
        gradients = functools.partial(loss_and_gradients, state, options)
    grads, sums = gradients(images, labels, noise_seed, *boxes)
    if options.clip_gradient_norm:
        grads = clip_by_global_norm(grads, options.clip_gradient_norm, state)
    state.optimizer.apply(grads, state.model.trainable_variables)
    return sums


def clip_by_global_norm(grads: list[tf.Tensor], clip_norm: float, state: TrainState) -> list:
    """This replica's gradients, scaled so that the whole batch's gradient has norm ≤ clip_norm.

    The norm is that of the gradient the optimizer applies: the sum over all replicas (an
    all-reduce of its own when there are several), without the loss scale of float16 training.
    Every replica scales its share by the same factor, so the optimizer's sum is clipped exactly.
    """
    context = tf.distribute.get_replica_context()
    total = grads
    if context.num_replicas_in_sync > 1:
        total = context.all_reduce("SUM", grads)
    norm = tf.linalg.global_norm(total)
    if state.loss_scaling:
        norm /= tf.cast(state.optimizer.scale_loss(tf.constant(1.0)), norm.dtype)
    scale = tf.minimum(1.0, clip_norm / tf.maximum(norm, 1e-12))
    return [g * tf.cast(scale, g.dtype) for g in grads]


def make_train_step(
    state: TrainState, options: StepOptions, strategy: tf.distribute.Strategy
) -> Callable[[Sequence, tf.Tensor, tf.Tensor], list[tf.Tensor]]:
    """The compiled update over every replica of `strategy`.

    Returns:
        `step_fn(parts, step, stop)`: `parts` holds one (images, labels[, boxes, has_box]) per
        local replica, on the replica's device; `stop` is this process's float32 wish to stop
        (0 or 1). Returns [summed loss, top-1 wrong, top-5 wrong(, summed box loss, rows with a
        box), stop] summed over all replicas of all workers:
        a stop > 0 is the same decision on every worker, reached in the same step's reduction.
    """
    gradients = functools.partial(loss_and_gradients, state, options)
    if options.xla:  # the forward and backward pass; the update stays outside XLA
        gradients = tf.function(gradients, jit_compile=True, autograph=False)

    def replica_step(images, labels, *rest):
        *boxes, step, stop = rest
        sums = train_step(state, options, images, labels, step, gradients, boxes)
        # identity: a value of each replica, which the reduction sums (the same tensor returned
        # by every replica would be taken as one value)
        return (*sums, tf.identity(stop))

    @tf.function(autograph=False)
    def step_fn(parts, step, stop):
        inputs = strategy.experimental_distribute_values_from_function(
            lambda ctx: parts[ctx.replica_id_in_sync_group % options.local_replicas]
        )
        sums = strategy.run(replica_step, args=(*inputs, step, stop))
        return [strategy.reduce("SUM", s, axis=None) for s in sums]

    return step_fn


def eval_step(
    state: TrainState, images: tf.Tensor, labels: tf.Tensor, mask: tf.Tensor
) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """Centre-crop errors of a padded batch: (top-1 wrong, top-5 wrong, rows counted)."""
    logits = state.logits_model(state.normalizer(images, training=False), training=False)["fc8"]
    wrong1, wrong5 = metrics.error_counts(tf.cast(logits, tf.float32), labels, mask)
    return wrong1, wrong5, tf.reduce_sum(tf.cast(mask, tf.float32))
