"""Evaluation (sections 4.1 and 6): ten patches, model averaging, one score per example."""

import json
import os

import numpy as np
import pytest
import tensorflow as tf

from alexnet_tf.data.input_pipeline import make_eval_dataset, parse_example
from alexnet_tf.data.manifest import load_manifest
from alexnet_tf.results import evaluation
from alexnet_tf.results.trained_models import CheckpointSource
from alexnet_tf.runs.checkpoints import CheckpointError
from alexnet_tf.training import loop as training


@pytest.fixture(scope="module")
def manifest(tools_data_dir):
    return load_manifest(tools_data_dir)


@pytest.fixture(scope="module")
def members(tools_workdir, tools_source):
    """The two checkpoints of the tools workdir, as two models to average."""
    assert tools_source.prefix.endswith("ckpt-2")
    return [CheckpointSource(os.path.join(tools_workdir, "checkpoints", "ckpt-1")), tools_source]


def _numpy_ten_patches(image):
    """Section 4.1 in NumPy: the four corner patches, the centre patch and their reflections."""
    far = image.shape[0] - 227
    offsets = [(far // 2, far // 2), (0, 0), (0, far), (far, 0), (far, far)]
    patches = np.stack([image[y : y + 227, x : x + 227] for y, x in offsets])
    return np.concatenate([patches, patches[:, :, ::-1]])


def _numpy_errors(probabilities, labels):
    order = np.argsort(-probabilities, axis=1, kind="stable")
    return {
        f"top{k}_error": float(np.mean([lab not in row[:k] for row, lab in zip(order, labels)]))
        for k in (1, 5)
    }


def test_ten_patch_score_equals_numpy(manifest, members):
    source = members[1]
    split = manifest.split("validation")
    # NumPy: decode each record, cut the ten patches, normalize, run the model, average.
    expected, labels = [], []
    mean = manifest.mean_image()[14:241, 14:241]
    for record in tf.data.TFRecordDataset(split.files):
        example = parse_example(record)
        image = tf.io.decode_jpeg(example["encoded"], channels=3).numpy()
        assert image.shape == (256, 256, 3)
        inputs = (_numpy_ten_patches(image).astype(np.float32) - mean) / 64
        expected.append(source.model(inputs, training=False).numpy().mean(axis=0))
        labels.append(int(example["label"]))
    expected = np.stack(expected)
    # The evaluation path: the input pipeline's ten-patch batches, padded (6 = 4 + 2 masked).
    dataset = make_eval_dataset(split.files, 4, ten_patch=True, num_classes=10)
    got, got_labels = [], []
    counter = evaluation.ErrorCounter(10)
    for images, batch_labels, mask in dataset.as_numpy_iterator():
        assert images.shape == (4, 10, 227, 227, 3)
        probabilities = evaluation.average_probabilities([source], images)
        counter.update(probabilities, batch_labels, mask)
        got.append(probabilities[mask])
        got_labels.extend(batch_labels[mask])
    np.testing.assert_allclose(np.concatenate(got), expected, rtol=1e-4, atol=1e-6)
    assert got_labels == labels
    assert counter.count == split.num_examples
    assert counter.errors() == pytest.approx(_numpy_errors(expected, labels))


def test_model_average_is_the_mean_of_its_members(manifest, members):
    dataset = make_eval_dataset(manifest.split("validation").files, 6, num_classes=10)
    images, labels, _ = next(dataset.as_numpy_iterator())
    each = [m.predict(images)["predictions"] for m in members]
    assert not np.allclose(each[0], each[1])  # two different models
    average = evaluation.average_probabilities(members, images)
    np.testing.assert_allclose(average, (each[0] + each[1]) / 2, rtol=1e-5, atol=1e-7)
    # Ten patches of two images: each model averages its patches, then the models are averaged.
    ten = np.stack(
        [_numpy_ten_patches(np.pad(i, ((14, 15), (14, 15), (0, 0)))) for i in images[:2]]
    )
    ten_each = [m.predict(ten.reshape(-1, 227, 227, 3))["predictions"] for m in members]
    ten_expected = np.mean([p.reshape(2, 10, 10).mean(axis=1) for p in ten_each], axis=0)
    np.testing.assert_allclose(
        evaluation.average_probabilities(members, ten), ten_expected, rtol=1e-5, atol=1e-7
    )


def test_counter_counts_each_unmasked_example_once():
    counter = evaluation.ErrorCounter(num_classes=6)
    probabilities = np.array([np.arange(6) / 15.0, np.arange(6)[::-1] / 15.0, np.ones(6) / 6])
    # Row 0 ranks class 5 first, row 1 class 0 first; row 2 is padding and must not count.
    counter.update(probabilities, np.array([5, 5, 0]), np.array([True, True, False]))
    assert counter.count == 2
    assert counter.errors() == {"top1_error": 0.5, "top5_error": 0.5}
    rows = counter.per_class_errors([f"w{i}" for i in range(6)])
    assert rows[5] == {"class": 5, "wnid": "w5", "num_examples": 2, "top1_error": 0.5,
                       "top5_error": 0.5}  # fmt: skip
    assert rows[0]["num_examples"] == 0 and rows[0]["top1_error"] is None
    with pytest.raises(evaluation.EvaluationError, match="labels outside"):
        counter.update(probabilities[:1], np.array([6]), np.array([True]))


def test_ensemble_evaluation_writes_eval_json(tools_workdir, tools_data_dir, members, tmp_path):
    result = evaluation.evaluate(
        [members[0].prefix, members[1]], tools_data_dir, batch_size=4, modes=["center"],
        per_class=True, workdir=str(tmp_path), log=lambda line: None,
    )  # fmt: skip
    dataset = make_eval_dataset(load_manifest(tools_data_dir).split("validation").files, 6)
    images, labels, _ = next(dataset.as_numpy_iterator())
    expected = np.mean([m.predict(images)["predictions"] for m in members], axis=0)
    assert result["center"] == pytest.approx(_numpy_errors(expected, labels))
    with open(tmp_path / "eval.json") as f:
        assert json.load(f) == json.loads(json.dumps(result))
    assert len(result["per_class"]["center"]) == 10
    assert os.listdir(tmp_path / "tensorboard" / "eval_center")  # TensorBoard events


def test_unknown_checkpoint_is_named(tools_data_dir, tools_workdir, tmp_path):
    from alexnet_tf.results.trained_models import resolve_data_dir

    with pytest.raises(CheckpointError, match="nowhere"):
        resolve_data_dir(str(tmp_path / "nowhere"), None)  # no --data_dir: the run's is used
    assert resolve_data_dir(tools_workdir, None) == tools_data_dir
    with pytest.raises(CheckpointError, match="nowhere"):
        evaluation.evaluate([str(tmp_path / "nowhere")], tools_data_dir, workdir=None)
    with pytest.raises(ValueError, match="modes"):
        evaluation.evaluate([str(tmp_path)], tools_data_dir, modes=["corner"])


def test_evaluate_binary_scores_every_example_once(binary_runs, tools_workdir, tools_data_dir):
    proc = binary_runs["evaluate:ok"]  # python -m alexnet_tf.evaluate --workdir=... --batch_size=4
    assert proc["code"] == 0, proc["stderr"][-3000:]
    num_examples = load_manifest(tools_data_dir).split("validation").num_examples
    for mode in ("center", "ten_patch"):
        assert (
            f"{mode}: scored {num_examples} examples; the manifest has {num_examples}"
            in (proc["stdout"])
        )
    with open(os.path.join(tools_workdir, "eval.json")) as f:
        result = json.load(f)
    assert result["num_examples"] == num_examples
    for mode in ("center", "ten_patch"):
        assert set(result[mode]) == {"top1_error", "top5_error"}
        assert 0 <= result[mode]["top5_error"] <= result[mode]["top1_error"] <= 1
    # Beside training's summaries: `tensorboard --logdir WORKDIR/tensorboard` shows both.
    assert evaluation.SUMMARY_DIR == training.SUMMARY_DIR
    events = os.listdir(os.path.join(tools_workdir, "tensorboard", "eval_ten_patch"))
    assert any(name.startswith("events.out.tfevents") for name in events)


def test_bad_input_is_reported_in_one_line(tmp_path, capsys):
    from alexnet_tf.cli import tool_errors

    with pytest.raises(SystemExit) as exit_info, tool_errors.reported("evaluate"):
        evaluation.evaluate([str(tmp_path)], str(tmp_path))
    assert exit_info.value.code == 1
    err = capsys.readouterr().err
    assert err.startswith("evaluate: error: ") and "manifest.json" in err
