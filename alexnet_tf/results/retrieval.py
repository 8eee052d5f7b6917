"""Image retrieval by the 4096-d last hidden layer (section 6.1 and figure 4, right).

"If two images produce feature activation vectors with a small Euclidean separation, we can say
that the higher levels of the neural network consider them to be similar." The features of the
query set (validation) and of the database (training) are streamed to `.npy` files on disk in
chunks, then the k nearest database vectors of every query are found block by block, so memory
is bounded by `max_memory_bytes`, not by the size of the training set.

    python -m alexnet_tf.retrieve --workdir=runs/demo --num_queries=8 --k=6
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable

import numpy as np

from alexnet_tf.files import atomic

FEATURE_DTYPE = np.float32


def extract_features(
    batches: Iterable,
    feature_fn: Callable[[np.ndarray], np.ndarray],
    path: str,
    num_examples: int,
    *,
    dim: int = 4096,
    log: Callable[[str], None] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Streams the features of every unmasked example to `path` (.npy), batch by batch.

    Args:
        batches: (images uint8 (B, 227, 227, 3), labels (B,), mask (B,)) batches, in a fixed
            order; example i of the file is the i-th unmasked example.
        feature_fn: images → (B, dim) features.
        path: the .npy file to write; `<path minus .npy>_labels.npy` gets the labels. Both are
            written under temporary names and renamed when complete.
        num_examples: how many unmasked examples `batches` holds.
        dim: feature size.
        log: progress lines go here.

    Returns:
        (features opened read-only as a memory map (num_examples, dim), labels (num_examples,)).
    """
    labels = np.zeros(num_examples, np.int64)
    count, every = 0, max(1, num_examples // 10)
    # The labels are renamed into place first, the features last: a complete feature file
    # always has its labels beside it.
    with atomic.temporary_path(path, suffix=".npy") as tmp:
        features = np.lib.format.open_memmap(tmp, "w+", FEATURE_DTYPE, (num_examples, dim))
        for images, batch_labels, mask in batches:
            mask = np.asarray(mask, bool)
            if not mask.any():
                continue
            values = np.asarray(feature_fn(np.asarray(images)[mask]), FEATURE_DTYPE)
            n = values.shape[0]
            if count + n > num_examples:
                raise ValueError(f"more than the expected {num_examples} examples")
            features[count : count + n] = values
            labels[count : count + n] = np.asarray(batch_labels)[mask]
            count += n
            if log and (count // every != (count - n) // every or count == num_examples):
                log(f"features: {count}/{num_examples} → {path}")
        if count != num_examples:
            raise ValueError(f"{count} examples were read but {num_examples} were expected")
        features.flush()
        del features
        with atomic.temporary_path(labels_path_for(path), suffix=".npy") as labels_tmp:
            np.save(labels_tmp, labels)
    return np.load(path, mmap_mode="r"), labels


def labels_path_for(path: str) -> str:
    return (path[:-4] if path.endswith(".npy") else path) + "_labels.npy"


def block_sizes(num_queries: int, num_database: int, dim: int, k: int, max_memory_bytes: int):
    """Query-block and database-chunk sizes whose working set fits in `max_memory_bytes`.

    The working set is one block of queries, one chunk of database vectors, their distance matrix
    with the selection indices, and the running best candidates:
    4·qb·dim + 4·c·dim + 16·qb·c + 24·qb·cand bytes.
    """
    candidates = min(num_database, 2 * k + 8)
    qb = max(1, min(num_queries, 256))
    while True:
        fixed = 4 * qb * dim + 24 * qb * candidates
        chunk = (max_memory_bytes - fixed) // (4 * dim + 16 * qb)
        if chunk >= max(k, 1) or qb == 1:
            break
        qb = max(1, qb // 2)
    if chunk < 1:
        raise ValueError(
            f"max_memory_bytes={max_memory_bytes} is too small for {dim}-d features "
            f"(at least {fixed + 4 * dim + 16 * qb} bytes are needed)"
        )
    return qb, int(min(chunk, num_database)), candidates


def nearest_neighbours(
    queries: np.ndarray,
    database: np.ndarray,
    k: int,
    *,
    max_memory_bytes: int = 1 << 30,
    log: Callable[[str], None] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The k nearest database rows of every query row by Euclidean distance.

    The database may be a memory map far larger than memory: it is read in chunks. Candidates are
    chosen with ‖q‖² − 2q·d + ‖d‖² (fast, one matrix product per chunk), then the best are
    re-ranked by the exact ‖q − d‖ in float64, so an image queried against itself is at 0.

    Args:
        queries: (Q, D) float.
        database: (N, D) float, possibly a read-only memory map.
        k: neighbours per query (at most N).
        max_memory_bytes: bound on the working memory of the search.
        log: progress lines go here.

    Returns:
        (indices (Q, k) int64 into the database, distances (Q, k) float32), nearest first.
    """
    num_queries, dim = queries.shape
    num_database = database.shape[0]
    if database.shape[1] != dim:
        raise ValueError(f"queries have {dim} features but the database has {database.shape[1]}")
    if not 1 <= k <= num_database:
        raise ValueError(f"k must be in [1, {num_database}] (the database size); received {k}")
    qb, chunk, candidates = block_sizes(num_queries, num_database, dim, k, max_memory_bytes)
    out_indices = np.zeros((num_queries, k), np.int64)
    out_distances = np.zeros((num_queries, k), np.float32)
    for q0 in range(0, num_queries, qb):
        q = np.asarray(queries[q0 : q0 + qb], np.float32)
        q_norms = np.einsum("ij,ij->i", q, q)
        best_d = np.full((q.shape[0], candidates), np.inf, np.float32)
        best_i = np.full((q.shape[0], candidates), -1, np.int64)
        for d0 in range(0, num_database, chunk):
            d = np.asarray(database[d0 : d0 + chunk], np.float32)
            squared = q @ d.T
            squared *= -2.0
            squared += q_norms[:, None]
            squared += np.einsum("ij,ij->i", d, d)[None, :]
            ids = np.arange(d0, d0 + d.shape[0])
            if squared.shape[1] > candidates:
                part = np.argpartition(squared, candidates - 1, axis=1)[:, :candidates]
                squared, ids = np.take_along_axis(squared, part, axis=1), ids[part]
            else:
                ids = np.broadcast_to(ids, squared.shape)
            merged_d = np.concatenate([best_d, squared], axis=1)
            merged_i = np.concatenate([best_i, ids], axis=1)
            keep = np.argpartition(merged_d, candidates - 1, axis=1)[:, :candidates]
            best_d = np.take_along_axis(merged_d, keep, axis=1)
            best_i = np.take_along_axis(merged_i, keep, axis=1)
        # Exact re-ranking of each query's few candidates, in float64.
        exact = np.full(best_i.shape, np.inf)
        for r in range(q.shape[0]):
            found = np.flatnonzero(best_i[r] >= 0)
            rows = np.asarray(database[best_i[r, found]], np.float64)
            exact[r, found] = np.sqrt(np.square(rows - q[r].astype(np.float64)).sum(axis=1))
        order = np.lexsort((best_i, exact), axis=1)[:, :k]
        out_indices[q0 : q0 + qb] = np.take_along_axis(best_i, order, axis=1)
        out_distances[q0 : q0 + qb] = np.take_along_axis(exact, order, axis=1)
        if log:
            log(f"search: {min(q0 + qb, num_queries)}/{num_queries} queries")
    return out_indices, out_distances


def limited(batches: Iterable, count: int | None) -> Iterable:
    """The batches holding the first `count` unmasked examples, rows past them masked out."""
    seen = 0
    for images, labels, mask in batches:
        if count is not None and seen >= count:
            return
        mask = np.asarray(mask, bool).copy()
        keep = np.cumsum(mask) + seen <= (count if count is not None else np.inf)
        mask &= keep
        seen += int(mask.sum())
        yield images, labels, mask


def fetch_images(batches: Iterable, indices: Iterable[int]) -> dict[int, np.ndarray]:
    """The images at the given example indices (unmasked order), stopping after the last one.

    This re-reads the split up to the largest index; the dataset must yield the same order as
    when the features were extracted (evaluation datasets are deterministic).
    """
    wanted = set(int(i) for i in indices)
    found, seen = {}, 0
    last = max(wanted, default=-1)
    for images, _, mask in batches:
        if seen > last:
            break
        for row in np.flatnonzero(np.asarray(mask, bool)):
            if seen in wanted:
                found[seen] = np.asarray(images[row])
            seen += 1
    missing = wanted - found.keys()
    if missing:
        raise ValueError(f"examples {sorted(missing)[:5]} are past the end of the data")
    return found


def retrieve(
    checkpoint: str,
    output_dir: str,
    *,
    data_dir: str | None = None,
    num_queries: int = 8,
    max_database: int = 0,
    k: int = 6,
    batch_size: int = 32,
    max_memory_bytes: int = 1 << 30,
    figure_queries: int = 8,
    log: Callable[[str], None] = print,
) -> dict:
    """Finds the k nearest training images of validation images by fc7 distance (figure 4).

    Args:
        checkpoint: a training WORKDIR, `ckpt-N` prefix or exported SavedModel.
        output_dir: receives validation_fc7.npy, train_fc7.npy (and their _labels.npy),
            neighbours.json and retrieval.png.
        data_dir: the data; by default the training run's own.
        num_queries: validation images to query with (0: all of them).
        max_database: training images to search (0: all of them).
        k: neighbours per query.
        batch_size: images per forward pass.
        max_memory_bytes: bound on the working memory of the search.
        figure_queries: rows of retrieval.png.
        log: progress lines go here.

    Returns:
        The content of neighbours.json.
    """
    from alexnet_tf.data.input_pipeline import input_errors, make_eval_dataset
    from alexnet_tf.data.manifest import load_manifest
    from alexnet_tf.results import figures
    from alexnet_tf.results.trained_models import load_source, resolve_data_dir

    manifest = load_manifest(resolve_data_dir(checkpoint, data_dir))
    source = load_source(checkpoint, manifest)
    splits = {"validation": (manifest.split("validation"), num_queries),
              "train": (manifest.split("train"), max_database)}  # fmt: skip

    def batches(split_name):
        split, limit = splits[split_name]
        dataset = make_eval_dataset(split.files, batch_size, label_offset=manifest.label_offset,
                                    num_classes=manifest.num_classes)  # fmt: skip
        return limited(dataset.as_numpy_iterator(), limit or None)

    features = {}
    for name, (split, limit) in splits.items():
        count = min(limit, split.num_examples) if limit else split.num_examples
        path = os.path.join(output_dir, f"{name}_fc7.npy")
        with input_errors(split.files):
            features[name] = extract_features(
                batches(name), lambda x: source.predict(x)["fc7"], path, count, log=log
            )
    (queries, query_labels), (database, database_labels) = features["validation"], features["train"]
    indices, distances = nearest_neighbours(
        queries, database, min(k, database.shape[0]), max_memory_bytes=max_memory_bytes, log=log
    )
    result = {
        "checkpoint": source.name,
        "k": int(indices.shape[1]),
        "num_queries": int(queries.shape[0]),
        "database_size": int(database.shape[0]),
        "queries": [
            {
                "index": q,
                "label": int(query_labels[q]),
                "wnid": source.wnids[int(query_labels[q])],
                "neighbours": [int(i) for i in indices[q]],
                "distances": [float(d) for d in distances[q]],
                "neighbour_labels": [int(database_labels[i]) for i in indices[q]],
            }
            for q in range(queries.shape[0])
        ],
    }
    json_path = os.path.join(output_dir, "neighbours.json")
    atomic.write_json(json_path, result)
    log(f"retrieve: wrote {json_path}")
    shown = min(figure_queries, queries.shape[0])
    if shown > 0:
        with input_errors(splits["validation"][0].files):
            query_images = fetch_images(batches("validation"), range(shown))
        with input_errors(splits["train"][0].files):
            found = fetch_images(batches("train"), indices[:shown].ravel())
        rows = indices[:shown]
        fig = figures.retrieval_figure(
            np.stack([query_images[q] for q in range(shown)]), query_labels[:shown],
            np.stack([[found[int(i)] for i in row] for row in rows]), database_labels[rows],
            distances[:shown], source.texts,
        )  # fmt: skip
        png = figures.save_figure(fig, os.path.join(output_dir, "retrieval.png"))
        log(f"retrieve: wrote {png}")
    return result
