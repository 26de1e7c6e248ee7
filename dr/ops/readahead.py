"""Run an iterator in a thread of its own, a few items ahead of its consumer.

The fetch of a restore, a drill or `dr verify` spends its time in two kinds of work:
reading the ciphertext, hashing it and decrypting each frame, and the snapshot checks
on the plaintext (inflate, the stream's and state.bin's SHA-256). On one thread they
take turns, and that thread was the fetch's bottleneck (py-spy, 1 GB: busy all the
way, the download waiting on it). hashlib (above 2 KiB), zlib and file reads release
the GIL, so the two halves overlap on two cores when each has a thread.

The standard library has no bounded "iterate in the background" helper
(concurrent.futures maps over inputs it already has), so this is a small one: a
bounded queue (memory: `depth` items plus one being made and one being used), the
source's exception raised unchanged in the consumer's thread at the point it would
have been, and a consumer that stops early (an exception of its own, Ctrl-C, close())
stops the producer at its next item. The producer is a daemon that polls a stop flag,
so nothing waits on it past POLL seconds, except a source blocked inside a read of
its own, which ends at that read's timeout.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Generator, Iterator
from typing import TypeVar

__all__ = ["read_ahead"]

T = TypeVar("T")

POLL = 0.1  # seconds a blocked side waits before it looks at the stop flag again
JOIN_TIMEOUT = 2.0  # how long a consumer that stops early waits for the producer

_END = object()


class _Failed:
    """The source raised: carried through the queue to the consumer."""

    def __init__(self, error: BaseException) -> None:
        self.error = error


def read_ahead(source: Iterator[T], depth: int = 2, *, name: str = "dr-read-ahead") -> Iterator[T]:
    """Yield the items of `source`, which runs (and, if it is a generator, is closed) in
    a daemon thread `name`, at most `depth` items ahead. When this generator is
    exhausted the source has ended and the thread is finished, so whatever the source
    updated as it went (a digest, a byte count) is final."""
    if depth < 1:
        raise ValueError("depth must be >= 1")
    return _consume(source, depth, name)


def _consume(source: Iterator[T], depth: int, name: str) -> Generator[T, None, None]:
    items: queue.Queue[object] = queue.Queue(depth)
    stop = threading.Event()

    def put(item: object) -> bool:
        while not stop.is_set():
            try:
                items.put(item, timeout=POLL)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in source:
                if not put(item):
                    return
        except BaseException as exc:  # handed to the consumer, unchanged
            put(_Failed(exc))
            return
        finally:
            close = getattr(source, "close", None)
            if close is not None:
                close()  # a generator: its `finally` and `with` blocks run here
        put(_END)

    thread = threading.Thread(target=produce, name=name, daemon=True)
    thread.start()
    try:
        while True:
            try:
                item = items.get(timeout=POLL)
            except queue.Empty:
                if not thread.is_alive() and items.empty():
                    raise RuntimeError(f"{name}: the producer ended without a result") from None
                continue
            if item is _END:
                thread.join()
                return
            if isinstance(item, _Failed):
                thread.join(JOIN_TIMEOUT)
                raise item.error
            yield item  # type: ignore[misc]
    finally:
        stop.set()
        if thread.is_alive():
            thread.join(JOIN_TIMEOUT)
