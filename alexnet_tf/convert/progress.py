"""A one-line progress bar on stderr: done/total, images/s and time left.

A plain class rather than tqdm: it is 40 lines, tqdm is not a dependency of the package, and the
converter needs only one bar fed from several processes through a queue.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO


def _clock(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600:d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


class Progress:
    """Counts images; redraws at most every `interval` seconds (a new line each time off a tty)."""

    def __init__(self, total: int, label: str, stream: TextIO | None = None, interval: float = 0.5):
        self.total, self.label, self.done = total, label, 0
        self.stream = stream if stream is not None else sys.stderr
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.interval = interval if self.tty else max(interval, 10.0)
        self.start = self.last = time.monotonic()
        self.base = None  # images done at the first update: the rate counts from there, so
        # the seconds workers spend starting up don't make the first estimates absurd

    def update(self, count: int) -> None:
        now = time.monotonic()
        if self.base is None:
            self.base, self.start = self.done, now
        self.done += count
        if now - self.last >= self.interval or self.done >= self.total:
            self.last = now
            self._draw(now)

    def line(self, now: float | None = None) -> str:
        elapsed = max((now or time.monotonic()) - self.start, 1e-9)
        rate = (self.done - (self.base or 0)) / elapsed
        left = (self.total - self.done) / rate if rate > 0 else 0.0
        fraction = self.done / self.total if self.total else 1.0
        bar = "#" * int(fraction * 20)
        return (
            f"{self.label} [{bar:<20}] {self.done}/{self.total} {fraction:4.0%} "
            f"{rate:7.1f} images/s, {_clock(elapsed)} elapsed, {_clock(left)} left"
        )

    def _draw(self, now: float) -> None:
        end = "" if self.tty and self.done < self.total else "\n"
        prefix = "\r" if self.tty else ""
        self.stream.write(f"{prefix}{self.line(now)}{end}")
        self.stream.flush()

    def close(self) -> None:
        if self.tty and self.done < self.total:
            self.stream.write("\n")
            self.stream.flush()
