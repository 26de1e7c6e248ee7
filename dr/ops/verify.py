"""`dr verify`: prove a stored backup whole without any Vault.

Downloads both objects (the exact VersionIds the manifest names), authenticates every
frame, re-runs the snapshot checks on the plaintext as it streams (gzip, tar members,
SHA256SUMS), and compares sizes and hashes with the manifest, whose own MAC is checked
with the data key. Plaintext stays in memory, a frame at a time.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, BinaryIO

from dr.crypto.envelope import decrypt_stream
from dr.crypto.recipients import KeyWrapper, Stanza
from dr.errors import DRError, IntegrityError
from dr.manifest import Layout, Manifest, ObjectRecord
from dr.ops.find import unlock
from dr.ops.readahead import read_ahead
from dr.ops.records import write_record
from dr.progress import NullProgress, Progress
from dr.storage.base import BackupStore
from dr.timesource import Now, utcnow
from dr.vault.catalog import Catalog
from dr.vault.snapshot import SnapshotChecker, SnapshotInfo

log = logging.getLogger(__name__)

# Plaintext frames (1 MiB by default) decrypted ahead of the snapshot checks: a little
# slack so neither thread waits on the other's per-frame jitter. Only 3 was measured
# (1 GB fetch 3.6-4.1 s -> 2.7-3.1 s); other depths were not tried.
READ_AHEAD_FRAMES = 3


class HashingReader:
    """Counts and hashes the ciphertext as the decryptor pulls it; optionally copies it
    to `tee` (a local spool of CIPHERTEXT, so a restore downloads once)."""

    def __init__(
        self, raw: BinaryIO, progress: Progress | None = None, tee: BinaryIO | None = None
    ) -> None:
        self.raw = raw
        self.sha = hashlib.sha256()
        self.size = 0
        self.progress = progress
        self.tee = tee

    def read(self, n: int = -1) -> bytes:
        data = self.raw.read(n)
        self.sha.update(data)
        self.size += len(data)
        if self.tee is not None:
            self.tee.write(data)
        if self.progress is not None and data:
            self.progress(len(data))
        return data


@dataclass
class VerifyResult:
    backup_id: str
    recipient: str
    snapshot_bytes: int
    raft_index: int
    catalog_secrets: int
    seconds: float
    checks: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "backup_id": self.backup_id,
            "ok": True,
            "recipient": self.recipient,
            "snapshot_bytes": self.snapshot_bytes,
            "raft_index": self.raft_index,
            "catalog_secrets": self.catalog_secrets,
            "seconds": round(self.seconds, 3),
            "checks": self.checks,
        }


def decrypted_object(
    store: BackupStore,
    record: ObjectRecord,
    data_key: bytes,
    *,
    progress: Progress | None = None,
    tee: BinaryIO | None = None,
    plaintext_digest: Callable[[], str] | None = None,
    read_ahead_frames: int = 0,
) -> Iterator[bytes]:
    """Stream an object's authenticated plaintext; at the end check sizes and hashes
    against the manifest record, raising IntegrityError before the generator ends.

    `read_ahead_frames`: decrypt in a thread, up to that many frames ahead of the
    consumer (memory: that many plaintext frames more); 0 decrypts in the caller's.

    `plaintext_digest`: the consumer hashes every frame it is given anyway (the snapshot
    checker's stream digest) and this returns that digest, read once the consumer has
    had the last frame; the plaintext is then not hashed a second time here."""
    plain_sha = hashlib.sha256()
    hash_here = plaintext_digest is None
    digest = plaintext_digest or plain_sha.hexdigest
    plain_size = 0
    with store.open_stream(record.key, record.version_id) as raw:
        hashing = HashingReader(raw, progress, tee)
        frames: Iterator[bytes] = decrypt_stream(hashing, data_key, record.context)  # type: ignore[arg-type]
        if read_ahead_frames:
            # Reading, the ciphertext's SHA-256 and AES-GCM in a thread of their own,
            # beside the consumer's checks (dr/ops/readahead.py). Each frame is a new
            # bytes object, so handing it to another thread is safe; when the loop
            # ends the thread has finished, so `hashing` is final below.
            frames = read_ahead(frames, read_ahead_frames, name="dr-decrypt")
        try:
            for frame in frames:
                if hash_here:
                    plain_sha.update(frame)
                plain_size += len(frame)
                yield frame
        finally:
            close = getattr(frames, "close", None)
            if close is not None:
                close()  # a consumer that stops early stops the read-ahead thread now
    plain_hex = digest()
    problems = []
    if (
        hashing.size != record.ciphertext_size
        or hashing.sha.hexdigest() != record.ciphertext_sha256
    ):
        problems.append("ciphertext size/sha256")
    if plain_size != record.plaintext_size or plain_hex != record.plaintext_sha256:
        problems.append("plaintext size/sha256")
    if problems:
        raise IntegrityError(
            f"{record.key} does not match its manifest ({', '.join(problems)}); "
            "the object or the manifest was replaced"
        )


def load_catalog(store: BackupStore, manifest: Manifest, data_key: bytes) -> Catalog:
    raw = b"".join(decrypted_object(store, manifest.catalog, data_key))
    try:
        catalog = Catalog.from_json(json.loads(raw))
    except (ValueError, KeyError, TypeError) as exc:
        raise IntegrityError(
            f"catalog of {manifest.backup_id} is malformed ({exc!s:.80})"
        ) from None
    if catalog.backup_id != manifest.backup_id or catalog.cluster != manifest.cluster:
        raise IntegrityError(f"catalog of {manifest.backup_id} names another backup")
    return catalog


def authenticate_snapshot(
    store: BackupStore,
    manifest: Manifest,
    data_key: bytes,
    *,
    progress: Progress | None = None,
    tee: BinaryIO | None = None,
) -> SnapshotInfo:
    """Download the snapshot, authenticate every frame, check the raft snapshot inside
    (gzip, tar, SHA256SUMS) and compare it with the manifest. Plaintext is dropped
    frame by frame; only ciphertext may be kept (`tee`)."""
    checker = SnapshotChecker()
    frames = decrypted_object(
        store,
        manifest.snapshot,
        data_key,
        progress=progress,
        tee=tee,
        plaintext_digest=checker.stream_sha256,  # it hashes every frame it is fed
        read_ahead_frames=READ_AHEAD_FRAMES,
    )
    for frame in frames:
        checker.feed(frame)
    info = checker.finish()
    expected = manifest.snapshot_info
    if info.index != expected.get("raft_index") or info.state_sha256 != expected.get(
        "state_sha256"
    ):
        raise IntegrityError(
            f"snapshot of {manifest.backup_id} is not the one its manifest describes "
            "(raft index or state.bin sha256 differ)"
        )
    return info


def verify_backup(
    store: BackupStore,
    manifest: Manifest,
    wrappers: Sequence[KeyWrapper],
    *,
    progress: Progress | None = None,
    record_in: Layout | None = None,
    now: Now = utcnow,
) -> VerifyResult:
    """Authenticate and check a whole backup without Vault. With `record_in` (the CLI
    passes the cluster's layout) the outcome is stored as a verify record for `dr status`
    and `dr prune` (dr/ops/records.py): MACed when it passed, bare when it failed."""
    data_key: bytes | None = None
    try:
        data_key, stanza = unlock(manifest, wrappers)
        result = _verify(store, manifest, data_key, stanza, progress or NullProgress())
    except DRError as exc:
        if record_in is not None:
            write_record(store, record_in, "verify", manifest.backup_id, passed=False,
                         exit_code=int(exc.exit_code), data_key=None, now=now,
                         summary={"error": exc.message[:300]})  # fmt: skip
        raise
    if record_in is not None:
        write_record(store, record_in, "verify", manifest.backup_id, passed=True, exit_code=0,
                     data_key=data_key, now=now,
                     summary={"seconds": round(result.seconds, 3)})  # fmt: skip
    return result


def _verify(
    store: BackupStore, manifest: Manifest, data_key: bytes, stanza: Stanza, progress: Progress
) -> VerifyResult:
    started = time.monotonic()
    checks = [f"data key unwrapped by {stanza.type}:{stanza.name}", "manifest MAC"]
    progress.label = "verify"
    info = authenticate_snapshot(store, manifest, data_key, progress=progress)
    progress.finish()
    checks += [
        "snapshot frames authenticated",
        "snapshot sizes and sha256",
        "snapshot tar",
        "snapshot SHA256SUMS",
        "raft index and state.bin match the manifest",
    ]
    catalog = load_catalog(store, manifest, data_key)
    if catalog.counts()["secrets"] != manifest.catalog_counts.get("secrets"):
        raise IntegrityError(f"catalog of {manifest.backup_id} has a different path count")
    checks.append("catalog authenticated and counted")
    return VerifyResult(
        backup_id=manifest.backup_id,
        recipient=f"{stanza.type}:{stanza.name}",
        snapshot_bytes=manifest.snapshot.plaintext_size,
        raft_index=info.index,
        catalog_secrets=len(catalog.secrets),
        seconds=time.monotonic() - started,
        checks=checks,
    )
