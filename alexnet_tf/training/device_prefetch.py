"""Stage n+1 of the paper's overlap: batches are copied to the accelerator while a step runs.

The paper's implementation overlaps four stages: load batch n+3 from disk, transform n+2 on the
CPU, copy n+1 to the GPU, train on n. `input_pipeline.make_train_dataset` does the first two on
the host; `DevicePrefetcher` does the third:

    prefetcher = DevicePrefetcher(iter(dataset), ["/GPU:0"], depth=2)
    for (images, labels), in prefetcher:   # one (images, labels) per device, already there
        train_step(images, labels)

The main thread takes host batches from the tf.data iterator (cheap: tf.data has them ready) and
one background thread copies each to its device(s), `depth` batches ahead of the step. The copy
(`tf.identity` under `tf.device`) releases the GIL, and on a GPU it runs on the host-to-device
stream beside the step's kernels. With several devices (the local replicas of
`tf.distribute`) each batch is split along its first axis and slice i goes to device i.

Why not `tf.data.experimental.prefetch_to_device`: its iterator cannot be checkpointed
(`UnimplementedError: GeneratorDataset does not support checkpointing`, TF 2.21), and exact resume
matters more. Here only the main thread advances the iterator, so when a checkpoint is written the
iterator stands just after the batches the prefetcher holds; the prefetcher is itself
checkpointable (`tf.train.experimental.PythonState`) and saves the host copies of those batches.
A restored prefetcher hands them out first, so a resumed run sees the stream an uninterrupted run
would have seen, whatever `depth` either of them used. Save the iterator and the prefetcher in
the same checkpoint.
"""

from __future__ import annotations

import collections
import concurrent.futures
from collections.abc import Iterator, Sequence
from typing import Any

import tensorflow as tf

__all__ = ["DevicePrefetcher", "copy_to_devices"]


def copy_to_devices(element: Any, devices: Sequence[str]) -> list:
    """Splits a batch (a structure of tensors) into len(devices) parts and copies part i to
    devices[i]; returns the list of parts.

    Raises:
        ValueError: the batch does not split evenly over the devices.
    """
    if len(devices) == 1:
        parts = [element]
    else:
        batch = int(tf.nest.flatten(element)[0].shape[0])
        if batch % len(devices):
            raise ValueError(
                f"a batch of {batch} examples does not split evenly over {len(devices)} devices"
            )
        pieces = [tf.split(t, len(devices)) for t in tf.nest.flatten(element)]
        parts = [tf.nest.pack_sequence_as(element, leaves) for leaves in zip(*pieces)]
    copies = []
    for device, part in zip(devices, parts, strict=True):
        with tf.device(device):
            copies.append(tf.nest.map_structure(tf.identity, part))
    return copies


class DevicePrefetcher(tf.train.experimental.PythonState, Iterator):
    """Iterates over `iterator`'s batches, each copied to `devices` ahead of its use.

    Args:
        iterator: a tf.data iterator (or any iterator of tensor structures with `element_spec`).
        devices: where the parts of each batch go (e.g. the local replicas' devices); the batch
            is split evenly along its first axis over them.
        depth: how many batches are copied ahead of the one returned. 0 copies on demand, in the
            calling thread.

    `next()` returns a list with one part per device. It raises what the iterator raises (its
    errors surface in the calling thread), and StopIteration once a finite iterator is drained.
    """

    def __init__(self, iterator: Iterator, devices: Sequence[str], depth: int = 2):
        if depth < 0:
            raise ValueError(f"depth must be >= 0; received {depth}")
        if not devices:
            raise ValueError("devices must name at least one device")
        self._iterator = iterator
        self._spec = iterator.element_spec
        self._devices = list(devices)
        self._depth = depth
        # (host batch, future of its device copies); the host batch is kept for saving.
        self._buffer: collections.deque = collections.deque()
        self._exhausted = False
        self._copier = None
        if depth:
            self._copier = concurrent.futures.ThreadPoolExecutor(1, "device-prefetch")

    @property
    def devices(self) -> list[str]:
        return list(self._devices)

    def __next__(self) -> list:
        while not self._exhausted and len(self._buffer) < self._depth + 1:
            try:
                host = next(self._iterator)
            except StopIteration:
                self._exhausted = True
                break
            self._buffer.append((host, self._start_copy(host)))
        if not self._buffer:
            raise StopIteration
        _, copies = self._buffer.popleft()
        return copies.result()

    def _start_copy(self, host) -> concurrent.futures.Future:
        if self._copier is None:
            done = concurrent.futures.Future()
            done.set_result(copy_to_devices(host, self._devices))
            return done
        return self._copier.submit(copy_to_devices, host, self._devices)

    def close(self) -> None:
        """Stops the copying thread (waiting for a copy in progress)."""
        if self._copier is not None:
            self._copier.shutdown(wait=True, cancel_futures=True)
            self._copier = None
            self._depth = 0

    # ------------------------------------------------------------------ checkpointing
    def serialize(self) -> bytes:
        """The host copies of the buffered batches (PythonState: called by checkpoint saves)."""
        leaves = [
            tf.io.serialize_tensor(leaf).numpy()
            for host, _ in self._buffer
            for leaf in tf.nest.flatten(host)
        ]
        return tf.io.serialize_tensor(tf.constant(leaves, tf.string, [len(leaves)])).numpy()

    def deserialize(self, string_value: bytes) -> None:
        """Replaces the buffer with the saved batches (PythonState: called by restores)."""
        leaves = tf.io.parse_tensor(string_value, tf.string).numpy()
        specs = tf.nest.flatten(self._spec)
        if len(leaves) % len(specs):
            raise ValueError(
                f"the checkpoint's prefetched batches hold {len(leaves)} tensors, not a multiple "
                f"of the {len(specs)} of this input's elements: it belongs to another input"
            )
        for _, copies in self._buffer:
            copies.cancel()
        self._buffer.clear()
        for start in range(0, len(leaves), len(specs)):
            parsed = [
                tf.io.parse_tensor(leaves[start + i], spec.dtype) for i, spec in enumerate(specs)
            ]
            host = tf.nest.pack_sequence_as(self._spec, parsed)
            self._buffer.append((host, self._start_copy(host)))
        self._exhausted = False
