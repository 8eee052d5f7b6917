"""Stopping a week-long run cleanly: SIGTERM or SIGINT ends it with a checkpoint of its last step.

A preemptible machine gets SIGTERM some seconds before it is taken away. `StopRequests` turns
the first SIGTERM or SIGINT into a flag that the training loop reads after each step: the loop
then saves a checkpoint of that step and raises `PreemptedError`, and `python -m alexnet_tf.train`
exits with `EXIT_RESUMABLE`. Running the same command again resumes from that checkpoint.
A second SIGINT (Ctrl-C twice) interrupts at once.

Several workers (--strategy=multi_worker) must stop at the same step, or the ones still running
would wait forever in the next step's all-reduce. Each worker's flag rides along in the step's
own reduction (`steps.make_train_step`), so every worker reads the same sum after the same step;
a flag set during step n is seen by all workers after step n + 1.

`tf.distribute.experimental.PreemptionCheckpointHandler` is TensorFlow's take on the same problem;
it is not used because it restores "the latest checkpoint" itself when created (a damaged one
included, where this package skips to the newest intact one), adds its own run counter to the
checkpoint, saves through its own manager (not the non-chief workers' input positions) and
exits the process itself; it also declines CPU machines on GCP. Agreeing through the step's
own all-reduce needs no extra thread, no key-value store and no change to the checkpoint.

A lost worker: MultiWorkerMirroredStrategy starts TensorFlow's coordination service, whose
heartbeats mark a worker that died or hangs as unhealthy (about 10 s) and abort the others'
collectives with UnavailableError or DeadlineExceededError; a worker killed on the same network
aborts them at once (its connections reset). `WorkerLostError` turns that into one message and
the same resumable exit status: a scheduler restarts every worker, and they resume from the last
checkpoint they all saved.
"""

from __future__ import annotations

import re
import signal
import threading
import types

import tensorflow as tf
from absl import logging

# sysexits.h EX_TEMPFAIL, "temporary failure; the user is invited to retry": the state is saved
# and the same command resumes it. Unlike 143 (128 + SIGTERM) it says the handler ran and the
# checkpoint was written, rather than that the process was killed before it could save; unlike
# 1 it is not a failure to look into. Wrappers re-queue on it: `until train ...; [ $? = 75 ]...`.
EXIT_RESUMABLE = 75
SIGNALS = (signal.SIGTERM, signal.SIGINT)


class PreemptedError(Exception):
    """Training stopped on a signal (or a lost worker); `checkpoint` holds its last step."""

    def __init__(self, message: str, step: int, checkpoint: str | None):
        super().__init__(message)
        self.step = step
        self.checkpoint = checkpoint


class StopRequests:
    """A context in which SIGTERM and SIGINT ask the training loop to stop after its step.

    Outside the main thread (where Python can't install handlers) it never asks.
    """

    def __init__(self):
        self.signal: int | None = None
        self._previous: dict[int, object] = {}

    @property
    def requested(self) -> bool:
        return self.signal is not None

    @property
    def name(self) -> str:
        return signal.Signals(self.signal).name if self.signal is not None else ""

    def __enter__(self) -> StopRequests:
        if threading.current_thread() is threading.main_thread():
            for sig in SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

    def _handle(self, signum: int, frame: types.FrameType | None) -> None:
        if self.signal == signal.SIGINT and signum == signal.SIGINT:
            raise KeyboardInterrupt  # a second Ctrl-C: stop now, without the checkpoint
        self.signal = signum


class WorkerLostError(PreemptedError):
    """Another worker of a multi-worker run died or stopped answering; nothing was saved."""


# What the collectives of the surviving workers raise when a peer is gone.
LOST_PEER_ERRORS = (
    tf.errors.UnavailableError,
    tf.errors.DeadlineExceededError,
    tf.errors.AbortedError,
    tf.errors.CancelledError,
)


def lost_worker(error: tf.errors.OpError, step: int, checkpoint: str | None) -> WorkerLostError:
    """The `WorkerLostError` for a collective aborted at `step` by a lost peer."""
    lines = [line.strip() for line in str(error.message).splitlines() if line.strip()]
    cause = next(
        (line for line in lines if re.search(r"unhealthy|aborted by|reset|deadline", line, re.I)),
        lines[-1] if lines else type(error).__name__,
    )
    message = (
        f"lost another worker during step {step + 1} ({type(error).__name__}: {cause}); "
        f"nothing was saved after {checkpoint or 'the start'}. Start every worker again with "
        "the same command to resume from it"
    )
    logging.error("%s", message)
    return WorkerLostError(message, step, checkpoint)
