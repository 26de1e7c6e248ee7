"""Raft snapshot endpoints: save as a stream, restore from a stream.

Save: the body is never buffered whole; it is handed on 1 MiB at a time. Restore: the
body is a sized, read()-able object over the decrypting frames, so the request carries
a Content-Length (the plaintext size is in the authenticated manifest) and streams
without holding the snapshot in memory. A restore is never retried: the server may have
acted (the client used for it is made with retries=0 by the caller).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

from dr.errors import SnapshotError, VaultError
from dr.vault.connection import VaultClient, VaultUnreachable

log = logging.getLogger(__name__)

SNAPSHOT_PATH = "sys/storage/raft/snapshot"
FORCE_RESTORE_PATH = "sys/storage/raft/snapshot-force"
CHUNK = 1 << 20


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
            yield from reply.iter_bytes(CHUNK)
        except VaultUnreachable:
            # A connection that drops mid-body: the snapshot is incomplete. Not retried:
            # the caller's upload is aborted and cron runs the next backup.
            raise SnapshotError(
                f"the snapshot stream from {client.label} broke off; nothing was stored; run "
                "the backup again"
            ) from None


class SizedBody:
    """A read()-able request body of known size over an iterator of byte frames.
    http.client reads it in small blocks, so the current frame is served through a
    moving offset, not re-sliced."""

    def __init__(self, frames: Iterator[bytes], size: int) -> None:
        self._frames = frames
        self._size = size
        self._frame = memoryview(b"")
        self._offset = 0
        self.sent = 0

    def __len__(self) -> int:
        return self._size

    def read(self, n: int = -1) -> bytes:
        parts: list[bytes] = []
        want = n if n >= 0 else self._size
        while want > 0:
            if self._offset >= len(self._frame):
                try:
                    self._frame = memoryview(next(self._frames))
                except StopIteration:
                    break
                self._offset = 0
            piece = self._frame[self._offset : self._offset + want]
            self._offset += len(piece)
            want -= len(piece)
            parts.append(piece.tobytes())
        out = b"".join(parts)
        self.sent += len(out)
        return out


def restore_snapshot(
    client: VaultClient,
    frames: Iterator[bytes],
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
            body=body,  # read() + __len__: streamed with a Content-Length
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
