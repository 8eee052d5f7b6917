"""alexnet_tf: AlexNet of Krizhevsky, Sutskever and Hinton (NIPS 2012) in TensorFlow/Keras."""

import os

# The model uses TensorFlow ops (LRN, device scopes), so Keras must run on the TensorFlow backend.
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
# oneDNN CPU kernels: 1.5x faster training here than TensorFlow's default (Eigen) on CPUs where it
# is off by default (BUILD.md, speed). Read once when TensorFlow is imported, so it is set here.
# It picks CPU kernels only; GPUs and the two-device placement are unaffected.
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")

__version__ = "0.1.0"
