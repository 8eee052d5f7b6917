"""Flags that every alexnet_tf binary takes, and the record of a run's resolved flags.

    --data_dir   shards and manifest.json written by tools/build_imagenet_tfrecords.py
    --workdir    checkpoints, logs and results of one run

`write_flags_file(workdir)` writes WORKDIR/flags.cfg, one `--name=value` per line for every flag
of the binary (not absl's own; the folders as absolute paths), so
`python -m alexnet_tf.train --flagfile=WORKDIR/flags.cfg` replays the run from anywhere.
`run(main, program)` is each binary's `app.run`: `--help` exits 0, a usage error is one line.
Each binary calls `flags.adopt_module_key_flags(shared_flags)` so that its `--help` lists these
flags beside its own (absl shows other modules' flags only in `--helpfull`).
"""

from __future__ import annotations

import os
from collections.abc import Callable

from absl import app, flags

from alexnet_tf.cli import startup
from alexnet_tf.files import atomic
from alexnet_tf.files import workdir as workdir_lib

DATA_DIR = flags.DEFINE_string(
    "data_dir", None, "Directory with the TFRecord shards and manifest.json of the converter."
)
WORKDIR = flags.DEFINE_string(
    "workdir", None, "Directory of the run: checkpoints/, model_config.json, flags.cfg, logs."
)

# Modules whose flags describe the process, not the run; they are left out of flags.cfg.
_NOT_RECORDED = ("absl.", "tensorflow.", "keras.")


def write_flags_file(
    workdir: str, flag_values: flags.FlagValues = flags.FLAGS, data_dir: str | None = None
) -> str:
    """Writes the resolved flags of this process to WORKDIR/flags.cfg atomically.

    --workdir is recorded as `workdir` and --data_dir as `data_dir` (default: the flag's value),
    both as absolute paths: `--flagfile=WORKDIR/flags.cfg` replays this run, in this folder and
    on this data, from any current directory and whichever binary started it (the demo's
    training runs in WORKDIR/train of its own --workdir).

    Args:
        workdir: the run's directory (created if missing).
        flag_values: the parsed flags (absl's global FLAGS by default).
        data_dir: the run's data directory, if not --data_dir.

    Returns:
        The path written.
    """
    paths = {"workdir": workdir, "data_dir": data_dir}
    lines = []
    for module, module_flags in sorted(flag_values.flags_by_module_dict().items()):
        if module.startswith(_NOT_RECORDED):
            continue
        for flag in sorted(module_flags, key=lambda f: f.name):
            if flag.name in paths:
                value = paths[flag.name] or flag.value
                if value:
                    lines.append(f"--{flag.name}={os.path.abspath(value)}")
            elif flag.name not in ("flagfile", "undefok") and flag.value is not None:
                lines.append(flag.serialize())
    path = workdir_lib.flags_file(workdir)
    header = f"# Resolved flags of this run; replay with --flagfile={os.path.abspath(path)}\n"
    return atomic.write_text(path, header + "".join(f"{line}\n" for line in sorted(set(lines))))


def run(main: Callable[[list[str]], None], program: str, argv: list[str] | None = None) -> None:
    """`app.run(main)` as every binary runs it: `--help` exits 0, an `app.UsageError` is one line
    `program: error: ...` (see `alexnet_tf.cli.startup.run`)."""
    startup.run(main, program, argv)


def check_data_dir() -> None:
    """Reads --data_dir's manifest, if the flag is given: a tool stops on data it can't use
    before it loads a model or writes anything.

    Raises:
        ManifestError: no readable manifest.json there (the message names the file).
    """
    from alexnet_tf.data.manifest import load_manifest

    if DATA_DIR.value:
        load_manifest(DATA_DIR.value)


def model_and_output_dir(
    checkpoint: str | None, output_dir: str | None, default: Callable[[str], str]
) -> tuple[str, str | None, str]:
    """Resolves the model and output folder of a tool from --checkpoint, --workdir, --output_dir.

    Args:
        checkpoint, output_dir: the flags' values.
        default: the run's folder for the output, such as `workdir_lib.figures`.

    Returns:
        (the checkpoint, workdir or SavedModel to load; the training run it belongs to, or None
        for a SavedModel; the folder to write to: --output_dir, else `default(run)`).

    Raises:
        app.UsageError: neither --workdir nor --checkpoint, or nowhere to write.
    """
    from alexnet_tf.results.trained_models import (
        training_workdir,  # TensorFlow only where a tool needs it
    )

    model = checkpoint or WORKDIR.value
    if not model:
        raise app.UsageError("pass --workdir (a training run) or --checkpoint")
    run = WORKDIR.value or training_workdir(model)
    output_dir = output_dir or (default(run) if run else None)
    if not output_dir:
        raise app.UsageError("pass --output_dir (or --workdir)")
    return model, run, output_dir
