"""Validation localizations (ILSVRC-2012 task 2): each image with its ground-truth box and the
box of the network's top guess, labelled with the guessed class, like the talk's slides.

The image shown is the 227×227 centre patch the network saw; the ground-truth boxes (kept in the
original image's pixels) are mapped into it, and the top guess's box is the head's own output for
that patch. Boxes that reach past the patch are cut at its edges.

    python -m alexnet_tf.visualize --workdir=runs/demo_localization   # → figures/localizations.png
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence

import matplotlib

matplotlib.use("Agg")  # files only, never a window; before pyplot is imported
import matplotlib.patches  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from alexnet_tf.data.boxes import patch_boxes_to_original  # noqa: E402
from alexnet_tf.files import atomic  # noqa: E402
from alexnet_tf.model import IMAGE_SIZE  # noqa: E402
from alexnet_tf.model.box_head import class_boxes  # noqa: E402
from alexnet_tf.results.boxes import best_iou  # noqa: E402

TRUTH_COLOR = "#2ca02c"  # green: the annotation
GUESS_COLOR = "#d62728"  # red: the network's top guess
FILE_NAME = "localizations.png"


def original_to_crop(boxes: np.ndarray, geometry: np.ndarray) -> np.ndarray:
    """Maps boxes [B, G, 4] in original-image pixels into the centre crop's pixels (0 … 227).

    The centre crop's own extent in the original image (`patch_boxes_to_original` of the unit
    box) gives the affine map back: translation by its corner, one scale for both axes.
    """
    geometry = np.asarray(geometry)
    unit = np.tile(np.array([[0.0, 0.0, 1.0, 1.0]], np.float32), (len(geometry), 1))
    extent = np.asarray(patch_boxes_to_original(unit, geometry, False), np.float64)  # [B, 4]
    origin = extent[:, None, [0, 1, 0, 1]]
    size = (extent[:, None, [2, 3, 2, 3]] - extent[:, None, [0, 1, 0, 1]]) / IMAGE_SIZE
    return (np.asarray(boxes, np.float64) - origin) / size


def localization_figure(
    images: np.ndarray,
    truth: np.ndarray,
    truth_valid: np.ndarray,
    guesses: np.ndarray,
    guess_names: Sequence[str],
    true_names: Sequence[str],
    *,
    columns: int = 4,
) -> plt.Figure:
    """Draws each crop with its true boxes (green) and the top guess's box and class (red).

    Args:
        images: uint8 [N, H, W, 3].
        truth: [N, G, 4] ground-truth boxes (ymin, xmin, ymax, xmax) in the images' pixels.
        truth_valid: bool [N, G].
        guesses: [N, 4] the top guess's box, in the images' pixels.
        guess_names: the top guess's class name per image.
        true_names: the true class name per image (in the panel's title).
        columns: panels per row.
    """
    n = len(images)
    rows = max(1, math.ceil(n / columns))
    figure, axes = plt.subplots(rows, columns, figsize=(3 * columns, 3.3 * rows), squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i >= n:
            continue
        h, w = images[i].shape[:2]
        ax.imshow(images[i])
        for box in np.asarray(truth[i])[np.asarray(truth_valid[i], bool)]:
            _rectangle(ax, box, TRUTH_COLOR)
        _rectangle(ax, guesses[i], GUESS_COLOR)
        ymin, xmin = np.clip(guesses[i][:2], 0, [h - 1, w - 1])
        ax.text(
            xmin + 2, ymin + 2, guess_names[i], color="white", fontsize=8, va="top",
            bbox={"facecolor": GUESS_COLOR, "edgecolor": "none", "pad": 1.5},
        )  # fmt: skip
        ax.set_title(true_names[i], fontsize=9, color=TRUTH_COLOR)
        ax.set_xlim(0, w)
        ax.set_ylim(h, 0)
    figure.tight_layout()
    return figure


def _rectangle(ax, box, color) -> None:
    ymin, xmin, ymax, xmax = box
    ax.add_patch(
        matplotlib.patches.Rectangle(
            (xmin, ymin), xmax - xmin, ymax - ymin, fill=False, edgecolor=color, linewidth=2
        )
    )


def write_localizations(
    checkpoint: str,
    output_dir: str,
    *,
    data_dir: str | None = None,
    num_images: int = 8,
    columns: int = 4,
    log: Callable[[str], None] = print,
) -> str | None:
    """Writes OUTPUT_DIR/localizations.png for a network with the box head.

    Returns:
        The PNG's path, or None (with a log line) when the network has no box head or the
        validation split has no boxes.
    """
    from alexnet_tf.data.input_pipeline import input_errors, make_eval_dataset
    from alexnet_tf.data.manifest import load_manifest
    from alexnet_tf.results.trained_models import load_source, resolve_data_dir, training_workdir
    from alexnet_tf.runs.checkpoints import read_model_config

    if num_images <= 0:
        return None
    workdir = training_workdir(checkpoint)
    if workdir is not None and not read_model_config(workdir).get("model", {}).get("localization"):
        return None  # a run without the box head: known without loading its weights
    manifest = load_manifest(resolve_data_dir(checkpoint, data_dir))
    source = load_source(checkpoint, manifest)
    if not source.has_boxes:
        return None
    split = manifest.split("validation")
    dataset = make_eval_dataset(
        split.files, min(num_images, 32), label_offset=manifest.label_offset,
        num_classes=manifest.num_classes, with_boxes=True,
    )  # fmt: skip
    picked = [[] for _ in range(5)]
    with input_errors(split.files):
        for images, labels, mask, gt_boxes, gt_valid, geometry in dataset.as_numpy_iterator():
            keep = mask & gt_valid.any(axis=1)
            for store, value in zip(picked, (images, labels, gt_boxes, gt_valid, geometry)):
                store.extend(value[keep])
            if len(picked[0]) >= num_images:
                break
    if not picked[0]:
        log(f"visualize: no validation image of {manifest.path} has a box; no {FILE_NAME}")
        return None
    images, labels, gt_boxes, gt_valid, geometry = (np.asarray(p[:num_images]) for p in picked)
    outputs = source.predict(images)
    top = np.argmax(outputs["predictions"], axis=-1)
    guesses = np.asarray(class_boxes(outputs["bbox"], top)) * IMAGE_SIZE
    truth = original_to_crop(gt_boxes, geometry)
    figure = localization_figure(
        images, truth, gt_valid, guesses, [source.texts[c] for c in top],
        [source.texts[c] for c in labels], columns=columns,
    )  # fmt: skip
    path = os.path.join(output_dir, FILE_NAME)
    with atomic.temporary_path(path, ".png") as tmp:
        figure.savefig(tmp, dpi=100)
    plt.close(figure)
    ious = best_iou(guesses, truth, gt_valid)
    log(f"visualize: wrote {path} ({len(images)} images, top guess mean IoU {ious.mean():.2f})")
    return path
