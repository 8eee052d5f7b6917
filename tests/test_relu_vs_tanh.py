"""Figure 1 (section 3.1): the four-layer network, its ReLU and tanh builds, the experiment."""

import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf
from binaries import run_main

from alexnet_tf.data import small_images
from alexnet_tf.data.shard_checks import InputError
from alexnet_tf.model import build_alexnet
from alexnet_tf.model.figure1 import build_figure1_net
from alexnet_tf.results import relu_vs_tanh_figure
from alexnet_tf.training import relu_vs_tanh


def test_figure1_layer_shapes_and_parameters():
    model = build_figure1_net(10)
    # By hand: 5×5 convolutions with padding 2 keep the size; each 3×3 pool of stride 2 halves it
    # (ceil((n - 3) / 2) + 1 windows, as cuda-convnet's): 32 → 16 → 8 → 4.
    expected = {
        "conv1": (32, 32, 32), "pool1": (16, 16, 32),
        "conv2": (16, 16, 32), "pool2": (8, 8, 32),
        "conv3": (8, 8, 64), "pool3": (4, 4, 64),
        "flatten": (1024,), "fc4": (10,), "predictions": (10,),
    }  # fmt: skip
    assert {n: tuple(model.get_layer(n).output.shape[1:]) for n in expected} == expected
    weighted = [layer.name for layer in model.layers if layer.weights]
    assert weighted == ["conv1", "conv2", "conv3", "fc4"]  # four layers with weights
    by_hand = (5 * 5 * 3 * 32 + 32) + (5 * 5 * 32 * 32 + 32) + (5 * 5 * 32 * 64 + 64)
    assert model.count_params() == by_hand + 1024 * 10 + 10
    assert isinstance(model.get_layer("pool1"), keras.layers.MaxPooling2D)
    assert isinstance(model.get_layer("pool3"), keras.layers.AveragePooling2D)


def _same_but_unit(relu: keras.Model, tanh: keras.Model, hidden: list[str]) -> None:
    assert [layer.name for layer in relu.layers] == [layer.name for layer in tanh.layers]
    for a, b in zip(relu.layers, tanh.layers, strict=True):
        assert a.output.shape == b.output.shape, a.name
        assert type(a) is type(b), a.name
    for a, b in zip(relu.weights, tanh.weights, strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=a.path)
    for name in hidden:
        assert relu.get_layer(name).activation is keras.activations.relu, name
        assert tanh.get_layer(name).activation is keras.activations.tanh, name


def test_figure1_relu_and_tanh_differ_only_in_the_unit():
    relu = build_figure1_net(10, activation="relu", seed=3)
    tanh = build_figure1_net(10, activation="tanh", seed=3)
    _same_but_unit(relu, tanh, ["conv1", "conv2", "conv3"])
    assert relu.get_layer("fc4").activation is keras.activations.linear
    # The unit is used: a real photograph gives other outputs.
    from sklearn.datasets import load_sample_images

    photo = load_sample_images().images[0][:32, :32].astype(np.float32)[None] - 128.0
    assert not np.allclose(relu(photo).numpy(), tanh(photo).numpy())
    with pytest.raises(ValueError, match="activation"):
        build_figure1_net(10, activation="sigmoid")


def test_alexnet_relu_and_tanh_differ_only_in_the_unit():
    relu = build_alexnet(10, seed=5)
    tanh = build_alexnet(10, seed=5, activation="tanh")
    hidden = [f"conv{i}_{t}" for i in range(1, 6) for t in "ab"] + ["fc6_a", "fc7_b"]
    _same_but_unit(relu, tanh, hidden)
    assert tanh.get_layer("fc8").activation is keras.activations.linear
    with pytest.raises(ValueError, match="activation"):
        build_alexnet(10, activation="sigmoid")


@pytest.mark.parametrize(
    "errors, expected",
    [
        ([0.9, 0.6, 0.3, 0.25, 0.1], 0.4),  # at the threshold counts as reached
        ([0.9, 0.2, 0.4, 0.1, 0.0], 0.2),  # the first crossing, not a later one
        ([0.9, 0.8, 0.7, 0.6, 0.5], None),  # never
    ],
)
def test_epochs_to_threshold_from_a_hand_made_curve(errors, expected):
    epochs = [0.1, 0.2, 0.3, 0.4, 0.5]
    assert relu_vs_tanh.epochs_to_threshold(epochs, errors, 0.25) == expected


def test_each_point_is_the_error_of_the_last_fifth_of_an_epoch():
    # 280 batches an epoch (the bundled set's 8,985 images at 32), ten points: 56 batches; a
    # tiny set's window is never shorter than the batches between two points.
    assert relu_vs_tanh.window_batches(0.2, 280, 10) == 56
    assert relu_vs_tanh.window_batches(0.2, 5, 5) == 1
    assert relu_vs_tanh.window_batches(0.05, 100, 10) == 10
    window = relu_vs_tanh.ErrorWindow(3)
    for wrong in (32, 0, 8, 16):  # batches of 32 images; the first falls out of the window
        window.add(wrong, 32)
    assert window.error() == pytest.approx(24 / 96)
    for bad in (0.0, 1.5):
        with pytest.raises(ValueError, match="--error_window"):
            relu_vs_tanh.ExperimentConfig(error_window=bad).check()


@pytest.fixture(scope="module")
def demo_images(demo_data_dir):
    return small_images.load_split(demo_data_dir, 32)


def test_load_split_reads_the_converted_training_images(demo_images, demo_data_dir):
    from alexnet_tf.data.manifest import load_manifest

    manifest = load_manifest(demo_data_dir)
    assert demo_images.images.shape == (manifest.split("train").num_examples, 32, 32, 3)
    assert demo_images.images.dtype == np.uint8
    assert sorted(np.unique(demo_images.labels)) == list(range(10))
    # The demo digits are dark ink on light paper: a real image, not blank.
    assert 60 < demo_images.images.mean() < 250 and demo_images.images.std() > 20


def test_bundled_set_is_a_real_colour_set_of_ten_classes():
    data = small_images.bundled_set(32, copies=1)
    assert data.images.shape == (1797, 32, 32, 3) and data.num_classes == 10
    assert np.bincount(data.labels).min() >= 170
    # Colour: the channels differ; photograph backgrounds: no two images alike.
    assert np.abs(data.images[..., 0].astype(int) - data.images[..., 2]).mean() > 10
    assert data.images.reshape(len(data.images), -1).std(axis=0).mean() > 40


def test_a_short_run_writes_the_figure_and_both_curves(demo_images, tmp_path):
    config = relu_vs_tanh.ExperimentConfig(
        max_epochs=2, batch_size=16, extend_sweep=0,
        learning_rates={"relu": [0.002], "tanh": [0.002, 0.004]},
    )  # fmt: skip
    result = relu_vs_tanh.run_experiment(demo_images, config)
    json_path, png_path = relu_vs_tanh_figure.write_result(result, str(tmp_path / "out"))
    with open(json_path) as f:
        written = json.load(f)
    assert written["threshold"] == 0.25 and set(written["units"]) == {"relu", "tanh"}
    steps_per_epoch = 80 // 16  # five batches: every batch is a point
    for unit, curve in written["units"].items():
        assert len(curve["epochs"]) == len(curve["train_error"]) > 0
        if curve["epochs_to_threshold"] is None:
            assert curve["epochs"] == [i / steps_per_epoch for i in range(1, 11)], unit
        assert all(0 <= e <= 1 for e in curve["train_error"])
    assert [(r["unit"], r["learning_rate"]) for r in written["sweep"]] == [
        ("relu", 0.002), ("tanh", 0.002), ("tanh", 0.004)
    ]  # fmt: skip
    if written["units"]["relu"]["epochs_to_threshold"] is None:
        assert written["speedup"] is None
    image = tf.io.decode_png(tf.io.read_file(png_path))
    assert image.shape[0] > 300 and image.shape[1] > 400
    assert sorted(os.listdir(tmp_path / "out")) == ["relu_vs_tanh.json", "relu_vs_tanh.png"]


def _curve(unit, reached, epochs, rate=0.01):
    n = round(epochs * 10)
    errors = [0.9] * (n - 1) + [0.2 if reached else 0.5]
    return {
        "learning_rate": rate, "epochs": [(i + 1) / 10 for i in range(n)], "train_error": errors,
        "epochs_to_threshold": epochs if reached else None, "stopped": "x",
    }  # fmt: skip


def test_a_unit_that_never_reaches_the_threshold_is_drawn_as_such(tmp_path):
    result = {
        "threshold": 0.25,
        "units": {"relu": _curve("relu", True, 1.5), "tanh": _curve("tanh", False, 6.0)},
        "speedup": 4.0, "speedup_is_lower_bound": True, "sweep": [],
    }  # fmt: skip
    label = relu_vs_tanh_figure.legend_label("tanh", result["units"]["tanh"])
    assert "never reached" in label and "6.0 epochs" in label
    assert "epoch 1.5" in relu_vs_tanh_figure.legend_label("relu", result["units"]["relu"])
    path = relu_vs_tanh_figure.write_figure(result, str(tmp_path / "f.png"))
    assert os.path.getsize(path) > 10_000


def test_the_sweep_keeps_the_fastest_rate_and_gives_up_on_slower_ones(demo_images):
    # Three rates of one unit on the demo digits: the kept run is the one with the fewest epochs
    # to the threshold, and no run trained past it.
    config = relu_vs_tanh.ExperimentConfig(
        threshold=0.85, max_epochs=3, batch_size=16, extend_sweep=0,
        learning_rates={"relu": [0.0001, 0.004, 0.002], "tanh": [0.002]},
    )  # fmt: skip
    best, runs = relu_vs_tanh.sweep(demo_images, "relu", config)
    reached = [r.epochs_to_threshold for r in runs if r.epochs_to_threshold is not None]
    assert reached and best.epochs_to_threshold == min(reached)
    for run in runs[runs.index(best) + 1 :]:
        assert run.epochs[-1] <= best.epochs_to_threshold + 1e-9


def test_the_sweep_goes_past_a_fastest_rate_at_the_edge(demo_images):
    # One listed rate is the edge of its own range: half of it is tried, and then, unless the
    # half is faster (a new lower edge: its half), twice the first.
    config = relu_vs_tanh.ExperimentConfig(
        threshold=0.01, max_epochs=0.4, batch_size=16, extend_sweep=2,
        learning_rates={"relu": [0.002], "tanh": [0.002]},
    )  # fmt: skip
    best, runs = relu_vs_tanh.sweep(demo_images, "tanh", config)
    rates = [run.learning_rate for run in runs]
    assert rates[:2] == [0.002, 0.001] and len(rates) == 3
    # Neither run reaches 1% error: the faster is the one with the lower error at the end.
    assert runs[0].epochs_to_threshold is None and runs[1].epochs_to_threshold is None
    half_is_better = runs[1].train_error[-1] < runs[0].train_error[-1]
    assert rates[2] == (0.0005 if half_is_better else 0.004)
    assert best.train_error[-1] == min(run.train_error[-1] for run in runs)


def test_sets_that_cannot_train_are_refused(demo_images):
    one_class = small_images.LabelledImages(
        demo_images.images[:20], np.zeros(20, np.int32), ["a", "b"], "one-class set"
    )
    config = relu_vs_tanh.ExperimentConfig(batch_size=16)
    with pytest.raises(InputError, match="one-class set.*at least 2 classes"):
        relu_vs_tanh.run_experiment(one_class, config)
    small = relu_vs_tanh.ExperimentConfig(batch_size=128)
    with pytest.raises(InputError, match="80 training images, fewer than one batch"):
        relu_vs_tanh.run_experiment(demo_images, small)


def _write_subset(source_dir: str, output_dir: str, keep, splits=("train",)) -> str:
    """A converted set of the records of `source_dir` for which `keep(label)` holds."""
    import shutil

    from alexnet_tf.data.examples import parse_example
    from alexnet_tf.data.manifest import load_manifest, write_manifest

    manifest = load_manifest(source_dir)
    raw = {k: v for k, v in manifest.raw.items() if k != "format"}
    raw["splits"] = {}
    os.makedirs(output_dir)
    for split in splits:
        name, count = f"{split}-00000-of-00001", 0
        with tf.io.TFRecordWriter(os.path.join(output_dir, name)) as writer:
            for record in tf.data.TFRecordDataset(manifest.split(split).files):
                if keep(int(parse_example(record)["label"])):
                    writer.write(record.numpy())
                    count += 1
        shard = {"file": name, "num_records": count, "sha256": ""}
        raw["splits"][split] = {"num_examples": count, "shards": [shard]}
    mean = manifest.statistics["mean_image"]
    shutil.copy(os.path.join(source_dir, mean), os.path.join(output_dir, mean))
    write_manifest(output_dir, raw)
    return output_dir


def test_the_binary_names_what_a_data_dir_lacks(demo_data_dir, tmp_path):
    one_class = _write_subset(demo_data_dir, str(tmp_path / "one"), lambda label: label == 3)
    no_train = _write_subset(demo_data_dir, str(tmp_path / "val"), bool, splits=("validation",))
    out = tmp_path / "figure"
    cases = [
        [f"--data_dir={one_class}", f"--output_dir={out}", "--batch_size=4"],
        [f"--data_dir={demo_data_dir}", f"--output_dir={out}", "--batch_size=128"],
        [f"--data_dir={no_train}", f"--output_dir={out}"],
        [f"--data_dir={demo_data_dir}", f"--output_dir={out}", "--threshold=1.5"],
    ]
    runs = [run_main("relu_vs_tanh", *argv) for argv in cases]  # exit status, stderr
    expected = [
        "all of 1 class",
        "80 training images, fewer than one batch of --batch_size=128",
        "has no 'train' split",
        "--threshold must be in (0, 1)",
    ]
    for (code, stderr), words in zip(runs, expected, strict=True):
        assert code == 1, stderr
        lines = [line for line in stderr.splitlines() if line.startswith("relu_vs_tanh")]
        assert len(lines) == 1 and words in lines[0], stderr
        assert "Traceback" not in stderr
    assert not out.exists()
