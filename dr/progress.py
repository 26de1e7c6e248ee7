"""Progress for long transfers: a live line on a terminal, silence under cron.

Shown only when stderr is a terminal (and not --quiet), so cron mail and CI logs get
the log lines and the result, not a thousand carriage returns.
"""

from __future__ import annotations

import sys
import threading
import time
from typing import TextIO


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


def human_duration(seconds: float) -> str:
    """An age or interval an operator reads at a glance: 45 s, 12 min, 5.2 h, 3 d 4 h."""
    s = max(0.0, seconds)
    if s < 90:
        return f"{s:.0f} s" if s >= 1 else f"{s:.1f} s"
    if s < 90 * 60:
        return f"{s / 60:.0f} min"
    if s < 48 * 3600:
        return f"{s / 3600:.1f} h"
    days, rest = divmod(s, 86400)
    return f"{days:.0f} d {rest / 3600:.0f} h"


class Progress:
    """Byte counter with a throttled status line. Thread-safe: uploads call it from
    s3transfer's worker threads."""

    def __init__(self, label: str, *, stream: TextIO | None = None, enabled: bool | None = None):
        self.stream = stream or sys.stderr
        self.enabled = self.stream.isatty() if enabled is None else enabled
        self.label = label
        self.done = 0
        self._start = time.monotonic()
        self._last = 0.0
        self._lock = threading.Lock()

    def __call__(self, nbytes: int) -> None:
        with self._lock:
            self.done += nbytes
            now = time.monotonic()
            if self.enabled and now - self._last >= 0.25:
                self._last = now
                rate = self.done / max(now - self._start, 1e-6)
                self.stream.write(
                    f"\r{self.label}: {human_bytes(self.done)} ({human_bytes(rate)}/s)   "
                )
                self.stream.flush()

    def finish(self) -> None:
        if self.enabled and self._last:
            self.stream.write("\r" + " " * 60 + "\r")
            self.stream.flush()


class NullProgress(Progress):
    def __init__(self, label: str = "") -> None:
        super().__init__(label, enabled=False)
