"""The converter's progress bar on stderr: done/total, images/s and time left, drawn by tqdm.

On a terminal it is tqdm's bar, redrawn in place. Off a terminal (a log file, a CI console, a
batch job) it is one plain line per `interval` (at least 10 s) and a last line at the end, with
no carriage returns, so the log reads as a history. The converter's worker processes report
through a queue to the parent, which alone feeds this one bar.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TextIO

from tqdm import tqdm

_FORMAT = "{desc} {percentage:3.0f}%|{bar:20}| {n_fmt}/{total_fmt} {rate_fmt}, {elapsed} elapsed, {remaining} left"  # noqa: E501
_UNIT = " images"
_LOG_INTERVAL = 10.0  # seconds between lines off a terminal


class Progress:
    """Counts images; redraws at most every `interval` seconds (a new line each time off a tty)."""

    def __init__(
        self,
        total: int,
        label: str,
        stream: TextIO | None = None,
        interval: float = 0.5,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.total, self.label, self.done = total, label, 0
        self.stream = stream if stream is not None else sys.stderr
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.interval = interval if self.tty else max(interval, _LOG_INTERVAL)
        self.clock = clock
        self.last = clock()
        # The rate counts from the first update: the seconds that the worker processes spend
        # starting up would make the first estimates absurd.
        self.start = self.base = None
        self.bar = (
            tqdm(total=total, desc=label, unit=_UNIT, file=self.stream, ascii=True,
                 mininterval=self.interval, bar_format=_FORMAT, dynamic_ncols=True)
            if self.tty
            else None
        )  # fmt: skip

    def update(self, count: int) -> None:
        now = self.clock()
        if self.start is None:
            self.start, self.base = now, self.done + count
        self.done += count
        if self.bar is not None:
            self.bar.update(count)
        elif now - self.last >= self.interval or self.done >= self.total:
            self.last = now
            self.stream.write(self.line(now) + "\n")
            self.stream.flush()

    def line(self, now: float | None = None) -> str:
        """The bar as one line of text, as of `now`."""
        now = self.clock() if now is None else now
        elapsed = now - self.start if self.start is not None else 0.0
        counted = self.done - (self.base or 0)
        return tqdm.format_meter(
            self.done, self.total, elapsed, prefix=self.label, unit=_UNIT, ascii=True,
            rate=counted / elapsed if elapsed > 0 and counted > 0 else None, bar_format=_FORMAT,
        )  # fmt: skip

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
