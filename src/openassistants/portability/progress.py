"""Progress of a long export or import on stderr: a bar on a terminal, a line now and then otherwise."""

from __future__ import annotations

import sys
import time
from typing import TextIO

#: Seconds between two updates on a terminal, and between two lines in a log.
TTY_EVERY = 0.2
LOG_EVERY = 5.0
BAR_WIDTH = 30


class Progress:
    def __init__(self, verb: str, total: int | None, stream: TextIO | None = None) -> None:
        self.verb = verb
        self.total = total
        self.done = 0
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.started = time.monotonic()
        self._shown = self.started
        self._printed = False

    def advance(self, objects: int) -> None:
        self.done += objects
        now = time.monotonic()
        if now - self._shown >= (TTY_EVERY if self.tty else LOG_EVERY):
            self._shown = now
            self._show(now)

    def finish(self) -> None:
        if self.tty and self._printed:
            self.stream.write("\n")
            self.stream.flush()

    def _show(self, now: float) -> None:
        elapsed = now - self.started
        rate = self.done / elapsed if elapsed > 0 else 0.0
        text = f"{self.verb}: {self.done:,} objects, {rate:,.0f}/s"
        if self.total:
            share = min(self.done / self.total, 1.0)
            eta = (self.total - self.done) / rate if rate > 0 else 0.0
            text = (
                f"{self.verb}: {self.done:,}/{self.total:,} objects ({share:.0%}), "
                f"{rate:,.0f}/s, ETA {eta:,.0f} s"
            )
            if self.tty:
                filled = int(share * BAR_WIDTH)
                text = f"[{'#' * filled}{'.' * (BAR_WIDTH - filled)}] {text}"
        self.stream.write(f"\r{text}\x1b[K" if self.tty else f"{text}\n")
        self.stream.flush()
        self._printed = True
