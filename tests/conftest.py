"""Shared test fixtures: a tiny converted demo data set, built once per test session."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest  # noqa: E402

# The package before TensorFlow, as in the binaries: it switches on the oneDNN CPU kernels, which
# TensorFlow reads once at import. Every test, run alone or in the suite, then sees the same ones.
import alexnet_tf  # noqa: E402, F401

# 10 digit classes × 8 training + 3 validation images: enough for every class to appear in each
# split, small enough to convert in a few seconds on two shared cores.
DEMO_TRAIN_PER_CLASS = 8
DEMO_VAL_PER_CLASS = 3
DEMO_TRAIN_SHARDS = 2
DEMO_VAL_SHARDS = 1


@pytest.fixture(scope="session")
def demo_tree(tmp_path_factory) -> dict:
    """The demo ILSVRC-layout tree (write_demo_tree's dict: train_dir, val_dir, val_labels...)."""
    from alexnet_tf.data.demo_data import write_demo_tree

    root = tmp_path_factory.mktemp("demo_tree")
    return write_demo_tree(
        str(root),
        train_per_class=DEMO_TRAIN_PER_CLASS,
        val_per_class=DEMO_VAL_PER_CLASS,
        image_size=64,
    )


@pytest.fixture(scope="session")
def demo_data_dir(demo_tree, tmp_path_factory) -> str:
    """A converted demo data set: shards + manifest.json + mean_image.npy; returns the folder.

    Read it with `alexnet_tf.data.manifest.load_manifest(demo_data_dir)`: 10 classes, 80 training
    records in 2 shards, 30 validation records in 1 shard, 256×256 JPEGs, labels 0-9.
    """
    from alexnet_tf.convert import convert

    output_dir = str(tmp_path_factory.mktemp("demo_data"))
    result = convert(
        output_dir=output_dir,
        train_dir=demo_tree["train_dir"],
        val_dir=demo_tree["val_dir"],
        val_labels=demo_tree["val_labels"],
        train_shards=DEMO_TRAIN_SHARDS,
        val_shards=DEMO_VAL_SHARDS,
        resize=256,
        num_workers=1,
        show_progress=False,
    )
    assert result.complete, result.errors
    return output_dir


# The evaluation tools' tests run a 61M-parameter network on two CPU cores: they use a subset.
TOOLS_VAL_RECORDS = 6
TOOLS_TRAIN_RECORDS = 12


@pytest.fixture(scope="session")
def tools_data_dir(demo_data_dir, tmp_path_factory) -> str:
    """The first records of the demo data set as a data directory of its own (same manifest
    classes and statistics): 6 validation and 12 training images, one shard each."""
    import shutil

    import tensorflow as tf

    from alexnet_tf.data.manifest import load_manifest, write_manifest

    manifest = load_manifest(demo_data_dir)
    output_dir = str(tmp_path_factory.mktemp("tools_data"))
    raw = {k: v for k, v in manifest.raw.items() if k != "format"}
    raw["splits"] = {}
    for split, count in (("validation", TOOLS_VAL_RECORDS), ("train", TOOLS_TRAIN_RECORDS)):
        name = f"{split}-00000-of-00001"
        records = tf.data.TFRecordDataset(manifest.split(split).files).take(count)
        with tf.io.TFRecordWriter(os.path.join(output_dir, name)) as writer:
            for record in records:
                writer.write(record.numpy())
        shard = {"file": name, "num_records": count, "sha256": ""}
        raw["splits"][split] = {"num_examples": count, "shards": [shard]}
    shutil.copy(
        os.path.join(demo_data_dir, manifest.statistics["mean_image"]),
        os.path.join(output_dir, manifest.statistics["mean_image"]),
    )
    write_manifest(output_dir, raw)
    return output_dir


@pytest.fixture(scope="session")
def tools_workdir(tools_data_dir, tmp_path_factory) -> str:
    """A training WORKDIR (checkpoints.py layout) for the evaluation and export tools' tests.

    An untrained 10-class AlexNet (He init, so the outputs differ between images) on
    `tools_data_dir`, saved twice: checkpoints/ckpt-1, then ckpt-2 with other fc8 weights (two
    "models" to average). Building and saving take seconds; the tools need no training.
    """
    import numpy as np
    import tensorflow as tf

    from alexnet_tf.model import build_alexnet
    from alexnet_tf.runs.checkpoints import write_model_config

    workdir = str(tmp_path_factory.mktemp("tools_workdir"))
    model_kwargs = {"init": "he", "seed": 0}
    write_model_config(
        workdir,
        {
            "num_classes": 10,
            "model": model_kwargs,
            # 1/64 keeps the He-initialized logits small enough that the softmax is not one-hot.
            "preprocessing": {"mean": "image", "pca_std": 0.1, "input_scale": 1 / 64},
            "data_dir": tools_data_dir,
        },
    )
    model = build_alexnet(10, **model_kwargs)
    checkpoint = tf.train.Checkpoint(model=model)
    prefix = os.path.join(workdir, "checkpoints", "ckpt")
    checkpoint.save(prefix)
    fc8 = model.get_layer("fc8")
    rng = np.random.default_rng(1)
    fc8.kernel.assign(rng.permutation(fc8.kernel.numpy(), axis=1))
    checkpoint.save(prefix)
    return workdir


@pytest.fixture(scope="session")
def tools_source(tools_workdir):
    """`CheckpointSource(tools_workdir)`: its latest checkpoint (ckpt-2) restored once for all
    the tools' tests (each restore builds the 61M-parameter network)."""
    from alexnet_tf.results.trained_models import CheckpointSource

    return CheckpointSource(tools_workdir)


@pytest.fixture(scope="session")
def exported_model(tools_workdir, tmp_path_factory) -> str:
    """The export binary's SavedModel of `tools_workdir` (centre patch, top 5); returns its path.

    Its own interpreter: the names of the traced functions in saved_model.pb depend on what the
    process traced before, and an export must equal any other fresh export byte for byte.
    """
    import subprocess
    import sys

    export_dir = str(tmp_path_factory.mktemp("export") / "alexnet")
    proc = subprocess.run(
        [sys.executable, "-m", "alexnet_tf.export", f"--workdir={tools_workdir}",
         f"--export_dir={export_dir}"],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"SavedModel written to {export_dir}" in proc.stdout
    return export_dir


# Each binary run in one interpreter, so that TensorFlow is imported once: absl registers flags
# globally, so each binary's own flags are removed (and the module forgotten) before the next.
_BINARY_RUNS = """
import contextlib, importlib, io, json, os, sys
from absl import flags
out, cases = sys.argv[1], json.loads(sys.argv[2])
results = {}
for key, argv, paths in cases:
    name = key.split(":")[0]
    module = importlib.import_module(f"alexnet_tf.{name}")
    stdout, stderr = io.StringIO(), io.StringIO()
    sys.argv = [name, *argv]
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        try:
            module.run_main()
            code = 0
        except SystemExit as e:
            code = 0 if e.code is None else e.code
            if isinstance(code, str):  # sys.exit(message): Python prints it on stderr
                print(code, file=stderr)
    results[key] = {
        "help": flags.FLAGS.module_help(module),
        "stdout": stdout.getvalue(),
        "stderr": stderr.getvalue(),
        "code": code,
        "written": [p for p in paths if os.path.exists(p)],
    }
    for flag in flags.FLAGS.get_flags_for_module(module):
        delattr(flags.FLAGS, flag.name)
    for flag in flags.FLAGS:  # back to the defaults for the next binary
        flags.FLAGS[flag].unparse()
    del sys.modules[module.__name__]
json.dump(results, open(out, "w"))
"""


@pytest.fixture(scope="session")
def binary_runs(tools_workdir, tmp_path_factory) -> dict:
    """`python -m alexnet_tf.X` for each binary, with flags a user gets wrong, and the runs that
    work ("NAME:ok") of describe, evaluate and retrieve on `tools_workdir`.

    Returns:
        {key: {"help", "stdout", "stderr", "code", "written": paths it should not have made}};
        "retrieve:ok" also gives its "output_dir".
    """
    import json
    import subprocess
    import sys

    tmp = tmp_path_factory.mktemp("binary_runs")
    new = {name: str(tmp / name) for name in ("evaluate", "export", "retrieve", "train", "vis")}
    cases = [
        ("evaluate", [f"--checkpoints={tools_workdir}", f"--workdir={new['evaluate']}",
                      "--batch_size=0"], [new["evaluate"]]),
        ("export", [f"--workdir={tools_workdir}", f"--export_dir={new['export']}", "--top_k=0"],
         [new["export"]]),
        ("retrieve", [f"--workdir={tools_workdir}", f"--output_dir={new['retrieve']}", "--k=0"],
         [new["retrieve"]]),
        ("visualize", [f"--workdir={tools_workdir}", f"--output_dir={new['vis']}",
                       "--columns=0"], [new["vis"]]),
        ("train", [f"--workdir={new['train']}", f"--data_dir={tmp / 'no_data'}"],
         [new["train"]]),
        ("export:exists", [f"--workdir={tools_workdir}", f"--export_dir={tools_workdir}"], []),
        ("describe", ["--num_classes=0"], []),
        ("describe:ok", [], []),
        ("evaluate:ok", [f"--workdir={tools_workdir}", "--batch_size=4"], []),
        ("retrieve:ok", [f"--workdir={tools_workdir}", f"--output_dir={tmp / 'retrieval'}",
                         "--num_queries=3", "--k=4", "--batch_size=6", "--max_memory_mb=1"], []),
    ]  # fmt: skip
    out = tmp / "result.json"
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    proc = subprocess.run(
        [sys.executable, "-c", _BINARY_RUNS, str(out), json.dumps(cases)],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": repo},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs = json.loads(out.read_text())
    runs["retrieve:ok"]["output_dir"] = str(tmp / "retrieval")
    return runs
