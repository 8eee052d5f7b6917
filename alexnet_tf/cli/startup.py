"""How every alexnet_tf program starts: quietly, with `--help` exiting 0 and usage errors in a line.

Importing TensorFlow prints its libraries' start-up notices on stderr before a program says
anything: absl's "All log messages before absl::InitializeLog() ...", the oneDNN and CUDA-driver
notices, and, on a machine without a GPU, `failed call to cuInit`. Those notices come from
loggers that run before TensorFlow reads TF_CPP_MIN_LOG_LEVEL, so `quiet_start(argv)` does two
things, before anything imports TensorFlow:

* TF_CPP_MIN_LOG_LEVEL=2, unless the user set it: TensorFlow's C++ code logs errors only;
* the first `import tensorflow` (and its device discovery, where cuInit is called) runs with
  stderr held back; what it printed is shown only if that import fails.

Neither happens when the user asks for TensorFlow's logs: TF_CPP_MIN_LOG_LEVEL=0 in the
environment (`TF_CPP_MIN_LOG_LEVEL=0 python -m alexnet_tf.train ...` shows everything), or
`--verbosity=1` (`-v 1`) or more on the command line. What the program itself logs is unchanged.

`alexnet_tf/__init__.py` calls `quiet_start` when a binary starts (`python -m alexnet_tf.X` or an
`alexnet-X` script); the scripts in tools/ call it first thing. This module never imports
TensorFlow itself.
"""

from __future__ import annotations

import contextlib
import importlib.abc
import importlib.util
import os
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence

LOG_LEVEL_VARIABLE = "TF_CPP_MIN_LOG_LEVEL"
QUIET_LOG_LEVEL = "2"  # errors only; 0 shows everything
_HELP_FLAGS = ("help", "h", "?", "helpshort", "helpfull", "helpxml")


def quiet_start(argv: Sequence[str] | None = None) -> bool:
    """Quiets TensorFlow's start-up unless the user asked for its logs (see the module docstring).

    Args:
        argv: the command line (sys.argv by default), read for --verbosity.

    Returns:
        Whether TensorFlow's start-up will be quiet: False when the user asked for its logs
        (TF_CPP_MIN_LOG_LEVEL=0, --verbosity >= 1) or TensorFlow was already imported.
    """
    argv = sys.argv if argv is None else argv
    asked = os.environ.get(LOG_LEVEL_VARIABLE, "").strip() == "0"
    if asked or verbosity(argv) >= 1 or "tensorflow" in sys.modules:
        return False
    os.environ.setdefault(LOG_LEVEL_VARIABLE, QUIET_LOG_LEVEL)
    if not any(isinstance(finder, _QuietImport) for finder in sys.meta_path):
        sys.meta_path.insert(0, _QuietImport())
    return True


def verbosity(argv: Sequence[str]) -> int:
    """The value of absl's --verbosity (-v, --v) on a command line; 0 (absl's default) if absent."""
    value = None
    for i, arg in enumerate(argv[1:], start=1):
        if arg == "--":
            break
        name, equals, rest = arg.lstrip("-").partition("=")
        if arg.startswith("-") and name in ("verbosity", "v"):
            value = rest if equals else (argv[i + 1] if i + 1 < len(argv) else "")
    try:
        return int(value) if value is not None else 0
    except ValueError:
        return 0


def asks_for_help(argv: Sequence[str]) -> bool:
    """Whether a command line holds one of absl's help flags (--help, -h, --helpfull, ...)."""
    for arg in argv[1:]:
        if arg == "--":
            return False
        name, equals, value = arg.lstrip("-").partition("=")
        if arg.startswith("-") and name in _HELP_FLAGS and value.lower() not in ("false", "0"):
            return True
    return False


def run(
    main: Callable[[list[str]], int | None],
    program: str,
    argv: list[str] | None = None,
    usage_status: int = 1,
) -> None:
    """`app.run(main)`, except that `--help` exits 0, and a usage error or a flag absl can't
    parse prints one line, `program: error: ...`, and exits non-zero (absl would print the whole
    help text above a usage error, a "FATAL Flags parsing error" and a hint for a bad flag, and
    exit 1 after --help).

    Args:
        main: the binary's main; its return value is the exit status (None: 0).
        program: the name errors start with.
        argv: the command line (sys.argv by default).
        usage_status: the exit status for a flag absl can't parse (an `app.UsageError` carries
            its own).
    """
    from absl import app, flags

    argv = sys.argv if argv is None else argv

    def checked(args: list[str]) -> int | None:
        try:
            return main(args)
        except app.UsageError as e:
            print(f"{program}: error: {e} (see --help)", file=sys.stderr)
            sys.exit(e.exitcode)

    try:
        # flags.FLAGS itself as the parser: absl's default prints its own two lines and exits.
        app.run(checked, argv=argv, flags_parser=flags.FLAGS)
    except flags.Error as e:  # an unknown flag, a value of the wrong type, a missing file
        hint = "see --help"
        if "Unable to open flagfile" in str(e):  # configs/demo.cfg names configs/alexnet.cfg
            hint = (
                "flagfile paths, also those inside a flagfile, are relative to the current "
                "directory: use configs/*.cfg from the repository root"
            )
        print(f"{program}: error: {e} ({hint})", file=sys.stderr)
        sys.exit(usage_status)
    except SystemExit as e:
        if e.code == 1 and asks_for_help(argv):  # absl exits 1 after printing the help
            raise SystemExit(0) from None
        raise


class _QuietImport(importlib.abc.MetaPathFinder):
    """Finds `tensorflow` as usual, but loads it (once) with stderr held back."""

    def find_spec(self, name, path, target=None):
        if name != "tensorflow":
            return None
        sys.meta_path.remove(self)  # once: the import below and every later one are plain
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.loader is not None:
            spec.loader = _QuietLoader(spec.loader)
        return spec


class _QuietLoader(importlib.abc.Loader):
    def __init__(self, loader: importlib.abc.Loader):
        self._loader = loader

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module) -> None:
        with _stderr_held():
            self._loader.exec_module(module)
            # Device discovery calls cuInit, whose failure on a machine without a GPU is logged
            # as an error: here, rather than at the program's first operation.
            module.config.list_physical_devices()

    def __getattr__(self, name: str):
        return getattr(self._loader, name)


@contextlib.contextmanager
def _stderr_held() -> Iterator[None]:
    """Sends file descriptor 2 to a temporary file; replays it on stderr if the body fails."""
    try:
        saved = os.dup(2)
    except OSError:  # no stderr at all: nothing to quiet
        yield
        return
    with tempfile.TemporaryFile() as held:
        sys.stderr.flush()
        os.dup2(held.fileno(), 2)
        try:
            yield
        except BaseException:
            sys.stderr.flush()
            os.dup2(saved, 2)
            held.seek(0)
            sys.stderr.write(held.read().decode(errors="replace"))
            raise
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
