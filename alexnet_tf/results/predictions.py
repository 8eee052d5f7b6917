r"""Labels for new images: a trained network's top-k classes (and boxes) for image files.

Each image is prepared exactly as `alexnet_tf.evaluate` prepares a validation record (section 2:
central square, shorter side 256; section 4.1: the 227×227 centre patch, or the ten patches with
their softmax averaged), by the same functions of `data/crops.py`: a JPEG goes through
`crops.eval_crops` itself; another format (PNG, GIF, BMP) is decoded first and cut by
`crops.stored_image` and `crops.patches`. The top-k order is evaluate's tie rule
(`metrics.top_k_classes`), and with the box head each guess's box is mapped back into the
image's own pixels as evaluate maps it (`evaluation.average_localizations`).

Images stream through a tf.data pipeline in batches, and each row is written as soon as its batch
is done, so memory does not grow with the number of images. A file that can't be read or is not
an image gets a row whose `error` says why; it never stops the run.

    python -m alexnet_tf.predict --model=runs/mine photo.jpg holiday/ --output=labels.csv
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import json
import os
import re
from collections.abc import Callable, Iterator, Sequence

import numpy as np
import tensorflow as tf

from alexnet_tf.data import crops
from alexnet_tf.files import atomic
from alexnet_tf.model import IMAGE_SIZE
from alexnet_tf.results import evaluation, metrics
from alexnet_tf.results.trained_models import ModelSource, load_source

OUTPUT_FORMATS = (".csv", ".jsonl")
BOX_FIELDS = ("ymin", "xmin", "ymax", "xmax")  # pixels of the image as found
_JPEG_MAGIC = b"\xff\xd8\xff"


class PredictError(ValueError):
    """Nothing can be predicted (no image path, a bad --output); the message names it."""


@dataclasses.dataclass
class Prediction:
    """One image's row: `top_k` best first; `boxes[i]` is the box of `top_k[i]`'s class."""

    image: str  # the path as found
    top_k: list[dict]  # {"class": wnid or folder name, "text": ..., "probability": ...}
    boxes: list[dict] | None = None  # {"ymin", "xmin", "ymax", "xmax"} with the box head
    error: str | None = None  # why the file was skipped (then top_k is empty)

    def as_dict(self, with_boxes: bool) -> dict:
        row = {"image": self.image, "top_k": self.top_k}
        if with_boxes:
            row["boxes"] = self.boxes or []
        row["error"] = self.error
        return row


@dataclasses.dataclass
class PredictResult:
    num_images: int  # rows, skipped files included
    num_skipped: int
    output: str | None  # the file written, if any
    problems: list[str]  # paths given that held no file (one line each)


def load_model(path: str, data_dir: str | None = None) -> ModelSource:
    """The network of a training WORKDIR, a ckpt-N prefix or a SavedModel of alexnet_tf.export.

    Args:
        path: the --model value.
        data_dir: the converted data whose manifest names the classes (and holds the mean
            image) when the run's own data directory is gone; None: the run's.

    Raises:
        CheckpointError, ManifestError or ValueError, naming `path`, if nothing loads from it.
    """
    if not os.path.exists(path) and not os.path.exists(path + ".index"):
        raise PredictError(f"--model={path}: no such file or folder")
    manifest = None
    if data_dir:
        from alexnet_tf.data.manifest import load_manifest

        manifest = load_manifest(data_dir)
    return load_source(path, manifest=manifest)


def find_images(paths: Sequence[str]) -> tuple[list[str], list[str]]:
    """The files to label: each file given, and every file under each folder, sorted.

    Hidden files and folders (`.DS_Store`, `.git`) are left out. Other files that are not images
    stay in the list: their rows say so.

    Returns:
        (files, problems): `problems` has one line per path that gave no file.
    """
    files, problems = [], []
    for path in paths:
        if os.path.isfile(path):
            files.append(path)
        elif os.path.isdir(path):
            found = []
            for folder, subfolders, names in os.walk(path):
                subfolders[:] = sorted(d for d in subfolders if not d.startswith("."))
                found += [os.path.join(folder, n) for n in sorted(names) if not n.startswith(".")]
            if not found:
                problems.append(f"{path}: the folder holds no files")
            files += found
        else:
            problems.append(f"{path}: no such file or folder")
    return files, problems


def check_output(output: str | None) -> None:
    """Raises PredictError unless `output` is None or a .csv/.jsonl path in an existing folder."""
    if output is None:
        return
    if os.path.splitext(output)[1].lower() not in OUTPUT_FORMATS:
        raise PredictError(f"--output={output} must end in one of {OUTPUT_FORMATS}")
    folder = os.path.dirname(os.path.abspath(output))
    if not os.path.isdir(folder):
        raise PredictError(f"--output={output}: the folder {folder} does not exist")


def image_crops(data: tf.Tensor, ten_patch: bool) -> tuple[tf.Tensor, tf.Tensor]:
    """Encoded image bytes → (uint8 [P, 227, 227, 3] crops, int32 [2] image height and width).

    A JPEG takes `crops.eval_crops`, evaluate's own path; other formats are decoded first.
    Raises (inside tf.data: drops the element) if `data` is not an image.
    """
    patches = 10 if ten_patch else 1

    def jpeg():
        cut = crops.eval_crops(data, ten_patch)
        return tf.reshape(cut, [patches, IMAGE_SIZE, IMAGE_SIZE, 3]), tf.image.extract_jpeg_shape(
            data
        )[:2]

    def other():
        image = tf.io.decode_image(data, channels=3, expand_animations=False)
        image.set_shape([None, None, 3])
        return crops.patches(crops.stored_image(image), ten_patch), tf.shape(image)[:2]

    is_jpeg = tf.equal(tf.strings.substr(data, 0, 3), _JPEG_MAGIC)
    return tf.cond(is_jpeg, jpeg, other)


def _batches(files: list[str], ten_patch: bool, batch_size: int) -> tf.data.Dataset:
    """(indices, crops [B, P, 227, 227, 3], sizes [B, 2]) of the files that are images, in order.

    A file that can't be read or decoded is dropped (`ignore_errors`); its missing index tells
    the caller which one it was.
    """

    def load(index, path):
        cut, size = image_crops(tf.io.read_file(path), ten_patch)
        return index, cut, size

    return (
        tf.data.Dataset.from_tensor_slices((tf.range(len(files), dtype=tf.int64), files))
        .map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        .ignore_errors()
        .batch(batch_size)
        .prefetch(1)
    )


def why_skipped(path: str) -> str:
    """The reason a file dropped by the pipeline is not an image (read again, eagerly)."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        return f"can't be read: {e.strerror or e}"
    if not data:
        return "not an image: the file is empty"
    try:
        image_crops(tf.constant(data), False)
    except tf.errors.OpError as e:
        # "{{function_node ...}} Unknown image file format. ... [Op:DecodeImage] name:" → the middle
        reason = re.sub(r"\{\{.*?\}\}\s*|\s*\[Op:.*$", "", e.message.splitlines()[0])
        return f"not an image: {reason[:200]}"
    return "not an image (could not be decoded)"


def _geometry(sizes: np.ndarray) -> np.ndarray:
    """evaluate's box `geometry` [B, 6] of whole images: the central square and the size."""
    height, width = sizes[:, 0], sizes[:, 1]
    side = np.minimum(height, width)
    y, x = (height - side) // 2, (width - side) // 2
    return np.stack([y, x, y + side, x + side, height, width], -1).astype(np.float32)


def predict_files(
    source: ModelSource,
    files: list[str],
    *,
    top_k: int = 5,
    ten_patch: bool = False,
    batch_size: int = 32,
) -> Iterator[Prediction]:
    """Yields one Prediction per file, in the order of `files`.

    Args:
        source: the trained network (`trained_models.load_source`).
        files: image paths (`find_images`).
        top_k: guesses per image (at most the number of classes).
        ten_patch: average the ten patches of section 4.1 instead of the centre patch.
        batch_size: images per forward pass (×10 crops with `ten_patch`).
    """
    k = min(top_k, source.num_classes)
    following = 0  # the next file without a row

    def skipped_until(index: int) -> Iterator[Prediction]:
        nonlocal following
        while following < index:
            yield Prediction(files[following], [], None, why_skipped(files[following]))
            following += 1

    for indices, images, sizes in _batches(files, ten_patch, batch_size):
        indices, images = indices.numpy(), images.numpy()
        images = images if ten_patch else images[:, 0]
        if source.has_boxes:
            probabilities, classes, boxes = evaluation.average_localizations(
                [source], images, _geometry(sizes.numpy()), k
            )
        else:
            probabilities = evaluation.average_probabilities([source], images)
            classes, boxes = metrics.top_k_classes(probabilities, k), None
        for row, index in enumerate(indices):
            yield from skipped_until(index)
            guesses = [
                {
                    "class": source.wnids[c],
                    "text": source.texts[c],
                    "probability": float(probabilities[row, c]),
                }
                for c in classes[row]
            ]
            box_rows = None
            if boxes is not None:
                box_rows = [
                    {f: round(float(v), 2) for f, v in zip(BOX_FIELDS, box, strict=True)}
                    for box in boxes[row]
                ]
            yield Prediction(files[index], guesses, box_rows)
            following = index + 1
    yield from skipped_until(len(files))


def csv_header(top_k: int, with_boxes: bool) -> list[str]:
    """image, error, then per rank r: class_r, text_r, probability_r (and box_r_ymin, ...)."""
    header = ["image", "error"]
    for r in range(1, top_k + 1):
        header += [f"class_{r}", f"text_{r}", f"probability_{r}"]
        if with_boxes:
            header += [f"box_{r}_{f}" for f in BOX_FIELDS]
    return header


def csv_row(prediction: Prediction, top_k: int, with_boxes: bool) -> list:
    row = [prediction.image, prediction.error or ""]
    for r in range(top_k):
        if r < len(prediction.top_k):
            guess = prediction.top_k[r]
            row += [guess["class"], guess["text"], f"{guess['probability']:.6g}"]
            if with_boxes:
                row += [prediction.boxes[r][f] for f in BOX_FIELDS]
        else:
            row += [""] * (3 + (len(BOX_FIELDS) if with_boxes else 0))
    return row


@contextlib.contextmanager
def _row_writer(output: str | None, top_k: int, with_boxes: bool):
    """A function that writes one Prediction to `output` (atomic: renamed only when complete)."""
    if output is None:
        yield lambda prediction: None
        return
    with atomic.writing(output) as f:
        if output.lower().endswith(".csv"):
            writer = csv.writer(f, lineterminator="\n")
            writer.writerow(csv_header(top_k, with_boxes))
            yield lambda p: writer.writerow(csv_row(p, top_k, with_boxes))
        else:
            yield lambda p: f.write(json.dumps(p.as_dict(with_boxes)) + "\n")


def predict(
    source: ModelSource,
    paths: Sequence[str],
    *,
    output: str | None = None,
    top_k: int = 5,
    ten_patch: bool = False,
    batch_size: int = 32,
    on_prediction: Callable[[Prediction], None] | None = None,
    progress: bool = True,
) -> PredictResult:
    """Labels every image under `paths` and writes one row per file to `output`.

    Args:
        source: the trained network.
        paths: image files and folders (searched recursively).
        output: a .csv or .jsonl file, written atomically once every row is in; None: no file.
        top_k, ten_patch, batch_size: as `predict_files`.
        on_prediction: called with each row as it is made (the binary prints it).
        progress: draw a tqdm progress bar on stderr.

    Returns:
        The counts, the file written and the paths that gave no file.

    Raises:
        PredictError: a bad `output`, or no file at all under `paths` (nothing is written).
    """
    check_output(output)
    if batch_size < 1:
        raise PredictError(f"--batch_size must be >= 1; received {batch_size}")
    if top_k < 1:
        raise PredictError(f"--top_k must be >= 1; received {top_k}")
    files, problems = find_images(paths)
    if not files:
        raise PredictError("no file to label: " + "; ".join(problems or ["no path given"]))
    k = min(top_k, source.num_classes)
    bar = None
    if progress:
        import tqdm

        bar = tqdm.tqdm(total=len(files), unit="image", desc="predict", dynamic_ncols=True)
    skipped = 0
    try:
        with _row_writer(output, k, source.has_boxes) as write:
            for prediction in predict_files(
                source, files, top_k=k, ten_patch=ten_patch, batch_size=batch_size
            ):
                write(prediction)
                skipped += prediction.error is not None
                if on_prediction is not None:
                    on_prediction(prediction)
                if bar is not None:
                    bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    return PredictResult(len(files), skipped, output, problems)
