"""A self-contained SavedModel of a trained network: JPEG/PNG bytes in, top-k classes out.

Everything between the encoded image and the answer runs inside the graph, the way the paper
prepares its test images (sections 2 and 4.1) and `input_pipeline.make_eval_dataset` does:
decode, cut the central square and resize it to 256×256, then the 227×227 centre patch or the
ten patches (corners and centre, and their reflections, softmax averaged), and the model's own
input normalization. Loading needs TensorFlow only: no alexnet_tf code.

Signatures:
    serving_default  images: string [B] (encoded JPEG or PNG) →
                     top_k_indices int32 [B, k], top_k_wnids string [B, k],
                     top_k_texts string [B, k], top_k_probabilities float32 [B, k],
                     probabilities float32 [B, K], valid bool [B].
                     A string that is not an image gives valid=False, zero probabilities,
                     indices -1 and empty names, and does not fail the batch.
                     With the box head (ILSVRC task 2) also top_k_boxes float32 [B, k, 4]:
                     each guess's box, (ymin, xmin, ymax, xmax) in pixels of the image as
                     sent (the central square and the resize undone; with ten patches the mean
                     of the ten patches' boxes, reflections un-reflected); zeros if not valid.
    predict_images   images: float32 [B, 227, 227, 3] already normalized → the same outputs
                     (no `valid`).
    fc7              images: string [B] → fc7 float32 [B, 4096] (centre patch), valid bool [B].
    predict_crops    crops: uint8 [B, 227, 227, 3] → predictions [B, K], fc7 [B, 4096], and
                     with the box head bbox [B, 4K] (class c's box in columns 4c … 4c+3,
                     normalized to the crop) (used by alexnet_tf.evaluate/visualize/retrieve).

The network inside computes in float32, or with `compute_dtype="bfloat16"` (`--compute_dtype`) in
bfloat16 with float32 weights (for CPUs with AMX or AVX512_BF16, GPUs of compute capability
>= 8.0): the signatures and their float32 outputs are the same; the softmax runs in float32 on
the logits.

    python -m alexnet_tf.export --workdir=runs/demo --export_dir=exported/demo
    saved_model_cli run --dir exported/demo --tag_set serve --signature_def serving_default \
        --input_exprs 'images=[open("cat.jpg","rb").read()]'
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import keras
import tensorflow as tf

from alexnet_tf.data.boxes import patch_boxes_to_original
from alexnet_tf.data.crops import central_square, stored_image
from alexnet_tf.data.crops import patches as crops_of  # the evaluation's own crops
from alexnet_tf.files import atomic
from alexnet_tf.model import IMAGE_SIZE, TOWERS, build_alexnet, endpoints_model, precision
from alexnet_tf.model.box_head import BOX_LAYER, class_boxes, has_box_head

COMPUTE_DTYPES = ("float32", "bfloat16")


class ExportModule(tf.Module):
    """The trained network, its normalizer and its class names, with serving functions."""

    def __init__(
        self,
        model: keras.Model,
        normalizer: tf.Module,
        wnids: Sequence[str],
        texts: Sequence[str],
        *,
        top_k: int = 5,
        ten_patch: bool = False,
        step: int = 0,
    ):
        super().__init__(name="alexnet_export")
        num_classes = model.get_layer("fc8").units
        if len(wnids) != num_classes or len(texts) != num_classes:
            raise ValueError(
                f"the model has {num_classes} classes but {len(wnids)} wnids and {len(texts)} texts"
            )
        if not 1 <= top_k <= num_classes:
            raise ValueError(f"top_k must be in [1, {num_classes}]; received {top_k}")
        # The Keras model is kept out of the saved object graph (as keras.export.ExportArchive
        # does): saved as Keras layers, its variables are not restored by the TF1-style loaders
        # of `saved_model_cli run` and TF Serving. `save` lists the variables the functions use.
        self.has_boxes = has_box_head(model)
        # The logits, not the softmax layer's output: the softmax runs in float32 whatever the
        # layers compute in (a bfloat16 softmax keeps ~3 digits and ties close classes).
        names = ["fc7", "fc8"] + ([BOX_LAYER] if self.has_boxes else [])
        self._keras = _Untracked(model, endpoints_model(model, names))
        self.compute_dtype = tf.Variable(
            model.get_layer("fc8").compute_dtype, trainable=False, name="compute_dtype"
        )
        self.normalizer = normalizer
        self.wnids = tf.Variable(list(wnids), trainable=False, name="wnids")
        self.texts = tf.Variable(list(texts), trainable=False, name="texts")
        self.step = tf.Variable(step, trainable=False, dtype=tf.int64, name="step")
        self.top_k = top_k
        self.ten_patch = ten_patch
        self.num_classes = num_classes

    # -- helpers traced into the signatures --------------------------------------------------
    def _decode(self, images: tf.Tensor, ten_patch: bool) -> tuple[tf.Tensor, ...]:
        """Encoded strings [n] → crops [n, P, 227, 227, 3] uint8, valid [n] bool and the
        decoded images' (height, width) [n, 2] int32 (zeros where not valid).

        Decoding runs in a tf.data pipeline with `ignore_errors`, the one graph-level way to drop
        an element whose decoding fails without failing the whole call; the surviving indices say
        which inputs were images.
        """
        n = tf.shape(images, out_type=tf.int64)[0]
        patches = 10 if ten_patch else 1

        def decode(index, data):
            image = tf.io.decode_image(data, channels=3, expand_animations=False)
            return index, crops_of(stored_image(image), ten_patch), tf.shape(image)[:2]

        sentinel = (
            tf.constant(-1, tf.int64),
            tf.zeros([patches, IMAGE_SIZE, IMAGE_SIZE, 3], tf.uint8),
            tf.zeros([2], tf.int32),
        )
        dataset = (
            tf.data.Dataset.from_tensor_slices((tf.range(n), images))
            .map(decode, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
            .ignore_errors()
            # The sentinel makes sure one batch always comes out, even if nothing decoded.
            .concatenate(tf.data.Dataset.from_tensors(sentinel))
            .batch(n + 1)
        )
        indices, crops, sizes = dataset.get_single_element()
        indices, crops, sizes = indices[:-1], crops[:-1], sizes[:-1]
        valid = tf.scatter_nd(indices[:, None], tf.ones_like(indices, tf.bool), [n])
        shape = tf.concat([[n], tf.shape(crops, out_type=tf.int64)[1:]], 0)
        sizes = tf.scatter_nd(indices[:, None], sizes, tf.stack([n, 2]))
        return tf.scatter_nd(indices[:, None], crops, shape), valid, sizes

    def _forward(self, images: tf.Tensor) -> dict[str, tf.Tensor]:
        """Normalized float32 images → float32 predictions, fc7 (and bbox), whatever the layers
        compute in."""
        out = self._keras.endpoints(images, training=False)
        out = {name: tf.cast(value, tf.float32) for name, value in out.items()}
        out["predictions"] = tf.nn.softmax(out.pop("fc8"))
        return out

    def _run(self, crops: tf.Tensor) -> dict[str, tf.Tensor]:
        """uint8 crops [n, P, 227, 227, 3] → patch-averaged predictions and fc7 [n, ...], and
        each patch's own boxes, bbox [n, P, 4K] (a box only means something in its patch)."""
        n, patches = tf.shape(crops)[0], tf.shape(crops)[1]
        flat = tf.reshape(crops, [-1, IMAGE_SIZE, IMAGE_SIZE, 3])
        out = self._forward(self.normalizer(flat, training=False))
        per_patch = {k: tf.reshape(v, [n, patches, v.shape[-1]]) for k, v in out.items()}
        return {
            name: value if name == BOX_LAYER else tf.reduce_mean(value, axis=1)
            for name, value in per_patch.items()
        }

    def _boxes_in_input(
        self, boxes: tf.Tensor, classes: tf.Tensor, sizes: tf.Tensor, ten_patch: bool
    ) -> tf.Tensor:
        """The boxes of `classes` [n, k] in pixels of the decoded input images.

        Args:
            boxes: bbox [n, P, 4K], normalized to each patch.
            classes: int [n, k].
            sizes: int [n, 2], each input image's (height, width).
            ten_patch: the P=10 patches are TEN_PATCHES then their reflections.

        Returns:
            float32 [n, k, 4]: each patch's box mapped back through the evaluation's own
            geometry (`data.boxes.patch_boxes_to_original`: reflections un-reflected, the patch
            placed in the 256×256 image, that image in the input's central square), then the
            mean over the patches.
        """
        patches, k = (10 if ten_patch else 1), tf.shape(classes)[1]
        chosen = class_boxes(
            tf.reshape(boxes, [-1, boxes.shape[-1]]), tf.repeat(classes, patches, axis=0)
        )  # n·P, k, 4
        chosen = tf.transpose(tf.reshape(chosen, [-1, patches, k, 4]), [0, 2, 1, 3])
        chosen = tf.reshape(chosen, [-1, patches, 4])  # n·k, P, 4
        # The geometry make_eval_dataset gives a record, here of the decoded input: the frame
        # (the central square that became the 256×256 image) and the input's size.
        height, width = sizes[:, 0], sizes[:, 1]
        y, x, side = central_square(height, width)
        geometry = tf.cast(tf.stack([y, x, y + side, x + side, height, width], -1), tf.float32)
        geometry = tf.repeat(geometry, k, axis=0)
        if ten_patch:
            mapped = tf.reduce_mean(patch_boxes_to_original(chosen, geometry, True), axis=1)
        else:
            mapped = patch_boxes_to_original(chosen[:, 0], geometry, False)
        return tf.reshape(mapped, [-1, k, 4])

    def _top_k(self, probabilities: tf.Tensor, valid: tf.Tensor) -> dict[str, tf.Tensor]:
        probabilities = tf.where(valid[:, None], probabilities, tf.zeros_like(probabilities))
        values, indices = tf.math.top_k(probabilities, k=self.top_k)
        indices = tf.where(valid[:, None], indices, -tf.ones_like(indices))
        safe = tf.maximum(indices, 0)
        empty = tf.fill(tf.shape(indices), "")
        return {
            "top_k_indices": indices,
            "top_k_wnids": tf.where(valid[:, None], tf.gather(self.wnids, safe), empty),
            "top_k_texts": tf.where(valid[:, None], tf.gather(self.texts, safe), empty),
            "top_k_probabilities": values,
            "probabilities": probabilities,
            "valid": valid,
        }

    # -- the exported functions -------------------------------------------------------------
    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="images")])
    def serve(self, images):
        crops, valid, sizes = self._decode(images, self.ten_patch)
        out = self._run(crops)
        outputs = self._top_k(out["predictions"], valid)
        if self.has_boxes:
            classes = tf.maximum(outputs["top_k_indices"], 0)
            boxes = self._boxes_in_input(out[BOX_LAYER], classes, sizes, self.ten_patch)
            outputs["top_k_boxes"] = tf.where(valid[:, None, None], boxes, tf.zeros_like(boxes))
        return outputs

    @tf.function(
        input_signature=[
            tf.TensorSpec([None, IMAGE_SIZE, IMAGE_SIZE, 3], tf.float32, name="images")
        ]
    )
    def predict_images(self, images):
        probabilities = self._forward(images)["predictions"]
        outputs = self._top_k(probabilities, tf.ones(tf.shape(images)[:1], tf.bool))
        del outputs["valid"]
        return outputs

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="images")])
    def fc7(self, images):
        crops, valid, _ = self._decode(images, ten_patch=False)
        features = self._run(crops)["fc7"]
        return {"fc7": tf.where(valid[:, None], features, tf.zeros_like(features)), "valid": valid}

    @tf.function(
        input_signature=[tf.TensorSpec([None, IMAGE_SIZE, IMAGE_SIZE, 3], tf.uint8, name="crops")]
    )
    def predict_crops(self, crops):
        out = self._run(crops[:, None])
        if self.has_boxes:
            out[BOX_LAYER] = out[BOX_LAYER][:, 0]
        return out

    @tf.function(input_signature=[])
    def conv1_kernels(self):
        """(11, 11, 3, 96), tower a's 48 first, as `model.conv1_kernels`."""
        return tf.concat([self._keras.model.get_layer(f"conv1_{t}").kernel for t in TOWERS], -1)

    def signatures(self) -> dict:
        return {
            "serving_default": self.serve,
            "predict_images": self.predict_images,
            "fc7": self.fc7,
            "predict_crops": self.predict_crops,
        }


class _Untracked:
    """Holds Keras objects where tf.Module's automatic tracking does not look."""

    def __init__(self, model: keras.Model, endpoints: keras.Model):
        self.model, self.endpoints = model, endpoints


def save(module: ExportModule, export_dir: str, *, overwrite: bool = False) -> str:
    """Writes the SavedModel into a temporary sibling directory, then renames it into place.

    Raises:
        FileExistsError: `export_dir` exists and `overwrite` is False.
        WriteError: it could not be written (the message is one line); nothing partial is left.
    """
    export_dir = os.path.abspath(export_dir)
    if os.path.exists(export_dir) and not overwrite:
        raise FileExistsError(f"--export_dir {export_dir} exists; pass --overwrite to replace it")
    signatures = module.signatures()
    used = {}
    for fn in [*signatures.values(), module.conv1_kernels]:
        for v in fn.get_concrete_function().variables:
            used.setdefault(id(v), v)
    # A traced function lists its variables in the order of their memory addresses, which
    # differs from run to run; in the model's own order, two exports are byte for byte equal.
    rank = {id(w.value): i for i, w in enumerate(module._keras.model.weights)}
    module.saved_variables = sorted(
        used.values(), key=lambda v: (rank.get(id(v), len(rank)), v.name)
    )
    with atomic.temporary_path(export_dir) as tmp:
        tf.saved_model.save(module, tmp, signatures=signatures)
    return export_dir


def export(
    checkpoint: str,
    export_dir: str,
    *,
    data_dir: str | None = None,
    top_k: int = 5,
    ten_patch: bool = False,
    overwrite: bool = False,
    compute_dtype: str = "float32",
) -> str:
    """Exports the model of a training run (WORKDIR or `ckpt-N`) as a SavedModel.

    Args:
        checkpoint: a training WORKDIR (latest checkpoint) or a checkpoint prefix.
        export_dir: where the SavedModel goes.
        data_dir: a data directory whose manifest gives the class names and normalization
            statistics if the run's own `data_dir` is gone.
        top_k: how many classes `serving_default` returns.
        ten_patch: average the ten patches (section 4.1) instead of using the centre patch.
        overwrite: replace an existing `export_dir`.
        compute_dtype: what the exported layers compute in: "float32", or "bfloat16" (faster on
            CPUs with AMX or AVX512_BF16, GPUs of compute capability >= 8.0; weights and outputs
            stay float32). Any run's checkpoint exports in either, whatever policy trained it.

    Returns:
        The absolute path of the SavedModel.

    Raises:
        ValueError: `compute_dtype` is not one of COMPUTE_DTYPES.
    """
    if compute_dtype not in COMPUTE_DTYPES:
        raise ValueError(
            f"--compute_dtype must be one of {COMPUTE_DTYPES}; received {compute_dtype!r}"
        )
    from alexnet_tf.data.manifest import load_manifest
    from alexnet_tf.results.trained_models import CheckpointSource

    manifest = load_manifest(data_dir) if data_dir else None
    source = CheckpointSource(checkpoint, manifest=manifest)
    module = ExportModule(
        with_compute_dtype(source.model, source.config, compute_dtype),
        source.normalizer,
        source.wnids,
        source.texts,
        top_k=top_k,
        ten_patch=ten_patch,
        step=source.step,
    )
    return save(module, export_dir, overwrite=overwrite)


def with_compute_dtype(model: keras.Model, config: dict, compute_dtype: str) -> keras.Model:
    """`model` itself for float32; else the same network and weights (float32 variables) rebuilt
    to compute in `compute_dtype`, from the run's model_config.json (`config`)."""
    if compute_dtype == "float32":
        return model
    with precision.policy_scope(compute_dtype):
        half = build_alexnet(config["num_classes"], **config.get("model", {}))
    half.set_weights(model.get_weights())
    return half
