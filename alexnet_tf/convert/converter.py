r"""ILSVRC-2012 (or any data in its layout) to sharded TFRecords plus `manifest.json`.

The plan: find the classes and every image with its label, shuffle each split with a fixed seed,
cut it into contiguous shards, write the shards in parallel (`shards.py`), then merge the
per-shard statistic sums and write the manifest that `alexnet_tf.data.manifest` reads.

With `bbox_dir`, each split's manifest entry counts its boxes (localization):
`"boxes": {"images_with_boxes": n, "boxes_kept": n, "boxes_skipped": {reason: n}}` with the
reasons of `sources.BOX_PROBLEMS`, and the top-level `"bad_boxes"` lists every skipped box
({"split", "image", "file" (the XML), "reason", "detail"}).

    python tools/build_imagenet_tfrecords.py --train_dir=... --val_dir=... --val_labels=... \
        --output_dir=...
"""

from __future__ import annotations

import dataclasses
import glob
import json
import os
import random
from collections.abc import Callable

from alexnet_tf.convert import progress as progress_lib
from alexnet_tf.convert import shards, sources, stats
from alexnet_tf.convert.sources import ConvertError
from alexnet_tf.data import manifest as manifest_lib

DEFAULT_SEED = 12345  # the seed of the tensorflow/models converter's shuffle
DEFAULT_QUALITY = 95  # JPEG quality of re-encoded images (none stated in the paper)
TRAIN_SHARDS, VAL_SHARDS = 1024, 128  # the tensorflow/models counts for ILSVRC-2012
MIN_RECORDS_PER_SHARD = 100  # a small set (the demo) gets a few shards, not a thousand tiny ones


@dataclasses.dataclass
class ConvertResult:
    """What a conversion did. `complete` is False if any shard failed; then no manifest."""

    output_dir: str
    complete: bool
    manifest_path: str | None
    num_examples: dict[str, int]
    skipped: list[dict]
    repaired: list[dict]
    shards_written: int
    shards_reused: int
    errors: list[str]
    bad_boxes: list[dict] = dataclasses.field(default_factory=list)


def _check_options(
    train_dir,
    val_dir,
    val_labels,
    train_shards,
    val_shards,
    resize,
    quality,
    label_offset,
    num_workers,
) -> None:
    if not train_dir and not val_dir:
        raise ConvertError("nothing to convert: give --train_dir, --val_dir or both")
    if val_dir and not val_labels and not sources.has_class_folders(val_dir):
        raise ConvertError(
            f"--val_dir={val_dir} needs --val_labels (the validation labels), or one sub-folder "
            "per class as in --train_dir"
        )
    for flag, value in (("train_shards", train_shards), ("val_shards", val_shards)):
        if value is not None and (not isinstance(value, int) or value < 1):
            raise ConvertError(f"--{flag} must be a positive integer; got {value!r}")
    if resize < 0:
        raise ConvertError(f"--resize must be 0 (keep the original) or a size; got {resize}")
    if not 1 <= quality <= 100:
        raise ConvertError(f"--jpeg_quality must be in 1..100; got {quality}")
    if label_offset < 0:
        raise ConvertError(f"--label_offset must be >= 0; got {label_offset}")
    if num_workers is not None and num_workers < 1:
        raise ConvertError(f"--num_workers must be >= 1; got {num_workers}")


def default_shards(num_files: int, cap: int) -> int:
    """`cap` shards for a big split, fewer (at least one) for a small one."""
    return max(1, min(cap, num_files // MIN_RECORDS_PER_SHARD))


def _plan(split, items, num_shards, seed, output_dir, common) -> list[shards.ShardTask]:
    """Shuffles a split with its own fixed-seed generator and cuts it into shard tasks."""
    items = list(items)
    random.Random(seed).shuffle(items)
    return [
        shards.ShardTask(
            output_dir=output_dir,
            file=f"{split}-{index:05d}-of-{num_shards:05d}",
            items=tuple(items[start:end]),
            with_stats=split == "train",
            **common,
        )
        for index, (start, end) in enumerate(shards.shard_ranges(len(items), num_shards))
    ]


def convert(
    *,
    output_dir: str,
    train_dir: str | None = None,
    val_dir: str | None = None,
    val_labels: str | None = None,
    val_synset_order: str | None = None,
    labels_file: str | None = None,
    bbox_dir: str | None = None,
    train_shards: int | None = None,
    val_shards: int | None = None,
    resize: int = 256,
    jpeg_quality: int = DEFAULT_QUALITY,
    label_offset: int = 0,
    num_workers: int | None = None,
    seed: int = DEFAULT_SEED,
    show_progress: bool = True,
    on_progress: Callable[[int], None] | None = None,
) -> ConvertResult:
    """Converts image folders in the ILSVRC layout to TFRecord shards and a manifest.

    Args:
        output_dir: where shards, `manifest.json` and `mean_image.npy` go (created).
        train_dir: `<wnid>/` folders or `<wnid>.tar` archives of training images, the
            ILSVRC2012_img_train.tar download itself (a tar of `<wnid>.tar` files), or None.
        val_dir: folder (or tar archive) of validation images, or a folder of class folders
            named as the training ones (then no `val_labels`), or None.
        val_labels: validation labels (LOC_val_solution.csv, devkit ground truth, or one wnid a
            line in sorted file-name order); None for a folder of class folders.
        val_synset_order: devkit meta.mat, or wnids in ILSVRC2012_ID order, for devkit labels.
        labels_file: 'wnid [words]' lines fixing the label order and class texts (default:
            sorted folders; a text defaults to the ILSVRC-2012 words of a wnid, else the
            folder's name).
        bbox_dir: folder of bounding-box XMLs (`Annotation/`), searched recursively.
        train_shards: number of training shards; default 1024 (the ILSVRC-2012 convention),
            fewer for small sets so that a shard holds at least MIN_RECORDS_PER_SHARD files.
        val_shards: number of validation shards; default 128, likewise.
        resize: 256 for the paper's shorter-side-256 central crop; 0 keeps the original bytes.
        jpeg_quality: quality of re-encoded JPEGs.
        label_offset: added to every stored label (1 gives the 1-based labels of old readers).
        num_workers: writer processes (default: all cores).
        seed: shuffle seed of the records.
        show_progress: draw the progress bar on stderr.
        on_progress: called in this process with the number of images just finished.

    Returns:
        A ConvertResult; `complete` is True when every shard was written and the manifest too.

    Raises:
        ConvertError: bad flags, or bad input found before writing (e.g. a validation file
            without a valid label).
    """
    _check_options(
        train_dir,
        val_dir,
        val_labels,
        train_shards,
        val_shards,
        resize,
        jpeg_quality,
        label_offset,
        num_workers,
    )
    num_workers = num_workers or os.cpu_count() or 1
    synsets, texts = sources.find_classes(train_dir, labels_file)
    if not synsets:  # validation only, no labels file: the classes are the labels found
        if val_labels:
            names = sources.val_file_names(val_dir)
            synsets = sorted(set(sources.read_val_labels(val_labels, names, val_synset_order)))
        else:
            synsets = sources.val_class_names(val_dir)
        table = sources.packaged_class_texts()
        texts = [table.get(s, s) for s in synsets]
    bboxes = sources.index_bboxes(bbox_dir)
    common = dict(
        synsets=tuple(synsets),
        texts=tuple(texts),
        resize=resize,
        quality=jpeg_quality,
        label_offset=label_offset,
    )
    tasks = []
    if train_dir:
        items = sources.list_train(train_dir, synsets, bboxes)
        if not items:
            raise ConvertError(f"--train_dir={train_dir} holds no files")
        train_shards = train_shards or default_shards(len(items), TRAIN_SHARDS)
        tasks += _plan("train", items, train_shards, seed, output_dir, common)
    if val_dir:
        if val_labels:
            items = sources.list_val(val_dir, val_labels, synsets, bboxes, val_synset_order)
        else:  # one folder per class, as the training images
            items = sources.list_val_class_folders(val_dir, synsets, bboxes)
        if not items:
            raise ConvertError(f"--val_dir={val_dir} holds no files")
        val_shards = val_shards or default_shards(len(items), VAL_SHARDS)
        tasks += _plan("validation", items, val_shards, seed, output_dir, common)
    os.makedirs(output_dir, exist_ok=True)  # only once every input is checked
    _remove_stale_temporaries(output_dir)

    total = sum(len(t.items) for t in tasks)
    bar = progress_lib.Progress(total, "convert") if show_progress else None

    def tick(count: int) -> None:
        if bar:
            bar.update(count)
        if on_progress:
            on_progress(count)

    results = shards.run_tasks(tasks, num_workers, tick)
    if bar:
        bar.close()
    options = {
        "train_dir": train_dir,
        "val_dir": val_dir,
        "val_labels": val_labels,
        "labels_file": labels_file,
        "bbox_dir": bbox_dir,
        "train_shards": train_shards if train_dir else None,
        "val_shards": val_shards if val_dir else None,
        "resize": resize,
        "resample": "bilinear, antialiased (Pillow)",
        "jpeg_quality": jpeg_quality,
        "label_offset": label_offset,
        "seed": seed,
    }
    return _finish(results, tasks, output_dir, synsets, texts, label_offset, options)


def _remove_stale_temporaries(output_dir: str) -> None:
    """Temporary files of a killed run: never valid, since only whole shards are renamed."""
    pattern = os.path.join(output_dir, ".*-of-*.tmp-*")
    for path in glob.glob(pattern) + glob.glob(
        os.path.join(output_dir, shards.STATE_DIR, "*.tmp-*")
    ):
        os.remove(path)


def _finish(results, tasks, output_dir, synsets, texts, label_offset, options) -> ConvertResult:
    """Merges shard results and statistics; writes the manifest if every shard is whole."""
    by_file = {r.file: r for r in results}
    errors = [r.error for r in results if r.error]
    split_of = {t.file: t.file.split("-", 1)[0] for t in tasks}
    skipped = sorted(
        ({**s, "split": split_of[r.file]} for r in results for s in r.skipped),
        key=lambda s: s["file"],
    )
    repaired = sorted(
        ({**s, "split": split_of[r.file]} for r in results for s in r.repaired),
        key=lambda s: s["file"],
    )
    bad_boxes = sorted(
        ({**b, "split": split_of[r.file]} for r in results for b in r.bad_boxes),
        key=lambda b: (b["image"], b["file"]),
    )
    splits = {}
    for task in tasks:
        split = task.file.split("-", 1)[0]
        result = by_file[task.file]
        entry = splits.setdefault(split, {"num_examples": 0, "shards": [], "boxes": _no_boxes()})
        entry["num_examples"] += result.num_records
        entry["boxes"]["images_with_boxes"] += result.boxes["images"]
        entry["boxes"]["boxes_kept"] += result.boxes["kept"]
        for bad in result.bad_boxes:
            entry["boxes"]["boxes_skipped"][bad["reason"]] += 1
        entry["shards"].append(
            {"file": task.file, "num_records": result.num_records, "sha256": result.sha256}
        )
    outcome = ConvertResult(
        output_dir=output_dir,
        complete=not errors,
        manifest_path=None,
        num_examples={name: s["num_examples"] for name, s in splits.items()},
        skipped=skipped,
        repaired=repaired,
        shards_written=sum(1 for r in results if not r.reused and not r.error),
        shards_reused=sum(1 for r in results if r.reused),
        errors=errors,
        bad_boxes=bad_boxes,
    )
    if errors:
        return outcome
    statistics = {}
    if "train" in splits:
        accumulator = stats.Accumulator()
        for task in tasks:  # in shard order, so the float sums are the same on every run
            if by_file[task.file].stats_file:
                accumulator.merge(stats.Accumulator.load(by_file[task.file].stats_file))
        if accumulator.num_images:
            statistics = accumulator.finish(output_dir)
    manifest = {
        "label_offset": label_offset,
        "classes": [{"synset": s, "text": t} for s, t in zip(synsets, texts, strict=True)],
        "splits": splits,
        "statistics": statistics,
        "options": options,
        "skipped": skipped,
        "repaired": repaired,
        "bad_boxes": bad_boxes,
    }
    _keep_other_split(output_dir, manifest)
    outcome.manifest_path = manifest_lib.write_manifest(output_dir, manifest)
    return outcome


def _keep_other_split(output_dir: str, manifest: dict) -> None:
    """Keeps a split converted by an earlier run into the same folder with the same classes."""
    try:
        with open(manifest_lib.manifest_path(output_dir)) as f:
            old = json.load(f)
    except (OSError, ValueError):
        return
    if (
        old.get("classes") != manifest["classes"]
        or old.get("label_offset") != manifest["label_offset"]
    ):
        return
    for name, split in old.get("splits", {}).items():
        if name not in manifest["splits"]:
            manifest["splits"][name] = split
            if name == "train" and not manifest["statistics"]:
                manifest["statistics"] = old.get("statistics", {})
            for key in ("skipped", "repaired", "bad_boxes"):
                manifest[key] += [s for s in old.get(key, []) if s.get("split") == name]


def _no_boxes() -> dict:
    """The box counts of a split before any shard is added (see the manifest's "boxes")."""
    return {
        "images_with_boxes": 0,
        "boxes_kept": 0,
        "boxes_skipped": dict.fromkeys(sources.BOX_PROBLEMS, 0),
    }
