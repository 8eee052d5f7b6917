"""Top-1 and top-5 error on the validation set, as reported in section 6 of the paper.

* centre patch: the 227×227 centre of each 256×256 image;
* ten patches (section 4.1): "the four corner patches and the center patch as well as their
  horizontal reflections (hence ten patches in all), and averaging the predictions made by the
  network's softmax layer on the ten patches";
* model averaging (section 6): "averaging the predictions of five similar CNNs" — the softmax
  outputs of several models are averaged, after each has averaged its own ten patches.

Localization (ILSVRC-2012 task 2), for a network with the box head: each of the five guesses
also carries its class's box; `localization_error` is the fraction of the images with
ground-truth boxes where no guess has the right class and a box with IoU >= 0.5
(`results/boxes.py`). With ten patches, a guess's box is the mean of its ten patch boxes, each
mapped back to the original image (reflections un-reflected). Boxes are compared in the original
image's pixels.

Every validation example is scored exactly once: the evaluation dataset pads its last batch and
marks the padding with `mask=False`, and the number of scored examples is checked against the
manifest.

    python -m alexnet_tf.evaluate --workdir=runs/demo
    python -m alexnet_tf.evaluate --workdir=runs/ensemble --checkpoints=runs/a,runs/b,runs/c
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Iterable, Sequence

import numpy as np
import tensorflow as tf

from alexnet_tf.data.boxes import patch_boxes_to_original
from alexnet_tf.data.manifest import load_manifest
from alexnet_tf.files import atomic
from alexnet_tf.files import workdir as workdir_lib
from alexnet_tf.results import metrics
from alexnet_tf.results.boxes import TOP_K as LOCALIZATION_GUESSES
from alexnet_tf.results.boxes import LocalizationCounter, images_with_boxes
from alexnet_tf.results.trained_models import ModelSource, load_source

MODES = ("center", "ten_patch")
# The run's TensorBoard directory (training.SUMMARY_DIR): `tensorboard --logdir WORKDIR/tensorboard`
# shows training and these evaluations together.
SUMMARY_DIR = workdir_lib.TENSORBOARD_DIR
TOP_K = metrics.TOP_K


class EvaluationError(RuntimeError):
    """The evaluation could not be trusted (for example, not every example was scored once)."""


def average_probabilities(sources: Sequence[ModelSource], images: np.ndarray) -> np.ndarray:
    """The averaged softmax output of `sources` on a batch of uint8 crops.

    Args:
        sources: one or more networks (several: model averaging, as in section 6).
        images: (B, 227, 227, 3) centre crops, or (B, P, 227, 227, 3) with P patches per image
            (ten-patch testing, section 4.1), uint8.

    Returns:
        (B, K) float32: the mean over patches, then over models, of the softmax outputs.
    """
    images = np.asarray(images)
    patches = images.shape[1] if images.ndim == 5 else 1
    flat = images.reshape((-1,) + images.shape[-3:])
    per_model = []
    for source in sources:
        probs = source.predict(flat)["predictions"]
        per_model.append(probs.reshape(images.shape[0], patches, -1).mean(axis=1))
    return np.mean(per_model, axis=0, dtype=np.float64).astype(np.float32)


def average_localizations(
    sources: Sequence[ModelSource],
    images: np.ndarray,
    geometry: np.ndarray,
    k: int = LOCALIZATION_GUESSES,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Averaged class probabilities and the boxes of the top-k guesses, in original pixels.

    Args:
        sources: one or more networks with the box head (several: their boxes are averaged
            too, after each is mapped to the original image).
        images: (B, 227, 227, 3) centre crops or (B, 10, 227, 227, 3) ten patches, uint8.
        geometry: (B, ...) the evaluation dataset's `geometry`, which maps a patch's boxes back
            to its original image (`data.boxes.patch_boxes_to_original`).
        k: guesses per image.

    Returns:
        probabilities (B, K) float32 as `average_probabilities`; classes (B, k), most probable
        first; boxes (B, k, 4) float32, (ymin, xmin, ymax, xmax) in original-image pixels.
    """
    images = np.asarray(images)
    ten_patch = images.ndim == 5
    b, patches = images.shape[0], images.shape[1] if ten_patch else 1
    flat = images.reshape((-1,) + images.shape[-3:])
    outputs = [source.predict(flat) for source in sources]
    probabilities = np.mean(
        [o["predictions"].reshape(b, patches, -1).mean(axis=1) for o in outputs],
        axis=0,
        dtype=np.float64,
    ).astype(np.float32)
    k = min(k, probabilities.shape[-1])
    classes = metrics.top_k_classes(probabilities, k)  # the tie rule of the top-k errors
    geometry = np.repeat(np.asarray(geometry), k, axis=0)  # one row per (image, guess)
    boxes = []
    for o in outputs:
        per_class = o["bbox"].reshape(b, patches, -1, 4)
        chosen = np.take_along_axis(per_class, classes[:, None, :, None], axis=2)  # b, P, k, 4
        chosen = chosen.transpose(0, 2, 1, 3).reshape(b * k, patches, 4)
        mapped = np.asarray(
            patch_boxes_to_original(chosen if ten_patch else chosen[:, 0], geometry, ten_patch)
        )
        boxes.append(mapped.mean(axis=1) if ten_patch else mapped)
    boxes = np.mean(boxes, axis=0).reshape(b, k, 4).astype(np.float32)
    return probabilities, classes, boxes


def score_localization(
    sources: Sequence[ModelSource],
    batches: Iterable,
    num_classes: int,
    *,
    progress: Callable[[int], None] | None = None,
) -> tuple[ErrorCounter, LocalizationCounter]:
    """Scores batches of (images, labels, mask, gt_boxes, gt_valid, geometry) once each."""
    counter, boxes = ErrorCounter(num_classes), LocalizationCounter()
    for images, labels, mask, gt_boxes, gt_valid, geometry in batches:
        probabilities, classes, predicted = average_localizations(sources, images, geometry)
        counter.update(probabilities, labels, mask)
        boxes.update(classes, predicted, labels, gt_boxes, gt_valid, mask)
        if progress is not None:
            progress(counter.count)
    return counter, boxes


@dataclasses.dataclass
class ErrorCounter:
    """Counts top-k mistakes over masked batches, overall and per class."""

    num_classes: int
    count: int = 0
    top_k: tuple[int, ...] = TOP_K

    def __post_init__(self):
        self.per_class_count = np.zeros(self.num_classes, np.int64)
        self.per_class_wrong = {k: np.zeros(self.num_classes, np.int64) for k in self.top_k}

    def update(self, probabilities: np.ndarray, labels: np.ndarray, mask: np.ndarray) -> None:
        mask = np.asarray(mask, bool)
        probabilities, labels = np.asarray(probabilities)[mask], np.asarray(labels)[mask]
        if labels.size and (labels.min() < 0 or labels.max() >= self.num_classes):
            raise EvaluationError(
                f"labels outside [0, {self.num_classes}): {sorted(set(labels.tolist()))[:10]}; "
                "does the model's number of classes match the data's manifest?"
            )
        ranks = metrics.label_ranks(probabilities, labels).numpy()  # ties: see metrics.py
        self.count += labels.size
        np.add.at(self.per_class_count, labels, 1)
        for k in self.top_k:
            wrong = ranks >= k
            np.add.at(self.per_class_wrong[k], labels[wrong], 1)

    def errors(self) -> dict[str, float]:
        """{"top1_error": ..., "top5_error": ...} as fractions."""
        if not self.count:
            raise EvaluationError("no example was scored")
        return {
            f"top{k}_error": float(w.sum() / self.count) for k, w in self.per_class_wrong.items()
        }

    def per_class_errors(self, wnids: Sequence[str]) -> list[dict]:
        rows = []
        for c, wnid in enumerate(wnids):
            n = int(self.per_class_count[c])
            row = {"class": c, "wnid": wnid, "num_examples": n}
            for k, wrong in self.per_class_wrong.items():
                row[f"top{k}_error"] = float(wrong[c] / n) if n else None
            rows.append(row)
        return rows


def score(
    sources: Sequence[ModelSource],
    batches: Iterable,
    num_classes: int,
    *,
    progress: Callable[[int], None] | None = None,
) -> ErrorCounter:
    """Scores every unmasked example of `batches` of (images uint8, labels, mask) once."""
    counter = ErrorCounter(num_classes)
    for images, labels, mask in batches:
        counter.update(average_probabilities(sources, np.asarray(images)), labels, mask)
        if progress is not None:
            progress(counter.count)
    return counter


def evaluate(
    checkpoints: Sequence[str | ModelSource],
    data_dir: str,
    *,
    batch_size: int = 16,
    modes: Sequence[str] = MODES,
    per_class: bool = False,
    workdir: str | None = None,
    log: Callable[[str], None] = print,
) -> dict:
    """Top-1/top-5 error of one model or the average of several on the validation split.

    Args:
        checkpoints: training WORKDIRs, `ckpt-N` prefixes or exported SavedModels (or models
            already loaded, `ModelSource`s); several are averaged.
        data_dir: the directory with the manifest and validation shards.
        batch_size: images per batch (ten-patch batches hold 10× as many crops).
        modes: any of "center" and "ten_patch".
        per_class: also report the errors of every class.
        workdir: where eval.json and the TensorBoard events go (nothing is written if None).
        log: progress and result lines go here.

    Returns:
        {"num_examples": N, "checkpoints": [...], "center": {"top1_error", "top5_error"},
         "ten_patch": {...}} (plus "per_class" lists when asked).

    Raises:
        EvaluationError: if the number of scored examples differs from the manifest's.
    """
    from alexnet_tf.data.input_pipeline import input_errors, make_eval_dataset

    unknown = [m for m in modes if m not in MODES]
    if unknown or not modes:
        raise ValueError(f"modes must be a non-empty subset of {MODES}; received {list(modes)}")
    manifest = load_manifest(data_dir)
    split = manifest.split("validation")
    sources = [p if isinstance(p, ModelSource) else load_source(p, manifest) for p in checkpoints]
    for source in sources:
        if source.num_classes != manifest.num_classes:
            raise EvaluationError(
                f"{source.name} has {source.num_classes} classes but {manifest.path} has "
                f"{manifest.num_classes}"
            )
    result = {
        "num_examples": split.num_examples,
        "checkpoints": [s.name for s in sources],
        "data_dir": os.path.abspath(data_dir),
    }
    # Localization needs the box head in every averaged network and boxes in the data.
    localize = all(s.has_boxes for s in sources) and images_with_boxes(manifest, "validation") > 0
    for mode in modes:
        dataset = make_eval_dataset(
            split.files,
            batch_size,
            label_offset=manifest.label_offset,
            ten_patch=mode == "ten_patch",
            num_classes=manifest.num_classes,
            **({"with_boxes": True} if localize else {}),
        )
        every = max(1, split.num_examples // 10)
        last = [0]

        def progress(count, mode=mode, every=every, last=last):
            if count - last[0] >= every or count == split.num_examples:
                log(f"{mode}: scored {count}/{split.num_examples}")
                last[0] = count

        with input_errors(split.files):
            if localize:
                counter, boxes = score_localization(
                    sources, dataset.as_numpy_iterator(), manifest.num_classes, progress=progress
                )
            else:
                counter = score(
                    sources, dataset.as_numpy_iterator(), manifest.num_classes, progress=progress
                )
        log(f"{mode}: scored {counter.count} examples; the manifest has {split.num_examples}")
        if counter.count != split.num_examples:
            raise EvaluationError(
                f"{mode}: scored {counter.count} validation examples but {manifest.path} lists "
                f"{split.num_examples}; are the shards complete?"
            )
        result[mode] = counter.errors()
        log(
            f"{mode}: top-1 error {result[mode]['top1_error']:.4f}, "
            f"top-5 error {result[mode]['top5_error']:.4f}"
        )
        if localize:
            _add_localization(result, mode, boxes, log)
        if per_class:
            result.setdefault("per_class", {})[mode] = counter.per_class_errors(manifest.synsets)
    if workdir:
        write_results(workdir, result, step=max(s.step for s in sources))
    return result


def _add_localization(result: dict, mode: str, boxes: LocalizationCounter, log) -> None:
    result["num_localized"] = boxes.count
    if boxes.count:
        result[mode].update(boxes.errors())
        log(
            f"{mode}: localization error {result[mode]['localization_error']:.4f} (top-1 "
            f"{result[mode]['localization_top1_error']:.4f}, mean IoU "
            f"{result[mode]['mean_iou']:.3f}) on {boxes.count} images with boxes"
        )


def write_results(workdir: str, result: dict, step: int = 0) -> str:
    """Writes WORKDIR/eval.json atomically and eval/top{1,5}_error to TensorBoard.

    Each mode gets its own TensorBoard run (WORKDIR/tensorboard/eval_center and eval_ten_patch,
    beside training's own), so the curves share one chart per tag.
    """
    path = atomic.write_json(workdir_lib.eval_json(workdir), result)
    for mode in MODES:
        if mode not in result:
            continue
        writer = tf.summary.create_file_writer(workdir_lib.tensorboard(workdir, f"eval_{mode}"))
        with writer.as_default():
            for name, value in result[mode].items():
                tf.summary.scalar(f"eval/{name}", value, step=step)
        writer.close()
    return path
