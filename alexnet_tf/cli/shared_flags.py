"""Flags that every alexnet_tf binary takes, and the record of a run's resolved flags.

    --data_dir   shards and manifest.json written by tools/build_imagenet_tfrecords.py
    --workdir    checkpoints, logs and results of one run

`write_flags_file(workdir)` writes WORKDIR/flags.cfg, one `--name=value` per line for every flag
of the binary (not absl's own), so `python -m alexnet_tf.train --flagfile=WORKDIR/flags.cfg`
replays the run.
"""

from __future__ import annotations

import os

from absl import app, flags

from alexnet_tf.files import atomic
from alexnet_tf.files import workdir as run_files

FLAGS_FILE = "flags.cfg"

DATA_DIR = flags.DEFINE_string(
    "data_dir", None, "Directory with the TFRecord shards and manifest.json of the converter."
)
WORKDIR = flags.DEFINE_string(
    "workdir", None, "Directory of the run: checkpoints/, model_config.json, flags.cfg, logs."
)

# Modules whose flags describe the process, not the run; they are left out of flags.cfg.
_NOT_RECORDED = ("absl.", "tensorflow.", "keras.")


def write_flags_file(workdir: str, flag_values: flags.FlagValues = flags.FLAGS) -> str:
    """Writes the resolved flags of this process to WORKDIR/flags.cfg atomically.

    Args:
        workdir: the run's directory (created if missing).
        flag_values: the parsed flags (absl's global FLAGS by default).

    Returns:
        The path written.
    """
    lines = []
    for module, module_flags in sorted(flag_values.flags_by_module_dict().items()):
        if module.startswith(_NOT_RECORDED):
            continue
        for flag in sorted(module_flags, key=lambda f: f.name):
            if flag.name in ("flagfile", "undefok") or flag.value is None:
                continue
            lines.append(flag.serialize())
    path = run_files.flags_file(workdir)
    return atomic.write_text(
        path,
        "# Resolved flags of this run; replay with --flagfile="
        + path
        + "\n"
        + "".join(f"{line}\n" for line in sorted(set(lines))),
    )


def model_and_output_dir(
    checkpoint: str | None, output_dir: str | None, default_subdir: str
) -> tuple[str, str | None, str]:
    """Resolves the model and output folder of a tool from --checkpoint, --workdir, --output_dir.

    Returns:
        (the checkpoint, workdir or SavedModel to load; the training run it belongs to, or None
        for a SavedModel; the folder to write to: --output_dir, else `default_subdir` of the run).

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
    output_dir = output_dir or (os.path.join(run, default_subdir) if run else None)
    if not output_dir:
        raise app.UsageError("pass --output_dir (or --workdir)")
    return model, run, output_dir
