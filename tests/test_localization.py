"""Localization (ILSVRC-2012 task 2): box head, loss, IoU rule, evaluation, figure, serving."""

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow as tf

from alexnet_tf.model import build_alexnet
from alexnet_tf.model.box_head import (
    BOX_LAYER,
    box_head_parameters,
    boxes_of_classes,
    class_boxes,
    has_box_head,
)
from alexnet_tf.results import boxes as boxes_lib
from alexnet_tf.results.metrics import top_k_classes
from alexnet_tf.training import localization as training_boxes

# ---------------------------------------------------------------- IoU and the top-5 rule


def test_iou_of_hand_made_boxes():
    a = np.array([0, 0, 10, 10])
    cases = [
        ([0, 0, 10, 10], 1.0),  # the same box
        ([0, 5, 10, 15], 50 / 150),  # half of each overlaps
        ([0, 0, 10, 5], 0.5),  # inside, half the area
        ([20, 20, 30, 30], 0.0),  # apart
        ([10, 0, 20, 10], 0.0),  # touching edges
        ([5, 5, 5, 9], 0.0),  # no area
    ]
    for box, expected in cases:
        assert boxes_lib.iou(a, np.array(box)) == pytest.approx(expected)
        assert boxes_lib.iou(np.array(box), a) == pytest.approx(expected)  # symmetric
    # Broadcast: one box against several.
    got = boxes_lib.iou(a, np.array([c[0] for c in cases]))
    np.testing.assert_allclose(got, [c[1] for c in cases])


def _rule(classes, boxes, label, gt, valid=None):
    gt = np.array(gt, np.float32)[None]
    valid = np.ones(gt.shape[:2], bool) if valid is None else np.array([valid])
    return bool(
        boxes_lib.localization_correct(
            np.array([classes]), np.array([boxes], np.float32), np.array([label]), gt, valid
        )[0]
    )


GOOD, HALF, BAD = [0, 0, 10, 10], [0, 0, 10, 5], [0, 5, 10, 15]


def test_top5_rule_needs_class_and_box_in_the_same_guess():
    gt = [GOOD]
    assert _rule([4, 3, 7, 1, 0], [BAD, BAD, GOOD, BAD, BAD], 7, gt)  # third guess
    # The right class with a box of IoU 1/3, and a perfect box on a wrong class: wrong.
    assert not _rule([4, 3, 7, 1, 0], [GOOD, BAD, BAD, BAD, BAD], 7, gt)
    assert not _rule([4, 3, 2, 1, 0], [GOOD] * 5, 7, gt)  # the class is not guessed


def test_top5_rule_counts_an_iou_of_exactly_one_half():
    assert _rule([7, 1, 2, 3, 4], [HALF, BAD, BAD, BAD, BAD], 7, [GOOD])


def test_top5_rule_with_several_ground_truth_boxes():
    gt = [[50, 50, 60, 60], GOOD, [0, 0, 0, 0]]
    assert _rule([7, 1, 2, 3, 4], [GOOD] + [BAD] * 4, 7, gt, [True, True, False])
    # The only matching box is padding: it does not count.
    assert not _rule([7, 1, 2, 3, 4], [GOOD] + [BAD] * 4, 7, gt, [True, False, True])
    # No ground-truth box at all: never correct.
    assert not _rule([7, 1, 2, 3, 4], [GOOD] * 5, 7, gt, [False, False, False])


def test_ties_in_probability_go_to_the_lower_class():
    probabilities = np.full((1, 6), 1 / 6)  # six classes, all tied
    top = top_k_classes(probabilities, 5)
    np.testing.assert_array_equal(top, [[0, 1, 2, 3, 4]])
    assert not _rule(top[0], [GOOD] * 5, 5, [GOOD])  # class 5 lost the tie
    assert _rule(top[0], [GOOD] * 5, 4, [GOOD])


def test_counter_skips_padding_and_images_without_boxes():
    counter = boxes_lib.LocalizationCounter()
    classes = np.array([[1, 2, 3, 4, 5]] * 4)
    guesses = np.array([[GOOD] * 5, [BAD, GOOD, BAD, BAD, BAD], [GOOD] * 5, [GOOD] * 5], float)
    labels = np.array([1, 2, 1, 1])
    gt = np.array([[GOOD], [GOOD], [GOOD], [GOOD]], float)
    valid = np.array([[True], [True], [False], [True]])
    mask = np.array([True, True, True, False])  # row 3 is padding, row 2 has no box
    counter.update(classes, guesses, labels, gt, valid, mask)
    assert counter.count == 2
    assert counter.errors() == pytest.approx(
        {
            "localization_error": 0.0,
            # Row 1: its class is the second guess, so top-1 is wrong.
            "localization_top1_error": 0.5,
            # Top-1 boxes: GOOD (IoU 1) and BAD (IoU 1/3).
            "mean_iou": (1 + 1 / 3) / 2,
        }
    )


# ---------------------------------------------------------------- the head


@pytest.fixture(scope="module")
def head_model():
    return build_alexnet(10, init="he", seed=0, localization=True)


def test_head_parameters_and_names(head_model):
    plain = build_alexnet(10, init="he", seed=0)
    assert box_head_parameters(1000) == 4096 * 4 * 1000 + 4 * 1000 == 16_388_000
    assert head_model.count_params() - plain.count_params() == box_head_parameters(10)
    assert has_box_head(head_model) and not has_box_head(plain)
    head = head_model.get_layer(BOX_LAYER)
    assert head.kernel.shape == (10, 4096, 4) and head.bias.shape == (10, 4)
    # The same weights as the plain network, layer by layer: the head only adds.
    for layer in plain.layers:
        for w, v in zip(layer.get_weights(), head_model.get_layer(layer.name).get_weights()):
            np.testing.assert_array_equal(w, v)
    images = np.zeros((2, 227, 227, 3), np.float32)
    out = head_model(images, training=False)
    assert set(out) == {"predictions", BOX_LAYER}
    assert out[BOX_LAYER].shape == (2, 40)


def test_describe_counts_the_head(binary_runs):
    run = binary_runs["describe:localization"]
    assert run["code"] == 0, run["stderr"][-2000:]
    assert "bbox   1000×4096×4" in run["stdout"]
    assert f"{60_965_224 + 4096 * 4 * 1000 + 4 * 1000:,}" == "77,353,224"
    assert "77,353,224" in run["stdout"]


def test_head_runs_on_the_first_towers_device():
    """On the session's two logical CPUs (tests/conftest.py)."""
    from alexnet_tf.model import endpoints_model

    model = build_alexnet(10, devices=("/CPU:0", "/CPU:1"), localization=True, seed=0)
    out = endpoints_model(model, ["bbox", "fc6_b"])(np.zeros((1, 227, 227, 3), np.float32))
    variables = [v.value.device for v in model.get_layer("bbox").weights]
    assert variables and all(d.endswith("CPU:0") for d in variables), variables
    assert out["bbox"].device.endswith("CPU:0") and out["fc6_b"].device.endswith("CPU:1")


def test_checkpoint_without_head_loads_into_model_without_head(tmp_path):
    plain = build_alexnet(10, init="he", seed=1)
    prefix = tf.train.Checkpoint(model=plain).save(str(tmp_path / "ckpt"))
    other = build_alexnet(10, init="he", seed=2)
    tf.train.Checkpoint(model=other).restore(prefix).assert_consumed()
    images = np.random.default_rng(0).normal(0, 1, (1, 227, 227, 3)).astype(np.float32)
    np.testing.assert_allclose(other(images), plain(images), rtol=1e-5, atol=1e-7)


def test_class_boxes_picks_each_examples_class():
    flat = np.arange(2 * 3 * 4, dtype=np.float32).reshape(2, 12)
    expected = [[8, 9, 10, 11], [12, 13, 14, 15]]
    np.testing.assert_array_equal(class_boxes(flat, np.array([2, 0])), expected)
    got = class_boxes(flat, np.array([[1, 2], [0, 0]])).numpy()
    assert got.shape == (2, 2, 4)
    np.testing.assert_array_equal(got[0, 1], [8, 9, 10, 11])


def test_training_computes_only_the_true_class_box(head_model):
    head = head_model.get_layer(BOX_LAYER)
    rng = np.random.default_rng(0)
    head.bias.assign(rng.normal(0, 1, (10, 4)).astype(np.float32))
    features = rng.normal(0, 1, (5, 4096)).astype(np.float32)
    classes = np.array([3, 0, 9, 3, 5])
    # All ten classes' boxes in NumPy (kernel [class, 4096, 4]), then each example's own.
    kernel, bias = head.kernel.numpy(), head.bias.numpy()
    every = np.einsum("nf,cfk->nck", features, kernel) + bias
    np.testing.assert_allclose(
        boxes_of_classes(head, features, classes), every[np.arange(5), classes],
        rtol=1e-5, atol=1e-4,
    )  # fmt: skip


# ---------------------------------------------------------------- the loss


def test_examples_without_a_box_add_exactly_zero():
    rng = np.random.default_rng(0)
    predicted = tf.Variable(rng.normal(0.5, 0.3, (3, 40)).astype(np.float32))
    labels = tf.constant([3, 7, 1])
    target = tf.constant([[0.1, 0.2, 0.8, 0.9], [np.nan, np.inf, 0, 0], [5, 5, 5, 5]], tf.float32)
    has_box = tf.constant([True, False, False])
    with tf.GradientTape() as tape:
        per_example = training_boxes.box_loss(class_boxes(predicted, labels), target, has_box)
        total = tf.reduce_sum(per_example)
    grad = tape.gradient(total, predicted).numpy()
    assert per_example.numpy()[1] == 0.0 and per_example.numpy()[2] == 0.0
    assert per_example.numpy()[0] > 0
    assert not grad[1:].any() and np.isfinite(grad).all()
    # Only the true class's four numbers get a gradient.
    assert np.flatnonzero(grad[0]).tolist() == [12, 13, 14, 15]


def test_box_targets_are_mirrored_with_their_images():
    import keras

    from alexnet_tf.data.augment import Normalizer
    from alexnet_tf.model.box_head import box_head

    model = keras.Sequential([keras.Input((4096,)), box_head(10)])
    head = model.get_layer(BOX_LAYER)
    box = np.array([0.1, 0.2, 0.5, 0.4], np.float32)  # asymmetric: its mirror is another box
    head.kernel.assign(tf.zeros_like(head.kernel))
    head.bias.assign(np.tile(box, (10, 1)))  # every example's prediction is `box`
    batch, seed = 16, tf.constant([7, 3], tf.int64)
    images = np.zeros((batch, 227, 227, 3), np.uint8)
    images[:, :, :100] = 255  # white on the left: a mirrored image is white on the right
    mirrored = Normalizer.reflect(tf.constant(images), seed).numpy()[:, 0, -1, 0] == 255
    assert mirrored.any() and not mirrored.all()
    loss = training_boxes.step_box_loss(
        model, np.zeros((batch, 4096), np.float32), np.zeros(batch, np.int32),
        np.tile(box, (batch, 1)), np.ones(batch, bool), Normalizer, seed,
    ).numpy()  # fmt: skip
    # The target equals the prediction exactly where its image was not mirrored.
    np.testing.assert_array_equal(loss > 0, mirrored)


def test_smooth_l1_is_quadratic_then_linear():
    beta = training_boxes.SMOOTH_L1_BETA
    x = tf.constant([0.0, beta / 2, -beta, 2.0])
    np.testing.assert_allclose(
        training_boxes.smooth_l1(x), [0.0, 0.5 * (beta / 2) ** 2 / beta, 0.5 * beta, 2 - beta / 2],
        rtol=1e-6,
    )  # fmt: skip


# ---------------------------------------------------------------- serving

# Runs in a fresh interpreter with -I: no project code on the path.
FRESH_SERVE = textwrap.dedent(
    """
    import sys
    import numpy as np
    import tensorflow as tf

    export_dir, inputs, outputs = sys.argv[1:]
    served = tf.saved_model.load(export_dir).signatures["serving_default"](
        images=tf.constant(np.load(inputs))
    )
    np.savez(outputs, boxes=served["top_k_boxes"].numpy(), valid=served["valid"].numpy(),
             indices=served["top_k_indices"].numpy())
    assert not [m for m in sys.modules if m.startswith("alexnet_tf")], "project code was loaded"
    """
)


def _scene(background, size, place):
    """A real photograph (a crop of skimage's cat) pasted on a real background at `place`.

    Returns the encoded PNG and the cat's box (ymin, xmin, ymax, xmax) in the image's pixels.
    """
    from skimage import data
    from skimage.transform import resize

    image = np.array(background)
    cat = resize(data.chelsea()[40:260, 80:380], size, anti_aliasing=True)
    y, x = place
    image[y : y + size[0], x : x + size[1]] = np.round(cat * 255).astype(np.uint8)
    encoded = tf.io.encode_png(image).numpy()
    return encoded, np.array([y, x, y + size[0], x + size[1]], np.float32)


def _crop_box(box, height, width):
    """The box normalized to the served centre crop (the inverse of what serving undoes)."""
    side = min(height, width)
    y0, x0 = (height - side) // 2, (width - side) // 2
    stored = (box - [y0, x0, y0, x0]) * 256 / side
    return (stored - 14) / 227


@pytest.fixture(scope="module")
def boxed_source(tools_source):
    """The tools workdir's network with a box head whose answers are set by hand: fc8 ranks the
    classes 9, 8, …, 0 for every image, and the head's boxes are its biases (zero kernel)."""
    source = tools_source  # read only: its weights are copied into a network with the head
    model = build_alexnet(10, init="he", seed=0, localization=True)
    for layer in source.model.layers:
        model.get_layer(layer.name).set_weights(layer.get_weights())
    fc8 = model.get_layer("fc8")
    fc8.set_weights([np.zeros_like(fc8.kernel.numpy()), np.arange(10, dtype=np.float32)])
    head = model.get_layer(BOX_LAYER)
    head.kernel.assign(tf.zeros_like(head.kernel))
    return model, source


def _set_box(model, box):
    """Class 9 (the top guess) answers `box`; every other class a box far away."""
    bias = np.tile(np.array([2.0, 2.0, 3.0, 3.0], np.float32), (10, 1))
    bias[9] = box
    model.get_layer(BOX_LAYER).bias.assign(bias)


def test_served_boxes_land_on_the_object_in_the_sent_image(boxed_source, tmp_path):
    from skimage import data
    from skimage.transform import resize

    from alexnet_tf.results import saved_model as exporting

    model, source = boxed_source
    module = exporting.ExportModule(model, source.normalizer, source.wnids, source.texts, top_k=3)
    # A non-square photograph (400×600) and a 256×256 one, each with the cat somewhere.
    wide, wide_box = _scene(data.coffee(), (120, 90), (210, 420))
    square_bg = np.round(resize(data.astronaut(), (256, 256), anti_aliasing=True) * 255)
    square, square_box = _scene(square_bg.astype(np.uint8), (70, 60), (30, 150))
    # The exported SavedModel, in a process without the project's code: started first, so that
    # it runs while this process serves the same module.
    _set_box(model, _crop_box(wide_box, 400, 600))
    export_dir = exporting.save(module, str(tmp_path / "boxes"))
    np.save(tmp_path / "in.npy", np.array([wide, b"not an image"]))
    proc = subprocess.Popen(
        [sys.executable, "-I", "-c", FRESH_SERVE, export_dir, str(tmp_path / "in.npy"),
         str(tmp_path / "out.npz")],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, cwd=tmp_path,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
    )  # fmt: skip
    scenes = [(wide, wide_box, (400, 600)), (square, square_box, (256, 256))]
    try:
        for encoded, box, (h, w) in scenes:
            _set_box(model, _crop_box(box, h, w))
            served = module.serve(tf.constant([encoded, b"not an image"]))
            assert served["top_k_boxes"].shape == (2, 3, 4)
            np.testing.assert_array_equal(served["top_k_indices"][0], [9, 8, 7])
            np.testing.assert_allclose(served["top_k_boxes"][0, 0], box, atol=1e-3)
            assert not served["top_k_boxes"][1].numpy().any()  # not an image: zeros
        _, stderr = proc.communicate(timeout=300)
    finally:
        proc.kill()
    assert proc.returncode == 0, stderr[-3000:]
    out = np.load(tmp_path / "out.npz")
    assert out["boxes"].dtype == np.float32 and out["boxes"].shape == (2, 3, 4)
    np.testing.assert_allclose(out["boxes"][0, 0], wide_box, atol=1e-3)
    np.testing.assert_array_equal(out["valid"], [True, False])


def test_served_ten_patch_box_is_the_mean_of_the_patch_boxes(boxed_source):
    from alexnet_tf.results import saved_model as exporting

    model, source = boxed_source
    module = exporting.ExportModule(
        model, source.normalizer, source.wnids, source.texts, top_k=1, ten_patch=True
    )
    box = np.array([0.2, 0.1, 0.7, 0.5], np.float32)
    _set_box(model, box)
    encoded = tf.io.encode_png(np.zeros((300, 200, 3), np.uint8)).numpy()
    served = module.serve(tf.constant([encoded]))["top_k_boxes"].numpy()[0, 0]
    # Each patch says `box` in its own frame; the reflected ones mean its mirror image.
    offsets = [(14, 14), (0, 0), (0, 29), (29, 0), (29, 29)]
    mirror = np.array([box[0], 1 - box[3], box[2], 1 - box[1]])
    stored = [b * 227 + [y, x, y, x] for b in (box, mirror) for y, x in offsets]
    expected = np.mean(stored, axis=0) * 200 / 256 + [50, 0, 50, 0]
    np.testing.assert_allclose(served, expected, atol=1e-3)


# ---------------------------------------------------------------- training, evaluation, figure


@pytest.fixture(scope="module")
def boxed_data_dir(tmp_path_factory):
    """The boxed digit demo in miniature: digits drawn on real photographs with ILSVRC XMLs
    (2 training and 1 validation image per class), converted with --bbox_dir."""
    from alexnet_tf.convert import convert
    from alexnet_tf.data.demo_data import write_demo_tree

    root = tmp_path_factory.mktemp("boxed_demo")
    tree = write_demo_tree(
        str(root / "raw"), train_per_class=2, val_per_class=1, image_size=64, boxes=True
    )
    output_dir = str(root / "data")
    result = convert(
        output_dir=output_dir, train_dir=tree["train_dir"], val_dir=tree["val_dir"],
        val_labels=tree["val_labels"], bbox_dir=tree["bbox_dir"], resize=256,
        num_workers=1, show_progress=False,
    )  # fmt: skip
    assert result.complete
    return output_dir


@pytest.fixture(scope="module")
def boxed_run(boxed_data_dir, tmp_path_factory):
    """Two steps of the real network with the box head on the boxed data."""
    from alexnet_tf.training import loop as training

    workdir = str(tmp_path_factory.mktemp("boxed_run"))
    config = training.TrainConfig(
        data_dir=boxed_data_dir, workdir=workdir, train_steps=2, batch_size=4,
        eval_every_steps=0, log_every_steps=1, checkpoint_every_steps=100, init="he",
        input_scale=1 / 64, shuffle_buffer=16, seed=3, localization=True, box_loss_weight=2.0,
    )  # fmt: skip
    return training.train(config)


def test_training_logs_the_box_loss_and_records_the_head(boxed_run):
    import glob

    from alexnet_tf.runs.checkpoints import read_model_config

    assert boxed_run.step == 2
    assert 0 <= boxed_run.eval["localization_error"] <= 1
    assert read_model_config(boxed_run.workdir)["model"]["localization"] is True
    tags = set()
    for path in glob.glob(os.path.join(boxed_run.workdir, "tensorboard", "events.out.*")):
        for event in tf.compat.v1.train.summary_iterator(path):
            tags |= {value.tag for value in event.summary.value}
    assert {"train/box_loss", "eval/localization_error", "train/loss"} <= tags


def test_localization_without_boxes_stops_at_start_up(tools_data_dir, tmp_path):
    from alexnet_tf.training import loop as training

    config = training.TrainConfig(
        data_dir=tools_data_dir, workdir=str(tmp_path), train_steps=1, localization=True
    )
    with pytest.raises(training.ConfigError, match="has none; .*--bbox_dir"):
        training.train(config)
    assert not os.listdir(tmp_path)  # nothing written


def test_evaluate_writes_localization_scores(boxed_run, boxed_data_dir, tmp_path):
    import json

    from alexnet_tf.data.input_pipeline import make_eval_dataset
    from alexnet_tf.data.manifest import load_manifest
    from alexnet_tf.results import evaluation
    from alexnet_tf.results.trained_models import CheckpointSource

    result = evaluation.evaluate(
        [boxed_run.workdir], boxed_data_dir, batch_size=4, workdir=str(tmp_path),
        log=lambda line: None,
    )  # fmt: skip
    written = json.loads((tmp_path / "eval.json").read_text())
    assert written["num_localized"] == 10 == result["num_localized"]
    for mode in ("center", "ten_patch"):
        scores = written[mode]
        assert {"localization_error", "localization_top1_error", "mean_iou"} <= set(scores)
        assert 0 <= scores["localization_error"] <= scores["localization_top1_error"] <= 1
        assert 0 <= scores["mean_iou"] <= 1
    # The centre scores again, by hand in NumPy: the five most probable classes (ties to the
    # lower class), each one's box from the head's 10×4 outputs, from the centre patch (offset 14
    # in the 256×256 frame) to the original's pixels, the best IoU with a valid box, >= 1/2.
    source = CheckpointSource(boxed_run.workdir)
    split = load_manifest(boxed_data_dir).split("validation")
    count = correct = 0
    iou_sum = 0.0
    for images, labels, mask, gt, valid, geometry in make_eval_dataset(
        split.files, 4, with_boxes=True
    ).as_numpy_iterator():
        out = source.predict(images)
        for i in range(len(labels)):
            if not mask[i] or not valid[i].any():
                continue
            top5 = np.argsort(-out["predictions"][i], kind="stable")[:5]
            boxes = out[BOX_LAYER][i].reshape(10, 4)[top5].astype(np.float64)
            y0, x0, y1, x1 = geometry[i][:4].astype(np.float64)
            frame = (boxes * 227 + 14) / 256
            original = frame * [y1 - y0, x1 - x0, y1 - y0, x1 - x0] + [y0, x0, y0, x0]
            ious = [max(_iou(b, g) for g, v in zip(gt[i], valid[i]) if v) for b in original]
            count += 1
            correct += any(c == labels[i] and o >= 0.5 for c, o in zip(top5, ious))
            iou_sum += ious[0]
    assert count == 10
    assert written["center"]["localization_error"] == pytest.approx(1 - correct / count)
    assert written["center"]["mean_iou"] == pytest.approx(iou_sum / count, abs=1e-5)


def _iou(a, b) -> float:
    """Intersection over union of two (ymin, xmin, ymax, xmax) boxes, written out."""
    height = min(a[2], b[2]) - max(a[0], b[0])
    width = min(a[3], b[3]) - max(a[1], b[1])
    inter = max(height, 0.0) * max(width, 0.0)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 and a[2] > a[0] and a[3] > a[1] else 0.0


def test_visualize_draws_localizations(boxed_run, tmp_path):
    from PIL import Image

    from alexnet_tf.results import localization_figure

    path = localization_figure.write_localizations(
        boxed_run.workdir, str(tmp_path), num_images=4, columns=2, log=lambda line: None
    )
    assert path == str(tmp_path / "localizations.png")
    with Image.open(path) as png:
        assert png.size[0] > 300 and png.size[1] > 300


def test_original_to_crop_inverts_the_evaluation_geometry():
    from alexnet_tf.data.boxes import patch_boxes_to_original
    from alexnet_tf.results.localization_figure import original_to_crop

    # A 400×600 original: the frame is its central 400×400 square, x from 100 to 500.
    geometry = np.array([[0, 100, 400, 500, 400, 600]], np.float32)
    crop_box = np.array([[0.1, 0.2, 0.6, 0.9]], np.float32)
    original = patch_boxes_to_original(crop_box, geometry, False)
    np.testing.assert_allclose(
        original_to_crop(original[:, None], geometry)[:, 0], crop_box * 227, atol=1e-3
    )
