"""Whole small labelled image sets in memory, at a network's input size (figure 1's CIFAR-10 size).

Figure 1 of the paper trains on CIFAR-10's 32×32 images, fifty thousand of which fit in memory;
its experiment (`alexnet_tf.relu_vs_tanh`) reads a set the same way, once, rather than through
the 2012 network's random-crop pipeline:

    data = load_split(data_dir, image_size=32)     # a converted set (its training split)
    data = bundled_set(image_size=32)              # no data: real images that ship in packages

`load_split` reads the converter's shards through the manifest and the record spec of
`alexnet_tf.data.examples`, and shrinks each stored 256×256 image to `image_size`² (antialiased).

`bundled_set` needs no files. Its ten classes are scikit-learn's handwritten digits, each 8×8 scan
drawn `copies` times at `image_size`² in a random ink and paper colour (as the demo's digits,
`demo_data`), on a random cut of one of the package photographs (`demo_data.sample_photographs`),
at a random position and size: colour images of 10 classes whose class is a shape, on cluttered
backgrounds, like CIFAR-10's, 8,985 of them with the default `copies=5`.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import tensorflow as tf

from alexnet_tf.data import examples as examples_lib
from alexnet_tf.data.manifest import load_manifest
from alexnet_tf.data.shard_checks import InputError, check_shards, input_errors

BUNDLED_COPIES = 5  # drawings of each of the 1,797 scans: 8,985 images (see bundled_set)
DIGIT_SIDE = (0.6, 1.0)  # side of the drawn digit, as a fraction of the image's
MIN_CONTRAST = 150.0  # least RGB distance of the pen from the background's mean colour
_READ_BLOCK = 256  # records parsed and decoded together


@dataclasses.dataclass(frozen=True)
class LabelledImages:
    """A whole labelled set: uint8 images [N, S, S, 3], int32 labels [N], the class names."""

    images: np.ndarray
    labels: np.ndarray
    class_names: list[str]
    source: str  # where the images came from, for reports

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


def load_split(data_dir: str, image_size: int, split: str = "train") -> LabelledImages:
    """All images of one split of a converted set, resized to `image_size`×`image_size`.

    Raises:
        ManifestError: no manifest, or no such split (the message names the file).
        InputError: a shard is missing or damaged, or a record is not a JPEG image.
    """
    manifest = load_manifest(data_dir)
    files = manifest.split(split).files
    if not files:
        raise InputError(f"{manifest.path}: the '{split}' split has no shards")
    check_shards(files)
    offset = manifest.label_offset

    def decode(encoded):
        image = tf.io.decode_jpeg(encoded, channels=3)
        small = tf.image.resize(image, [image_size, image_size], antialias=True)
        return tf.cast(tf.clip_by_value(tf.round(small), 0, 255), tf.uint8)

    def parse(block):
        example = examples_lib.from_features(
            tf.io.parse_example(block, examples_lib.FEATURES), offset
        )
        images = tf.map_fn(decode, example["encoded"], fn_output_signature=tf.uint8)
        return images, example["label"]

    records = tf.data.TFRecordDataset(files).batch(_READ_BLOCK).map(parse)
    images, labels = [], []
    with input_errors(files):
        for block_images, block_labels in records:
            images.append(block_images.numpy())
            labels.append(block_labels.numpy())
    labels = np.concatenate(labels) if labels else np.zeros([0], np.int32)
    bad = (labels < 0) | (labels >= manifest.num_classes)
    if bad.any():
        raise InputError(
            f"{manifest.path}: {int(bad.sum())} '{split}' records have labels outside "
            f"[0, {manifest.num_classes}) after label_offset {offset}"
        )
    images = np.concatenate(images) if images else np.zeros([0, image_size, image_size, 3])
    return LabelledImages(
        images.astype(np.uint8), labels.astype(np.int32), list(manifest.texts), data_dir
    )


def bundled_set(
    image_size: int = 32, *, copies: int = BUNDLED_COPIES, seed: int = 0
) -> LabelledImages:
    """Colour digits on photograph backgrounds, from images inside scikit-learn and scikit-image.

    Args:
        image_size: side of the square images.
        copies: drawings of each scan (each in its own colours, place and background). The
            default, 5, is for figure 1: its ReLU network reaches 25% training error after
            about the same number of updates on 3,594 images (`copies=2`, 5.7 epochs) as on
            8,985 (2.6), the tanh network after far more on the larger set (16.2 epochs, then
            10.6: 1,800 updates, then 3,000), so the ratio is 2.8 on the first, 4.1 on the
            second (CIFAR-10, the paper's set: 50,000; BUILD.md).
        seed: seeds the colours, places, backgrounds and the order of the images.
    """
    from PIL import Image
    from sklearn.datasets import load_digits

    from alexnet_tf.data import demo_data

    digits = load_digits()
    photos = [
        np.repeat(p[..., None], 3, axis=-1) if p.ndim == 2 else p
        for _, p in sorted(demo_data.sample_photographs().items())
    ]
    rng = np.random.default_rng(seed)
    images = np.empty([copies * len(digits.images), image_size, image_size, 3], np.uint8)
    labels = np.empty([len(images)], np.int32)
    n = 0
    for _ in range(copies):
        for scan, label in zip(digits.images, digits.target, strict=True):
            photo = photos[rng.integers(len(photos))]
            side = int(rng.integers(min(photo.shape[:2]) // 8, min(photo.shape[:2]) // 2))
            y = int(rng.integers(0, photo.shape[0] - side + 1))
            x = int(rng.integers(0, photo.shape[1] - side + 1))
            background = Image.fromarray(photo[y : y + side, x : x + side])
            canvas = np.asarray(
                background.resize((image_size, image_size), Image.BILINEAR), np.float32
            )
            size = int(round(image_size * rng.uniform(*DIGIT_SIDE)))
            ink = Image.fromarray((scan * (255 / 16)).astype(np.uint8)).resize(
                (size, size), Image.BICUBIC
            )
            alpha = np.zeros([image_size, image_size, 1], np.float32)
            top, left = (int(v) for v in rng.integers(0, image_size - size + 1, size=2))
            alpha[top : top + size, left : left + size, 0] = np.asarray(ink, np.float32) / 255
            pen = rng.uniform(0, 255, size=3)
            paper = canvas.mean(axis=(0, 1))
            if np.linalg.norm(pen - paper) < MIN_CONTRAST:  # a dark pen on light, or the reverse
                pen = np.where(paper > 127, rng.uniform(0, 64, 3), rng.uniform(192, 255, 3))
            images[n] = np.clip(canvas * (1 - alpha) + pen * alpha, 0, 255).round()
            labels[n] = label
            n += 1
    order = rng.permutation(n)
    names = [demo_data.digit_text(d) for d in range(10)]
    return LabelledImages(images[order], labels[order], names, "bundled digits on photographs")
