"""The whole system on a laptop, in one command: data, conversion, training, evaluation, figures.

    python -m alexnet_tf.demo                                  # everything in demo_work/
    python -m alexnet_tf.demo --workdir=/tmp/d --epochs=2      # any flag of configs/demo.cfg
    python -m alexnet_tf.demo --localization   # boxed digits, configs/demo_localization.cfg

With --localization (ILSVRC task 2) the digits are pasted on photographs with their boxes
(`demo_boxes`), converted with their boxes, trained with the box head; `evaluate` adds the
localization error and `figures` localizations.png. Its default folder is demo_work/boxes.

Stages, each by the same library function its own binary calls:

    data       scikit-learn's real handwritten digits in the ILSVRC-2012 folder layout (WORKDIR/raw)
    convert    the real converter → TFRecord shards and manifest (WORKDIR/data)
    train      the full network with configs/demo.cfg (WORKDIR/train)
    evaluate   the ten-patch test (section 4.1) → WORKDIR/train/eval.json
    figures    conv1 filters with their numbers, top-5 guesses → WORKDIR/train/figures
    retrieval  nearest training images by fc7 distance → WORKDIR/train/retrieval

WORKDIR/demo_stages.json records each finished stage (written only once its outputs are
complete), so re-running the command skips them; a stopped training resumes from its last
checkpoint, and `python -m alexnet_tf.train --flagfile=WORKDIR/train/flags.cfg` resumes it too.
Training flags (--epochs, --learning_rate, ...) override configs/demo.cfg; its --data_dir and
--workdir are replaced by the folders above. Every flag is checked before the first stage writes
anything. Run it from the repository root, where configs/ is.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import time
import traceback
from collections.abc import Callable

import tensorflow as tf
import tqdm
from absl import app, flags

from alexnet_tf import demo_boxes
from alexnet_tf import train as train_binary
from alexnet_tf.cli import shared_flags as common_flags
from alexnet_tf.convert import ConvertError, convert
from alexnet_tf.data.demo_data import DemoDataError, write_demo_tree
from alexnet_tf.data.input_pipeline import InputError
from alexnet_tf.data.manifest import ManifestError
from alexnet_tf.files import atomic
from alexnet_tf.files import workdir as paths
from alexnet_tf.results import evaluation, figures, retrieval
from alexnet_tf.runs.checkpoints import CheckpointError
from alexnet_tf.training import loop as training

DEFAULT_FLAGFILE = os.path.join("configs", "demo.cfg")
DEFAULT_WORKDIR = "demo_work"
STAGES_FILE = "demo_stages.json"
STAGES = ("data", "convert", "train", "evaluate", "figures", "retrieval")

TRAIN_PER_CLASS = flags.DEFINE_integer("train_per_class", 150, "Training digits per class.")
VAL_PER_CLASS = flags.DEFINE_integer("val_per_class", 20, "Held-out digits per class.")
FIGURE_IMAGES = flags.DEFINE_integer("figure_images", 8, "Validation images in top5.png.")
RETRIEVAL_QUERIES = flags.DEFINE_integer("retrieval_queries", 6, "Rows of retrieval.png.")
RETRIEVAL_K = flags.DEFINE_integer("retrieval_k", 5, "Neighbours per row of retrieval.png.")
_OWN_FLAGS = (TRAIN_PER_CLASS, VAL_PER_CLASS, FIGURE_IMAGES, RETRIEVAL_QUERIES, RETRIEVAL_K)
# --help lists --workdir and the training flags the demo passes on, beside its own.
flags.adopt_module_key_flags(common_flags)
flags.adopt_module_key_flags(train_binary)

# Errors whose message names the file or flag at fault: reported as one line, no traceback.
_USER_ERRORS = (
    OSError,  # atomic.WriteError included: a full disk or a folder that can't be written
    tf.errors.OpError,
    training.ConfigError,
    training.NonFiniteLossError,
    ConvertError,
    DemoDataError,
    InputError,
    ManifestError,
    CheckpointError,
    evaluation.EvaluationError,
)


class StageError(RuntimeError):
    """A stage failed; the message names it and the command that reproduces it alone."""


@dataclasses.dataclass(frozen=True)
class Folders:
    root: str

    @property
    def raw(self) -> str:
        return os.path.join(self.root, "raw")

    @property
    def data(self) -> str:
        return os.path.join(self.root, "data")

    @property
    def train(self) -> str:
        return os.path.join(self.root, "train")

    @property
    def stages(self) -> str:
        return os.path.join(self.root, STAGES_FILE)


def _stages(folders: Folders) -> dict[str, tuple[Callable[[], dict], str]]:
    """Each stage's function (returning what the summary shows) and its stand-alone command."""
    f, log = folders, tqdm.tqdm.write
    raw = {k: os.path.join(f.raw, k) for k in ("train", "val", "val_labels.txt")}
    boxes = demo_boxes.stage_flags(f.raw) if _boxed() else {"data": "", "convert": ""}
    return {
        "data": (
            lambda: _data(f),
            f"python tools/make_demo_dataset.py --output_dir={f.raw} "
            f"--train_per_class={TRAIN_PER_CLASS.value} --val_per_class={VAL_PER_CLASS.value}"
            f"{boxes['data']}",
        ),
        "convert": (
            lambda: _convert(f, raw),
            f"python tools/build_imagenet_tfrecords.py --train_dir={raw['train']} "
            f"--val_dir={raw['val']} --val_labels={raw['val_labels.txt']} --output_dir={f.data}"
            f"{boxes['convert']}",
        ),
        "train": (
            lambda: _train(f),
            f"python -m alexnet_tf.train --flagfile={paths.flags_file(f.train)}",
        ),
        "evaluate": (
            lambda: _evaluate(f, log),
            f"python -m alexnet_tf.evaluate --workdir={f.train} --modes=ten_patch",
        ),
        "figures": (
            lambda: (
                figures.write_figures(
                    f.train,
                    paths.figures(f.train),
                    num_images=FIGURE_IMAGES.value,
                    summary_dir=paths.tensorboard(f.train, "figures"),
                    log=log,
                )
                | demo_boxes.localizations(f.train, FIGURE_IMAGES.value, log)
            ),  # fmt: skip
            f"python -m alexnet_tf.visualize --workdir={f.train} "
            f"--num_images={FIGURE_IMAGES.value}",
        ),
        "retrieval": (
            lambda: _retrieval(f, log),
            f"python -m alexnet_tf.retrieve --workdir={f.train} "
            f"--num_queries={RETRIEVAL_QUERIES.value} --k={RETRIEVAL_K.value}",
        ),
    }


def _data(f: Folders) -> dict:
    write_tree = demo_boxes.write_boxed_tree if _boxed() else write_demo_tree
    info = write_tree(
        f.raw, train_per_class=TRAIN_PER_CLASS.value, val_per_class=VAL_PER_CLASS.value
    )
    return {"images": {"train": info["num_train"], "validation": info["num_val"]}}


def _convert(f: Folders, raw: dict[str, str]) -> dict:
    result = convert(
        output_dir=f.data, train_dir=raw["train"], val_dir=raw["val"],
        val_labels=raw["val_labels.txt"], bbox_dir=demo_boxes.bbox_dir(f.raw) if _boxed() else None,
    )  # fmt: skip
    if not result.complete:
        raise ConvertError("; ".join(result.errors) or "some shards failed")
    return {"manifest": result.manifest_path}


def _boxed() -> bool:
    return flags.FLAGS.localization  # the training flag: the box head and its data


def _train(f: Folders) -> dict:
    config = train_binary.config_from_flags(f.data, f.train)
    train_binary.check_before_writing(config)
    # flags.cfg before training: the command that reproduces this stage alone reads it.
    write_train_flags(f)
    result = training.train(config)
    return {"step": result.step, "checkpoint": result.checkpoint, "eval": result.eval}


def write_train_flags(f: Folders) -> str:
    """Writes WORKDIR/train/flags.cfg: the training flags, with --workdir=WORKDIR/train and
    --data_dir=WORKDIR/data, so `train --flagfile=` of it resumes the demo's training."""
    return common_flags.write_flags_file(f.train, _train_flags(), data_dir=f.data)


def _train_flags() -> flags.FlagValues:
    """The parsed flags without the demo's own, so WORKDIR/train/flags.cfg replays the training."""
    chosen = flags.FlagValues()
    own = {flag.name for flag in _OWN_FLAGS}
    for module, module_flags in flags.FLAGS.flags_by_module_dict().items():
        for flag in module_flags:
            if flag.name not in own and flag.name not in chosen:
                chosen[flag.name] = flag
                chosen.register_flag_by_module(module, flag)
    return chosen


def check_before_writing(folders: Folders) -> None:
    """What the stages need that can be checked before the first one writes anything.

    The demo's own flags; the training flags (all but --data_dir: the data is the demo's own,
    built by its first stages, and the train stage checks it before it writes); and the
    checkpoints a stopped training resumes from.

    Raises:
        app.UsageError: a demo flag is out of range.
        ConfigError: a training flag can't work, or WORKDIR/train has no readable checkpoint.
    """
    for flag, least in (
        (TRAIN_PER_CLASS, 1), (VAL_PER_CLASS, 1), (FIGURE_IMAGES, 0), (RETRIEVAL_QUERIES, 1),
        (RETRIEVAL_K, 1),
    ):  # fmt: skip
        if flag.value < least:
            raise app.UsageError(f"--{flag.name} must be >= {least}; received {flag.value}")
    config = train_binary.config_from_flags(folders.data, folders.train)
    dataclasses.replace(config, data_dir=os.curdir).validate()  # every value but the data's
    train_binary.check_checkpoints(folders.train)


def _evaluate(f: Folders, log) -> dict:
    result = evaluation.evaluate([f.train], f.data, modes=["ten_patch"], workdir=f.train, log=log)
    return {"ten_patch": result["ten_patch"], "eval_json": paths.eval_json(f.train)}


def _retrieval(f: Folders, log) -> dict:
    output_dir = paths.retrieval(f.train)
    retrieval.retrieve(
        f.train, output_dir, num_queries=RETRIEVAL_QUERIES.value, k=RETRIEVAL_K.value,
        figure_queries=RETRIEVAL_QUERIES.value, log=log,
    )  # fmt: skip
    return {"retrieval": os.path.join(output_dir, "retrieval.png")}


def run_demo(root: str) -> dict:
    """Runs the stages not finished yet; returns {stage: record} for all of them.

    Raises:
        atomic.WriteError: WORKDIR can't be written.
        StageError: a stage failed (the message names it and how to run it alone).
    """
    folders = Folders(root)
    done = _read_records(folders.stages)
    stages = _stages(folders)
    bar = tqdm.tqdm(STAGES, desc="demo", unit="stage", dynamic_ncols=True)
    for name in bar:
        bar.set_description(f"demo: {name}")
        if name in done:
            tqdm.tqdm.write(f"demo: {name}: finished earlier, skipped ({folders.stages})")
            continue
        function, command = stages[name]
        start = time.time()
        try:
            outputs = function()
        except _USER_ERRORS as e:
            raise StageError(_failure(name, e, command)) from e
        except Exception as e:
            traceback.print_exc()
            raise StageError(_failure(name, e, command)) from e
        done[name] = {"seconds": round(time.time() - start, 1), "outputs": outputs}
        # Recorded only now that the stage's outputs are complete: a re-run trusts only these.
        atomic.write_json(folders.stages, done)
    bar.close()
    return done


def _failure(stage: str, error: BaseException, command: str) -> str:
    message = " ".join(str(error).split()) or type(error).__name__
    return f"stage {stage} failed: {message}\n  run it alone with: {command}"


def _read_records(path: str) -> dict:
    import json

    if not os.path.exists(path):
        atomic.write_json(path, {})  # fails now, with the path, if WORKDIR can't be written
        return {}
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def summary(root: str, records: dict) -> str:
    """The closing lines: accuracy, conv1 numbers, time per stage, where each figure is."""
    lines = ["", f"demo finished in {root}"]
    ten = records["evaluate"]["outputs"]["ten_patch"]
    top1, top5 = 1 - ten["top1_error"], 1 - ten["top5_error"]
    lines.append(f"  ten-patch accuracy: top-1 {top1:.1%}, top-5 {top5:.1%}")
    lines += demo_boxes.summary_lines(ten)
    shown = records["figures"]["outputs"]
    stats_path = shown.get("conv1_stats")
    if stats_path and os.path.exists(stats_path):
        import json

        with open(stats_path, encoding="utf-8") as f:
            stats = json.load(f)
        towers = ", ".join(
            f"tower {t} colourfulness {v['colourfulness']:.2f}" for t, v in stats["towers"].items()
        )
        lines.append(
            f"  conv1 neighbour_correlation {stats['neighbour_correlation']:.2f} ({towers})"
        )
    lines.append("  time per stage: " + ", ".join(
        f"{name} {_duration(records[name]['seconds'])}" for name in STAGES
    ))  # fmt: skip
    for name, path in [*shown.items(), *records["retrieval"]["outputs"].items()]:
        lines.append(f"  {name}: {path}")
    return "\n".join(lines)


def _duration(seconds: float) -> str:
    minutes, seconds = divmod(int(round(seconds)), 60)
    return f"{minutes}:{seconds:02d}"


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    root = common_flags.WORKDIR.value or DEFAULT_WORKDIR
    try:
        check_before_writing(Folders(root))
        records = run_demo(root)
    except (training.ConfigError, StageError, atomic.WriteError) as e:
        sys.exit(f"demo: error: {e}")
    except OSError as e:  # WORKDIR can't be created or read
        sys.exit(f"demo: error: cannot use --workdir {root}: {e.strerror or e}")
    print(summary(root, records))


def run_main() -> None:
    if not os.path.exists(DEFAULT_FLAGFILE):
        sys.exit(f"demo: error: {DEFAULT_FLAGFILE} not found; run from the repository root")
    # configs/demo.cfg first, then the demo's own folder, then whatever the user passes.
    flagfile, workdir = demo_boxes.defaults(sys.argv[1:], DEFAULT_FLAGFILE, DEFAULT_WORKDIR)
    argv = [sys.argv[0], f"--flagfile={flagfile}", f"--workdir={workdir}"]
    common_flags.run(main, "demo", argv + sys.argv[1:])


if __name__ == "__main__":
    run_main()
