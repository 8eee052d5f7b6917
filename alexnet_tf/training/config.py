"""The settings of a training run (section 5's recipe as defaults) and what a run returns."""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Sequence

from alexnet_tf.files import workdir as run_files
from alexnet_tf.model import precision
from alexnet_tf.runs import checkpoints
from alexnet_tf.training import distribution, init_from, optimizer, schedules
from alexnet_tf.training.localization import BOX_LOSS_WEIGHT

BATCH_SIZE = 128  # section 5
EPOCHS = 90  # section 5: "roughly 90 cycles through the training set"
# none: float32; auto: what this machine runs fastest (alexnet_tf/model/precision.py).
MIXED_PRECISION = precision.POLICIES


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
    warmup_epochs: float = 0.0  # > 0: the rate ramps up linearly over these first passes
    clip_gradient_norm: float = 0.0  # > 0: the batch's gradient is scaled to at most this norm
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
    localization: bool = False  # ILSVRC task 2: the box head and its loss
    box_loss_weight: float = BOX_LOSS_WEIGHT
    box_loss_start_epochs: float = 0.0  # > 0: the first passes train the classifier alone
    init_from: str = ""  # a WORKDIR, ckpt-N or bvlc_alexnet.npy: matching layers start from it
    train_layers: Sequence[str] = ()  # paper names (optimizer.TRAINABLE_LAYERS); (): all

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
            (self.warmup_epochs >= 0, "--warmup_epochs must be >= 0 (0: no warm-up)"),
            (self.clip_gradient_norm >= 0, "--clip_gradient_norm must be >= 0 (0: no clipping)"),
            (self.checkpoint_every_steps >= 1, "--checkpoint_every_steps must be >= 1"),
            (self.keep_checkpoints >= 1, "--keep_checkpoints must be >= 1"),
            (self.eval_every_steps >= 0, "--eval_every_steps must be >= 0 (0: only at the end)"),
            (self.log_every_steps >= 1, "--log_every_steps must be >= 1"),
            (self.prefetch_to_device >= 0, "--prefetch_to_device must be >= 0"),
            (self.input_scale > 0, "--input_scale must be > 0"),
            (self.conv1_init_stddev >= 0, "--conv1_init_stddev must be >= 0 (0: follow --init)"),
            (self.pca_std >= 0, "--pca_std must be >= 0"),
            (self.box_loss_weight >= 0, "--box_loss_weight must be >= 0"),
            (self.box_loss_start_epochs >= 0, "--box_loss_start_epochs must be >= 0"),
            (0 <= self.dropout_rate < 1, "--dropout_rate must be in [0, 1)"),
            (bool(self.workdir), "--workdir must be set"),
            (bool(self.data_dir), "--data_dir must be set"),
        ]
        for ok, message in checks:
            if not ok:
                flag = message.split()[0].lstrip("-")
                raise ConfigError(f"{message}; received {getattr(self, flag, None)!r}")
        unknown = sorted(set(self.train_layers) - set(optimizer.TRAINABLE_LAYERS))
        if unknown:
            raise ConfigError(
                f"--train_layers must name some of {optimizer.TRAINABLE_LAYERS}; received "
                f"{list(self.train_layers)} ({unknown} unknown)"
            )
        if "bbox" in self.train_layers and not self.localization:
            raise ConfigError("--train_layers names bbox, the box head: it needs --localization")
        if not os.path.isdir(self.data_dir):
            raise ConfigError(f"--data_dir {self.data_dir!r} does not exist")
        if self.init_from and not self.resumes():
            try:
                init_from.check_source(self.init_from)
            except init_from.InitFromError as e:
                raise ConfigError(str(e)) from e

    def resumes(self) -> bool:
        """Whether --workdir already holds a checkpoint (then it, not --init_from, is loaded)."""
        return bool(checkpoints.checkpoints_in(run_files.checkpoints(self.workdir)))

    def step_boundaries(self, num_examples: int) -> list[int]:
        """--lr_boundaries, or --lr_boundary_epochs in steps: they scale with the data."""
        if self.lr_boundaries:
            return list(self.lr_boundaries)
        return [math.ceil(e * num_examples / self.batch_size) for e in self.lr_boundary_epochs]

    def total_steps(self, num_examples: int) -> int:
        """The run's length: --train_steps, or --epochs over `num_examples` in steps."""
        return self.train_steps or math.ceil(self.epochs * num_examples / self.batch_size)

    def warmup_steps(self, num_examples: int) -> int:
        """--warmup_epochs in steps (0: none)."""
        return math.ceil(self.warmup_epochs * num_examples / self.batch_size)

    def box_loss_start_step(self, num_examples: int) -> int:
        """--box_loss_start_epochs in steps: the first step with the box loss (0: the first)."""
        return math.ceil(self.box_loss_start_epochs * num_examples / self.batch_size)

    def model_kwargs(self) -> dict:
        """The keyword arguments of `build_alexnet` (saved in model_config.json)."""
        kwargs = {"init": self.init, "dropout_rate": self.dropout_rate, "seed": self.seed}
        if self.conv1_init_stddev:
            kwargs["conv1_init_stddev"] = self.conv1_init_stddev
        # Only a run with the box head says so: the tools rebuild the network from this.
        return kwargs | ({"localization": True} if self.localization else {})


@dataclasses.dataclass
class TrainResult:
    step: int
    loss: float  # mean cross-entropy of the last logged window (nan if no step ran)
    eval: dict[str, float]  # last evaluation: top1_error, top5_error, num_examples
    checkpoint: str | None
    workdir: str
    replicas: int = 1  # data-parallel replicas that trained it
