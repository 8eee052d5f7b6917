"""Writing shards in parallel, atomically and resumably.

One task writes one shard: it reads, repairs and encodes the images of that shard, writes the
records to a temporary name and renames the file only when it is whole, so a killed run never
leaves a partial shard under a final name. Beside each finished shard, `.convert_state/` keeps its
SHA-256, record count, the skipped/repaired files and (for training shards) the statistic sums,
together with a fingerprint of its inputs and options. Running the same command again keeps every
shard whose fingerprint and checksum match and rebuilds the rest; because the shard plan, the
record order and the JPEG encoder are deterministic, the result equals an uninterrupted run.

Workers are separate processes (started with "spawn", so a parent that already runs TensorFlow
is never forked) fed one shard at a time; they report images done through a queue for the bar.
They need no TensorFlow: records are encoded and framed by `alexnet_tf/data/records.py` (Pillow,
numpy and google-crc32c only), so a worker starts in a fraction of a second and stays small.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import multiprocessing
import os
import sys
import threading
import traceback
from collections.abc import Callable
from concurrent import futures

from alexnet_tf.convert import boxes as boxes_lib
from alexnet_tf.convert import images, sources, stats
from alexnet_tf.data import records
from alexnet_tf.files import atomic

STATE_DIR = ".convert_state"
_STATE_VERSION = 2  # 2: records carry image/original/* and checked boxes
_TICK = 8  # images per progress message from a worker

_queue = None  # the progress queue of a worker process


@dataclasses.dataclass(frozen=True)
class ShardTask:
    """Everything one worker needs to write one shard."""

    output_dir: str
    file: str  # e.g. "train-00000-of-01024"
    items: tuple[sources.Item, ...]
    synsets: tuple[str, ...]
    texts: tuple[str, ...]
    resize: int
    quality: int
    label_offset: int
    with_stats: bool

    def fingerprint(self) -> str:
        """A hash of what decides the shard's bytes: options and the inputs in order."""
        inputs = [
            (i.name, i.size, i.label, self.synsets[i.label], self.texts[i.label], i.bbox_xml)
            for i in self.items
        ]
        options = [_STATE_VERSION, self.resize, self.quality, self.label_offset, self.with_stats]
        return hashlib.sha256(json.dumps([options, inputs]).encode()).hexdigest()


@dataclasses.dataclass
class ShardResult:
    file: str
    num_records: int = 0
    sha256: str = ""
    skipped: list = dataclasses.field(default_factory=list)
    repaired: list = dataclasses.field(default_factory=list)
    reused: bool = False
    stats_file: str | None = None
    error: str | None = None
    bad_boxes: list = dataclasses.field(default_factory=list)  # {"file", "image", "reason", ...}
    boxes: dict = dataclasses.field(default_factory=lambda: {"images": 0, "kept": 0})
    write_error: tuple[str, int, str] | None = None  # (path, errno, reason) of a failed write


def sha256_file(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def shard_ranges(count: int, num_shards: int) -> list[tuple[int, int]]:
    """Contiguous [start, end) ranges splitting `count` items over `num_shards` nearly evenly."""
    bounds = [count * i // num_shards for i in range(num_shards + 1)]
    return list(zip(bounds[:-1], bounds[1:], strict=True))


def _state_paths(task: ShardTask) -> tuple[str, str]:
    state_dir = os.path.join(task.output_dir, STATE_DIR)
    return (
        os.path.join(state_dir, f"{task.file}.json"),
        os.path.join(state_dir, f"{task.file}.stats.npz"),
    )


def _reusable(task: ShardTask, fingerprint: str) -> ShardResult | None:
    """The recorded result of a finished shard that matches this task and its checksum."""
    state_path, stats_path = _state_paths(task)
    shard_path = os.path.join(task.output_dir, task.file)
    try:
        with open(state_path) as f:
            state = json.load(f)
        if state["fingerprint"] != fingerprint or not os.path.exists(shard_path):
            return None
        if task.with_stats and not os.path.exists(stats_path):
            return None
        if sha256_file(shard_path) != state["sha256"]:
            return None
    except (OSError, ValueError, KeyError):
        return None
    return ShardResult(
        file=task.file,
        num_records=state["num_records"],
        sha256=state["sha256"],
        skipped=state["skipped"],
        repaired=state["repaired"],
        reused=True,
        stats_file=stats_path if task.with_stats else None,
        bad_boxes=state["bad_boxes"],
        boxes=state["boxes"],
    )


def write_shard(task: ShardTask, tick: Callable[[int], None]) -> ShardResult:
    """Writes (or keeps) one shard; `tick(n)` is called as images are done."""
    fingerprint = task.fingerprint()
    kept = _reusable(task, fingerprint)
    if kept:
        tick(len(task.items))
        return kept
    result = ShardResult(file=task.file)
    accumulator = stats.Accumulator() if task.with_stats else None
    pending = 0
    try:
        # The shard is renamed into place only once whole, after its statistics and state: a
        # crash or a full disk leaves no partial shard (atomic.WriteError names the file).
        with atomic.writing(os.path.join(task.output_dir, task.file), "wb") as writer:
            digest = hashlib.sha256()
            for item in task.items:
                pending += 1
                if pending == _TICK:
                    tick(pending)
                    pending = 0
                record = _convert_one(task, item, result, accumulator)
                if record is not None:
                    framed = records.tfrecord(record)
                    writer.write(framed)
                    digest.update(framed)
                    result.num_records += 1
            result.sha256 = digest.hexdigest()
            state_path, stats_path = _state_paths(task)
            if accumulator is not None:
                accumulator.save(stats_path)
                result.stats_file = stats_path
            state = {
                "fingerprint": fingerprint,
                "sha256": result.sha256,
                "num_records": result.num_records,
                "skipped": result.skipped,
                "repaired": result.repaired,
                "bad_boxes": result.bad_boxes,
                "boxes": result.boxes,
            }
            atomic.write_text(state_path, json.dumps(state))
    finally:
        tick(pending)
    return result


def _convert_one(task, item, result, accumulator) -> bytes | None:
    """The record of one image, or None after noting why it was skipped."""
    try:
        data = sources.read_bytes(item)
    except OSError as e:
        result.skipped.append({"file": item.name, "reason": f"can't be read: {e}"})
        return None
    try:
        image = images.process(
            data, resize=task.resize, quality=task.quality, want_pixels=accumulator is not None
        )
    except images.BadImageError as e:
        result.skipped.append({"file": item.name, "reason": str(e)})
        return None
    if image.repaired:
        result.repaired.append({"file": item.name, "reason": image.repaired})
    if accumulator is not None:
        accumulator.add(image.pixels)
    geometry = boxes_lib.record_boxes(task, item, image, result)
    return records.to_example(
        encoded=image.encoded,
        height=image.height,
        width=image.width,
        filename=item.basename,
        label=item.label + task.label_offset,
        synset=task.synsets[item.label],
        text=task.texts[item.label],
        **geometry,
    )


def _guarded(task: ShardTask, tick: Callable[[int], None]) -> ShardResult:
    """write_shard, with a failure turned into a result so the other shards go on."""
    try:
        return write_shard(task, tick)
    except atomic.WriteError as e:
        if e.errno in atomic.DISK_ERRORS:  # a full disk fails every shard: stop (see run_tasks)
            return ShardResult(
                file=task.file, error=str(e), write_error=(e.path, e.errno, e.strerror)
            )
        return ShardResult(file=task.file, error=f"{task.file}: {e}")
    except Exception as e:  # noqa: BLE001 - any failure of one shard is reported, not fatal
        detail = traceback.format_exception_only(type(e), e)[-1].strip()
        return ShardResult(file=task.file, error=f"{task.file}: {detail}")


def _init_worker(queue) -> None:
    global _queue
    _queue = queue


def _worker_tick(count: int) -> None:
    if count:
        _queue.put(count)


def _in_worker(task: ShardTask) -> ShardResult:
    return _guarded(task, _worker_tick)


def run_tasks(
    tasks: list[ShardTask], num_workers: int, tick: Callable[[int], None]
) -> list[ShardResult]:
    """Runs every task, in this process (num_workers <= 1) or in a pool of worker processes."""
    if num_workers <= 1 or len(tasks) <= 1:
        results = []
        for task in tasks:
            results.append(_guarded(task, tick))
            _raise_write_error(results[-1])
        return results
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()

    def drain():
        while (count := queue.get()) is not None:
            tick(count)

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    results = []
    try:
        # An executor, not multiprocessing.Pool: if a worker dies (a decoder crash, the OOM
        # killer), the pending shards fail with BrokenProcessPool instead of waiting forever.
        with (
            _main_module_hidden(),
            futures.ProcessPoolExecutor(
                min(num_workers, len(tasks)),
                mp_context=context,
                initializer=_init_worker,
                initargs=(queue,),
            ) as pool,
        ):
            submitted = [(task, pool.submit(_in_worker, task)) for task in tasks]
            for task, future in submitted:
                try:
                    results.append(future.result())
                except futures.process.BrokenProcessPool as e:
                    results.append(ShardResult(file=task.file, error=f"{task.file}: {e}"))
                if results[-1].write_error:
                    pool.shutdown(wait=True, cancel_futures=True)
                    _raise_write_error(results[-1])
    finally:
        queue.put(None)
        reader.join()
    return results


@contextlib.contextmanager
def _main_module_hidden():
    """Spawned workers import nothing of the program that started them.

    A spawned child first imports the parent's main module (by its module name under
    `python -m`, by its path otherwise), and a binary's imports TensorFlow: seconds of CPU per
    worker before its first image. The workers need only this module, which pickling names, so
    while they start the main module shows neither its spec nor its file, and multiprocessing
    leaves it out.
    """
    main = sys.modules["__main__"]
    saved = {
        name: main.__dict__[name] for name in ("__spec__", "__file__") if name in main.__dict__
    }
    main.__spec__ = None
    main.__dict__.pop("__file__", None)
    try:
        yield
    finally:
        main.__dict__.update(saved)


def _raise_write_error(result: ShardResult) -> None:
    """Stops the conversion on a failed write (no space, quota, read-only): the other shards
    would fail the same way. Whole shards are kept; the same command resumes."""
    if result.write_error:
        path, number, reason = result.write_error
        raise atomic.WriteError(path, OSError(number, reason))
