"""The boxed demo's recipe: configs/demo_localization.cfg in two stages, and the boxed sets."""

import glob
import os
import xml.etree.ElementTree as ElementTree

import numpy as np
import pytest
from absl import flags
from binaries import binary

from alexnet_tf.training import loop as training

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def tiny_boxed_alexnet(num_classes, devices=None, *, seed=None, localization=False, **_):
    """conv1_a / conv1_b → concat → drop7 → fc8, and the real box head on drop7."""
    import keras

    from alexnet_tf.model.box_head import box_head
    from alexnet_tf.model.layers import (
        PlacedConcatenate,
        PlacedConv2D,
        PlacedDense,
        PlacedDropout,
        PlacedFlatten,
    )

    images = keras.Input((227, 227, 3), name="images")
    init = keras.initializers.HeNormal(seed)
    towers = [
        PlacedConv2D(4, 11, strides=16, activation="relu", name=f"conv1_{t}",
                     kernel_initializer=init)(images)
        for t in "ab"
    ]  # fmt: skip
    x = PlacedDropout(0.0, name="drop7")(PlacedFlatten(name="flatten")(PlacedConcatenate()(towers)))
    logits = PlacedDense(num_classes, name="fc8", kernel_initializer=init)(x)
    probs = keras.layers.Softmax(name="predictions")(logits)
    if not localization:
        return keras.Model(images, probs)
    return keras.Model(images, {"predictions": probs, "bbox": box_head(num_classes, seed=seed)(x)})


@pytest.fixture(scope="module")
def boxed_data_dir(tmp_path_factory):
    """Boxed digits on real photographs (2 training, 1 validation per class), with boxes."""
    from alexnet_tf.convert import convert
    from alexnet_tf.data.demo_data import write_demo_tree

    root = tmp_path_factory.mktemp("boxed_recipe")
    tree = write_demo_tree(str(root / "raw"), train_per_class=2, val_per_class=1, boxes=True)
    result = convert(
        output_dir=str(root / "data"), train_dir=tree["train_dir"], val_dir=tree["val_dir"],
        val_labels=tree["val_labels"], bbox_dir=tree["bbox_dir"], resize=256, num_workers=1,
        show_progress=False,
    )  # fmt: skip
    assert result.complete
    return str(root / "data")


def _config(data_dir, workdir, *overrides):
    """The TrainConfig `python -m alexnet_tf.train --flagfile=configs/demo_localization.cfg`
    builds, with `overrides` as further flags."""
    cwd = os.getcwd()
    os.chdir(REPO)  # the flagfile's includes are relative to the repository root
    try:
        with binary("train") as train_binary:
            flags.FLAGS(["train", "--flagfile=configs/demo_localization.cfg", *overrides])
            return train_binary.config_from_flags(data_dir, str(workdir))
    finally:
        os.chdir(cwd)


def _box_head(workdir):
    import tensorflow as tf

    reader = tf.train.load_checkpoint(tf.train.latest_checkpoint(f"{workdir}/checkpoints"))
    return {
        k: reader.get_tensor(k)
        for k, shape in reader.get_variable_to_shape_map().items()
        if "_trainable_variables" in k and len(shape) == 3  # the head's (K, features, 4) kernel
    }


def test_the_one_command_trains_classes_first_then_boxes(boxed_data_dir, tmp_path):
    from alexnet_tf.model.box_head import BOX_INIT_STDDEV

    # 20 images at batch 4: 5 steps an epoch; the box loss joins at step 3.
    small = ["--batch_size=4", "--epochs=1", "--box_loss_start_epochs=0.6", "--shuffle_buffer=8",
             "--eval_every_steps=0", "--checkpoint_every_steps=100"]  # fmt: skip
    config = _config(boxed_data_dir, tmp_path, *small, "--train_steps=3")
    assert config.localization and config.box_loss_start_step(20) == 3
    assert config.warmup_epochs > 0 and config.clip_gradient_norm > 0  # demo.cfg's levers
    training.train(config, build_model=tiny_boxed_alexnet)
    stage_one = _box_head(tmp_path)
    # Untouched by three steps without the box loss: still the head's initial N(0, 0.001).
    kernel = next(iter(stage_one.values()))
    fresh = tiny_boxed_alexnet(10, seed=config.seed, localization=True).get_layer("bbox")
    np.testing.assert_array_equal(kernel, fresh.kernel.numpy())
    assert np.std(kernel) < 2 * BOX_INIT_STDDEV

    config = _config(boxed_data_dir, tmp_path, *small)  # resumes at step 3, ends at 5
    result = training.train(config, build_model=tiny_boxed_alexnet)
    assert result.step == 5
    assert not np.array_equal(next(iter(_box_head(tmp_path).values())), kernel)


def test_objects_set_has_ten_classes_with_boxes_of_the_asked_size(tmp_path):
    from alexnet_tf.convert.sources import packaged_class_texts
    from alexnet_tf.data.pasted_objects import OBJECT_SIDE, write_object_tree

    info = write_object_tree(str(tmp_path), train_per_class=2, val_per_class=1, image_size=96)
    assert info["num_train"] == 20 and info["num_val"] == 10
    texts = packaged_class_texts()
    assert [texts[s] for s in info["synsets"]] == info["texts"]
    xmls = glob.glob(os.path.join(info["bbox_dir"], "*", "*.xml"))
    assert len(xmls) == 30
    for path in xmls:
        root = ElementTree.parse(path).getroot()
        width, height = (int(root.findtext(f"size/{k}")) for k in ("width", "height"))
        box = [int(root.findtext(f"object/bndbox/{k}")) for k in ("xmin", "ymin", "xmax", "ymax")]
        assert 0 <= box[0] < box[2] <= width and 0 <= box[1] < box[3] <= height
        side = np.sqrt((box[2] - box[0]) * (box[3] - box[1])) / height
        # The object is shrunk only when its aspect would push it out of the canvas.
        assert side <= OBJECT_SIDE[1] + 0.02, path
        assert side >= OBJECT_SIDE[0] * 0.6, path
    with open(info["val_labels"]) as f:
        labels = f.read().split()
    assert sorted(labels) == sorted(info["synsets"])


def test_demo_localization_picks_the_boxed_config_and_folder():
    from alexnet_tf import demo_boxes

    assert demo_boxes.defaults(["--epochs=2"], "configs/demo.cfg", "demo_work") == (
        "configs/demo.cfg",
        "demo_work",
    )
    flagfile, workdir = demo_boxes.defaults(["--localization"], "configs/demo.cfg", "demo_work")
    assert os.path.exists(os.path.join(REPO, flagfile)) and workdir == "demo_work/boxes"


def test_demo_summary_names_the_localization_error():
    from alexnet_tf import demo_boxes

    scores = {"top1_error": 0.1, "localization_error": 0.125, "localization_top1_error": 0.25,
              "mean_iou": 0.71}  # fmt: skip
    (line,) = demo_boxes.summary_lines(scores)
    assert "12.5%" in line and "25.0%" in line and "0.71" in line
    assert demo_boxes.summary_lines({"top1_error": 0.1}) == []
