"""Tests of the input pipeline and the batch normalizer (section 4.1).

The shards here are written from real photographs that ship with scikit-learn and scikit-image,
in the tensorflow/models layout (`image/encoded`, `image/class/label`, ...), both as the paper's
256×256 images and at their original size.
"""

import os

import numpy as np
import pytest
import tensorflow as tf

from alexnet_tf.data import crops
from alexnet_tf.data import input_pipeline as ip
from alexnet_tf.data.augment import IMAGENET_EIGENVALUES, IMAGENET_EIGENVECTORS, make_normalizer
from alexnet_tf.data.manifest import load_manifest, write_manifest

SIZE = ip.IMAGE_SIZE  # 227


def _photos():
    import skimage.data
    from sklearn.datasets import load_sample_images

    return list(load_sample_images().images) + [
        skimage.data.astronaut(),
        skimage.data.coffee(),
        skimage.data.chelsea(),
    ]


def _square256(photo):
    """Section 2 without the code under test: the central square (NumPy), resized to 256×256 by
    Pillow's bilinear filter (which widens with the reduction, like an antialiased resize)."""
    from PIL import Image

    h, w = photo.shape[:2]
    s = min(h, w)
    square = photo[(h - s) // 2 : (h - s) // 2 + s, (w - s) // 2 : (w - s) // 2 + s]
    return np.asarray(Image.fromarray(square).resize((256, 256), Image.BILINEAR))


def _example(jpeg, label, name, height=256, width=256):
    def b(v):
        return tf.train.Feature(bytes_list=tf.train.BytesList(value=[v]))

    def i(v):
        return tf.train.Feature(int64_list=tf.train.Int64List(value=[v]))

    feature = {
        "image/encoded": b(jpeg),
        "image/class/label": i(label),
        "image/filename": b(name.encode()),
        "image/height": i(height),
        "image/width": i(width),
        "image/class/synset": b(b"n00000000"),
    }
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def _write(path, records):
    with tf.io.TFRecordWriter(str(path)) as writer:
        for record in records:
            writer.write(record)
    return str(path)


def _jpeg(image):
    return tf.io.encode_jpeg(image, quality=90).numpy()


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """Two 256×256 shards (6 + 5 records, label = record number), an original-size shard
    with tensorflow/models labels (offset 1), and a manifest with the statistics."""
    root = tmp_path_factory.mktemp("photo_shards")
    photos = _photos()
    stored = [_square256(p) for p in photos]
    # 15: the photos, upside down, and turned a quarter
    images = (
        stored + [s[::-1] for s in stored] + [np.ascontiguousarray(np.rot90(s)) for s in stored]
    )
    records = [_example(_jpeg(im), k, f"photo_{k}.JPEG") for k, im in enumerate(images[:11])]
    files = [_write(root / "train-00000-of-00002", records[:6])]
    files.append(_write(root / "train-00001-of-00002", records[6:]))
    original = [
        _example(_jpeg(p), k + 1, f"original_{k}.JPEG", *p.shape[:2]) for k, p in enumerate(photos)
    ]
    original_file = _write(root / "original-00000-of-00001", original)
    pixels = np.stack(images[:11]).astype(np.float64)
    covariance = np.cov(pixels.reshape(-1, 3), rowvar=False)
    eigenvalues, eigenvectors = np.linalg.eigh(covariance)
    np.save(root / "mean_image.npy", pixels.mean(0).astype(np.float32))
    shards = [{"file": os.path.basename(f), "num_records": n} for f, n in zip(files, (6, 5))]
    write_manifest(
        str(root),
        {
            "label_offset": 0,
            "classes": [{"synset": f"n{k:08d}"} for k in range(11)],
            "splits": {"train": {"num_examples": 11, "shards": shards}},
            "statistics": {
                "mean_image": "mean_image.npy",
                "channel_mean": pixels.mean((0, 1, 2)).tolist(),
                "rgb_covariance": covariance.tolist(),
                "eigenvalues": eigenvalues[::-1].tolist(),
                "eigenvectors": eigenvectors[:, ::-1].tolist(),
            },
        },
    )
    return {
        "files": files,
        "original": original_file,
        "photos": photos,
        "stored": images[:11],
        "manifest": load_manifest(str(root)),
        "jpegs": [tf.train.Example.FromString(r).features.feature for r in records],
    }


def _encoded(data, k):
    return data["jpegs"][k]["image/encoded"].bytes_list.value[0]


def _decoded(encoded):
    return tf.io.decode_jpeg(encoded, channels=3).numpy()


# --------------------------------------------------------------------------- crops


def _close(a, b):
    """Equal up to libjpeg's chroma upsampling at a crop's edge: decode_and_crop_jpeg and a slice
    of the full decode can differ by a few grey levels in a few edge pixels."""
    d = np.abs(a.astype(np.int16) - b)
    return d.max() <= 12 and d.mean() < 0.05


def _locate(crop, image):
    """(dy, dx, flipped) of a 227×227 crop inside a 256×256 image, or None."""
    for flipped in (False, True):
        patch = crop[:, ::-1] if flipped else crop
        for dy in range(256 - SIZE + 1):
            for dx in range(256 - SIZE + 1):
                block = image[dy + 8 : dy + 16, dx + 8 : dx + 16]
                if _close(block, patch[8:16, 8:16]) and _close(
                    image[dy : dy + SIZE, dx : dx + SIZE], patch
                ):
                    return dy, dx, flipped
    return None


def test_train_crops_lie_inside_the_image_unreflected(data):
    encoded = _encoded(data, 1)
    image = _decoded(encoded)
    found = []
    for i in range(24):
        crop = ip.train_preprocess(tf.constant(encoded), tf.constant([7, i], tf.int64)).numpy()
        assert crop.shape == (SIZE, SIZE, 3) and crop.dtype == np.uint8
        where = _locate(crop, image)
        assert where is not None, f"crop {i} is not a 227×227 patch of the image"
        found.append(where)
    offsets = np.array([(dy, dx) for dy, dx, _ in found])
    assert offsets.min() >= 0 and offsets.max() <= 29
    assert len(set(map(tuple, offsets))) > 12  # the offsets vary
    assert not any(flipped for *_, flipped in found)  # reflections come in the normalizer


def test_the_normalizer_reflects_about_half_the_images_of_a_training_batch(data):
    crops = np.stack(data["stored"])[:, 10 : 10 + SIZE, 5 : 5 + SIZE]  # 11 distinct photos
    batch = np.concatenate([crops] * 6)  # 66 images
    normalizer = make_normalizer(None, mean="none", pca_std=0.0)  # reflection only
    seed = tf.constant([4, 2], tf.int64)
    out = normalizer(batch, training=True, seed=seed).numpy()
    mirrored = [np.array_equal(o, b[:, ::-1]) for o, b in zip(out, batch)]
    kept = [np.array_equal(o, b) for o, b in zip(out, batch)]
    assert all(m != k for m, k in zip(mirrored, kept))  # each image: itself or its mirror
    assert 20 <= sum(mirrored) <= 46  # p = 1/2 (a 99.8% interval for 66 draws)
    again = normalizer(batch, training=True, seed=seed).numpy()
    np.testing.assert_array_equal(out, again)  # a pure function of the seed
    other = normalizer(batch, training=True, seed=tf.constant([4, 3], tf.int64)).numpy()
    assert not np.array_equal(out, other)
    traced = tf.function(lambda x, s: normalizer(x, training=True, seed=s))(batch, seed)
    np.testing.assert_array_equal(traced, out)
    np.testing.assert_array_equal(normalizer(batch, training=False), batch)  # never in eval


def test_ten_patches_equal_a_numpy_reference(data):
    encoded = _encoded(data, 2)
    image = _decoded(encoded)
    starts = [(14, 14), (0, 0), (0, 29), (29, 0), (29, 29)]  # centre, TL, TR, BL, BR
    reference = [image[y : y + SIZE, x : x + SIZE] for y, x in starts]
    reference = np.stack(reference + [p[:, ::-1] for p in reference])
    np.testing.assert_array_equal(ip.eval_crops(tf.constant(encoded), ten_patch=True), reference)
    assert _close(ip.eval_crops(tf.constant(encoded)).numpy(), reference[0])


def test_original_size_images_are_resized_on_the_shorter_side_then_cropped(data):
    photo = data["photos"][0]  # 427×640
    encoded = _jpeg(photo)
    stored = crops.stored_image_from_jpeg(tf.constant(encoded)).numpy()
    assert stored.shape == (256, 256, 3)
    # Two resampling implementations: the same to a level of rounding (a crop off by one pixel,
    # or a resize without the antialiasing filter, is several levels off on average).
    difference = np.abs(stored.astype(int) - _square256(_decoded(encoded)).astype(int))
    assert difference.max() <= 2 and difference.mean() < 0.25
    patches = ip.eval_crops(tf.constant(encoded), ten_patch=True).numpy()
    np.testing.assert_array_equal(patches[4], stored[29:, 29:])
    crop = ip.train_preprocess(tf.constant(encoded), tf.constant([1, 2], tf.int64)).numpy()
    assert _locate(crop, stored) is not None


def test_transforms_are_the_same_eagerly_and_inside_tf_data(data):
    encoded = [_encoded(data, k) for k in range(3)]
    seeds = tf.constant([[3, 0], [3, 1], [3, 2]], tf.int64)
    eager = [ip.train_preprocess(tf.constant(e), s) for e, s in zip(encoded, seeds)]
    mapped = tf.data.Dataset.from_tensor_slices((encoded, seeds)).map(ip.train_preprocess)
    for a, b in zip(eager, mapped):
        np.testing.assert_array_equal(a, b)
    for ten in (False, True):
        mapped = tf.data.Dataset.from_tensor_slices(encoded).map(
            lambda e, ten=ten: ip.eval_crops(e, ten)
        )
        for e, b in zip(encoded, mapped):
            np.testing.assert_array_equal(ip.eval_crops(tf.constant(e), ten), b)
    normalizer = make_normalizer(data["manifest"])
    batch = np.stack([_decoded(e)[:SIZE, :SIZE] for e in encoded])
    seed = tf.constant([5, 6], tf.int64)
    in_data = tf.data.Dataset.from_tensors(batch).map(lambda x: normalizer(x, True, seed))
    np.testing.assert_allclose(normalizer(batch, True, seed), next(iter(in_data)), atol=1e-4)


def test_parse_example_reads_the_tensorflow_models_keys(data):
    first = next(iter(tf.data.TFRecordDataset(data["original"])))
    parsed = ip.parse_example(first, label_offset=1)
    assert parsed["label"].numpy() == 0 and parsed["label"].dtype == tf.int32
    assert parsed["filename"].numpy() == b"original_0.JPEG"
    assert (parsed["height"].numpy(), parsed["width"].numpy()) == data["photos"][0].shape[:2]
    assert parsed["encoded"].numpy()[:2] == b"\xff\xd8"


# --------------------------------------------------------------------------- normalizer


def test_mean_subtraction_uses_the_central_227_of_the_mean_image(data):
    manifest = data["manifest"]
    mean = manifest.mean_image()
    images = np.stack([s[:SIZE, 29:] for s in data["stored"][:2]])  # any uint8 crops
    out = make_normalizer(manifest)(images, training=False).numpy()
    np.testing.assert_allclose(out, images - mean[14:241, 14:241], atol=1e-4)
    ten = np.stack([images, images], axis=1)  # [B, 10, ...] rank works too
    assert make_normalizer(manifest)(ten, training=False).shape == ten.shape
    channel = make_normalizer(manifest, mean="channel", input_scale=0.5)(images, False).numpy()
    np.testing.assert_allclose(channel, (images - manifest.channel_mean()) * 0.5, atol=1e-4)
    none = make_normalizer(manifest, mean="none")(images, training=True).numpy()
    assert none.dtype == np.float32 and not np.array_equal(none, images)  # lighting noise on
    np.testing.assert_array_equal(make_normalizer(None, mean="none")(images, False), images)


def test_pca_noise_has_the_stated_covariance_and_eigenvector_axis():
    """noise = 255 · V (a ⊙ l), a ~ N(0, σ) per image: covariance 255² σ² V diag(l²) V^T.

    The published matrix is not symmetric, so taking rows for eigenvectors would give another
    direction: the dominant direction of the noise must be its column 0."""
    normalizer = make_normalizer(None, mean="none", pca_std=0.1)
    images = np.zeros([20_000, 1, 1, 3], np.uint8)
    noise = normalizer(images, True, tf.constant([0, 1], tf.int64)).numpy().reshape(-1, 3)
    vectors, values = np.array(IMAGENET_EIGENVECTORS), np.array(IMAGENET_EIGENVALUES)
    expected = 255.0**2 * 0.1**2 * vectors @ np.diag(values**2) @ vectors.T
    np.testing.assert_allclose(np.cov(noise, rowvar=False), expected, rtol=0.05, atol=0.02)
    top = np.linalg.eigh(np.cov(noise, rowvar=False))[1][:, -1]
    assert abs(top @ vectors[:, 0]) > 0.999 and abs(top @ vectors[0, :]) < 0.99
    # One offset per image, the same for every pixel.
    per_pixel = normalizer(np.zeros([2, 4, 4, 3], np.uint8), True).numpy()
    np.testing.assert_allclose(per_pixel, np.broadcast_to(per_pixel[:, :1, :1], [2, 4, 4, 3]))
    assert not np.allclose(per_pixel[0], per_pixel[1])
    np.testing.assert_array_equal(normalizer(images[:3], training=False), images[:3])


def test_manifest_eigenvalues_on_the_0_255_scale_are_rescaled(data):
    manifest = data["manifest"]
    values, vectors = manifest.eigen()
    normalizer = make_normalizer(manifest, mean="none")
    np.testing.assert_allclose(normalizer.eigenvalues.numpy(), values / 255.0**2, rtol=1e-6)
    np.testing.assert_allclose(normalizer.eigenvectors.numpy(), vectors)


def test_normalizer_config_round_trips_and_saves(data, tmp_path):
    normalizer = make_normalizer(data["manifest"], mean="channel", pca_std=0.05, input_scale=0.25)
    config = normalizer.get_config()
    assert config == {"mean": "channel", "pca_std": 0.05, "input_scale": 0.25}
    again = ip.Normalizer.from_config(data["manifest"], config)
    images = np.stack(data["stored"][:2])[:, :SIZE, :SIZE]
    np.testing.assert_allclose(normalizer(images, False), again(images, False))
    normalizer.serve = tf.function(
        lambda x: normalizer(x, training=False),
        input_signature=[tf.TensorSpec([None, SIZE, SIZE, 3], tf.uint8)],
    )
    tf.saved_model.save(normalizer, str(tmp_path / "normalizer"))
    loaded = tf.saved_model.load(str(tmp_path / "normalizer"))
    np.testing.assert_allclose(loaded.serve(images), normalizer(images, False))
    with pytest.raises(ValueError, match="mean must be one of"):
        make_normalizer(data["manifest"], mean="pixel")
    with pytest.raises(ip.InputError, match="mean image"):
        make_normalizer(None)


# --------------------------------------------------------------------------- datasets


def test_train_dataset_shapes_labels_and_reproducible_stream(data):
    def stream():  # a new dataset each time, as in a new run
        kwargs = dict(seed=3, deterministic=True, shuffle_buffer=16)
        dataset = ip.make_train_dataset(data["files"], 4, **kwargs)
        assert dataset.element_spec == (
            tf.TensorSpec([4, SIZE, SIZE, 3], tf.uint8),
            tf.TensorSpec([4], tf.int32),
        )
        return [(i.numpy(), lab.numpy()) for i, lab in dataset.take(6)]  # 24 > 11: repeats

    first, again = stream(), stream()
    for (a, la), (b, lb) in zip(first, again):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(la, lb)
    labels = np.concatenate([lab for _, lab in first])
    assert sorted(labels[:11]) == list(range(11))  # shuffle before repeat: epoch 1 is whole
    other = ip.make_train_dataset(data["files"], 4, seed=4, deterministic=True, shuffle_buffer=16)
    assert not np.array_equal(next(iter(other))[0], first[0][0])
    original = ip.make_train_dataset([data["original"]], 5, label_offset=1, shuffle_buffer=8)
    images, labels = next(iter(original))  # 5 original-size photos, labels 1..5 stored
    assert sorted(labels.numpy()) == list(range(5)) and images.shape == [5, SIZE, SIZE, 3]


def test_train_iterator_resumes_from_a_checkpoint(data, tmp_path):
    def dataset():
        return ip.make_train_dataset(data["files"], 3, seed=9, deterministic=True, shuffle_buffer=8)

    iterator = iter(dataset())
    for _ in range(2):
        next(iterator)
    path = tf.train.Checkpoint(iterator=iterator).save(str(tmp_path / "ckpt"))
    expected = [next(iterator) for _ in range(9)]  # 27 examples: across two epoch boundaries
    resumed = iter(dataset())
    tf.train.Checkpoint(iterator=resumed).restore(path).assert_consumed()
    for (a, la), (b, lb) in zip(expected, [next(resumed) for _ in range(9)], strict=True):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(la, lb)


def test_workers_read_disjoint_shards(data):
    labels = []
    for worker in range(2):
        context = tf.distribute.InputContext(2, worker, 2)
        dataset = ip.make_train_dataset(data["files"], 4, input_context=context, shuffle_buffer=8)
        assert dataset.element_spec[1].shape == [2]  # per-replica share of the global batch
        labels.append({int(x) for _, lab in dataset.take(6) for x in lab})
    assert labels[0] | labels[1] == set(range(11)) and not labels[0] & labels[1]


@pytest.mark.parametrize("ten_patch", [False, True])
def test_eval_dataset_scores_every_example_exactly_once(data, ten_patch):
    dataset = ip.make_eval_dataset(data["files"], 4, ten_patch=ten_patch)
    batches = list(dataset)
    assert len(batches) == 3  # 11 examples: 4 + 4 + 3 real rows and one padding row
    shape = [4, 10, SIZE, SIZE, 3] if ten_patch else [4, SIZE, SIZE, 3]
    assert dataset.element_spec[0].shape == shape
    labels = np.concatenate([lab[mask] for _, lab, mask in batches])
    assert sorted(labels) == list(range(11))
    images, _, mask = batches[-1]
    assert mask.numpy().tolist() == [True, True, True, False] and not images[3].numpy().any()
    first = batches[0][0][0].numpy()
    centre = _decoded(_encoded(data, 0))[14:241, 14:241]
    assert _close(first[0] if ten_patch else first, centre)


def test_eval_workers_together_score_every_example_once(data):
    for files in (data["files"], data["files"][:1]):  # by shard, and by record (1 shard, 2 workers)
        labels = []
        for worker in range(2):
            context = tf.distribute.InputContext(2, worker, 2)
            for _, lab, mask in ip.make_eval_dataset(files, 4, input_context=context):
                labels += lab[mask].numpy().tolist()
        assert sorted(labels) == list(range(6 if len(files) == 1 else 11))


def test_demo_data_from_the_converter(demo_data_dir):
    manifest = load_manifest(demo_data_dir)
    split = manifest.split("validation")
    dataset = ip.make_eval_dataset(split.files, 8, label_offset=manifest.label_offset)
    normalizer = make_normalizer(manifest)
    count = 0
    for images, labels, mask in dataset:
        x = normalizer(images, training=False)
        assert x.shape == [8, SIZE, SIZE, 3] and abs(float(tf.reduce_mean(x[mask]))) < 64
        assert np.all((labels.numpy() >= 0) & (labels.numpy() < manifest.num_classes))
        count += int(tf.reduce_sum(tf.cast(mask, tf.int32)))
    assert count == split.num_examples
    train = ip.make_train_dataset(manifest.split("train").files, 8, shuffle_buffer=16)
    images, _ = next(iter(train))
    assert images.shape == [8, SIZE, SIZE, 3]


# --------------------------------------------------------------------------- faults


def test_bad_shards_are_named_before_the_first_step(data, tmp_path):
    good = data["files"][0]
    missing = str(tmp_path / "missing-00000")
    empty = _write(tmp_path / "empty-00000", [])
    not_tfrecord = str(tmp_path / "photo.jpg")
    with open(not_tfrecord, "wb") as f:
        f.write(_jpeg(data["stored"][0]))
    cut = str(tmp_path / "cut-00000")
    with open(good, "rb") as f, open(cut, "wb") as g:
        g.write(f.read()[:5000])  # inside the first record
    cases = [
        (missing, "does not exist"),
        (empty, "is empty"),
        (not_tfrecord, "is not a TFRecord file"),
        (cut, "is truncated"),
    ]
    for path, message in cases:
        for make in (ip.make_train_dataset, ip.make_eval_dataset):
            with pytest.raises(ip.InputError, match=message) as e:
                make([good, path], 4)
            assert path in str(e.value)


def test_truncated_shard_found_while_iterating_is_named(data, tmp_path):
    cut = str(tmp_path / "cut-00001")
    with open(data["files"][1], "rb") as f, open(cut, "wb") as g:
        g.write(f.read()[:-100])  # the last record loses its end
    files = [data["files"][0], cut]
    with pytest.raises(ip.InputError, match="truncated") as e, ip.input_errors(files):
        for _ in ip.make_eval_dataset(files, 4):
            pass
    assert cut in str(e.value) and "Traceback" not in str(e.value)


def test_records_that_do_not_decode_are_named(data, tmp_path):
    png = tf.io.encode_png(data["stored"][0]).numpy()
    jpeg = _encoded(data, 3)
    broken = jpeg[:600] + bytes(len(jpeg) - 600)  # the entropy-coded data is lost
    for encoded, name in ((png, "drawing.png"), (broken, "broken.JPEG")):
        path = _write(
            tmp_path / f"{name}-shard",
            [_example(jpeg, 0, "ok.JPEG")] * 2 + [_example(encoded, 1, name)],
        )
        with pytest.raises(ip.InputError, match=name) as e, ip.input_errors([path]):
            for _ in ip.make_eval_dataset([path], 2):
                pass
        assert path in str(e.value)


def test_labels_out_of_range_are_named(data):
    dataset = ip.make_eval_dataset([data["original"]], 2, num_classes=5)  # offset 0: 1..5
    message = (
        r"^record original_4.JPEG in \S*original-00000-of-00001 has image/class/label 5 "
        r"which minus label_offset 0 is not a class index in \[0, 5\)$"
    )
    with pytest.raises(ip.InputError, match=message), ip.input_errors([data["original"]]):
        list(dataset)


def test_other_errors_pass_through_input_errors(data):
    error = tf.errors.InvalidArgumentError(None, None, "logits and labels must match")
    with pytest.raises(type(error), match="logits and labels"), ip.input_errors(data["files"]):
        raise error
    with pytest.raises(ip.InputError, match="non-empty list of shard paths"):
        ip.make_train_dataset(data["files"][0], 4)
