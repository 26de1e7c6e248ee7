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
        while no backup is writing (there is no run lock yet, issue 10): it cannot tell
        a dead upload from a live one."""
        ...


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

    @property
    def sha256(self) -> str:
        return self._digest.hexdigest()

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
