"""The backup's snapshot pipeline: Vault's stream, the checks and the envelope in threads.

One thread per stage, bounded queues between them::

    read   Vault's HTTP body, joined into ~1 MiB chunks (dr/vault/raft.py)
      |--> check  SnapshotChecker.feed: sha256 of the stream, inflate, tar, sha256 of
      |           state.bin; finish() at the end (dr/vault/snapshot.py)
      +--> seal   EncryptingReader: AES-256-GCM of each frame where it lies in the
                  chunk (dr/crypto/envelope.py)
                    --> read(n): the store's reader (s3transfer's submission thread hands
                        parts to its upload workers; the file store reads in its caller)

Run one after another on one thread (what `dr backup` did before), every byte waited for
the socket, then three sha256 passes, inflate and AES-GCM, then the store's own sha256
and the part uploads. In threads they overlap: socket reads, hashlib (above 2 KiB),
zlib-ng and the store's sockets release the GIL; AES-GCM (cryptography) and the copies
hold it, briefly per 1 MiB frame. The check and the seal stage both take every chunk the
read stage fetched (the same immutable bytes object, not a copy), in the same order, so
the checker's sha256 of the stream is the envelope's plaintext sha256 (the manifest's
`plaintext_sha256`), and the store's digest of what it read is the ciphertext's
(`ciphertext_sha256`): every byte is hashed once, on the stage that has time for it.

Every check still covers the whole snapshot in the same pass, and a failure still ends
the upload: the envelope's final frame (and so the end of the stream the store reads,
and so CompleteMultipartUpload) waits until the check stage's finish() has passed. Any
stage's exception (SnapshotError from the stream or the checks, anything else) stops
every stage and is raised, the same object, from the store's next read(): the store
aborts its upload and re-raises it unchanged (dr/storage/base.py). `abort()` (the store
calls it when its upload fails or is interrupted, `close()` when the caller leaves)
stops the stages without an error. The threads are daemons and poll the stop flag
every POLL seconds when a queue blocks them, so neither Ctrl-C nor SIGTERM waits for
them.

Memory, whatever the snapshot's size. With C the read stage's chunk (at most 1 MiB plus
one HTTP piece, ~1.06 MiB) and F the frame size (1 MiB by default):

    (2 x depth + 4) x C          chunks in the two queues (shared by both; at most this
                                 many alive), one being joined, and one held by each
                                 of the check and seal stages plus the envelope's
                                 lookahead
    + 1 MiB                      the checker's inflated output (OUT_CHUNK)
    + (sealed_depth + 3) x F     sealed frames queued, the envelope's frame buffer and
                                 the frame being sealed, and the piece read() holds

Defaults (depth 3, sealed_depth 4, F 1 MiB): about 10.6 + 1 + 7 = 19 MiB, beside the
store's own bound (S3Store: (max_in_memory_chunks + 2) x chunk_size + 1 MiB x (parts in
flight + 1), 35 MiB by default). Deeper queues bought nothing measurable: the stages
spend most of the run blocked on a full queue behind the part uploads.
tests/unit/test_pipeline.py holds the queue depths.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Generator, Iterable
from types import TracebackType
from typing import Any

from dr.crypto.envelope import DEFAULT_FRAME_SIZE, EncryptingReader
from dr.vault.snapshot import SnapshotChecker

__all__ = ["PipelineAborted", "SnapshotPipeline"]

POLL = 0.1  # seconds a blocked stage waits before it looks at the stop flag again
JOIN_TIMEOUT = 2.0  # close() waits this long per stage; daemons are left after that

_END = object()  # end of a queue: the stage before it finished


class _Stopped(Exception):
    """Inside a stage: the pipeline was stopped; the stage ends quietly."""


class PipelineAborted(RuntimeError):
    """read() after abort(): nobody should be reading any more."""


class SnapshotPipeline:
    """Check and encrypt a snapshot stream in threads; read the envelope with read(n).

    `chunks` is iterated (and closed, if it is a generator) in the read thread only, so
    the HTTP request starts there; `checker` is fed in the check thread only. After the
    store has read to the end, `checker.info`, `plaintext_sha256` and the envelope's
    sizes and ciphertext digest (`envelope.plaintext_size` ...) are final. Use as a
    context manager (or start() / close()): leaving it stops every stage.
    """

    def __init__(
        self,
        chunks: Iterable[bytes],
        data_key: bytes,
        context: str,
        *,
        frame_size: int = DEFAULT_FRAME_SIZE,
        depth: int = 3,
        sealed_depth: int = 4,
    ) -> None:
        if depth < 1 or sealed_depth < 1:
            raise ValueError("queue depths must be >= 1")
        self._chunks = chunks
        self.checker = SnapshotChecker()
        self.envelope = EncryptingReader(
            self._plaintext(),
            data_key,
            context,
            frame_size=frame_size,
            hash_plaintext=False,  # the checker's stream digest is the same bytes'
            hash_ciphertext=False,  # the store's StreamReader hashes what it uploads
        )
        self._to_check: queue.Queue[Any] = queue.Queue(depth)
        self._to_seal: queue.Queue[Any] = queue.Queue(depth)
        self._sealed: queue.Queue[Any] = queue.Queue(sealed_depth)
        self._stop = threading.Event()
        self._checked = threading.Event()
        self._lock = threading.Lock()
        self._error: BaseException | None = None
        self._piece: bytes = b""
        self._pos = 0
        self._drained = threading.Event()  # the store read the envelope to its end
        self._threads = [
            threading.Thread(target=self._guard, args=(stage,), name=name, daemon=True)
            for name, stage in (
                ("dr-snapshot-read", self._read_stage),
                ("dr-snapshot-check", self._check_stage),
                ("dr-snapshot-seal", self._seal_stage),
            )
        ]
        self._started = False

    # -- life cycle ----------------------------------------------------------------------

    def start(self) -> SnapshotPipeline:
        if not self._started:
            self._started = True
            for thread in self._threads:
                thread.start()
        return self

    def __enter__(self) -> SnapshotPipeline:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def abort(self) -> None:
        """Stop every stage, without an error of our own (the reader gave up)."""
        self._stop.set()

    def close(self) -> None:
        """Stop every stage and wait a little for the threads: a stage blocked on a
        queue ends within POLL; one inside a socket read of a stalled stream ends at the
        read's timeout, as a daemon that never holds the process up."""
        self.abort()
        if self._started:
            for thread in self._threads:
                if thread is not threading.current_thread():
                    thread.join(JOIN_TIMEOUT)
        if not self._threads[2].is_alive():  # never close a generator another thread runs
            self.envelope.close()

    @property
    def plaintext_sha256(self) -> str:
        """sha256 (hex) of the snapshot as received and encrypted: the checker's."""
        info = self.checker.info
        if info is None or not self._drained.is_set():
            raise RuntimeError("SnapshotPipeline.plaintext_sha256 is known only after EOF")
        return info.sha256

    def wait_drained(self) -> bool:
        """Block until the store has read the envelope to its end: True. That end comes
        only after the whole snapshot was read and passed every check, and after it the
        store allocates no more part buffers (it only finishes the uploads in flight).
        False when the pipeline stopped first (a failure, which the store's read raises,
        or abort()). Any thread may wait; the catalog walk does (dr/ops/catalogwalk.py)."""
        while not self._drained.wait(POLL):
            if self._stop.is_set():
                return self._drained.is_set()
        return True

    @property
    def error(self) -> BaseException | None:
        """The first failure of any stage (None while all is well)."""
        return self._error

    # -- the store's side ------------------------------------------------------------------

    def read(self, size: int | None = -1) -> bytes:
        """Up to `size` bytes of the envelope (all of it for -1): fewer only at the end.
        Raises the first failure of any stage."""
        limit = None if size is None or size < 0 else size
        parts: list[bytes | memoryview] = []
        got = 0
        while limit is None or got < limit:
            if self._pos == len(self._piece):
                if self._drained.is_set():
                    break
                item = self._take()
                if item is _END:
                    self._drained.set()
                    self._piece, self._pos = b"", 0
                    break
                self._piece, self._pos = item, 0
            avail = len(self._piece) - self._pos
            take = avail if limit is None else min(avail, limit - got)
            if self._pos == 0 and take == avail:
                parts.append(self._piece)  # a whole frame: no copy until the join
            else:
                parts.append(memoryview(self._piece)[self._pos : self._pos + take])
            got += take
            self._pos += take
        if len(parts) == 1 and isinstance(parts[0], bytes):
            return parts[0]
        return b"".join(parts)

    def _take(self) -> Any:
        while True:
            if self._error is not None:
                raise self._error
            if self._stop.is_set():
                raise PipelineAborted("the snapshot pipeline was stopped")
            try:
                return self._sealed.get(timeout=POLL)
            except queue.Empty:
                continue

    # -- the stages ------------------------------------------------------------------------

    def _guard(self, stage: Any) -> None:
        try:
            stage()
        except _Stopped:
            pass
        except BaseException as exc:  # handed to the reader's thread, unchanged
            with self._lock:
                if self._error is None:
                    self._error = exc
            self._stop.set()

    def _put(self, where: queue.Queue[Any], item: Any) -> None:
        while True:
            if self._stop.is_set():
                raise _Stopped
            try:
                where.put(item, timeout=POLL)
                return
            except queue.Full:
                continue

    def _get(self, where: queue.Queue[Any]) -> Any:
        while True:
            if self._stop.is_set():
                raise _Stopped
            try:
                return where.get(timeout=POLL)
            except queue.Empty:
                continue

    def _read_stage(self) -> None:
        chunks = iter(self._chunks)
        try:
            for chunk in chunks:
                if not chunk:
                    continue
                # Both stages hold the same object: it must not change under them.
                data = chunk if isinstance(chunk, bytes) else bytes(chunk)
                self._put(self._to_check, data)
                self._put(self._to_seal, data)
        finally:
            close = getattr(chunks, "close", None)
            if close is not None:
                close()  # a generator: ends the HTTP reply in this thread
        self._put(self._to_check, _END)
        self._put(self._to_seal, _END)

    def _check_stage(self) -> None:
        while (item := self._get(self._to_check)) is not _END:
            self.checker.feed(item)
        self.checker.finish()
        self._checked.set()

    def _seal_stage(self) -> None:
        for piece in self.envelope.pieces():
            self._put(self._sealed, piece)
        self._put(self._sealed, _END)

    def _plaintext(self) -> Generator[bytes, None, None]:
        """The envelope's source, in the seal thread."""
        while (item := self._get(self._to_seal)) is not _END:
            yield item
        # The envelope seals its final frame only when this ends: so no store sees the
        # end of the stream before the whole snapshot has passed every check.
        while not self._checked.wait(POLL):
            if self._stop.is_set():
                raise _Stopped
