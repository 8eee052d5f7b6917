"""Figure 1 (section 3.1): how fast a network with ReLUs trains, against the same with tanh units.

"A four-layer convolutional neural network with ReLUs (solid line) reaches a 25% training error
rate on CIFAR-10 six times faster than an equivalent network with tanh neurons (dashed line). The
learning rates for each network were chosen independently to make training as fast as possible.
No regularization of any kind was employed."

    result = run_experiment(data, ExperimentConfig(threshold=0.25))   # the JSON's dict
    python -m alexnet_tf.relu_vs_tanh --output_dir=/tmp/figure1           # the binary

For each unit, a short sweep trains the network once per learning rate of
`ExperimentConfig.learning_rates[unit]` from the same initial weights (same seed, same batch
order), and keeps the rate that reaches the threshold in the fewest epochs (ties: the lower
error at the end); if that is the lowest or the highest rate tried, the sweep goes on past it
(half or twice the rate, at most `extend_sweep` more runs). A run stops at the threshold, so
the sweep costs no more than it must; a rate is also abandoned once it has trained longer than
the fastest so far (it can no longer win), and a run whose loss is no longer finite is stopped
and reported as diverged.

The update is Training's (`steps.train_step`: the cross-entropy of section 3.5, SGD with momentum
0.9 of `optimizer.make_sgd`, the top-1 rule of `results.metrics`), run on a `TrainState` with
weight decay 0, no dropout, and a normalizer that only subtracts the mean image: no
regularization of any kind, no augmentation. The rate is `schedules.ConstantSchedule`'s. What is
not Training's: the 2012 loop (`training.loop`) streams 227×227 random crops from shards, with
checkpoints and evaluation; figure 1 needs none of these, so this module keeps its own loop of a
few lines over a set held in memory (`data.small_images`), which records the training error
`points_per_epoch` times an epoch, so a threshold passed within the first epoch still gives a
ratio. Each point is the error of the batches of the last `error_window` of an epoch
(`ErrorWindow`; a fifth: cuda-convnet, whose CIFAR-10 runs figure 1 plots, reports the error of
each 10,000-image data batch, a fifth of an epoch there), not only of those since the last
point: the threshold is crossed by the curve, not by one lucky tenth of an epoch (at a tenth, a
ReLU run at a rate too high crossed with one point of 0.24 after points of 0.34, BUILD.md).
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import math
import time
from collections.abc import Callable, Sequence

import keras
import numpy as np
import tensorflow as tf

from alexnet_tf.data.shard_checks import InputError
from alexnet_tf.data.small_images import LabelledImages
from alexnet_tf.model import build_alexnet
from alexnet_tf.model import network as alexnet_network
from alexnet_tf.model.figure1 import IMAGE_SIZE, build_figure1_net
from alexnet_tf.training import optimizer, schedules, steps
from alexnet_tf.training.state import TrainState

UNITS = ("relu", "tanh")
NETWORKS = ("figure1", "alexnet")
THRESHOLD = 0.25  # section 3.1: "reaches a 25% training error rate"
# cuda-convnet's CIFAR-10 examples take 128 of 50,000 images (390 updates an epoch); the sets
# here are some thousands of images, and 32 keeps a few hundred updates an epoch (280 on the
# bundled set's 8,985).
BATCH_SIZE = 32
POINTS_PER_EPOCH = 10
ERROR_WINDOW = 0.2  # epochs of batches each point's error is over (see the module docstring)
MAX_EPOCHS = 30.0
# The sweep's rates (mean cross-entropy of a batch, inputs on the 0-255 scale), tried in this
# order, the likely fastest first so that the others stop early; a fastest rate at either end is
# followed past it (`sweep`). On the bundled set, ReLU trains best near 0.002 and is erratic at
# 0.004; tanh is about as fast from 0.01 to 0.02 and slower at 0.04 and 0.005 (BUILD.md).
LEARNING_RATES = {
    "relu": (0.002, 0.001, 0.004),
    "tanh": (0.02, 0.01, 0.04),
}


@dataclasses.dataclass(frozen=True)
class ExperimentConfig:
    """What figure 1's experiment trains and how long; the defaults are the paper's setting."""

    threshold: float = THRESHOLD
    network: str = "figure1"  # or "alexnet": the 2012 network, without dropout
    learning_rates: dict[str, Sequence[float]] = dataclasses.field(
        default_factory=lambda: dict(LEARNING_RATES)
    )
    max_epochs: float = MAX_EPOCHS  # a run that has not reached the threshold stops here
    batch_size: int = BATCH_SIZE
    points_per_epoch: int = POINTS_PER_EPOCH
    error_window: float = ERROR_WINDOW  # epochs; at least the batches since the last point
    init: str = "cuda-convnet"  # figure1's initialization (model/figure1.py)
    seed: int = 0  # initial weights and batch order: the same for every run
    extend_sweep: int = 2  # most rates tried beyond the listed ones (see `sweep`)
    figure1_image_size: int = IMAGE_SIZE  # CIFAR-10's 32; the 2012 network takes 227

    def image_size(self) -> int:
        if self.network == "figure1":
            return self.figure1_image_size
        return alexnet_network.IMAGE_SIZE

    def check(self) -> None:
        """Raises ValueError naming the setting that can't work."""
        if self.network not in NETWORKS:
            raise ValueError(f"--network must be one of {NETWORKS}; received {self.network!r}")
        if self.figure1_image_size < 8 or self.figure1_image_size % 8:
            raise ValueError(
                f"--image_size must be a multiple of 8; received {self.figure1_image_size}"
            )
        if not 0 < self.threshold < 1:
            raise ValueError(f"--threshold must be in (0, 1); received {self.threshold!r}")
        if not self.max_epochs > 0:
            raise ValueError(f"--max_epochs must be > 0; received {self.max_epochs!r}")
        if not 0 < self.error_window <= 1:
            raise ValueError(f"--error_window must be in (0, 1]; received {self.error_window!r}")
        if self.extend_sweep < 0:
            raise ValueError(f"--extend_sweep must be >= 0; received {self.extend_sweep}")
        if self.batch_size < 1 or self.points_per_epoch < 1:
            raise ValueError(
                "--batch_size and --points_per_epoch must be >= 1; received "
                f"{self.batch_size} and {self.points_per_epoch}"
            )
        for unit in UNITS:
            rates = list(self.learning_rates.get(unit, ()))
            if not rates or not all(r > 0 for r in rates):
                raise ValueError(
                    f"--{unit}_learning_rates must be positive numbers; received {rates}"
                )


@dataclasses.dataclass
class Curve:
    """One training run: its training error against epochs, and when it crossed the threshold."""

    unit: str
    learning_rate: float
    epochs: list[float]
    train_error: list[float]
    epochs_to_threshold: float | None
    stopped: str  # "threshold", "max_epochs", "no longer the fastest" or "diverged"
    seconds: float

    def row(self) -> dict:
        """The sweep table's row (no curve)."""
        return {
            "unit": self.unit, "learning_rate": self.learning_rate,
            "epochs_to_threshold": self.epochs_to_threshold,
            "epochs_run": self.epochs[-1] if self.epochs else 0.0,
            "final_error": self.train_error[-1] if self.train_error else None,
            "stopped": self.stopped, "seconds": round(self.seconds, 2),
        }  # fmt: skip


def epochs_to_threshold(
    epochs: Sequence[float], errors: Sequence[float], threshold: float
) -> float | None:
    """The first epoch whose recorded training error is at or below `threshold`; None if none."""
    for epoch, error in zip(epochs, errors, strict=True):
        if error <= threshold:
            return float(epoch)
    return None


def check_data(data: LabelledImages, config: ExperimentConfig) -> None:
    """Raises InputError naming what the set lacks: two classes, one batch, the right size."""
    present = np.unique(data.labels)
    if len(present) < 2:
        raise InputError(
            f"{data.source}: the training images are all of {len(present)} class; "
            "a training error needs at least 2 classes"
        )
    if len(data.labels) < config.batch_size:
        raise InputError(
            f"{data.source}: {len(data.labels)} training images, fewer than one batch of "
            f"--batch_size={config.batch_size}"
        )
    size = config.image_size()
    if data.images.shape[1:] != (size, size, 3):
        raise InputError(
            f"{data.source}: images of shape {data.images.shape[1:]}; the {config.network} "
            f"network needs ({size}, {size}, 3)"
        )


def window_batches(error_window: float, steps_per_epoch: int, points: int) -> int:
    """Batches in `error_window` epochs, and never fewer than between two of the points."""
    return max(round(error_window * steps_per_epoch), math.ceil(steps_per_epoch / points), 1)


class ErrorWindow:
    """The training error rate of the last `batches` batches, whatever epoch they were in."""

    def __init__(self, batches: int):
        self._recent = collections.deque(maxlen=batches)  # (wrong, images) per batch

    def add(self, wrong: float, images: int) -> None:
        self._recent.append((wrong, images))

    def error(self) -> float:
        return sum(w for w, _ in self._recent) / sum(n for _, n in self._recent)


class MeanImage(tf.Module):
    """The experiment's normalizer: uint8 batch → float32 minus the training set's mean image.

    It has the call of `augment.Normalizer`, which `steps.train_step` uses, without its
    reflections and lighting noise (augmentation, which figure 1's runs have none of).
    """

    def __init__(self, images: np.ndarray, standardize: bool = False):
        super().__init__(name="mean_image")
        mean = images.mean(axis=0, dtype=np.float64)  # no float copy of a 227×227 set
        self.mean = tf.constant(mean.astype(np.float32))
        self.scale = 1.0 / float(images.std()) if standardize else 1.0  # of all pixels

    def __call__(self, images: tf.Tensor, training: bool, seed: tf.Tensor | None = None):
        del training, seed
        return (tf.cast(images, tf.float32) - self.mean) * self.scale


def build_network(
    unit: str, num_classes: int, config: ExperimentConfig
) -> tuple[keras.Model, keras.Model]:
    """(the network with `unit`, its logits model with the `fc8` output `steps` reads)."""
    if config.network == "alexnet":
        model = build_alexnet(num_classes, activation=unit, dropout_rate=0.0, seed=config.seed)
        logits = model.get_layer("fc8").output
    else:
        model = build_figure1_net(
            num_classes, activation=unit, image_size=config.image_size(), init=config.init,
            seed=config.seed,
        )  # fmt: skip
        logits = model.get_layer("fc4").output
    return model, keras.Model(model.input, {"fc8": logits})


def train_curve(
    data: LabelledImages,
    unit: str,
    learning_rate: float,
    config: ExperimentConfig,
    *,
    give_up_after: float | None = None,
    progress: Callable[[str], None] | None = None,
) -> Curve:
    """Trains the network with `unit` at a constant `learning_rate`; records the training error.

    Args:
        data: the training set (checked with `check_data`).
        unit: "relu" or "tanh".
        learning_rate: SGD's rate for the whole run.
        config: the experiment's settings.
        give_up_after: stop once this many epochs have passed without reaching the threshold
            (the sweep's fastest so far); None: `config.max_epochs`.
        progress: called with a line after every epoch.
    """
    model, logits_model = build_network(unit, data.num_classes, config)
    sgd = optimizer.make_sgd(learning_rate)
    # Glorot's scale assumes inputs of unit variance; cuda-convnet's, the 0-255 scale.
    glorot = config.network == "figure1" and config.init == "glorot"
    normalizer = MeanImage(data.images, standardize=glorot)
    state = TrainState(
        model=model, optimizer=sgd, schedule=schedules.ConstantSchedule(learning_rate),
        normalizer=normalizer, step=tf.Variable(0, dtype=tf.int64),
        seed=config.seed, logits_model=logits_model, decayed=[],
    )  # fmt: skip
    options = steps.StepOptions(batch_size=config.batch_size, weight_decay=0.0)
    step_fn = tf.function(functools.partial(steps.train_step, state, options))
    steps_per_epoch = len(data.labels) // config.batch_size
    # Points at (about) equal numbers of batches; every batch is a point in a tiny set.
    points = min(config.points_per_epoch, steps_per_epoch)
    bounds = np.linspace(0, steps_per_epoch, points + 1).round().astype(int)[1:]
    recent = ErrorWindow(window_batches(config.error_window, steps_per_epoch, points))
    limit = config.max_epochs if give_up_after is None else min(give_up_after, config.max_epochs)
    rng = np.random.default_rng(config.seed)  # the same batch order for every run
    epochs, errors, stopped, start = [], [], None, time.perf_counter()
    for epoch in range(math.ceil(limit)):
        order = rng.permutation(len(data.labels))
        loss = 0.0
        for index in range(steps_per_epoch):
            rows = order[index * config.batch_size : (index + 1) * config.batch_size]
            sums = step_fn(
                tf.constant(data.images[rows]), tf.constant(data.labels[rows]), state.step
            )
            state.step.assign_add(1)
            loss += float(sums[0])
            recent.add(float(sums[1]), len(rows))
            if index + 1 in bounds:
                epochs.append(epoch + (index + 1) / steps_per_epoch)
                errors.append(recent.error())
                stopped = _stop(loss, errors[-1], epochs[-1], limit, give_up_after, config)
                loss = 0.0
                if stopped:
                    break
        if progress:
            progress(f"{unit} lr={learning_rate:g} epoch {epochs[-1]:.1f}: error {errors[-1]:.3f}")
        if stopped:
            break
    return Curve(
        unit=unit, learning_rate=float(learning_rate), epochs=epochs, train_error=errors,
        epochs_to_threshold=epochs_to_threshold(epochs, errors, config.threshold),
        stopped=stopped or "max_epochs", seconds=time.perf_counter() - start,
    )  # fmt: skip


def _stop(loss, error, epoch, limit, give_up_after, config) -> str | None:
    """Why a run stops at this point, or None to go on."""
    if not math.isfinite(loss):
        return "diverged"
    if error <= config.threshold:
        return "threshold"
    if epoch >= limit:
        fastest = give_up_after is not None and give_up_after < config.max_epochs
        return "no longer the fastest" if fastest else "max_epochs"
    return None


def _better(curve: Curve, best: Curve | None) -> bool:
    if curve.stopped == "diverged" or not curve.train_error:
        return best is None
    if best is None or best.stopped == "diverged":
        return True
    mine, theirs = curve.epochs_to_threshold, best.epochs_to_threshold
    if (mine is None) != (theirs is None):
        return mine is not None
    if mine is not None and mine != theirs:
        return mine < theirs
    return curve.train_error[-1] < best.train_error[-1]


def sweep(
    data: LabelledImages,
    unit: str,
    config: ExperimentConfig,
    progress: Callable[[str], None] | None = None,
) -> tuple[Curve, list[Curve]]:
    """Trains `unit` at each of its rates; returns (the fastest run, every run in the order run).

    When the fastest is the lowest (highest) rate tried, the rate half (twice) as large is tried
    next, up to `config.extend_sweep` times: a fastest rate at the edge of the range may not be
    the fastest there is.
    """
    runs, best = [], None

    def run(rate):
        nonlocal best
        fastest = best.epochs_to_threshold if best is not None else None
        curve = train_curve(data, unit, rate, config, give_up_after=fastest, progress=progress)
        runs.append(curve)
        if _better(curve, best):
            best = curve

    for rate in config.learning_rates[unit]:
        run(float(rate))
    for _ in range(config.extend_sweep):
        tried = sorted(r.learning_rate for r in runs)
        if best.learning_rate == tried[0] and best.learning_rate / 2 not in tried:
            run(best.learning_rate / 2)
        elif best.learning_rate == tried[-1] and best.learning_rate * 2 not in tried:
            run(best.learning_rate * 2)
        else:
            break
    return best, runs


def run_experiment(
    data: LabelledImages,
    config: ExperimentConfig,
    progress: Callable[[str], None] | None = None,
) -> dict:
    """Sweeps both units and returns figure 1's result (the JSON's layout, see the binary).

    Raises:
        ValueError: a setting of `config` can't work.
        InputError: the set can't train (`check_data`).
    """
    config.check()
    check_data(data, config)
    keras.utils.set_random_seed(config.seed)
    start = time.perf_counter()
    best, table = {}, []
    for unit in UNITS:
        best[unit], runs = sweep(data, unit, config, progress)
        table += [run.row() for run in runs]
    relu, tanh = best["relu"].epochs_to_threshold, best["tanh"].epochs_to_threshold
    speedup, lower_bound = None, False
    if relu is not None:
        if tanh is not None:
            speedup = tanh / relu
        else:  # tanh never got there: at least the epochs it ran over relu's
            speedup, lower_bound = best["tanh"].epochs[-1] / relu, True
    return {
        "threshold": config.threshold,
        "network": config.network,
        "init": config.init if config.network == "figure1" else "paper",
        "data": {
            "source": data.source, "num_images": int(len(data.labels)),
            "num_classes": data.num_classes, "image_size": int(data.images.shape[1]),
        },
        "batch_size": config.batch_size,
        "error_window": config.error_window,
        "max_epochs": config.max_epochs,
        "units": {
            unit: {
                "learning_rate": curve.learning_rate, "epochs": curve.epochs,
                "train_error": curve.train_error,
                "epochs_to_threshold": curve.epochs_to_threshold, "stopped": curve.stopped,
            }
            for unit, curve in best.items()
        },
        "speedup": speedup,
        "speedup_is_lower_bound": lower_bound,
        "sweep": table,
        "seconds": round(time.perf_counter() - start, 1),  # both sweeps, the data excluded
    }  # fmt: skip
