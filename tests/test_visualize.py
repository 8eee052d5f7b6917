"""Figures 3 and 4 (left) of the paper as PNGs: conv1 filters and top-5 guesses."""

import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from alexnet_tf.model import conv1_kernels
from alexnet_tf.results import figures
from alexnet_tf.results.trained_models import CheckpointSource


@pytest.fixture(scope="module")
def kernels(tools_workdir):
    return conv1_kernels(CheckpointSource(tools_workdir).model)


def test_filter_grid_has_the_expected_size_and_tiles(kernels):
    grid = figures.kernel_grid(kernels)
    tile = 11 * 4  # each 11×11 kernel drawn 4× larger, with a one-pixel border
    # 96 kernels in 16 columns: tower a's 48 in rows 0-2, tower b's 48 in rows 3-5.
    assert grid.shape == (6 * (tile + 1) + 1, 16 * (tile + 1) + 1, 3) == (271, 721, 3)
    lines = np.arange(0, grid.shape[0], tile + 1), np.arange(0, grid.shape[1], tile + 1)
    assert (grid[lines[0]] == 255).all() and (grid[:, lines[1]] == 255).all()
    assert len(lines[0]) == 7 and len(lines[1]) == 17  # so 6 × 16 = 96 tiles
    for i in range(96):
        row, col = divmod(i, 16)  # kernel i of tower a (i < 48) or b is at (i // 16, i % 16)
        y, x = 1 + row * (tile + 1), 1 + col * (tile + 1)
        k = kernels[..., i]
        scaled = np.round((k - k.min()) * 255.0 / (k.max() - k.min())).astype(np.uint8)
        np.testing.assert_array_equal(
            grid[y : y + tile, x : x + tile], scaled.repeat(4, 0).repeat(4, 1)
        )
        assert grid[y : y + tile, x : x + tile].min() == 0
        assert grid[y : y + tile, x : x + tile].max() == 255


def test_top5_panel_marks_the_true_label_red():
    from skimage import data

    image = data.chelsea()  # a real photograph of a cat
    texts = [f"class {i}" for i in range(10)]
    probabilities = [0.5, 0.2, 0.1, 0.1, 0.05]
    red = np.asarray(figures.TRUE_COLOR) // 2 + 127
    hit = figures.top5_panel(image, [3, 1, 4, 0, 9], probabilities, 4, texts)
    miss = figures.top5_panel(image, [3, 1, 2, 0, 9], probabilities, 4, texts)
    assert hit.shape == miss.shape and hit.dtype == np.uint8
    assert (hit == red).all(axis=-1).sum() > 100
    assert not (miss == red).all(axis=-1).any()
    # Bars are light; the labels are written in black on them, down to the fifth line.
    assert (hit[-18:-4].max(axis=-1) < 100).any()


def test_visualize_binary_writes_both_pngs(tools_workdir, tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "alexnet_tf.visualize", f"--workdir={tools_workdir}",
         f"--output_dir={tmp_path}", "--num_images=3", "--columns=3"],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    filters = tf.io.decode_png(tf.io.read_file(str(tmp_path / "conv1_kernels.png"))).numpy()
    assert filters.shape == (271, 721, 3)
    top5 = tf.io.decode_png(tf.io.read_file(str(tmp_path / "top5.png"))).numpy()
    assert top5.shape[1] == 3 * 200 + 4 * 6 and top5.shape[0] > 160
    summaries = os.path.join(tools_workdir, "tensorboard", "figures")
    assert any(name.startswith("events.out.tfevents") for name in os.listdir(summaries))
