"""The Vault server's clock, to sub-second precision, from a whole-second API.

kv-v2 metadata dates every version with the server's clock in nanoseconds, but the
only clock the API offers is `sys/health` `server_time_utc`, in whole seconds. Dating
the snapshot to a whole second would leave every write of that second "uncertain"
(docs/catalog.md). So we calibrate: poll `sys/health` (at most every 10 ms, for at
most ~1.2 s) until the server's second ticks over. The tick happened between the send
of the last poll that saw the old second and the reply of the first that saw the new
one, which bounds the offset between our monotonic clock and the server's clock to
about two round trips. Then any local instant maps to a server-time interval.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from dr.background import Background

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServerClock:
    """server_time = local wall time + offset, with offset in [low, high]."""

    offset_low: float
    offset_high: float

    @property
    def uncertainty(self) -> float:
        return self.offset_high - self.offset_low

    def earliest(self, local: float) -> float:
        return local + self.offset_low

    def latest(self, local: float) -> float:
        return local + self.offset_high


def calibrate(
    server_seconds: Callable[[], int],
    *,
    interval: float = 0.01,
    max_wait: float = 1.3,
    now: Callable[[], float] = time.time,
) -> ServerClock:
    """Find the server clock's offset from the instant its second ticks over.

    Falls back to whole-second bounds (offset uncertainty ~1 s) when the tick is not
    seen in time, e.g. over a very slow link.
    """
    first_send = now()
    first = server_seconds()
    first_recv = now()
    prev_send, prev_value = first_send, first
    deadline = first_recv + max_wait
    while now() < deadline:
        time.sleep(interval)
        send = now()
        value = server_seconds()
        recv = now()
        if value > prev_value:
            tick = float(value)  # the server's clock read exactly `value` at the tick
            # The tick happened at a local instant in [prev_send, recv].
            return ServerClock(offset_low=tick - recv, offset_high=tick - prev_send)
        prev_send, prev_value = send, value
    # No tick seen: the server's time at first_recv was in [first, first + 1).
    log.debug("server clock calibration saw no tick; using whole-second bounds")
    return ServerClock(offset_low=first - first_recv, offset_high=first + 1 - first_send)


class BackgroundCalibration:
    """`calibrate` in a daemon thread, so that it runs while the snapshot streams.

    The calibration measures the offset between the local and the server's clock; the
    window it dates comes from local instants taken around the stream, so it may be
    measured before, during or after the stream, as long as the offset holds over the
    backup (the same assumption a calibration before the stream made for the window's
    end). A daemon thread: a run that is interrupted never waits for it (at most
    max_wait anyway). Its requests take their own pooled connection, not the stream's.
    """

    def __init__(self, server_seconds: Callable[[], int], **options: Any) -> None:
        self._task = Background(lambda: calibrate(server_seconds, **options), "dr-clock")
        self._task.start()

    def result(self) -> ServerClock:
        """The calibration; raises what it raised. Waits for it to end (the join is
        interruptible: a signal still reaches the caller)."""
        return self._task.result()
