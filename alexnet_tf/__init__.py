"""alexnet_tf: AlexNet of Krizhevsky, Sutskever and Hinton (NIPS 2012) in TensorFlow/Keras."""

import os
import sys

# The model uses TensorFlow ops (LRN, device scopes), so Keras must run on the TensorFlow backend.
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
# oneDNN CPU kernels: 1.5x faster training here than TensorFlow's default (Eigen) on CPUs where it
# is off by default (BUILD.md, speed). Read once when TensorFlow is imported, so it is set here.
# It picks CPU kernels only; GPUs and the two-device placement are unaffected.
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")

# A binary starting (`python -m alexnet_tf.X`, an `alexnet-X` script, or a worker process that
# multiprocessing starts from one, with its command line): TensorFlow's start-up notices are held
# back unless the user asks for them (alexnet_tf/cli/startup.py).
_STARTED_AS = sys.argv[0] if sys.argv else ""
if (
    _STARTED_AS == "-m"
    or os.path.basename(_STARTED_AS).startswith("alexnet-")
    or os.path.dirname(os.path.abspath(_STARTED_AS)) == os.path.dirname(os.path.abspath(__file__))
):
    from alexnet_tf.cli import startup

    startup.quiet_start()

__version__ = "0.1.0"
