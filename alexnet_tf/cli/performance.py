"""CPU settings that make the network train and infer faster without changing its numbers.

Measured on a 2-core AMD EPYC (AVX2, no AVX-512) with benchmarks/model_speed.py; the figures are
in BUILD.md ("speed"). None of this changes the model or what runs on GPUs:

* oneDNN. TensorFlow's x86 wheels carry oneDNN kernels (matmul, convolution, pooling, LRN, and
  their gradients) but switch them on by default only on CPUs with AVX-512/AMX. On AVX2 CPUs they
  are still about twice as fast as TensorFlow's own Eigen kernels here. TensorFlow reads
  `TF_ENABLE_ONEDNN_OPTS` once, when it is imported, so `enable_onednn()` must run before the
  first `import tensorflow`; a binary does it at the top of its module:

      from alexnet_tf.cli import performance
      performance.enable_onednn()  # before anything imports tensorflow
      import tensorflow as tf

  An explicit `TF_ENABLE_ONEDNN_OPTS=0` in the environment is respected.
* Threads: `configure_threads(intra, inter)` before any op runs.

This module imports TensorFlow only inside its functions, so importing it costs nothing and
does not itself fix the oneDNN setting too early.
"""

from __future__ import annotations

import os
import sys
import warnings

ONEDNN_VARIABLE = "TF_ENABLE_ONEDNN_OPTS"


def enable_onednn() -> bool:
    """Asks TensorFlow for its oneDNN CPU kernels unless the environment already decided.

    Returns:
        True if oneDNN will be used: the variable is (now) "1" and TensorFlow was not yet imported.
        When TensorFlow is already imported the setting can no longer change; a warning says so.
    """
    os.environ.setdefault(ONEDNN_VARIABLE, "1")
    if "tensorflow" in sys.modules:
        enabled = onednn_enabled()
        if not enabled and os.environ[ONEDNN_VARIABLE] == "1":
            warnings.warn(
                "enable_onednn() ran after tensorflow was imported; TensorFlow reads "
                f"{ONEDNN_VARIABLE} only at import, so its oneDNN kernels stay off. Call it first.",
                stacklevel=2,
            )
        return enabled
    return os.environ[ONEDNN_VARIABLE] == "1"


def onednn_enabled() -> bool:
    """Whether this TensorFlow process runs its oneDNN CPU kernels."""
    from tensorflow.python.util import _pywrap_util_port

    return bool(_pywrap_util_port.IsMklEnabled())


def configure_threads(intra_op: int = 0, inter_op: int = 0) -> None:
    """Sets TensorFlow's thread pools; 0 keeps TensorFlow's default (one per core).

    Must run before TensorFlow executes its first op (its runtime fixes the pools then).

    Raises:
        ValueError: a count is negative, or the runtime is already initialized.
    """
    import tensorflow as tf

    for name, value in (("intra_op", intra_op), ("inter_op", inter_op)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"{name} threads must be an integer >= 0; received {value!r}")
    try:
        if intra_op:
            tf.config.threading.set_intra_op_parallelism_threads(intra_op)
        if inter_op:
            tf.config.threading.set_inter_op_parallelism_threads(inter_op)
    except RuntimeError as e:
        raise ValueError(f"thread settings must be made before TensorFlow runs an op: {e}") from e


def thread_settings() -> dict[str, int]:
    """TensorFlow's current thread settings (0 means its default)."""
    import tensorflow as tf

    return {
        "intra_op": tf.config.threading.get_intra_op_parallelism_threads(),
        "inter_op": tf.config.threading.get_inter_op_parallelism_threads(),
    }
