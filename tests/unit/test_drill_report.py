"""Drill reports and exit-code precedence (pure logic)."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from dr.errors import BackupTooOld, DrillFailed, ExitCode, IntegrityError, RTOExceeded
from dr.ops.checks import MISSING, OK, CheckReport, FamilyResult
from dr.ops.drill import DrillResult
from dr.ops.report import exit_code, failure, to_json, to_junit, to_markdown, write_reports


def result(*, missing: bool = False, rto: float = 10.0, rpo: float = 60.0) -> DrillResult:
    kv2 = FamilyResult("kv2_secrets")
    kv2.add(OK)
    if missing:
        kv2.add(MISSING, "app/lost (catalog version 3)")
    checks = CheckReport([FamilyResult("mounts"), kv2], 2, not missing, 0.1, 2, 20.0)
    r = DrillResult(
        "20261126T060000Z-3f9a1c", "prod", "2026-11-26T06:00:00Z", "2026-11-26T07:00:00Z"
    )
    r.stages = {
        "fetch": 0.1,
        "provision": 1.0,
        "restore": 7.0,
        "authenticate": 0.1,
        "verify": 1.5,
        "teardown": 1.0,
    }
    r.checks, r.rto_seconds, r.rpo_seconds = checks, rto, rpo
    r.rto_objective, r.max_backup_age = 15.0, 3600.0
    return r


def test_exit_code_precedence() -> None:
    assert exit_code(result()) == ExitCode.OK
    assert exit_code(result(rpo=7200)) == ExitCode.BACKUP_TOO_OLD
    assert exit_code(result(rto=20, rpo=7200)) == ExitCode.RTO_EXCEEDED
    assert exit_code(result(missing=True, rto=20, rpo=7200)) == ExitCode.DRILL_FAILED
    stopped = result(missing=True)
    cause = IntegrityError("backup failed authentication")
    stopped.error, stopped.exception = cause.message, cause
    assert exit_code(stopped) == ExitCode.INTEGRITY
    # The error a failed drill ends in is of the class that carries its exit code.
    for kwargs, kind in (
        ({"rpo": 7200}, BackupTooOld),
        ({"rto": 20}, RTOExceeded),
        ({"missing": True}, DrillFailed),
    ):
        error = failure(result(**kwargs))
        assert type(error) is kind and error.exit_code == exit_code(result(**kwargs))
    assert failure(stopped) is cause and failure(result()) is None


def test_json_markdown_and_junit_name_the_first_failure(tmp_path: Path) -> None:
    r = result(missing=True)
    data = to_json(r)
    assert data["passed"] is False and data["exit_code"] == ExitCode.DRILL_FAILED
    assert "app/lost" in data["verdict"] and next(iter(data["stages"])) == "fetch"
    assert "app/lost" in to_markdown(r)
    suite = ET.fromstring(to_junit(r).split("\n", 1)[1])
    failed = [c.get("name") for c in suite.iter("testcase") if c.find("failure") is not None]
    assert failed == ["checks.kv2_secrets"]
    paths = write_reports(r, tmp_path / "reports", tmp_path / "junit.xml")
    assert len(paths) == 3
    assert json.loads(paths[0].read_text())["backup"]["id"] == r.backup_id


def test_passing_report_has_no_failures() -> None:
    r = result()
    suite = ET.fromstring(to_junit(r).split("\n", 1)[1])
    assert suite.get("failures") == "0" and int(suite.get("tests", "0")) >= 3
    assert to_json(r)["verdict"] == "PASSED"


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0.25, "0.2 s"), (1, "1 s"), (45, "45 s"), (600, "10 min"), (5.2 * 3600, "5.2 h"),
     (3 * 86400 + 4 * 3600, "3 d 4 h")],
)  # fmt: skip
def test_ages_read_in_a_readable_unit(seconds: float, text: str) -> None:
    from dr.progress import human_duration

    assert human_duration(seconds) == text
