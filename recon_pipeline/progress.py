"""Progress of long work, said about every ten seconds: done/total, rate, ETA; then a summary.

A step that writes or reads for minutes should neither stay silent nor print a line per
object (per-write detail is in `sync_ledger`). `Progress` counts from any thread and calls
`say` at most once per interval, from the thread whose count crossed it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

EVERY_S = 10.0


def _duration(seconds: float) -> str:
    seconds = max(0, round(seconds))
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m" if seconds >= 3600 else f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


class Progress:
    """`what` done out of `total` (None: unknown), said through `say` about every `every_s` seconds."""

    def __init__(self, what: str, total: int | None, say: Callable[[str], None], every_s: float = EVERY_S, clock: Callable[[], float] = time.monotonic):
        self.what, self.total, self.say, self.every_s, self.clock = what, total, say, every_s, clock
        self.done = 0
        self.started = self.last_said = clock()
        self._lock = threading.Lock()

    def advance(self, count: int = 1) -> None:
        with self._lock:
            self.done += count
            now = self.clock()
            due = now - self.last_said >= self.every_s
            if due:
                self.last_said = now
                line = self.line(now)
        if due:
            self.say(line)

    def line(self, now: float | None = None) -> str:
        """`what: done/total (share), rate/s, ETA` as of now."""
        elapsed = (self.clock() if now is None else now) - self.started
        rate = self.done / elapsed if elapsed > 0 else 0.0
        if self.total is None:
            return f"{self.what}: {self.done:,} in {_duration(elapsed)}, {rate:,.1f}/s"
        share = self.done / self.total if self.total else 1.0
        eta = f", ETA {_duration((self.total - self.done) / rate)}" if rate > 0 and self.done < self.total else ""
        return f"{self.what}: {self.done:,}/{self.total:,} ({share:.0%}), {rate:,.1f}/s{eta}"

    def summary(self) -> str:
        """The closing line: how many, in how long, at what rate."""
        elapsed = self.clock() - self.started
        rate = self.done / elapsed if elapsed > 0 else 0.0
        return f"{self.what}: {self.done:,}" + (f"/{self.total:,}" if self.total is not None else "") + f" done in {_duration(elapsed)} ({rate:,.1f}/s)"
