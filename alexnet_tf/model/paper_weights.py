"""The eight weight layers of the paper as one array pair each, in the `bvlc_alexnet.npy` layout.

`bvlc_alexnet.npy` is the widely shared conversion of Caffe's BVLC AlexNet (a pickled dict
`{"conv1": [kernel, bias], ..., "fc8": [kernel, bias]}`). Its layout is the paper's grouped one:

* kernels are HWIO; conv1 (11, 11, 3, 96), conv2 (5, 5, 48, 256), conv3 (3, 3, 256, 384),
  conv4 (3, 3, 192, 384), conv5 (3, 3, 192, 256), fc6 (9216, 4096), fc7 (4096, 4096),
  fc8 (4096, num_classes);
* conv2, conv4 and conv5 take one tower's input channels; along the output axis the first
  tower's kernels come first;
* fc6 rows are in (height, width, channel) order of the 6×6×256 pool5 map.

Those weights were trained in Caffe with LRN k=1, alpha=2e-5 (Caffe's 1e-4 divided by its n=5),
n=5, beta=0.75, on BGR images with the BGR mean subtracted: build the model with
`build_alexnet(lrn_k=1.0, lrn_alpha=2e-5)` and feed BGR to reproduce their outputs.
"""

from __future__ import annotations

import os

import keras
import numpy as np

from alexnet_tf.files import atomic
from alexnet_tf.model import PAPER_LAYERS, TOWERS

# Layers split into two towers; fc8 is one layer.
_SPLIT = PAPER_LAYERS[:-1]


def get_paper_weights(model: keras.Model) -> dict[str, list[np.ndarray]]:
    """Returns `{layer: [kernel, bias]}` for conv1…fc8 in the bvlc_alexnet.npy layout."""
    weights = {}
    for name in _SPLIT:
        halves = [model.get_layer(f"{name}_{t}").get_weights() for t in TOWERS]
        weights[name] = [np.concatenate([h[i] for h in halves], axis=-1) for i in (0, 1)]
    weights["fc8"] = model.get_layer("fc8").get_weights()
    return weights


def set_paper_weights(model: keras.Model, weights: dict | str | os.PathLike) -> None:
    """Loads `{layer: [kernel, bias]}` (or a bvlc_alexnet.npy-style file) into `model`.

    Raises:
        ValueError: a layer is missing or an array has the wrong shape; the message names both.
    """
    if isinstance(weights, str | os.PathLike):
        weights = load_paper_weights(weights)
    missing = [name for name in PAPER_LAYERS if name not in weights]
    if missing:
        raise ValueError(f"paper weights lack layers {missing}; expected {list(PAPER_LAYERS)}")
    for name in PAPER_LAYERS:
        kernel, bias = (np.asarray(a, np.float32) for a in weights[name])
        targets = [f"{name}_{t}" for t in TOWERS] if name in _SPLIT else [name]
        expected = _paper_shapes(model, targets)
        if (kernel.shape, bias.shape) != expected:
            raise ValueError(
                f"paper weights {name!r}: received kernel {kernel.shape} and bias {bias.shape}; "
                f"this model expects kernel {expected[0]} and bias {expected[1]}"
            )
        parts = len(targets)
        for target, k, b in zip(
            targets, np.split(kernel, parts, axis=-1), np.split(bias, parts, axis=-1)
        ):
            model.get_layer(target).set_weights([k, b])


def load_paper_weights(path: str | os.PathLike) -> dict[str, list[np.ndarray]]:
    """Reads a bvlc_alexnet.npy-style file: a pickled dict saved with `np.save`.

    The format is a pickle, so only load files from a source you trust.
    """
    try:
        data = np.load(path, allow_pickle=True, encoding="latin1")
        weights = data.item() if isinstance(data, np.ndarray) and data.shape == () else data
    except (OSError, ValueError, EOFError) as e:
        raise ValueError(f"{path}: can't be read as a bvlc_alexnet.npy-style file ({e})") from e
    if not isinstance(weights, dict):
        raise ValueError(f"{path}: expected a pickled dict of layers, found {type(weights)}")
    return {name: list(value) for name, value in weights.items()}


def save_paper_weights(model: keras.Model, path: str | os.PathLike) -> None:
    """Writes the model's weights as a bvlc_alexnet.npy-style file (atomically)."""
    path = os.fspath(path)
    with atomic.temporary_path(path, suffix=".npy") as tmp:  # np.save adds .npy otherwise
        np.save(tmp, np.array(get_paper_weights(model), dtype=object), allow_pickle=True)


def _paper_shapes(model: keras.Model, targets: list[str]) -> tuple[tuple, tuple]:
    kernels = [tuple(model.get_layer(t).kernel.shape) for t in targets]
    out = sum(k[-1] for k in kernels)
    return kernels[0][:-1] + (out,), (out,)
