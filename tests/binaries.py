"""Binaries imported into the test process with their flags, and removed again afterwards.

The binaries define flags of the same names (--batch_size, --localization), so two of them can't
be imported into one process at once; `binary(name)` imports one and takes its flags (and any
other binary it imported) away when the `with` block ends, and `run_main(name, *args)` runs its
`main` on those flags as the command line would: the exit status and what it printed on stderr.
"""

import contextlib
import importlib
import importlib.util
import io
import logging
import os
import sys

from absl import app, flags

from alexnet_tf.cli import shared_flags

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
app.define_help_flags()  # as app.run does, once: --help and its kind stay defined between binaries
BINARIES = (
    "train", "evaluate", "export", "visualize", "retrieve", "describe", "demo", "predict",
    "relu_vs_tanh",
)  # fmt: skip
TOOLS = ("build_imagenet_tfrecords", "make_demo_dataset")


@contextlib.contextmanager
def binary(name: str):
    """Imports a binary (or a tools/ script) with its flags; removes them again afterwards, with
    any other binary it imported (the binaries define flags of the same names). The shared flags
    (--data_dir, --workdir) stay: `shared_flags` defines them once, above."""
    assert shared_flags.WORKDIR.name == "workdir"
    modules, defined, parsed = set(sys.modules), set(flags.FLAGS), flags.FLAGS.is_parsed()
    handlers = list(logging.root.handlers)
    if name in TOOLS:
        spec = importlib.util.spec_from_file_location(
            name, os.path.join(REPO, "tools", f"{name}.py")
        )
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    else:
        module = importlib.import_module(f"alexnet_tf.{name}")
    try:
        yield module
    finally:
        for flag in set(flags.FLAGS) - defined:
            delattr(flags.FLAGS, flag)
        for other in BINARIES:
            if f"alexnet_tf.{other}" not in modules and f"alexnet_tf.{other}" in sys.modules:
                del sys.modules[f"alexnet_tf.{other}"]
                # `from alexnet_tf import train` would still find the old module there.
                delattr(sys.modules["alexnet_tf"], other)
        flags.FLAGS.unparse_flags()  # back to the defaults, parsed or not as before
        if parsed:
            flags.FLAGS.mark_as_parsed()
        for handler in set(logging.root.handlers) - set(handlers):  # absl's, from app.run
            logging.root.removeHandler(handler)


def run_main(name: str, *args: str) -> tuple[int, str]:
    """Parses `args` as the binary's flags and runs its `main`; returns (exit status, stderr)."""
    stderr = io.StringIO()
    with (
        binary(name) as module,
        contextlib.redirect_stderr(stderr),
        contextlib.redirect_stdout(io.StringIO()),
    ):
        try:
            flags.FLAGS([name, *args])
            code = module.main([name]) or 0
        except app.UsageError as e:
            print(f"{name}: error: {e}", file=stderr)
            code = 1
        except SystemExit as e:
            code = e.code
            if isinstance(code, str):  # sys.exit(message): Python prints it on stderr
                print(code, file=stderr)
                code = 1
    return code, stderr.getvalue()
