"""dr.vault.clock.BackgroundCalibration: the calibration beside the snapshot stream."""

from __future__ import annotations

import threading
import time

import pytest

from dr.vault.clock import BackgroundCalibration


def test_it_brackets_the_true_offset_while_the_caller_goes_on() -> None:
    offset = 0.37  # the fake server runs this far ahead of the local clock
    calls: list[str] = []

    def server_seconds() -> int:
        calls.append(threading.current_thread().name)
        return int(time.time() + offset)

    began = time.monotonic()
    calibration = BackgroundCalibration(server_seconds)
    assert time.monotonic() - began < 0.2  # the caller is not held up
    clock = calibration.result()
    assert clock.offset_low <= offset <= clock.offset_high
    assert clock.uncertainty < 0.1
    assert set(calls) == {"dr-clock"}
    # A window from local instants taken around the work: it holds the server time.
    local = time.time()
    assert clock.earliest(local) <= local + offset <= clock.latest(local)


def test_its_failure_is_raised_by_result() -> None:
    class Down(Exception):
        pass

    def unreachable() -> int:
        raise Down("sys/health failed")

    calibration = BackgroundCalibration(unreachable)
    with pytest.raises(Down):
        calibration.result()


def test_no_tick_falls_back_to_whole_seconds_and_the_thread_is_a_daemon() -> None:
    calibration = BackgroundCalibration(lambda: 1000, max_wait=0.05)
    assert calibration._task._thread.daemon
    clock = calibration.result()
    assert 0.9 < clock.uncertainty < 1.2
