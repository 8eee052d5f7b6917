"""The 2012 network (section 3): layers, the two towers, paper-layout weights.

`network` holds the builder (re-exported here), `layers` the paper's LRN and device-scoped layers,
`paper_weights` the `bvlc_alexnet.npy` layout, `figure1` the four-layer network of figure 1.
"""

from alexnet_tf.model.figure1 import build_figure1_net
from alexnet_tf.model.network import (
    ACTIVATIONS,
    DROPOUT_RATE,
    IMAGE_SIZE,
    INIT_STDDEV,
    INITS,
    NEURONS,
    NUM_PARAMETERS,
    ONE_BIAS_LAYERS,
    PAPER_LAYERS,
    TOWERS,
    build_alexnet,
    check_devices,
    conv1_kernels,
    endpoints_model,
)

__all__ = [
    "ACTIVATIONS",
    "DROPOUT_RATE",
    "IMAGE_SIZE",
    "INIT_STDDEV",
    "INITS",
    "NEURONS",
    "NUM_PARAMETERS",
    "ONE_BIAS_LAYERS",
    "PAPER_LAYERS",
    "TOWERS",
    "build_alexnet",
    "build_figure1_net",
    "check_devices",
    "conv1_kernels",
    "endpoints_model",
]
