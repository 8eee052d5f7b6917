"""Starting a run from another run's weights (`--init_from`): fine-tuning, as section 6.1's
"pre-training on ImageNet ... then fine-tuning" does for the 2011 Fall release.

    python -m alexnet_tf.train --flagfile=configs/demo_localization.cfg --init_from=demo_work/train
    python -m alexnet_tf.train ... --init_from=RUN/checkpoints/ckpt-657
    python -m alexnet_tf.train ... --init_from=bvlc_alexnet.npy

The source is a training WORKDIR (its newest intact checkpoint), a `ckpt-N` prefix, or a
`bvlc_alexnet.npy`-style file (`model.paper_weights`). Every layer of the new network whose name
and weight shapes match the source's gets the source's weights, bit for bit; every other layer
keeps its fresh initialization and is named in one log line (fc8 and the box head `bbox` when
the class count differs, `bbox` when the source has none). Nothing else of the source run is
carried: step, momentum, schedule and data position start anew. A run whose --workdir already
holds a checkpoint resumes from that instead (training does not call `load_into` then).

The two calls:

    check_source(path) -> str                    # what `path` holds; InitFromError if unusable
    load_into(model, path, build_model) -> list  # the layers left fresh; logs one line

`check_source` reads no network and writes nothing, so a binary calls it before it creates its
workdir (`TrainConfig.validate` does). `load_into` rebuilds the source network from its run's
model_config.json with `build_model` (the builder of the run being started) and restores it.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from alexnet_tf.model import PAPER_LAYERS, TOWERS, build_alexnet
from alexnet_tf.model.paper_weights import load_paper_weights
from alexnet_tf.runs import checkpoints

# The paper's weight shapes that do not depend on the class count, in the bvlc_alexnet.npy layout
# (figure 2; one tower's input channels for conv2, conv4, conv5): kernel shapes of conv1 … fc7.
PAPER_KERNELS = {
    "conv1": (11, 11, 3, 96),
    "conv2": (5, 5, 48, 256),
    "conv3": (3, 3, 256, 384),
    "conv4": (3, 3, 192, 384),
    "conv5": (3, 3, 192, 256),
    "fc6": (9216, 4096),
    "fc7": (4096, 4096),
}
FC7_UNITS = PAPER_KERNELS["fc7"][-1]
_SPLIT = PAPER_LAYERS[:-1]  # one layer per tower in the network; fc8 is one layer


class InitFromError(ValueError):
    """--init_from names something that can't initialize the network; the message says what."""


def check_source(path: str) -> str:
    """Checks that `path` can initialize an AlexNet, without building one; returns what it is.

    Returns:
        e.g. "checkpoint RUN/checkpoints/ckpt-657 (10 classes)" or "paper weights x.npy".

    Raises:
        InitFromError: one line naming `path` and what it holds instead.
    """
    if _is_npy(path):
        _npy_layers(path)
        return f"paper weights {path}"
    prefix, workdir = _checkpoint(path)
    # Any key: a training checkpoint stores the weights under the optimizer's variable list.
    shapes = Counter(
        tuple(shape)
        for shape in tf.train.load_checkpoint(prefix).get_variable_to_shape_map().values()
    )
    expected = Counter(_tower_shape(s) for s in PAPER_KERNELS.values() for _ in TOWERS)
    missing = expected - shapes
    if missing:
        raise InitFromError(
            f"--init_from {path!r}: checkpoint {prefix} is not of this network (it lacks the "
            f"kernels {sorted(missing)} of conv1 … fc7); expected an AlexNet training run"
        )
    classes = _model_config(workdir, path)["num_classes"]
    return f"checkpoint {prefix} ({classes} classes)"


def load_into(
    model: keras.Model, path: str, build_model: Callable[..., keras.Model] = build_alexnet
) -> list[str]:
    """Copies the weights of every layer of `path` whose name and shapes match into `model`.

    Args:
        model: the freshly built network of the new run (any class count, box head or not).
        path: a training WORKDIR, a `ckpt-N` prefix, or a bvlc_alexnet.npy-style file.
        build_model: rebuilds the source network from its model_config.json (the builder of
            the new run; `build_alexnet` unless a test passes a cheaper one).

    Returns:
        The names of `model`'s layers with weights that kept their initialization.

    Raises:
        InitFromError: `path` can't be read or is not of this network; the message names it.
    """
    if _is_npy(path):
        what, source = f"paper weights {path}", _npy_layers(path)
    else:
        prefix, workdir = _checkpoint(path)
        what = f"checkpoint {prefix}"
        source = _checkpoint_layers(prefix, _model_config(workdir, path), build_model, path)
    loaded, fresh = [], []
    for layer in model.layers:
        # `weights`, not `trainable_weights`: a layer frozen by --train_layers (no trainable
        # weights) must still start from the source.
        if not layer.weights:
            continue
        values = source.get(layer.name)
        targets = layer.weights
        if values is None or [tuple(v.shape) for v in targets] != [v.shape for v in values]:
            fresh.append(layer.name)
            continue
        for variable, value in zip(targets, values, strict=True):
            variable.assign(value)
        loaded.append(layer.name)
    if not loaded:
        raise InitFromError(f"--init_from {path!r}: no layer of {what} fits this network")
    logging.info(
        "Initialized %d layers from %s; started fresh (shape or layer differs): %s",
        len(loaded), what, ", ".join(fresh) or "none",
    )  # fmt: skip
    return fresh


def _is_npy(path: str) -> bool:
    return path.endswith(".npy") and os.path.isfile(path)


def _checkpoint(path: str) -> tuple[str, str]:
    try:
        return checkpoints.resolve_checkpoint(path)
    except checkpoints.CheckpointError as e:
        raise InitFromError(f"--init_from: {e}") from None


def _model_config(workdir: str, path: str) -> dict:
    try:
        config = checkpoints.read_model_config(workdir)
        int(config["num_classes"])
    except checkpoints.CheckpointError as e:
        raise InitFromError(f"--init_from {path!r}: {e}") from None
    except (KeyError, TypeError, ValueError):
        raise InitFromError(
            f"--init_from {path!r}: {workdir}/model_config.json has no num_classes"
        ) from None
    return config


def _checkpoint_layers(
    prefix: str, config: dict, build_model: Callable[..., keras.Model], path: str
) -> dict[str, list[np.ndarray]]:
    """{layer name: trainable weights} of the network saved in `prefix`."""
    try:
        source = build_model(config["num_classes"], None, **config.get("model", {}))
        checkpoints.restore_model(source, prefix)
    except (AssertionError, ValueError, TypeError, tf.errors.OpError) as e:
        raise InitFromError(
            f"--init_from {path!r}: checkpoint {prefix} does not match the network its "
            f"model_config.json describes ({str(e).splitlines()[0] if str(e) else e!r})"
        ) from None
    return {
        layer.name: [v.numpy() for v in layer.trainable_weights]
        for layer in source.layers
        if layer.trainable_weights
    }


def _npy_layers(path: str) -> dict[str, list[np.ndarray]]:
    """{layer name: [kernel, bias]} of a bvlc_alexnet.npy-style file, split per tower."""
    try:
        weights = load_paper_weights(path)
    except ValueError as e:
        raise InitFromError(f"--init_from: {e}") from None
    problems = []
    for name in PAPER_LAYERS:
        value = weights.get(name)
        if value is None or len(value) != 2:
            problems.append(f"{name} missing" if value is None else f"{name} not [kernel, bias]")
            continue
        kernel, bias = (np.asarray(a) for a in value)
        expected = PAPER_KERNELS.get(name, (FC7_UNITS, kernel.shape[-1] if kernel.ndim else 0))
        if kernel.shape != expected or bias.shape != expected[-1:]:
            problems.append(f"{name} kernel {kernel.shape} bias {bias.shape}")
    if problems:
        raise InitFromError(
            f"--init_from {path!r} is not in the bvlc_alexnet.npy layout ({'; '.join(problems)}); "
            f"expected {{layer: [kernel, bias]}} for {', '.join(PAPER_LAYERS)}"
        )
    layers = {}
    for name in PAPER_LAYERS:
        kernel, bias = (np.asarray(a, np.float32) for a in weights[name])
        if name not in _SPLIT:
            layers[name] = [kernel, bias]
            continue
        # Along the output axis the first tower's kernels come first (paper_weights).
        for tower, k, b in zip(TOWERS, np.split(kernel, 2, -1), np.split(bias, 2, -1)):
            layers[f"{name}_{tower}"] = [k, b]
    return layers


def _tower_shape(shape: tuple[int, ...]) -> tuple[int, ...]:
    return shape[:-1] + (shape[-1] // len(TOWERS),)
