"""The boxed stages of `python -m alexnet_tf.demo --localization` (ILSVRC-2012 task 2).

    python -m alexnet_tf.demo --localization       # everything in demo_work/boxes

The demo's stages with the box head: ten objects cut from scikit-image's photographs, pasted at
a third to two thirds of the height on scikit-learn's photographs, with ILSVRC annotation XMLs
(`pasted_objects.write_object_tree`), converted with --bbox_dir, trained with
configs/demo_localization.cfg, scored with the ILSVRC top-5 rule (localization error in
eval.json and the summary) and drawn in localizations.png.

The objects, not the digits: on digits pasted on photographs (`make_demo_dataset.py --boxes`)
the same recipe's classifier stays at chance (BUILD.md, "Localization"), so a demo of them would
show boxes without classes.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence

from alexnet_tf.data.demo_data import ANNOTATION_DIR
from alexnet_tf.data.pasted_objects import write_object_tree
from alexnet_tf.files import workdir as paths
from alexnet_tf.results import localization_figure

FLAGFILE = os.path.join("configs", "demo_localization.cfg")
WORKDIR = os.path.join("demo_work", "boxes")


def defaults(argv: Sequence[str], flagfile: str, workdir: str) -> tuple[str, str]:
    """The demo's flagfile and folder: the boxed ones when `argv` asks for --localization."""
    boxed = any(a in ("--localization", "--localization=true", "--localization=1") for a in argv)
    return (FLAGFILE, WORKDIR) if boxed else (flagfile, workdir)


def bbox_dir(raw: str) -> str:
    """The Annotation/ folder of the demo's raw tree."""
    return os.path.join(raw, ANNOTATION_DIR)


def stage_flags(raw: str) -> dict[str, str]:
    """What the data and convert stages' stand-alone commands add for the boxes."""
    return {"data": " --source=objects", "convert": f" --bbox_dir={bbox_dir(raw)}"}


def write_boxed_tree(raw: str, *, train_per_class: int, val_per_class: int) -> dict:
    """The boxed demo's raw tree: the pasted objects with their annotation XMLs."""
    return write_object_tree(raw, train_per_class=train_per_class, val_per_class=val_per_class)


def localizations(workdir: str, num_images: int, log: Callable[[str], None]) -> dict:
    """Writes WORKDIR/figures/localizations.png for a run with the box head ({} without one)."""
    path = localization_figure.write_localizations(
        workdir, paths.figures(workdir), num_images=num_images, log=log
    )
    return {"localizations": path} if path else {}


def summary_lines(ten_patch: dict) -> list[str]:
    """The summary's localization line, when the evaluation scored boxes."""
    if "localization_error" not in ten_patch:
        return []
    return [
        f"  localization error (ILSVRC top-5 rule, IoU >= 0.5): "
        f"{ten_patch['localization_error']:.1%} (top-1 {ten_patch['localization_top1_error']:.1%}"
        f", mean IoU of the top guess {ten_patch['mean_iou']:.2f})"
    ]
