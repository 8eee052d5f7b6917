"""Finding images and labels: the three validation label formats, tar archives, class texts."""

import io
import os
import tarfile

import numpy as np
import pytest

from alexnet_tf.convert import images, sources
from alexnet_tf.convert.progress import Progress
from alexnet_tf.convert.sources import ConvertError
from alexnet_tf.data import records

NAMES = [f"ILSVRC2012_val_{i:08d}.JPEG" for i in (1, 2, 3)]
WNIDS = ["n02123045", "n01440764", "n02123045"]
# The devkit orders synsets by ILSVRC2012_ID, not by wnid: here tench is id 2, tabby id 1.
DEVKIT_ORDER = ["n02123045", "n01440764"]


def test_plain_wnid_per_line(tmp_path):
    path = tmp_path / "val_labels.txt"
    path.write_text("".join(f"{w}\n" for w in WNIDS))
    assert sources.read_val_labels(str(path), NAMES) == WNIDS
    # ILSVRC names index the file by their number, so a subset still finds its labels.
    assert sources.read_val_labels(str(path), NAMES[2:]) == WNIDS[2:]


def test_plain_labels_follow_sorted_names_for_other_files(tmp_path):
    path = tmp_path / "labels.txt"
    path.write_text("n1\nn2\n")
    assert sources.read_val_labels(str(path), ["b.jpg", "a.jpg"]) == ["n2", "n1"]


def test_loc_val_solution_csv(tmp_path):
    path = tmp_path / "LOC_val_solution.csv"
    rows = [
        "ImageId,PredictionString",
        "ILSVRC2012_val_00000003,n02123045 10 20 30 40 n02123045 1 2 3 4 ",
        "ILSVRC2012_val_00000001,n02123045 5 5 50 50 ",
        "ILSVRC2012_val_00000002,n01440764 0 0 9 9 ",
    ]
    path.write_text("\n".join(rows) + "\n")
    assert sources.read_val_labels(str(path), NAMES) == WNIDS


def test_devkit_ground_truth_with_text_synset_order(tmp_path):
    truth = tmp_path / "ILSVRC2012_validation_ground_truth.txt"
    truth.write_text("1\n2\n1\n")
    order = tmp_path / "order.txt"
    order.write_text("".join(f"{w}\n" for w in DEVKIT_ORDER))
    assert sources.read_val_labels(str(truth), NAMES, str(order)) == WNIDS


def test_devkit_ground_truth_with_meta_mat_beside_it(tmp_path):
    from scipy.io import savemat

    synsets = np.zeros((3,), dtype=[("ILSVRC2012_ID", "O"), ("WNID", "O")])
    # meta.mat also lists non-leaf synsets with ids > 1000; they are not classes.
    for i, (ilsvrc_id, wnid) in enumerate([(2, "n01440764"), (1, "n02123045"), (1001, "n0")]):
        synsets[i] = (np.array([[ilsvrc_id]]), np.array([wnid]))
    savemat(str(tmp_path / "meta.mat"), {"synsets": synsets})
    truth = tmp_path / "ILSVRC2012_validation_ground_truth.txt"
    truth.write_text("1\n2\n1\n")
    assert sources.read_val_labels(str(truth), NAMES) == WNIDS


def test_devkit_ground_truth_without_synset_order_says_what_to_give(tmp_path):
    truth = tmp_path / "ILSVRC2012_validation_ground_truth.txt"
    truth.write_text("1\n2\n1\n")
    with pytest.raises(ConvertError, match="--val_synset_order"):
        sources.read_val_labels(str(truth), NAMES)


def test_missing_label_names_the_file(tmp_path):
    path = tmp_path / "LOC_val_solution.csv"
    path.write_text("ImageId,PredictionString\nILSVRC2012_val_00000001,n02123045 1 1 2 2\n")
    with pytest.raises(ConvertError, match="ILSVRC2012_val_00000002.JPEG has no label"):
        sources.read_val_labels(str(path), NAMES)


def test_val_tar_and_train_tar_are_read_in_place(tmp_path):
    from alexnet_tf.data.demo_data import encode_jpeg, sample_photographs

    data = encode_jpeg(sample_photographs()["chelsea"])
    archive_path = tmp_path / "ILSVRC2012_img_val.tar"
    with tarfile.open(archive_path, "w") as archive:
        for name in NAMES:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    labels = tmp_path / "labels.txt"
    labels.write_text("".join(f"{w}\n" for w in WNIDS))
    items = sources.list_val(str(archive_path), str(labels), sorted(set(WNIDS)), {})
    assert [i.basename for i in items] == NAMES
    assert [i.label for i in items] == [1, 0, 1]
    assert all(sources.read_bytes(i) == data for i in items)


def _write_tar(path, files):
    with tarfile.open(path, "w") as archive:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))


def _train_download(tmp_path):
    """An ILSVRC2012_img_train.tar of two class tars of real photos; returns (path, jpegs)."""
    from alexnet_tf.data.demo_data import encode_jpeg, sample_photographs

    photos = sample_photographs()
    jpegs = {name: encode_jpeg(photos[name]) for name in ("china", "flower", "chelsea")}
    classes = {"n02123045": ["chelsea"], "n01440764": ["china", "flower"]}  # stored unsorted
    inner = {}
    for wnid, names in classes.items():
        _write_tar(
            tmp_path / f"{wnid}.tar", {f"{wnid}_{i}.JPEG": jpegs[n] for i, n in enumerate(names)}
        )
        inner[f"{wnid}.tar"] = (tmp_path / f"{wnid}.tar").read_bytes()
    outer = tmp_path / "ILSVRC2012_img_train.tar"
    _write_tar(outer, inner)
    return str(outer), jpegs


def test_the_train_download_tar_of_class_tars_is_read_in_place(tmp_path):
    outer, jpegs = _train_download(tmp_path)
    synsets, texts = sources.find_classes(outer, None)
    assert synsets == ["n01440764", "n02123045"]
    assert texts == ["tench, Tinca tinca", "tabby, tabby cat"]
    items = sources.list_train(outer, synsets, {"n02123045_0": "n02123045_0.xml"})
    assert [(i.name, i.label) for i in items] == [
        ("ILSVRC2012_img_train.tar:n01440764.tar:n01440764_0.JPEG", 0),
        ("ILSVRC2012_img_train.tar:n01440764.tar:n01440764_1.JPEG", 0),
        ("ILSVRC2012_img_train.tar:n02123045.tar:n02123045_0.JPEG", 1),
    ]
    assert [i.basename for i in items][0] == "n01440764_0.JPEG"
    assert [sources.read_bytes(i) for i in items] == [
        jpegs[n] for n in ("china", "flower", "chelsea")
    ]
    assert items[2].bbox_xml == "n02123045_0.xml"


def test_the_train_download_tar_converts(tmp_path):
    from alexnet_tf.convert import convert
    from alexnet_tf.data.manifest import load_manifest

    outer, _ = _train_download(tmp_path)
    output = tmp_path / "records"
    result = convert(output_dir=str(output), train_dir=outer, num_workers=1, show_progress=False)
    assert result.complete, result.errors
    train = load_manifest(str(output)).split("train")
    assert train.num_examples == 3


def test_a_train_dir_that_is_not_the_download_is_named(tmp_path):
    _write_tar(tmp_path / "photos.tar", {"a.JPEG": b"not used"})
    with pytest.raises(ConvertError, match=r"photos.tar is a tar archive without <wnid>.tar"):
        sources.find_classes(str(tmp_path / "photos.tar"), None)
    (tmp_path / "notes.txt").write_text("not a tar")
    with pytest.raises(ConvertError, match=r"--train_dir=.*notes.txt can't be read as an unc"):
        sources.find_classes(str(tmp_path / "notes.txt"), None)
    with pytest.raises(ConvertError, match=r"--train_dir=.*missing is neither a folder nor"):
        sources.find_classes(str(tmp_path / "missing"), None)


def test_classes_sorted_with_packaged_texts(tmp_path):
    for name in ("n02123045", "n01440764", "x_custom"):
        os.makedirs(tmp_path / name)
    synsets, texts = sources.find_classes(str(tmp_path), None)
    assert synsets == ["n01440764", "n02123045", "x_custom"]
    assert texts == ["tench, Tinca tinca", "tabby, tabby cat", "x_custom"]


def test_packaged_table_is_the_1000_ilsvrc_classes():
    table = sources.packaged_class_texts()
    ilsvrc = [w for w in table if w.startswith("n")]
    assert len(ilsvrc) == 1000
    assert table["n15075141"] == "toilet tissue, toilet paper, bathroom tissue"
    assert table["n02012849"] == table["n03126707"] == "crane"  # the bird and the machine


def test_labels_file_must_cover_every_folder(tmp_path):
    os.makedirs(tmp_path / "train" / "n01440764")
    os.makedirs(tmp_path / "train" / "n02123045")
    labels = tmp_path / "labels.txt"
    labels.write_text("n01440764\n")
    with pytest.raises(ConvertError, match=r"\['n02123045'\].*not in --labels_file"):
        sources.find_classes(str(tmp_path / "train"), str(labels))


def _annotation(tmp_path, objects, size="<width>200</width><height>100</height>"):
    path = tmp_path / "n01_1.xml"
    body = "".join(
        f"<object><name>{name}</name><bndbox>{box}</bndbox></object>" for name, box in objects
    )
    path.write_text(f"<annotation><size>{size}</size>{body}</annotation>")
    return str(path)


def _bndbox(xmin, ymin, xmax, ymax):
    return f"<xmin>{xmin}</xmin><ymin>{ymin}</ymin><xmax>{xmax}</xmax><ymax>{ymax}</ymax>"


def test_bounding_box_xml_is_normalised_by_its_stated_size(tmp_path):
    path = _annotation(
        tmp_path, [("n01", _bndbox(50, 0, 150, 50)), ("n01", _bndbox(0, 0, 200, 100))]
    )
    assert sources.read_bboxes(path, "n01") == ([(0.25, 0.0, 0.75, 0.5), (0.0, 0.0, 1.0, 1.0)], [])
    # A box half outside a central crop keeps its inside part.
    assert records.crop_bboxes([(0.0, 0.2, 0.5, 0.6)], (0.25, 0.0, 0.5, 1.0)) == [
        (0.0, 0.2, 0.5, 0.6)
    ]
    assert records.crop_bboxes([(0.0, 0.0, 0.2, 1.0)], (0.25, 0.0, 0.5, 1.0)) == []


@pytest.mark.parametrize(
    "objects, size, reason, words",
    [
        ([("n01", _bndbox(150, 5, 50, 50))], None, "empty", "no area"),  # xmin > xmax
        ([("n01", _bndbox(10, 50, 60, 50))], None, "empty", "no area"),  # ymin == ymax
        ([("n01", _bndbox(150, -5, 180, 50))], None, "outside_image", "outside"),
        ([("n01", _bndbox(150, 5, 201, 50))], None, "outside_image", "200x100"),
        ([("n02", _bndbox(10, 10, 20, 20))], None, "other_class", "'n02'"),
        ([("n01", "<xmin>1</xmin>")], None, "unparsable", "coordinate"),
        ([("n01", _bndbox(1, 1, 2, 2))], "<width>0</width>", "unparsable", "size"),
    ],
)
def test_bad_boxes_are_skipped_with_the_reason(tmp_path, objects, size, reason, words):
    good = ("n01", _bndbox(0, 0, 100, 100))
    path = _annotation(tmp_path, [good, *objects], *([size] if size else []))
    boxes, problems = sources.read_bboxes(path, "n01")
    assert boxes == ([] if size else [(0.0, 0.0, 0.5, 1.0)])
    assert [p["reason"] for p in problems] == [reason]
    assert problems[0]["file"] == path and words in problems[0]["detail"]


def test_unparsable_xml_is_one_problem_naming_it(tmp_path):
    path = tmp_path / "broken.xml"
    path.write_text("<annotation><size><width>3")
    boxes, problems = sources.read_bboxes(str(path), "n01")
    assert boxes == [] and len(problems) == 1
    assert problems[0]["reason"] == "unparsable" and problems[0]["file"] == str(path)


@pytest.mark.parametrize(
    "data, reason",
    [(b"", "empty"), (b"%PDF-1.4 ...", "not an image"), (b"\xff\xd8\xff\xe0" + b"\0" * 64, "JPEG")],
)
def test_bad_bytes_raise_with_reason(data, reason):
    with pytest.raises(images.BadImageError, match=reason):
        images.process(data, resize=256, quality=95, want_pixels=True)


def test_resize_is_shorter_side_then_central_crop():
    from PIL import Image

    from alexnet_tf.data.demo_data import encode_jpeg, sample_photographs

    rocket = sample_photographs()["rocket"]  # 640 wide, 427 high
    done = images.process(encode_jpeg(rocket), resize=256, quality=95, want_pixels=True)
    assert (done.height, done.width) == (256, 256) and done.pixels.shape == (256, 256, 3)
    left = (640 - 427) / 2
    assert done.crop == pytest.approx((left / 640, 0.0, 427 / 640, 1.0))
    want = Image.fromarray(rocket).resize(
        (256, 256), Image.BILINEAR, box=(left, 0, left + 427, 427)
    )
    assert np.abs(done.pixels.astype(float) - np.asarray(want, float)).mean() < 3


def test_progress_line_has_rate_and_time_left():
    stream = io.StringIO()
    bar = Progress(100, "convert", stream=stream)
    bar.update(10)
    bar.update(90)
    line = stream.getvalue().strip().splitlines()[-1]
    assert "100/100" in line and "images/s" in line and "left" in line


@pytest.mark.parametrize("bboxes", [[], [(0.1, 0.2, 0.5, 0.75), (0.0, 0.0, 1.0, 1.0)]])
def test_examples_are_byte_identical_to_tensorflows(bboxes):
    """Our hand-encoded Example equals tf.train.Example's deterministic serialization."""
    import tensorflow as tf

    fields = dict(
        encoded=b"\xff\xd8\xff jpeg",
        height=256,
        width=300,
        filename="a.JPEG",
        label=999,
        synset="n15075141",
        text="toilet tissue, café",
    )
    whole = [(y0 * 500, x0 * 400, y1 * 500, x1 * 400) for x0, y0, x1, y1 in bboxes]
    ours = records.to_example(
        **fields,
        bboxes=bboxes,
        original_size=(500, 400),
        original_crop=(50.0, 0.0, 450.0, 400.0),
        original_bboxes=whole,
    )

    def feature(kind, values):
        lists = {"b": tf.train.BytesList, "f": tf.train.FloatList, "i": tf.train.Int64List}
        name = {"b": "bytes_list", "f": "float_list", "i": "int64_list"}[kind]
        return tf.train.Feature(**{name: lists[kind](value=values)})

    columns = list(zip(*bboxes)) if bboxes else [(), (), (), ()]
    theirs = tf.train.Example(
        features=tf.train.Features(
            feature={
                "image/encoded": feature("b", [fields["encoded"]]),
                "image/format": feature("b", [b"JPEG"]),
                "image/height": feature("i", [256]),
                "image/width": feature("i", [300]),
                "image/channels": feature("i", [3]),
                "image/colorspace": feature("b", [b"RGB"]),
                "image/filename": feature("b", [b"a.JPEG"]),
                "image/class/label": feature("i", [999]),
                "image/class/synset": feature("b", [b"n15075141"]),
                "image/class/text": feature("b", ["toilet tissue, café".encode()]),
                "image/object/bbox/xmin": feature("f", columns[0]),
                "image/object/bbox/ymin": feature("f", columns[1]),
                "image/object/bbox/xmax": feature("f", columns[2]),
                "image/object/bbox/ymax": feature("f", columns[3]),
                "image/object/bbox/label": feature("i", [999] * len(bboxes)),
                "image/original/height": feature("i", [500]),
                "image/original/width": feature("i", [400]),
                "image/original/crop": feature("f", [50.0, 0.0, 450.0, 400.0]),
                **{
                    f"image/original/bbox/{k}": feature("f", [b[i] for b in whole])
                    for i, k in enumerate(("ymin", "xmin", "ymax", "xmax"))
                },
            }
        )
    )
    assert ours == theirs.SerializeToString(deterministic=True)
    assert set(tf.train.Example.FromString(ours).features.feature) == set(records.KEYS)


def test_tfrecord_framing_reads_with_tf_data(tmp_path):
    import tensorflow as tf

    path = tmp_path / "shard"
    payloads = [b"", b"one", bytes(range(256)) * 300]
    path.write_bytes(b"".join(records.tfrecord(p) for p in payloads))
    assert list(tf.data.TFRecordDataset(str(path)).as_numpy_iterator()) == payloads


def test_default_shard_counts_follow_ilsvrc_and_shrink_for_small_sets():
    from alexnet_tf.convert.converter import default_shards

    assert default_shards(1_281_167, 1024) == 1024 and default_shards(50_000, 128) == 128
    assert default_shards(1000, 1024) == 10 and default_shards(30, 128) == 1
