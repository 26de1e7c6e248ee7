"""The backup's catalog walk, in a thread of its own, from the moment the snapshot is read.

The walk must start after the snapshot's body has ended (docs/catalog.md: what it reads
is dated against a window that closes there), but not after the upload: once the last
byte is read and every check has passed, the store still uploads the last parts in
flight and completes the multipart upload (130-175 ms at 250 MB on the bench machine),
while Vault sits idle. The walk (list and metadata reads, ~50 ms for 500 secrets, ~11 s
for 100k) runs in that time instead of after it. It takes the conn's pooled connections,
as the clock calibration does beside the stream; nothing else uses the client then.

It starts when the store has read the envelope to its end (SnapshotPipeline
.wait_drained: only after every check passed), when no part buffer is allocated any
more. Its objects then came on top of the parts still in flight: ~4 MB above the
streaming peak at 1 GB (peak RSS 134.6 MB against 130.4, medians of 3). Handing the
emptied queues' freed buffers back first (hygiene.release_free_memory) left ~3 MB
(131.7 against 128.9).

The window's end is the local clock read at that moment: after the body's last byte
was read, so it still bounds the snapshot's instant, and closer to it than the end of
the upload was. A failure of the walk (or of the calibration, whose result it takes
first) is raised, the same object, from result() in the caller's thread; a backup that
fails elsewhere cancels the walk, which stops at its next progress tick.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

from dr.background import Background
from dr.hygiene import release_free_memory
from dr.ops.pipeline import SnapshotPipeline
from dr.vault.catalog import Catalog, CatalogWalker
from dr.vault.clock import BackgroundCalibration, ServerClock

__all__ = ["CatalogWalk", "WalkResult"]

JOIN_TIMEOUT = 2.0  # cancel() waits this long; the thread is a daemon after that


class _Cancelled(Exception):
    """Inside the walk: the backup failed elsewhere; the walk ends quietly."""


@dataclass(frozen=True)
class WalkResult:
    catalog: Catalog
    clock: ServerClock
    window_start: float
    window_end: float


class CatalogWalk:
    """Start with start(); result() waits for the walk and returns it or raises its error."""

    def __init__(
        self,
        walker: CatalogWalker,
        pipeline: SnapshotPipeline,
        calibration: BackgroundCalibration,
        began: float,
        cluster: str,
        backup_id: str,
    ) -> None:
        self._walker = walker
        self._pipeline = pipeline
        self._calibration = calibration
        self._began = began
        self._cluster = cluster
        self._backup_id = backup_id
        self._cancelled = threading.Event()
        self._progress = walker.progress
        self._task = Background(self._run, "dr-catalog-walk")

    def start(self) -> CatalogWalk:
        self._task.start()
        return self

    def _tick(self, done: int) -> None:
        if self._cancelled.is_set():
            raise _Cancelled
        if self._progress is not None:
            self._progress(done)

    def _run(self) -> WalkResult | None:
        """None when the walk did not run: the stream failed or stopped (the store
        raises why), or the backup was cancelled."""
        if not self._pipeline.wait_drained():
            return None
        ended = time.time()  # after the body's last byte was read and checked
        release_free_memory()  # the emptied queues' buffers, before the walk's objects
        if self._cancelled.is_set():
            return None
        clock = self._calibration.result()
        window_start, window_end = clock.earliest(self._began), clock.latest(ended)
        self._walker.progress = self._tick
        try:
            catalog = self._walker.walk(self._cluster, self._backup_id, window_start, window_end)
        except _Cancelled:
            return None
        return WalkResult(catalog, clock, window_start, window_end)

    def result(self) -> WalkResult:
        """The walk, once it ended; raises what it raised. The join is interruptible."""
        walked = self._task.result()
        if walked is None:
            # Only after a stopped pipeline, whose error the store has raised before.
            raise RuntimeError("the catalog walk did not run: the snapshot stream stopped")
        return walked

    def cancel(self) -> None:
        """The backup failed: stop the walk at its next progress tick, wait a little."""
        self._cancelled.set()
        self._task.join(JOIN_TIMEOUT)
