"""DevicePrefetcher: the copy stage (n+1) of the paper's overlap, and exact resume through it.

The batches are the demo shards' real digit images. Two distinct devices are tested in
tests/test_train_distributed.py (logical CPUs must be configured before TensorFlow starts).
"""

import contextlib
import threading

import numpy as np
import pytest
import tensorflow as tf

from alexnet_tf.data import input_pipeline
from alexnet_tf.data.manifest import load_manifest
from alexnet_tf.training import device_prefetch
from alexnet_tf.training.device_prefetch import DevicePrefetcher


def _train_dataset(data_dir, batch_size=3):
    files = load_manifest(data_dir).split("train").files
    return input_pipeline.make_train_dataset(
        files, batch_size, seed=5, deterministic=True, shuffle_buffer=8
    )


def _arrays(element):
    return [t.numpy() for t in tf.nest.flatten(element)]


def _assert_same(got, expected):
    assert len(got) == len(expected)
    for a, b in zip(got, expected, strict=True):
        for x, y in zip(_arrays(a), _arrays(b), strict=True):
            np.testing.assert_array_equal(x, y)


@pytest.mark.parametrize("depth", [0, 1, 3])
def test_yields_the_iterators_stream_on_the_device(tools_data_dir, depth):
    expected = list(_train_dataset(tools_data_dir).take(5))
    prefetcher = DevicePrefetcher(iter(_train_dataset(tools_data_dir)), ["/CPU:0"], depth)
    with contextlib.closing(prefetcher):
        got = [next(prefetcher) for _ in range(5)]
    assert all(len(parts) == 1 for parts in got)
    assert all(t.device.endswith("CPU:0") for parts in got for t in tf.nest.flatten(parts))
    _assert_same([parts[0] for parts in got], expected)


@pytest.mark.parametrize("depth", [0, 2])
def test_a_finite_stream_ends_after_its_last_batch(tools_data_dir, depth):
    files = load_manifest(tools_data_dir).split("validation").files
    dataset = input_pipeline.make_eval_dataset(files, 4)  # 6 records: 2 batches, one padded
    with contextlib.closing(DevicePrefetcher(iter(dataset), ["/CPU:0"], depth)) as prefetcher:
        got = [parts[0] for parts in prefetcher]
        with pytest.raises(StopIteration):
            next(prefetcher)
    _assert_same(got, list(dataset))


def test_batches_are_split_evenly_over_the_devices(tools_data_dir):
    expected = next(iter(_train_dataset(tools_data_dir, 4)))
    prefetcher = DevicePrefetcher(iter(_train_dataset(tools_data_dir, 4)), ["/CPU:0"] * 2, 1)
    with contextlib.closing(prefetcher):
        parts = next(prefetcher)
    assert [int(images.shape[0]) for images, _ in parts] == [2, 2]
    joined = [tf.concat(pieces, 0) for pieces in zip(*parts, strict=True)]
    _assert_same([joined], [expected])

    uneven = DevicePrefetcher(iter(_train_dataset(tools_data_dir, 3)), ["/CPU:0"] * 2, 0)
    with pytest.raises(ValueError, match="batch of 3 examples does not split evenly over 2"):
        next(uneven)


def test_the_next_batch_is_copied_while_the_step_runs(tools_data_dir, monkeypatch):
    copy_started = [threading.Event() for _ in range(8)]
    threads = []
    real_copy = device_prefetch.copy_to_devices

    def recording_copy(element, devices):
        threads.append(threading.current_thread().name)
        copy_started[len(threads) - 1].set()  # one copier thread: the k-th call is batch k
        return real_copy(element, devices)

    monkeypatch.setattr(device_prefetch, "copy_to_devices", recording_copy)
    prefetcher = DevicePrefetcher(iter(_train_dataset(tools_data_dir)), ["/CPU:0"], depth=2)
    with contextlib.closing(prefetcher):
        next(prefetcher)  # batch 0: "step 0" runs from here on, with no further call
        assert copy_started[1].wait(60) and copy_started[2].wait(60)  # batches 1 and 2
        assert not copy_started[3].is_set()  # no more than `depth` ahead
        next(prefetcher)
        assert copy_started[3].wait(60)
    assert all(name.startswith("device-prefetch") for name in threads)


@pytest.mark.parametrize(
    "depth_saved, depth_restored, started",
    [(2, 0, False), (1, 3, False), (2, 2, True)],
    ids=["deeper-to-none", "shallower-to-deeper", "restored-while-running"],
)
def test_a_checkpoint_resumes_the_exact_stream(
    tools_data_dir, tmp_path, depth_saved, depth_restored, started
):
    iterator = iter(_train_dataset(tools_data_dir))
    prefetcher = DevicePrefetcher(iterator, ["/CPU:0"], depth_saved)
    for _ in range(2):
        next(prefetcher)
    path = tf.train.Checkpoint(iterator=iterator, prefetched=prefetcher).save(
        str(tmp_path / "ckpt")
    )
    # 7 batches of 3 from 12 images: the stream crosses an epoch boundary after the restore.
    expected = [next(prefetcher)[0] for _ in range(7)]
    prefetcher.close()

    iterator = iter(_train_dataset(tools_data_dir))
    resumed = DevicePrefetcher(iterator, ["/CPU:0"], depth_restored)
    if started:  # a prefetcher already holding batches drops them for the restored ones
        next(resumed)
    checkpoint = tf.train.Checkpoint(iterator=iterator, prefetched=resumed)
    checkpoint.restore(path).assert_consumed()
    with contextlib.closing(resumed):
        _assert_same([next(resumed)[0] for _ in range(7)], expected)


def test_bad_arguments_are_named():
    dataset = tf.data.Dataset.range(4)
    with pytest.raises(ValueError, match="depth must be >= 0; received -1"):
        DevicePrefetcher(iter(dataset), ["/CPU:0"], -1)
    with pytest.raises(ValueError, match="devices must name at least one device"):
        DevicePrefetcher(iter(dataset), [], 1)
