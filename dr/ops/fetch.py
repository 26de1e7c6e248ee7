"""Fetch-and-authenticate a backup into a private ciphertext spool (restore, drill, decrypt).

Invariant 3: nothing that fails authentication reaches Vault. `fetch_backup` therefore
downloads the snapshot ONCE into a private spool of CIPHERTEXT (mode 0600, in a 0700
temp dir), authenticating every frame and re-checking the raft snapshot inside as it
goes; only when all of it passed may a caller stream it into Vault, decrypting again
frame by frame from the local spool (which can no longer change under us, unlike a
second download). Plaintext exists only in memory, one frame at a time.

A store that can download concurrently (`download_into`: S3's ranged GETs) writes the
spool at offsets, out of order, while this thread authenticates its written prefix in
order (`_Spool`): the download and the checks overlap, and the spool is written once.
Other stores (a local directory) are read once in order and teed into the spool.

Memory: the store's download buffers (S3: dr/storage/s3.py `download_into`, 12 MiB
with the defaults) + the reader's two wire frames and one plaintext frame + up to
READ_AHEAD_FRAMES (3) plaintext frames decrypted ahead of the checks, in a thread of
their own (dr/ops/verify.py) + the snapshot checker's inflate window; the upload
later holds two wire frames and one plaintext frame (`FetchedBackup.plaintext`).
Nothing grows with the snapshot.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, cast, runtime_checkable

from dr.crypto.envelope import decrypt_stream_reusing
from dr.crypto.recipients import KeyWrapper, Stanza
from dr.errors import IntegrityError, StorageError
from dr.manifest import Manifest
from dr.ops.find import unlock
from dr.ops.verify import authenticate_snapshot, load_catalog
from dr.progress import NullProgress, Progress
from dr.storage.base import BackupStore
from dr.vault.catalog import Catalog
from dr.vault.snapshot import SnapshotInfo

log = logging.getLogger(__name__)

# How long a failed or interrupted fetch waits for the download's threads to stop (they
# stop at their next chunk once the spool refuses writes; the spool is removed anyway).
_JOIN_TIMEOUT = 30.0


@dataclass
class FetchedBackup:
    """An authenticated backup: the data key, the catalog, and a ciphertext spool."""

    manifest: Manifest
    data_key: bytes = field(repr=False)
    stanza: Stanza
    info: SnapshotInfo
    catalog: Catalog
    spool_dir: Path
    spool: Path
    seconds: float

    def plaintext(self) -> Iterator[bytes | memoryview]:
        """The snapshot, decrypted again frame by frame from the local spool (each
        frame's tag checked again; the spool is private and was authenticated whole).
        Each frame is a view of one reused buffer, valid until the next is pulled: use
        it at once (send it, write it), never keep it."""
        with self.spool.open("rb", buffering=0) as raw:
            yield from decrypt_stream_reusing(raw, self.data_key, self.manifest.snapshot.context)

    def close(self) -> None:
        shutil.rmtree(self.spool_dir, ignore_errors=True)

    def __enter__(self) -> FetchedBackup:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@runtime_checkable
class ConcurrentDownload(Protocol):
    """A store that downloads one object into a seekable file, writing it at offsets
    (possibly out of order, a retried range again): S3Store.download_into."""

    def download_into(self, key: str, version_id: str | None, sink: Any) -> None: ...


class _SpoolClosed(StorageError):
    """Raised into the download when the fetch gave up (failed check, Ctrl-C)."""


class _Spool:
    """The ciphertext spool, written at offsets by the download's IO thread and read in
    order, as its written prefix grows, by the authenticating thread.

    Bytes once handed to the reader were authenticated as they are: a retried range
    that writes them again must bring the same bytes (the version is pinned and
    s3transfer sends If-Match, so it does), or the download fails. So the spool the
    upload reads is exactly what was authenticated.
    """

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._writing = threading.Lock()  # one write at a time (s3transfer has one IO thread)
        self._cond = threading.Condition()
        self._wpos = 0  # the writer's seek position
        self._ready = 0  # [0, ready) is written
        self._pending: dict[int, int] = {}  # start -> end of ranges written past ready
        self._handed = 0  # [0, handed) went to the reader: must never change
        self._rpos = 0
        self._done = False
        self._error: BaseException | None = None
        self._closed = False

    # -- the writer's side: what s3transfer needs of a seekable file -------------------

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        self._wpos = offset if whence == os.SEEK_SET else self._wpos + offset
        return self._wpos

    def tell(self) -> int:
        return self._wpos

    def write(self, data: bytes) -> int:
        view = memoryview(data).cast("B")
        with self._writing:
            start, end = self._wpos, self._wpos + len(view)
            with self._cond:
                if self._closed:
                    raise _SpoolClosed("the fetch was abandoned; download stopped")
                # Bytes past the readable prefix: the reader cannot touch them until
                # they are marked, and only writers (serialised by _writing) move the
                # prefix, so they are written without the reader's lock (py-spy: the
                # reader spent a tenth of a 1 GB fetch waiting on it). A range that
                # overlaps the prefix (a retry) is written under it, as it must be.
                fresh = start >= self._ready
                if not fresh:
                    self._write_at(view, start)
            if fresh:
                self._write_at(view, start)
            with self._cond:
                self._wpos = end
                self._mark(start, end)
                self._cond.notify_all()
        return len(view)

    def _write_at(self, view: memoryview, start: int) -> None:
        end = start + len(view)
        if start < self._handed:
            keep = min(end, self._handed) - start
            if os.pread(self._fd, keep, start) != view[:keep]:
                raise IntegrityError(
                    "a retried download range brought other bytes than the first try; "
                    "the object changed during the download: run the command again"
                )
        written = 0
        while written < len(view):
            written += os.pwrite(self._fd, view[written:], start + written)

    def _mark(self, start: int, end: int) -> None:
        if start > self._ready:
            self._pending[start] = max(end, self._pending.get(start, end))
            return
        self._ready = max(self._ready, end)
        while True:
            reached = [s for s in self._pending if s <= self._ready]
            if not reached:
                return
            for s in reached:
                self._ready = max(self._ready, self._pending.pop(s))

    def finish(self, error: BaseException | None) -> None:
        """The download ended (with `error`, or whole)."""
        with self._cond:
            if error is None and self._pending:
                error = IntegrityError("the download left a gap in the object; run it again")
            self._done = True
            self._error = error
            self._cond.notify_all()

    def close(self) -> None:
        """No write after this returns (so the caller may close the file descriptor):
        it waits for a write in progress (one pwrite to the page cache)."""
        with self._writing, self._cond:
            self._closed = True
            self._cond.notify_all()

    # -- the reader's side ---------------------------------------------------------------

    def read(self, n: int = -1) -> bytes:
        with self._cond:
            while True:
                if self._error is not None:
                    raise self._error
                avail = self._ready - self._rpos
                if self._done or (n >= 0 and avail >= n):
                    break
                # A timeout, so that Ctrl-C is seen even if no write ever comes.
                self._cond.wait(timeout=1.0)
            take = avail if n < 0 else min(n, avail)
            start = self._rpos
            self._rpos += take
            self._handed = self._rpos
        return os.pread(self._fd, take, start) if take else b""

    def __enter__(self) -> _Spool:
        return self

    def __exit__(self, *exc: object) -> None:
        pass


class _OneObject:
    """Serves `authenticate_snapshot` (dr/ops/verify.py) the spool as the object's
    stream, so restore, drill and verify run the very same checks."""

    def __init__(self, key: str, spool: _Spool) -> None:
        self._key = key
        self._spool = spool

    def open_stream(self, key: str, version_id: str | None = None) -> _Spool:
        if key != self._key:
            raise AssertionError(f"asked for {key}, not {self._key}")
        return self._spool


def _fetch_concurrently(
    store: ConcurrentDownload,
    manifest: Manifest,
    data_key: bytes,
    fd: int,
    progress: Progress,
) -> SnapshotInfo:
    record = manifest.snapshot
    spool = _Spool(fd)

    def download() -> None:
        error: BaseException | None = None
        try:
            store.download_into(record.key, record.version_id, spool)
        except BaseException as exc:
            error = exc
        finally:
            spool.finish(error)

    thread = threading.Thread(target=download, name="dr-fetch-download", daemon=True)
    thread.start()
    try:
        # Reads to the end of the object (the envelope refuses anything after its final
        # frame), so the download is over when this returns.
        return authenticate_snapshot(
            cast(BackupStore, _OneObject(record.key, spool)),
            manifest,
            data_key,
            progress=progress,
        )
    finally:
        spool.close()  # a download still running fails at its next write
        thread.join(_JOIN_TIMEOUT)
        if thread.is_alive():
            log.warning("the snapshot download did not stop within %.0f s", _JOIN_TIMEOUT)


def fetch_backup(
    store: BackupStore,
    manifest: Manifest,
    wrappers: Sequence[KeyWrapper],
    *,
    spool_parent: Path | None = None,
    progress: Progress | None = None,
) -> FetchedBackup:
    started = time.monotonic()
    progress = progress or NullProgress()
    data_key, stanza = unlock(manifest, wrappers)
    spool_dir = Path(tempfile.mkdtemp(prefix="dr-spool-", dir=spool_parent))
    os.chmod(spool_dir, 0o700)
    spool = spool_dir / "snapshot.enc"
    try:
        fd = os.open(spool, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        progress.label = "fetch"
        if isinstance(store, ConcurrentDownload):
            try:
                info = _fetch_concurrently(store, manifest, data_key, fd, progress)
            finally:
                os.close(fd)
        else:
            with os.fdopen(fd, "wb") as tee:
                info = authenticate_snapshot(store, manifest, data_key, progress=progress, tee=tee)
        progress.finish()
        catalog = load_catalog(store, manifest, data_key)
    except BaseException:
        shutil.rmtree(spool_dir, ignore_errors=True)
        raise
    seconds = time.monotonic() - started
    log.info(
        "backup %s fetched and authenticated (%d bytes, raft index %d) in %.2f s",
        manifest.backup_id,
        manifest.snapshot.ciphertext_size,
        info.index,
        seconds,
    )
    return FetchedBackup(manifest, data_key, stanza, info, catalog, spool_dir, spool, seconds)
