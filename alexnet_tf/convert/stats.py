"""The training-set statistics the paper needs, gathered during the conversion pass.

* Section 2: "we did not pre-process the images in any other way, except for subtracting the mean
  activity over the training set from each pixel" -> the 256×256×3 mean image.
* Section 4.1: "we perform PCA on the set of RGB pixel values throughout the ImageNet training
  set" -> the 3×3 RGB covariance and its eigenvalues/eigenvectors (0-255 scale).

Each worker sums in float64 over the images of its shard (one add per image for the mean, one
65536×3 by 3×65536 product for the second moments); the sums of all shards are merged at the end,
so the statistics cost no second pass over the data.
"""

from __future__ import annotations

import os

import numpy as np

from alexnet_tf.convert.images import STATS_SIZE
from alexnet_tf.files import atomic


class Accumulator:
    """Running float64 sums over 256×256×3 uint8 images."""

    def __init__(self) -> None:
        self.num_images = 0
        self.image_sum = np.zeros((STATS_SIZE, STATS_SIZE, 3), np.float64)
        self.outer_sum = np.zeros((3, 3), np.float64)

    def add(self, pixels: np.ndarray) -> None:
        self.num_images += 1
        self.image_sum += pixels  # the per-channel sums follow from it at the end
        flat = pixels.reshape(-1, 3).astype(np.float64)
        self.outer_sum += flat.T @ flat  # one BLAS call; a strided .sum(axis=0) costs twice that

    def merge(self, other: Accumulator) -> None:
        self.num_images += other.num_images
        self.image_sum += other.image_sum
        self.outer_sum += other.outer_sum

    def save(self, path: str) -> None:
        """Writes the sums to `path` (.npz) atomically."""
        with atomic.temporary_path(path, suffix=".npz") as tmp:  # np.savez adds .npz otherwise
            np.savez(
                tmp,
                num_images=self.num_images,
                image_sum=self.image_sum,
                outer_sum=self.outer_sum,
            )

    @classmethod
    def load(cls, path: str) -> Accumulator:
        with np.load(path) as sums:
            acc = cls()
            acc.num_images = int(sums["num_images"])
            acc.image_sum = sums["image_sum"]
            acc.outer_sum = sums["outer_sum"]
        return acc

    def finish(self, output_dir: str, mean_image_name: str = "mean_image.npy") -> dict:
        """Writes the mean image beside the manifest; returns the manifest's `statistics`.

        Raises:
            ValueError: if no image was added.
        """
        if self.num_images == 0:
            raise ValueError("no training image was converted, so there are no statistics")
        num_pixels = self.num_images * STATS_SIZE * STATS_SIZE
        mean = self.image_sum.sum(axis=(0, 1)) / num_pixels
        covariance = self.outer_sum / num_pixels - np.outer(mean, mean)
        eigenvalues, eigenvectors = np.linalg.eigh(covariance)
        order = np.argsort(eigenvalues)[::-1]
        eigenvalues, eigenvectors = eigenvalues[order], eigenvectors[:, order]
        # eigh's signs are arbitrary; fix them so reruns give the same manifest.
        eigenvectors = eigenvectors * np.where(eigenvectors.sum(axis=0) < 0, -1.0, 1.0)
        path = os.path.join(output_dir, mean_image_name)
        with atomic.temporary_path(path, suffix=".npy") as tmp:  # np.save adds .npy otherwise
            np.save(tmp, (self.image_sum / self.num_images).astype(np.float32))
        return {
            "mean_image": mean_image_name,
            "channel_mean": mean.tolist(),
            "rgb_covariance": covariance.tolist(),
            "eigenvalues": eigenvalues.tolist(),
            "eigenvectors": eigenvectors.tolist(),  # column i belongs to eigenvalue i
            "num_images": self.num_images,
        }
