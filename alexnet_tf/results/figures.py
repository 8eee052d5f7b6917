"""The paper's pictures as PNGs: conv1 filters (figure 3), top-5 guesses and retrieval (figure 4).

Drawn with matplotlib's Agg backend (no display needed), on `matplotlib.figure.Figure` objects
rather than pyplot, so nothing global is touched. Every class name shown is the class text of
the data's manifest (e.g. "digit 9, nine", or ImageNet's "tench, Tinca tinca").

    python -m alexnet_tf.visualize --workdir=runs/demo     # writes WORKDIR/figures/*.png
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import tensorflow as tf
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from alexnet_tf.files import atomic
from alexnet_tf.model.filters import conv1_stats, filter_grid, filter_layout, format_stats
from alexnet_tf.model.network import TOWERS

TRUE_COLOR = "#d62728"  # figure 4: "the probability assigned to the correct label ... red bar"
BAR_COLOR = "#9bb7e0"  # the other guesses
MAX_TEXT = 28  # characters of a class text before it is shortened with an ellipsis
DPI = 100


def class_label(texts: Sequence[str], index: int) -> str:
    """The manifest's text of class `index`, shortened to MAX_TEXT characters if needed."""
    text = str(texts[int(index)])
    return text if len(text) <= MAX_TEXT else text[: MAX_TEXT - 1] + "…"


def kernel_grid(kernels: np.ndarray) -> np.ndarray:
    """The conv1 kernels as one uint8 image (see `alexnet_tf.model.filters.filter_grid`)."""
    return filter_grid(kernels)


def filters_figure(
    kernels: np.ndarray, stats: dict | None = None, two_devices: bool = False
) -> Figure:
    """Figure 3: the 96 conv1 kernels, each tower's block of rows labelled with its numbers.

    `two_devices`: the run placed the towers on two devices (`--placement=two_towers`), as the
    paper did on GPU 1 and GPU 2; only then are the towers labelled with their GPU.
    """
    stats = stats or conv1_stats(kernels)
    grid = filter_grid(kernels)
    _, rows = filter_layout(kernels.shape[-1])
    margin, pad = 2.0, 0.2  # inches: left of the grid for the towers' labels, around it
    width, height = 1.5 * grid.shape[1] / DPI, 1.5 * grid.shape[0] / DPI
    size = (width + margin + pad, height + 0.5 + pad)
    fig = Figure(figsize=size, dpi=DPI)
    ax = fig.add_axes((margin / size[0], pad / size[1], width / size[0], height / size[1]))
    ax.imshow(grid, interpolation="nearest")
    ax.set_axis_off()
    row_height = grid.shape[0] / rows
    per_tower = rows // len(TOWERS)
    for i, tower in enumerate(TOWERS):
        values = stats["towers"][tower]
        ax.text(
            -10, (i + 0.5) * per_tower * row_height,
            f"tower {tower}" + (f"\n(GPU {i + 1})" if two_devices else "")
            + f"\nneighbour corr. {values['neighbour_correlation']:.2f}"
            f"\ncolourfulness {values['colourfulness']:.2f}",
            ha="right", va="center", fontsize=9,
        )  # fmt: skip
    fig.suptitle(
        f"conv1 kernels (11×11×3), neighbour correlation {stats['neighbour_correlation']:.2f}",
        fontsize=10,
    )
    return fig


def top5_figure(
    images: np.ndarray,
    top_indices: np.ndarray,
    top_probabilities: np.ndarray,
    labels: np.ndarray,
    texts: Sequence[str],
    *,
    columns: int = 4,
) -> Figure:
    """Figure 4 (left): each image with its true class and bars for its five best guesses.

    Args:
        images: (n, h, w, 3) uint8.
        top_indices: (n, 5) class indices, most probable first.
        top_probabilities: (n, 5) their probabilities.
        labels: (n,) true class indices.
        texts: class texts of the manifest, in label order.
        columns: images per row.
    """
    n = len(images)
    if n == 0:
        raise ValueError("top5_figure needs at least one image")
    columns = min(columns, n)
    rows = -(-n // columns)
    fig = Figure(figsize=(3.2 * columns, 3.9 * rows), dpi=DPI)
    grid = fig.add_gridspec(
        2 * rows, columns, height_ratios=[2.4, 1.3] * rows, hspace=0.3, wspace=0.15,
        left=0.02, right=0.98, top=0.95, bottom=0.04,
    )  # fmt: skip
    for i in range(n):
        r, c = divmod(i, columns)
        image_ax = fig.add_subplot(grid[2 * r, c])
        image_ax.imshow(images[i])
        image_ax.set_axis_off()
        image_ax.set_title(class_label(texts, labels[i]), fontsize=9)
        _top5_bars(fig.add_subplot(grid[2 * r + 1, c]), top_indices[i], top_probabilities[i],
                   int(labels[i]), texts)  # fmt: skip
    return fig


def _top5_bars(ax, indices, probabilities, label: int, texts: Sequence[str]) -> None:
    """Five horizontal bars, best on top; the true class's bar is red, with its probability."""
    y = np.arange(len(indices))[::-1]
    colors = [TRUE_COLOR if int(k) == label else BAR_COLOR for k in indices]
    ax.barh(y, probabilities, color=colors, height=0.8)
    for yy, k, p in zip(y, indices, probabilities, strict=True):
        ax.text(0.01, yy, f"{class_label(texts, k)}  {float(p):.2f}", va="center", fontsize=8,
                fontweight="bold" if int(k) == label else "normal")  # fmt: skip
    ax.set_xlim(0, 1)
    ax.set_yticks([])
    ax.tick_params(axis="x", labelsize=7)


def retrieval_figure(
    queries: np.ndarray,
    query_labels: Sequence[int],
    neighbours: np.ndarray,
    neighbour_labels: np.ndarray,
    distances: np.ndarray,
    texts: Sequence[str],
) -> Figure:
    """Figure 4 (right): each row a validation image, then its nearest training images by fc7.

    Args:
        queries: (q, h, w, 3) uint8.
        query_labels: (q,) their classes.
        neighbours: (q, k, h, w, 3) uint8, nearest first.
        neighbour_labels: (q, k) their classes.
        distances: (q, k) Euclidean fc7 distances.
        texts: class texts of the manifest, in label order.
    """
    q, k = neighbours.shape[:2]
    fig = Figure(figsize=(1.7 * (k + 1) + 0.3, 1.95 * q + 0.4), dpi=DPI)
    axes = fig.subplots(q, k + 1, squeeze=False)
    for r in range(q):
        _image_cell(axes[r, 0], queries[r], f"query:\n{class_label(texts, query_labels[r])}")
        axes[r, 0].title.set_fontweight("bold")
        for c in range(k):
            text = f"{class_label(texts, neighbour_labels[r, c])}\nd = {distances[r, c]:.3g}"
            color = "black" if neighbour_labels[r, c] == query_labels[r] else TRUE_COLOR
            _image_cell(axes[r, c + 1], neighbours[r, c], text, color)
    fig.suptitle("nearest training images by fc7 distance (red: another class)", fontsize=10)
    fig.tight_layout()
    return fig


def _image_cell(ax, image: np.ndarray, title: str, color: str = "black") -> None:
    ax.imshow(image)
    ax.set_title(title, fontsize=7, color=color)
    ax.set_axis_off()


def figure_texts(fig: Figure) -> list[str]:
    """Every string drawn in a figure (titles, labels, annotations), in drawing order."""
    return [t.get_text() for t in fig.findobj(lambda a: hasattr(a, "get_text")) if t.get_text()]


def figure_pixels(fig: Figure) -> np.ndarray:
    """The figure rendered by Agg as a uint8 (height, width, 3) array."""
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()


def save_figure(fig: Figure, path: str) -> str:
    """Writes the figure as a PNG atomically (nothing half-written at `path`); returns `path`."""
    FigureCanvasAgg(fig)
    with atomic.temporary_path(path, ".png") as tmp:
        fig.savefig(tmp, format="png", dpi=DPI)
    return path


def first_examples(batches, count: int) -> tuple[np.ndarray, np.ndarray]:
    """The first `count` unmasked (image, label) pairs of (images, labels, mask) batches."""
    images, labels = [], []
    for batch_images, batch_labels, mask in batches:
        mask = np.asarray(mask, bool)
        images.extend(np.asarray(batch_images)[mask])
        labels.extend(np.asarray(batch_labels)[mask])
        if len(images) >= count:
            break
    return np.asarray(images[:count]), np.asarray(labels[:count], np.int64)


def write_figures(
    checkpoint: str,
    output_dir: str,
    *,
    data_dir: str | None = None,
    num_images: int = 8,
    columns: int = 4,
    step: int | None = None,
    summary_dir: str | None = None,
    log=print,
) -> dict[str, str]:
    """Writes the conv1 filters (figure 3), their numbers and top-5 guesses (figure 4, left).

    Args:
        checkpoint: a training WORKDIR, `ckpt-N` prefix or exported SavedModel.
        output_dir: where conv1_kernels.png, conv1_stats.json and top5.png go.
        data_dir: data whose validation images are shown; by default the run's own. Not
            needed for the filters alone (`num_images=0`).
        num_images: validation images in the top-5 figure (0: no such figure).
        columns: panels per row of the top-5 figure.
        step: TensorBoard step; by default the checkpoint's.
        summary_dir: where the TensorBoard images (`figures/...`) go; default `output_dir`.
        log: progress lines (and the conv1 numbers) go here.

    Returns:
        {"conv1_kernels": path, "conv1_stats": path, "top5": path (if drawn)}.
    """
    from alexnet_tf.data.manifest import load_manifest
    from alexnet_tf.results.trained_models import load_source, resolve_data_dir

    if num_images > 0 or data_dir:
        manifest = load_manifest(resolve_data_dir(checkpoint, data_dir))
    else:
        manifest = None  # the filters alone need no data
    source = load_source(checkpoint, manifest)
    step = source.step if step is None else step
    kernels = source.conv1_kernels()
    stats = conv1_stats(kernels)
    log(format_stats(stats))
    paths = {"conv1_stats": os.path.join(output_dir, "conv1_stats.json")}
    atomic.write_json(paths["conv1_stats"], {"step": step, **stats})
    pictures = {"conv1_kernels": filters_figure(kernels, stats, _two_devices(source))}
    if num_images > 0:
        images, labels = _validation_images(manifest, num_images)
        probabilities = source.predict(images)["predictions"]
        top = np.argsort(-probabilities, axis=-1, kind="stable")[:, :5]
        pictures["top5"] = top5_figure(
            images, top, np.take_along_axis(probabilities, top, -1), labels, source.texts,
            columns=columns,
        )  # fmt: skip
    writer = tf.summary.create_file_writer(summary_dir or output_dir)
    with writer.as_default():
        for name, fig in pictures.items():
            paths[name] = save_figure(fig, os.path.join(output_dir, f"{name}.png"))
            tf.summary.image(f"figures/{name}", figure_pixels(fig)[None], step=step)
            log(f"visualize: wrote {paths[name]}")
    writer.close()
    return paths


def _two_devices(source) -> bool:
    """Whether the training run of `source` placed its towers on two devices."""
    from alexnet_tf.runs.checkpoints import recorded_flags

    prefix = getattr(source, "prefix", None)  # a checkpoint's; a SavedModel records no placement
    if prefix is None:
        return False
    workdir = os.path.dirname(os.path.dirname(os.path.abspath(prefix)))
    return recorded_flags(workdir).get("placement") == "two_towers"


def _validation_images(manifest, count: int) -> tuple[np.ndarray, np.ndarray]:
    from alexnet_tf.data.input_pipeline import input_errors, make_eval_dataset

    split = manifest.split("validation")
    dataset = make_eval_dataset(
        split.files, min(count, 32), label_offset=manifest.label_offset,
        num_classes=manifest.num_classes,
    )  # fmt: skip
    with input_errors(split.files):
        return first_examples(dataset.as_numpy_iterator(), count)
