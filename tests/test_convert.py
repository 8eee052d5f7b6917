"""The converter on a tiny ILSVRC-style tree of real photographs with every bad case planted.

The tree (built once per module) holds real photographs from scikit-learn and scikit-image:
a class folder, a class packed as the official per-class .tar, and a folder of repairs:

    PNG bytes behind .JPEG, CMYK JPEG, grayscale JPEG          -> repaired, kept
    empty file, text file, truncated JPEG, corrupt JPEG header -> skipped, reported

Shards are read back with plain tf.data and tf.train.Example, never with our own reader.
"""

import hashlib
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import time

import background
import numpy as np
import pytest
from PIL import Image

from alexnet_tf.convert import ConvertError, convert
from alexnet_tf.convert.verify import verify
from alexnet_tf.data.demo_data import encode_jpeg, sample_photographs
from alexnet_tf.data.manifest import load_manifest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOOL = os.path.join(REPO, "tools", "build_imagenet_tfrecords.py")
TENCH, TABBY, FENCE = "n01440764", "n02123045", "n03000134"
GOOD = {
    f"{TENCH}_china.JPEG": 0,
    f"{TENCH}_flower.JPEG": 0,
    f"{TENCH}_rocket.JPEG": 0,
    f"{TENCH}_png.JPEG": 0,
    f"{TABBY}_chelsea.JPEG": 1,
    f"{TABBY}_cmyk.JPEG": 1,
    f"{TABBY}_hubble.JPEG": 1,
    f"{FENCE}_gray.JPEG": 2,
    f"{FENCE}_astronaut.JPEG": 2,
}
REPAIRED = {
    f"{TENCH}_png.JPEG": "PNG",
    f"{TABBY}_cmyk.JPEG": "CMYK",
    f"{FENCE}_gray.JPEG": "grayscale",
}
SKIPPED = {
    f"{TENCH}_empty.JPEG": "empty",
    f"{TENCH}_notes.JPEG": "not an image",
    f"{TABBY}_truncated.JPEG": "truncated",
    f"{FENCE}_corrupt.JPEG": "undecodable",
}
VAL = [("chelsea", TABBY), ("china", TENCH), ("camera", FENCE), ("coffee", TABBY)]
OPTIONS = dict(train_shards=6, val_shards=2, resize=256, show_progress=False)


def _png(image):
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


def _write(path, data):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)


def _voc_xml(width, height, *objects):
    """An ILSVRC annotation: objects are (wnid, (xmin, ymin, xmax, ymax)) in pixels."""
    body = "".join(
        f"<object><name>{wnid}</name><bndbox><xmin>{xmin}</xmin><ymin>{ymin}</ymin>"
        f"<xmax>{xmax}</xmax><ymax>{ymax}</ymax></bndbox></object>"
        for wnid, (xmin, ymin, xmax, ymax) in objects
    )
    return (
        f"<annotation><size><width>{width}</width><height>{height}</height><depth>3</depth>"
        f"</size>{body}</annotation>"
    ).encode()


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    """The planted tree: {"root", "train", "val", "labels", "bbox", "files"}."""
    return _plant_tree(str(tmp_path_factory.mktemp("ilsvrc")))


def _plant_tree(root: str) -> dict:
    photos = sample_photographs()
    train, val = os.path.join(root, "train"), os.path.join(root, "val")
    china = encode_jpeg(photos["china"])
    files = {
        f"{TENCH}/{TENCH}_china.JPEG": china,
        f"{TENCH}/{TENCH}_flower.JPEG": encode_jpeg(photos["flower"]),
        f"{TENCH}/{TENCH}_rocket.JPEG": encode_jpeg(photos["rocket"]),
        f"{TENCH}/{TENCH}_png.JPEG": _png(photos["astronaut"]),
        f"{TENCH}/{TENCH}_empty.JPEG": b"",
        f"{TENCH}/{TENCH}_notes.JPEG": b"photographer: unknown\nlicence: public domain\n",
        f"{FENCE}/{FENCE}_gray.JPEG": encode_jpeg(photos["camera"]),
        f"{FENCE}/{FENCE}_astronaut.JPEG": encode_jpeg(photos["astronaut"]),
        f"{FENCE}/{FENCE}_corrupt.JPEG": china[:2] + b"\xff\x00" * 40 + china[82:],
    }
    for name, data in files.items():
        _write(os.path.join(train, name), data)
    members = {
        f"{TABBY}_chelsea.JPEG": encode_jpeg(photos["chelsea"]),
        f"{TABBY}_cmyk.JPEG": encode_jpeg(photos["coffee"], mode="CMYK"),
        f"{TABBY}_hubble.JPEG": encode_jpeg(photos["hubble_deep_field"]),
        f"{TABBY}_truncated.JPEG": china[: len(china) // 2],
    }
    with tarfile.open(os.path.join(train, f"{TABBY}.tar"), "w") as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    for number, (photo, _) in enumerate(VAL, 1):
        _write(os.path.join(val, f"ILSVRC2012_val_{number:08d}.JPEG"), encode_jpeg(photos[photo]))
    labels = os.path.join(root, "val_labels.txt")
    _write(labels, "".join(f"{wnid}\n" for _, wnid in VAL).encode())
    bbox = os.path.join(root, "Annotation")
    # china is 640×427: a box on the left half, partly outside the central 427×427 crop.
    _write(
        os.path.join(bbox, TENCH, f"{TENCH}_china.xml"),
        _voc_xml(640, 427, (TENCH, (0, 100, 320, 300))),
    )
    _write(
        os.path.join(bbox, "val", "ILSVRC2012_val_00000001.xml"),
        _voc_xml(451, 300, (TABBY, (50, 20, 400, 280))),
    )
    # Bad annotations: each bad box is skipped and named, the image and its good box kept.
    _write(
        os.path.join(bbox, TENCH, f"{TENCH}_flower.xml"),
        _voc_xml(
            640,
            427,
            (TENCH, (200, 100, 400, 300)),  # good
            (TABBY, (10, 10, 100, 100)),  # another class
            (TENCH, (500, 10, 700, 100)),  # past the right edge
            (TENCH, (300, 50, 300, 90)),  # xmin == xmax
        ),
    )
    _write(os.path.join(bbox, TENCH, f"{TENCH}_rocket.xml"), b"<annotation><size><wid")
    return {
        "root": root,
        "train": train,
        "val": val,
        "labels": labels,
        "bbox": bbox,
        "files": files,
    }


@pytest.fixture(scope="module")
def converted(tree, tmp_path_factory):
    """The reference conversion: in this process, one worker."""
    output = str(tmp_path_factory.mktemp("converted"))
    result = convert(
        output_dir=output,
        train_dir=tree["train"],
        val_dir=tree["val"],
        val_labels=tree["labels"],
        bbox_dir=tree["bbox"],
        num_workers=1,
        **OPTIONS,
    )
    return output, result


def read_records(files):
    """Every record of `files` as a dict, parsed with plain tf.train.Example."""
    import tensorflow as tf

    records = []
    for serialized in tf.data.TFRecordDataset(files).as_numpy_iterator():
        feature = tf.train.Example.FromString(serialized).features.feature
        record = {}
        for key, value in feature.items():
            kind = value.WhichOneof("kind")
            record[key] = list(getattr(value, kind).value)
        records.append(record)
    return records


def test_records_read_back_with_plain_tf_data(converted):
    import tensorflow as tf

    output, result = converted
    assert result.complete and not result.errors
    manifest = load_manifest(output)
    assert manifest.synsets == [TENCH, TABBY, FENCE]
    assert manifest.texts == ["tench, Tinca tinca", "tabby, tabby cat", "chainlink fence"]
    records = read_records(manifest.split("train").files)
    by_name = {r["image/filename"][0].decode(): r for r in records}
    assert set(by_name) == set(GOOD)
    for name, label in GOOD.items():
        record = by_name[name]
        assert record["image/class/label"] == [label]
        assert record["image/class/synset"] == [manifest.synsets[label].encode()]
        assert record["image/class/text"] == [manifest.texts[label].encode()]
        assert record["image/format"] == [b"JPEG"] and record["image/colorspace"] == [b"RGB"]
        assert record["image/height"] == record["image/width"] == [256]
        assert record["image/channels"] == [3]
        image = tf.io.decode_jpeg(record["image/encoded"][0]).numpy()
        assert image.shape == (256, 256, 3)
    assert [n for n in manifest.split("train").num_records] == [
        len(read_records([f])) for f in manifest.split("train").files
    ]
    assert manifest.split("train").num_examples == len(GOOD)
    val = read_records(manifest.split("validation").files)
    labels = {r["image/filename"][0].decode(): r["image/class/label"][0] for r in val}
    expected = {
        f"ILSVRC2012_val_{i:08d}.JPEG": [TENCH, TABBY, FENCE].index(w)
        for i, (_, w) in enumerate(VAL, 1)
    }
    assert labels == expected


def test_bad_files_are_reported_by_content(converted):
    output, result = converted
    manifest = load_manifest(output).raw
    skipped = {os.path.basename(s["file"].split(":")[-1]): s["reason"] for s in manifest["skipped"]}
    repaired = {
        os.path.basename(s["file"].split(":")[-1]): s["reason"] for s in manifest["repaired"]
    }
    assert repaired.pop("ILSVRC2012_val_00000003.JPEG").startswith("grayscale")  # val's camera
    assert set(skipped) == set(SKIPPED)
    for name, word in SKIPPED.items():
        assert word in skipped[name], (name, skipped[name])
    assert set(repaired) == set(REPAIRED)
    for name, word in REPAIRED.items():
        assert word in repaired[name], (name, repaired[name])
    assert {s["split"] for s in manifest["skipped"]} == {"train"}
    assert any(
        s["file"].startswith(f"{TABBY}.tar:") for s in manifest["skipped"]
    )  # read in the tar


def test_repairs_keep_the_picture(converted):
    """The CMYK coffee photo comes out as the same RGB picture, not inverted or tinted."""
    import tensorflow as tf

    output, _ = converted
    records = read_records(load_manifest(output).split("train").files)
    record = next(r for r in records if r["image/filename"] == [f"{TABBY}_cmyk.JPEG".encode()])
    got = tf.io.decode_jpeg(record["image/encoded"][0]).numpy().astype(np.float32)
    coffee = Image.fromarray(sample_photographs()["coffee"])
    side = min(coffee.size)
    box = ((coffee.width - side) / 2, (coffee.height - side) / 2)
    want = coffee.resize((256, 256), Image.BILINEAR, box=(*box, box[0] + side, box[1] + side))
    assert np.abs(got - np.asarray(want, np.float32)).mean() < 12


def test_bounding_boxes_follow_the_central_crop(converted):
    output, _ = converted
    records = read_records(load_manifest(output).split("train").files)
    china = next(r for r in records if r["image/filename"] == [f"{TENCH}_china.JPEG".encode()])
    # 640×427 -> crop x in [106.5, 533.5]: box x 0..320 -> 0..(320-106.5)/427; y 100..300 of 427.
    np.testing.assert_allclose(china["image/object/bbox/xmin"], [0.0], atol=1e-6)
    np.testing.assert_allclose(china["image/object/bbox/xmax"], [(320 - 106.5) / 427], atol=1e-5)
    np.testing.assert_allclose(china["image/object/bbox/ymin"], [100 / 427], atol=1e-5)
    np.testing.assert_allclose(china["image/object/bbox/ymax"], [300 / 427], atol=1e-5)
    assert china["image/object/bbox/label"] == [0]
    # What maps back to the original 640×427 image: its size, the central crop, the whole box.
    assert china["image/original/height"] == [427] and china["image/original/width"] == [640]
    np.testing.assert_allclose(china["image/original/crop"], [0, 106.5, 427, 533.5], atol=1e-4)
    for key, value in zip(("ymin", "xmin", "ymax", "xmax"), (100, 0, 300, 320), strict=True):
        np.testing.assert_allclose(china[f"image/original/bbox/{key}"], [value], atol=1e-3)
    others = [
        r
        for r in records
        if r is not china and r["image/filename"] != [b"%s_flower.JPEG" % TENCH.encode()]
    ]
    assert all(r.get("image/object/bbox/xmin", []) == [] for r in others)
    assert all(r.get("image/original/bbox/xmin", []) == [] for r in others)


def test_bad_boxes_are_skipped_named_and_counted(converted):
    output, result = converted
    manifest = load_manifest(output).raw
    by_reason = {b["reason"]: b for b in result.bad_boxes}
    assert sorted(by_reason) == ["empty", "other_class", "outside_image", "unparsable"]
    assert len(result.bad_boxes) == 4 and manifest["bad_boxes"] == result.bad_boxes
    for bad in result.bad_boxes:
        stem = "rocket" if bad["reason"] == "unparsable" else "flower"
        assert bad["file"].endswith(f"{TENCH}_{stem}.xml") and bad["split"] == "train"
        assert bad["image"].endswith(f"{TENCH}_{stem}.JPEG") and bad["detail"]
    assert TABBY in by_reason["other_class"]["detail"]
    # The images are kept; the flower keeps its one good box.
    records = read_records(load_manifest(output).split("train").files)
    names = {r["image/filename"][0].decode(): r for r in records}
    assert (
        f"{TENCH}_rocket.JPEG" in names
        and names[f"{TENCH}_rocket.JPEG"].get("image/original/bbox/xmin", []) == []
    )
    flower = names[f"{TENCH}_flower.JPEG"]
    np.testing.assert_allclose(flower["image/original/bbox/xmin"], [200], atol=1e-3)
    assert len(flower["image/object/bbox/xmin"]) == 1
    train, val = manifest["splits"]["train"]["boxes"], manifest["splits"]["validation"]["boxes"]
    assert train == {
        "images_with_boxes": 2,
        "boxes_kept": 2,
        "boxes_skipped": {"unparsable": 1, "outside_image": 1, "empty": 1, "other_class": 1},
    }
    assert val["images_with_boxes"] == 1 and val["boxes_kept"] == 1
    assert sum(val["boxes_skipped"].values()) == 0


def test_statistics_match_the_records(converted):
    import tensorflow as tf

    output, _ = converted
    manifest = load_manifest(output)
    images = np.stack(
        [
            tf.io.decode_jpeg(r["image/encoded"][0]).numpy().astype(np.float64)
            for r in read_records(manifest.split("train").files)
        ]
    )
    # The statistics are taken before JPEG encoding, the records after: allow its small error.
    assert np.abs(manifest.mean_image() - images.mean(0)).mean() < 2.0
    np.testing.assert_allclose(manifest.channel_mean(), images.mean((0, 1, 2)), atol=2.0)
    covariance = np.asarray(manifest.statistics["rgb_covariance"])
    np.testing.assert_allclose(covariance, np.cov(images.reshape(-1, 3).T), rtol=0.05)
    values, vectors = manifest.eigen()
    assert list(values) == sorted(values, reverse=True) and values[-1] > 0
    np.testing.assert_allclose(covariance @ vectors, vectors * values, rtol=1e-3, atol=1e-2)
    assert manifest.statistics["num_images"] == len(GOOD)


def test_resize_zero_keeps_original_bytes_and_label_offset(tree, tmp_path):
    output = str(tmp_path)
    result = convert(
        output_dir=output,
        train_dir=tree["train"],
        label_offset=1,
        num_workers=1,
        **{**OPTIONS, "resize": 0, "train_shards": 2},
    )
    assert result.complete and set(result.num_examples) == {"train"}
    manifest = load_manifest(output)
    assert manifest.label_offset == 1
    records = {
        r["image/filename"][0].decode(): r for r in read_records(manifest.split("train").files)
    }
    original = tree["files"][f"{TENCH}/{TENCH}_china.JPEG"]
    assert records[f"{TENCH}_china.JPEG"]["image/encoded"] == [original]
    assert records[f"{TENCH}_china.JPEG"]["image/height"] == [427]
    assert records[f"{TENCH}_china.JPEG"]["image/class/label"] == [1]
    assert records[f"{FENCE}_gray.JPEG"]["image/class/label"] == [3]
    assert records[f"{TENCH}_png.JPEG"]["image/encoded"][0][:3] == b"\xff\xd8\xff"
    assert records[f"{TENCH}_png.JPEG"]["image/width"] == [512]


def test_labels_file_sets_order_and_text(tree, tmp_path):
    labels_file = tmp_path / "classes.txt"
    labels_file.write_text(f"{FENCE} wire fence\n{TABBY}\n{TENCH}\nn09999999 no images\n")
    result = convert(
        output_dir=str(tmp_path / "out"),
        val_dir=tree["val"],
        val_labels=tree["labels"],
        labels_file=str(labels_file),
        num_workers=1,
        **OPTIONS,
    )
    manifest = load_manifest(str(tmp_path / "out"))
    assert result.complete and manifest.synsets == [FENCE, TABBY, TENCH, "n09999999"]
    assert manifest.texts[:3] == ["wire fence", "tabby, tabby cat", "tench, Tinca tinca"]
    labels = {
        r["image/filename"][0].decode(): r["image/class/label"][0]
        for r in read_records(manifest.split("validation").files)
    }
    assert labels["ILSVRC2012_val_00000003.JPEG"] == 0


def test_val_file_without_valid_label_stops_the_run(tree, tmp_path):
    short = tmp_path / "short.txt"
    short.write_text(f"{TABBY}\n{TENCH}\n{FENCE}\n")
    with pytest.raises(ConvertError, match="ILSVRC2012_val_00000004.JPEG has no label"):
        convert(
            output_dir=str(tmp_path / "a"),
            train_dir=tree["train"],
            val_dir=tree["val"],
            val_labels=str(short),
            num_workers=1,
            **OPTIONS,
        )
    alien = tmp_path / "alien.txt"
    alien.write_text(f"{TABBY}\nn04596742\n{FENCE}\n{TABBY}\n")
    with pytest.raises(ConvertError, match="ILSVRC2012_val_00000002.JPEG has label 'n04596742'"):
        convert(
            output_dir=str(tmp_path / "b"),
            train_dir=tree["train"],
            val_dir=tree["val"],
            val_labels=str(alien),
            num_workers=1,
            **OPTIONS,
        )
    assert not os.path.exists(tmp_path / "b" / "manifest.json")


def test_verify_accepts_good_shards_and_names_bad_ones(converted, tmp_path):
    output, _ = converted
    good = verify(output, show_progress=False)
    assert good.ok and good.num_records == len(GOOD) + len(VAL), good.problems
    copy = str(tmp_path / "copy")
    shutil.copytree(output, copy)
    shard = load_manifest(copy).split("train").files[1]
    with open(shard, "r+b") as f:
        f.seek(40)
        byte = f.read(1)
        f.seek(40)
        f.write(bytes([byte[0] ^ 0xFF]))
    os.remove(load_manifest(copy).split("validation").files[0])
    bad = verify(copy, show_progress=False)
    assert not bad.ok
    assert any(os.path.basename(shard) in p and "SHA-256" in p for p in bad.problems)
    assert any("validation-00000-of-00002: missing" in p for p in bad.problems)


def test_splits_converted_separately_share_one_manifest(tree, tmp_path):
    output = str(tmp_path)
    common = dict(output_dir=output, num_workers=1, **OPTIONS)
    assert convert(train_dir=tree["train"], **common).complete
    assert (
        convert(
            train_dir=tree["train"], val_dir=tree["val"], val_labels=tree["labels"], **common
        ).shards_reused
        == 6
    )
    manifest = load_manifest(output)
    assert manifest.split("train").num_examples == len(GOOD)
    assert manifest.split("validation").num_examples == len(VAL)
    assert manifest.statistics["num_images"] == len(GOOD)


def _tool(args, **kwargs):
    """The converter tool in a process; its stdout is dropped unless asked for (a background job
    calls this while a test may be capturing the terminal)."""
    env = {**background.ENVIRONMENT, "TF_CPP_MIN_LOG_LEVEL": "2"}
    kwargs = {"stdout": subprocess.DEVNULL, **kwargs}
    return subprocess.Popen([sys.executable, TOOL, *args], cwd=REPO, env=env, **kwargs)


def test_tool_exit_status_and_message_on_bad_input(tree, tmp_path):
    missing = tmp_path / "missing.txt"
    process = _tool(
        [f"--output_dir={tmp_path}", f"--val_dir={tree['val']}", f"--val_labels={missing}"],
        stderr=subprocess.PIPE,
        text=True,
    )
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 2
    assert stderr.startswith(f"build_imagenet_tfrecords: error: --val_labels={missing} can't")
    assert stderr.count("\n") == 1
    # A flag absl can't parse is bad input too: one line, status 2, nothing written.
    unknown = _tool([f"--output_dir={tmp_path / 'new'}", "--train_shard=4"], stderr=subprocess.PIPE,
                    text=True)  # fmt: skip
    _, stderr = unknown.communicate(timeout=120)
    assert unknown.returncode == 2
    assert stderr.startswith("build_imagenet_tfrecords: error: Unknown command line flag")
    assert stderr.count("\n") == 1 and not (tmp_path / "new").exists()


def _digests(folder):
    names = sorted(n for n in os.listdir(folder) if "-of-" in n and not n.startswith("."))
    return {
        n: hashlib.sha256(open(os.path.join(folder, n), "rb").read()).hexdigest() for n in names
    }


# A program that converts with two workers; its first line runs in every process that imports it.
_PROGRAM = """
import os
with open(os.environ["IMPORTED_BY"], "a") as f:
    f.write(f"{os.getpid()}\\n")
from alexnet_tf.convert import convert

if __name__ == "__main__":
    result = convert(output_dir=os.environ["OUT"], train_dir=os.environ["TRAIN"],
                     train_shards=2, resize=256, num_workers=2, show_progress=False)
    assert result.complete and result.shards_written == 2, result
"""


def test_workers_do_not_import_the_program_that_started_them(tree, tmp_path):
    """A binary imports TensorFlow; a spawned worker that imported it again would spend seconds
    before its first image. Run as `python -m` (a module name) and as a script (a path)."""
    (tmp_path / "program.py").write_text(_PROGRAM)
    runs = {"module": ["-m", "program"], "script": [str(tmp_path / "program.py")]}
    started = {}
    for how, args in runs.items():
        env = {**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{REPO}", "TRAIN": tree["train"],
               "OUT": str(tmp_path / how), "IMPORTED_BY": str(tmp_path / f"{how}.txt")}  # fmt: skip
        started[how] = subprocess.Popen(
            [sys.executable, *args], cwd=tmp_path, env=env, stderr=subprocess.PIPE, text=True
        )
    for how, process in started.items():
        _, stderr = process.communicate(timeout=120)
        assert process.returncode == 0, stderr
        assert (tmp_path / f"{how}.txt").read_text() == f"{process.pid}\n"  # the parent only


@background.job()
def killed_conversion(folder):
    """The tool on a tree of its own (the same files as `tree`), SIGKILLed once its first shard
    is whole, then the same command with two workers and --verify. Returns {"output", "killed"
    (a copy of the folder as the kill left it), "code", "stderr" (the second run's)}."""
    tree = _plant_tree(str(folder / "ilsvrc"))
    output = str(folder / "out")
    args = [
        f"--output_dir={output}",
        f"--train_dir={tree['train']}",
        f"--val_dir={tree['val']}",
        f"--val_labels={tree['labels']}",
        f"--bbox_dir={tree['bbox']}",
        "--train_shards=6",
        "--val_shards=2",
    ]
    first = _tool([*args, "--num_workers=1"], start_new_session=True, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while not (os.path.isdir(output) and _digests(output)) and first.poll() is None:
            assert time.monotonic() < deadline
            time.sleep(0.002)
    finally:
        os.killpg(first.pid, signal.SIGKILL)
        first.wait()
    shutil.copytree(output, folder / "killed")
    second = _tool([*args, "--num_workers=2", "--verify"], stderr=subprocess.PIPE, text=True)
    _, stderr = second.communicate(timeout=300)
    return {"output": output, "killed": str(folder / "killed"), "code": second.returncode,
            "stderr": stderr}  # fmt: skip


def test_killed_run_resumes_to_identical_shards(killed_conversion, converted):
    """SIGKILL mid-run leaves only whole shards; the re-run (2 workers) equals the reference."""
    import tensorflow as tf

    reference, _ = converted
    run = killed_conversion
    done = _digests(run["killed"])
    assert 0 < len(done) < 8, "the kill should land mid-run"
    assert not os.path.exists(os.path.join(run["killed"], "manifest.json"))
    for name in done:  # every shard under a final name is whole
        tf.data.TFRecordDataset(os.path.join(run["killed"], name)).reduce(0, lambda n, _: n + 1)

    output, stderr = run["output"], run["stderr"]
    assert run["code"] == 0, stderr
    assert f"{len(done)} kept" in stderr
    assert _digests(output) == _digests(reference)
    with (
        open(os.path.join(output, "manifest.json")) as f,
        open(os.path.join(reference, "manifest.json")) as g,
    ):
        ours, theirs = json.load(f), json.load(g)
    assert ours["splits"] == theirs["splits"] and ours["statistics"] == theirs["statistics"]
    assert not [n for n in os.listdir(output) if ".tmp-" in n]


def test_failed_shards_leave_no_manifest_and_no_shard(tree, tmp_path):
    """A shard that can't be written is an error (exit 1 in the tool), not a silent gap."""
    output = tmp_path / "out"
    output.mkdir()
    (output / ".convert_state").write_text("a file where the state folder should be")
    result = convert(output_dir=str(output), train_dir=tree["train"], num_workers=1, **OPTIONS)
    assert not result.complete and result.manifest_path is None
    assert len(result.errors) == 6 and "train-00000-of-00006" in result.errors[0]
    assert sorted(os.listdir(output)) == [".convert_state"]
