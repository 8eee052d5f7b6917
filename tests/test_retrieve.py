"""Retrieval by fc7 distance (section 6.1, figure 4 right): streamed features, bounded search."""

import json
import pathlib

import numpy as np
import pytest
import tensorflow as tf

from alexnet_tf.data.input_pipeline import make_eval_dataset
from alexnet_tf.data.manifest import load_manifest
from alexnet_tf.results import retrieval


@pytest.fixture(scope="module")
def digits():
    """Real 64-d vectors: scikit-learn's 1,797 handwritten digit scans."""
    from sklearn.datasets import load_digits

    return load_digits().data.astype(np.float32)


def _brute_force(queries, database, k):
    distances = np.sqrt(((queries[:, None].astype(np.float64) - database[None]) ** 2).sum(-1))
    order = np.argsort(distances, axis=1, kind="stable")[:, :k]
    return order, np.take_along_axis(distances, order, axis=1)


def test_blocked_search_equals_brute_force_within_its_memory_bound(digits, tmp_path):
    path = str(tmp_path / "database.npy")
    np.save(path, digits)
    database = np.load(path, mmap_mode="r")  # searched from disk, chunk by chunk
    queries = digits[::97] + 0.5
    budget = 64 << 10
    query_block, chunk, candidates = retrieval.block_sizes(len(queries), len(digits), 64, 5, budget)
    assert chunk < len(digits)  # the database really is split
    working_set = 4 * query_block * 64 + 4 * chunk * 64 + 16 * query_block * chunk
    assert working_set + 24 * query_block * candidates <= budget
    indices, distances = retrieval.nearest_neighbours(queries, database, 5, max_memory_bytes=budget)
    want_indices, want_distances = _brute_force(queries, digits, 5)
    np.testing.assert_array_equal(indices, want_indices)
    np.testing.assert_allclose(distances, want_distances, rtol=1e-6)
    with pytest.raises(ValueError, match="too small"):
        retrieval.nearest_neighbours(queries, database, 5, max_memory_bytes=300)
    with pytest.raises(ValueError, match="k must be"):
        retrieval.nearest_neighbours(queries, database, len(digits) + 1)


def test_a_database_image_finds_itself_first_at_distance_zero(tools_source, tools_data_dir,
                                                              tmp_path):  # fmt: skip
    manifest = load_manifest(tools_data_dir)
    source = tools_source
    dataset = make_eval_dataset(manifest.split("train").files, 4, num_classes=10)
    count = manifest.split("train").num_examples
    path = str(tmp_path / "train_fc7.npy")
    features, labels = retrieval.extract_features(
        dataset.as_numpy_iterator(), lambda x: source.predict(x)["fc7"], path, count
    )
    assert features.shape == (count, 4096) and isinstance(features, np.memmap)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["train_fc7.npy", "train_fc7_labels.npy"]
    indices, distances = retrieval.nearest_neighbours(
        np.asarray(features[:5]), features, 3, max_memory_bytes=1 << 20
    )
    np.testing.assert_array_equal(indices[:, 0], np.arange(5))
    np.testing.assert_array_equal(distances[:, 0], 0.0)
    assert (distances[:, 1] > 0).all()


def test_feature_file_is_not_left_half_written(tmp_path):
    def batches():
        yield np.zeros((2, 227, 227, 3), np.uint8), np.zeros(2), np.ones(2, bool)
        raise tf.errors.DataLossError(None, None, "shard damaged")

    with pytest.raises(tf.errors.DataLossError):
        retrieval.extract_features(
            batches(), lambda x: np.ones((len(x), 8)), str(tmp_path / "f.npy"), 4, dim=8
        )
    assert list(tmp_path.iterdir()) == []


def test_retrieve_binary_writes_json_and_grid(binary_runs, tools_data_dir):
    proc = binary_runs["retrieve:ok"]  # --num_queries=3 --k=4 --batch_size=6 --max_memory_mb=1
    assert proc["code"] == 0, proc["stderr"][-3000:]
    output_dir = pathlib.Path(proc["output_dir"])
    with open(output_dir / "neighbours.json") as f:
        result = json.load(f)
    train = load_manifest(tools_data_dir).split("train").num_examples
    assert result["num_queries"] == 3 and result["k"] == 4 and result["database_size"] == train
    for query in result["queries"]:
        assert len(set(query["neighbours"])) == 4 and max(query["neighbours"]) < train
        assert query["distances"] == sorted(query["distances"])
    grid = tf.io.decode_png(tf.io.read_file(str(output_dir / "retrieval.png"))).numpy()
    # 3 rows (one per query) of 5 cells (the query, then 4 neighbours), 1.95 × 1.7 inches each.
    assert grid.shape[:2] == (round(100 * (3 * 1.95 + 0.4)), round(100 * (5 * 1.7 + 0.3)))
    assert np.load(output_dir / "validation_fc7.npy").shape == (3, 4096)
    assert np.load(output_dir / "train_fc7.npy").shape == (train, 4096)
