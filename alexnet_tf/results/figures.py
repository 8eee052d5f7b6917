"""The paper's pictures as PNGs: conv1 filters (figure 3), top-5 guesses and retrieval (figure 4).

Everything is drawn into uint8 numpy arrays and encoded with `tf.io.encode_png`. Only the label
text needs a font: it comes from Pillow's built-in font (Pillow is already installed as a
requirement of TensorBoard), used for nothing but rasterizing the strings.

    python -m alexnet_tf.visualize --workdir=runs/demo     # writes WORKDIR/figures/*.png
"""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence

import numpy as np
import tensorflow as tf

KERNEL_SCALE = 4  # each 11×11 kernel drawn 4× larger, so that a person can see it
BORDER = 1
BORDER_VALUE = 255  # white lines between tiles
BACKGROUND = (255, 255, 255)
BAR_COLOR = (70, 110, 200)  # a blue bar for a wrong guess
TRUE_COLOR = (220, 40, 40)  # figure 4: "the probability assigned to the correct label ... red bar"
TEXT_COLOR = (0, 0, 0)


def kernel_grid(
    kernels: np.ndarray,
    *,
    towers: int = 2,
    columns: int = 16,
    scale: int = KERNEL_SCALE,
    border: int = BORDER,
) -> np.ndarray:
    """Lays out conv1 kernels as one RGB image, like figure 3 of the paper.

    Args:
        kernels: (height, width, 3, n) float array, the first tower's n/towers kernels first (as
            returned by `model.conv1_kernels`).
        towers: number of towers; tower t's kernels fill their own block of rows, below tower t-1.
        columns: tiles per row.
        scale: each kernel pixel becomes a scale×scale square.
        border: width of the white lines around every tile.

    Returns:
        uint8 (rows·(h·scale+border)+border, columns·(w·scale+border)+border, 3), each kernel
        linearly scaled on its own to the full 0–255 range.
    """
    kernels = np.asarray(kernels, np.float32)
    if kernels.ndim != 4 or kernels.shape[2] != 3:
        raise ValueError(f"kernels must be (height, width, 3, n); received {kernels.shape}")
    n = kernels.shape[-1]
    if n % towers:
        raise ValueError(f"{n} kernels can't be split evenly into {towers} towers")
    per_tower = n // towers
    rows_per_tower = -(-per_tower // columns)
    tiles = [_scale_to_uint8(kernels[..., i]) for i in range(n)]
    tiles = [np.kron(t, np.ones((scale, scale, 1), np.uint8)) for t in tiles]
    places = [
        (tower * rows_per_tower + j // columns, j % columns)
        for tower in range(towers)
        for j in range(per_tower)
    ]
    return tile_images(tiles, places, towers * rows_per_tower, columns, border, BORDER_VALUE)


def _scale_to_uint8(x: np.ndarray) -> np.ndarray:
    lo, hi = float(x.min()), float(x.max())
    if hi <= lo:
        return np.full(x.shape, 128, np.uint8)
    return np.round((x - lo) * (255.0 / (hi - lo))).astype(np.uint8)


def tile_images(
    tiles: Sequence[np.ndarray],
    places: Sequence[tuple[int, int]],
    rows: int,
    columns: int,
    border: int,
    border_value: int = BORDER_VALUE,
) -> np.ndarray:
    """Puts equally sized uint8 tiles at (row, column) places of a grid with `border` lines."""
    th, tw = tiles[0].shape[:2]
    grid = np.full(
        (rows * (th + border) + border, columns * (tw + border) + border, 3),
        border_value,
        np.uint8,
    )
    for tile, (r, c) in zip(tiles, places, strict=True):
        y, x = border + r * (th + border), border + c * (tw + border)
        grid[y : y + th, x : x + tw] = tile
    return grid


def resize_uint8(image: np.ndarray, size: int) -> np.ndarray:
    """Resizes an (h, w, 3) uint8 image to size×size (area averaging when shrinking)."""
    resized = tf.image.resize(tf.cast(image, tf.float32), [size, size], antialias=True)
    return np.clip(np.round(resized.numpy()), 0, 255).astype(np.uint8)


@functools.cache
def _font():
    from PIL import ImageFont

    return ImageFont.load_default()


def draw_text(canvas: np.ndarray, text: str, y: int, x: int, color=TEXT_COLOR) -> None:
    """Draws one line of text into `canvas` (uint8 HxWx3) at (y, x), clipped to the canvas."""
    if not text:
        return
    mask = _font().getmask(text, mode="L")
    w, h = mask.size
    alpha = np.asarray(mask, np.float32).reshape(h, w)[..., None] / 255.0
    h = min(h, canvas.shape[0] - y)
    w = min(w, canvas.shape[1] - x)
    if h <= 0 or w <= 0:
        return
    region = canvas[y : y + h, x : x + w].astype(np.float32)
    blended = region * (1 - alpha[:h, :w]) + np.asarray(color, np.float32) * alpha[:h, :w]
    canvas[y : y + h, x : x + w] = np.round(blended).astype(np.uint8)


def text_width(text: str) -> int:
    return _font().getmask(text, mode="L").size[0] if text else 0


def fit_text(text: str, width: int) -> str:
    """Shortens `text` (first synonym, then an ellipsis) until it fits in `width` pixels."""
    text = text.split(",")[0].strip()
    while text and text_width(text) > width:
        text = text[:-2] + "…" if len(text) > 2 else ""
    return text


def top5_panel(
    image: np.ndarray,
    top_indices: Sequence[int],
    top_probabilities: Sequence[float],
    label: int,
    texts: Sequence[str],
    *,
    image_size: int = 160,
    width: int = 200,
    line: int = 14,
) -> np.ndarray:
    """One cell of figure 4 (left): the image, its true label, and five bars for the top 5.

    The bar of the true label, if it is among the five, is red; the others are blue.
    """
    height = image_size + 4 + line * (1 + len(top_indices)) + 4
    panel = np.full((height, width, 3), BACKGROUND, np.uint8)
    x0 = (width - image_size) // 2
    panel[2 : 2 + image_size, x0 : x0 + image_size] = resize_uint8(image, image_size)
    y = 4 + image_size
    draw_text(panel, fit_text(texts[label], width - 4), y + 1, 2)
    for index, p in zip(top_indices, top_probabilities, strict=True):
        y += line
        color = TRUE_COLOR if int(index) == int(label) else BAR_COLOR
        bar = int(round(float(np.clip(p, 0.0, 1.0)) * (width - 4)))
        panel[y + 1 : y + line - 1, 2 : 2 + bar] = np.asarray(color, np.uint8) // 2 + 127
        draw_text(panel, fit_text(texts[int(index)], width - 6), y + 1, 4)
    return panel


def top5_figure(
    images: np.ndarray,
    top_indices: np.ndarray,
    top_probabilities: np.ndarray,
    labels: np.ndarray,
    texts: Sequence[str],
    *,
    columns: int = 4,
) -> np.ndarray:
    """Figure 4 (left): a grid of `top5_panel`s, one per image, `columns` per row."""
    panels = [
        top5_panel(img, idx, prob, lab, texts)
        for img, idx, prob, lab in zip(images, top_indices, top_probabilities, labels, strict=True)
    ]
    if not panels:
        raise ValueError("top5_figure needs at least one image")
    columns = min(columns, len(panels))
    rows = -(-len(panels) // columns)
    places = [(i // columns, i % columns) for i in range(len(panels))]
    return tile_images(panels, places, rows, columns, border=6, border_value=255)


def retrieval_grid(
    queries: np.ndarray, neighbours: np.ndarray, *, size: int = 96, gap: int = 2
) -> np.ndarray:
    """Figure 4 (right): each row is a query image, then its k nearest database images.

    Args:
        queries: (q, h, w, 3) uint8.
        neighbours: (q, k, h, w, 3) uint8, nearest first.
        size: side of each drawn image.
        gap: white space between images; the query is set off by a wider gap.
    """
    q, k = neighbours.shape[:2]
    cell = size + gap
    grid = np.full((q * cell + gap, (k + 1) * cell + 3 * gap + gap, 3), 255, np.uint8)
    for r in range(q):
        y = gap + r * cell
        grid[y : y + size, gap : gap + size] = resize_uint8(queries[r], size)
        for c in range(k):
            x = gap + (c + 1) * cell + 3 * gap
            grid[y : y + size, x : x + size] = resize_uint8(neighbours[r, c], size)
    return grid


def write_png(path: str, image: np.ndarray) -> str:
    """Encodes uint8 (h, w, 3) as PNG and writes it atomically (temporary file, then rename)."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    data = tf.io.encode_png(np.ascontiguousarray(image, np.uint8)).numpy()
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)
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
    """Writes the conv1 filters (figure 3) and top-5 guesses (figure 4, left) as PNGs.

    Args:
        checkpoint: a training WORKDIR, `ckpt-N` prefix or exported SavedModel.
        output_dir: where the PNGs go.
        data_dir: data whose validation images are shown; by default the run's own. Not
            needed for the filters alone (`num_images=0`).
        num_images: validation images in the top-5 figure (0: no such figure).
        columns: panels per row of the top-5 figure.
        step: TensorBoard step; by default the checkpoint's.
        summary_dir: where the TensorBoard images (`figures/...`) go; default `output_dir`.
        log: progress lines go here.

    Returns:
        {"conv1_kernels": path, "top5": path (if drawn)}.
    """
    from alexnet_tf.data.manifest import load_manifest
    from alexnet_tf.results.trained_models import load_source, resolve_data_dir

    if num_images > 0 or data_dir:
        manifest = load_manifest(resolve_data_dir(checkpoint, data_dir))
    else:
        manifest = None  # the filters alone need no data
    source = load_source(checkpoint, manifest)
    step = source.step if step is None else step
    paths = {"conv1_kernels": os.path.join(output_dir, "conv1_kernels.png")}
    pictures = {"conv1_kernels": kernel_grid(source.conv1_kernels())}
    if num_images > 0:
        from alexnet_tf.data.input_pipeline import input_errors, make_eval_dataset

        split = manifest.split("validation")
        dataset = make_eval_dataset(
            split.files, min(num_images, 32), label_offset=manifest.label_offset,
            num_classes=manifest.num_classes,
        )  # fmt: skip
        with input_errors(split.files):
            images, labels = first_examples(dataset.as_numpy_iterator(), num_images)
        probabilities = source.predict(images)["predictions"]
        top = np.argsort(-probabilities, axis=-1, kind="stable")[:, :5]
        pictures["top5"] = top5_figure(
            images, top, np.take_along_axis(probabilities, top, -1), labels, source.texts,
            columns=columns,
        )  # fmt: skip
        paths["top5"] = os.path.join(output_dir, "top5.png")
    writer = tf.summary.create_file_writer(summary_dir or output_dir)
    with writer.as_default():
        for name, picture in pictures.items():
            write_png(paths[name], picture)
            tf.summary.image(f"figures/{name}", picture[None], step=step)
            log(f"visualize: wrote {paths[name]} ({picture.shape[1]}×{picture.shape[0]})")
    writer.close()
    return paths
