"""How the evaluation and export binaries report a bad input or a failed write: one line naming
it, exit status 1. A damaged checkpoint is a `CheckpointError` (the newest intact one is used
when a workdir is given, so this is only reached when none is); a full disk, a quota or a
read-only file system is a `WriteError`, raised after the previous file was left untouched."""

from __future__ import annotations

import contextlib
import sys

from alexnet_tf.data.manifest import ManifestError
from alexnet_tf.files.atomic import WriteError
from alexnet_tf.runs.checkpoints import CheckpointError

# Errors whose message already names the bad flag or file; anything else is a bug and keeps its
# traceback.
_USER_ERRORS: tuple[type[Exception], ...] = (
    CheckpointError,
    ManifestError,
    WriteError,
    FileExistsError,
    FileNotFoundError,
    ValueError,
)


@contextlib.contextmanager
def reported(program: str):
    """Turns the errors a user can act on into `program: message` on stderr and exit status 1."""
    from alexnet_tf.data.input_pipeline import InputError
    from alexnet_tf.results.evaluation import EvaluationError

    try:
        yield
    except (*_USER_ERRORS, EvaluationError, InputError) as e:
        print(f"{program}: error: {e}", file=sys.stderr)
        sys.exit(1)
