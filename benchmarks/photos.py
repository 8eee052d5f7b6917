"""Real images for the benchmarks: crops of scikit-learn's two sample photographs."""

from __future__ import annotations

import numpy as np


def real_images(count: int, size: int) -> np.ndarray:
    """`count` mean-subtracted size×size float32 crops, at different offsets, of the photographs."""
    from sklearn.datasets import load_sample_images

    photos = load_sample_images().images  # two 427×640 photographs
    crops = []
    for i in range(count):
        photo = photos[i % len(photos)]
        y = (i * 37) % (photo.shape[0] - size)
        x = (i * 53) % (photo.shape[1] - size)
        crops.append(photo[y : y + size, x : x + size])
    crops = np.stack(crops).astype(np.float32)
    return crops - crops.mean(axis=(0, 1, 2))
