"""The wall clock every command reads, injectable so tests move time without sleeping.

Operations that judge age (the run lock's lease, retention, `dr status`, the drill's
backup age, drill records) take `now: Now = utcnow`; tests pass a clock they advance.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

Now = Callable[[], datetime]


def utcnow() -> datetime:
    return datetime.now(UTC)


def iso(ts: datetime) -> str:
    """`2026-11-26T06:00:00Z`: the form manifests and records store."""
    return ts.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def parse_iso(text: str) -> datetime:
    """The inverse of `iso` (also accepts fractional seconds and offsets)."""
    ts = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return ts if ts.tzinfo else ts.replace(tzinfo=UTC)
