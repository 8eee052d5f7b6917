"""Your own photos: a validation folder of class folders, converted with no labels file."""

import os

import numpy as np
import pytest
import tensorflow as tf

from alexnet_tf.convert import ConvertError, convert
from alexnet_tf.data.demo_data import encode_jpeg
from alexnet_tf.data.manifest import load_manifest

# Class folders named as a user would, after scikit-image photographs; (train, val) images each.
PHOTOS = ("astronaut", "chelsea", "coffee")


def _crops(name: str, count: int, seed: int) -> list[np.ndarray]:
    from skimage import data as skdata

    photo = getattr(skdata, name)()
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(count):
        y, x = rng.integers(0, photo.shape[0] - 96), rng.integers(0, photo.shape[1] - 96)
        out.append(photo[y : y + 96 : 2, x : x + 96 : 2])  # 48×48 crops
    return out


def _tree(root, train: dict[str, int], val: dict[str, int]) -> tuple[str, str]:
    for split, counts in (("train", train), ("val", val)):
        for seed, (name, count) in enumerate(counts.items()):
            folder = root / split / name
            folder.mkdir(parents=True)
            for i, crop in enumerate(_crops(name, count, seed + (split == "val") * 10)):
                (folder / f"{name}_{i}.jpg").write_bytes(encode_jpeg(crop))
    return str(root / "train"), str(root / "val")


def _records(data_dir: str, split: str) -> list[tuple[str, int, str, str]]:
    """(filename, label, synset, text) of every record of a split."""
    manifest = load_manifest(data_dir)
    rows = []
    for record in tf.data.TFRecordDataset(manifest.split(split).files):
        f = tf.train.Example.FromString(record.numpy()).features.feature
        rows.append(
            (
                f["image/filename"].bytes_list.value[0].decode(),
                f["image/class/label"].int64_list.value[0],
                f["image/class/synset"].bytes_list.value[0].decode(),
                f["image/class/text"].bytes_list.value[0].decode(),
            )
        )
    return sorted(rows)


def _convert(**kwargs):
    return convert(resize=64, num_workers=1, show_progress=False, **kwargs)


def test_class_folders_label_validation_without_labels_file(tmp_path):
    train_dir, val_dir = _tree(tmp_path, dict.fromkeys(PHOTOS, 2), dict.fromkeys(PHOTOS, 2))
    out = str(tmp_path / "data")
    result = _convert(output_dir=out, train_dir=train_dir, val_dir=val_dir)
    assert result.complete and result.num_examples == {"train": 6, "validation": 6}
    manifest = load_manifest(out)
    # Sorted folder names are the labels; the texts default to the folder names.
    assert list(manifest.synsets) == list(PHOTOS) and list(manifest.texts) == list(PHOTOS)
    expected = sorted(
        (f"{name}_{i}.jpg", label, name, name) for label, name in enumerate(PHOTOS) for i in (0, 1)
    )
    assert _records(out, "validation") == expected


def test_training_class_without_validation_folder_is_fine(tmp_path):
    train_dir, val_dir = _tree(tmp_path, dict.fromkeys(PHOTOS, 1), {"astronaut": 1, "coffee": 2})
    out = str(tmp_path / "data")
    result = _convert(output_dir=out, train_dir=train_dir, val_dir=val_dir)
    assert result.complete
    assert load_manifest(out).num_classes == 3
    labels = [label for _, label, _, _ in _records(out, "validation")]
    assert labels == [0, 2, 2]  # coffee keeps its training label 2, not 1


def test_validation_class_unknown_to_training_is_one_error_and_writes_nothing(tmp_path):
    train_dir, val_dir = _tree(
        tmp_path, {"astronaut": 1, "coffee": 1}, {"astronaut": 1, "chelsea": 1}
    )
    out = tmp_path / "data"
    with pytest.raises(ConvertError) as error:
        _convert(output_dir=str(out), train_dir=train_dir, val_dir=val_dir)
    message = str(error.value)
    assert os.path.join(val_dir, "chelsea") in message and "\n" not in message
    assert not out.exists()


def test_labels_file_overrides_order_and_texts(tmp_path):
    train_dir, val_dir = _tree(tmp_path, dict.fromkeys(PHOTOS, 1), dict.fromkeys(PHOTOS, 1))
    labels_file = tmp_path / "classes.txt"
    labels_file.write_text("coffee a cup of coffee\nastronaut Eileen Collins\nchelsea a cat\n")
    out = str(tmp_path / "data")
    _convert(output_dir=out, train_dir=train_dir, val_dir=val_dir, labels_file=str(labels_file))
    manifest = load_manifest(out)
    assert list(manifest.synsets) == ["coffee", "astronaut", "chelsea"]
    assert _records(out, "validation") == [
        ("astronaut_0.jpg", 1, "astronaut", "Eileen Collins"),
        ("chelsea_0.jpg", 2, "chelsea", "a cat"),
        ("coffee_0.jpg", 0, "coffee", "a cup of coffee"),
    ]


def test_validation_class_folders_alone_define_the_classes(tmp_path):
    _, val_dir = _tree(tmp_path, {}, {"chelsea": 1, "astronaut": 1})
    out = str(tmp_path / "data")
    result = _convert(output_dir=out, val_dir=val_dir)
    assert result.complete
    assert list(load_manifest(out).synsets) == ["astronaut", "chelsea"]


def test_flat_validation_folder_still_needs_labels(tmp_path):
    train_dir, _ = _tree(tmp_path, {"astronaut": 1}, {})
    flat = tmp_path / "flat"
    flat.mkdir()
    (flat / "a.jpg").write_bytes(encode_jpeg(_crops("astronaut", 1, 0)[0]))
    with pytest.raises(ConvertError, match="needs --val_labels.*one sub-folder per class"):
        _convert(output_dir=str(tmp_path / "data"), train_dir=train_dir, val_dir=str(flat))
