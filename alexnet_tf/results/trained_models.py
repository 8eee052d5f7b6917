"""A trained network to run on 227×227 crops, from a training checkpoint or an exported SavedModel.

evaluate, visualize and retrieve all need the same three things of a network: its softmax
outputs and its 4096-d `fc7` features in one forward pass (section 6.1), its conv1 kernels
(figure 3), and its class names. `load_source(path)` gives them for either kind of path:

    load_source("runs/demo")                  # a training WORKDIR: its latest checkpoint
    load_source("runs/demo/checkpoints/ckpt-3000")
    load_source("exported/alexnet")           # a SavedModel written by alexnet_tf.export
"""

from __future__ import annotations

import os

import numpy as np
import tensorflow as tf

from alexnet_tf.data.manifest import Manifest, ManifestError, load_manifest
from alexnet_tf.files import workdir as workdir_lib
from alexnet_tf.model import IMAGE_SIZE, conv1_kernels, endpoints_model
from alexnet_tf.model.box_head import BOX_LAYER, has_box_head
from alexnet_tf.runs import checkpoints as checkpoints_lib

CROPS_SPEC = tf.TensorSpec([None, IMAGE_SIZE, IMAGE_SIZE, 3], tf.uint8, name="crops")


class ModelSource:
    """A trained network on uint8 crops. Subclasses set the attributes and `_predict`."""

    name: str
    wnids: list[str]
    texts: list[str]
    step: int  # the training step of the weights (0 if unknown)
    has_boxes: bool = False  # the network has the box head of ILSVRC task 2 (`bbox`)

    @property
    def num_classes(self) -> int:
        return len(self.wnids)

    def predict(self, crops: tf.Tensor | np.ndarray) -> dict[str, np.ndarray]:
        """Runs uint8 crops (B, 227, 227, 3) through the network (inference mode).

        Returns:
            {"predictions": (B, K) softmax outputs, "fc7": (B, 4096) features}, and with
            `has_boxes` "bbox": (B, 4K) boxes, class c's (ymin, xmin, ymax, xmax) in columns
            4c … 4c+3, normalized to the crop.
        """
        outputs = self._predict(tf.convert_to_tensor(crops, tf.uint8))
        names = ("predictions", "fc7", BOX_LAYER) if self.has_boxes else ("predictions", "fc7")
        return {name: outputs[name].numpy() for name in names}

    def conv1_kernels(self) -> np.ndarray:
        """(11, 11, 3, 96) float32, tower a's 48 kernels first."""
        raise NotImplementedError

    def _predict(self, crops: tf.Tensor) -> dict[str, tf.Tensor]:
        raise NotImplementedError


class CheckpointSource(ModelSource):
    """The model of a training run, with the input normalization it was trained with."""

    def __init__(
        self, path: str, manifest: Manifest | None = None, normalizer: tf.Module | None = None
    ):
        """Restores the weights.

        Args:
            path: a training WORKDIR or a `ckpt-N` prefix.
            manifest: the manifest to take class names (and, if the run's own data directory is
                gone, the mean image) from; by default the run's `data_dir` manifest.
            normalizer: the uint8 → float32 normalization; by default
                `input_pipeline.make_normalizer(manifest, **model_config["preprocessing"])`.
        """
        self.model, self.config, self.prefix = checkpoints_lib.load_trained_model(path)
        self.name = self.prefix
        self.step = _checkpoint_step(self.prefix)
        own = _try_manifest(self.config.get("data_dir"))
        manifest = own or manifest
        if normalizer is None:
            if manifest is None:
                raise ManifestError(
                    f"{path}: the run's data_dir {self.config.get('data_dir')!r} has no "
                    "manifest.json and none was given (pass --data_dir)"
                )
            from alexnet_tf.data.input_pipeline import make_normalizer

            normalizer = make_normalizer(manifest, **self.config.get("preprocessing", {}))
        self.normalizer = normalizer
        num_classes = self.config["num_classes"]
        if manifest is not None and manifest.num_classes == num_classes:
            self.wnids, self.texts = list(manifest.synsets), list(manifest.texts)
        else:
            self.wnids = [f"class_{i}" for i in range(num_classes)]
            self.texts = list(self.wnids)
        self.has_boxes = has_box_head(self.model)
        names = ["fc7", "predictions"] + ([BOX_LAYER] if self.has_boxes else [])
        self.endpoints = endpoints_model(self.model, names)
        self._predict = tf.function(self._forward, input_signature=[CROPS_SPEC])

    def _forward(self, crops):
        return self.endpoints(self.normalizer(crops, training=False), training=False)

    def conv1_kernels(self) -> np.ndarray:
        return conv1_kernels(self.model)


class SavedModelSource(ModelSource):
    """A SavedModel written by `alexnet_tf.export`; needs no project code to run."""

    def __init__(self, path: str):
        self.loaded = tf.saved_model.load(path)
        missing = [a for a in ("predict_crops", "wnids", "texts") if not hasattr(self.loaded, a)]
        if missing:
            raise ValueError(
                f"{path} is a SavedModel but not one written by alexnet_tf.export "
                f"(it lacks {missing})"
            )
        self.name = path
        self.step = int(self.loaded.step.numpy()) if hasattr(self.loaded, "step") else 0
        self.wnids = [s.decode() for s in self.loaded.wnids.numpy()]
        self.texts = [s.decode() for s in self.loaded.texts.numpy()]
        self._predict = self.loaded.predict_crops
        self.has_boxes = BOX_LAYER in self.loaded.signatures["predict_crops"].structured_outputs

    def conv1_kernels(self) -> np.ndarray:
        return self.loaded.conv1_kernels().numpy()


def load_source(path: str, manifest: Manifest | None = None) -> ModelSource:
    """A training WORKDIR, a checkpoint prefix, or an exported SavedModel directory."""
    if os.path.isdir(path) and tf.saved_model.contains_saved_model(path):
        return SavedModelSource(path)
    return CheckpointSource(path, manifest=manifest)


def training_workdir(path: str) -> str | None:
    """The training WORKDIR of a WORKDIR or `ckpt-N` prefix; None for anything else."""
    if os.path.isdir(path) and tf.saved_model.contains_saved_model(path):
        return None
    try:
        return checkpoints_lib.resolve_checkpoint(path)[1]
    except checkpoints_lib.CheckpointError:
        return None


def resolve_data_dir(path: str, data_dir: str | None) -> str:
    """`data_dir` if given, else the one the training run of `path` recorded.

    Raises:
        CheckpointError: `path` is not a training run (the message names it).
        ValueError: `path` is a SavedModel, or its run records no data directory.
    """
    if data_dir:
        return data_dir
    if os.path.isdir(path) and tf.saved_model.contains_saved_model(path):
        raise ValueError(f"--data_dir is needed: {path} is a SavedModel, which records no data")
    workdir = checkpoints_lib.resolve_checkpoint(path)[1]
    recorded = checkpoints_lib.read_model_config(workdir).get("data_dir")
    if not recorded:
        raise ValueError(f"--data_dir is needed: {workdir_lib.model_config(workdir)} records none")
    return recorded


def _try_manifest(data_dir: str | None) -> Manifest | None:
    if not data_dir:
        return None
    try:
        return load_manifest(data_dir)
    except ManifestError:
        return None


def _checkpoint_step(prefix: str) -> int:
    suffix = prefix.rsplit("-", 1)[-1]
    return int(suffix) if suffix.isdigit() else 0
