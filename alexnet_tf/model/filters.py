"""Numbers and one layout for the conv1 kernels of figure 3 (pure numpy, no TensorFlow).

Section 6.1 of the paper: "The kernels on GPU 1 are largely color-agnostic, while the kernels on
GPU 2 are largely color-specific." These functions turn that sentence, and "the filters look
learned", into numbers:

- `neighbour_correlation`: the Pearson correlation between every weight of a kernel and its right
  and its lower neighbour, averaged over the kernels. Each colour plane's own mean is removed
  before the three planes are pooled, so a flat colour cast does not count as smoothness.
  Independent random weights (an untrained initialization) give about 0; the smooth edge and
  blob detectors of figure 3 give values near 1.
- `colourfulness`: the share of a kernel's (mean-removed) energy that lies in the differences
  between its colour planes, ||w - g||² / ||w - mean(w)||², where g is the per-pixel mean of the
  three planes (the kernel's grey part). 0: the three planes are equal, a colour-agnostic kernel;
  1: the planes cancel at every pixel, a pure colour-opponent kernel. Independent random weights
  give 2/3 (two of the three colour directions per pixel are not grey).

`filter_layout` is the one grid both the PNG (results/figures.py) and TensorBoard
(training/summaries.py) use: each tower's kernels in their own block of rows, tower a on top.

    python -m alexnet_tf.visualize --workdir=runs/demo   # prints conv1_stats, writes the grid
"""

from __future__ import annotations

import numpy as np

from alexnet_tf.model.network import TOWERS

GRID_COLUMNS = 16  # 48 kernels per tower → 3 rows per tower, 6 rows in all


def _check(kernels: np.ndarray) -> np.ndarray:
    kernels = np.asarray(kernels, np.float64)
    if kernels.ndim != 4 or kernels.shape[2] != 3 or min(kernels.shape[:2]) < 2:
        raise ValueError(
            f"kernels must be (height >= 2, width >= 2, 3, n); received {kernels.shape}"
        )
    return kernels


def kernel_neighbour_correlations(kernels: np.ndarray) -> np.ndarray:
    """Per kernel, the correlation of each weight with its right and lower neighbour.

    Args:
        kernels: (height, width, 3, n) conv1 weights.

    Returns:
        (n,) correlations in [-1, 1]; 0 for a constant kernel.
    """
    k = _check(kernels)
    n = k.shape[-1]
    # Pairs (weight, right neighbour) and (weight, lower neighbour) of each colour plane.
    first = np.concatenate([k[:, :-1].reshape(-1, 3, n), k[:-1, :].reshape(-1, 3, n)])
    second = np.concatenate([k[:, 1:].reshape(-1, 3, n), k[1:, :].reshape(-1, 3, n)])
    # Each plane's own mean removed, then the planes pooled: a flat colour cast (one plane
    # brighter than another everywhere) is no smoothness.
    first = (first - first.mean(0)).reshape(-1, n)
    second = (second - second.mean(0)).reshape(-1, n)
    denominator = np.sqrt((first**2).sum(0) * (second**2).sum(0))
    return np.where(denominator > 0, (first * second).sum(0) / np.maximum(denominator, 1e-300), 0)


def kernel_colourfulness(kernels: np.ndarray) -> np.ndarray:
    """Per kernel, the share of its energy in colour differences (see the module docstring).

    Args:
        kernels: (height, width, 3, n) conv1 weights.

    Returns:
        (n,) values in [0, 1]; 0 for a constant kernel.
    """
    k = _check(kernels)
    centred = k - k.mean(axis=(0, 1, 2), keepdims=True)
    grey = centred.mean(axis=2, keepdims=True)
    total = (centred**2).sum(axis=(0, 1, 2))
    colour = ((centred - grey) ** 2).sum(axis=(0, 1, 2))
    return np.where(total > 0, colour / np.maximum(total, 1e-300), 0.0)


def neighbour_correlation(kernels: np.ndarray) -> float:
    """The mean over kernels of `kernel_neighbour_correlations`: ~0 untrained, near 1 learned."""
    return float(kernel_neighbour_correlations(kernels).mean())


def conv1_stats(kernels: np.ndarray, towers: tuple[str, ...] = TOWERS) -> dict:
    """Neighbour correlation of all kernels, and per tower the same plus colourfulness.

    Args:
        kernels: (height, width, 3, n) conv1 weights, the towers' kernels in order (as returned
            by `alexnet_tf.model.conv1_kernels`: tower a's 48, then tower b's 48).
        towers: the towers' names.

    Returns:
        {"neighbour_correlation": float, "towers": {name: {"neighbour_correlation",
        "colourfulness", "kernels"}}}.
    """
    k = _check(kernels)
    if k.shape[-1] % len(towers):
        raise ValueError(f"{k.shape[-1]} kernels can't be split evenly into {len(towers)} towers")
    per_tower = k.shape[-1] // len(towers)
    correlations = kernel_neighbour_correlations(k)
    colours = kernel_colourfulness(k)
    stats = {"neighbour_correlation": float(correlations.mean()), "towers": {}}
    for i, tower in enumerate(towers):
        part = slice(i * per_tower, (i + 1) * per_tower)
        stats["towers"][tower] = {
            "neighbour_correlation": float(correlations[part].mean()),
            "colourfulness": float(colours[part].mean()),
            "kernels": per_tower,
        }
    return stats


def format_stats(stats: dict) -> str:
    """One line per measure, e.g. for the visualize binary's output."""
    lines = [f"conv1 neighbour_correlation {stats['neighbour_correlation']:.3f}"]
    for tower, values in stats["towers"].items():
        lines.append(
            f"conv1 tower {tower}: neighbour_correlation {values['neighbour_correlation']:.3f}, "
            f"colourfulness {values['colourfulness']:.3f} ({values['kernels']} kernels)"
        )
    return "\n".join(lines)


def filter_grid(
    kernels: np.ndarray, *, columns: int = GRID_COLUMNS, scale: int = 4, border: int = 1
) -> np.ndarray:
    """The conv1 kernels as one uint8 RGB image, each tower in its own block of rows (figure 3).

    Args:
        kernels: (height, width, 3, n) float array, the towers' kernels in order.
        columns: tiles per row.
        scale: each kernel pixel becomes a scale×scale square, so that a person can see it.
        border: width of the white lines around every tile.

    Returns:
        uint8 (rows·(h·scale+border)+border, columns·(w·scale+border)+border, 3); each kernel is
        stretched on its own to the full 0–255 range (the weights themselves are untouched).
    """
    kernels = np.asarray(kernels, np.float32)
    if kernels.ndim != 4 or kernels.shape[2] != 3:
        raise ValueError(f"kernels must be (height, width, 3, n); received {kernels.shape}")
    h, w, _, n = kernels.shape
    places, rows = filter_layout(n, columns=columns)
    th, tw = h * scale + border, w * scale + border
    grid = np.full((rows * th + border, columns * tw + border, 3), 255, np.uint8)
    for i, (r, c) in enumerate(places):
        tile = _stretch_to_uint8(kernels[..., i]).repeat(scale, 0).repeat(scale, 1)
        y, x = border + r * th, border + c * tw
        grid[y : y + h * scale, x : x + w * scale] = tile
    return grid


def _stretch_to_uint8(x: np.ndarray) -> np.ndarray:
    lo, hi = float(x.min()), float(x.max())
    if hi <= lo:
        return np.full(x.shape, 128, np.uint8)
    return np.round((x - lo) * (255.0 / (hi - lo))).astype(np.uint8)


def filter_layout(
    num_kernels: int, towers: int = len(TOWERS), columns: int = GRID_COLUMNS
) -> tuple[list[tuple[int, int]], int]:
    """Where each kernel sits in the filter grid: each tower in its own block of rows.

    Args:
        num_kernels: kernels in all, the towers' in order.
        towers: how many towers share them evenly.
        columns: tiles per row.

    Returns:
        ((row, column) per kernel, number of rows).
    """
    if num_kernels % towers:
        raise ValueError(f"{num_kernels} kernels can't be split evenly into {towers} towers")
    per_tower = num_kernels // towers
    rows_per_tower = -(-per_tower // columns)
    places = [
        (tower * rows_per_tower + j // columns, j % columns)
        for tower in range(towers)
        for j in range(per_tower)
    ]
    return places, towers * rows_per_tower
