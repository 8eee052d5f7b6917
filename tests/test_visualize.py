"""Figures 3 and 4 of the paper: conv1 filters with their numbers, top-5 guesses, retrieval."""

import json
import pathlib

import numpy as np
import tensorflow as tf

from alexnet_tf.model import filters
from alexnet_tf.results import figures
from alexnet_tf.training import summaries

WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
DIGIT_TEXTS = [f"digit {d}, {w}" for d, w in enumerate(WORDS)]


def gabor_kernels(count: int = 96, colour=(1.0, 1.0, 1.0)) -> np.ndarray:
    """Hand-made smooth kernels like the learned ones of figure 3: oriented Gabor patches."""
    rng = np.random.default_rng(0)
    y, x = np.mgrid[-5:6, -5:6].astype(np.float64)
    kernels = []
    for _ in range(count):
        theta, phase = rng.uniform(0, np.pi), rng.uniform(0, 2 * np.pi)
        wavelength, sigma = rng.uniform(6, 12), rng.uniform(2.5, 4)
        along = x * np.cos(theta) + y * np.sin(theta)
        g = np.exp(-(x**2 + y**2) / (2 * sigma**2)) * np.cos(2 * np.pi * along / wavelength + phase)
        kernels.append(g[..., None] * np.asarray(colour))
    return np.stack(kernels, axis=-1)


def test_neighbour_correlation_is_near_1_for_smooth_and_near_0_for_random_kernels():
    smooth = gabor_kernels()
    noise = np.random.default_rng(0).normal(0, 0.01, smooth.shape)
    assert filters.neighbour_correlation(smooth) > 0.8
    assert abs(filters.neighbour_correlation(noise)) < 0.05
    # A kernel of opposite signs at neighbouring weights (a checkerboard) is -1.
    checker = (np.indices((11, 11)).sum(0) % 2 * 2 - 1)[..., None, None] * np.ones((1, 1, 3, 2))
    np.testing.assert_allclose(filters.kernel_neighbour_correlations(checker), -1)


def test_colourfulness_is_0_for_grey_and_1_for_colour_opponent_kernels():
    grey = gabor_kernels(4)
    opponent = gabor_kernels(4, colour=(1.0, -1.0, 0.0))  # red against green
    np.testing.assert_allclose(filters.kernel_colourfulness(grey), 0, atol=1e-12)
    np.testing.assert_allclose(filters.kernel_colourfulness(opponent), 1, atol=1e-12)
    noise = np.random.default_rng(0).normal(size=(11, 11, 3, 96))
    assert abs(filters.kernel_colourfulness(noise).mean() - 2 / 3) < 0.02


def test_conv1_stats_reads_each_tower_apart():
    grey, colour = gabor_kernels(48), gabor_kernels(48, colour=(0.5, 0.5, -1.0))  # blue-yellow
    stats = filters.conv1_stats(np.concatenate([grey, colour], axis=-1))
    assert set(stats["towers"]) == {"a", "b"}
    assert (
        stats["towers"]["a"]["colourfulness"] < 0.01 < 0.99 < stats["towers"]["b"]["colourfulness"]
    )
    assert stats["towers"]["a"]["kernels"] == 48
    assert stats["neighbour_correlation"] > 0.5
    assert "tower b" in filters.format_stats(stats)


def test_one_filter_grid_for_the_png_and_tensorboard():
    """Each kernel is drawn stretched to 0-255 on its own: a kernel made from an 8-bit image
    (whose darkest pixel is 0 and brightest 255), shifted and scaled, is drawn as that image."""
    from skimage import data

    assert summaries.filter_grid is filters.filter_grid
    rng = np.random.default_rng(0)
    pictures = []
    for _ in range(96):  # 11×11 crops of a real photograph
        y, x = rng.integers(0, 500, 2)
        picture = data.astronaut()[y : y + 11, x : x + 11].copy()
        picture[0, 0, 0], picture[10, 10, 2] = 0, 255
        pictures.append(picture)
    kernels = np.stack([(p - 100.0) * 0.001 * (i + 1) for i, p in enumerate(pictures)], axis=-1)
    kernels[..., 5] = -0.02  # a constant kernel: mid-grey
    grid = figures.kernel_grid(kernels)
    tile = 11 * 4  # each 11×11 kernel drawn 4× larger, with a one-pixel border
    # 96 kernels in 16 columns: tower a's 48 in rows 0-2, tower b's 48 in rows 3-5.
    assert grid.shape == (6 * (tile + 1) + 1, 16 * (tile + 1) + 1, 3) == (271, 721, 3)
    for i in (0, 5, 47, 48, 95):
        row, col = divmod(i, 16)
        y, x = 1 + row * (tile + 1), 1 + col * (tile + 1)
        want = np.full((11, 11, 3), 128, np.uint8) if i == 5 else pictures[i]
        np.testing.assert_array_equal(
            grid[y : y + tile, x : x + tile], want.repeat(4, 0).repeat(4, 1), err_msg=str(i)
        )
    assert (grid[0] == 255).all() and (grid[:, 0] == 255).all()  # the white border


def test_top5_figure_names_classes_by_the_manifest_texts_with_probabilities():
    from skimage import data

    image = data.chelsea()[:200, :200]  # a real photograph of a cat
    fig = figures.top5_figure(
        np.stack([image, image]), np.array([[9, 1, 4, 0, 3], [3, 1, 2, 0, 5]]),
        np.array([[0.5, 0.2, 0.1, 0.1, 0.05]] * 2), np.array([9, 4]), DIGIT_TEXTS,
    )  # fmt: skip
    texts = figures.figure_texts(fig)
    assert "digit 9, nine" in texts and "digit 4, four" in texts  # the true classes, as titles
    assert "digit 9, nine  0.50" in texts and "digit 5, five  0.05" in texts  # bars
    bars = [p for p in fig.axes[1].patches]
    assert [b.get_facecolor()[:3] for b in bars].count(bars[0].get_facecolor()[:3]) == 1
    assert figures.figure_pixels(fig).shape[-1] == 3


def test_retrieval_figure_shows_classes_and_distances():
    from skimage import data

    image = data.coffee()[:200, :200]
    fig = figures.retrieval_figure(
        image[None], [2], np.stack([[image, image]]), np.array([[2, 7]]),
        np.array([[1.5, 22.25]]), DIGIT_TEXTS,
    )  # fmt: skip
    texts = figures.figure_texts(fig)
    assert "query:\ndigit 2, two" in texts
    assert "digit 2, two\nd = 1.5" in texts and "digit 7, seven\nd = 22.2" in texts


def test_visualize_binary_writes_figures_and_conv1_stats(binary_runs):
    run = binary_runs["visualize:ok"]  # --workdir=tools_workdir --num_images=3 --columns=3
    assert run["code"] == 0, run["stderr"][-3000:]
    assert "conv1 neighbour_correlation" in run["stdout"]
    output_dir = pathlib.Path(run["output_dir"])
    for name in ("conv1_kernels.png", "top5.png"):
        assert tf.io.decode_png(tf.io.read_file(str(output_dir / name))).numpy().shape[-1] == 4
    stats = json.loads((output_dir / "conv1_stats.json").read_text())
    # An untrained (He-initialized) network: its kernels are noise.
    assert abs(stats["neighbour_correlation"]) < 0.1
    assert set(stats["towers"]) == {"a", "b"} and "colourfulness" in stats["towers"]["a"]
    assert not [p for p in output_dir.iterdir() if p.name.startswith(".")]  # no temporary left
