"""The run lock's pure parts: records, hostile input, and the lease state machine.

The lease logic runs here against an in-memory compare-and-swap store with S3's
semantics (ETag per write, If-None-Match / If-Match, 412), so every branch (a 409, a
lost response, a takeover, a lost lease) can be forced; tests/integration/
test_run_lock.py runs the same code against SeaweedFS and real `dr backup` processes.
Time moves through the injected clock, never by sleeping.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from dr.errors import ExitCode, LockedError, StorageError, UsageError
from dr.storage.base import TaggedObject
from dr.storage.file import FileStore
from dr.storage.lock import (
    MAX_RECORD_SIZE,
    LockHolder,
    RunLock,
    decode_record,
    encode_record,
    read_holder,
)

T0 = datetime(2026, 12, 2, 5, 0, 0, tzinfo=UTC)
KEY = "prod/prod/lock.json"
LEASE = 300.0


class Clock:
    def __init__(self, start: datetime = T0) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


class CasStore:
    """One-key S3 in memory: LastModified is the store's clock (`clock`)."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.objects: dict[str, TaggedObject] = {}
        self.writes = 0
        self.versions: list[bytes] = []
        # Hooks: called before a put_if; may return "skip" (answer None without
        # writing: a 409), "lose" (write, then answer None: the response was lost).
        self.before_put: Callable[[str | None], str | None] | None = None
        self.renewed = threading.Event()

    def describe(self) -> str:
        return "s3://mem"

    def get_tagged(self, key: str, *, max_size: int) -> TaggedObject | None:
        obj = self.objects.get(key)
        if obj is None:
            return None
        return TaggedObject(obj.data if obj.size <= max_size else b"", obj.etag, obj.size,
                            obj.last_modified)  # fmt: skip

    def put_if(self, key: str, data: bytes, *, etag: str | None) -> str | None:
        action = self.before_put(etag) if self.before_put else None
        if action == "skip":
            return None
        current = self.objects.get(key)
        if (etag is None and current is not None) or (
            etag is not None and (current is None or current.etag != etag)
        ):
            return None
        self.plant(key, data)
        if json.loads(data).get("renewed_at") != json.loads(data).get("started_at"):
            self.renewed.set()
        return None if action == "lose" else self.objects[key].etag

    def plant(self, key: str, data: bytes) -> None:
        """Any writer, no condition (as a bucket writer could)."""
        self.writes += 1
        self.versions.append(data)
        self.objects[key] = TaggedObject(data, f'"etag-{self.writes}"', len(data),
                                         self.clock.now.replace(microsecond=0))  # fmt: skip


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store(clock: Clock) -> CasStore:
    return CasStore(clock)


def holder(**changes: Any) -> LockHolder:
    base = LockHolder(
        holder_id="ab" * 16,
        host="ci-7",
        pid=4121,
        command="backup",
        started_at=T0,
        renewed_at=T0,
        expires_at=T0 + timedelta(seconds=LEASE),
    )
    return LockHolder(**{**base.__dict__, **changes})


def lock(store: Any, clock: Callable[[], datetime], command: str = "backup") -> RunLock:
    return RunLock(store, KEY, command, lease=LEASE, now=clock, renew=False)


# -- records ------------------------------------------------------------------------


def test_describe_names_host_pid_command_start_and_lease() -> None:
    assert holder().describe() == (
        "host ci-7 pid 4121 (dr backup), started 2026-12-02T05:00:00Z, lease until 05:05:00Z"
    )
    late = holder(renewed_at=T0 + timedelta(days=1), expires_at=T0 + timedelta(days=1, minutes=5))
    assert late.describe().endswith("lease until 2026-12-03T05:05:00Z")


def test_expired_is_at_the_expiry_and_after() -> None:
    h = holder()
    assert not h.expired(T0 + timedelta(seconds=LEASE - 1))
    assert h.expired(T0 + timedelta(seconds=LEASE))


def test_record_round_trip_and_store_clock_expiry() -> None:
    h = holder(renewed_at=T0 + timedelta(seconds=100, microseconds=5),
               expires_at=T0 + timedelta(seconds=400, microseconds=5))  # fmt: skip
    written = T0 + timedelta(seconds=1000)  # the holder's clock is 900 s behind the store's
    record = decode_record(encode_record(h), written_at=written, lease=60)
    assert record.state == "held" and record.holder is not None
    assert record.holder.holder_id == h.holder_id and record.holder.renewed_at == h.renewed_at
    # Judged in the store's clock: last write + the lease the holder declared (+1 s
    # for LastModified's whole seconds), not the holder's own expires_at.
    assert record.holder.expires_at == written + timedelta(seconds=301)


def test_released_record_frees_the_lock() -> None:
    record = decode_record(encode_record(holder(), released_at=T0), written_at=T0, lease=LEASE)
    assert record.state == "released"


HOSTILE = {
    "empty": b"",
    "not json": b"garbage\x00\xff",
    "not utf-8": b'{"format": "\xff\xfe"}',
    "deeply nested": b"[" * 100_000,
    "a list": b"[1, 2]",
    "other format": json.dumps({"format": "vault-dr-lock-v9", "state": "held"}).encode(),
    "bad state": encode_record(holder()).replace(b'"held"', b'"mine"'),
    "escape in host": encode_record(holder(host="x\n\x1b[31mevil")),
    "pid true": encode_record(holder()).replace(b'"pid": 4121', b'"pid": true'),
    "pid negative": encode_record(holder()).replace(b'"pid": 4121', b'"pid": -1'),
    "no holder_id": encode_record(holder(holder_id="")),
    "times reversed": encode_record(holder(renewed_at=T0 + timedelta(seconds=LEASE))),
    "lease of years": encode_record(holder(expires_at=T0 + timedelta(days=9000))),
    "naive time": encode_record(holder()).replace(b"05:00:00.000000Z", b"05:00:00x"),
    "huge": b" " * (MAX_RECORD_SIZE + 1),
}


@pytest.mark.parametrize("data", HOSTILE.values(), ids=HOSTILE.keys())
def test_hostile_record_is_an_unknown_holder_for_one_lease(data: bytes) -> None:
    written = T0 + timedelta(seconds=7)
    record = decode_record(data, written_at=written, lease=LEASE)
    assert record.state == "unreadable" and record.holder is not None
    assert record.holder.unreadable
    assert record.holder.expires_at == written + timedelta(seconds=LEASE)
    text = record.holder.describe()
    assert text.startswith("an unknown holder (the lock record is unreadable: ")
    assert text.isprintable() and "evil" not in text and "garbage" not in text


def test_command_name_is_checked() -> None:
    with pytest.raises(UsageError):
        LockHolder.new("Backup; rm", lease=LEASE, now=T0)


# -- the lease state machine ----------------------------------------------------------


def test_second_lock_is_refused_naming_the_holder(store: CasStore, clock: Clock) -> None:
    first = lock(store, clock)
    mine = first.acquire()
    with pytest.raises(LockedError) as refused:
        lock(store, clock, "prune").acquire()
    message = str(refused.value)
    assert refused.value.exit_code == ExitCode.LOCKED
    assert f"host {mine.host} pid {mine.pid} (dr backup), started 2026-12-02T05:00:00Z" in message
    assert "wait for it to finish" in message
    assert "expires at 2026-12-02T05:05:01Z" in message  # store clock + lease + 1 s
    assert "\n" not in message
    first.release()
    assert read_holder(store, KEY, now=clock) is None
    lock(store, clock).acquire()  # free after release: taken with If-Match, no warning


def test_expired_lease_is_taken_over_and_logged(
    store: CasStore, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    dead = lock(store, clock)
    dead.acquire()  # and never renews: its process was killed
    clock.advance(LEASE)  # one second short (LastModified has whole seconds)
    with pytest.raises(LockedError):
        lock(store, clock).acquire()
    clock.advance(1)
    caplog.set_level(logging.WARNING, logger="dr.storage.lock")
    taker = lock(store, clock, "prune")
    taker.acquire()
    (warning,) = [r for r in caplog.records if "took over" in r.getMessage()]
    assert f"pid {dead.holder.pid if dead.holder else 0} (dr backup)" in warning.getMessage()
    assert warning.levelno == logging.WARNING
    current = read_holder(store, KEY, now=clock)
    assert current is not None and current.command == "prune"
    # The old holder lost it: check() says so, and its release leaves the new record.
    with pytest.raises(LockedError, match=r"lost the run lock .* \(dr prune\), started .* took"):
        dead.check()
    dead.release()
    current = read_holder(store, KEY, now=clock)
    assert current is not None and current.command == "prune"


def test_check_passes_while_held_and_fails_when_the_lease_ran_out(
    store: CasStore, clock: Clock
) -> None:
    held = lock(store, clock)
    held.acquire()
    clock.advance(LEASE * 0.8)
    held.check()
    clock.advance(LEASE * 0.15)  # renewals failed: under 10 % of the lease is left
    with pytest.raises(LockedError, match="its lease ran out"):
        held.check()


def test_conflict_409_is_retried_after_a_read(store: CasStore, clock: Clock) -> None:
    answers = iter(["skip", None, None])
    store.before_put = lambda etag: next(answers, None)
    held = lock(store, clock)
    held.acquire()
    held.check()


def test_own_write_whose_answer_was_lost_is_adopted(store: CasStore, clock: Clock) -> None:
    answers = iter(["lose"])
    store.before_put = lambda etag: next(answers, None)
    held = lock(store, clock)
    mine = held.acquire()
    held.check()
    current = read_holder(store, KEY, now=clock)
    assert current is not None and current.holder_id == mine.holder_id


def test_endless_contention_is_locked_not_a_hang(store: CasStore, clock: Clock) -> None:
    store.before_put = lambda etag: "skip"
    with pytest.raises(LockedError, match="other runs are starting at the same moment"):
        lock(store, clock).acquire()


def test_unreadable_record_blocks_for_one_lease_then_is_taken(
    store: CasStore, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    store.plant(KEY, b"\x00planted by a bucket writer")
    with pytest.raises(LockedError, match=r"unknown holder .* unreadable: it is not JSON"):
        lock(store, clock).acquire()
    clock.advance(LEASE)
    caplog.set_level(logging.WARNING, logger="dr.storage.lock")
    lock(store, clock).acquire()
    assert any("took over" in r.getMessage() for r in caplog.records)


def test_renewal_thread_renews_and_stops_on_release(store: CasStore, clock: Clock) -> None:
    held = RunLock(store, KEY, "backup", lease=0.3, now=clock)  # renews every 0.1 s
    held.acquire()
    try:
        clock.advance(0.05)
        assert store.renewed.wait(10), "no renewal within 10 s"
        held.check()
    finally:
        held.release()
    assert read_holder(store, KEY, now=clock) is None
    store.renewed.clear()
    writes = store.writes
    assert not store.renewed.wait(0.5), "the renewal thread wrote after release"
    assert store.writes == writes


def test_renewal_that_finds_another_record_loses_the_lease(store: CasStore, clock: Clock) -> None:
    held = RunLock(store, KEY, "backup", lease=0.3, now=clock)
    held.acquire()
    other = holder(host="other-host", renewed_at=clock.now, started_at=clock.now,
                   expires_at=clock.now + timedelta(seconds=LEASE))  # fmt: skip
    store.plant(KEY, encode_record(other))
    try:
        deadline = threading.Event()
        for _ in range(100):  # the renewal thread notices within one period (0.1 s)
            if held._lost is not None:
                break
            deadline.wait(0.05)
        with pytest.raises(LockedError, match="host other-host"):
            held.check()
    finally:
        held.release()
    current = read_holder(store, KEY, now=clock)
    assert current is not None and current.host == "other-host"  # left alone


def test_a_store_without_lock_primitives_is_refused() -> None:
    with pytest.raises(UsageError, match="cannot hold a run lock"):
        RunLock(object(), KEY, "backup")


def test_store_errors_during_release_are_logged_not_raised(
    store: CasStore, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    held = lock(store, clock)
    held.acquire()

    def broken(etag: str | None) -> str | None:
        raise StorageError("S3 PutObject failed: connection reset")

    store.before_put = broken
    caplog.set_level(logging.WARNING, logger="dr.storage.lock")
    held.release()
    assert any("could not release" in r.getMessage() for r in caplog.records)


# -- the file store (a real file system, real flock) -------------------------------------


def test_file_store_second_lock_is_refused_and_release_frees(tmp_path: Path) -> None:
    fs = FileStore(tmp_path)
    first = RunLock(fs, KEY, "backup", lease=LEASE, renew=False)
    mine = first.acquire()
    holder_now = read_holder(fs, KEY, now=lambda: T0)
    assert holder_now is not None and holder_now.holder_id == mine.holder_id
    with pytest.raises(LockedError) as refused:
        RunLock(fs, KEY, "rewrap", lease=LEASE).acquire()
    assert f"pid {mine.pid} (dr backup)" in str(refused.value)
    assert "it ends when that process exits, even if it is killed" in str(refused.value)
    first.check()
    first.release()
    assert read_holder(fs, KEY, now=lambda: T0) is None
    with RunLock(fs, KEY, "rewrap", lease=LEASE, renew=False) as second:
        second.check()
    assert (tmp_path / KEY).stat().st_mode & 0o777 == 0o600


def test_file_store_lock_file_replaced_under_the_holder_is_lost(tmp_path: Path) -> None:
    fs = FileStore(tmp_path)
    held = RunLock(fs, KEY, "backup", lease=LEASE, renew=False)
    held.acquire()
    path = tmp_path / KEY
    path.unlink()
    path.write_bytes(b"")
    with pytest.raises(LockedError, match="deleted or replaced"):
        held.check()
    held.release()


def test_file_store_garbage_in_a_free_lock_file_is_ignored(tmp_path: Path) -> None:
    fs = FileStore(tmp_path)
    path = tmp_path / KEY
    path.parent.mkdir(parents=True)
    path.write_bytes(b"\xff" * (MAX_RECORD_SIZE * 2))
    assert read_holder(fs, KEY, now=lambda: T0) is None
    with RunLock(fs, KEY, "backup", lease=LEASE, renew=False):
        pass


# -- the IAM policy (terraform/iam.tf, evaluated by tests/unit/test_terraform.py) ------


def test_writer_may_write_lock_json_only_conditionally() -> None:
    from tests.unit.test_terraform import BUCKET_ARN, WRITER_ARN, Request, decide, policy, put

    writer, bucket = policy("backup"), policy("bucket")
    lock_key = "backups/prod/lock.json"

    def put_if_match(key: str) -> Request:
        request = put(key, if_none_match=False)
        context = {**request.context, "s3:if-match": '"etag-1"'}
        return Request(request.action, f"{BUCKET_ARN}/{key}", WRITER_ARN, context)

    assert decide(put(lock_key, if_none_match=True), writer, bucket) == "allow"
    assert decide(put_if_match(lock_key), writer, bucket) == "allow"
    # An unconditional overwrite of the lock is not granted ...
    assert decide(put(lock_key, if_none_match=False), writer, bucket) != "allow"
    # ... and If-Match opens no other key (a data object stays write-once).
    for key in ("backups/prod/20261126T060000Z-3f9a1c/snapshot.enc", "backups/prod/x.json"):
        assert decide(put_if_match(key), writer, bucket) != "allow", key
