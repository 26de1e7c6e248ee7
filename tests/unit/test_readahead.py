"""dr.ops.readahead: an iterator run in a thread, a bounded number of items ahead."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from dr.errors import IntegrityError
from dr.ops.readahead import read_ahead


def test_items_arrive_in_order_and_the_source_ran_in_another_thread() -> None:
    threads: set[str] = set()

    def source() -> Iterator[int]:
        for i in range(100):
            threads.add(threading.current_thread().name)
            yield i

    assert list(read_ahead(source(), 3, name="dr-test-ahead")) == list(range(100))
    assert threads == {"dr-test-ahead"}


def test_when_exhausted_the_source_has_finished_its_side_effects() -> None:
    state = {"total": 0, "done": False}

    def source() -> Iterator[bytes]:
        for _ in range(50):
            state["total"] += 1
            yield b"x"
        time.sleep(0.05)  # after the last item: the consumer must still wait for this
        state["done"] = True

    for _ in read_ahead(source(), 2):
        pass
    assert state == {"total": 50, "done": True}


def test_the_source_error_is_raised_unchanged_after_the_items_before_it() -> None:
    boom = IntegrityError("frame 3 failed authentication")

    def source() -> Iterator[int]:
        yield 1
        yield 2
        raise boom

    got = []
    with pytest.raises(IntegrityError) as caught:
        for item in read_ahead(source(), 1):
            got.append(item)
    assert caught.value is boom
    assert got == [1, 2]


def test_the_producer_stays_at_most_depth_items_ahead() -> None:
    made = []

    def source() -> Iterator[int]:
        for i in range(20):
            made.append(i)
            yield i

    it = read_ahead(source(), 2)
    assert next(it) == 0
    time.sleep(0.3)
    # 0 consumed, 2 queued, one made and waiting for room: never more.
    assert len(made) <= 4
    assert list(it) == list(range(1, 20))


def test_a_consumer_that_stops_early_stops_and_closes_the_source() -> None:
    closed = threading.Event()
    made = []

    def source() -> Iterator[int]:
        try:
            for i in range(10_000):
                made.append(i)
                yield i
        finally:
            closed.set()

    it = read_ahead(source(), 2)
    assert next(it) == 0
    it.close()  # type: ignore[attr-defined]
    assert closed.wait(2), "the source generator was not closed"
    count = len(made)
    time.sleep(0.3)
    assert len(made) == count < 10
    assert not any(t.name == "dr-read-ahead" for t in threading.enumerate())


def test_a_consumer_error_mid_way_stops_the_producer() -> None:
    closed = threading.Event()

    def source() -> Iterator[int]:
        try:
            yield from range(10_000)
        finally:
            closed.set()

    def consume() -> None:
        for item in read_ahead(source(), 2):
            if item == 5:
                raise ValueError("the snapshot check failed")

    with pytest.raises(ValueError, match="snapshot check"):
        consume()
    assert closed.wait(2)


def test_depth_must_be_positive() -> None:
    with pytest.raises(ValueError, match="depth"):
        read_ahead(iter([1]), 0)
