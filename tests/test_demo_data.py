"""The demo tree: ILSVRC layout, real digit scans, labels that match the images."""

import os

import numpy as np
from PIL import Image

from alexnet_tf.data import demo_data
from alexnet_tf.data.manifest import load_manifest


def test_tree_has_ilsvrc_layout(demo_tree):
    assert sorted(os.listdir(demo_tree["train_dir"])) == demo_data.DIGIT_SYNSETS
    for synset in demo_data.DIGIT_SYNSETS:
        names = sorted(os.listdir(os.path.join(demo_tree["train_dir"], synset)))
        assert len(names) == 8
        assert all(n.startswith(f"{synset}_") and n.endswith(".JPEG") for n in names)
    val_names = sorted(os.listdir(demo_tree["val_dir"]))
    assert val_names == [f"ILSVRC2012_val_{i:08d}.JPEG" for i in range(1, 31)]
    with open(demo_tree["val_labels"]) as f:
        labels = f.read().split()
    assert len(labels) == 30
    assert sorted(set(labels)) == demo_data.DIGIT_SYNSETS
    assert demo_tree["num_train"] == 80 and demo_tree["num_val"] == 30
    assert demo_tree["texts"][3] == "digit 3, three"


def test_images_are_rgb_jpegs_of_the_requested_size(demo_tree):
    path = os.path.join(demo_tree["train_dir"], "d0000001", "d0000001_0.JPEG")
    with Image.open(path) as image:
        assert image.format == "JPEG" and image.mode == "RGB" and image.size == (64, 64)
        pixels = np.asarray(image, np.float32)
    assert pixels.std() > 20  # ink on paper, not a flat colour


def test_val_labels_match_the_digits_drawn(tmp_path):
    """Each val image is the scan its label names: ink mass correlates with that class's mean."""
    from sklearn.datasets import load_digits

    info = demo_data.write_demo_tree(str(tmp_path), train_per_class=2, val_per_class=2, seed=3)
    digits = load_digits()
    class_means = np.stack([digits.images[digits.target == d].mean(0) for d in range(10)])
    with open(info["val_labels"]) as f:
        labels = f.read().split()
    correct = 0
    for i, label in enumerate(labels, 1):
        path = os.path.join(info["val_dir"], f"ILSVRC2012_val_{i:08d}.JPEG")
        with Image.open(path) as image:
            gray = np.asarray(image.convert("L").resize((8, 8), Image.BOX), np.float32)
        ink = gray.max() - gray
        scores = [np.corrcoef(ink.ravel(), m.ravel())[0, 1] for m in class_means]
        correct += int(np.argmax(scores)) == demo_data.DIGIT_SYNSETS.index(label)
    assert correct >= 0.8 * len(labels)


def test_same_seed_same_tree(tmp_path):
    a = demo_data.write_demo_tree(str(tmp_path / "a"), train_per_class=1, val_per_class=1)
    b = demo_data.write_demo_tree(str(tmp_path / "b"), train_per_class=1, val_per_class=1)
    assert _read(a["val_labels"]) == _read(b["val_labels"])
    one = os.path.join("d0000004", "d0000004_0.JPEG")
    assert _read(os.path.join(a["train_dir"], one)) == _read(os.path.join(b["train_dir"], one))


def _read(path):
    with open(path, "rb") as f:
        return f.read()


def test_bad_arguments_are_named(tmp_path):
    import pytest

    with pytest.raises(demo_data.DemoDataError, match="unknown demo source"):
        demo_data.write_demo_tree(str(tmp_path), source="cifar")
    with pytest.raises(demo_data.DemoDataError, match="too many"):
        demo_data.write_demo_tree(str(tmp_path), train_per_class=500)


def test_sample_photographs_need_no_network():
    photos = demo_data.sample_photographs()
    assert {"china", "flower", "astronaut", "coffee", "chelsea", "camera"} <= set(photos)
    assert photos["camera"].ndim == 2 and photos["china"].shape == (427, 640, 3)


def test_demo_data_dir_fixture(demo_data_dir):
    manifest = load_manifest(demo_data_dir)
    assert manifest.synsets == demo_data.DIGIT_SYNSETS
    assert manifest.texts[0] == "digit 0, zero"
    assert manifest.split("train").num_examples == 80
    assert manifest.split("validation").num_examples == 30
    assert manifest.mean_image().shape == (256, 256, 3)
    values, vectors = manifest.eigen()
    assert values.shape == (3,) and vectors.shape == (3, 3)


def test_rewriting_a_tree_leaves_no_stale_images(tmp_path):
    demo_data.write_demo_tree(str(tmp_path), train_per_class=3, val_per_class=2)
    info = demo_data.write_demo_tree(str(tmp_path), train_per_class=1, val_per_class=1)
    assert len(os.listdir(os.path.join(info["train_dir"], "d0000000"))) == 1
    assert len(os.listdir(info["val_dir"])) == 10


def test_refuses_to_clear_a_folder_that_is_not_a_demo_tree(tmp_path):
    import pytest

    os.makedirs(tmp_path / "train" / "n01440764")
    with pytest.raises(demo_data.DemoDataError, match="not a demo tree"):
        demo_data.write_demo_tree(str(tmp_path), train_per_class=1, val_per_class=1)
    assert os.path.isdir(tmp_path / "train" / "n01440764")


def test_boxed_tree_has_ilsvrc_annotations_inside_the_images(tmp_path):
    import xml.etree.ElementTree as ElementTree

    info = demo_data.write_demo_tree(
        str(tmp_path), train_per_class=3, val_per_class=1, image_size=96, boxes=True
    )
    with open(info["val_labels"]) as f:
        val_labels = f.read().split()
    images = [
        (os.path.join(info["train_dir"], s, n), s)
        for s in demo_data.DIGIT_SYNSETS
        for n in sorted(os.listdir(os.path.join(info["train_dir"], s)))
    ] + [
        (os.path.join(info["val_dir"], f"ILSVRC2012_val_{i:08d}.JPEG"), label)
        for i, label in enumerate(val_labels, 1)
    ]
    sides = []
    for path, synset in images:
        stem = os.path.splitext(os.path.basename(path))[0]
        folder = "val" if stem.startswith("ILSVRC2012_val_") else synset
        root = ElementTree.parse(os.path.join(info["bbox_dir"], folder, f"{stem}.xml")).getroot()
        width, height = int(root.findtext("size/width")), int(root.findtext("size/height"))
        with Image.open(path) as image:
            assert image.size == (width, height) == (120, 96)
        assert root.findtext("filename") == stem and root.findtext("size/depth") == "3"
        (obj,) = root.findall("object")
        assert obj.findtext("name") == synset
        xmin, ymin, xmax, ymax = (
            int(obj.findtext(f"bndbox/{k}")) for k in ("xmin", "ymin", "xmax", "ymax")
        )
        assert 0 <= xmin < xmax <= width and 0 <= ymin < ymax <= height
        assert xmax - xmin == ymax - ymin
        sides.append((xmax - xmin) / height)
    assert min(sides) >= 0.29 and max(sides) <= 0.81 and max(sides) - min(sides) > 0.2


def test_boxed_tree_converts_with_its_boxes(tmp_path):
    from alexnet_tf.convert import convert

    info = demo_data.write_demo_tree(str(tmp_path), train_per_class=1, val_per_class=1, boxes=True)
    result = convert(
        output_dir=str(tmp_path / "data"),
        train_dir=info["train_dir"],
        val_dir=info["val_dir"],
        val_labels=info["val_labels"],
        bbox_dir=info["bbox_dir"],
        num_workers=1,
        show_progress=False,
    )
    assert result.complete and not result.bad_boxes
    splits = load_manifest(str(tmp_path / "data")).raw["splits"]
    for split in ("train", "validation"):
        assert splits[split]["boxes"]["images_with_boxes"] == 10
        assert splits[split]["boxes"]["boxes_kept"] == 10


def test_small_sets_write_photo_and_grey_texture_classes(tmp_path):
    """The recipe benchmark's second and third sets: one class per bundled (grey) picture."""
    from alexnet_tf.data import small_sets

    for textures, classes, mode in ((False, 8, "RGB"), (True, 10, "L")):
        root = tmp_path / ("textures" if textures else "photos")
        info = small_sets.write_photo_tree(
            str(root), train_per_class=2, val_per_class=1, textures=textures
        )
        assert len(info["synsets"]) == classes and info["num_train"] == 2 * classes
        with open(info["labels_file"]) as f:
            lines = f.read().splitlines()
        assert lines == [f"{s} {t}" for s, t in zip(info["synsets"], info["texts"])]
        some = os.path.join(info["train_dir"], info["synsets"][0])
        image = Image.open(os.path.join(some, sorted(os.listdir(some))[0]))
        assert (image.mode, image.size) == (mode, (64, 64))
        data = small_sets.load_tree(info, size=8)
        assert data["train"][0].shape == (2 * classes, 8 * 8 * 3)
        assert sorted(data["validation"][1]) == list(range(classes))
    assert info["texts"][0] == "texture brick"
