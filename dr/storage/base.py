"""The backup store protocol, its data types, and helpers every store shares.

A store is a small set of synchronous primitives (restic's backend interface, barman's
`CloudInterface`): put a stream, open a stream, stat, list, delete, and find the debris a
killed run left behind. Orchestration (what to write in which order, the manifest last)
lives above this layer; concurrency inside an upload belongs to the store.

Keys are '/'-separated relative names, the same for every store, so that a backup can
be copied from one store to another unchanged. `validate_key` holds the rules.

Contract on failure, shared by all stores and held by tests/integration/
test_store_conformance.py:
- `put_stream` either stores the whole object or leaves nothing that looks whole
  (the S3 multipart upload is aborted, the file store's temp file is removed).
- An exception raised by the caller's stream propagates unchanged, so a
  `dr.errors.SnapshotError` raised while reading Vault's snapshot stays one. Failures of
  the store itself become `dr.errors.StorageError` (one line: what, where, next step) or
  `dr.errors.NotFoundError` for a missing key or version.
"""

from __future__ import annotations

import builtins
import hashlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import BinaryIO, Protocol, runtime_checkable

from dr.errors import StorageError

# Enough to keep a disk or socket busy, small enough to keep memory flat.
COPY_BLOCK_SIZE = 1024 * 1024


class Readable(Protocol):
    """What put_stream consumes: anything with read(n) -> bytes (no seek, no fileno)."""

    def read(self, size: int = -1, /) -> bytes: ...


@dataclass(frozen=True)
class ObjectRef:
    """What `put_stream`/`put_bytes` stored: goes into the manifest.

    `version_id` is the S3 VersionId (None for the file store and unversioned buckets);
    `sha256` is the hex digest of the bytes read from the caller's stream.
    """

    key: str
    version_id: str | None
    size: int
    sha256: str | None = None


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    size: int
    last_modified: datetime
    version_id: str | None = None
    is_latest: bool = True


@dataclass(frozen=True)
class TaggedObject:
    """A small object read with its ETag, for compare-and-swap writes (the run lock).

    `data` is empty when the object is larger than the reader's `max_size` (`size`
    says how large); `last_modified` is the store's own clock (S3: the server's)."""

    data: bytes
    etag: str
    size: int
    last_modified: datetime


# -- retention primitives (dr prune, docs/retention.md) ----------------------------------


@dataclass(frozen=True)
class ObjectLockStatus:
    """The S3 Object Lock state of one version: a retention (`mode` GOVERNANCE or
    COMPLIANCE until `retain_until`) and/or a legal hold. The file store has none."""

    mode: str | None = None
    retain_until: datetime | None = None
    legal_hold: bool = False

    def locked(self, now: datetime) -> bool:
        """Whether a permanent delete of the version is refused at `now`."""
        retained = self.mode is not None and self.retain_until is not None
        return self.legal_hold or (retained and self.retain_until is not None
                                   and self.retain_until > now)  # fmt: skip

    def describe(self) -> str:
        parts = []
        if self.mode is not None and self.retain_until is not None:
            parts.append(f"{self.mode} retention until {self.retain_until.isoformat()}")
        if self.legal_hold:
            parts.append("legal hold ON")
        return ", ".join(parts) or "no lock"


@dataclass(frozen=True)
class UploadInfo:
    """An unfinished upload: an S3 multipart upload (`upload_id` its UploadId) or a file
    store temp file (`upload_id` its file name), with the time it was started."""

    key: str
    upload_id: str
    initiated: datetime


class DeleteDenied(StorageError):
    """The store refused a permanent delete for lack of rights (S3 AccessDenied)."""


# -- end of retention primitives ---------------------------------------------------------


@runtime_checkable
class BackupStore(Protocol):
    """One place backups are kept. See the module docstring for the failure contract."""

    type_name: str

    def describe(self) -> str:
        """Where this store points, for messages: "s3://bucket", "file:///path"."""
        ...

    def preflight(self, *, write: bool) -> None:
        """Fail early, with the fix in the message, if the store cannot serve a run."""
        ...

    def put_stream(
        self,
        key: str,
        stream: Readable,
        *,
        metadata: Mapping[str, str] | None = None,
        progress: Callable[[int], None] | None = None,
        overwrite: bool = True,
    ) -> ObjectRef:
        """Store everything `stream.read(n)` returns until b"" under `key`.

        `overwrite=False`: write once; an existing object at `key` is never replaced
        (S3 `If-None-Match: *`, which the bucket policy in terraform/ demands of data
        objects) and the call fails with StorageError.

        The stream need not be seekable. `progress(n)` is called with the number of
        bytes just taken from the stream (an increment, possibly from a worker thread).
        """
        ...

    def put_bytes(
        self, key: str, data: bytes, *, metadata: Mapping[str, str] | None = None
    ) -> ObjectRef: ...

    def open_stream(self, key: str, version_id: str | None = None) -> BinaryIO:
        """A readable stream of the object; the caller closes it (or uses `with`)."""
        ...

    def get_bytes(self, key: str, version_id: str | None = None) -> bytes: ...

    def stat(self, key: str, version_id: str | None = None) -> ObjectInfo: ...

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        """Latest version of every key starting with `prefix` (a string prefix, as in
        S3, not only a directory), sorted by key."""
        ...

    def list_versions(self, prefix: str) -> Iterator[ObjectInfo]:
        """Every stored version (not delete markers), by key, newest first per key."""
        ...

    def delete(self, key: str, version_id: str | None = None) -> None:
        """Remove a key (S3, versioned: adds a delete marker) or one version of it.
        Deleting what does not exist is not an error."""
        ...

    def list_incomplete_uploads(self, prefix: str) -> builtins.list[str]:
        """Keys of unfinished uploads (S3 multipart uploads, file-store temp files)
        under `prefix`: what a killed run left behind."""
        ...

    def abort_incomplete_uploads(self, prefix: str) -> int:
        """Remove what `list_incomplete_uploads` names; returns how many. Run it only
        under the cluster's run lock (dr/storage/lock.py, `dr prune` takes it): it
        cannot tell a dead upload from a live one."""
        ...

    # -- retention primitives (dr prune, docs/retention.md) ------------------------------

    def list_delete_markers(self, prefix: str) -> Iterator[ObjectInfo]:
        """The delete markers under `prefix` (size 0), by key, newest first per key;
        none in the file store."""
        ...

    def delete_version(self, key: str, version_id: str | None) -> bool:
        """Remove one version (or delete marker) PERMANENTLY, so its storage is freed;
        `version_id` None only where the store keeps no versions (the file store).
        Returns False when it was not there (not an error). Missing delete rights or
        an Object Lock retention raise `DeleteDenied`."""
        ...

    def object_lock(self, key: str, version_id: str | None) -> ObjectLockStatus:
        """The Object Lock state of one version (never locked in the file store)."""
        ...

    def list_uploads(self, prefix: str) -> builtins.list[UploadInfo]:
        """Unfinished uploads under `prefix`, with the time each was started."""
        ...

    def abort_upload(self, upload: UploadInfo) -> bool:
        """Abort (remove) one unfinished upload; False when it is gone already."""
        ...

    # -- end of retention primitives -------------------------------------------------


def validate_key(key: str) -> str:
    """Refuse keys that would mean different things in different stores.

    Rules: non-empty, relative, '/'-separated, no empty, '.' or '..' segment, no
    backslash or NUL. S3 would accept more, but a key that escapes a directory in the
    file store, or reads differently on another system, is never what we meant.
    """
    problem = _key_problem(key)
    if problem:
        raise StorageError(f"invalid object key {key!r}: {problem}")
    return key


def validate_prefix(prefix: str) -> str:
    """A listing prefix: empty, or a key, or a key ending in '/'."""
    if prefix:
        validate_key(prefix[:-1] if prefix.endswith("/") else prefix)
    return prefix


def _key_problem(key: str) -> str | None:
    if not key:
        return "it is empty"
    if key.startswith("/"):
        return "keys are relative (no leading '/')"
    if "\\" in key or "\x00" in key:
        return "backslash and NUL are not allowed"
    if any(part in ("", ".", "..") for part in key.split("/")):
        return "empty, '.' and '..' path segments are not allowed"
    return None


class StreamReader:
    """Adapts the caller's stream for a store: full reads, digest, count, progress.

    - `read(n)` returns exactly n bytes unless the stream is at its end. Streams may
      return fewer (one frame at a time) or, carelessly, more; s3transfer takes a short
      first read for the end of the stream and sizes parts by what read returned, so
      this evens both out.
    - An exception raised by the wrapped stream is remembered in `error`, so a store can
      tell the caller's failure (re-raise it unchanged) from its own (map it).
    - `limit` bounds the total: reading past it raises `StorageError` (a store's own
      failure, not the stream's).
    """

    def __init__(
        self,
        stream: Readable,
        *,
        progress: Callable[[int], None] | None = None,
        limit: int | None = None,
        limit_message: str = "",
    ) -> None:
        self._stream = stream
        self._progress = progress
        self._limit = limit
        self._limit_message = limit_message
        self._digest = hashlib.sha256()
        self._eof = False
        self._pending = b""
        self.size = 0
        self.error: BaseException | None = None
        self._aborted = False

    @property
    def sha256(self) -> str:
        return self._digest.hexdigest()

    def abort(self) -> None:
        """Tell the wrapped stream that nobody will read on, if it can take the hint
        (an `abort()` method: the backup pipeline, dr/ops/pipeline.py). A store calls it
        from the caller's thread when the upload fails or is interrupted while another
        thread (s3transfer's submission thread) may be blocked in read(): the stream
        then raises there instead of blocking the transfer manager's shutdown."""
        self._aborted = True
        abort = getattr(self._stream, "abort", None)
        if callable(abort):
            abort()

    def read(self, size: int | None = -1) -> bytes:
        if self._eof and not self._pending:
            return b""
        if size is None or size < 0:
            pieces: list[bytes] = []
            while chunk := self._read_once(COPY_BLOCK_SIZE):
                pieces.append(chunk)
            return b"".join(pieces)
        first = self._read_once(size)
        if len(first) >= size or not first:
            return first
        buf = bytearray(first)
        del first
        while len(buf) < size and (chunk := self._read_once(size - len(buf))):
            buf += chunk
        return bytes(buf)

    def _read_once(self, size: int) -> bytes:
        if self._pending:
            data, self._pending = self._pending[:size], self._pending[size:]
            return data
        if self._eof:
            return b""
        try:
            data = self._stream.read(size)
        except BaseException as exc:
            # What a stream raises because the store aborted it is the store's failure
            # (already in hand), not the stream's.
            if not self._aborted:
                self.error = exc
            raise
        if not data:
            self._eof = True
            return b""
        self.size += len(data)
        if self._limit is not None and self.size > self._limit:
            raise StorageError(self._limit_message or f"object is larger than {self._limit}")
        self._digest.update(data)
        if self._progress is not None:
            self._progress(len(data))
        if len(data) > size:  # a stream that ignores its argument: keep our bound
            data, self._pending = data[:size], data[size:]
        return data
