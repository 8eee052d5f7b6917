"""A second boxed set for localization (ILSVRC-2012 task 2), of another kind than the digits.

Ten objects cut from scikit-image's bundled photographs (the astronaut, Chelsea the cat, the
coffee cup, the rocket, ...), each instance a random cut of 70-100% of its object, maybe
mirrored and lightened or darkened, pasted at a random place and size (the square root of its
area a third to two thirds of the canvas height, its own aspect kept) on a random window of
scikit-learn's two sample photographs (china, flower). Its boxes are written as ILSVRC annotation
XMLs, in the layout of the boxed digits (`demo_data.write_demo_tree(boxes=True)`):

    root/train/<wnid>/<wnid>_<i>.JPEG, root/val/ILSVRC2012_val_<8 digits>.JPEG,
    root/val_labels.txt, root/Annotation/<wnid>/..., root/Annotation/val/...

The classes are made-up ids `o0000000` … `o0000009` (an `o` prefix, apart from real `n` synsets);
their words ship in `alexnet_tf/data/demo_synsets.txt`.

    python tools/make_demo_dataset.py --output_dir=/tmp/objects --source=objects
"""

from __future__ import annotations

import os

import numpy as np

from alexnet_tf.data import demo_data
from alexnet_tf.files import atomic

# scikit-image image, and the (top, left, bottom, right) fraction of it that holds the object.
OBJECTS = {
    "astronaut": ("astronaut", (0.0, 0.2, 0.6, 0.75)),
    "cat": ("chelsea", (0.05, 0.25, 0.95, 0.85)),
    "coffee cup": ("coffee", (0.0, 0.2, 0.9, 0.85)),
    "rocket": ("rocket", (0.05, 0.4, 0.95, 0.62)),
    "cameraman": ("camera", (0.05, 0.2, 0.9, 0.75)),
    "coins": ("coins", (0.0, 0.0, 1.0, 1.0)),
    "horse": ("horse", (0.0, 0.0, 1.0, 1.0)),
    "moon": ("moon", (0.0, 0.0, 1.0, 1.0)),
    "clock": ("clock", (0.0, 0.0, 1.0, 1.0)),
    "page": ("page", (0.0, 0.0, 1.0, 1.0)),
}
OBJECT_SYNSETS = [f"o{i:07d}" for i in range(len(OBJECTS))]
OBJECT_SIDE = (1 / 3, 2 / 3)  # square root of the object's area, as a fraction of the height
CUT = (0.7, 1.0)  # each instance: a random cut of this fraction of the object's height and width


def object_images() -> list[np.ndarray]:
    """The ten objects as uint8 RGB arrays, in OBJECTS (label) order."""
    from skimage import data as skdata

    images = []
    for source, (top, left, bottom, right) in OBJECTS.values():
        image = np.asarray(getattr(skdata, source)())
        if image.dtype == bool:  # horse: a silhouette
            image = np.where(image, 255, 40)
        image = image.astype(np.uint8)
        if image.ndim == 2:
            image = np.stack([image] * 3, -1)
        h, w = image.shape[:2]
        images.append(image[round(top * h) : round(bottom * h), round(left * w) : round(right * w)])
    return images


def write_object_tree(
    root: str,
    *,
    train_per_class: int = 100,
    val_per_class: int = 20,
    image_size: int = 64,
    seed: int = 0,
) -> dict:
    """Writes the pasted-objects boxed set (module docstring) under `root`.

    Args:
        root: created; train/, val/, val_labels.txt and Annotation/ go there.
        train_per_class, val_per_class: scenes per class (any number: each is a new cut).
        image_size: the scenes' height (their width is 1.25 times it).
        seed: seeds the cuts, places, sizes, backgrounds and the validation order.

    Returns:
        The dict of `demo_data.write_demo_tree(boxes=True)`: train_dir, val_dir, val_labels,
        bbox_dir, synsets, texts, num_train, num_val.

    Raises:
        demo_data.DemoDataError: a bad count or size.
    """
    if train_per_class < 1 or val_per_class < 0 or image_size < 8:
        raise demo_data.DemoDataError(
            f"need train_per_class >= 1, val_per_class >= 0 and image_size >= 8; got "
            f"{train_per_class}, {val_per_class}, {image_size}"
        )
    from sklearn.datasets import load_sample_images

    sample = load_sample_images()
    backgrounds = {
        os.path.basename(f): np.asarray(i, np.uint8)
        for f, i in zip(sample.filenames, sample.images, strict=True)
    }
    rng = np.random.default_rng(seed)
    train_dir, val_dir = os.path.join(root, "train"), os.path.join(root, "val")
    bbox_dir = os.path.join(root, demo_data.ANNOTATION_DIR)
    demo_data.clear_old_tree(train_dir, val_dir, bbox_dir, OBJECT_SYNSETS)
    scenes = demo_data._SceneWriter(image_size, rng, bbox_dir, backgrounds, OBJECT_SIDE)
    objects = object_images()

    def write(path, label):
        scenes.paste(path, _instance(objects[label], scenes, rng), OBJECT_SYNSETS[label])

    for label, synset in enumerate(OBJECT_SYNSETS):
        os.makedirs(os.path.join(train_dir, synset), exist_ok=True)
        for i in range(train_per_class):
            write(os.path.join(train_dir, synset, f"{synset}_{i}.JPEG"), label)
    os.makedirs(val_dir, exist_ok=True)
    labels = rng.permutation(np.repeat(np.arange(len(OBJECTS)), val_per_class))
    for n, label in enumerate(labels):
        write(os.path.join(val_dir, f"ILSVRC2012_val_{n + 1:08d}.JPEG"), label)
    val_labels = os.path.join(root, "val_labels.txt")
    atomic.write_text(val_labels, "".join(f"{OBJECT_SYNSETS[label]}\n" for label in labels))
    return {
        "train_dir": train_dir,
        "val_dir": val_dir,
        "val_labels": val_labels,
        "bbox_dir": bbox_dir,
        "synsets": list(OBJECT_SYNSETS),
        "texts": list(OBJECTS),
        "num_train": train_per_class * len(OBJECTS),
        "num_val": len(labels),
    }


def _instance(image: np.ndarray, scenes, rng: np.random.Generator) -> np.ndarray:
    """A random cut of `image`, maybe mirrored, lighter or darker, at the scene's next size."""
    from PIL import Image

    h, w = image.shape[:2]
    ch, cw = (round(rng.uniform(*CUT) * n) for n in (h, w))
    top, left = rng.integers(h - ch + 1), rng.integers(w - cw + 1)
    cut = image[top : top + ch, left : left + cw]
    if rng.random() < 0.5:
        cut = cut[:, ::-1]
    size = scenes.object_size(cw / ch)
    resized = np.asarray(Image.fromarray(np.ascontiguousarray(cut)).resize(size[::-1]), np.float32)
    return np.clip(resized * rng.uniform(0.7, 1.3), 0, 255).astype(np.uint8)
