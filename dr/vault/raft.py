"""Raft snapshot endpoints: save as a stream, restore from a stream.

Save: the body is never buffered whole; it is handed on 1 MiB at a time. Restore: the
body is a sized, iterable object over the decrypting frames, so the request carries
a Content-Length (the plaintext size is in the authenticated manifest) and streams
frame by frame to the socket without holding the snapshot in memory. A restore is
never retried: the server may have acted (the client used for it is made with
retries=0 by the caller).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

from dr.errors import SnapshotError, VaultError
from dr.vault.connection import VaultClient, VaultUnreachable

# A frame of the snapshot to send: bytes, or a view of a buffer the source reuses.
Frame = bytes | bytearray | memoryview

log = logging.getLogger(__name__)

SNAPSHOT_PATH = "sys/storage/raft/snapshot"
FORCE_RESTORE_PATH = "sys/storage/raft/snapshot-force"
CHUNK = 1 << 20
BODY_BLOCK = 1 << 20


def stream_snapshot(client: VaultClient) -> Iterator[bytes]:
    """Yield the raw snapshot (gzip) from the active node, chunk by chunk.

    Raft is not namespaced: the request goes to the root namespace whatever
    vault.namespace says."""
    reply = client.send("GET", SNAPSHOT_PATH, stream=True, namespace=None, timeout=(10, 600))
    with reply:
        if reply.status != 200:
            raise client.error(
                reply,
                "GET sys/storage/raft/snapshot",
                hint="the token needs read on sys/storage/raft/snapshot (docs/vault-policy.md)"
                if reply.status == 403
                else "",
            )
        try:
            yield from _coalesce(reply.iter_bytes(CHUNK), CHUNK)
        except VaultUnreachable:
            # A connection that drops mid-body: the snapshot is incomplete. Not retried:
            # the caller's upload is aborted and cron runs the next backup.
            raise SnapshotError(
                f"the snapshot stream from {client.label} broke off; nothing was stored; run "
                "the backup again"
            ) from None


def _coalesce(pieces: Iterator[bytes], size: int) -> Iterator[bytes]:
    """Join the body's pieces into chunks of at least `size` bytes (the last may be
    shorter). requests hands a chunked body on as the server's HTTP chunks, about
    32-64 KiB from OpenBao (8,000 for 250 MB), and every stage after this one (checker,
    envelope, queues between pipeline threads) pays per chunk, in Python and with the
    GIL held: hashlib keeps the GIL for updates under 2 KiB, and some chunks are that
    small. One join per chunk costs one copy. Memory: `size` plus one piece."""
    held: list[bytes] = []
    count = 0
    for piece in pieces:
        if not held and len(piece) >= size:
            yield piece
            continue
        held.append(piece)
        count += len(piece)
        if count >= size:
            yield b"".join(held)
            held.clear()
            count = 0
    if held:
        yield b"".join(held)


class SizedBody:
    """A request body of known size over an iterator of byte frames.

    Iterable and sized, with no read(): requests takes the Content-Length from
    __len__ and urllib3 hands every block to the socket's sendall as it is. (A
    read()-able body is read in urllib3's 16 KiB blocksize, a slice and a copy per
    block.) Frames are the envelope's (1 MiB by default) and pass through uncopied;
    smaller ones are joined into blocks of at least BODY_BLOCK, so the syscalls stay
    large whatever frame size a backup was written with. Memory: one block.
    """

    def __init__(self, frames: Iterator[Frame], size: int) -> None:
        self._frames = frames
        self._size = size
        self.sent = 0

    def __len__(self) -> int:
        return self._size

    def __iter__(self) -> Iterator[Frame]:
        for block in _blocks(self._frames, BODY_BLOCK):
            self.sent += len(block)
            if self.sent > self._size:
                # Never more than the Content-Length promised: the server would take
                # the excess as the next request.
                raise SnapshotError(
                    f"the snapshot is longer than its recorded size ({self._size} bytes)"
                )
            yield block
        if self.sent != self._size:
            raise SnapshotError(
                f"the snapshot ended at {self.sent} of its recorded {self._size} bytes"
            )


def _blocks(frames: Iterator[Frame], minimum: int) -> Iterator[Frame]:
    """Frames of at least `minimum` bytes as they are, smaller ones joined. A frame may
    be a view of a buffer its source reuses (decrypt_stream_reusing): each is either
    handed on before the next is pulled or copied into the block being joined."""
    block = bytearray()
    for frame in frames:
        if not block and len(frame) >= minimum:
            yield frame
            continue
        block += frame
        if len(block) >= minimum:
            yield block
            block = bytearray()
    if block:
        yield block


def restore_snapshot(
    client: VaultClient,
    frames: Iterator[Frame],
    size: int,
    *,
    force: bool,
    timeout: float = 600,
) -> int:
    """POST the snapshot to the restore endpoint; `force` for a snapshot of another
    cluster. Returns the bytes sent. Errors raised by `frames` (an integrity failure)
    propagate unchanged."""
    path = FORCE_RESTORE_PATH if force else SNAPSHOT_PATH
    body = SizedBody(frames, size)
    try:
        reply = client.send(
            "POST",
            path,
            body=body,  # __iter__ + __len__: streamed with a Content-Length
            headers={"Content-Type": "application/octet-stream"},
            namespace=None,
            timeout=(10, timeout),
        )
    except VaultUnreachable:
        raise VaultError(
            f"restore into {client.label} failed while sending the snapshot; the target may "
            "be in any state: check it before retrying"
        ) from None
    with reply:
        if not reply.ok:
            errors = reply.errors
            hint = ""
            if "snapshot-force" in errors:
                hint = "; the snapshot is from another cluster: confirm a forced restore"
            elif reply.status == 403:
                hint = "; the token needs update on sys/storage/raft/snapshot(-force)"
            raise VaultError(
                f"Vault at {client.label} refused the restore ({reply.status}: {errors}){hint}"
            )
    log.info("restore call accepted by %s (%d bytes sent)", client.label, body.sent)
    return body.sent
