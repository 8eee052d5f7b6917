"""Small real labelled image sets in the ILSVRC-2012 folder layout, for recipe benchmarks.

`configs/demo.cfg` must hold on data it was not tuned to. These builders write small sets from
images that ship inside PyPI packages, in the layout the converter reads:

    root/train/<wnid>/<wnid>_<i>.JPEG, root/val/ILSVRC2012_val_<8 digits>.JPEG,
    root/val_labels.txt, root/synsets.txt ('wnid words' lines: label order and class texts)

- "digits": scikit-learn's handwritten digits (via `demo_data.write_demo_tree`), optionally drawn
  in grey only (`grayscale=True`), like a scanned grayscale set.
- "photos": which of the bundled photographs (scikit-learn's china and flower, scikit-image's
  astronaut, coffee, chelsea, rocket, hubble_deep_field, camera) a random crop came from: colour
  and texture, not shape, tell the classes apart.
- "textures": the same task in grey only, over ten of scikit-image's grayscale images (brick,
  grass, gravel, camera, coins, moon, page, text, clock, cell): a grayscale set of ten classes
  whose pixels a linear model reads poorly, so the network must learn local structure.

    python benchmarks/small_data.py      # trains configs/demo.cfg on each, beside a linear model
"""

from __future__ import annotations

import os

import numpy as np

from alexnet_tf.data import demo_data
from alexnet_tf.files import atomic

PHOTO_PREFIX = "p"  # made-up wnids p0000000 … (no clash with ImageNet's n…)
TEXTURE_PREFIX = "t"
TEXTURES = ("brick", "grass", "gravel", "camera", "coins", "moon", "page", "text", "clock", "cell")
SETS = ("digits", "photos", "textures")


def photo_classes() -> list[tuple[str, str, np.ndarray]]:
    """(wnid, text, RGB uint8 photograph) per class, in label order."""
    photos = demo_data.sample_photographs()
    classes = []
    for i, name in enumerate(sorted(photos)):
        image = photos[name]
        if image.ndim == 2:  # scikit-image's camera is grayscale
            image = np.repeat(image[..., None], 3, axis=-1)
        classes.append((f"{PHOTO_PREFIX}{i:07d}", f"photograph {name}", image))
    return classes


def texture_classes() -> list[tuple[str, str, np.ndarray]]:
    """(wnid, text, grayscale uint8 image) per class, in label order (scikit-image's data)."""
    from skimage import data as skdata

    return [
        (
            f"{TEXTURE_PREFIX}{i:07d}",
            f"texture {name}",
            np.asarray(getattr(skdata, name)(), np.uint8),
        )
        for i, name in enumerate(TEXTURES)
    ]


def random_crop(photo: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """A square crop of 1/8 to 1/3 of the photograph's shorter side, resized to size×size."""
    from PIL import Image

    short = min(photo.shape[:2])
    side = int(rng.integers(short // 8, short // 3 + 1))
    y = int(rng.integers(0, photo.shape[0] - side + 1))
    x = int(rng.integers(0, photo.shape[1] - side + 1))
    crop = Image.fromarray(photo[y : y + side, x : x + side])
    return np.asarray(crop.resize((size, size), Image.BILINEAR), np.uint8)


def write_photo_tree(
    root: str,
    *,
    train_per_class: int = 100,
    val_per_class: int = 25,
    image_size: int = 64,
    textures: bool = False,
    seed: int = 0,
) -> dict:
    """Writes random crops of the bundled photographs, one class per photograph.

    Training and validation crops are drawn independently (they may overlap in the photograph,
    as two photographs of one object do). `textures` draws from `texture_classes()` instead, in
    grey.

    Returns:
        The same dict as `demo_data.write_demo_tree`, plus labels_file.
    """
    rng = np.random.default_rng(seed)
    classes = texture_classes() if textures else photo_classes()
    val = []
    for wnid, _, photo in classes:
        folder = os.path.join(root, "train", wnid)
        for i in range(train_per_class):
            _write_jpeg(
                os.path.join(folder, f"{wnid}_{i}.JPEG"), random_crop(photo, image_size, rng)
            )
        val += [(wnid, random_crop(photo, image_size, rng)) for _ in range(val_per_class)]
    return _finish(root, classes, val, rng, train_per_class)


def write_digit_tree(
    root: str,
    *,
    train_per_class: int = 100,
    val_per_class: int = 30,
    grayscale: bool = False,
    seed: int = 0,
) -> dict:
    """The demo's digits (`demo_data.write_demo_tree`); `grayscale` redraws them in grey.

    Returns:
        The same dict as `demo_data.write_demo_tree`, plus labels_file.
    """
    info = demo_data.write_demo_tree(
        root, train_per_class=train_per_class, val_per_class=val_per_class, seed=seed
    )
    if grayscale:
        from PIL import Image

        for folder, _, names in os.walk(root):
            for name in names:
                if name.endswith(".JPEG"):
                    path = os.path.join(folder, name)
                    grey = np.asarray(Image.open(path).convert("L"))
                    _write_jpeg(path, grey)
    info["labels_file"] = _write_synsets(root, info["synsets"], info["texts"])
    return info


def _finish(root, classes, val, rng, train_per_class) -> dict:
    order = rng.permutation(len(val))
    labels = []
    for n, index in enumerate(order):
        wnid, image = val[index]
        _write_jpeg(os.path.join(root, "val", f"ILSVRC2012_val_{n + 1:08d}.JPEG"), image)
        labels.append(wnid)
    val_labels = atomic.write_text(os.path.join(root, "val_labels.txt"), "\n".join(labels) + "\n")
    synsets, texts = [c[0] for c in classes], [c[1] for c in classes]
    return {
        "train_dir": os.path.join(root, "train"),
        "val_dir": os.path.join(root, "val"),
        "val_labels": val_labels,
        "labels_file": _write_synsets(root, synsets, texts),
        "synsets": synsets,
        "texts": texts,
        "num_train": train_per_class * len(classes),
        "num_val": len(val),
    }


def _write_synsets(root: str, synsets: list[str], texts: list[str]) -> str:
    lines = "".join(f"{s} {t}\n" for s, t in zip(synsets, texts, strict=True))
    return atomic.write_text(os.path.join(root, "synsets.txt"), lines)


def _write_jpeg(path: str, image: np.ndarray) -> None:
    atomic.write_bytes(path, demo_data.encode_jpeg(image))


def load_tree(info: dict, size: int = 32) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The tree's images as float pixels (n, size·size·channels) and labels, per split.

    The same JPEGs the network is trained on, shrunk to size×size (a linear model on 64×64×3
    pixels only overfits more).
    """
    from PIL import Image

    label_of = {s: i for i, s in enumerate(info["synsets"])}

    def pixels(path):
        image = Image.open(path).convert("RGB").resize((size, size), Image.BILINEAR)
        return np.asarray(image, np.float32).ravel()

    train = [
        (pixels(os.path.join(info["train_dir"], s, name)), label_of[s])
        for s in info["synsets"]
        for name in sorted(os.listdir(os.path.join(info["train_dir"], s)))
    ]
    with open(info["val_labels"], encoding="utf-8") as f:
        wnids = f.read().split()
    names = sorted(os.listdir(info["val_dir"]))
    val = [(pixels(os.path.join(info["val_dir"], n)), label_of[w]) for n, w in zip(names, wnids)]
    return {
        split: (np.stack([p for p, _ in rows]), np.asarray([y for _, y in rows]))
        for split, rows in (("train", train), ("validation", val))
    }
