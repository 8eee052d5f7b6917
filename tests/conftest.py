"""Shared test fixtures: a tiny converted demo data set, built once per test session."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest  # noqa: E402

# 10 digit classes × 8 training + 3 validation images: enough for every class to appear in each
# split, small enough to convert in a few seconds on two shared cores.
DEMO_TRAIN_PER_CLASS = 8
DEMO_VAL_PER_CLASS = 3
DEMO_TRAIN_SHARDS = 2
DEMO_VAL_SHARDS = 1


@pytest.fixture(scope="session")
def demo_tree(tmp_path_factory) -> dict:
    """The demo ILSVRC-layout tree (write_demo_tree's dict: train_dir, val_dir, val_labels...)."""
    from alexnet_tf.demo_data import write_demo_tree

    root = tmp_path_factory.mktemp("demo_tree")
    return write_demo_tree(
        str(root),
        train_per_class=DEMO_TRAIN_PER_CLASS,
        val_per_class=DEMO_VAL_PER_CLASS,
        image_size=64,
    )


@pytest.fixture(scope="session")
def demo_data_dir(demo_tree, tmp_path_factory) -> str:
    """A converted demo data set: shards + manifest.json + mean_image.npy; returns the folder.

    Read it with `alexnet_tf.manifest.load_manifest(demo_data_dir)`: 10 classes, 80 training
    records in 2 shards, 30 validation records in 1 shard, 256×256 JPEGs, labels 0-9.
    """
    from alexnet_tf.convert import convert

    output_dir = str(tmp_path_factory.mktemp("demo_data"))
    result = convert(
        output_dir=output_dir,
        train_dir=demo_tree["train_dir"],
        val_dir=demo_tree["val_dir"],
        val_labels=demo_tree["val_labels"],
        train_shards=DEMO_TRAIN_SHARDS,
        val_shards=DEMO_VAL_SHARDS,
        resize=256,
        num_workers=1,
        show_progress=False,
    )
    assert result.complete, result.errors
    return output_dir
