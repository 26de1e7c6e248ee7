"""The per-cluster run lock: one `dr backup`, `dr prune` or `dr rewrap` at a time.

One lock object per cluster, `{prefix}/{cluster}/lock.json` (`Layout.lock_key`), holding
a JSON record of its holder (`LockHolder`). docs/locking.md is the operator's view.

S3 (any store with `get_tagged`/`put_if`): compare-and-swap on that object.
- acquire: PutObject `If-None-Match: *` when there is no lock object; otherwise read it
  and, if it is released or its lease has expired, PutObject `If-Match: <its etag>`.
  A 412 (someone else wrote first) or 409 (a concurrent conditional write) means we lost
  the race: read again and decide again, a few times.
- renew (a daemon thread, every lease/3 of real time) and release both write with
  `If-Match` on the etag of our last write, so they never clobber a run that took the
  lock over; release writes a "released" record, so no delete right is needed.
- A lease is judged in the store's clock: a record expires `lease` (the lease the holder
  declared in it) after its last write as S3 timestamps it (LastModified), compared with
  the contender's `now()`. The holder's clock does not matter; the contender's must be
  close to the S3 server's (NTP; AWS refuses SigV4 requests from a clock 15 min off).
- A record that does not parse (a bucket writer planted it, or a newer format) is held
  by an unknown holder until `lease` after its last write, then taken over like an
  expired one. Treating it as free would let anyone who can write one byte there run
  two backups at once; treating it as held forever would let them stop every backup.
  Whatever a writer plants, two runs cannot both commit: a holder whose record was
  replaced fails its next renewal or `check()`, which backup calls right before it
  writes its manifest.

File store (any store with `try_flock`/`flock_held`): flock(LOCK_EX | LOCK_NB) on the
lock file, held for the run. The kernel releases it when the process dies, SIGKILL
included, so no lease is needed for recovery; the holder record written into the file
only names the holder to whoever is refused (it is renewed too, so `dr status` shows a
live lease).

Every expiry decision takes `now` (dr.timesource.Now), so tests move time without
sleeping; only the renewal thread's period is real time.
"""

from __future__ import annotations

import json
import logging
import os
import re
import secrets
import socket
import threading
import time
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Any, Literal, Protocol, runtime_checkable

from dr.errors import LockedError, StorageError, UsageError
from dr.storage.base import TaggedObject
from dr.storage.file import HeldFlock
from dr.timesource import Now, iso, parse_iso, utcnow

log = logging.getLogger(__name__)

FORMAT = "vault-dr-lock-v1"
DEFAULT_LEASE = 300.0  # config.lock.lease's default (dr/config.py)
MAX_LEASE = 24 * 3600.0  # a record declaring a longer lease is not believed
MAX_RECORD_SIZE = 16 * 1024  # a lock record is ~300 bytes; anything larger is hostile
# S3's LastModified has whole seconds: a lease is judged one second late, never early.
_TIMESTAMP_SLACK = timedelta(seconds=1)
_ATTEMPTS = 4  # reads + conditional writes before giving up on a contended lock
_FLOCK_TRIES = 5  # a `dr status` probe holds a shared flock for an instant
_FLOCK_RETRY_SECONDS = 0.05
_RENEW_MARGIN = 0.1  # check() fails when less than this share of the lease is left

_HOLDER_ID = re.compile(r"[0-9a-f]{32}")
_HOST = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,252}")
_COMMAND = re.compile(r"[a-z][a-z-]{0,31}")
_MAX_PID = 2**31 - 1


class LockRecordError(ValueError):
    """A lock record that does not parse; the message says what is wrong (never echoes
    the record: it may hold anything)."""


@dataclass(frozen=True)
class LockHolder:
    """Who holds (or last held) the lock. All times are aware datetimes.

    `unreadable` is set for a record that did not parse: the holder is unknown, its
    times are those of the lock object's last write and its lease the reader's."""

    holder_id: str
    host: str
    pid: int
    command: str
    started_at: datetime
    renewed_at: datetime
    expires_at: datetime
    unreadable: str | None = None

    @classmethod
    def new(cls, command: str, *, lease: float, now: datetime) -> LockHolder:
        if not _COMMAND.fullmatch(command):
            raise UsageError(f"run lock: invalid command name {command!r}")
        return cls(
            holder_id=secrets.token_hex(16),
            host=_own_host(),
            pid=os.getpid(),
            command=command,
            started_at=now,
            renewed_at=now,
            expires_at=now + timedelta(seconds=lease),
        )

    @classmethod
    def unknown(cls, problem: str, *, written_at: datetime, lease: float) -> LockHolder:
        return cls(
            holder_id="",
            host="unknown",
            pid=0,
            command="unknown",
            started_at=written_at,
            renewed_at=written_at,
            expires_at=written_at + timedelta(seconds=lease),
            unreadable=problem,
        )

    @property
    def lease(self) -> float:
        return (self.expires_at - self.renewed_at).total_seconds()

    def renewed(self, now: datetime, lease: float) -> LockHolder:
        return replace(self, renewed_at=now, expires_at=now + timedelta(seconds=lease))

    def expired(self, now: datetime) -> bool:
        return now >= self.expires_at

    def describe(self) -> str:
        """`host ci-7 pid 4121 (dr backup), started 2026-12-02T05:00:00Z, lease until
        05:05:00Z` (the date only when it differs from the start's)."""
        until = iso(self.expires_at)
        if until[:10] == iso(self.started_at)[:10]:
            until = until[11:]
        if self.unreadable is not None:
            return (
                f"an unknown holder (the lock record is unreadable: {self.unreadable}), "
                f"written {iso(self.renewed_at)}, lease until {until}"
            )
        return (
            f"host {self.host} pid {self.pid} (dr {self.command}), started "
            f"{iso(self.started_at)}, lease until {until}"
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "holder_id": self.holder_id,
            "host": self.host,
            "pid": self.pid,
            "command": self.command,
            "started_at": _iso_exact(self.started_at),
            "renewed_at": _iso_exact(self.renewed_at),
            "expires_at": _iso_exact(self.expires_at),
        }

    @classmethod
    def from_json(cls, data: Any) -> LockHolder:
        """Validate a record's holder fields; LockRecordError names the first problem."""
        if not isinstance(data, dict):
            raise LockRecordError("not a JSON object")
        holder_id = _field(data, "holder_id", str)
        if not _HOLDER_ID.fullmatch(holder_id):
            raise LockRecordError("holder_id is not 32 hex digits")
        host = _field(data, "host", str)
        if not _HOST.fullmatch(host):
            raise LockRecordError("host is not a host name")
        pid = _field(data, "pid", int)
        if isinstance(pid, bool) or not 0 < pid <= _MAX_PID:
            raise LockRecordError("pid is not a process id")
        command = _field(data, "command", str)
        if not _COMMAND.fullmatch(command):
            raise LockRecordError("command is not a dr command name")
        started, renewed, expires = (
            _time(data, name) for name in ("started_at", "renewed_at", "expires_at")
        )
        if not started <= renewed < expires:
            raise LockRecordError("its times are out of order")
        if (expires - renewed).total_seconds() > MAX_LEASE:
            raise LockRecordError(f"its lease is longer than {MAX_LEASE / 3600:.0f} h")
        return cls(holder_id, host, pid, command, started, renewed, expires)


@dataclass(frozen=True)
class LockRecord:
    """What the lock object says: held by `holder`, released (`holder` is the last one,
    if readable), or unreadable (`holder` is an unknown one, `holder.unreadable` why)."""

    state: Literal["held", "released", "unreadable"]
    holder: LockHolder | None


def encode_record(holder: LockHolder, *, released_at: datetime | None = None) -> bytes:
    record: dict[str, Any] = {"format": FORMAT, "state": "held", **holder.to_json()}
    if released_at is not None:
        record["state"] = "released"
        record["released_at"] = _iso_exact(released_at)
    return (json.dumps(record, sort_keys=True) + "\n").encode()


def decode_record(
    data: bytes, *, written_at: datetime, lease: float, size: int | None = None
) -> LockRecord:
    """Parse a stored record. Never raises: what does not parse is `unreadable`, held by
    an unknown holder until `lease` after `written_at` (the object's last write).

    A readable held record's expiry is judged from `written_at` too (see the module
    docstring): `expires_at` becomes `written_at` + the lease the holder declared."""
    try:
        if max(len(data), size or 0) > MAX_RECORD_SIZE:  # `size`: a body left unread
            raise LockRecordError(f"it is larger than {MAX_RECORD_SIZE} bytes")
        if not data.strip():
            raise LockRecordError("it is empty")
        try:
            parsed = json.loads(data)
        except (ValueError, RecursionError):
            raise LockRecordError("it is not JSON") from None
        if not isinstance(parsed, dict) or parsed.get("format") != FORMAT:
            raise LockRecordError(f"it is not a {FORMAT} record")
        state = parsed.get("state")
        if state == "released":
            try:
                return LockRecord("released", LockHolder.from_json(parsed))
            except LockRecordError:
                return LockRecord("released", None)  # free either way
        if state != "held":
            raise LockRecordError("its state is neither held nor released")
        holder = LockHolder.from_json(parsed)
    except LockRecordError as exc:
        return LockRecord("unreadable", LockHolder.unknown(str(exc), written_at=written_at,
                                                           lease=lease))  # fmt: skip
    # In the store's clock: the holder's own clock may be off, the store's stamp is not.
    expires = written_at + timedelta(seconds=holder.lease) + _TIMESTAMP_SLACK
    return LockRecord("held", replace(holder, expires_at=expires))


# -- what a store must offer -----------------------------------------------------------


@runtime_checkable
class LeaseStore(Protocol):
    """A store with compare-and-swap on one object (dr/storage/s3.py)."""

    def describe(self) -> str: ...

    def get_tagged(self, key: str, *, max_size: int) -> TaggedObject | None: ...

    def put_if(self, key: str, data: bytes, *, etag: str | None) -> str | None: ...


@runtime_checkable
class FlockStore(Protocol):
    """A store on a local file system with OS file locks (dr/storage/file.py)."""

    def describe(self) -> str: ...

    def try_flock(self, key: str) -> HeldFlock | None: ...

    def flock_held(self, key: str, *, max_size: int) -> bytes | None: ...


def read_holder(
    store: object, key: str, *, now: Now = utcnow, lease: float = DEFAULT_LEASE
) -> LockHolder | None:
    """The lock's current holder, None when it is free or released (for `dr status`).
    An expired holder is returned: the caller checks `.expired(now())`. `lease` is
    the one an unreadable record is judged by (the config's)."""
    if isinstance(store, FlockStore):
        data = store.flock_held(key, max_size=MAX_RECORD_SIZE)
        if data is None:
            return None  # no process holds it, whatever the file says
        record = flock_record(data, now=now(), lease=lease)
    elif isinstance(store, LeaseStore):
        current = store.get_tagged(key, max_size=MAX_RECORD_SIZE)
        if current is None:
            return None
        record = decode_record(
            current.data, written_at=current.last_modified, lease=lease, size=current.size
        )
    else:
        raise UsageError(f"{_describe(store)} cannot hold a run lock")
    return None if record.state == "released" else record.holder


# -- the lock ------------------------------------------------------------------------


class RunLock:
    """The run lock on `key` of `store`; use as a context manager or acquire/release.

    with RunLock(store, layout.lock_key, "backup", lease=300, now=now) as lock:
        ...
        lock.check()  # right before the commit: LockedError if the lease was lost
    """

    def __init__(
        self,
        store: object,
        key: str,
        command: str,
        *,
        lease: float = DEFAULT_LEASE,
        now: Now = utcnow,
        renew: bool = True,
    ) -> None:
        if not 0 < lease <= MAX_LEASE:
            raise UsageError(f"run lock: lease {lease} s is outside 0 s to {MAX_LEASE} s")
        self.key = key
        self.command = command
        self.lease = lease
        self._now = now
        self._renew = renew
        self._backend = _backend(store, key, lease, now)
        self._where = f"{_describe(store)}/{key}"
        self._mutex = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._holder: LockHolder | None = None
        self._confirmed_until: datetime | None = None
        self._lost: str | None = None  # why the lease was lost, once it was
        self._renew_error: str | None = None

    @property
    def holder(self) -> LockHolder | None:
        """Our record while we hold the lock."""
        return self._holder

    def acquire(self) -> LockHolder:
        if self._holder is not None:
            raise UsageError(f"run lock {self._where} is already held by this run")
        started = self._now()
        mine = LockHolder.new(self.command, lease=self.lease, now=started)
        self._backend.acquire(mine, self._where)
        self._holder = mine
        self._confirmed_until = mine.expires_at
        self._lost = None
        if self._renew:
            self._stop.clear()
            self._thread = threading.Thread(
                target=self._renew_loop, name="dr-lock-renewal", daemon=True
            )
            self._thread.start()
        return mine

    def check(self) -> None:
        """Raise LockedError unless this run still holds the lock with lease to spare:
        call it right before committing anything another run must not also commit."""
        with self._mutex:
            mine = self._holder
            if mine is None:
                raise LockedError(f"this run does not hold the run lock {self._where}")
            if self._lost is None:
                self._lost = self._backend.lost_to(mine)
            if self._lost is None:
                assert self._confirmed_until is not None
                margin = timedelta(seconds=self.lease * _RENEW_MARGIN)
                if self._now() >= self._confirmed_until - margin:
                    self._lost = "its lease ran out: renewing it failed" + (
                        f" ({self._renew_error})" if self._renew_error else ""
                    )
            if self._lost is not None:
                raise LockedError(
                    f"this dr {self.command} lost the run lock {self._where}: {self._lost}; "
                    f"it stops before committing: run dr {self.command} again"
                )

    def release(self) -> None:
        """Give the lock back (idempotent). Never raises: a release that fails is
        logged, and the lock then ends with its lease (S3) or this process (file)."""
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=30)
        with self._mutex:
            mine, self._holder = self._holder, None
            if mine is None:
                return
            try:
                self._backend.release(mine, self._now(), lost=self._lost is not None)
            except Exception as exc:
                log.warning(
                    "could not release the run lock %s (%s); it ends when its lease does, at %s",
                    self._where,
                    exc,
                    iso(self._confirmed_until or mine.expires_at),
                )

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()

    def _renew_loop(self) -> None:
        # Real time on purpose: the lease is real time for whoever judges it.
        while not self._stop.wait(self.lease / 3):
            with self._mutex:
                mine = self._holder
                if mine is None or self._stop.is_set():
                    return
                before = self._now()
                new = mine.renewed(before, self.lease)
                try:
                    kept = self._backend.renew(new)
                except Exception as exc:  # the network: try again next period
                    self._renew_error = str(exc)
                    log.warning("could not renew the run lock %s: %s", self._where, exc)
                    continue
                if not kept:
                    self._lost = self._backend.lost_to(mine) or "another run replaced it"
                    log.error("the run lock %s was lost: %s", self._where, self._lost)
                    return
                self._holder = new
                self._confirmed_until = new.expires_at
                self._renew_error = None


class _Backend(Protocol):
    def acquire(self, mine: LockHolder, where: str) -> None: ...

    def renew(self, new: LockHolder) -> bool: ...

    def lost_to(self, mine: LockHolder) -> str | None: ...

    def release(self, mine: LockHolder, now: datetime, *, lost: bool) -> None: ...


class _LeaseLock:
    """Compare-and-swap on one object (S3)."""

    def __init__(self, store: LeaseStore, key: str, lease: float, now: Now) -> None:
        self._store = store
        self._key = key
        self._lease = lease
        self._now = now
        self._etag: str | None = None

    def _read(self) -> tuple[TaggedObject | None, LockRecord | None]:
        current = self._store.get_tagged(self._key, max_size=MAX_RECORD_SIZE)
        if current is None:
            return None, None
        record = decode_record(
            current.data, written_at=current.last_modified, lease=self._lease, size=current.size
        )
        return current, record

    def acquire(self, mine: LockHolder, where: str) -> None:
        body = encode_record(mine)
        for _ in range(_ATTEMPTS):
            current, record = self._read()
            previous: LockHolder | None = None
            if current is None or record is None:
                etag = self._store.put_if(self._key, body, etag=None)
            else:
                if _is(record.holder, mine):  # our own write, its answer lost and retried
                    self._etag = current.etag
                    return
                if record.state != "released":
                    previous = record.holder
                    assert previous is not None
                    if not previous.expired(self._now()):
                        raise _locked(where, previous, file_lock=False)
                etag = self._store.put_if(self._key, body, etag=current.etag)
            if etag is not None:
                self._etag = etag
                if previous is not None:
                    log.warning(
                        "took over the run lock %s: its lease had expired; the previous "
                        "holder was %s",
                        where,
                        previous.describe(),
                        extra={"lock_previous_holder": _holder_fields(previous)},
                    )
                return
            # 412/409: another run wrote between our read and our write; look again.
        raise LockedError(
            f"the run lock {where} changed {_ATTEMPTS} times while this run tried to take "
            "it: other runs are starting at the same moment; run it again later"
        )

    def renew(self, new: LockHolder) -> bool:
        etag = self._store.put_if(self._key, encode_record(new), etag=self._etag)
        if etag is None:
            etag = self._retry(new)
        if etag is None:
            return False
        self._etag = etag
        return True

    def _retry(self, new: LockHolder) -> str | None:
        """After a failed conditional write: a 409, or our write landed and its answer
        was lost (botocore retried it). Anything else means another run took the lock."""
        current, record = self._read()
        if current is None or record is None:
            return None
        ours = record.holder is not None and _is(record.holder, new)
        if ours and record.holder is not None and record.holder.renewed_at == new.renewed_at:
            return current.etag  # our write is there
        if current.etag == self._etag:  # nobody else wrote (a 409): once more
            return self._store.put_if(self._key, encode_record(new), etag=self._etag)
        return None

    def lost_to(self, mine: LockHolder) -> str | None:
        current, record = self._read()
        if current is None or record is None:
            return "the lock object is gone"
        if current.etag == self._etag or _is(record.holder, mine):
            self._etag = current.etag
            return None
        if record.state == "released" or record.holder is None:
            return "someone released it"
        return f"{record.holder.describe()} took it over"

    def release(self, mine: LockHolder, now: datetime, *, lost: bool) -> None:
        if lost or self._etag is None:
            return  # another run's record is there now: leave it alone
        body = encode_record(mine, released_at=now)
        if self._store.put_if(self._key, body, etag=self._etag) is not None:
            return
        # A 409, or our last renewal landed and its answer was lost: once more.
        current, record = self._read()
        if current is not None and record is not None and _is(record.holder, mine):
            again = self._store.put_if(self._key, body, etag=current.etag)
            if again is not None:
                return
        log.warning(
            "the run lock %s/%s was taken over before this run released it; left as is",
            self._store.describe(),
            self._key,
        )


class _FlockLock:
    """An OS file lock (file store)."""

    def __init__(self, store: FlockStore, key: str, lease: float, now: Now) -> None:
        self._store = store
        self._key = key
        self._lease = lease
        self._now = now
        self._held: HeldFlock | None = None

    def acquire(self, mine: LockHolder, where: str) -> None:
        for attempt in range(_FLOCK_TRIES):
            held = self._store.try_flock(self._key)
            if held is not None:
                try:
                    held.write(encode_record(mine))
                except BaseException:
                    held.release()
                    raise
                self._held = held
                return
            data = self._store.flock_held(self._key, max_size=MAX_RECORD_SIZE)
            if data is not None and attempt == _FLOCK_TRIES - 1:
                raise _locked(where, self._holder_of(data), file_lock=True)
            time.sleep(_FLOCK_RETRY_SECONDS)  # a probe or a run just finishing
        raise LockedError(
            f"the run lock {where} is contended: other runs are starting at the same "
            "moment; run it again later"
        )

    def _holder_of(self, data: bytes) -> LockHolder:
        record = flock_record(data, now=self._now(), lease=self._lease)
        if record.holder is not None and record.state != "released":
            return record.holder
        # Released, but still locked: its holder is exiting this instant.
        problem = "its holder is releasing it"
        return LockHolder.unknown(problem, written_at=self._now(), lease=self._lease)

    def renew(self, new: LockHolder) -> bool:
        held = self._require()
        if not held.still_ours():
            return False
        held.write(encode_record(new))
        return True

    def lost_to(self, mine: LockHolder) -> str | None:
        if self._held is None or not self._held.still_ours():
            return "its lock file was deleted or replaced"
        return None

    def release(self, mine: LockHolder, now: datetime, *, lost: bool) -> None:
        held, self._held = self._held, None
        if held is None:
            return
        try:
            if not lost and held.still_ours():
                held.write(encode_record(mine, released_at=now))
        finally:
            held.release()

    def _require(self) -> HeldFlock:
        if self._held is None:
            raise StorageError(f"the run lock {self._key} is not held")
        return self._held


def _backend(store: object, key: str, lease: float, now: Now) -> _Backend:
    # Capabilities, not type names: a file store locks with the kernel, anything that
    # can compare-and-swap one object uses a lease.
    if isinstance(store, FlockStore):
        return _FlockLock(store, key, lease, now)
    if isinstance(store, LeaseStore):
        return _LeaseLock(store, key, lease, now)
    raise UsageError(f"{_describe(store)} cannot hold a run lock")


def flock_record(data: bytes, *, now: datetime, lease: float) -> LockRecord:
    """The record in the file of a HELD flock. The kernel vouches that its holder
    lives, so a readable record's own times stand (no store clock to judge them by)."""
    if not data.strip():
        problem = "its holder has not written its record yet"
        return LockRecord("unreadable", LockHolder.unknown(problem, written_at=now, lease=lease))
    record = decode_record(data, written_at=now, lease=lease)
    if record.state == "held":
        parsed = json.loads(data)  # decode_record has validated it
        return LockRecord("held", LockHolder.from_json(parsed))
    return record


def _locked(where: str, holder: LockHolder, *, file_lock: bool) -> LockedError:
    if file_lock:
        then = "it ends when that process exits, even if it is killed"
    else:
        then = (
            f"if that host is gone the lock expires at {iso(holder.expires_at)} and the "
            "next run takes it over"
        )
    return LockedError(
        f"another run holds the run lock {where}: {holder.describe()}; wait for it to "
        f"finish, or {then}"
    )


def _is(holder: LockHolder | None, mine: LockHolder) -> bool:
    return holder is not None and bool(holder.holder_id) and holder.holder_id == mine.holder_id


def _holder_fields(holder: LockHolder) -> dict[str, Any]:
    fields = holder.to_json()
    if holder.unreadable is not None:
        fields["unreadable"] = holder.unreadable
    return fields


def _describe(store: object) -> str:
    describe = getattr(store, "describe", None)
    return str(describe()) if callable(describe) else type(store).__name__


def _own_host() -> str:
    name = re.sub(r"[^A-Za-z0-9._-]", "_", socket.gethostname())[:253].lstrip("._-")
    return name or "unknown"


def _iso_exact(ts: datetime) -> str:
    """`iso` with microseconds: renewals less than a second apart stay distinct."""
    return ts.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def _field(data: dict[str, Any], name: str, kind: type) -> Any:
    value = data.get(name)
    if not isinstance(value, kind):
        raise LockRecordError(f"{name} is missing or not a {kind.__name__}")
    return value


def _time(data: dict[str, Any], name: str) -> datetime:
    value = _field(data, name, str)
    if len(value) > 40:
        raise LockRecordError(f"{name} is not a time")
    try:
        return parse_iso(value)
    except (ValueError, OverflowError):
        raise LockRecordError(f"{name} is not a time") from None


__all__ = [
    "DEFAULT_LEASE",
    "FlockStore",
    "LeaseStore",
    "LockHolder",
    "LockRecord",
    "LockRecordError",
    "RunLock",
    "decode_record",
    "encode_record",
    "flock_record",
    "read_holder",
]
