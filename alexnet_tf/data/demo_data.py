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

With `boxes=True` (localization, ILSVRC-2012 task 2) every image is a scene instead: the digit,
on its square of paper, drawn at a random position and size (a side of 30-80% of the canvas
height) on a 5:4 canvas cut from one of the package photographs, and its box is written as an
ILSVRC annotation XML, the layout `--bbox_dir` reads:

    root/Annotation/<wnid>/<wnid>_<i>.xml               # training boxes
    root/Annotation/val/ILSVRC2012_val_<8 digits>.xml   # validation boxes

The canvas is wider than high, so the converter's central square cuts some digits, as ImageNet's
central crops cut some objects.

    python tools/make_demo_dataset.py --output_dir=/tmp/demo [--boxes]
"""

from __future__ import annotations

import io
import os
import re
import shutil
from collections.abc import Sequence

import numpy as np

from alexnet_tf.files import atomic

DIGIT_SYNSETS = [f"d{digit:07d}" for digit in range(10)]
DIGIT_WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
SOURCES = ("digits",)

# Bundled with scikit-image (inside the wheel, no pooch download). camera is grayscale.
_SKIMAGE_PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "hubble_deep_field", "camera")
CANVAS_ASPECT = 1.25  # width / height of a boxed scene
OBJECT_SIDE = (0.3, 0.8)  # side of the digit's paper square, as a fraction of the canvas height
ANNOTATION_DIR = "Annotation"


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
    boxes: bool = False,
) -> dict:
    """Writes a small labelled tree in the ILSVRC-2012 layout.

    Args:
        root: directory to write into (created); `train/`, `val/` and `val_labels.txt` go there.
        source: "digits" (scikit-learn's handwritten digits, 10 classes).
        train_per_class: training images per class.
        val_per_class: validation images per class (disjoint from the training images).
        image_size: side of the square JPEGs written (with `boxes`: the scenes' height).
        seed: seeds which scans go to which split, their colours and the val file order.
        boxes: write scenes with ILSVRC annotation XMLs (module docstring) instead of bare digits.

    Returns:
        A dict with train_dir, val_dir, val_labels (paths), synsets and texts (the classes in
        label order), num_train and num_val; with `boxes` also bbox_dir (the Annotation folder).

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
    bbox_dir = os.path.join(root, ANNOTATION_DIR)
    clear_old_tree(train_dir, val_dir, bbox_dir)
    os.makedirs(val_dir, exist_ok=True)
    # The scenes draw from a generator of their own: the scans and colours stay those of the
    # plain tree with the same seed.
    scene = _SceneWriter(image_size, np.random.default_rng([seed, 1]), bbox_dir) if boxes else None

    def write_image(path, pixels, synset):
        if scene is None:
            atomic.write_bytes(path, encode_jpeg(_digit_image(pixels, image_size, rng)))
        else:
            scene.write(path, pixels, synset, rng)

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
            write_image(os.path.join(class_dir, f"{synset}_{i}.JPEG"), digits.images[index], synset)
            num_train += 1
        val_images += [(digit, digits.images[i]) for i in indices[train_per_class:][:val_per_class]]

    order = rng.permutation(len(val_images))
    names = [f"ILSVRC2012_val_{n + 1:08d}.JPEG" for n in range(len(val_images))]
    labels = [""] * len(val_images)
    for name_index, image_index in enumerate(order):
        digit, pixels = val_images[image_index]
        write_image(os.path.join(val_dir, names[name_index]), pixels, DIGIT_SYNSETS[digit])
        labels[name_index] = DIGIT_SYNSETS[digit]
    val_labels = os.path.join(root, "val_labels.txt")
    atomic.write_text(val_labels, "".join(f"{label}\n" for label in labels))
    extra = {"bbox_dir": bbox_dir} if boxes else {}
    return {
        **extra,
        "train_dir": train_dir,
        "val_dir": val_dir,
        "val_labels": val_labels,
        "synsets": list(DIGIT_SYNSETS),
        "texts": [digit_text(d) for d in range(10)],
        "num_train": num_train,
        "num_val": len(val_images),
    }


class _SceneWriter:
    """Writes boxed scenes: an object (a digit on its paper square, or a cut of a photograph)
    pasted at a random place and size on a random window of a real photograph."""

    def __init__(
        self,
        height: int,
        rng: np.random.Generator,
        bbox_dir: str,
        backgrounds: dict[str, np.ndarray] | None = None,
        object_side: tuple[float, float] = OBJECT_SIDE,
    ):
        self.height, self.width = height, round(height * CANVAS_ASPECT)
        self.rng, self.bbox_dir, self.object_side = rng, bbox_dir, object_side
        photos = sample_photographs() if backgrounds is None else backgrounds
        self.backgrounds = [
            np.stack([p] * 3, -1) if p.ndim == 2 else p for _, p in sorted(photos.items())
        ]

    def _background(self) -> np.ndarray:
        from PIL import Image

        photo = self.backgrounds[self.rng.integers(len(self.backgrounds))]
        h, w = photo.shape[:2]
        # A random window of the canvas' aspect, at least half the photo's height.
        ch = int(self.rng.uniform(0.5, 1.0) * min(h, w / CANVAS_ASPECT))
        cw = round(ch * CANVAS_ASPECT)
        top, left = self.rng.integers(h - ch + 1), self.rng.integers(w - cw + 1)
        window = Image.fromarray(photo[top : top + ch, left : left + cw])
        return np.asarray(window.resize((self.width, self.height), Image.BILINEAR))

    def object_size(self, aspect: float = 1.0) -> tuple[int, int]:
        """(height, width) of the next object of `aspect` (width / height): the square root of
        its area is a random fraction (`object_side`) of the canvas height, and it fits."""
        side = self.rng.uniform(*self.object_side) * self.height
        h, w = side / np.sqrt(aspect), side * np.sqrt(aspect)
        shrink = min(1.0, self.height / h, self.width / w)
        return max(8, round(h * shrink)), max(8, round(w * shrink))

    def write(self, path: str, pixels: np.ndarray, synset: str, rng: np.random.Generator) -> None:
        """Writes the scene of an 8×8 digit scan at `path` and its annotation XML."""
        side = self.object_size()[0]
        self.paste(path, _digit_image(pixels, side, rng), synset)

    def paste(self, path: str, image: np.ndarray, synset: str) -> None:
        """Writes `image` (uint8 RGB) pasted on a background at `path`, and its annotation XML."""
        canvas = self._background().copy()
        h, w = image.shape[:2]
        top = int(self.rng.integers(self.height - h + 1))
        left = int(self.rng.integers(self.width - w + 1))
        canvas[top : top + h, left : left + w] = image
        atomic.write_bytes(path, encode_jpeg(canvas))
        name = os.path.basename(path)
        folder = "val" if name.startswith("ILSVRC2012_val_") else synset
        xml = annotation_xml(name, self.width, self.height, synset, (left, top, left + w, top + h))
        stem = os.path.splitext(name)[0]
        atomic.write_text(os.path.join(self.bbox_dir, folder, f"{stem}.xml"), xml)


def annotation_xml(filename: str, width: int, height: int, synset: str, box) -> str:
    """An ILSVRC (PASCAL VOC) annotation of one object; box is (xmin, ymin, xmax, ymax) pixels."""
    xmin, ymin, xmax, ymax = box
    return (
        f"<annotation><filename>{os.path.splitext(filename)[0]}</filename><size>"
        f"<width>{width}</width><height>{height}</height><depth>3</depth></size><object>"
        f"<name>{synset}</name><bndbox><xmin>{xmin}</xmin><ymin>{ymin}</ymin>"
        f"<xmax>{xmax}</xmax><ymax>{ymax}</ymax></bndbox></object></annotation>\n"
    )


def clear_old_tree(
    train_dir: str, val_dir: str, bbox_dir: str, synsets: Sequence[str] = DIGIT_SYNSETS
) -> None:
    """Removes an earlier demo tree of `synsets` (so no stale image stays); refuses to touch
    anything else."""
    expected = {
        train_dir: lambda name: name in synsets,
        val_dir: lambda name: re.fullmatch(r"ILSVRC2012_val_\d{8}\.JPEG", name) is not None,
        bbox_dir: lambda name: name in synsets or name == "val",
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
