"""Drill/verify records (dr/ops/records.py): MAC binding and hostile input."""

from __future__ import annotations

import os

import pytest

from dr.errors import IntegrityError
from dr.ops.records import RunRecord, newest

KEY = os.urandom(32)
BID = "20261201T060000Z-abcdef"


def _record(**changes: object) -> RunRecord:
    fields: dict[str, object] = {
        "kind": "drill",
        "cluster": "prod",
        "backup_id": BID,
        "at": "2026-12-01T07:00:00Z",
        "key": f"prod/prod/records/{BID}/drill-20261201T070000Z-000001.json",
        "passed": True,
        "exit_code": 0,
        "summary": {"rto_seconds": 12.5, "stages": {"fetch": 1.0}},
    }
    fields.update(changes)
    record = RunRecord(**fields)  # type: ignore[arg-type]
    record.mac = record.compute_mac(KEY)
    return record


def test_round_trip_and_mac() -> None:
    record = _record()
    loaded = RunRecord.loads(record.dumps(), record.key)
    assert loaded.body() == record.body()
    assert loaded.check_mac(KEY) and loaded.authenticated is True
    assert not loaded.check_mac(os.urandom(32)) and loaded.authenticated is False


@pytest.mark.parametrize(
    "field, value",
    [
        ("backup_id", "20261202T060000Z-123456"),  # claims another backup
        ("passed", False),
        ("at", "2026-12-02T07:00:00Z"),  # claims a newer time
        ("key", f"prod/prod/records/{BID}/drill-x.json"),  # moved
        ("cluster", "staging"),
    ],
)
def test_every_field_is_bound_by_the_mac(field: str, value: object) -> None:
    record = _record()
    setattr(record, field, value)
    assert not record.check_mac(KEY)


@pytest.mark.parametrize(
    "raw",
    [
        b"not json",
        b"[]",
        b'{"format": 1}',
        b"{" + b'"a":1,' * 70_000 + b'"b":2}',  # larger than any record
        _record(kind="restore").dumps(),
        _record(backup_id="../../etc").dumps(),
        _record(exit_code=-1).dumps(),
        _record(passed="yes").dumps(),
        _record(summary=["x"]).dumps(),
    ],
)
def test_hostile_records_are_integrity_errors(raw: bytes) -> None:
    with pytest.raises(IntegrityError):
        RunRecord.loads(raw, "prod/prod/records/x.json")


def test_newest_skips_what_does_not_authenticate() -> None:
    genuine = _record(at="2026-12-01T07:00:00Z")
    planted = _record(at="2026-12-02T07:00:00Z")
    planted.mac = "0" * 64
    failing = _record(at="2026-12-03T07:00:00Z", passed=False, exit_code=10)
    failing.mac = None
    records = [failing, planted, genuine]  # newest first, as list_records sorts

    def check(record: RunRecord) -> bool:
        return record.check_mac(KEY)

    assert newest(records, "drill") is failing
    assert newest(records, "drill", passed=True) is planted  # unauthenticated: prune's view
    assert newest(records, "drill", passed=True, authenticate=check) is genuine
    assert newest(records, "verify") is None
    assert newest(records, "drill", passed=True, existing={"other"}) is None
