"""The batch half of section 4.1: reflections, mean subtraction and PCA lighting noise.

The tf.data pipeline (`input_pipeline.py`) keeps images `uint8` through the CPU stages and only
crops them; the `Normalizer` here turns a batch into the network's float input inside the
training (or evaluation, or serving) step, on the accelerator where there is one:

    x = (float32(reflect(images)) - mean + lighting_noise) * input_scale

* Reflections (training only): "generating ... horizontal reflections" (section 4.1), each image
  mirrored left-right with probability 1/2. They are drawn here, on the whole batch, because a
  per-image `tf.reverse` in the tf.data map cost 10-15% of the CPU pipeline's rate on this
  machine (BUILD.md, "Input pipeline"), and on an accelerator it costs nothing.

* Mean ("We did not pre-process the images in any other way, except for subtracting the mean
  activity over the training set from each pixel", section 2). `mean="image"` subtracts the
  converter's 256×256 mean image, cut to its central 227×227: the batch no longer knows where each
  random crop came from, and this is what the paper's own code did (cuda-convnet's data provider
  subtracts `data_mean` cropped to the centre from every crop). The mean image of natural photos
  is smooth, so the error at a corner crop is a few grey levels, and the same for every epoch.
  `mean="channel"` subtracts the three channel means; `mean="none"` nothing.
* PCA lighting (section 4.1): to each image add `[p1 p2 p3] [a1 l1, a2 l2, a3 l3]^T`, with `p_i`,
  `l_i` the eigenvectors and eigenvalues of the 3×3 covariance of RGB pixel values and one
  `a_i ~ N(0, pca_std)` per image (0.1 in the paper), the same for every pixel of the image.
  Scale: the formula only gives a "lighting" change (a few per cent) when pixel values are in
  [0, 1]; with 0-255 covariances it would add noise of hundreds of grey levels. So `eigenvalues`
  here are those of the covariance of [0, 1] pixel values (the manifest's 0-255 eigenvalues
  divided by 255²) and the noise, added on the 0-255 scale, is `255 · V (a ⊙ l)`. The published
  ImageNet values below read the same way. `eigenvectors` holds one eigenvector per COLUMN
  (`V[:, i]` belongs to `l_i`), as `manifest.eigen()` returns them.

The normalizer is a `tf.Module`: its constants are variables, so it can be saved inside a
SavedModel beside the network, and `get_config()` / `Normalizer.from_config(manifest, config)`
rebuild it from `model_config.json` ("preprocessing").
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from alexnet_tf.data import boxes as boxes_lib
from alexnet_tf.data.crops import STORED_SIZE
from alexnet_tf.data.manifest import Manifest
from alexnet_tf.data.shard_checks import InputError
from alexnet_tf.model import IMAGE_SIZE

__all__ = ["STORED_SIZE", "Normalizer", "make_normalizer", "reflection_mask"]
PCA_STD = 0.1  # section 4.1: "standard deviation 0.1"
MEAN_KINDS = ("image", "channel", "none")

# Eigen-decomposition of the RGB covariance of ImageNet training pixels in [0, 1], as published
# with fb.resnet.torch (Gross and Wilber, 2016) and used by most ImageNet codebases (GluonCV
# writes the eigenvalues ×255: 55.46, 4.794, 1.148). Columns are eigenvectors: column 0,
# (-0.57, -0.58, -0.58), is brightness.
IMAGENET_EIGENVALUES = (0.2175, 0.0188, 0.0045)
IMAGENET_EIGENVECTORS = (
    (-0.5675, 0.7192, 0.4009),
    (-0.5808, -0.0045, -0.8140),
    (-0.5836, -0.6948, 0.4203),
)
# The RGB means of the ImageNet training set (0-255) used by the VGG and Caffe releases: the
# fallback for mean="channel" when there is no manifest.
IMAGENET_CHANNEL_MEAN = (123.68, 116.779, 103.939)


class Normalizer(tf.Module):
    """uint8 batches → float32 network input: reflection, mean subtraction, PCA lighting, scaling.

    Call it as `normalizer(images, training=True)` on a batch `[..., H, W, 3]` of any rank (the
    ten-patch evaluation batches are `[B, 10, 227, 227, 3]`); `training` is a Python bool (the
    reflections and noise are traced in or out). With `mean="image"`, H and W must be 227.
    `seed` (a shape-[2] integer tensor) makes the reflections and the lighting noise a pure
    function of the seed, for reproducible runs; without it they come from TensorFlow's global
    generator.
    """

    def __init__(
        self,
        mean_values: np.ndarray,
        eigenvalues: np.ndarray,
        eigenvectors: np.ndarray,
        *,
        mean: str,
        pca_std: float,
        input_scale: float,
        name: str = "normalizer",
    ):
        super().__init__(name=name)
        self._config = {"mean": mean, "pca_std": float(pca_std), "input_scale": float(input_scale)}
        with self.name_scope:
            self.mean = tf.Variable(np.asarray(mean_values, np.float32), False, name="mean")
            self.eigenvalues = tf.Variable(
                np.asarray(eigenvalues, np.float32), False, name="eigenvalues"
            )
            self.eigenvectors = tf.Variable(
                np.asarray(eigenvectors, np.float32), False, name="eigenvectors"
            )

    def __call__(self, images: tf.Tensor, training: bool, seed: tf.Tensor | None = None):
        if training:
            images = self.reflect(images, seed)
        x = tf.cast(images, tf.float32) - self.mean
        if training and self._config["pca_std"] > 0:
            x += self.lighting_noise(tf.shape(x)[:-3], seed)[..., tf.newaxis, tf.newaxis, :]
        if self._config["input_scale"] != 1.0:
            x *= self._config["input_scale"]
        return x

    @staticmethod
    def reflect(images: tf.Tensor, seed: tf.Tensor | None = None) -> tf.Tensor:
        """Each image of `[..., H, W, C]` mirrored left-right with probability 1/2."""
        mirrored = reflection_mask(tf.shape(images)[:-3], seed)[
            ..., tf.newaxis, tf.newaxis, tf.newaxis
        ]
        return tf.where(mirrored, tf.reverse(images, axis=[-2]), images)

    @staticmethod
    def reflect_boxes(boxes: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
        """Normalized boxes `[..., 4]` mirrored exactly where `reflect(images, seed)` mirrors
        the images `[..., H, W, C]` of the same batch shape and seed.

        Raises:
            ValueError: without a seed (the images' draw could not be repeated).
        """
        if seed is None:
            raise ValueError("reflect_boxes needs the seed that reflect(images, seed) used")
        mirrored = reflection_mask(tf.shape(boxes)[:-1], seed)[..., tf.newaxis]
        boxes = tf.convert_to_tensor(boxes, tf.float32)
        return tf.where(mirrored, boxes_lib.reflect(boxes), boxes)

    def lighting_noise(self, batch_shape: tf.Tensor, seed: tf.Tensor | None = None) -> tf.Tensor:
        """One RGB offset per image, `[*batch_shape, 3]`, on the 0-255 scale (see module doc)."""
        shape = tf.concat([batch_shape, [3]], 0)
        std = self._config["pca_std"]
        if seed is None:
            alpha = tf.random.normal(shape, stddev=std)
        else:
            alpha = tf.random.stateless_normal(shape, seed, stddev=std)
        # V (a ⊙ l) for each image, written as a row-vector product: (a ⊙ l) V^T.
        return 255.0 * tf.linalg.matvec(self.eigenvectors, alpha * self.eigenvalues)

    def get_config(self) -> dict:
        """The keyword arguments of `make_normalizer` (saved as "preprocessing")."""
        return dict(self._config)

    @classmethod
    def from_config(cls, manifest: Manifest | None, config: dict) -> Normalizer:
        """Rebuilds the normalizer of a training run from its manifest and `get_config()`."""
        return make_normalizer(manifest, **config)


def reflection_mask(batch_shape: tf.Tensor, seed: tf.Tensor | None = None) -> tf.Tensor:
    """Which examples of a batch are mirrored, bool `batch_shape`: each with probability 1/2,
    a pure function of `seed` when given (else TensorFlow's global generator)."""
    if seed is None:
        return tf.random.uniform(batch_shape) < 0.5
    # A stream of its own, not the lighting noise's.
    fold = tf.random.experimental.stateless_fold_in(seed, 1)
    return tf.random.stateless_uniform(batch_shape, fold) < 0.5


def make_normalizer(
    manifest: Manifest | None = None,
    *,
    mean: str = "image",
    pca_std: float = PCA_STD,
    input_scale: float = 1.0,
) -> Normalizer:
    """Builds the batch normalizer of section 4.1 from the converter's statistics.

    Args:
        manifest: the training data's manifest (mean image, channel means, RGB eigenvectors).
            Without one, only `mean="channel"` (published ImageNet means) and `mean="none"`
            work, and the PCA noise uses the published ImageNet eigenvectors.
        mean: "image" (the paper: the mean image, central 227×227), "channel" or "none".
        pca_std: standard deviation of the lighting coefficients (0.1 in the paper; 0 = off).
        input_scale: multiplies the result (1.0 in the paper: inputs stay on the 0-255 scale).

    Raises:
        ValueError: an unknown `mean` or a negative `pca_std`.
        InputError: the statistics that `mean` needs are not in the manifest.
    """
    if mean not in MEAN_KINDS:
        raise ValueError(f"mean must be one of {MEAN_KINDS}; got {mean!r}")
    if pca_std < 0:
        raise ValueError(f"pca_std must be >= 0; got {pca_std}")
    where = manifest.path if manifest is not None else "no manifest was given"
    if mean == "image":
        image = manifest.mean_image() if manifest is not None else None
        if image is None:
            raise InputError(
                f'mean="image" needs the mean image of the training set ({where}); '
                f'convert the data with tools/build_imagenet_tfrecords.py or use mean="channel"'
            )
        if image.shape != (STORED_SIZE, STORED_SIZE, 3):
            raise InputError(
                f"the mean image of {where} has shape {image.shape}; expected "
                f"({STORED_SIZE}, {STORED_SIZE}, 3)"
            )
        start = (STORED_SIZE - IMAGE_SIZE) // 2  # the centre crop of eval_crops, offset 14
        mean_values = image[start : start + IMAGE_SIZE, start : start + IMAGE_SIZE]
    elif mean == "channel":
        mean_values = _channel_mean(manifest)
    else:
        mean_values = np.float32(0.0)
    eigen = manifest.eigen() if manifest is not None else None
    if eigen is None:
        eigenvalues, eigenvectors = np.array(IMAGENET_EIGENVALUES), np.array(IMAGENET_EIGENVECTORS)
    else:
        eigenvalues, eigenvectors = eigen[0] / 255.0**2, eigen[1]  # 0-255 covariance → [0, 1]
    return Normalizer(
        mean_values, eigenvalues, eigenvectors, mean=mean, pca_std=pca_std, input_scale=input_scale
    )


def _channel_mean(manifest: Manifest | None) -> np.ndarray:
    if manifest is None:
        return np.asarray(IMAGENET_CHANNEL_MEAN, np.float32)
    channel = manifest.channel_mean()
    if channel is not None:
        return channel
    image = manifest.mean_image()
    if image is not None:
        return image.mean(axis=(0, 1))
    return np.asarray(IMAGENET_CHANNEL_MEAN, np.float32)
