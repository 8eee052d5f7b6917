"""The SavedModel export: same answers as the checkpoint, no project code needed to run it."""

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow as tf

from alexnet_tf.data.input_pipeline import eval_crops, parse_example
from alexnet_tf.data.manifest import load_manifest
from alexnet_tf.results import saved_model as exporting
from alexnet_tf.results.trained_models import SavedModelSource

# Runs in a fresh interpreter with -I (no PYTHONPATH, no user site, not the repository as cwd).
FRESH_PROCESS = textwrap.dedent(
    """
    import sys
    import numpy as np
    import tensorflow as tf

    export_dir, inputs, outputs = sys.argv[1:]
    loaded = tf.saved_model.load(export_dir)
    images = tf.constant(np.load(inputs))
    served = loaded.signatures["serving_default"](images=images)
    features = loaded.signatures["fc7"](images=images)
    np.savez(outputs, fc7=features["fc7"].numpy(), fc7_valid=features["valid"].numpy(),
             **{k: np.asarray(v.numpy(), "S" if v.dtype == tf.string else None)
                for k, v in served.items()})
    assert not [m for m in sys.modules if m.startswith("alexnet_tf")], "project code was loaded"
    """
)


@pytest.fixture(scope="module")
def source(tools_source):
    return tools_source


@pytest.fixture(scope="module")
def export_dir(exported_model):
    """The export binary's SavedModel of the tools workdir (centre patch, top 5), from conftest."""
    return exported_model


@pytest.fixture(scope="module")
def encoded(tools_data_dir):
    """Two validation JPEGs from the shards (256×256), a 300×512 JPEG photograph, the same
    photograph's decoded pixels as a PNG, and a string that is no image."""
    from skimage import data

    files = load_manifest(tools_data_dir).split("validation").files
    jpegs = [parse_example(r)["encoded"].numpy() for r in tf.data.TFRecordDataset(files).take(2)]
    wide = tf.io.encode_jpeg(data.astronaut()[100:400], quality=90).numpy()
    assert tf.io.decode_jpeg(wide).shape == (300, 512, 3)  # not square, not 256: resized
    png = tf.io.encode_png(tf.io.decode_jpeg(wide)).numpy()  # lossless: the same pixels
    return jpegs + [wide, png, b"this is not an image"]


def _evaluation(source, encoded, ten_patch=False):
    """The checkpoint's outputs on evaluation's crops of the JPEG bytes (the input pipeline's
    `eval_crops`, which cuts the central square and resizes it to 256×256 as the converter)."""
    crops = np.stack([eval_crops(tf.constant(e), ten_patch=ten_patch).numpy() for e in encoded])
    return crops, source.predict(crops.reshape(-1, 227, 227, 3))


@pytest.fixture(scope="module")
def other_processes(export_dir, encoded, tmp_path_factory):
    """The SavedModel in two processes started together: a fresh interpreter with -I running
    FRESH_PROCESS on all of `encoded`, and TensorFlow's `saved_model_cli run` on the first
    image and the string that is no image. Returns ({output: array}, saved_model_cli's stdout).
    """
    tmp = tmp_path_factory.mktemp("served_elsewhere")
    script, inputs, outputs, two = (tmp / n for n in ("run.py", "in.npy", "out.npz", "two.npy"))
    script.write_text(FRESH_PROCESS)
    np.save(inputs, np.array(encoded))  # fixed-width bytes: no pickle needed to read them back
    np.save(two, np.array([encoded[0], encoded[-1]]))
    cli = os.path.join(os.path.dirname(sys.executable), "saved_model_cli")
    pipes = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, "text": True, "cwd": tmp}
    processes = [
        subprocess.Popen(
            [sys.executable, "-I", str(script), export_dir, str(inputs), str(outputs)],
            env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"}, **pipes,
        ),
        subprocess.Popen(
            [cli, "run", "--dir", export_dir, "--tag_set", "serve", "--signature_def",
             "serving_default", "--inputs", f"images={two}"], **pipes,
        ),
    ]  # fmt: skip
    try:
        (_, fresh_err), (cli_out, cli_err) = (p.communicate(timeout=300) for p in processes)
    finally:
        for p in processes:
            p.kill()
    assert processes[0].returncode == 0, fresh_err[-3000:]
    assert processes[1].returncode == 0, cli_err[-3000:]
    return dict(np.load(outputs)), cli_out


def test_fresh_process_gives_the_checkpoints_probabilities(other_processes, encoded, source):
    got = other_processes[0]
    # A network without the box head serves exactly the outputs it always did.
    assert sorted(got) == sorted(
        ["fc7", "fc7_valid", "probabilities", "top_k_indices", "top_k_probabilities",
         "top_k_texts", "top_k_wnids", "valid"]
    )  # fmt: skip
    # The checkpoint, fed by evaluation's centre crop of the same JPEG bytes; the PNG holds the
    # wide JPEG's decoded pixels, so it must give the wide JPEG's answers.
    jpegs = encoded[:3] + [encoded[2]]
    _, want = _evaluation(source, jpegs)
    np.testing.assert_allclose(got["probabilities"][:4], want["predictions"], atol=2e-6)
    np.testing.assert_allclose(got["fc7"][:4], want["fc7"], rtol=1e-4, atol=1e-3)
    assert np.abs(want["predictions"][2] - want["predictions"][0]).max() > 1e-4  # not all alike
    top = np.argsort(-want["predictions"], axis=1, kind="stable")[:, :5]
    np.testing.assert_array_equal(got["top_k_indices"][:4], top)
    assert [w.decode() for w in got["top_k_wnids"][0]] == [source.wnids[i] for i in top[0]]
    assert [t.decode() for t in got["top_k_texts"][0]] == [source.texts[i] for i in top[0]]
    # The string that is not an image gives an error result, not a crash.
    np.testing.assert_array_equal(got["valid"], [True, True, True, True, False])
    np.testing.assert_array_equal(got["fc7_valid"], [True, True, True, True, False])
    assert not got["probabilities"][4].any() and not got["fc7"][4].any()
    assert (got["top_k_indices"][4] == -1).all() and got["top_k_wnids"][4].tolist() == [b""] * 5


def test_saved_model_cli_runs_it(other_processes):
    stdout = other_processes[1]
    assert "Result for output key valid:\n[ True False]" in stdout
    assert "Result for output key top_k_wnids:" in stdout


def test_ten_patch_and_float_signatures(source, encoded, tmp_path):
    module = exporting.ExportModule(
        source.model, source.normalizer, source.wnids, source.texts, top_k=3, ten_patch=True
    )
    served = module.serve(tf.constant(encoded[:4]))
    patches, want = _evaluation(source, encoded[:3] + [encoded[2]], ten_patch=True)
    want = want["predictions"].reshape(4, 10, -1).mean(axis=1)
    # 40 patches in one batch here, 10 per image there: float32 round-off of other kernels.
    np.testing.assert_allclose(served["probabilities"], want, rtol=1e-4, atol=2e-6)
    assert served["top_k_indices"].shape == (4, 3)
    normalized = source.normalizer(patches[:, 0], training=False)
    floats = module.predict_images(normalized)
    want = source.predict(patches[:, 0])["predictions"]
    np.testing.assert_allclose(floats["probabilities"], want, atol=2e-6)
    os.makedirs(tmp_path / "taken")
    with pytest.raises(FileExistsError, match="--overwrite"):
        exporting.save(module, str(tmp_path / "taken"))


def test_tools_run_on_the_savedmodel(export_dir, source, encoded, tools_data_dir, tmp_path):
    from alexnet_tf.results import evaluation, figures

    exported = SavedModelSource(export_dir)
    assert exported.wnids == source.wnids and exported.texts == source.texts
    assert exported.step == source.step == 2
    np.testing.assert_array_equal(exported.conv1_kernels(), source.conv1_kernels())
    crops = np.stack([eval_crops(tf.constant(e)).numpy() for e in encoded[:2]])
    np.testing.assert_allclose(
        exported.predict(crops)["predictions"], source.predict(crops)["predictions"], atol=2e-6
    )
    quiet = {"batch_size": 6, "modes": ["center"], "log": lambda line: None}
    from_export = evaluation.evaluate([export_dir], tools_data_dir, **quiet)
    from_checkpoint = evaluation.evaluate([source.prefix], tools_data_dir, **quiet)
    assert from_export["center"] == from_checkpoint["center"]
    assert from_export["num_examples"] == from_checkpoint["num_examples"] == 6
    paths = figures.write_figures(export_dir, str(tmp_path), num_images=0, log=lambda line: None)
    assert os.path.exists(paths["conv1_kernels"])
