"""Flags that every alexnet_tf binary takes, and the record of a run's resolved flags.

    --data_dir   shards and manifest.json written by tools/build_imagenet_tfrecords.py
    --workdir    checkpoints, logs and results of one run

`write_flags_file(workdir)` writes WORKDIR/flags.cfg, one `--name=value` per line for every flag
of the binary (not absl's own), so `python -m alexnet_tf.train --flagfile=WORKDIR/flags.cfg`
replays the run.
"""

from __future__ import annotations

import os

from absl import flags

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
    os.makedirs(workdir, exist_ok=True)
    path = os.path.join(workdir, FLAGS_FILE)
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w") as f:
        f.write("# Resolved flags of this run; replay with --flagfile=" + path + "\n")
        f.write("".join(f"{line}\n" for line in sorted(set(lines))))
    os.replace(tmp, path)
    return path
