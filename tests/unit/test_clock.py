"""Server clock calibration: bounds must always contain the true offset."""

from __future__ import annotations

import math
import random

import pytest

from dr.vault.clock import calibrate


class FakeServer:
    """A server whose clock is the local clock plus `offset`, read in whole seconds."""

    def __init__(self, offset: float, latency: float) -> None:
        self.offset = offset
        self.latency = latency
        self.local = 1_000.0

    def now(self) -> float:
        return self.local

    def seconds(self) -> int:
        self.local += self.latency / 2
        value = math.floor(self.local + self.offset)
        self.local += self.latency / 2
        return value


@pytest.mark.parametrize("seed", range(20))
def test_bounds_contain_the_true_offset(seed: int, monkeypatch: pytest.MonkeyPatch) -> None:
    rng = random.Random(seed)
    server = FakeServer(offset=rng.uniform(-5000, 5000), latency=rng.uniform(0.0005, 0.02))
    monkeypatch.setattr("time.sleep", lambda s: setattr(server, "local", server.local + s))
    clock = calibrate(server.seconds, now=server.now)
    assert clock.offset_low <= server.offset <= clock.offset_high
    assert clock.uncertainty <= server.latency * 2 + 0.011


def test_no_tick_seen_falls_back_to_whole_seconds(monkeypatch: pytest.MonkeyPatch) -> None:
    server = FakeServer(offset=0.1, latency=0.001)
    monkeypatch.setattr("time.sleep", lambda s: None)  # time never advances past the tick
    server.seconds = lambda: 1000  # type: ignore[method-assign]
    clock = calibrate(server.seconds, now=server.now, max_wait=0)
    assert clock.offset_low <= 0.1 <= clock.offset_high
    assert clock.uncertainty <= 1.01
