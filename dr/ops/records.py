"""Drill and verify records: one small MACed JSON object per run, stored beside the backups.

`dr status` reads them to say when a backup was last verified and last drilled, with the
drill's RTO and stage times; `dr prune` never deletes the newest backup a passing record
names. Layout: `{prefix}/{cluster}/records/{backup_id}/{kind}-{YYYYmmddTHHMMSSZ}-{hex}.json`,
so removing a backup removes its records with one prefix, and listing one prefix finds
every record of the cluster.

Trust (the attacker can write to the bucket):
- A record is MACed with HMAC-SHA256 under a key derived (HKDF, its own info string) from
  the data key of the backup it describes, over its canonical body, which names its kind,
  cluster, backup id, time and its own object key. Only a run that could unwrap that
  backup's data key (a drill, a verify) can make one; a record copied to another backup or
  another name fails.
- A PASSING record counts (for `dr status` and the prune protections) only once its MAC is
  checked, which needs the backup's data key: status unwraps it with the configured
  recipients. A FAILING record may carry no MAC (the drill failed before it had the key,
  e.g. the KMS was down): it is shown as a failure and can only make status more
  pessimistic, never hide a problem.
- Prune reads records without authenticating them (`newest_passing(..., authenticate=None)`):
  a planted record can only make it keep one more backup.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from dr import validate
from dr.errors import DRError, IntegrityError
from dr.manifest import BACKUP_ID_RE, Layout
from dr.storage.base import BackupStore
from dr.timesource import Now, iso, parse_iso, utcnow

log = logging.getLogger(__name__)

RECORD_FORMAT = 1
KINDS = ("drill", "verify")
_MAC_INFO = b"vault-dr record v1"
MAX_RECORD = 64 * 1024  # a record is a few hundred bytes; anything larger is hostile
_FIELDS = frozenset({"format", "kind", "cluster", "backup_id", "at", "key", "passed",
                     "exit_code", "summary", "mac"})  # fmt: skip


def _mac_key(data_key: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_MAC_INFO).derive(data_key)


@dataclass
class RunRecord:
    kind: str  # drill | verify
    cluster: str
    backup_id: str
    at: str  # when the run finished, ISO UTC
    key: str  # the object key it is stored under (bound into the MAC)
    passed: bool
    exit_code: int
    # drill: rto_seconds, stages, items, backup_age_seconds, runtime, verdict;
    # verify: seconds. Numbers and short strings only: never a secret or a path's value.
    summary: dict[str, Any] = field(default_factory=dict)
    mac: str | None = None
    authenticated: bool | None = None  # None: not checked; set by `authenticate`

    def body(self) -> dict[str, Any]:
        return {
            "format": RECORD_FORMAT,
            "kind": self.kind,
            "cluster": self.cluster,
            "backup_id": self.backup_id,
            "at": self.at,
            "key": self.key,
            "passed": self.passed,
            "exit_code": self.exit_code,
            "summary": self.summary,
        }

    def compute_mac(self, data_key: bytes) -> str:
        canonical = json.dumps(self.body(), sort_keys=True, separators=(",", ":")).encode()
        return hmac.new(_mac_key(data_key), canonical, hashlib.sha256).hexdigest()

    def check_mac(self, data_key: bytes) -> bool:
        ok = self.mac is not None and hmac.compare_digest(self.mac, self.compute_mac(data_key))
        self.authenticated = ok
        return ok

    def dumps(self) -> bytes:
        return json.dumps({**self.body(), "mac": self.mac}, indent=1, sort_keys=True).encode()

    @property
    def at_time(self) -> datetime:
        return parse_iso(self.at)

    @classmethod
    def loads(cls, raw: bytes, key: str) -> RunRecord:
        """Parse a stored record, every field checked (IntegrityError on anything else)."""
        if len(raw) > MAX_RECORD:
            raise IntegrityError(f"{key}: a record of {len(raw)} bytes is not one of ours")
        data = validate.load_json_object(raw, key)
        entries = validate.obj(data, key, required=_FIELDS - {"mac"}, allowed=_FIELDS)
        if entries["format"] != RECORD_FORMAT:
            raise IntegrityError(f"{key}: unknown record format")
        kind = validate.text(entries["kind"], f"{key}.kind", max_len=16)
        if kind not in KINDS:
            raise IntegrityError(f"{key}: unknown record kind")
        backup_id = validate.text(entries["backup_id"], f"{key}.backup_id", max_len=64)
        if not BACKUP_ID_RE.match(backup_id):
            raise IntegrityError(f"{key}: backup_id is not a backup id")
        if not isinstance(entries["passed"], bool):
            raise IntegrityError(f"{key}.passed: expected true or false")
        summary = validate.obj(entries["summary"], f"{key}.summary")
        mac = entries.get("mac")
        return cls(
            kind=kind,
            cluster=validate.text(entries["cluster"], f"{key}.cluster", max_len=64),
            backup_id=backup_id,
            at=validate.iso_utc(entries["at"], f"{key}.at"),
            key=validate.text(entries["key"], f"{key}.key", max_len=1024),
            passed=entries["passed"],
            exit_code=validate.integer(entries["exit_code"], f"{key}.exit_code", hi=255),
            summary=dict(summary),
            mac=None if mac is None else validate.hex64(mac, f"{key}.mac"),
        )


def record_key(layout: Layout, kind: str, backup_id: str, at: datetime) -> str:
    stamp = at.strftime("%Y%m%dT%H%M%SZ")
    return f"{layout.records_prefix}{backup_id}/{kind}-{stamp}-{os.urandom(3).hex()}.json"


def write_record(
    store: BackupStore,
    layout: Layout,
    kind: str,
    backup_id: str,
    *,
    passed: bool,
    exit_code: int,
    summary: dict[str, Any],
    data_key: bytes | None,
    now: Now = utcnow,
) -> str | None:
    """Store one record; returns its key, or None when the store refused (logged: a
    record is bookkeeping, its failure never changes the run's result)."""
    at = now()
    key = record_key(layout, kind, backup_id, at)
    record = RunRecord(kind, layout.cluster, backup_id, iso(at), key, passed, exit_code, summary)
    if data_key is not None:
        record.mac = record.compute_mac(data_key)
    elif passed:  # a pass without the key cannot happen: a drill/verify that passed had it
        raise ValueError("a passing record needs the backup's data key")
    try:
        store.put_bytes(key, record.dumps(), metadata={"backup-id": backup_id, "object": kind})
    except DRError as exc:
        log.warning(
            "could not store the %s record of %s (%s); `dr status` will not see this run: "
            "give the role s3:PutObject on %s*",
            kind,
            backup_id,
            exc.message,
            layout.records_prefix,
        )
        return None
    log.info("%s record stored: %s", kind, key, extra={"backup_id": backup_id, "record": key})
    return key


def list_records(store: BackupStore, layout: Layout) -> tuple[list[RunRecord], list[str]]:
    """Every readable record of the cluster, newest first, and the keys that were not
    (hostile or damaged: reported by the caller, never fatal)."""
    records: list[RunRecord] = []
    unreadable: list[str] = []
    for info in store.list(layout.records_prefix):
        if not info.key.endswith(".json"):
            continue
        try:
            if info.size > MAX_RECORD:
                raise IntegrityError(f"{info.key}: {info.size} bytes is not a record")
            record = RunRecord.loads(store.get_bytes(info.key), info.key)
            _check_place(record, layout, info.key)
        except DRError as exc:
            unreadable.append(f"{info.key}: {exc.message}")
            continue
        records.append(record)
    records.sort(key=lambda r: (r.at, r.key), reverse=True)
    return records, unreadable


def _check_place(record: RunRecord, layout: Layout, key: str) -> None:
    """A record describes the backup directory it sits in and names its own key (the MAC
    covers both), so one moved to another backup or cluster is refused before use."""
    expected_dir = f"{layout.records_prefix}{record.backup_id}/"
    if record.key != key or not key.startswith(expected_dir) or record.cluster != layout.cluster:
        raise IntegrityError(f"{key}: the record was moved or copied from elsewhere")


Authenticator = Callable[[RunRecord], bool]


def newest(
    records: Iterable[RunRecord],
    kind: str,
    *,
    passed: bool | None = None,
    authenticate: Authenticator | None = None,
    existing: set[str] | None = None,
) -> RunRecord | None:
    """The newest record of `kind` (optionally only passing/failing ones, only of backups
    in `existing`). With `authenticate`, a passing record counts only when it returns True;
    those that do not are logged and skipped."""
    for record in records:
        if record.kind != kind or (passed is not None and record.passed != passed):
            continue
        if existing is not None and record.backup_id not in existing:
            continue
        if authenticate is not None and record.passed and not authenticate(record):
            log.warning(
                "WARNING: %s does not authenticate under its backup's key (planted or "
                "damaged); ignored",
                record.key,
            )
            continue
        return record
    return None


def newest_passing(
    store: BackupStore, layout: Layout, *, authenticate: Authenticator | None = None
) -> dict[str, str]:
    """kind -> the backup id of its newest passing record ("drill", "verify"); what prune
    protects. Unauthenticated by default: a planted record only keeps one more backup."""
    records, _ = list_records(store, layout)
    found: dict[str, str] = {}
    for kind in KINDS:
        record = newest(records, kind, passed=True, authenticate=authenticate)
        if record is not None:
            found[kind] = record.backup_id
    return found


def drill_items(result: Any) -> dict[str, int]:
    """A DrillResult's items: verified (ok), failed (missing, mismatched, unreadable), and
    not cataloged (mounts the backup's catalog could not cover)."""
    families = result.checks.families if result.checks is not None else []
    return {
        "verified": sum(f.ok for f in families),
        "failed": sum(f.missing + f.mismatched + f.unreadable for f in families),
        "not_cataloged": len(result.not_cataloged),
    }


def drill_summary(result: Any, exit_code: int) -> dict[str, Any]:
    """What a drill record keeps of a DrillResult: numbers and the one-line error."""
    return {
        "rto_seconds": None if result.rto_seconds is None else round(result.rto_seconds, 3),
        "rto_objective_seconds": result.rto_objective,
        "stages": {name: round(sec, 3) for name, sec in result.stages.items()},
        "items": drill_items(result),
        "backup_age_seconds": round(result.rpo_seconds, 3),
        "runtime": result.runtime,
        "nodes": len(result.nodes) or 1,
        "error": (result.error or "")[:300] or None,
    }
