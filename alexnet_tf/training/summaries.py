"""What training shows in TensorBoard and in its progress line.

Scalars `train/loss`, `train/top1_error`, `train/top5_error`, `train/learning_rate`,
`train/images_per_sec`, `eval/top1_error`, `eval/top5_error`; a histogram of every weight; and
the 96 conv1 kernels as one image, the way figure 3 of the paper shows them.

    tensorboard --logdir WORKDIR/tensorboard
"""

from __future__ import annotations

import math

import keras
import tensorflow as tf

from alexnet_tf.model import conv1_kernels
from alexnet_tf.model.filters import filter_grid

HISTOGRAM_SAMPLE = 1_000_000  # values per weight histogram


class Window:
    """Training statistics summed since the last progress line."""

    def __init__(self):
        self.last_loss = math.nan
        self._reset()

    def _reset(self):
        self.images, self.loss, self.wrong1, self.wrong5, self.seconds = 0, 0.0, 0.0, 0.0, 0.0

    def add(
        self, images: int, loss_sum: float, wrong1: float, wrong5: float, seconds: float
    ) -> None:
        """Adds one step: its images, summed loss, wrong counts and time (input + update)."""
        self.images += images
        self.seconds += seconds
        self.loss += loss_sum
        self.wrong1 += wrong1
        self.wrong5 += wrong5

    def flush(self) -> dict[str, float]:
        """Means over the window (loss, top-1/top-5 error) and its images per second."""
        n = max(self.images, 1)
        stats = {
            "loss": self.loss / n,
            "top1_error": self.wrong1 / n,
            "top5_error": self.wrong5 / n,
            "images_per_sec": self.images / max(self.seconds, 1e-9),
        }
        self.last_loss = stats["loss"]
        self._reset()
        return stats


class Writer:
    """A TensorBoard writer that does nothing on processes other than the chief."""

    def __init__(self, logdir: str, enabled: bool = True):
        self._writer = tf.summary.create_file_writer(logdir) if enabled else None

    def scalars(self, step: int, values: dict[str, float]) -> None:
        if self._writer is None:
            return
        with self._writer.as_default(step=step):
            for name, value in values.items():
                tf.summary.scalar(name, value)

    def weights(self, step: int, model: keras.Model) -> None:
        """Histograms of every trainable variable and the conv1 kernels as an image."""
        if self._writer is None:
            return
        with self._writer.as_default(step=step):
            for v in model.trainable_variables:
                values = v.numpy().ravel()
                # tf.summary.histogram needs ~30 floats of memory per value (4.5 GB for fc6's
                # 37.7 M); an evenly strided sample of a million shows the same distribution.
                stride = max(1, values.size // HISTOGRAM_SAMPLE)
                tf.summary.histogram(f"weights/{v.path}", values[::stride])
            # The same grid as the conv1 PNG of alexnet_tf.visualize.
            tf.summary.image("conv1/filters", filter_grid(conv1_kernels(model))[None])
        self._writer.flush()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
