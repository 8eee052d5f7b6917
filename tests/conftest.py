"""Shared test fixtures, each built once per test session, and the session's two CPU devices.

The CPU is split into two logical devices (`/CPU:0`, `/CPU:1`) before any TensorFlow op runs,
so the two towers on two devices, MirroredStrategy's two replicas and the device prefetcher are
tested in-process; everything else runs on `/CPU:0` as it would on a one-CPU machine. Only one
MirroredStrategy per session may use collective all-reduce (`--strategy=mirrored`'s, trained
in test_train_distributed.py): a second one reuses its collective keys and TensorFlow mixes the
two up, so any other test builds its strategy with
`cross_device_ops=tf.distribute.ReductionToOneDevice()`.

Data (the scikit-learn digits as ILSVRC-2012 folders, converted by the real converter):
    demo_tree        the raw tree: `write_demo_tree`'s dict (train_dir, val_dir, val_labels...).
    demo_data_dir    converted: 10 classes, 80 training records in 2 shards, 30 validation in 1.
    tools_data_dir   its first records as a data set of their own: 12 training, 6 validation.

Runs (read-only: copy a workdir with `shutil.copytree` before training on in it):
    tools_workdir    an untrained 10-class AlexNet on tools_data_dir as checkpoints/ckpt-1 and
                     ckpt-2 (other fc8 weights), with model_config.json: what the tools load.
    tools_source     `CheckpointSource(tools_workdir)`, restored once.
    exported_model   the export binary's SavedModel of tools_workdir, by a process of its own.
    trained_workdir  the `TrainResult` of two real training steps (batch 4) on tools_data_dir:
                     `.workdir` holds checkpoints/ckpt-2, model_config.json, tensorboard/.
    two_workers      a finished two-process --strategy=multi_worker run of the stand-in network
                     (tests/tiny_runs.py, TWO_WORKERS): {"workdir", "checkpoint", "outputs"}.
    binary_runs      every binary's usage errors and a few working runs, in one interpreter.

The processes of exported_model, two_workers and binary_runs start with the session's first
test and run beside the others; the tests that read exported_model or binary_runs run near the
end. Then the background jobs (tests/background.py: a signal, a kill, lost workers, fresh
interpreters) run one after another beside the in-process tests, and the tests that read them
run last.

The stand-in network (`tiny_runs.tiny_alexnet`, with `training.train(config,
build_model=tiny_alexnet)`) is what training-loop tests use: a step takes milliseconds.
"""

import json
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest  # noqa: E402

# The package before TensorFlow, as in the binaries: it switches on the oneDNN CPU kernels, which
# TensorFlow reads once at import. Every test, run alone or in the suite, then sees the same ones.
import alexnet_tf  # noqa: E402, F401


def _two_logical_cpus() -> None:
    """Before any op: TensorFlow fixes its devices when it first runs one."""
    import tensorflow as tf

    tf.config.set_logical_device_configuration(
        tf.config.list_physical_devices("CPU")[0], [tf.config.LogicalDeviceConfiguration()] * 2
    )


_two_logical_cpus()

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
def trained_workdir(tools_data_dir, tmp_path_factory):
    """Two steps of the real network on `tools_data_dir` (batch 4, He init, seed 3); the run's
    `TrainResult` (`.workdir`, `.step`, `.checkpoint`, `.eval`). Read-only: copy to train on."""
    from alexnet_tf.training import loop as training

    config = training.TrainConfig(
        data_dir=tools_data_dir, workdir=str(tmp_path_factory.mktemp("trained") / "run"),
        train_steps=2, batch_size=4, eval_every_steps=0, log_every_steps=1,
        checkpoint_every_steps=100, init="he", input_scale=1 / 64, shuffle_buffer=16, seed=3,
    )  # fmt: skip
    return training.train(config)


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
            if isinstance(code, str):  # sys.exit(message): Python prints it, exit status 1
                print(code, file=stderr)
                code = 1
    results[key] = {
        "argv": argv,
        "help": flags.FLAGS.module_help(module),
        "stdout": stdout.getvalue(),
        "stderr": stderr.getvalue(),
        "code": code,
        "written": [p for p in paths if os.path.exists(p)],
        "read": {p: open(p).read() for p in paths if os.path.isfile(p)},
    }
    for flag in flags.FLAGS.get_flags_for_module(module):
        delattr(flags.FLAGS, flag.name)
    for flag in flags.FLAGS:  # back to the defaults for the next binary
        flags.FLAGS[flag].unparse()
    del sys.modules[module.__name__]
    delattr(sys.modules["alexnet_tf"], name)  # or `from alexnet_tf import X` finds it again
json.dump(results, open(out, "w"))
"""


# The smallest demo that runs every stage: 2 training and 1 held-out digit per class, two steps.
DEMO_TINY = [
    "--train_per_class=2", "--val_per_class=1", "--train_steps=2", "--batch_size=4",
    "--eval_every_steps=0", "--checkpoint_every_steps=2", "--shuffle_buffer=8",
    "--figure_images=2", "--retrieval_queries=2", "--retrieval_k=2",
]  # fmt: skip


# Processes that collected tests read later: started with the session's first test, they run
# beside the in-process tests (a process spends much of its time on one core, importing
# TensorFlow). The tests that read `binary_runs` run last, so that it has the time.
_EARLY = ("exported_model", "two_workers", "binary_runs")


def pytest_collection_modifyitems(items):
    """Moves the tests that read an early process's result towards the end (`exported_model`'s,
    then `binary_runs`'), so that the processes have the time, and after them the tests that read
    a background job's (tests/background.py), in the jobs' order; each group in its order (a
    stable sort)."""
    import background

    jobs = list(background.JOBS)

    def last_job(item) -> int:
        return max((jobs.index(n) + 1 for n in item.fixturenames if n in jobs), default=0)

    items.sort(
        key=lambda item: (
            last_job(item),
            "binary_runs" in item.fixturenames,
            "exported_model" in item.fixturenames,
        )
    )


@pytest.fixture(scope="session", autouse=True)
def _early_processes(request):
    """Starts the processes of each of `_EARLY`'s fixtures that a collected test uses; yields
    {fixture name: ([Popen], its folder)}, and kills any left at the end."""
    started = {}
    for name in _EARLY:
        if any(name in item.fixturenames for item in request.session.items):
            _start(started, name, request)
    yield started
    for processes, _ in started.values():
        for process in processes:
            process.kill()
            process.wait()


@pytest.fixture(scope="session", autouse=True)
def _background_jobs(_early_processes, request):
    """Runs the background jobs (tests/background.py) that collected tests read, one after
    another in a thread, once the early processes have exited (until then they keep both cores
    busy); yields a function from a job's name to its result."""
    import concurrent.futures

    import background

    def submit(name):
        function, fixtures = background.JOBS[name]
        folder = request.getfixturevalue("tmp_path_factory").mktemp(name)
        values = [request.getfixturevalue(f) for f in fixtures]  # in the main thread
        futures[name] = pool.submit(function, folder, *values)

    def wait_for_the_early_processes():
        for processes, _ in _early_processes.values():
            for process in processes:
                process.wait()

    pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="background")
    pool.submit(wait_for_the_early_processes)
    futures = {}
    for name in background.JOBS:
        if any(name in item.fixturenames for item in request.session.items):
            submit(name)

    def result(name):
        if name not in futures:  # a test that asks for it with request.getfixturevalue
            submit(name)
        return futures[name].result()

    yield result
    pool.shutdown(cancel_futures=True)


def _start(started: dict, name: str, request) -> None:
    """Starts `name`'s processes from the repository root (as the README's commands), their
    output in files of its folder (a pipe nobody reads until the end would fill up)."""
    import subprocess
    import sys

    import tiny_runs

    tmp = request.getfixturevalue("tmp_path_factory").mktemp(name)
    tools_data_dir = request.getfixturevalue("tools_data_dir")
    if name == "two_workers":
        with open(tmp / "worker-0.txt", "w") as chief, open(tmp / "worker-1.txt", "w") as other:
            processes = tiny_runs.start_workers(
                tools_data_dir, tmp / "run", tiny_runs.TWO_WORKERS, logs=[chief, other]
            )
        started[name] = processes, tmp
        return
    tools_workdir = request.getfixturevalue("tools_workdir")
    if name == "exported_model":
        args = ["-m", "alexnet_tf.export", f"--workdir={tools_workdir}", f"--export_dir={tmp}/out"]
    else:
        cases = _binary_cases(tools_workdir, tools_data_dir, tmp)
        args = ["-c", _BINARY_RUNS, str(tmp / "result.json"), json.dumps(cases)]
    with open(tmp / "stdout.txt", "w") as stdout, open(tmp / "stderr.txt", "w") as stderr:
        process = subprocess.Popen(
            [sys.executable, *args], stdout=stdout, stderr=stderr, cwd=tiny_runs.REPO,
            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": tiny_runs.REPO},
        )  # fmt: skip
    started[name] = [process], tmp


def _finished(started: dict, name: str, request) -> tuple:
    """([exit status], its folder) once `name`'s processes have exited; started now if no
    collected test uses `name` (a test that asks for it with request.getfixturevalue)."""
    if name not in started:
        _start(started, name, request)
    processes, tmp = started[name]
    return [p.wait(timeout=600) for p in processes], tmp


@pytest.fixture(scope="session")
def exported_model(_early_processes, request) -> str:
    """The export binary's SavedModel of `tools_workdir` (centre patch, top 5); returns its path.

    Made by a process of its own: the names of the traced functions in saved_model.pb depend on
    what the process traced before, and an export must equal any other fresh export byte for
    byte (test_cli.py compares it with `binary_runs`' first run, the same export).
    """
    codes, tmp = _finished(_early_processes, "exported_model", request)
    assert codes == [0], (tmp / "stderr.txt").read_text()[-3000:]
    assert f"SavedModel written to {tmp / 'out'}" in (tmp / "stdout.txt").read_text()
    return str(tmp / "out")


@pytest.fixture(scope="session")
def two_workers(_early_processes, request) -> dict:
    """Two local --strategy=multi_worker processes, the stand-in network, TWO_WORKERS's 30 steps.

    Returns {"workdir", "checkpoint" (its ckpt-30), "outputs" (each worker's log)}.
    """
    codes, tmp = _finished(_early_processes, "two_workers", request)
    outputs = [(tmp / f"worker-{i}.txt").read_text() for i in range(2)]
    assert codes == [0, 0], outputs
    checkpoint = os.path.join(str(tmp / "run"), "checkpoints", "ckpt-30")
    return {"workdir": str(tmp / "run"), "checkpoint": checkpoint, "outputs": outputs}


def _binary_cases(tools_workdir, tools_data_dir, tmp) -> list:
    """[(key, argv, paths to look at afterwards)]; "NAME:..." is `python -m alexnet_tf.NAME`."""
    new = {name: str(tmp / name) for name in ("evaluate", "export", "retrieve", "train", "vis")}
    demo, failing, blocker = tmp / "demo", tmp / "demo_failing", tmp / "a_file"
    blocker.write_text("not a folder")
    nothing = tmp / "nothing_loadable"  # neither a SavedModel nor a checkpoint, nor an image
    nothing.mkdir()
    (nothing / "photo.txt").write_text("x")
    return [
        ("export:ok", [f"--workdir={tools_workdir}", f"--export_dir={tmp / 'exported'}"], []),
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
        ("train:schedule", ["--schedule=linear", f"--workdir={new['train']}", "--data_dir=."],
         [new["train"]]),
        ("train:init_from", [f"--data_dir={tools_data_dir}", f"--workdir={new['train']}",
                             f"--init_from={tmp / 'missing_run'}", "--train_steps=1"],
         [new["train"]]),
        ("predict", [f"--model={nothing}", f"--output={tmp / 'predicted.csv'}", str(nothing)],
         [str(tmp / "predicted.csv")]),
        ("export:exists", [f"--workdir={tools_workdir}", f"--export_dir={tools_workdir}"], []),
        ("describe", ["--num_classes=0"], []),
        ("describe:ok", [], []),
        ("describe:localization", ["--localization"], []),
        ("evaluate:ok", [f"--workdir={tools_workdir}", "--batch_size=4"], []),
        ("retrieve:ok", [f"--workdir={tools_workdir}", f"--output_dir={tmp / 'retrieval'}",
                         "--num_queries=3", "--k=4", "--batch_size=6", "--max_memory_mb=1"], []),
        ("visualize:ok", [f"--workdir={tools_workdir}", f"--output_dir={tmp / 'figures'}",
                          "--num_images=3", "--columns=3"], []),
        ("demo:ok", [f"--workdir={demo}", *DEMO_TINY], [str(demo / "demo_stages.json")]),
        ("demo:again", [f"--workdir={demo}", *DEMO_TINY], [str(demo / "demo_stages.json")]),
        ("demo:unwritable", [f"--workdir={blocker / 'demo'}", *DEMO_TINY], []),
        ("demo:failing", [f"--workdir={failing}", *DEMO_TINY, "--strategy=multi_worker"],
         [str(failing / "demo_stages.json")]),
    ]  # fmt: skip


@pytest.fixture(scope="session")
def binary_runs(_early_processes, request) -> dict:
    """`python -m alexnet_tf.X` for each binary, with flags a user gets wrong, and the runs that
    work ("NAME:ok"), all in one interpreter started from the repository root (as the README's
    commands are): the export, describe, evaluate, retrieve and visualize on `tools_workdir`, and
    the demo with DEMO_TINY's flags, twice in one folder ("demo:ok", then "demo:again").

    Returns:
        {key: {"argv", "help", "stdout", "stderr", "code", "written": paths it should not have made,
        "read": {path: text} of the files among those paths}}; "export:ok" also gives its
        "export_dir", "retrieve:ok" and "visualize:ok" their "output_dir", the demo cases their
        "workdir".
    """
    codes, tmp = _finished(_early_processes, "binary_runs", request)
    assert codes == [0], (tmp / "stderr.txt").read_text()[-3000:]
    runs = json.loads((tmp / "result.json").read_text())
    runs["export:ok"]["export_dir"] = str(tmp / "exported")
    runs["retrieve:ok"]["output_dir"] = str(tmp / "retrieval")
    runs["visualize:ok"]["output_dir"] = str(tmp / "figures")
    for key, workdir in [("demo:ok", tmp / "demo"), ("demo:again", tmp / "demo"),
                         ("demo:unwritable", tmp / "a_file"),
                         ("demo:failing", tmp / "demo_failing")]:  # fmt: skip
        runs[key]["workdir"] = str(workdir)
    return runs
