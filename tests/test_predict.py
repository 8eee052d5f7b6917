"""alexnet_tf.predict: labels for image files, with evaluate's preprocessing and numbers."""

import csv
import io
import json
import os

import numpy as np
import pytest
import tensorflow as tf

from alexnet_tf.data import crops
from alexnet_tf.data.demo_data import encode_jpeg, sample_photographs
from alexnet_tf.data.manifest import load_manifest
from alexnet_tf.results import evaluation, predictions


@pytest.fixture(scope="module")
def val_tree(tools_data_dir, tmp_path_factory) -> dict:
    """The validation records of `tools_data_dir` as files in class folders (the bytes the
    converter stored), plus {path: label}."""
    manifest = load_manifest(tools_data_dir)
    root = tmp_path_factory.mktemp("val_tree")
    labels = {}
    for record in tf.data.TFRecordDataset(manifest.split("validation").files):
        f = tf.train.Example.FromString(record.numpy()).features.feature
        label = f["image/class/label"].int64_list.value[0] - manifest.label_offset
        folder = root / manifest.synsets[label]
        folder.mkdir(exist_ok=True)
        path = folder / f["image/filename"].bytes_list.value[0].decode()
        path.write_bytes(f["image/encoded"].bytes_list.value[0])
        labels[str(path)] = label
    return {"root": str(root), "labels": labels}


def _errors(rows, labels, wnids) -> dict:
    """top-1/top-5 error of predict's rows against the class folders' labels."""
    ranks = []
    for row in rows:
        guesses = [wnids.index(g["class"]) for g in row["top_k"]]
        label = labels[row["image"]]
        ranks.append(guesses.index(label) if label in guesses else len(wnids))
    ranks = np.asarray(ranks)
    return {"top1_error": float(np.mean(ranks >= 1)), "top5_error": float(np.mean(ranks >= 5))}


@pytest.mark.parametrize("ten_patch", [False, True])
def test_predict_gives_evaluates_errors(tools_source, tools_data_dir, val_tree, ten_patch):
    mode = "ten_patch" if ten_patch else "center"
    expected = evaluation.evaluate(
        [tools_source], tools_data_dir, modes=[mode], log=lambda line: None
    )[mode]
    rows = [
        p.as_dict(False)
        for p in predictions.predict_files(
            tools_source, predictions.find_images([val_tree["root"]])[0], ten_patch=ten_patch
        )
    ]
    assert len(rows) == len(val_tree["labels"]) and all(r["error"] is None for r in rows)
    assert _errors(rows, val_tree["labels"], tools_source.wnids) == expected


def test_probabilities_are_the_networks_on_the_centre_crop(tools_source, val_tree):
    path = sorted(val_tree["labels"])[0]
    with open(path, "rb") as f:
        crop = crops.eval_crops(tf.constant(f.read())).numpy()
    expected = tools_source.predict(crop[None])["predictions"][0]
    (row,) = predictions.predict_files(tools_source, [path], top_k=10)
    order = np.argsort(-expected, kind="stable")
    assert [g["class"] for g in row.top_k] == [tools_source.wnids[c] for c in order]
    np.testing.assert_allclose([g["probability"] for g in row.top_k], expected[order], rtol=1e-6)


def _photo_files(folder) -> list[str]:
    """A PNG and a JPEG of scikit-learn's sample photographs, not square."""
    photos = sample_photographs()
    folder.mkdir(exist_ok=True)
    png = folder / "flower.png"
    tf.io.write_file(str(png), tf.io.encode_png(photos["flower"][::4, ::3]))  # 107×214
    jpeg = folder / "china.jpg"
    jpeg.write_bytes(encode_jpeg(photos["china"][::5, ::4]))  # 86×160
    return [str(png), str(jpeg)]


def test_a_bad_file_among_good_ones_gets_its_own_row(tools_source, val_tree, tmp_path):
    good = sorted(val_tree["labels"])[:2]
    folder = tmp_path / "mixed"
    photos = _photo_files(folder)
    (folder / "notes.txt").write_text("not an image")
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0" + b"\x00" * 40)  # a JPEG header only
    paths = [good[0], str(folder), good[1]]
    output = str(tmp_path / "labels.jsonl")
    result = predictions.predict(tools_source, paths, output=output, progress=False)
    with open(output) as f:
        rows = [json.loads(line) for line in f]
    names = [r["image"] for r in rows]
    assert names == [
        good[0], str(folder / "broken.jpg"), photos[1], photos[0], str(folder / "notes.txt"),
        good[1],
    ]  # fmt: skip
    errors = {r["image"]: r["error"] for r in rows}
    assert errors[str(folder / "notes.txt")].startswith("not an image")
    assert errors[str(folder / "broken.jpg")].startswith("not an image")
    assert [errors[p] for p in (good[0], good[1], *photos)] == [None] * 4
    assert all(len(r["top_k"]) == 5 for r in rows if r["error"] is None)
    assert all(r["top_k"] == [] for r in rows if r["error"])
    assert (result.num_images, result.num_skipped) == (6, 2)


def test_csv_and_jsonl_rows_hold_the_same_predictions(tools_source, val_tree, tmp_path):
    paths = [val_tree["root"], str(tmp_path / "missing"), str(tmp_path / "empty")]
    (tmp_path / "empty").mkdir()
    out_csv, out_jsonl = str(tmp_path / "p.csv"), str(tmp_path / "p.jsonl")
    for output in (out_csv, out_jsonl):
        result = predictions.predict(tools_source, paths, output=output, top_k=3, progress=False)
    assert result.problems == [
        f"{paths[1]}: no such file or folder",
        f"{paths[2]}: the folder holds no files",
    ]
    with open(out_jsonl) as f:
        rows = [json.loads(line) for line in f]
    with open(out_csv, newline="") as f:
        table = list(csv.DictReader(f))
    assert list(table[0]) == ["image", "error"] + [
        f"{field}_{r}" for r in (1, 2, 3) for field in ("class", "text", "probability")
    ]
    assert len(rows) == len(table) == len(val_tree["labels"])
    for row, line in zip(rows, table, strict=True):
        assert set(row) == {"image", "top_k", "error"}
        assert line["image"] == row["image"] and line["error"] == "" and row["error"] is None
        for r, guess in enumerate(row["top_k"], 1):
            assert line[f"class_{r}"] == guess["class"]
            assert line[f"text_{r}"] == guess["text"]
            assert float(line[f"probability_{r}"]) == pytest.approx(guess["probability"], 1e-5)
        probabilities = [g["probability"] for g in row["top_k"]]
        assert probabilities == sorted(probabilities, reverse=True)


def test_bad_output_and_no_files_write_nothing(tools_source, tmp_path):
    with pytest.raises(predictions.PredictError, match="--output=.*labels.txt"):
        predictions.predict(tools_source, [str(tmp_path)], output=str(tmp_path / "labels.txt"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(predictions.PredictError, match="empty: the folder holds no files"):
        predictions.predict(
            tools_source, [str(tmp_path / "empty")], output=str(tmp_path / "out.csv")
        )
    assert sorted(os.listdir(tmp_path)) == ["empty"]


@pytest.fixture(scope="module")
def box_source(tools_data_dir, tmp_path_factory):
    """An untrained 10-class network with the box head (ILSVRC task 2), as a training run."""
    from alexnet_tf.model import build_alexnet
    from alexnet_tf.results.trained_models import CheckpointSource
    from alexnet_tf.runs.checkpoints import write_model_config

    workdir = str(tmp_path_factory.mktemp("box_workdir"))
    kwargs = {"init": "he", "seed": 0, "localization": True}
    preprocessing = {"mean": "image", "pca_std": 0.1, "input_scale": 1 / 64}
    write_model_config(
        workdir,
        {"num_classes": 10, "model": kwargs, "preprocessing": preprocessing,
         "data_dir": tools_data_dir},
    )  # fmt: skip
    model = build_alexnet(10, **kwargs)
    tf.train.Checkpoint(model=model).save(os.path.join(workdir, "checkpoints", "ckpt"))
    return CheckpointSource(workdir)


def test_boxes_are_in_the_images_own_pixels(box_source, tmp_path):
    png, jpeg = _photo_files(tmp_path / "photos")
    output = str(tmp_path / "boxes.csv")
    predictions.predict(box_source, [png, jpeg], output=output, top_k=2, progress=False)
    with open(output, newline="") as f:
        table = {row["image"]: row for row in csv.DictReader(f)}
    # By hand for the PNG (107 high, 214 wide): its central square is x 53..160, resized to the
    # 256×256 frame; the centre patch starts at pixel 14 of the frame, and is 227 wide.
    image = tf.io.decode_png(tf.io.read_file(png), channels=3)
    crop = crops.patches(crops.stored_image(image), False).numpy()
    out = box_source.predict(crop)
    top = np.argsort(-out["predictions"][0], kind="stable")[:2]
    side, x0 = 107, (214 - 107) // 2
    for r, c in enumerate(top, 1):
        ymin, xmin, ymax, xmax = out["bbox"][0, 4 * c : 4 * c + 4]
        row = table[png]
        assert row[f"class_{r}"] == box_source.wnids[c]
        expected = {
            "ymin": (ymin * 227 + 14) / 256 * side,
            "xmin": x0 + (xmin * 227 + 14) / 256 * side,
            "ymax": (ymax * 227 + 14) / 256 * side,
            "xmax": x0 + (xmax * 227 + 14) / 256 * side,
        }
        for field, value in expected.items():
            assert float(row[f"box_{r}_{field}"]) == pytest.approx(value, abs=0.01)
    assert table[jpeg]["box_1_xmax"] != ""
    jsonl = predictions.Prediction("x", [], [{"ymin": 1.0}], None).as_dict(True)
    assert jsonl["boxes"] == [{"ymin": 1.0}]


def test_binary_reports_a_model_path_with_nothing_loadable(binary_runs):
    # python -m alexnet_tf.predict --model=FOLDER --output=OUT.csv FOLDER, FOLDER holding only a
    # text file
    run = binary_runs["predict"]
    assert run["code"] == 1
    model = run["argv"][0].split("=", 1)[1]
    lines = [line for line in io.StringIO(run["stderr"]) if line.startswith("predict:")]
    assert len(lines) == 1 and model in lines[0], run["stderr"][-2000:]
    assert run["written"] == []  # no OUT.csv


def test_a_saved_model_and_a_checkpoint_prefix_load_as_models(
    tools_source, tools_workdir, exported_model, val_tree
):
    files = sorted(val_tree["labels"])[:3]
    expected = list(predictions.predict_files(tools_source, files))  # ckpt-2, the latest
    exported = list(predictions.predict_files(predictions.load_model(exported_model), files))
    for got, want in zip(exported, expected, strict=True):
        assert [g["class"] for g in got.top_k] == [g["class"] for g in want.top_k]
        np.testing.assert_allclose(
            [g["probability"] for g in got.top_k], [g["probability"] for g in want.top_k], 1e-5
        )
    first = predictions.load_model(os.path.join(tools_workdir, "checkpoints", "ckpt-1"))
    assert first.step == 1
    rows = list(predictions.predict_files(first, files))
    assert [r.top_k for r in rows] != [r.top_k for r in expected]  # ckpt-2 has other fc8 weights
