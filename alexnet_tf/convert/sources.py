"""Finding the images of an ILSVRC-style download, their labels, class texts and bounding boxes.

Training images come from `train/<wnid>/` folders, from the official per-class `<wnid>.tar`
files, or from the download itself, `ILSVRC2012_img_train.tar` (a tar of those `<wnid>.tar`
files), all read in place: each image is located by its byte offset, so nothing is extracted.
Validation images come from a folder of class folders laid out like the training ones
(`val/<class>/`: the folder names the label, no labels file needed), or from a flat folder or
`ILSVRC2012_img_val.tar`, labelled by any of:

* `LOC_val_solution.csv` (Kaggle): `ImageId,PredictionString`, the first wnid is the label;
* the devkit's `ILSVRC2012_validation_ground_truth.txt`: one ILSVRC2012_ID (1-1000) per line,
  mapped to wnids by the devkit's synset order (`meta.mat`, found beside the file, or a text file
  of wnids in ILSVRC2012_ID order);
* a plain file of one wnid per line in sorted file-name order.

For files named `ILSVRC2012_val_<n>` the line-based formats are indexed by n, so a subset of the
validation images still finds its labels.
"""

from __future__ import annotations

import dataclasses
import os
import re
import tarfile
import xml.etree.ElementTree as ElementTree
from importlib import resources

_VAL_NUMBER = re.compile(r"ILSVRC2012_val_(\d+)")
_CLASS_TEXT_FILES = ("ilsvrc2012_synsets.txt", "demo_synsets.txt")


class ConvertError(ValueError):
    """Bad input to the converter; the message names the file or flag and what was expected."""


@dataclasses.dataclass(frozen=True)
class Item:
    """One image to convert: where its bytes are and what it is labelled."""

    name: str  # e.g. "train/n01440764/n01440764_10026.JPEG" or "n01440764.tar:n01440764_1.JPEG"
    path: str  # the file, or the tar archive holding it
    offset: int  # byte offset of the data inside `path` (0 for a plain file)
    size: int  # bytes to read from `offset` (-1: the whole file)
    label: int  # class index, 0-based
    bbox_xml: str | None = None

    @property
    def basename(self) -> str:
        return os.path.basename(self.name.rsplit(":", 1)[-1])


def read_bytes(item: Item) -> bytes:
    """The raw bytes of one image, from a file or from inside a tar archive."""
    with open(item.path, "rb") as f:
        if item.size < 0:
            return f.read()
        f.seek(item.offset)
        return f.read(item.size)


def packaged_class_texts() -> dict[str, str]:
    """wnid -> words of the 1000 ILSVRC-2012 synsets (and the demo's digit classes)."""
    texts = {}
    for name in _CLASS_TEXT_FILES:
        text = resources.files("alexnet_tf").joinpath("data", name).read_text(encoding="utf-8")
        texts.update(_parse_synset_lines(text.splitlines(), name))
    return texts


def _parse_synset_lines(lines: list[str], source: str) -> dict[str, str]:
    """Parses 'wnid words' lines (LOC_synset_mapping.txt / synset_words.txt); words optional."""
    table = {}
    for number, line in enumerate(lines, 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        wnid, _, words = line.partition(" ")
        if wnid in table:
            raise ConvertError(f"{source} line {number}: class {wnid!r} is listed twice")
        table[wnid] = words.strip()
    return table


@dataclasses.dataclass(frozen=True)
class _NestedTar:
    """A `<wnid>.tar` stored inside ILSVRC2012_img_train.tar: its data's place in the outer file."""

    archive: str
    name: str
    offset: int


def find_classes(train_dir: str | None, labels_file: str | None) -> tuple[list[str], list[str]]:
    """The class wnids in label order and their texts.

    Args:
        train_dir: folder of `<wnid>/` folders or `<wnid>.tar` files, or the
            ILSVRC2012_img_train.tar archive of `<wnid>.tar` files, or None.
        labels_file: optional file of 'wnid [words]' lines giving the label order (and texts).

    Returns:
        (synsets, texts): label i is synsets[i]. Without a labels file the classes are the
        folders found, in sorted order. A text comes from the labels file, else the packaged
        ILSVRC-2012 table, else the folder name.
    """
    listed = {}
    if labels_file:
        try:
            with open(labels_file, encoding="utf-8") as f:
                listed = _parse_synset_lines(f.read().splitlines(), labels_file)
        except OSError as e:
            raise ConvertError(f"--labels_file={labels_file} can't be read: {e}") from e
        if not listed:
            raise ConvertError(f"--labels_file={labels_file} lists no classes")
    found = _class_sources(train_dir) if train_dir else {}
    if listed:
        missing = sorted(set(found) - set(listed))
        if missing:
            raise ConvertError(
                f"class folder(s) {missing[:5]} in {train_dir} are not in --labels_file="
                f"{labels_file} ({len(listed)} classes); add them or remove the folders"
            )
        synsets = list(listed)
    else:
        synsets = sorted(found)
    table = packaged_class_texts()
    texts = [listed.get(s) or table.get(s) or s for s in synsets]
    return synsets, texts


def _class_sources(train_dir: str, flag: str = "--train_dir") -> dict[str, str | _NestedTar]:
    """wnid -> its folder or .tar file under train_dir, or its .tar inside the train_dir tar."""
    if os.path.isfile(train_dir):
        return _nested_class_tars(train_dir)
    if not os.path.isdir(train_dir):
        raise ConvertError(
            f"{flag}={train_dir} is neither a folder nor the ILSVRC2012_img_train.tar archive"
        )
    sources = {}
    for entry in sorted(os.scandir(train_dir), key=lambda e: e.name):
        if entry.name.startswith("."):
            continue
        if entry.is_dir():
            sources[entry.name] = entry.path
        elif entry.name.endswith(".tar") and entry.is_file():
            sources.setdefault(entry.name[: -len(".tar")], entry.path)
    if not sources:
        raise ConvertError(
            f"{flag}={train_dir} holds no class folders (<wnid>/) or <wnid>.tar files"
        )
    return sources


def has_class_folders(val_dir: str) -> bool:
    """Whether a validation folder is laid out like the training one: one sub-folder per class."""
    if not os.path.isdir(val_dir):
        return False
    return any(e.is_dir() and not e.name.startswith(".") for e in os.scandir(val_dir))


def val_class_names(val_dir: str) -> list[str]:
    """The class folders of a validation folder of class folders, sorted."""
    return sorted(_class_sources(val_dir, "--val_dir"))


def list_val_class_folders(val_dir: str, synsets: list[str], bboxes: dict[str, str]) -> list[Item]:
    """Every image of a validation folder of class folders, labelled by its folder.

    A class with no validation folder is fine; a folder that is not one of the training classes
    stops the run, before anything is written.

    Raises:
        ConvertError: naming the first class folder that `synsets` lacks.
    """
    sources = _class_sources(val_dir, "--val_dir")
    index = {s: i for i, s in enumerate(synsets)}
    unknown = [name for name in sources if name not in index]
    if unknown:
        path = sources[unknown[0]]
        raise ConvertError(
            f"--val_dir class folder {path} is not one of the {len(synsets)} training classes "
            f"(e.g. {synsets[:3]}); {len(unknown)} such folder(s) {unknown[:5]}: rename or "
            "remove them, or add them to --train_dir/--labels_file"
        )
    items = []
    for synset, source in sources.items():
        for name, path, offset, size in _list_source(source, f"val/{synset}"):
            stem = os.path.splitext(_base(name))[0]
            items.append(Item(name, path, offset, size, index[synset], bboxes.get(stem)))
    return items


def _nested_class_tars(path: str) -> dict[str, _NestedTar]:
    """wnid -> each `<wnid>.tar` member of a tar archive (ILSVRC2012_img_train.tar)."""
    sources = {}
    for m in _tar_files(path, 0, f"--train_dir={path}"):
        base = os.path.basename(m.name)
        if base.endswith(".tar") and not base.startswith("."):
            sources.setdefault(base[: -len(".tar")], _NestedTar(path, m.name, m.offset_data))
    if not sources:
        raise ConvertError(
            f"--train_dir={path} is a tar archive without <wnid>.tar members; give the "
            "ILSVRC2012_img_train.tar download, or a folder of class folders or <wnid>.tar files"
        )
    return sources


def _tar_files(path: str, offset: int, what: str) -> list[tarfile.TarInfo]:
    """The file members, sorted by name, of the uncompressed tar archive starting at `offset`
    in `path`; `what` names it in the error."""
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            # tarfile takes the file's position as the archive's start and records absolute
            # positions: each member's offset_data is its place in `path`, even inside a tar.
            with tarfile.open(fileobj=f, mode="r:") as archive:
                members = [m for m in archive.getmembers() if m.isfile()]
    except (OSError, tarfile.TarError) as e:
        raise ConvertError(f"{what} can't be read as an uncompressed tar archive: {e}") from e
    return sorted(members, key=lambda m: m.name)


def _list_source(path: str | _NestedTar, prefix: str) -> list[tuple[str, str, int, int]]:
    """(name, path, offset, size) of every image file in a folder or a tar archive, sorted."""
    if isinstance(path, _NestedTar):
        archive, base = path.archive, f"{os.path.basename(path.archive)}:{path.name}"
        members = _tar_files(archive, path.offset, f"{path.name} inside {archive}")
        return [(f"{base}:{m.name}", archive, m.offset_data, m.size) for m in members]
    if os.path.isdir(path):
        entries = [e for e in os.scandir(path) if e.is_file() and not e.name.startswith(".")]
        # The size goes into each shard's fingerprint: a file replaced by another of a different
        # size makes its shard be rebuilt on resume.
        return [
            (f"{prefix}/{e.name}", e.path, 0, e.stat().st_size)
            for e in sorted(entries, key=lambda e: e.name)
        ]
    members = _tar_files(path, 0, path)
    return [(f"{os.path.basename(path)}:{m.name}", path, m.offset_data, m.size) for m in members]


def list_train(train_dir: str, synsets: list[str], bboxes: dict[str, str]) -> list[Item]:
    """Every training image, labelled by its class folder (or tar) position in `synsets`."""
    sources = _class_sources(train_dir)
    items = []
    for label, synset in enumerate(synsets):
        if synset not in sources:
            continue  # a class listed in --labels_file with no images
        for name, path, offset, size in _list_source(sources[synset], f"train/{synset}"):
            stem = os.path.splitext(os.path.basename(name.rsplit(":", 1)[-1]))[0]
            items.append(Item(name, path, offset, size, label, bboxes.get(stem)))
    return items


def list_val(
    val_dir: str,
    val_labels: str,
    synsets: list[str],
    bboxes: dict[str, str],
    synset_order: str | None = None,
) -> list[Item]:
    """Every validation image with its label; any file without a valid label stops the run.

    Args:
        val_dir: folder of validation images, or the ILSVRC2012_img_val.tar archive.
        val_labels: labels in one of the three formats of the module docstring.
        synsets: the classes, in label order.
        bboxes: image stem -> bounding-box XML path.
        synset_order: for devkit ground truth, the devkit's meta.mat or a file of wnids in
            ILSVRC2012_ID order; default: meta.mat beside `val_labels`.

    Raises:
        ConvertError: naming the first file with no label or a label that is not a class.
    """
    if not (os.path.isdir(val_dir) or os.path.isfile(val_dir)):
        raise ConvertError(f"--val_dir={val_dir} is neither a folder nor a tar archive")
    files = _list_source(val_dir, "val")
    names = [_base(name) for name, *_ in files]
    labels = read_val_labels(val_labels, names, synset_order)
    index = {s: i for i, s in enumerate(synsets)}
    items = []
    for (name, path, offset, size), basename, wnid in zip(files, names, labels, strict=True):
        if wnid not in index:
            raise ConvertError(
                f"validation file {name} has label {wnid!r} in {val_labels}, which is not one "
                f"of the {len(synsets)} classes (e.g. {synsets[:3]}); check --val_labels and "
                f"--train_dir/--labels_file"
            )
        stem = os.path.splitext(basename)[0]
        items.append(Item(name, path, offset, size, index[wnid], bboxes.get(stem)))
    return items


def val_file_names(val_dir: str) -> list[str]:
    """The base names of the validation files, in listing order."""
    return [_base(name) for name, *_ in _list_source(val_dir, "val")]


def _base(name: str) -> str:
    """'n01.tar:x/y.JPEG' or 'train/n01/y.JPEG' -> 'y.JPEG'."""
    return os.path.basename(name.rsplit(":", 1)[-1])


def read_val_labels(path: str, names: list[str], synset_order: str | None = None) -> list[str]:
    """The wnid of each validation file name, from any of the three label formats."""
    try:
        with open(path, encoding="utf-8") as f:
            lines = [line.strip() for line in f.read().splitlines()]
    except OSError as e:
        raise ConvertError(f"--val_labels={path} can't be read: {e}") from e
    lines = [line for line in lines if line]
    if not lines:
        raise ConvertError(f"--val_labels={path} is empty")
    if lines[0].startswith("ImageId") or "," in lines[0]:
        by_stem = {}
        for line in lines[1:] if lines[0].startswith("ImageId") else lines:
            image_id, _, prediction = line.partition(",")
            if prediction.split():
                by_stem[image_id.strip()] = prediction.split()[0]
        labels = [by_stem.get(os.path.splitext(n)[0]) for n in names]
    else:
        if all(line.isdigit() for line in lines):
            order = _devkit_synset_order(path, synset_order)
            try:
                lines = [order[int(line) - 1] for line in lines]
            except IndexError:
                raise ConvertError(
                    f"{path} holds ILSVRC2012_IDs beyond the {len(order)} synsets of the devkit "
                    f"order {synset_order or 'meta.mat'}"
                ) from None
        labels = _by_position(lines, names)
    for name, label in zip(names, labels, strict=True):
        if not label:
            raise ConvertError(
                f"validation file {name} has no label in --val_labels={path} "
                f"({len(lines)} labels for {len(names)} files)"
            )
    return labels


def _by_position(lines: list[str], names: list[str]) -> list[str | None]:
    """Line-based labels: by the ILSVRC2012_val_<n> number where every name has one."""
    numbers = [_VAL_NUMBER.search(n) for n in names]
    if all(numbers):
        return [
            lines[int(m.group(1)) - 1] if int(m.group(1)) <= len(lines) else None for m in numbers
        ]
    ordered = sorted(range(len(names)), key=lambda i: names[i])
    labels = [None] * len(names)
    for position, i in enumerate(ordered):
        labels[i] = lines[position] if position < len(lines) else None
    return labels


def _devkit_synset_order(labels_path: str, synset_order: str | None) -> list[str]:
    """The wnid of each ILSVRC2012_ID (1-based) from the devkit's meta.mat or a text list."""
    path = synset_order or os.path.join(os.path.dirname(labels_path), "meta.mat")
    if not os.path.exists(path):
        raise ConvertError(
            f"--val_labels={labels_path} holds devkit class ids (ILSVRC2012_ID); their synset "
            f"order comes from the devkit's data/meta.mat, not found at {path}: give "
            f"--val_synset_order=<meta.mat or a file of wnids in ILSVRC2012_ID order>"
        )
    if path.endswith(".mat"):
        try:
            from scipy.io import loadmat
        except ImportError as e:
            raise ConvertError(f"reading {path} needs scipy (pip install scipy)") from e
        synsets = loadmat(path, squeeze_me=True)["synsets"]
        pairs = sorted((int(s["ILSVRC2012_ID"]), str(s["WNID"])) for s in synsets)
        return [wnid for ilsvrc_id, wnid in pairs if ilsvrc_id <= 1000]
    with open(path, encoding="utf-8") as f:
        return [line.split()[0] for line in f.read().splitlines() if line.strip()]


def index_bboxes(bbox_dir: str | None) -> dict[str, str]:
    """Image stem -> XML path for every `*.xml` under bbox_dir (Annotation/<wnid>/*.xml, val/)."""
    if not bbox_dir:
        return {}
    if not os.path.isdir(bbox_dir):
        raise ConvertError(f"--bbox_dir={bbox_dir} is not a directory")
    index = {}
    for folder, _, files in os.walk(bbox_dir):
        for name in files:
            if name.endswith(".xml"):
                index[name[: -len(".xml")]] = os.path.join(folder, name)
    return index


# Why a box of an annotation XML was skipped (the manifest counts them under these names).
BOX_PROBLEMS = ("unparsable", "outside_image", "empty", "other_class")


def read_bboxes(
    xml_path: str, synset: str
) -> tuple[list[tuple[float, float, float, float]], list[dict]]:
    """The boxes of one ImageNet (PASCAL VOC) annotation XML, checked.

    Args:
        xml_path: the annotation file.
        synset: the wnid of the image's class; boxes of any other class are skipped.

    Returns:
        (boxes, problems): (xmin, ymin, xmax, ymax) of every good box as fractions of the image
        size the XML states, and one {"file", "reason", "detail"} per skipped box, `reason` one
        of BOX_PROBLEMS: an XML that can't be parsed (or lacks its size) counts once as
        "unparsable"; a box with a missing or non-numeric coordinate is "unparsable" too; a box
        reaching outside the stated size is "outside_image"; xmin >= xmax or ymin >= ymax is
        "empty"; a box named for another class is "other_class". A bad box is skipped, never
        turned into an empty one, and the image is kept.
    """

    def problem(reason, detail):
        return {"file": xml_path, "reason": reason, "detail": detail}

    try:
        root = ElementTree.parse(xml_path).getroot()
    except (OSError, ElementTree.ParseError) as e:
        return [], [problem("unparsable", f"can't be parsed as XML: {e}")]
    try:
        width = float(root.findtext("size/width"))
        height = float(root.findtext("size/height"))
        if not (width > 0 and height > 0):
            raise ValueError(f"{width} x {height}")
    except (TypeError, ValueError) as e:
        return [], [problem("unparsable", f"has no usable <size><width>/<height> ({e})")]
    boxes, problems = [], []
    for number, obj in enumerate(root.iter("object"), 1):
        where = f"object {number}"
        name = (obj.findtext("name") or "").strip()
        try:
            xmin, ymin, xmax, ymax = (
                float(obj.findtext(f"bndbox/{k}")) for k in ("xmin", "ymin", "xmax", "ymax")
            )
        except (TypeError, ValueError):
            problems.append(problem("unparsable", f"{where} lacks a numeric bndbox coordinate"))
            continue
        box = f"(xmin {xmin:g}, ymin {ymin:g}, xmax {xmax:g}, ymax {ymax:g})"
        if name != synset:
            problems.append(
                problem("other_class", f"{where} is a {name or 'nameless'!r} box {box}; the image "
                        f"is {synset!r}")
            )  # fmt: skip
        elif xmin >= xmax or ymin >= ymax:
            problems.append(problem("empty", f"{where} has no area: {box}"))
        elif xmin < 0 or ymin < 0 or xmax > width or ymax > height:
            problems.append(
                problem("outside_image", f"{where} {box} reaches outside the "
                        f"{width:g}x{height:g} image")
            )  # fmt: skip
        else:
            boxes.append((xmin / width, ymin / height, xmax / width, ymax / height))
    return boxes, problems
