"""`dr prune` against the real stack: real backups (run_backup with an injected clock, so
50 of them span 90 simulated days) of a real OpenBao in a real SeaweedFS bucket with
Object Lock enabled.

Acceptance (issue 10, Prune): a GFS policy keeps exactly the expected set; the newest
backup survives a max_age that would expire it; an Object-Locked version is skipped and
reported; the debris of a SIGKILLed `dr backup` (and an open multipart upload) is removed
once older than the grace (time moved by the clock, never by sleeping); `--dry-run`
changes no version and no delete marker; the manifest goes first, so a prune that fails
mid-way leaves nothing listed that is not whole; missing delete rights name the role.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from dr.config import Config, RetentionConfig, load_config
from dr.crypto.recipients import build_recipients
from dr.errors import ExitCode, StorageError
from dr.manifest import CATALOG_NAME, MANIFEST_NAME, SNAPSHOT_NAME, Layout
from dr.ops.backup import run_backup
from dr.ops.find import list_backups, unlock
from dr.ops.prune import find_debris, run_prune
from dr.ops.records import write_record
from dr.storage.s3 import S3Store
from dr.vault.localserver import LocalBao
from tests.integration.drutil import keyfile_recipient, run_dr, s3_storage, write_config
from tests.stack.seaweedfs import SeaweedS3

GFS = {"keep_last": 2, "keep_daily": 5, "keep_weekly": 4, "keep_monthly": 3, "min_keep": 3}
HOUR = 3600


def _schedule() -> list[datetime]:
    """50 backups over 90 days (2025-11-03 .. 2026-01-31): every other day at 06:00
    (Nov 3, 5, .. 29; Dec 1, 3, .. 31; Jan 2, 4, .. 30), and five extra: Jan 31 06:00
    and 18:00, Jan 30 18:00, Jan 29 and Jan 27 at 06:00."""
    times = []
    day = date(2025, 11, 3)
    while day <= date(2026, 1, 31):
        times.append(datetime(day.year, day.month, day.day, 6, tzinfo=UTC))
        day += timedelta(days=2)
    extra = [(1, 31, 6), (1, 31, 18), (1, 30, 18), (1, 29, 6), (1, 27, 6)]
    times += [datetime(2026, m, d, h, tzinfo=UTC) for m, d, h in extra]
    return sorted(times)


# Written out by hand from the schedule (ISO weeks: W05 = Jan 26 .. Feb 1, W04 = Jan 19 ..
# 25 (backups 20, 22, 24), W03 = Jan 12 .. 18, W02 = Jan 5 .. 11 (6, 8, 10)):
GFS_KEPT = {
    "2026-01-31 18",  # newest, last 1, min_keep, daily, weekly W05, monthly 2026-01
    "2026-01-31 06",  # last 2, min_keep
    "2026-01-30 18",  # min_keep, daily Jan 30
    "2026-01-29 06",  # daily
    "2026-01-28 06",  # daily
    "2026-01-27 06",  # daily
    "2026-01-24 06",  # weekly W04
    "2026-01-18 06",  # weekly W03
    "2026-01-10 06",  # weekly W02
    "2025-12-31 06",  # monthly 2025-12
    "2025-11-29 06",  # monthly 2025-11
    "2025-12-15 06",  # drilled (a passing drill record): no rule keeps it
}
DRILLED = "2025-12-15 06"
LOCKED = "2025-11-03 06"  # no rule keeps it; its snapshot version gets a retention
FAILED_RECORD = "2025-11-05 06"  # removed, and its (failing) verify record with it


def label(ts: datetime) -> str:
    return ts.strftime("%Y-%m-%d %H")


@dataclass
class Stack:
    bao: LocalBao
    seaweed: SeaweedS3
    tmp: Path


@pytest.fixture(scope="module")
def tiny(
    bao_binary: Path, seaweed: SeaweedS3, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    """An empty OpenBao of its own: a backup of it is cheap (~1 s as `dr backup`, most
    of it the server-clock calibration and the S3 client; see _backups), so 50 real
    backups take seconds."""
    server = LocalBao(tmp_path_factory.mktemp("tiny-bao"), binary=bao_binary)
    try:
        server.start()
        server.init()
        yield Stack(server, seaweed, tmp_path_factory.mktemp("prune"))
    finally:
        server.stop()


def _config(stack: Stack, bucket: str, name: str, retention: dict[str, Any]) -> Path:
    directory = stack.tmp / name
    directory.mkdir()
    return write_config(
        directory,
        addr=stack.bao.addr,
        storage=s3_storage(stack.seaweed, bucket),
        recipients=[keyfile_recipient(directory)],
        extra={"retention": retention},
    )


def _backups(stack: Stack, config: Config, times: list[datetime]) -> dict[str, str]:
    """label -> backup id of a real backup made at each simulated time.

    Cheaper than `dr backup` in two ways only: the server-clock calibration (polling
    sys/health up to 1.2 s for the server's second to tick, dr/vault/clock.py) is
    replaced by a fixed +-1 s offset, which only widens the catalog's time window of a
    Vault nobody writes to; and the backups share one store object (run_backup's
    `store=`), so the S3 client, whose botocore model loading was over half of a tiny
    backup's time, is built once, not 50 times. Preflight, lock, snapshot, catalog walk,
    encryption, upload and manifest are the real ones, every time."""
    from dr.storage.factory import open_store
    from dr.vault.clock import ServerClock

    ids = {}
    store = open_store(config.storage)
    with pytest.MonkeyPatch.context() as patch:
        # The backup calibrates beside the stream (dr.vault.clock.BackgroundCalibration),
        # which calls this module-level function.
        patch.setattr("dr.vault.clock.calibrate", lambda _server_time, **_: ServerClock(-1.0, 1.0))
        for at in times:
            result = run_backup(
                config, token=stack.bao.root_token, store=store, now=lambda at=at: at
            )
            ids[label(at)] = result.manifest.backup_id
    return ids


def _everything(s3: Any, bucket: str) -> dict[str, list[tuple[str, str, bool]]]:
    """Every version and delete marker in the bucket, and every open upload."""
    pages = s3.get_paginator("list_object_versions").paginate(Bucket=bucket)
    versions: list[tuple[str, str, bool]] = []
    markers: list[tuple[str, str, bool]] = []
    for page in pages:
        versions += [(v["Key"], v["VersionId"], v["IsLatest"]) for v in page.get("Versions", [])]
        markers += [
            (m["Key"], m["VersionId"], m["IsLatest"]) for m in page.get("DeleteMarkers", [])
        ]
    uploads = s3.list_multipart_uploads(Bucket=bucket).get("Uploads", [])
    return {
        "versions": sorted(versions),
        "markers": sorted(markers),
        "uploads": sorted((u["Key"], u["UploadId"], False) for u in uploads),
    }


def _keys_of(s3: Any, bucket: str, prefix: str) -> list[str]:
    found = _everything(s3, bucket)
    return [k for k, _, _ in found["versions"] + found["markers"] if k.startswith(prefix)]


def _listed(config: Config) -> dict[str, Any]:
    from dr.storage.factory import open_store

    store = open_store(config.storage)
    layout = Layout(config.storage.prefix, config.cluster)
    return {m.backup_id: m for m in list_backups(store, layout).backups}


def _whole(s3: Any, bucket: str, manifest: Any) -> bool:
    """Both objects the manifest pins are stored at the versions it names."""
    for record in (manifest.snapshot, manifest.catalog):
        try:
            s3.head_object(Bucket=bucket, Key=record.key, VersionId=record.version_id)
        except Exception:
            return False
    return True


# --- GFS over 50 backups, dry run, Object Lock, records, max_age -----------------------


def test_gfs_prune_keeps_exactly_the_expected_set(tiny: Stack) -> None:
    seaweed = tiny.seaweed
    s3 = seaweed.client()
    bucket = seaweed.make_bucket(f"dr-prune-{uuid.uuid4().hex[:10]}", object_lock=True)
    path = _config(tiny, bucket, "gfs", GFS)
    config = load_config(str(path))
    layout = Layout(config.storage.prefix, config.cluster)
    started = time.monotonic()
    ids = _backups(tiny, config, _schedule())
    made = time.monotonic() - started
    assert len(ids) == 50
    print(f"\n50 real backups over 90 simulated days: {made:.1f} s")
    by_id = {v: k for k, v in ids.items()}

    store = S3Store(bucket, endpoint_url=seaweed.endpoint_url, region=seaweed.region)
    manifests = _listed(config)
    data_key, _ = unlock(manifests[ids[DRILLED]], build_recipients(config.encryption))
    summary = {"seconds": 1.0}
    write_record(store, layout, "drill", ids[DRILLED], passed=True, exit_code=0,
                 summary=summary, data_key=data_key)  # fmt: skip
    write_record(store, layout, "verify", ids[FAILED_RECORD], passed=False, exit_code=6,
                 summary=summary, data_key=None)  # fmt: skip
    # Object Lock on one version of a backup no rule keeps: its snapshot.
    locked_snapshot = manifests[ids[LOCKED]].snapshot
    until = datetime.now(UTC).replace(microsecond=0) + timedelta(days=1)
    s3.put_object_retention(
        Bucket=bucket,
        Key=locked_snapshot.key,
        VersionId=locked_snapshot.version_id,
        Retention={"Mode": "GOVERNANCE", "RetainUntilDate": until},
    )

    # --dry-run through the CLI: the plan, and not one change.
    before = _everything(s3, bucket)
    proc = run_dr("prune", "--dry-run", "--json", config=path)
    assert proc.returncode == 0, proc.stderr
    planned = json.loads(proc.stdout)
    assert _everything(s3, bucket) == before  # no version, no delete marker, no upload
    would_remove = {by_id[b] for b in planned["removed"]}
    assert would_remove == set(ids) - GFS_KEPT - {LOCKED}
    assert planned["counts"] == {"kept": 13, "removed": 37, "debris": 0, "locked": 1}
    text = run_dr("prune", "--dry-run", config=path)
    assert text.returncode == 0, text.stderr
    assert _everything(s3, bucket) == before
    row = next(ln for ln in text.stdout.splitlines() if ln.startswith(ids["2026-01-24 06"]))
    assert "keep" in row and "weekly 2026-W04" in row, row
    row = next(ln for ln in text.stdout.splitlines() if ln.startswith(ids[LOCKED]))
    assert "locked" in row and "GOVERNANCE" in row and "no rule keeps it" in row, row

    # The real run, through the CLI.
    proc = run_dr("prune", "--json", config=path)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert {by_id[b] for b in result["removed"]} == would_remove
    listed = _listed(config)
    assert {by_id[b] for b in listed} == GFS_KEPT | {LOCKED}
    assert all(_whole(s3, bucket, m) for m in listed.values())
    # Removed means removed: no version, no delete marker, no record left behind.
    for gone in would_remove:
        assert _keys_of(s3, bucket, f"{layout.cluster_prefix}{ids[gone]}/") == [], gone
    assert _keys_of(s3, bucket, f"{layout.records_prefix}{ids[FAILED_RECORD]}/") == []
    assert _keys_of(s3, bucket, f"{layout.records_prefix}{ids[DRILLED]}/") != []
    # The locked backup is whole, reported with its retain-until date.
    locked = [d for d in result["locked"] if d["backup_id"] == ids[LOCKED]]
    assert locked and until.isoformat()[:16] in " ".join(locked[0]["reasons"]), result["locked"]
    assert len(_keys_of(s3, bucket, f"{layout.cluster_prefix}{ids[LOCKED]}/")) == 3

    # max_age that would expire every backup: the newest survives, and the drilled and
    # the locked one; min_keep 1 so that nothing else protects the rest.
    later = datetime(2026, 3, 1, tzinfo=UTC)
    expiring = replace(config, retention=RetentionConfig(keep_last=5, max_age=86400, min_keep=1))
    outcome = run_prune(expiring, dry_run=False, now=lambda: later)
    assert {by_id[b] for b in _listed(config)} == {"2026-01-31 18", DRILLED, LOCKED}
    newest = next(d for d in outcome.plan.decisions if d.backup_id == ids["2026-01-31 18"])
    assert newest.reasons == ("newest", "min_keep 1")  # max_age overrides "last 1/5"
    assert outcome.counts["locked"] == 1


# --- debris of a killed backup ---------------------------------------------------------


def test_debris_of_a_sigkilled_backup_is_removed_after_the_grace(
    bao: Any, seaweed: SeaweedS3, versioned_bucket: str, tmp_path: Path
) -> None:
    s3 = seaweed.client()
    path = write_config(
        tmp_path,
        addr=bao.addr,
        storage=s3_storage(seaweed, versioned_bucket),
        recipients=[keyfile_recipient(tmp_path)],
        extra={"retention": {"keep_last": 3}},
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "dr", "-c", str(path), "-v", "backup"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "VAULT_TOKEN": bao.root_token},
    )
    seen = []
    try:
        assert proc.stderr is not None
        for line in proc.stderr:  # killed once the snapshot is stored: the walk runs
            seen.append(line)
            if "snapshot stored" in line:
                proc.send_signal(signal.SIGKILL)
                break
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL, "".join(seen)
    config = load_config(str(path))
    layout = Layout(config.storage.prefix, config.cluster)
    keys = [k for k, _, _ in _everything(s3, versioned_bucket)["versions"]
            if k != layout.lock_key]  # fmt: skip
    assert len(keys) == 1 and keys[0].endswith("/" + SNAPSHOT_NAME), keys  # no manifest
    killed_id = layout.backup_id_of(keys[0])
    # A kill in the middle of a multipart upload leaves the upload open, with parts.
    upload_key = layout.key("20261202T000000Z-abcdef", SNAPSHOT_NAME)
    upload = s3.create_multipart_upload(Bucket=versioned_bucket, Key=upload_key)
    s3.upload_part(Bucket=versioned_bucket, Key=upload_key, UploadId=upload["UploadId"],
                   PartNumber=1, Body=b"x" * (5 * 1024 * 1024))  # fmt: skip

    real = datetime.now(UTC)
    soon = real + timedelta(hours=1)  # past the killed run's lock lease, not the grace
    proc = run_dr("prune", "--dry-run", "--json", config=path)  # young debris waits
    assert proc.returncode == 0, proc.stderr
    waiting = json.loads(proc.stdout)["debris"]
    assert {i["key"] for i in waiting["waiting"]} == {
        f"{layout.cluster_prefix}{killed_id}/",
        upload_key,
    }
    assert waiting["removed"] == [] and waiting["due"] == []
    assert run_prune(config, dry_run=False, now=lambda: soon).debris_removed == []
    assert len(_everything(s3, versioned_bucket)["uploads"]) == 1

    later = real + timedelta(hours=25)  # past the default 24h grace
    s3_store = S3Store(versioned_bucket, endpoint_url=seaweed.endpoint_url, region=seaweed.region)
    debris = find_debris(s3_store, layout, now=lambda: later, grace=24 * HOUR)
    assert debris.removable_count == 2 and debris.waiting == []
    dry = run_prune(config, dry_run=True, now=lambda: later)
    assert len(dry.debris_removed) == 2
    assert len(_everything(s3, versioned_bucket)["uploads"]) == 1  # the dry run left it
    result = run_prune(config, dry_run=False, now=lambda: later)
    assert {i.kind for i in result.debris_removed} == {"objects", "upload"}
    left = _everything(s3, versioned_bucket)
    assert left["uploads"] == []
    assert [k for k, _, _ in left["versions"] + left["markers"] if k != layout.lock_key] == []


def test_hidden_backup_is_not_debris(tiny: Stack) -> None:
    """A manifest under a delete marker (someone with s3:DeleteObject only) still has its
    versions: prune must not finish the job by purging the backup."""
    s3 = tiny.seaweed.client()
    bucket = tiny.seaweed.make_bucket(f"dr-hidden-{uuid.uuid4().hex[:10]}")
    path = _config(tiny, bucket, "hidden", {"keep_last": 1, "min_keep": 1})
    config = load_config(str(path))
    ids = _backups(tiny, config, [datetime(2026, 1, d, 6, tzinfo=UTC) for d in (1, 2)])
    layout = Layout(config.storage.prefix, config.cluster)
    s3.delete_object(Bucket=bucket, Key=layout.key(ids["2026-01-01 06"], MANIFEST_NAME))
    later = datetime.now(UTC) + timedelta(days=30)
    result = run_prune(config, dry_run=False, now=lambda: later)
    assert result.debris.hidden == (ids["2026-01-01 06"],)
    assert result.debris_removed == []
    left = _keys_of(s3, bucket, f"{layout.cluster_prefix}{ids['2026-01-01 06']}/")
    assert sorted(set(left)) == sorted(
        layout.key(ids["2026-01-01 06"], n) for n in (CATALOG_NAME, MANIFEST_NAME, SNAPSHOT_NAME)
    )


# --- delete order, failures ------------------------------------------------------------


class FailingDeletes:
    """An S3Store whose permanent delete of one key fails (a network error, say)."""

    def __init__(self, inner: S3Store, fail_key: str) -> None:
        self._inner = inner
        self.fail_key = fail_key
        self.deleted: list[str] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def delete_version(self, key: str, version_id: str | None) -> bool:
        if key == self.fail_key:
            raise StorageError(f"S3 DeleteObject s3://x/{key} failed: injected")
        self.deleted.append(key)
        return self._inner.delete_version(key, version_id)


def test_a_prune_failing_mid_way_leaves_nothing_half_listed(tiny: Stack) -> None:
    s3 = tiny.seaweed.client()
    bucket = tiny.seaweed.make_bucket(f"dr-order-{uuid.uuid4().hex[:10]}")
    path = _config(tiny, bucket, "order", {"keep_last": 1, "min_keep": 1})
    config = load_config(str(path))
    layout = Layout(config.storage.prefix, config.cluster)
    ids = _backups(tiny, config, [datetime(2026, 1, d, 6, tzinfo=UTC) for d in (1, 2, 3, 4)])
    oldest = ids["2026-01-01 06"]
    inner = S3Store(bucket, endpoint_url=tiny.seaweed.endpoint_url, region=tiny.seaweed.region)
    failing = FailingDeletes(inner, layout.key(oldest, SNAPSHOT_NAME))
    with pytest.raises(StorageError) as info:
        run_prune(config, dry_run=False, store=failing)  # type: ignore[arg-type]
    assert "partly removed" in info.value.message and "next dr prune" in info.value.message
    # Manifest first, then the catalog; the snapshot delete failed.
    assert failing.deleted == [layout.key(oldest, MANIFEST_NAME), layout.key(oldest, CATALOG_NAME)]
    listing = list_backups(inner, layout)
    assert sorted(m.backup_id for m in listing.backups) == sorted(set(ids.values()) - {oldest})
    assert all(_whole(s3, bucket, m) for m in listing.backups)
    assert listing.incomplete == [oldest]  # not listed: debris, never restored
    # The next prune, once the leftovers are past the grace, finishes the job.
    later = datetime.now(UTC) + timedelta(hours=25)
    result = run_prune(config, dry_run=False, now=lambda: later)
    assert [i.backup_id for i in result.debris_removed] == [oldest]
    assert [m.backup_id for m in list_backups(inner, layout).backups] == [ids["2026-01-04 06"]]
    assert _keys_of(s3, bucket, f"{layout.cluster_prefix}{oldest}/") == []


def test_missing_delete_rights_name_the_pruner_role(tiny: Stack) -> None:
    from botocore.awsrequest import AWSResponse

    bucket = tiny.seaweed.make_bucket(f"dr-denied-{uuid.uuid4().hex[:10]}")
    path = _config(tiny, bucket, "denied", {"keep_last": 1, "min_keep": 1})
    config = load_config(str(path))
    layout = Layout(config.storage.prefix, config.cluster)
    ids = _backups(tiny, config, [datetime(2026, 1, d, 6, tzinfo=UTC) for d in (1, 2)])
    store = S3Store(bucket, endpoint_url=tiny.seaweed.endpoint_url, region=tiny.seaweed.region)
    body = (b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>AccessDenied</Code>'
            b"<Message>Access Denied</Message></Error>")  # fmt: skip

    class _Raw:
        def stream(self, **_: Any) -> Iterator[bytes]:
            yield body

    def deny(request: Any, **_: Any) -> AWSResponse:  # what S3 answers the backup role
        return AWSResponse(request.url, 403, {"Content-Type": "application/xml"}, _Raw())

    store._client.meta.events.register("before-send.s3.DeleteObject", deny)
    with pytest.raises(StorageError) as info:
        run_prune(config, dry_run=False, store=store)
    message = info.value.message
    assert info.value.exit_code == ExitCode.STORAGE
    assert "AccessDenied" in message and "s3:DeleteObjectVersion" in message, message
    assert "pruner role" in message and "\n" not in message, message
    listed = list_backups(store, layout).backups
    assert sorted(m.backup_id for m in listed) == sorted(ids.values())  # nothing deleted


def test_prune_without_a_retention_rule_is_refused(tiny: Stack) -> None:
    bucket = tiny.seaweed.make_bucket(f"dr-norule-{uuid.uuid4().hex[:10]}")
    path = _config(tiny, bucket, "norule", {"min_keep": 2})
    proc = run_dr("prune", config=path)
    assert proc.returncode == ExitCode.USAGE, proc.stderr
    assert "retention:" in proc.stderr and "docs/retention.md" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_unreadable_and_planted_manifests_never_cost_a_good_backup(tiny: Stack) -> None:
    """A bucket writer plants newer unsigned backups (to fill keep_last) and writes a
    garbage version over a real manifest: nothing good is deleted, both are reported."""
    s3 = tiny.seaweed.client()
    bucket = tiny.seaweed.make_bucket(f"dr-hostile-{uuid.uuid4().hex[:10]}")
    path = _config(tiny, bucket, "hostile", {"keep_last": 2, "min_keep": 1})
    config = load_config(str(path))
    layout = Layout(config.storage.prefix, config.cluster)
    ids = _backups(tiny, config, [datetime(2026, 1, d, 6, tzinfo=UTC) for d in (1, 2, 3)])
    listed = _listed(config)
    genuine = listed[ids["2026-01-03 06"]]
    for n in range(3):  # unsigned copies under newer ids, placed where they claim to be
        fake_id = f"2026020{n + 1}T060000Z-00000{n}"
        fake = replace(genuine, backup_id=fake_id, writer=None)
        fake.snapshot = replace(fake.snapshot, key=layout.key(fake_id, SNAPSHOT_NAME))
        fake.catalog = replace(fake.catalog, key=layout.key(fake_id, CATALOG_NAME))
        s3.put_object(Bucket=bucket, Key=layout.key(fake_id, MANIFEST_NAME), Body=fake.dumps())
    s3.put_object(Bucket=bucket, Key=layout.key(ids["2026-01-02 06"], MANIFEST_NAME), Body=b"{")
    result = run_prune(config, dry_run=False)
    # Counted: only the signed 01-01 and 01-03; keep_last 2 keeps both.
    assert result.removed == []
    assert sorted(result.unsigned) == [f"2026020{n + 1}T060000Z-00000{n}" for n in range(3)]
    assert [u.partition(":")[0] for u in result.unreadable] == [ids["2026-01-02 06"]]
    for backup_id in ids.values():
        assert len(_keys_of(s3, bucket, f"{layout.cluster_prefix}{backup_id}/")) >= 3


# --- the file store --------------------------------------------------------------------


def test_prune_on_a_file_store(tiny: Stack) -> None:
    from dr.storage.file import FileStore

    directory = tiny.tmp / "filestore"
    directory.mkdir()
    path = write_config(
        directory,
        addr=tiny.bao.addr,
        storage={"type": "file", "path": str(directory / "store"), "prefix": "prod"},
        recipients=[keyfile_recipient(directory)],
        extra={"retention": {"keep_last": 1, "min_keep": 1}},
    )
    config = load_config(str(path))
    layout = Layout(config.storage.prefix, config.cluster)
    ids = _backups(tiny, config, [datetime(2026, 1, d, 6, tzinfo=UTC) for d in (1, 2, 3)])
    store = FileStore(directory / "store")
    # What a killed file-store run leaves: a temp file beside its target.
    target = store.root / layout.key("20261201T000000Z-abcdef", SNAPSHOT_NAME)
    target.parent.mkdir(parents=True)
    (target.parent / ".tmp-snapshot.enc.k3j4h5").write_bytes(b"partial")
    (uploads,) = store.list_uploads(layout.cluster_prefix)
    with pytest.raises(StorageError):  # an id that names another file is refused
        store.abort_upload(replace(uploads, upload_id="../../x"))
    later = datetime.now(UTC) + timedelta(hours=25)
    result = run_prune(config, dry_run=False, now=lambda: later)
    assert sorted(result.removed) == sorted([ids["2026-01-01 06"], ids["2026-01-02 06"]])
    assert [i.kind for i in result.debris_removed] == ["upload"]
    assert store.list_uploads(layout.cluster_prefix) == []
    left = sorted(i.key for i in store.list(layout.cluster_prefix))
    assert [k for k in left if layout.backup_id_of(k)] == sorted(
        layout.key(ids["2026-01-03 06"], n) for n in (CATALOG_NAME, MANIFEST_NAME, SNAPSHOT_NAME)
    )
    assert not (store.root / layout.cluster_prefix / ids["2026-01-01 06"]).exists()
