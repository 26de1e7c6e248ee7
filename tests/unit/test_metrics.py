"""The pure parts of dr/ops/metrics.py: stage mapping, merging, the textfile round trip."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from dr.errors import (
    BackupTooOld,
    ConfigError,
    DrillFailed,
    PartialCatalog,
    StorageError,
    VaultError,
)
from dr.ops import metrics as m
from dr.ops.drill import DrillResult

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("exc", "stage", "code"),
    [
        (ConfigError("dr.yaml", "vault", "bad"), "config", 2),
        (VaultError("x"), "vault", 3),
        (StorageError("x"), "storage", 4),
        (PartialCatalog("x"), "catalog", 14),
        (DrillFailed("x"), "verify", 10),
        (BackupTooOld("x"), "backup_age", 12),
        (KeyboardInterrupt(), "interrupted", 130),
        (RuntimeError("bug"), "internal", 1),
    ],
)
def test_stage_and_exit_code_of_an_error(exc: BaseException, stage: str, code: int) -> None:
    assert m.stage_of(exc) == stage
    assert m.exit_code_of(exc) == code


def test_a_drill_failure_is_counted_under_the_stage_that_stopped() -> None:
    result = DrillResult(backup_id="b", cluster="prod", backup_created_at="", started_at="")
    result.stages = {"preflight": 0.0, "fetch": 1.0, "teardown": 0.1}
    result.exception = VaultError("gone")
    assert m.drill_stage(result, result.exception) == "fetch"
    # A failure the finished drill raised (items missing): the error's own stage.
    assert m.drill_stage(result, DrillFailed("missing")) == "verify"


def outcome(code: int, at: float, cluster: str = "prod", stage: str | None = None) -> m.Outcome:
    return m.Outcome("backup", cluster, code, "" if code == 0 else "boom", stage, at)


def stored(at: float, cluster: str = "prod") -> m.Measurement:
    run = m.Measurement("backup", cluster)
    m.record_backup(
        run, seconds=2.0, snapshot_bytes=100, stored_bytes=150, catalog_secrets=7, at=at
    )
    m.record_outcome(run, outcome(0, at, cluster))
    return run


def failed(at: float, code: int = 3, stage: str = "vault") -> m.Measurement:
    run = m.Measurement("backup", "prod")
    m.record_outcome(run, outcome(code, at, stage=stage))
    return run


def values(families: list[m.Family]) -> dict[tuple[str, m.Labels], float]:
    return {(f.name, k): v for f in families for k, v in f.samples.items()}


P = (("cluster", "prod"),)


def test_a_failure_carries_the_last_success_forward_and_counts() -> None:
    state = m.merge([], stored(1000.0))
    state = m.merge(state, failed(2000.0))
    state = m.merge(state, failed(3000.0))
    state = m.merge(state, failed(3500.0, code=4, stage="storage"))
    got = values(state)
    assert got[("vault_dr_backup_last_success_timestamp_seconds", P)] == 1000.0
    assert got[("vault_dr_backup_snapshot_bytes", P)] == 100
    assert got[("vault_dr_backup_last_run_timestamp_seconds", P)] == 3500.0
    assert got[("vault_dr_backup_last_exit_code", P)] == 4
    vault = m.labels_of({"cluster": "prod", "stage": "vault", "exit_code": "3"})
    storage = m.labels_of({"cluster": "prod", "stage": "storage", "exit_code": "4"})
    assert got[("vault_dr_backup_failures_total", vault)] == 2
    assert got[("vault_dr_backup_failures_total", storage)] == 1
    # The next success: new sizes and time, the counters keep counting.
    state = m.merge(state, stored(4000.0))
    got = values(state)
    assert got[("vault_dr_backup_last_success_timestamp_seconds", P)] == 4000.0
    assert got[("vault_dr_backup_failures_total", vault)] == 2


def test_other_clusters_and_foreign_series_are_kept() -> None:
    foreign = m.Family("node_something", "gauge", "not ours", {(): 5.0})
    state = m.merge([foreign], stored(1000.0, cluster="dev"))
    state = m.merge(state, stored(2000.0, cluster="prod"))
    got = values(state)
    assert got[("vault_dr_backup_last_success_timestamp_seconds", (("cluster", "dev"),))] == 1000
    assert got[("vault_dr_backup_last_success_timestamp_seconds", P)] == 2000
    assert got[("node_something", ())] == 5.0


def test_a_drill_replaces_its_stage_times_and_keeps_a_measured_rto() -> None:
    first = DrillResult(backup_id="b", cluster="prod", backup_created_at="", started_at="")
    first.stages = {"fetch": 1.0, "verify": 2.0, "teardown": 0.5}
    first.rto_seconds = 9.0
    run = m.Measurement("drill", "prod")
    m.record_drill(run, first)
    state = m.merge([], run)
    early = DrillResult(backup_id="b", cluster="prod", backup_created_at="", started_at="")
    early.stages = {"fetch": 0.2, "teardown": 0.1}
    run = m.Measurement("drill", "prod")
    m.record_drill(run, early)
    got = values(m.merge(state, run))
    stages = {dict(k)["stage"]: v for (n, k), v in got.items() if n.endswith("stage_seconds")}
    assert stages == {"fetch": 0.2, "teardown": 0.1}  # no stale verify time
    assert got[("vault_dr_drill_rto_seconds", P)] == 9.0


def test_the_textfile_round_trips_through_the_library_parser(tmp_path: Path) -> None:
    path = tmp_path / "vault_dr.prom"
    m.write_textfile(path, stored(1000.0))
    m.write_textfile(path, failed(2000.0))
    families = {f.name: f for f in text_string_to_metric_families(path.read_text())}
    assert families["vault_dr_backup_failures"].type == "counter"
    (sample,) = families["vault_dr_backup_failures"].samples
    assert sample.name == "vault_dr_backup_failures_total"
    assert sample.labels == {"cluster": "prod", "stage": "vault", "exit_code": "3"}
    assert families["vault_dr_backup_last_success_timestamp_seconds"].samples[0].value == 1000
    # Only the file and its lock: the temp file was renamed over it.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["vault_dr.prom", "vault_dr.prom.lock"]


def test_a_textfile_that_does_not_parse_is_rewritten(tmp_path: Path) -> None:
    path = tmp_path / "vault_dr.prom"
    path.write_text("this is {not prometheus\n")
    m.write_textfile(path, failed(2000.0))
    assert "vault_dr_backup_failures_total" in path.read_text()


def test_publish_never_raises(tmp_path: Path) -> None:
    problems = m.publish(
        failed(1.0),
        textfile=tmp_path / "missing-dir" / "x.prom",
        pushgateway="http://127.0.0.1:1",
        job="vault_dr",
    )
    assert len(problems) == 2, problems


def test_every_series_is_documented() -> None:
    doc = (REPO / "docs" / "metrics.md").read_text()
    documented = set(re.findall(r"`(vault_dr_[a-z_]+)`", doc))
    assert set(m.SERIES) <= documented, sorted(set(m.SERIES) - documented)
    assert documented <= set(m.SERIES), sorted(documented - set(m.SERIES))
