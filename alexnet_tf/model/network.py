"""The two-tower network of section 3 of Krizhevsky, Sutskever and Hinton (NIPS 2012).

    conv1 → LRN → pool1 → conv2 → LRN → pool2 → conv3 → conv4 → conv5 → pool5 → fc6 → fc7 → fc8

Every split layer exists once per tower (suffix `_a` for the first GPU of the paper, `_b` for the
second). conv2, conv4 and conv5 see only the maps of their own tower; conv3 and the fully
connected layers see both (figure 2). The same layers, and so the same weights, are built whether
the towers run on two devices (`devices=("/GPU:0", "/GPU:1")`) or on one (`devices=None`).

Input size: the paper says 224×224, but with no padding only 227×227 gives the 55×55×96 conv1
map that every later layer size in the paper needs ((227 - 11) / 4 + 1 = 55). The paper's count
of 253,440 conv1 neurons also disagrees with 55·55·96 = 290,400; all other counts match.

    python -m alexnet_tf.describe        # prints the layer table below
"""

from __future__ import annotations

from collections.abc import Sequence

import keras
import numpy as np
import tensorflow as tf

from alexnet_tf.model.box_head import BOX_LAYER, box_head
from alexnet_tf.model.layers import (
    CrossTowerLRN,
    LocalResponseNormalization,
    PlacedConcatenate,
    PlacedConv2D,
    PlacedDense,
    PlacedDropout,
    PlacedFlatten,
    PlacedMaxPooling2D,
)

IMAGE_SIZE = 227  # see the module docstring: the paper's "224" does not give 55×55 conv1 maps
NUM_PARAMETERS = 60_965_224  # with 1000 classes
# Neurons per layer (section 3): conv1..conv5, fc6, fc7, fc8 with 1000 classes.
NEURONS = {
    "conv1": 290_400,
    "conv2": 186_624,
    "conv3": 64_896,
    "conv4": 64_896,
    "conv5": 43_264,
    "fc6": 4096,
    "fc7": 4096,
    "fc8": 1000,
}
# Section 3.3: k, n, alpha, beta of the local response normalization.
LRN_K, LRN_N, LRN_ALPHA, LRN_BETA = 2.0, 5, 1e-4, 0.75
DROPOUT_RATE = 0.5  # section 4.2
INIT_STDDEV = 0.01  # section 5: weights from N(0, 0.01)
# Section 5: "We initialized the neuron biases in the second, fourth, and fifth convolutional
# layers, as well as in the fully-connected hidden layers, with the constant 1."
ONE_BIAS_LAYERS = ("conv2", "conv4", "conv5", "fc6", "fc7")
TOWERS = ("a", "b")
PAPER_LAYERS = ("conv1", "conv2", "conv3", "conv4", "conv5", "fc6", "fc7", "fc8")
INITS = ("paper", "he")
ACTIVATIONS = ("relu", "tanh")  # section 3.1 and figure 1


def build_alexnet(
    num_classes: int = 1000,
    devices: Sequence[str] | None = None,
    *,
    lrn_k: float = LRN_K,
    lrn_n: int = LRN_N,
    lrn_alpha: float = LRN_ALPHA,
    lrn_beta: float = LRN_BETA,
    lrn_across_towers: bool = False,
    dropout_rate: float = DROPOUT_RATE,
    init: str = "paper",
    conv1_init_stddev: float | None = None,
    seed: int | None = None,
    localization: bool = False,
    activation: str = "relu",
    name: str = "alexnet",
) -> keras.Model:
    """Builds the 2012 AlexNet as a Keras functional model.

    Args:
        num_classes: size of the softmax output (1000 for ILSVRC-2012).
        devices: `None` to run on one device, or two device strings (for example
            `("/GPU:0", "/GPU:1")`) that hold the two towers, as in section 3.2.
        lrn_k, lrn_n, lrn_alpha, lrn_beta: the normalization of section 3.3. The paper's values
            are the defaults; Caffe's `bvlc_alexnet` weights were trained with k=1, alpha=2e-5
            (Caffe's 1e-4 divided by n=5), n=5, beta=0.75.
        lrn_across_towers: False (the paper): each tower normalizes its own maps, as on the
            paper's two GPUs. True: the windows of norm1 and norm2 run over both towers' maps
            (tower a's first), as in Caffe's `bvlc_alexnet`, whose conv1 is not split; with
            `lrn_k=1.0, lrn_alpha=2e-5` and BGR input the network then gives Caffe's outputs
            for Caffe's weights (see `paper_weights`). It adds no weights.
        dropout_rate: dropout before fc7 and fc8 (section 4.2).
        init: "paper" for N(0, 0.01) weights and the paper's biases of 1 (section 5), "he" for
            He-normal weights and zero biases (used by the demo configuration; see configs/).
        conv1_init_stddev: if set, conv1's weights are drawn from N(0, conv1_init_stddev)
            whatever `init` says; the other layers follow `init`. A small conv1 start lets a
            short run's updates, not the starting noise, shape the filters (configs/demo.cfg).
        seed: seed of the initializers; `None` draws from Keras's global seed.
        localization: also regress one box per class from fc7 (ILSVRC-2012 task 2): a layer
            named `bbox` beside fc8 (see `alexnet_tf.model.box_head`).
        activation: the unit of every hidden layer: "relu" (section 3.1) or "tanh", the
            saturating unit figure 1 compares it with; nothing else changes.
        name: name of the model.

    Returns:
        A model from a float32 batch of mean-subtracted 227×227×3 RGB images to class
        probabilities. Its layers follow the paper's names (`conv1_a`, …, `fc7`, `fc8`). With
        `localization`, the model returns `{"predictions": [B, K], "bbox": [B, 4K]}`.
    """
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes must be an integer >= 1; received {num_classes!r}")
    if init not in INITS:
        raise ValueError(f"init must be one of {INITS}; received {init!r}")
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {ACTIVATIONS}; received {activation!r}")
    if not 0.0 <= dropout_rate < 1.0:
        raise ValueError(f"dropout_rate must be in [0, 1); received {dropout_rate!r}")
    if conv1_init_stddev is not None and not conv1_init_stddev > 0:
        raise ValueError(f"conv1_init_stddev must be > 0 or None; received {conv1_init_stddev!r}")
    placement = dict(zip(TOWERS, check_devices(devices) if devices is not None else (None, None)))
    seeds = iter(range(seed, seed + 1000)) if seed is not None else None

    def conv(layer, tower, filters, size, strides=1, padding="same"):
        return PlacedConv2D(
            filters,
            size,
            strides=strides,
            padding=padding,
            activation=activation,
            kernel_initializer=_kernel_init(
                init, seeds, conv1_init_stddev if layer == "conv1" else None
            ),
            bias_initializer=_bias_init(init, layer),
            device=placement[tower],
            name=f"{layer}_{tower}",
        )

    def dense(layer, tower, units, unit=activation):
        return PlacedDense(
            units,
            activation=unit,
            kernel_initializer=_kernel_init(init, seeds),
            bias_initializer=_bias_init(init, layer),
            device=placement[tower or "a"],  # fc8 sits with the first tower
            name=f"{layer}_{tower}" if tower else layer,
        )

    def normalize(layer, maps):
        if not lrn_across_towers:
            return {
                t: LocalResponseNormalization(
                    lrn_k, lrn_n, lrn_alpha, lrn_beta, device=placement[t], name=f"{layer}_{t}"
                )(maps[t])
                for t in TOWERS
            }
        # Each tower's share of one normalization over both towers' maps.
        return {
            t: CrossTowerLRN(
                lrn_k, lrn_n, lrn_alpha, lrn_beta, tower=t, device=placement[t],
                name=f"{layer}_{t}",
            )([maps[t], maps[other]])
            for t, other in zip(TOWERS, TOWERS[::-1])
        }  # fmt: skip

    def pool(layer, tower):
        # Section 3.4: overlapping pooling, z=3, s=2.
        return PlacedMaxPooling2D(3, 2, device=placement[tower], name=f"{layer}_{tower}")

    def both(layer, tower, tensors):
        return PlacedConcatenate(device=placement[tower], name=f"{layer}_{tower}")(tensors)

    images = keras.Input((IMAGE_SIZE, IMAGE_SIZE, 3), name="images")
    # conv1: 48 kernels of 11×11×3 per tower, stride 4, on the whole image. conv2: 128 kernels
    # of 5×5×48 per tower, on its own tower's maps only. Built in this order: the seeds follow it.
    conv1, conv2 = {}, {}
    for t in TOWERS:
        conv1[t] = conv("conv1", t, 48, 11, strides=4, padding="valid")
        conv2[t] = conv("conv2", t, 128, 5)
    h = normalize("norm1", {t: conv1[t](images) for t in TOWERS})
    h = {t: conv2[t](pool("pool1", t)(h[t])) for t in TOWERS}
    x = {t: pool("pool2", t)(h) for t, h in normalize("norm2", h).items()}
    # conv3 sees the maps of both towers: 192 kernels of 3×3×256 per tower.
    x = {t: conv("conv3", t, 192, 3)(both("concat3", t, [x["a"], x["b"]])) for t in TOWERS}
    # conv4 (3×3×192) and conv5 (3×3×192) see their own tower only.
    x = {t: conv("conv4", t, 192, 3)(x[t]) for t in TOWERS}
    x = {t: pool("pool5", t)(conv("conv5", t, 128, 3)(x[t])) for t in TOWERS}
    # fc6 sees all of pool5, flattened in (height, width, channel) order with tower a's
    # channels first, the row order of the widely shared bvlc_alexnet.npy.
    flat = {
        t: PlacedFlatten(device=placement[t], name=f"flatten_{t}")(
            both("concat6", t, [x["a"], x["b"]])
        )
        for t in TOWERS
    }
    x = {t: dense("fc6", t, 2048)(flat[t]) for t in TOWERS}
    x = {
        t: PlacedDropout(dropout_rate, device=placement[t], name=f"drop6_{t}")(x[t]) for t in TOWERS
    }
    x = {t: dense("fc7", t, 2048)(both("concat7", t, [x["a"], x["b"]])) for t in TOWERS}
    # The 4096-d last hidden layer, used for retrieval (section 6.1).
    fc7 = PlacedConcatenate(device=placement["a"], name="fc7")([x["a"], x["b"]])
    h = PlacedDropout(dropout_rate, device=placement["a"], name="drop7")(fc7)
    logits = dense("fc8", None, num_classes, unit=None)(h)
    probs = keras.layers.Softmax(name="predictions")(logits)
    if localization:
        boxes = box_head(num_classes, placement["a"], next(seeds) if seeds is not None else None)(h)
        return keras.Model(images, {"predictions": probs, BOX_LAYER: boxes}, name=name)
    return keras.Model(images, probs, name=name)


def _kernel_init(init: str, seeds, stddev: float | None = None):
    seed = next(seeds) if seeds is not None else None
    if stddev is not None:
        return keras.initializers.RandomNormal(0.0, stddev, seed=seed)
    if init == "he":
        return keras.initializers.HeNormal(seed=seed)
    return keras.initializers.RandomNormal(0.0, INIT_STDDEV, seed=seed)


def _bias_init(init: str, layer: str):
    one = init == "paper" and layer in ONE_BIAS_LAYERS
    return keras.initializers.Constant(1.0) if one else keras.initializers.Zeros()


def check_devices(devices: Sequence[str]) -> tuple[str, str]:
    """Checks that `devices` names two devices of this machine (or of a named job); returns them."""
    if isinstance(devices, str) or len(devices) != 2:
        raise ValueError(
            "devices must be None or two device names such as ('/GPU:0', '/GPU:1'); "
            f"received {devices!r}"
        )
    local = {_local_name(d.name) for d in tf.config.list_logical_devices()}
    for d in devices:
        try:
            spec = tf.DeviceSpec.from_string(d)
        except (ValueError, TypeError) as e:
            raise ValueError(f"devices: {d!r} is not a device name like '/GPU:0' ({e})") from e
        # A device of another job (multi-machine) cannot be checked from here.
        if spec.device_type is None or (not spec.job and _local_name(d) not in local):
            raise ValueError(f"devices: {d!r} is not one of this machine's devices {sorted(local)}")
    return devices[0], devices[1]


def _local_name(name: str) -> str:
    spec = tf.DeviceSpec.from_string(name)
    return f"/{spec.device_type}:{spec.device_index or 0}"


def endpoints_model(model: keras.Model, names: Sequence[str] = ("fc7", "predictions")):
    """A model with the same weights whose outputs are the named layers (one forward pass).

    Useful names: "fc7" (the 4096-d features), "fc8" (logits), "predictions" (probabilities).
    """
    unknown = [n for n in names if n not in {layer.name for layer in model.layers}]
    if unknown:
        raise ValueError(f"unknown layer names {unknown}; the model has {_layer_names(model)}")
    outputs = {n: model.get_layer(n).output for n in names}
    return keras.Model(model.input, outputs, name=f"{model.name}_endpoints")


def conv1_kernels(model: keras.Model) -> np.ndarray:
    """The 96 conv1 kernels as one (11, 11, 3, 96) array, tower a's 48 first (figure 3)."""
    return np.concatenate([model.get_layer(f"conv1_{t}").kernel.numpy() for t in TOWERS], -1)


def _layer_names(model: keras.Model) -> list[str]:
    return [layer.name for layer in model.layers]
