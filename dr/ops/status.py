"""`dr status`: is this cluster recoverable right now, and how do we know?

Per cluster: the newest backup's age against the schedule (the RPO if Vault died now),
the newest verified and the newest drilled backup with the drill's result, RTO and stage
times (from the drill records, dr/ops/records.py), the newest backup's recipients, the
lock holder if a run is going, and debris waiting for `dr prune`.

Each finding is a check with a Nagios state (OK / WARNING / CRITICAL). The two that make
a monitoring check page somebody are CRITICAL and end in exit 15 (STALE): no backup, or
the newest is older than `status.max_backup_age`; no passing drill, or the newest passing
one is older than `status.max_drill_age`. Everything else is a WARNING (exit 0), because
it needs a look, not a wake-up: a missed run, a failed drill after a passing one, a stale
lock, damaged manifests, debris.

A passing drill or verify counts only when its record authenticates under the backup's
data key (unwrapped with the configured recipients): a record planted in the bucket
cannot make an undrilled cluster look drilled.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from dr.config import Config
from dr.crypto.recipients import KeyWrapper, select_wrappers
from dr.errors import DRError, ExitCode
from dr.manifest import Layout, Manifest
from dr.ops.find import list_backups, trust_of, unlock
from dr.ops.records import RunRecord, list_records, newest
from dr.progress import human_duration
from dr.storage.base import BackupStore
from dr.timesource import Now, iso, parse_iso, utcnow

log = logging.getLogger(__name__)

OK, WARNING, CRITICAL, UNKNOWN = "OK", "WARNING", "CRITICAL", "UNKNOWN"
NAGIOS_CODES = {OK: 0, WARNING: 1, CRITICAL: 2, UNKNOWN: 3}
_RANK = {OK: 0, WARNING: 1, UNKNOWN: 2, CRITICAL: 3}
# A backup older than this many schedules has missed a run: worth a look, not a page.
MISSED_RUN_FACTOR = 1.5


@dataclass
class Check:
    name: str  # backup_age | drill_age | drill_result | verify | lock | debris | manifests ...
    state: str
    message: str
    pages: bool = False  # CRITICAL and one of the two age checks: exit 15

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "state": self.state, "message": self.message}


@dataclass
class StatusReport:
    cluster: str
    store: str
    checked_at: str
    thresholds: dict[str, float]
    checks: list[Check] = field(default_factory=list)
    newest_backup: dict[str, Any] | None = None
    newest_verified: dict[str, Any] | None = None
    newest_drill: dict[str, Any] | None = None
    newest_passing_drill: dict[str, Any] | None = None
    backups: int = 0
    unreadable_manifests: list[str] = field(default_factory=list)
    unreadable_records: list[str] = field(default_factory=list)
    lock: dict[str, Any] | None = None
    debris: dict[str, Any] | None = None

    @property
    def state(self) -> str:
        return max((c.state for c in self.checks), key=_RANK.__getitem__, default=OK)

    @property
    def stale(self) -> list[Check]:
        return [c for c in self.checks if c.pages]

    @property
    def exit_code(self) -> int:
        return int(ExitCode.STALE) if self.stale else int(ExitCode.OK)

    def summary_line(self) -> str:
        """The Nagios status line: `VAULT-DR CRITICAL - prod: ...; ...`."""
        worst = [c for c in self.checks if c.state == self.state] if self.state != OK else []
        shown = worst or [c for c in self.checks if c.name in ("backup_age", "drill_age")]
        text = "; ".join(c.message for c in shown)
        return f"VAULT-DR {self.state} - {self.cluster}: {text}"

    def to_json(self) -> dict[str, Any]:
        return {
            "cluster": self.cluster,
            "store": self.store,
            "checked_at": self.checked_at,
            "state": self.state,
            "exit_code": self.exit_code,
            "thresholds": self.thresholds,
            "checks": [c.to_json() for c in self.checks],
            "newest_backup": self.newest_backup,
            "newest_verified": self.newest_verified,
            "newest_drill": self.newest_drill,
            "newest_passing_drill": self.newest_passing_drill,
            "backups": self.backups,
            "unreadable_manifests": self.unreadable_manifests,
            "unreadable_records": self.unreadable_records,
            "lock": self.lock,
            "debris": self.debris,
        }


def _age(now: datetime, when: str) -> float:
    return max(0.0, (now - parse_iso(when)).total_seconds())


def _backup_json(m: Manifest, now: datetime) -> dict[str, Any]:
    return {
        "backup_id": m.backup_id,
        "created_at": m.created_at,
        "age_seconds": round(_age(now, m.created_at), 3),
        "snapshot_bytes": m.snapshot.plaintext_size,
        "stored_bytes": m.snapshot.ciphertext_size + m.catalog.ciphertext_size,
        "catalog_secrets": m.catalog_counts.get("secrets"),
        "mounts_skipped": m.catalog_counts.get("mounts_skipped", 0),
        "recipients": [f"{s.type}:{s.name}" for s in m.recipients],
        "signed_by": (m.writer or {}).get("key_id"),
    }


def _num(value: Any) -> float | None:
    """A number read from a stored record (hostile until proven otherwise)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _record_json(record: RunRecord, now: datetime) -> dict[str, Any]:
    data: dict[str, Any] = {
        "backup_id": record.backup_id,
        "at": record.at,
        "age_seconds": round(_age(now, record.at), 3),
        "passed": record.passed,
        "exit_code": record.exit_code,
        "authenticated": record.authenticated,
        "record": record.key,
    }
    if record.kind == "drill":
        summary = record.summary
        stages = summary.get("stages")
        items = summary.get("items")
        data.update(
            rto_seconds=_num(summary.get("rto_seconds")),
            rto_objective_seconds=_num(summary.get("rto_objective_seconds")),
            backup_age_seconds=_num(summary.get("backup_age_seconds")),
            stages={str(k): _num(v) for k, v in stages.items()} if isinstance(stages, dict) else {},
            items={str(k): _num(v) for k, v in items.items()} if isinstance(items, dict) else {},
            error=str(summary.get("error"))[:300] if summary.get("error") else None,
        )
    return data


class _RecordAuthenticator:
    """Checks records' MACs with their backups' data keys, one unwrap per backup."""

    def __init__(self, backups: dict[str, Manifest], wrappers: Callable[[], list[KeyWrapper]]):
        self._backups = backups
        self._wrappers = wrappers
        self._keys: dict[str, bytes | None] = {}
        self.problem = ""  # why the last record could not be authenticated

    def __call__(self, record: RunRecord) -> bool:
        manifest = self._backups.get(record.backup_id)
        if manifest is None:
            self.problem = f"its backup {record.backup_id} is gone or unreadable"
            record.authenticated = False
            return False
        if record.backup_id not in self._keys:
            try:
                self._keys[record.backup_id], _ = unlock(manifest, self._wrappers())
            except DRError as exc:
                self._keys[record.backup_id] = None
                self.problem = f"the data key of {record.backup_id} cannot be unwrapped: {exc}"
        key = self._keys[record.backup_id]
        if key is None:
            record.authenticated = False
            return False
        if not record.check_mac(key):
            self.problem = f"{record.key} does not authenticate (planted or damaged)"
            return False
        return True


def run_status(
    config: Config,
    store: BackupStore,
    *,
    now: Now = utcnow,
    identity: Any = None,
) -> StatusReport:
    at = now()
    layout = Layout(config.storage.prefix, config.cluster)
    limits = config.status
    report = StatusReport(
        cluster=config.cluster,
        store=store.describe(),
        checked_at=iso(at),
        thresholds={
            "schedule_seconds": limits.schedule,
            "max_backup_age_seconds": limits.max_backup_age,
            "max_drill_age_seconds": limits.max_drill_age,
        },
    )
    trust = trust_of(config.encryption, allow_unsigned=config.encryption.allow_unsigned)
    listing = list_backups(store, layout, writer=trust.writer, allow_unsigned=trust.allow_unsigned)
    report.backups = len(listing.backups)
    report.unreadable_manifests = listing.unreadable
    by_id = {m.backup_id: m for m in listing.backups}
    _backup_checks(report, listing.backups, at, limits.schedule, limits.max_backup_age)

    records, report.unreadable_records = list_records(store, layout)
    wrappers: list[KeyWrapper] | None = None

    def get_wrappers() -> list[KeyWrapper]:
        nonlocal wrappers
        if wrappers is None:
            wrappers = select_wrappers(config.encryption, identity)
        return wrappers

    auth = _RecordAuthenticator(by_id, get_wrappers)
    _drill_checks(report, records, at, limits.max_drill_age, auth)
    verified = newest(records, "verify", passed=True, authenticate=auth)
    report.newest_verified = _record_json(verified, at) if verified else None
    latest_verify = newest(records, "verify")
    if latest_verify is not None and not latest_verify.passed:
        report.checks.append(
            Check(
                "verify",
                WARNING,
                f"the newest dr verify ({latest_verify.backup_id}, "
                f"{human_duration(_age(at, latest_verify.at))} ago) failed with exit "
                f"{latest_verify.exit_code}",
            )
        )
    _lock_check(report, store, layout, now, config.lock.lease)
    _debris_check(report, store, layout, now, config.retention.debris_grace)
    if listing.unreadable:
        report.checks.append(
            Check(
                "manifests",
                WARNING,
                f"{len(listing.unreadable)} manifest(s) fail "
                f"authentication or do not parse (first: {listing.unreadable[0][:160]}); "
                "find out who wrote them (dr list)",
            )
        )
    if report.unreadable_records:
        report.checks.append(
            Check(
                "records",
                WARNING,
                f"{len(report.unreadable_records)} drill/verify "
                f"record(s) do not parse (first: {report.unreadable_records[0][:160]})",
            )
        )
    return report


def _backup_checks(
    report: StatusReport,
    backups: list[Manifest],
    at: datetime,
    schedule: float,
    max_age: float,
) -> None:
    if not backups:
        report.checks.append(
            Check("backup_age", CRITICAL, "no backup: run dr backup (and schedule it)", True)
        )
        return
    newest_backup = backups[0]
    report.newest_backup = _backup_json(newest_backup, at)
    age = _age(at, newest_backup.created_at)
    text = f"newest backup {newest_backup.backup_id} is {human_duration(age)} old"
    if age > max_age:
        report.checks.append(
            Check(
                "backup_age",
                CRITICAL,
                f"{text}, above status.max_backup_age "
                f"{human_duration(max_age)}: check that dr backup runs",
                True,
            )
        )
    elif age > schedule * MISSED_RUN_FACTOR:
        report.checks.append(
            Check(
                "backup_age",
                WARNING,
                f"{text}: a scheduled run (every {human_duration(schedule)}) was missed",
            )
        )
    else:
        report.checks.append(Check("backup_age", OK, text))
    if newest_backup.catalog_counts.get("mounts_skipped", 0):
        report.checks.append(
            Check(
                "catalog",
                WARNING,
                f"the newest backup's catalog is partial "
                f"({newest_backup.catalog_counts['mounts_skipped']} mount(s) not listed): "
                "extend the backup policy (docs/vault-policy.md)",
            )
        )


def _drill_checks(
    report: StatusReport,
    records: list[RunRecord],
    at: datetime,
    max_age: float,
    auth: _RecordAuthenticator,
) -> None:
    latest = newest(records, "drill")
    report.newest_drill = _record_json(latest, at) if latest else None
    passing = newest(records, "drill", passed=True, authenticate=auth)
    report.newest_passing_drill = _record_json(passing, at) if passing else None
    if report.newest_drill is not None and latest is not None:
        report.newest_drill["authenticated"] = latest.authenticated
    if passing is None:
        why = f" (a passing record was ignored: {auth.problem})" if auth.problem else ""
        report.checks.append(
            Check(
                "drill_age",
                CRITICAL,
                f"no passing drill{why}: run dr drill (and schedule it)",
                True,
            )
        )
    else:
        age = _age(at, passing.at)
        rto = _num(passing.summary.get("rto_seconds"))
        text = f"last passing drill {human_duration(age)} ago ({passing.backup_id}" + (
            f", RTO {rto:.1f} s)" if rto is not None else ")"
        )
        if age > max_age:
            report.checks.append(
                Check(
                    "drill_age",
                    CRITICAL,
                    f"{text}, above status.max_drill_age {human_duration(max_age)}: run dr drill",
                    True,
                )
            )
        else:
            report.checks.append(Check("drill_age", OK, text))
    if latest is not None and not latest.passed and (passing is None or latest.at > passing.at):
        error = latest.summary.get("error")
        report.checks.append(
            Check(
                "drill_result",
                WARNING,
                f"the newest drill ({latest.backup_id}, "
                f"{human_duration(_age(at, latest.at))} ago) failed with exit "
                f"{latest.exit_code}" + (f": {str(error)[:200]}" if error else ""),
            )
        )


def _lock_check(
    report: StatusReport, store: BackupStore, layout: Layout, now: Now, lease: float
) -> None:
    from dr.storage.lock import read_holder

    try:
        holder = read_holder(store, layout.lock_key, now=now, lease=lease)
    except DRError as exc:
        report.checks.append(Check("lock", WARNING, f"cannot read the run lock: {exc.message}"))
        return
    if holder is None:
        return
    expired = holder.expired(now())
    report.lock = {
        "holder": holder.describe(),
        "host": holder.host,
        "pid": holder.pid,
        "command": holder.command,
        "started_at": iso(holder.started_at),
        "expires_at": iso(holder.expires_at),
        "expired": expired,
    }
    if expired:
        report.checks.append(
            Check(
                "lock",
                WARNING,
                f"a stale run lock ({holder.describe()}) expired: its run "
                "died; the next run takes it over",
            )
        )
    else:
        report.checks.append(Check("lock", OK, f"a run is going: {holder.describe()}"))


def _debris_check(
    report: StatusReport, store: BackupStore, layout: Layout, now: Now, grace: float
) -> None:
    from dr.ops.prune import find_debris

    try:
        debris = find_debris(store, layout, now=now, grace=grace)
    except DRError as exc:
        report.checks.append(Check("debris", WARNING, f"cannot look for debris: {exc.message}"))
        return
    report.debris = debris.to_json()
    removable = debris.removable_count
    if removable:
        report.checks.append(
            Check(
                "debris",
                WARNING,
                f"{removable} leftover(s) of failed or killed runs wait for dr prune",
            )
        )
