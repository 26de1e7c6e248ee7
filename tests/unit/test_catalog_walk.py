"""dr.ops.catalogwalk: the backup's catalog walk, started once the snapshot is read and
checked, beside the upload's last parts. The pipeline is the real one (no server); the
walker and the calibration are stand-ins that record when they ran.
tests/integration/test_backup.py runs the whole backup against OpenBao and S3."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from dr.errors import SnapshotError
from dr.ops.catalogwalk import CatalogWalk
from dr.vault.catalog import Catalog
from tests.unit.test_pipeline import pipeline, read_all, snapshot
from tests.unit.test_snapshot_check import chunked


class Clock:
    uncertainty = 0.01

    def earliest(self, t: float) -> float:
        return t - 1.0

    def latest(self, t: float) -> float:
        return t + 1.0


class Calibration:
    def __init__(self, error: BaseException | None = None) -> None:
        self.error = error

    def result(self) -> Clock:
        if self.error is not None:
            raise self.error
        return Clock()


class Walker:
    """Records the window it was given and when; can fail, or walk slowly in ticks."""

    def __init__(self, *, error: BaseException | None = None, ticks: int = 0) -> None:
        self.progress: Any = None
        self.error, self.ticks = error, ticks
        self.calls: list[tuple[float, float, float]] = []
        self.ticked = 0

    def walk(self, cluster: str, backup_id: str, start: float, end: float) -> Catalog:
        self.calls.append((time.time(), start, end))
        if self.error is not None:
            raise self.error
        for done in range(1, self.ticks + 1):
            time.sleep(0.02)
            self.progress(done * 500)
            self.ticked = done
        return Catalog(cluster, backup_id, start, end)


def walk_of(pipe: Any, walker: Walker, calibration: Calibration | None = None) -> CatalogWalk:
    began = time.time()
    return CatalogWalk(walker, pipe, calibration or Calibration(), began, "prod", "id-1")  # type: ignore[arg-type]


def test_the_walk_starts_once_the_checked_envelope_is_read_and_before_the_store_ends() -> None:
    raw = snapshot(300_000)
    walker = Walker()
    with pipeline(chunked(raw, 4_096)) as pipe:
        walk = walk_of(pipe, walker).start()
        time.sleep(0.1)
        assert walker.calls == []  # nothing read yet: the stream is held by the queues
        read_all(pipe)
        time.sleep(0.2)  # the store's last parts still uploading
        stored = time.time()
        result = walk.result()
    assert len(walker.calls) == 1
    walked_at, start, end = walker.calls[0]
    assert walked_at >= end - 1.0  # the window closed (local clock) before the walk began
    assert walked_at < stored  # beside the upload's tail, not after it
    assert end - 1.0 <= stored  # and its end is not the end of the upload but before it
    assert result.catalog.window_end == end and result.window_start == start
    assert result.clock.uncertainty == 0.01


def test_a_failing_walk_is_raised_in_the_callers_thread() -> None:
    boom = RuntimeError("sys/mounts: 503")
    with pipeline(chunked(snapshot(100_000), 4_096)) as pipe:
        walk = walk_of(pipe, Walker(error=boom)).start()
        read_all(pipe)
        with pytest.raises(RuntimeError) as exc:
            walk.result()
    assert exc.value is boom


def test_a_failing_calibration_is_raised_and_nothing_is_walked() -> None:
    failed = SnapshotError("server clock: no reply")
    walker = Walker()
    with pipeline(chunked(snapshot(100_000), 4_096)) as pipe:
        walk = walk_of(pipe, walker, Calibration(failed)).start()
        read_all(pipe)
        with pytest.raises(SnapshotError) as exc:
            walk.result()
    assert exc.value is failed and walker.calls == []


def test_a_failed_snapshot_check_never_starts_the_walk() -> None:
    raw = snapshot(100_000)
    walker = Walker()
    with pipeline(chunked(raw[: len(raw) - 10], 4_096)) as pipe:
        walk = walk_of(pipe, walker).start()
        with pytest.raises(SnapshotError):
            read_all(pipe)
    with pytest.raises(RuntimeError, match="did not run"):
        walk.result()
    assert walker.calls == []


def test_cancel_stops_a_walk_at_its_next_tick() -> None:
    walker = Walker(ticks=200)  # 4 s if never stopped
    with pipeline(chunked(snapshot(100_000), 4_096)) as pipe:
        walk = walk_of(pipe, walker).start()
        read_all(pipe)
        while walker.ticked < 2:
            time.sleep(0.01)
        began = time.monotonic()
        walk.cancel()
    assert time.monotonic() - began < 1.0
    assert walker.ticked < 10
    assert not any(t.name == "dr-catalog-walk" for t in threading.enumerate())


def test_a_callers_own_progress_still_ticks() -> None:
    seen: list[int] = []
    walker = Walker(ticks=3)
    walker.progress = seen.append
    with pipeline(chunked(snapshot(100_000), 4_096)) as pipe:
        walk = walk_of(pipe, walker).start()
        read_all(pipe)
        walk.result()
    assert seen == [500, 1000, 1500]
