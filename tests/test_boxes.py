"""Boxes through the crops of section 4.1 (localization, ILSVRC-2012 task 2).

The geometry of `alexnet_tf.data.boxes` is checked against plain NumPy arithmetic, and the
pipeline's boxes against the crops it actually cut: real photographs from scikit-learn and
scikit-image, converted with their ILSVRC-style XML annotations by the real converter.
"""

import numpy as np
import pytest
import tensorflow as tf

from alexnet_tf.convert import convert, verify
from alexnet_tf.data import boxes, crops, examples, records
from alexnet_tf.data import input_pipeline as ip
from alexnet_tf.data.augment import Normalizer
from alexnet_tf.data.demo_data import encode_jpeg, sample_photographs
from alexnet_tf.data.manifest import load_manifest

SIZE = ip.IMAGE_SIZE  # 227
# (photo, wnid, boxes (xmin, ymin, xmax, ymax) in pixels); china, chelsea and coffee are wider
# than high, so their central crops cut them left and right.
PHOTOS = [
    ("china", "n00000001", [(100, 50, 400, 300)]),  # 640×427: cut by the crop at x=106.5
    ("chelsea", "n00000002", [(150, 50, 300, 250)]),  # 451×300: inside the crop
    ("coffee", "n00000003", [(200, 50, 400, 350), (20, 20, 80, 80)]),  # 600×400: 2nd cut away
    ("astronaut", "n00000004", []),  # no annotation
]


def _xml(width, height, wnid, objects):
    body = "".join(
        f"<object><name>{wnid}</name><bndbox><xmin>{a}</xmin><ymin>{b}</ymin><xmax>{c}</xmax>"
        f"<ymax>{d}</ymax></bndbox></object>"
        for a, b, c, d in objects
    )
    return (
        f"<annotation><size><width>{width}</width><height>{height}</height><depth>3</depth>"
        f"</size>{body}</annotation>"
    )


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    """The photos converted at 256×256 and at their original size: {resize: (files, photos)}."""
    root = tmp_path_factory.mktemp("boxed")
    photos = sample_photographs()
    for name, wnid, objects in PHOTOS:
        folder = root / "train" / wnid
        folder.mkdir(parents=True)
        (folder / f"{wnid}_{name}.JPEG").write_bytes(encode_jpeg(photos[name], quality=95))
        if objects:
            height, width = photos[name].shape[:2]
            xml = root / "Annotation" / wnid / f"{wnid}_{name}.xml"
            xml.parent.mkdir(parents=True, exist_ok=True)
            xml.write_text(_xml(width, height, wnid, objects))
    out = {}
    for resize in (256, 0):
        output = str(root / f"data{resize}")
        result = convert(
            output_dir=output,
            train_dir=str(root / "train"),
            bbox_dir=str(root / "Annotation"),
            resize=resize,
            num_workers=1,
            show_progress=False,
        )
        assert result.complete and not result.bad_boxes
        out[resize] = load_manifest(output).split("train").files
    return {"files": out, "photos": {name: photos[name] for name, _, _ in PHOTOS}}


def _records(files):
    found = {}
    for serialized in tf.data.TFRecordDataset(files).as_numpy_iterator():
        feature = tf.train.Example.FromString(serialized).features.feature
        record = {k: list(getattr(v, v.WhichOneof("kind")).value) for k, v in feature.items()}
        found[int(record["image/class/label"][0])] = record
    return found


def _geometry_np(height, width):
    """The converter's frame of a height×width photo: its central square, float pixels."""
    side = min(height, width)
    top, left = (height - side) / 2, (width - side) / 2
    return np.array([top, left, top + side, left + side, height, width], np.float32)


# --------------------------------------------------------------------------- geometry


def test_crop_reflect_and_back_to_a_non_square_original_match_numpy():
    height, width = sample_photographs()["china"].shape[:2]  # 427×640
    geometry = _geometry_np(height, width)
    box = np.array([100.0, 150.0, 300.0, 400.0], np.float32)  # pixels of the original
    side = min(height, width)
    left = (width - side) / 2
    frame = boxes.original_to_frame(box, geometry)
    np.testing.assert_allclose(
        frame, [100 / side, (150 - left) / side, 300 / side, (400 - left) / side], rtol=1e-6
    )
    rng = np.random.default_rng(0)
    for dy, dx in rng.integers(0, crops.CROP_RANGE, size=(20, 2)):
        offset = np.array([dy, dx], np.float32)
        in_crop = boxes.frame_to_crop(frame, offset)
        want = (frame * 256 - np.array([dy, dx, dy, dx])) / 227
        np.testing.assert_allclose(in_crop, want, rtol=1e-5, atol=1e-6)
        mirrored = boxes.reflect(in_crop)
        np.testing.assert_allclose(
            mirrored, [want[0], 1 - want[3], want[2], 1 - want[1]], atol=1e-6
        )
        back = boxes.frame_to_original(
            boxes.crop_to_frame(boxes.reflect(mirrored), offset), geometry
        )
        np.testing.assert_allclose(back, box, atol=1e-3)


def _in_patches_np(box, geometry):
    """A pixel box seen in each of the ten patches (NumPy): normalized, reflected for 5..9."""
    frame = (box - geometry[[0, 1, 0, 1]]) / (geometry[2] - geometry[0])
    out = []
    for k in range(10):
        dy, dx = crops.TEN_PATCHES[k % 5]
        b = (frame * 256 - np.array([dy, dx, dy, dx])) / 227
        out.append([b[0], 1 - b[3], b[2], 1 - b[1]] if k >= 5 else b)
    return np.array(out, np.float32)


def test_ten_patch_boxes_map_back_to_the_original():
    geometry = np.stack([_geometry_np(427, 640), _geometry_np(512, 300)])
    truth = np.array([[100, 150, 300, 400], [20, 30, 400, 280]], np.float32)
    predicted = np.stack([_in_patches_np(b, g) for b, g in zip(truth, geometry, strict=True)])
    mapped = boxes.patch_boxes_to_original(predicted, geometry, ten_patch=True)
    assert mapped.shape == (2, 10, 4) and isinstance(mapped, np.ndarray)
    np.testing.assert_allclose(mapped, np.repeat(truth[:, None], 10, 1), atol=1e-2)
    centre = boxes.patch_boxes_to_original(predicted[:, 0], geometry, ten_patch=False)
    np.testing.assert_allclose(centre, truth, atol=1e-2)
    as_tensor = boxes.patch_boxes_to_original(tf.constant(predicted), tf.constant(geometry), True)
    np.testing.assert_allclose(as_tensor.numpy(), mapped, atol=1e-4)


# --------------------------------------------------------------------------- records, pipeline


def test_one_feature_spec_for_converter_pipeline_and_verify(converted):
    record = _records(converted["files"][256])[0]
    assert set(record) == set(records.KEYS)  # the converter writes exactly the spec
    spec = examples.tf_features()
    assert set(spec) == set(records.KEYS)
    for feature in records.FEATURE_SPEC:
        kind = tf.io.VarLenFeature if feature.kind == records.VAR else tf.io.FixedLenFeature
        assert isinstance(spec[feature.name], kind)
    assert set(examples.FEATURES) | set(examples.BOX_FEATURES) <= set(records.KEYS)
    # --verify parses with the same spec, every key required: the converter's records pass.
    count, problems = verify._check_records(converted["files"][256][0], 4, 0)
    assert count == len(PHOTOS) and problems == []


def _locate(crop, stored):
    """(dy, dx) of a 227×227 crop inside its 256×256 image (the best match of a 32×32 block)."""
    windows = np.lib.stride_tricks.sliding_window_view(
        stored[96:158, 96:158].astype(float), (32, 32, 3)
    )
    cost = np.abs(windows[:30, :30, 0] - crop[96:128, 96:128].astype(float)).mean(axis=(2, 3, 4))
    return np.unravel_index(np.argmin(cost), cost.shape)


@pytest.mark.parametrize("resize", [256, 0])
def test_train_boxes_follow_the_random_crop_and_the_reflection(converted, resize):
    """For 256×256 records and for original-size ones (cut to their central square here)."""
    files = converted["files"][resize]
    by_label = _records(files)
    kwargs = dict(seed=3, deterministic=True, shuffle_buffer=4)
    with_boxes = ip.make_train_dataset(files, 4, with_boxes=True, **kwargs)
    plain = ip.make_train_dataset(files, 4, **kwargs)
    for (images, labels, got, has_box), (plain_images, plain_labels) in zip(
        with_boxes.take(3), plain.take(3), strict=True
    ):
        assert got.dtype == tf.float32 and has_box.dtype == tf.bool and got.shape == (4, 4)
        np.testing.assert_array_equal(images, plain_images)  # the same stream, boxes or not
        np.testing.assert_array_equal(labels, plain_labels)
        for image, label, box, has in zip(
            images.numpy(), labels.numpy(), got.numpy(), has_box.numpy(), strict=True
        ):
            record = by_label[int(label)]
            stored = crops.stored_image_from_jpeg(record["image/encoded"][0]).numpy()
            dy, dx = _locate(image, stored)
            keys = ("ymin", "xmin", "ymax", "xmax")
            mine = np.array([record[f"image/object/bbox/{k}"] for k in keys]).T.reshape(-1, 4)
            height, width = record["image/height"][0], record["image/width"][0]
            side = min(height, width)
            top, left = (height - side) // 2, (width - side) // 2
            mine = (mine * [height, width, height, width] - [top, left, top, left]) / side
            if len(mine) == 0:
                assert not has and np.all(box == 0)
                continue
            in_crop = np.clip((mine * 256 - [dy, dx, dy, dx]) / 227, 0, 1)
            areas = (in_crop[:, 2] - in_crop[:, 0]) * (in_crop[:, 3] - in_crop[:, 1])
            assert has
            np.testing.assert_allclose(box, in_crop[np.argmax(areas)], atol=1e-5)
        seed = tf.constant([5, 6])
        mirrored = Normalizer.reflect(images, seed)
        flipped = boxes.reflect(got)
        reflected = Normalizer.reflect_boxes(got, seed)
        for k in range(4):
            was = not np.array_equal(mirrored[k], images[k])
            np.testing.assert_allclose(reflected[k], flipped[k] if was else got[k])


def test_eval_carries_whole_ground_truth_and_geometry(converted):
    photos = converted["photos"]
    for resize in (256, 0):
        dataset = ip.make_eval_dataset(
            converted["files"][resize], 3, ten_patch=True, with_boxes=True
        )
        seen = 0
        for images, labels, mask, gt, valid, geometry in dataset:
            assert images.shape == (3, 10, 227, 227, 3) and geometry.shape == (3, 6)
            assert gt.shape[0] == 3 and gt.shape[2] == 4 and valid.shape == gt.shape[:2]
            for k in np.flatnonzero(mask.numpy()):
                name, _, objects = PHOTOS[int(labels[k])]
                height, width = photos[name].shape[:2]
                want = np.array([(b, a, d, c) for a, b, c, d in objects], np.float32).reshape(-1, 4)
                assert valid[k].numpy().sum() == len(want)
                np.testing.assert_allclose(gt[k][valid[k]], want, atol=1e-3)  # never clipped
                expected = _geometry_np(height, width)
                if resize == 0:  # the pipeline's own central square: whole pixels
                    side = min(height, width)
                    top, left = (height - side) // 2, (width - side) // 2
                    expected[:4] = [top, left, top + side, left + side]
                np.testing.assert_allclose(geometry[k], expected, atol=1e-3)
                for box in want:
                    predicted = _in_patches_np(box, geometry[k].numpy())[None]
                    mapped = boxes.patch_boxes_to_original(
                        predicted, geometry[k : k + 1].numpy(), True
                    )
                    np.testing.assert_allclose(mapped[0].mean(0), box, atol=1e-2)
                seen += 1
        assert seen == len(PHOTOS)


def test_examples_without_boxes_are_marked(converted):
    dataset = ip.make_train_dataset(
        converted["files"][0], 4, seed=1, deterministic=True, with_boxes=True
    )
    _, labels, got, has_box = next(iter(dataset))
    for label, box, has in zip(labels.numpy(), got.numpy(), has_box.numpy(), strict=True):
        if PHOTOS[label][2]:
            assert has and np.all((box >= 0) & (box <= 1)) and box[2] > box[0]
        else:
            assert not has and np.all(box == 0)
