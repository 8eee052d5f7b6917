"""How training saves its checkpoints: one per call, none half-written, every worker's part.

Reading a run back (its model config, the newest intact checkpoint, the model) lives in
`alexnet_tf.runs.checkpoints`, below both training and the tools.
"""

from __future__ import annotations

import errno
import glob
import os
import shutil
import time
from collections.abc import Callable

import tensorflow as tf
from absl import logging

from alexnet_tf.files import atomic
from alexnet_tf.files import workdir as run_files
from alexnet_tf.runs.checkpoints import CheckpointError, latest_intact
from alexnet_tf.training import preemption


def save_checkpoint(
    manager: tf.train.CheckpointManager, step: int, passthrough: tuple[type, ...] = ()
) -> str:
    """`manager.save(checkpoint_number=step)`, with a failed write reported as a `WriteError`.

    TensorFlow writes the checkpoint's files, then points the folder's `checkpoint` state file at
    them (a rename): a failure leaves the previous checkpoints and the state file as they were.
    Whatever the failed save left of ckpt-`step` is removed.

    Args:
        manager: saves the checkpoint.
        step: its number.
        passthrough: errors raised as they are (a lost peer of a multi-worker save is no
            write error).

    Raises:
        atomic.WriteError: one line naming the checkpoint and the reason (no space, quota,
            read-only file system...).
    """
    prefix = os.path.join(manager.directory, f"{run_files.CHECKPOINT_NAME}-{step}")
    try:
        return manager.save(checkpoint_number=step)
    except passthrough:
        raise
    except (tf.errors.OpError, OSError) as e:
        for leftover in glob.glob(glob.escape(prefix) + "[._]*"):
            if os.path.isdir(leftover):
                shutil.rmtree(leftover, ignore_errors=True)
            else:
                os.remove(leftover)
        raise atomic.WriteError(prefix, _os_error(e)) from e


# TensorFlow reports a failed file write as an OpError whose message ends in the OS's reason.
_ERRNO_OF_CODE = {
    tf.errors.RESOURCE_EXHAUSTED: errno.ENOSPC,
    tf.errors.PERMISSION_DENIED: errno.EACCES,
    tf.errors.FAILED_PRECONDITION: errno.EROFS,
}


def _os_error(error: Exception) -> OSError:
    if isinstance(error, OSError):
        return error
    reason = str(error.message if hasattr(error, "message") else error).strip()
    reason = reason.splitlines()[0].rsplit("; ", 1)[-1] if reason else type(error).__name__
    return OSError(_ERRNO_OF_CODE.get(getattr(error, "error_code", None), errno.EIO), reason)


class RunCheckpoints:
    """The checkpoints of a run in progress: the newest intact one restored, one saved per call.

    The chief's checkpoint holds the whole state and its input position. Every other worker of a
    multi-worker run takes part in each save (the variables' collectives need it) but writes to
    WORKDIR/tmp-worker-N, deleted right after; its own input position goes to
    WORKDIR/input-worker-N, saved at the same steps.
    """

    def __init__(
        self,
        state_checkpoint: Callable[..., tf.train.Checkpoint],
        input_state: dict,
        workdir: str,
        *,
        worker: int = 0,
        workers: int = 1,
        chief: bool = True,
        keep: int = 3,
    ):
        self.directory = run_files.checkpoints(workdir)
        self.workdir, self.workers = workdir, workers
        self.chief = chief
        self.checkpoint = state_checkpoint(**(input_state if chief else {}))
        save_dir = self.directory if chief else run_files.worker_scratch(workdir, worker)
        self.manager = tf.train.CheckpointManager(
            self.checkpoint, save_dir, max_to_keep=keep, checkpoint_name=run_files.CHECKPOINT_NAME
        )
        self.input_manager = None
        if not chief:
            self.input_manager = tf.train.CheckpointManager(
                tf.train.Checkpoint(**input_state), run_files.worker_input(workdir, worker),
                max_to_keep=keep, checkpoint_name=run_files.CHECKPOINT_NAME,
            )  # fmt: skip

    def restore(self) -> str | None:
        """Restores the newest intact checkpoint; returns its prefix (None: nothing to resume).

        Raises:
            CheckpointError: the checkpoints are all damaged, or belong to a different run
                (model, optimizer or data do not match).
        """
        latest = latest_intact(self.directory, complete=self._saved_by_every_worker)
        if latest is None:
            return None
        try:
            status = self.checkpoint.restore(latest).assert_existing_objects_matched()
            if self.input_manager is not None:
                status.expect_partial()  # the chief's input position is not this worker's
                self._restore_worker_input(os.path.basename(latest))
        except (AssertionError, ValueError, tf.errors.OpError) as e:
            raise CheckpointError(
                f"checkpoint {latest} belongs to a different run (model, optimizer or data do "
                f"not match): {e}"
            ) from e
        return latest

    def save(self, step: int) -> str | None:
        """Saves ckpt-`step`; returns its prefix on the chief (None on the other workers).

        Raises:
            atomic.WriteError: the checkpoint could not be written (one line: path, reason).
        """
        start = time.perf_counter()
        passthrough = preemption.LOST_PEER_ERRORS if self.workers > 1 else ()
        path = save_checkpoint(self.manager, step, passthrough)
        if self.chief:
            size = sum(os.path.getsize(f) for f in glob.glob(glob.escape(path) + ".*"))
            logging.info(
                "Saved %s (%.0f MB) in %.2f s", path, size / 1e6, time.perf_counter() - start
            )
            return path
        save_checkpoint(self.input_manager, step, passthrough)
        shutil.rmtree(self.manager.directory, ignore_errors=True)
        return None

    def _saved_by_every_worker(self, prefix: str) -> bool:
        """Whether every other worker saved its input position beside the chief's `prefix`."""
        name = os.path.basename(prefix) + ".index"
        return all(
            os.path.exists(os.path.join(run_files.worker_input(self.workdir, w), name))
            for w in range(1, self.workers)
        )

    def _restore_worker_input(self, name: str) -> None:
        path = os.path.join(self.input_manager.directory, name)
        if not tf.io.gfile.exists(path + ".index"):
            logging.warning(
                "%s was not saved (the run stopped between the checkpoint and it); this "
                "worker's input starts again from the beginning of its shards",
                path,
            )
            return
        self.input_manager.checkpoint.restore(path).assert_consumed()
