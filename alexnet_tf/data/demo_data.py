"""Small real image sets in the ILSVRC-2012 layout, so the whole system runs without ImageNet.

The paper trains on ILSVRC-2012 (section 2). Nobody can download that in a test, so this module
writes a tree with the same layout from real labelled images that ship inside PyPI packages:

    root/train/<wnid>/<wnid>_<i>.JPEG
    root/val/ILSVRC2012_val_<8 digits>.JPEG
    root/val_labels.txt            # one wnid per line, in sorted val file-name order

Source "digits" is scikit-learn's handwritten digits (1,797 real 8×8 scans, 10 classes), each
upscaled to `image_size` and drawn in a per-image ink and paper colour so the RGB statistics have
three real directions. Its classes use made-up WordNet-style ids `d0000000` … `d0000009` (a `d`
prefix, so they cannot collide with real `n` noun synsets); their words ("digit 0, zero", …) ship
in `alexnet_tf/data/demo_synsets.txt`, so the converter fills `image/class/text` by itself.

`sample_photographs()` returns real photographs bundled with scikit-learn and scikit-image (no
network: only images inside the wheels), used by the converter tests to plant bad files.

    python tools/make_demo_dataset.py --output_dir=/tmp/demo
"""

from __future__ import annotations

import io
import os
import re
import shutil

import numpy as np

DIGIT_SYNSETS = [f"d{digit:07d}" for digit in range(10)]
DIGIT_WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
SOURCES = ("digits",)

# Bundled with scikit-image (inside the wheel, no pooch download). camera is grayscale.
_SKIMAGE_PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "hubble_deep_field", "camera")


class DemoDataError(ValueError):
    """A bad argument to the demo writer; the message names it."""


def digit_text(digit: int) -> str:
    """The class text of the demo's digit classes, e.g. 'digit 3, three'."""
    return f"digit {digit}, {DIGIT_WORDS[digit]}"


def sample_photographs() -> dict[str, np.ndarray]:
    """Real photographs that ship inside scikit-learn and scikit-image, as uint8 arrays.

    Returns:
        name -> array (H, W, 3) RGB, or (H, W) for the grayscale `camera`.
    """
    from skimage import data as skdata
    from sklearn.datasets import load_sample_images

    photos = {}
    sample = load_sample_images()
    for filename, image in zip(sample.filenames, sample.images, strict=True):
        photos[os.path.splitext(os.path.basename(filename))[0]] = np.asarray(image, np.uint8)
    for name in _SKIMAGE_PHOTOS:
        photos[name] = np.asarray(getattr(skdata, name)(), np.uint8)
    return photos


def encode_jpeg(image: np.ndarray, quality: int = 90, mode: str | None = None) -> bytes:
    """JPEG bytes of a uint8 array ((H, W) grayscale or (H, W, 3) RGB); `mode='CMYK'` converts."""
    from PIL import Image

    pil = Image.fromarray(image)
    if mode:
        pil = pil.convert(mode)
    buffer = io.BytesIO()
    pil.save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def _digit_image(pixels: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """An 8×8 digit scan (0-16, 16 = ink) drawn at size×size in a random ink and paper colour."""
    from PIL import Image

    ink = pixels.astype(np.float32) / 16.0
    big = Image.fromarray((ink * 255).astype(np.uint8)).resize((size, size), Image.BICUBIC)
    alpha = np.asarray(big, np.float32)[..., None] / 255.0
    paper = rng.uniform(170, 255, size=3)
    pen = rng.uniform(0, 90, size=3)
    return np.clip(paper * (1 - alpha) + pen * alpha, 0, 255).round().astype(np.uint8)


def write_demo_tree(
    root: str,
    *,
    source: str = "digits",
    train_per_class: int = 100,
    val_per_class: int = 20,
    image_size: int = 64,
    seed: int = 0,
) -> dict:
    """Writes a small labelled tree in the ILSVRC-2012 layout.

    Args:
        root: directory to write into (created); `train/`, `val/` and `val_labels.txt` go there.
        source: "digits" (scikit-learn's handwritten digits, 10 classes).
        train_per_class: training images per class.
        val_per_class: validation images per class (disjoint from the training images).
        image_size: side of the square JPEGs written.
        seed: seeds which scans go to which split, their colours and the val file order.

    Returns:
        A dict with train_dir, val_dir, val_labels (paths), synsets and texts (the classes in
        label order), num_train and num_val.

    Raises:
        DemoDataError: for an unknown source or counts the source can't supply.
    """
    if source not in SOURCES:
        raise DemoDataError(f"unknown demo source {source!r}; expected one of {SOURCES}")
    if train_per_class < 1 or val_per_class < 0 or image_size < 8:
        raise DemoDataError(
            f"need train_per_class >= 1, val_per_class >= 0 and image_size >= 8; got "
            f"{train_per_class}, {val_per_class}, {image_size}"
        )
    from sklearn.datasets import load_digits

    digits = load_digits()
    rng = np.random.default_rng(seed)
    train_dir, val_dir = os.path.join(root, "train"), os.path.join(root, "val")
    _clear_old_tree(train_dir, val_dir)
    os.makedirs(val_dir, exist_ok=True)
    val_images = []  # (digit, pixels)
    num_train = 0
    for digit, synset in enumerate(DIGIT_SYNSETS):
        indices = rng.permutation(np.flatnonzero(digits.target == digit))
        if len(indices) < train_per_class + val_per_class:
            raise DemoDataError(
                f"digit {digit} has {len(indices)} scans; train_per_class + val_per_class = "
                f"{train_per_class + val_per_class} is too many"
            )
        class_dir = os.path.join(train_dir, synset)
        os.makedirs(class_dir, exist_ok=True)
        for i, index in enumerate(indices[:train_per_class]):
            image = _digit_image(digits.images[index], image_size, rng)
            _write(os.path.join(class_dir, f"{synset}_{i}.JPEG"), encode_jpeg(image))
            num_train += 1
        val_images += [(digit, digits.images[i]) for i in indices[train_per_class:][:val_per_class]]

    order = rng.permutation(len(val_images))
    names = [f"ILSVRC2012_val_{n + 1:08d}.JPEG" for n in range(len(val_images))]
    labels = [""] * len(val_images)
    for name_index, image_index in enumerate(order):
        digit, pixels = val_images[image_index]
        image = _digit_image(pixels, image_size, rng)
        _write(os.path.join(val_dir, names[name_index]), encode_jpeg(image))
        labels[name_index] = DIGIT_SYNSETS[digit]
    val_labels = os.path.join(root, "val_labels.txt")
    _write(val_labels, "".join(f"{label}\n" for label in labels).encode())
    return {
        "train_dir": train_dir,
        "val_dir": val_dir,
        "val_labels": val_labels,
        "synsets": list(DIGIT_SYNSETS),
        "texts": [digit_text(d) for d in range(10)],
        "num_train": num_train,
        "num_val": len(val_images),
    }


def _clear_old_tree(train_dir: str, val_dir: str) -> None:
    """Removes an earlier demo tree (so no stale image stays); refuses to touch anything else."""
    expected = {
        train_dir: lambda name: name in DIGIT_SYNSETS,
        val_dir: lambda name: re.fullmatch(r"ILSVRC2012_val_\d{8}\.JPEG", name) is not None,
    }
    for folder, ours in expected.items():
        if not os.path.isdir(folder):
            continue
        strangers = [name for name in os.listdir(folder) if not ours(name)]
        if strangers:
            raise DemoDataError(
                f"{folder} already holds files that are not a demo tree (e.g. {strangers[0]!r}); "
                f"choose another --output_dir"
            )
        shutil.rmtree(folder)


def _write(path: str, data: bytes) -> None:
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)
