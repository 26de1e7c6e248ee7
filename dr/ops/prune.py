"""`dr prune`: apply the retention policy and remove the debris of killed runs.

Steps (docs/retention.md): list the backups, plan (dr/ops/retention.py), check Object
Lock on every version a removal would delete, then delete, each backup in the REVERSE
order of writing: every version of manifest.json first, then catalog.enc, then
snapshot.enc (and anything else under its id), then its records. Deletes are
permanent version deletes (DeleteObject with a VersionId): storage is freed, no delete
marker is left. `--dry-run` plans and checks locks with reads only.

Why manifest first: the manifest is the commit marker (invariant 2). Once its last
version is gone, what remains of the backup has no manifest: it is never listed or
restored, and a prune that dies there leaves plain debris, which the next prune
removes. Deleting the snapshot first would leave, for a moment or for good, a manifest
naming objects that no longer exist: a backup listed as whole that cannot be restored.

Trust (the attacker can write to the bucket but holds no writer key): prune must not be
made to delete a good backup.
- Only manifests the pinned writer key signed count as backups for the keep rules
  (unsigned ones too only where the config allows unsigned backups). Otherwise backups
  planted under newer ids would fill `keep_last` and the newest daily/weekly buckets and
  push the real ones out. Unsigned manifests are kept and reported, never deleted.
- A manifest that fails to parse, sits in the wrong place or fails its signature is
  kept with its whole backup and reported: an attacker who writes a bad new version of
  a real backup's manifest must not turn that backup into something prune deletes.
  Hiding a backup from the plan this way can only make the rules keep more of the
  others (each rule keeps the newest of the most recent buckets; removing one backup
  never pushes another out), never fewer.
- Debris is a backup id with objects and NO version of manifest.json at all. An id whose
  manifest's latest version is a delete marker (someone with s3:DeleteObject hid it)
  still has its data and every manifest version: it is "hidden", reported and kept.
  Purging it would turn a recoverable delete into a permanent one.
- Records (drill/verify) are read unauthenticated: a planted passing record can only
  protect one more backup.
- Anything that cannot be read fails the run before anything is deleted.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from dr.config import Config
from dr.errors import StorageError
from dr.manifest import (
    BACKUP_ID_RE,
    CATALOG_NAME,
    MANIFEST_NAME,
    SNAPSHOT_NAME,
    Layout,
    Manifest,
    backup_time,
)
from dr.ops.find import list_backups, trust_of
from dr.ops.retention import Candidate, Decision, Plan, Protections, check_policy, plan
from dr.storage.base import BackupStore, DeleteDenied, ObjectInfo, UploadInfo
from dr.storage.factory import open_store
from dr.timesource import Now, iso, parse_iso, utcnow

log = logging.getLogger(__name__)

PRUNER_HINT = (
    "dr prune needs s3:DeleteObject and s3:DeleteObjectVersion (and "
    "s3:AbortMultipartUpload) on the prefix; the backup role has none by design: run "
    "prune with the pruner role (terraform/, docs/retention.md)"
)
# Within a backup: the commit marker first, then the reverse of the writing order.
_DELETE_ORDER = {MANIFEST_NAME: 0, CATALOG_NAME: 1, SNAPSHOT_NAME: 2}


# --- what is stored, grouped by backup id ---------------------------------------------


@dataclass
class _Entries:
    """Every version and delete marker of one backup id: its objects and its records."""

    objects: list[ObjectInfo] = field(default_factory=list)
    markers: list[ObjectInfo] = field(default_factory=list)
    records: list[ObjectInfo] = field(default_factory=list)
    record_markers: list[ObjectInfo] = field(default_factory=list)

    def data_versions(self) -> list[ObjectInfo]:
        """The versions that hold data (and may hold an Object Lock): no delete markers."""
        return [*self.objects, *self.records]

    def has_manifest(self, layout: Layout, backup_id: str) -> bool:
        key = layout.key(backup_id, MANIFEST_NAME)
        return any(v.key == key for v in self.objects)

    def manifest_hidden(self, layout: Layout, backup_id: str) -> bool:
        key = layout.key(backup_id, MANIFEST_NAME)
        return any(m.key == key and m.is_latest for m in self.markers)

    def deletion_order(self, layout: Layout, backup_id: str) -> list[ObjectInfo]:
        """Manifest versions, catalog, snapshot, other objects, then delete markers,
        then records: at every point in between, no manifest names a missing object."""
        prefix = f"{layout.cluster_prefix}{backup_id}/"

        def rank(info: ObjectInfo) -> tuple[int, str]:
            return _DELETE_ORDER.get(info.key[len(prefix) :], len(_DELETE_ORDER)), info.key

        data = sorted(self.objects, key=rank)
        return [*data, *sorted(self.markers, key=rank), *self.records, *self.record_markers]

    def newest(self, backup_id: str) -> datetime:
        every = (*self.objects, *self.markers, *self.records, *self.record_markers)
        times = [e.last_modified for e in every]
        return max([*times, backup_time(backup_id)])


def _stored(store: BackupStore, layout: Layout) -> dict[str, _Entries]:
    found: dict[str, _Entries] = defaultdict(_Entries)
    versions = store.list_versions(layout.cluster_prefix)
    markers = store.list_delete_markers(layout.cluster_prefix)
    for info, is_marker in (*((v, False) for v in versions), *((m, True) for m in markers)):
        backup_id = layout.backup_id_of(info.key)
        if backup_id is not None:
            entries = found[backup_id]
            (entries.markers if is_marker else entries.objects).append(info)
            continue
        if info.key.startswith(layout.records_prefix):
            record_id = info.key[len(layout.records_prefix) :].partition("/")[0]
            if BACKUP_ID_RE.match(record_id):
                entries = found[record_id]
                (entries.record_markers if is_marker else entries.records).append(info)
    return dict(found)


# --- debris ------------------------------------------------------------------------------


@dataclass(frozen=True)
class DebrisItem:
    """What one killed run left: `kind` "objects" (every version and delete marker of a
    backup id that has no manifest version, and its records) or "upload" (one
    unfinished upload). `since` is its youngest time: the grace counts from it."""

    kind: str
    key: str  # the backup id's prefix, or the upload's key
    backup_id: str | None
    since: datetime
    size: int
    due: bool  # older than the grace: prune removes it
    versions: tuple[ObjectInfo, ...] = ()
    upload: UploadInfo | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "key": self.key,
            "backup_id": self.backup_id,
            "since": iso(self.since),
            "bytes": self.size,
            "versions": len(self.versions),
            "due": self.due,
        }


@dataclass(frozen=True)
class Debris:
    """The result of `find_debris`: `due` items are removed by the next prune, `waiting`
    ones are younger than the grace (perhaps a run still writing); `hidden` backup ids
    have manifest versions under a delete marker: not debris, kept and reported."""

    items: tuple[DebrisItem, ...]
    grace: float
    hidden: tuple[str, ...] = ()

    @property
    def due(self) -> list[DebrisItem]:
        return [i for i in self.items if i.due]

    @property
    def waiting(self) -> list[DebrisItem]:
        return [i for i in self.items if not i.due]

    @property
    def removable_count(self) -> int:
        return len(self.due)

    @property
    def removable_bytes(self) -> int:
        return sum(i.size for i in self.due)

    def to_json(self) -> dict[str, Any]:
        return {
            "grace_seconds": self.grace,
            "due": [i.to_json() for i in self.due],
            "waiting": [i.to_json() for i in self.waiting],
            "removable_count": self.removable_count,
            "removable_bytes": self.removable_bytes,
            "hidden": list(self.hidden),
        }


def find_debris(store: BackupStore, layout: Layout, *, now: Now, grace: float) -> Debris:
    """Leftovers of failed or killed runs under the cluster's prefix (read-only): objects
    of backup ids without any manifest version, and unfinished uploads; each `due` once
    older than `grace` seconds at `now()`."""
    return _debris(store, layout, _stored(store, layout), now(), grace)


def _debris(
    store: BackupStore, layout: Layout, stored: dict[str, _Entries], at: datetime, grace: float
) -> Debris:
    limit = timedelta(seconds=grace)
    items: list[DebrisItem] = []
    hidden: list[str] = []
    for backup_id in sorted(stored):
        entries = stored[backup_id]
        if entries.has_manifest(layout, backup_id):
            if entries.manifest_hidden(layout, backup_id):
                hidden.append(backup_id)
            continue  # a backup (listed, or unreadable and kept): never debris
        since = entries.newest(backup_id)
        ordered = entries.deletion_order(layout, backup_id)
        items.append(
            DebrisItem(
                kind="objects",
                key=f"{layout.cluster_prefix}{backup_id}/",
                backup_id=backup_id,
                since=since,
                size=sum(v.size for v in ordered),
                due=at - since >= limit,
                versions=tuple(ordered),
            )
        )
    for upload in store.list_uploads(layout.cluster_prefix):
        items.append(
            DebrisItem(
                kind="upload",
                key=upload.key,
                backup_id=layout.backup_id_of(upload.key),
                since=upload.initiated,
                size=0,
                due=at - upload.initiated >= limit,
                upload=upload,
            )
        )
    return Debris(tuple(items), grace, tuple(hidden))


# --- the result --------------------------------------------------------------------------


@dataclass
class PruneResult:
    cluster: str
    store: str
    dry_run: bool
    plan: Plan
    debris: Debris
    removed: list[str]  # backup ids removed (dry run: that would be)
    debris_removed: list[DebrisItem]  # (dry run: that would be)
    debris_locked: dict[str, str]  # debris key -> its Object Lock
    unreadable: list[str]  # "id: reason": kept, never deleted
    unsigned: list[str]  # unsigned backups, not counted while a writer key is pinned
    freed_bytes: int = 0

    @property
    def kept(self) -> list[Decision]:
        return [d for d in self.plan.decisions if d.kept]

    @property
    def locked(self) -> list[Decision]:
        return self.plan.locked

    @property
    def counts(self) -> dict[str, int]:
        """kept / removed / debris / locked, for metrics (docs/metrics.md)."""
        return {
            "kept": len(self.kept) + len(self.unreadable) + len(self.unsigned),
            "removed": len(self.removed),
            "debris": len(self.debris_removed),
            "locked": len(self.locked) + len(self.debris_locked),
        }

    def to_json(self) -> dict[str, Any]:
        return {
            "cluster": self.cluster,
            "store": self.store,
            "dry_run": self.dry_run,
            "counts": self.counts,
            "backups": [d.to_json() for d in self.plan.decisions],
            "removed": list(self.removed),
            "locked": [d.to_json() for d in self.locked],
            "unreadable": list(self.unreadable),
            "unsigned": list(self.unsigned),
            "hidden": list(self.debris.hidden),
            "debris": {
                **self.debris.to_json(),
                "removed": [i.to_json() for i in self.debris_removed],
                "locked": dict(self.debris_locked),
            },
            "freed_bytes": self.freed_bytes,
        }


# --- the run -----------------------------------------------------------------------------


def run_prune(
    config: Config, *, dry_run: bool, store: BackupStore | None = None, now: Now = utcnow
) -> PruneResult:
    """Plan, check locks, and (unless `dry_run`) delete, under the cluster's run lock.
    A dry run only reads: no version, no delete marker, no lock object is written."""
    check_policy(config.retention, config.source)
    trust = trust_of(config.encryption)
    store = store or open_store(config.storage)
    store.preflight(write=False)
    layout = Layout(config.storage.prefix, config.cluster)
    if dry_run:
        return _prune(config, store, layout, trust.writer, trust.allow_unsigned, now, True)
    from dr.ops.locking import cluster_lock

    with cluster_lock(config, store, "prune", now=now):
        return _prune(config, store, layout, trust.writer, trust.allow_unsigned, now, False)


def _prune(
    config: Config,
    store: BackupStore,
    layout: Layout,
    writer: Sequence[bytes] | None,
    allow_unsigned: bool,
    now: Now,
    dry_run: bool,
) -> PruneResult:
    policy = config.retention
    listing = list_backups(store, layout, writer=writer, allow_unsigned=True)
    counted, unsigned = _counted(listing.backups, writer, allow_unsigned)
    verified, drilled = _record_protections(store, layout, {m.backup_id for m in counted})
    at = now()
    candidates = [Candidate(m.backup_id, parse_iso(m.created_at)) for m in counted]
    stored = _stored(store, layout)
    first = plan(candidates, policy, now=at, protections=Protections(verified, drilled))
    # Object Lock, on every version a removal would delete, before anything is deleted.
    locked: dict[str, str] = {}
    for decision in first.removed:
        why = _lock_of(store, stored.get(decision.backup_id, _Entries()).data_versions(), at)
        if why is not None:
            locked[decision.backup_id] = why
    final = plan(candidates, policy, now=at, protections=Protections(verified, drilled, locked))
    debris = _debris(store, layout, stored, at, policy.debris_grace)
    debris_locked: dict[str, str] = {}
    debris_removable: list[DebrisItem] = []
    for item in debris.due:
        why = None
        if item.backup_id is not None and item.kind == "objects":
            why = _lock_of(store, stored[item.backup_id].data_versions(), at)
        if why is not None:
            debris_locked[item.key] = why
        else:
            debris_removable.append(item)
    result = PruneResult(
        cluster=config.cluster,
        store=store.describe(),
        dry_run=dry_run,
        plan=final,
        debris=debris,
        removed=[d.backup_id for d in final.removed],
        debris_removed=debris_removable,
        debris_locked=debris_locked,
        unreadable=list(listing.unreadable),
        unsigned=[m.backup_id for m in unsigned],
    )
    for bad in listing.unreadable:
        log.warning("unreadable manifest kept, with its whole backup: %s", bad[:300])
    if dry_run:
        return result
    for decision in sorted(final.removed, key=lambda d: d.backup_id):  # oldest first
        entries = stored.get(decision.backup_id, _Entries())
        result.freed_bytes += _remove_backup(store, layout, decision.backup_id, entries)
        log.info("backup %s removed (%s)", decision.backup_id, "; ".join(decision.reasons),
                 extra={"backup_id": decision.backup_id})  # fmt: skip
    for item in debris_removable:
        if item.upload is not None:
            _abort(store, item.upload)
        else:
            result.freed_bytes += _delete(store, item.versions, item.backup_id)
        log.info("debris removed: %s (since %s)", item.key, iso(item.since))
    return result


def _counted(
    backups: Sequence[Manifest], writer: Sequence[bytes] | None, allow_unsigned: bool
) -> tuple[list[Manifest], list[Manifest]]:
    """The backups the rules count, and the unsigned ones they do not (kept)."""
    if writer is None or allow_unsigned:
        for m in backups:
            if m.writer is None:
                log.warning(
                    "WARNING: unsigned backup %s counts for retention (unsigned backups are "
                    "allowed): one planted in the bucket could not be told apart",
                    m.backup_id,
                )
        return list(backups), []
    unsigned = [m for m in backups if m.writer is None]
    for m in unsigned:
        log.warning(
            "unsigned backup %s is kept and not counted: only backups the pinned writer key "
            "signed count for retention (remove it by hand if it is yours)",
            m.backup_id,
        )
    return [m for m in backups if m.writer is not None], unsigned


def _record_protections(
    store: BackupStore, layout: Layout, existing: set[str]
) -> tuple[frozenset[str], frozenset[str]]:
    """(verified, drilled): per kind, the NEWEST BACKUP with a passing record, and the
    backup the newest passing record names (a drill of `--backup random` may name an
    older one, which `dr status` shows as the last drill)."""
    from dr.ops.records import list_records

    records, _ = list_records(store, layout)
    found: dict[str, set[str]] = {"verify": set(), "drill": set()}
    for kind, ids in found.items():
        passing = [r for r in records if r.kind == kind and r.passed and r.backup_id in existing]
        if passing:
            ids.add(max(r.backup_id for r in passing))
            ids.add(passing[0].backup_id)  # list_records: newest record first
    return frozenset(found["verify"]), frozenset(found["drill"])


def _lock_of(store: BackupStore, versions: Iterable[ObjectInfo], at: datetime) -> str | None:
    """Why one of these versions cannot be deleted at `at` (Object Lock), or None. Every
    version is asked before anything is deleted: a backup whose snapshot is locked keeps
    its manifest too, instead of becoming undeletable debris."""
    for info in versions:
        status = store.object_lock(info.key, info.version_id)
        if status.locked(at):
            return f"{info.key}: {status.describe()}"
    return None


def _remove_backup(store: BackupStore, layout: Layout, backup_id: str, entries: _Entries) -> int:
    """Manifest versions first; then, only once no manifest version is left (a rewrap
    racing us would have added one: the run lock keeps it out), the rest."""
    ordered = entries.deletion_order(layout, backup_id)
    manifest_key = layout.key(backup_id, MANIFEST_NAME)
    head = [v for v in ordered if v.key == manifest_key and v in entries.objects]
    freed = _delete(store, head, backup_id)
    left = [v.version_id for v in store.list_versions(manifest_key) if v.key == manifest_key]
    if left:
        raise StorageError(
            f"backup {backup_id}: manifest.json has {len(left)} version(s) prune did not list "
            "(written while it ran); nothing else of it was deleted: run dr prune again"
        )
    return freed + _delete(store, [v for v in ordered if v not in head], backup_id)


def _delete(store: BackupStore, ordered: Iterable[ObjectInfo], backup_id: str | None) -> int:
    freed = 0
    for info in ordered:
        try:
            if store.delete_version(info.key, info.version_id):
                freed += info.size
        except DeleteDenied as exc:
            raise StorageError(f"{exc.message}: {PRUNER_HINT}") from None
        except StorageError as exc:
            raise StorageError(
                f"{exc.message}; backup {backup_id} is partly removed (its manifest first, so "
                "it is no longer listed): the next dr prune removes the rest as debris"
            ) from None
    return freed


def _abort(store: BackupStore, upload: UploadInfo) -> None:
    try:
        store.abort_upload(upload)
    except DeleteDenied as exc:
        raise StorageError(f"{exc.message}: {PRUNER_HINT}") from None
