"""Fetch-and-authenticate a backup into a private ciphertext spool (restore, drill, decrypt).

Invariant 3: nothing that fails authentication reaches Vault. `fetch_backup` therefore
downloads the snapshot ONCE into a private spool of CIPHERTEXT (mode 0600, in a 0700
temp dir), authenticating every frame and re-checking the raft snapshot inside as it
goes; only when all of it passed may a caller stream it into Vault, decrypting again
frame by frame from the local spool (which can no longer change under us, unlike a
second download). Plaintext exists only in memory, one frame at a time.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from dr.crypto.envelope import decrypt_stream
from dr.crypto.recipients import KeyWrapper, Stanza
from dr.manifest import Manifest
from dr.ops.find import unlock
from dr.ops.verify import authenticate_snapshot, load_catalog
from dr.progress import NullProgress, Progress
from dr.storage.base import BackupStore
from dr.vault.catalog import Catalog
from dr.vault.snapshot import SnapshotInfo

log = logging.getLogger(__name__)


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

    def plaintext(self) -> Iterator[bytes]:
        """The snapshot, decrypted again frame by frame from the local spool."""
        with self.spool.open("rb") as raw:
            yield from decrypt_stream(raw, self.data_key, self.manifest.snapshot.context)

    def close(self) -> None:
        shutil.rmtree(self.spool_dir, ignore_errors=True)

    def __enter__(self) -> FetchedBackup:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


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
        fd = os.open(spool, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as tee:
            progress.label = "fetch"
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
