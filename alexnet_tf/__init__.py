"""alexnet_tf: AlexNet of Krizhevsky, Sutskever and Hinton (NIPS 2012) in TensorFlow/Keras."""

import os

# The model uses TensorFlow ops (LRN, device scopes), so Keras must run on the TensorFlow backend.
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

__version__ = "0.1.0"
