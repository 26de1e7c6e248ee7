"""One call in a daemon thread, its value or its exception handed to the caller's thread.

The backup runs two such calls beside its stream: the server clock calibration
(dr/vault/clock.py) and the catalog walk (dr/ops/catalogwalk.py). Daemon threads: an
interrupted run never waits for them. Not concurrent.futures: its worker threads are
not daemons (the interpreter joins them at exit), and its result() wait does not let
Ctrl-C through on every platform; this join loop does.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Generic, TypeVar

__all__ = ["Background"]

T = TypeVar("T")

_JOIN_STEP = 0.1  # seconds per join, so that a signal reaches the waiting thread


class Background(Generic[T]):
    """`fn()` in a daemon thread named `name`: start(), then result()."""

    def __init__(self, fn: Callable[[], T], name: str) -> None:
        self._fn = fn
        self._value: T | None = None
        self._error: BaseException | None = None
        self._done = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> Background[T]:
        self._thread.start()
        return self

    def _run(self) -> None:
        try:
            self._value = self._fn()
            self._done = True
        except BaseException as exc:  # handed to result(), in the caller's thread
            self._error = exc

    def result(self) -> T:
        """fn's value; raises what it raised. Waits for it (interruptibly)."""
        while self._thread.is_alive():
            self._thread.join(_JOIN_STEP)
        if self._error is not None:
            raise self._error
        if not self._done:
            raise RuntimeError(f"{self._thread.name} was never started")
        return self._value  # type: ignore[return-value]

    def join(self, timeout: float) -> None:
        """Wait at most `timeout` seconds for fn to end (never from inside it)."""
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout)
