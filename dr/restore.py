"""Fetch-and-authenticate, and the raft restore itself; shared by `dr restore` and drills.

Invariant 3: nothing that fails authentication reaches Vault. `fetch_backup` therefore
downloads the snapshot ONCE into a private spool of CIPHERTEXT (mode 0600, in a 0700
temp dir), authenticating every frame and re-checking the raft snapshot inside as it
goes; only when all of it passed does `restore_snapshot` stream it into Vault,
decrypting again frame by frame from the local spool (which can no longer change under
us, unlike a second download). Plaintext exists only in memory, one frame at a time.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import requests

from dr.backups import unlock
from dr.config import Config
from dr.crypto.envelope import decrypt_stream
from dr.crypto.recipients import KeyWrapper, Stanza
from dr.errors import IntegrityError, UsageError, VaultError
from dr.manifest import Manifest
from dr.progress import NullProgress, Progress
from dr.storage.base import BackupStore
from dr.vault.catalog import Catalog
from dr.vault.client import make_session, response_errors, tls_context
from dr.vault.seal import NodeAPI, UnsealKeys, load_unseal_keys
from dr.vault.snapshot import SnapshotInfo
from dr.verify import authenticate_snapshot, load_catalog

if TYPE_CHECKING:
    from dr.drill.checks import CheckReport

log = logging.getLogger(__name__)

RESTORE_PATH = "sys/storage/raft/snapshot"
FORCE_RESTORE_PATH = "sys/storage/raft/snapshot-force"


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


class _Body:
    """A sized, read()-able request body over the decrypting generator, so requests
    sends a Content-Length (the plaintext size is in the authenticated manifest) and
    streams it without holding the snapshot in memory. http.client reads it in small
    blocks, so the current frame is served through a moving offset, not re-sliced."""

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
    session: requests.Session,
    base_url: str,
    token: str,
    fetched: FetchedBackup,
    *,
    force: bool,
    label: str,
    timeout: float = 600,
) -> None:
    """POST the authenticated snapshot to the restore endpoint (never retried: the
    server may have acted). `force` for a snapshot from another cluster."""
    path = FORCE_RESTORE_PATH if force else RESTORE_PATH
    body = _Body(fetched.plaintext(), fetched.manifest.snapshot.plaintext_size)
    try:
        resp = session.post(
            f"{base_url.rstrip('/')}/v1/{path}",
            data=body,  # read() + __len__: streamed with a Content-Length
            headers={"X-Vault-Token": token, "Content-Type": "application/octet-stream"},
            timeout=(10, timeout),
        )
    except IntegrityError:
        raise
    except requests.RequestException as exc:
        raise VaultError(
            f"restore into {label} failed while sending the snapshot ({type(exc).__name__}); "
            "the target may be in any state: check it before retrying"
        ) from None
    if resp.status_code >= 400:
        errors = response_errors(resp)
        hint = ""
        if "snapshot-force" in errors:
            hint = "; the snapshot is from another cluster: confirm a forced restore"
        elif resp.status_code == 403:
            hint = "; the token needs update on sys/storage/raft/snapshot(-force)"
        raise VaultError(
            f"Vault at {label} refused the restore ({resp.status_code}: {errors}){hint}"
        )
    log.info("restore call accepted by %s (%d bytes sent)", label, body.sent)


def reseal_and_unseal(
    node: NodeAPI,
    keys: UnsealKeys,
    *,
    expect_reseal: bool,
    reseal_timeout: float = 60,
    active_timeout: float = 120,
) -> bool:
    """After a restore: wait for the self-seal (forced restore from another cluster:
    the node takes on the source keyring and seals itself ~5-7 s later), unseal with
    the source keys, wait until active. Returns whether a reseal happened."""
    resealed = False
    if expect_reseal:
        node.wait_sealed(timeout=reseal_timeout)
        resealed = True
    else:
        # Same cluster: the keyring does not change and the node normally stays
        # unsealed; unseal anyway if it did seal.
        deadline = time.monotonic() + 8
        while time.monotonic() < deadline:
            if node.seal_status().get("sealed"):
                resealed = True
                break
            time.sleep(0.25)
    if resealed:
        node.unseal(keys)
    node.wait_active(timeout=active_timeout)
    return resealed


@dataclass
class RestoreRequest:
    config: Config
    store: BackupStore
    manifest: Manifest
    wrappers: Sequence[KeyWrapper]
    target: str
    token: str = field(repr=False)
    verify_token: str | None = field(repr=False)
    unseal_keys_file: Path | None
    confirm: Callable[[str], None]
    progress: Progress | None = None


@dataclass
class RestoreResult:
    backup_id: str
    target: str
    forced: bool
    resealed: bool
    stages: dict[str, float]
    checks: CheckReport | None

    @property
    def passed(self) -> bool:
        return self.checks is None or self.checks.passed

    def failures(self) -> list[str]:
        return [] if self.checks is None else self.checks.failures()

    def to_json(self) -> dict[str, Any]:
        return {
            "backup_id": self.backup_id,
            "target": self.target,
            "forced": self.forced,
            "resealed": self.resealed,
            "stages": {k: round(v, 3) for k, v in self.stages.items()},
            "passed": self.passed,
            "checks": None if self.checks is None else self.checks.to_json(),
        }

    def summary(self) -> str:
        total = sum(self.stages.values())
        line = (
            f"restored {self.backup_id} into {self.target} "
            f"({'forced: another cluster' if self.forced else 'same cluster'}) in {total:.1f} s"
        )
        if self.checks is None:
            return line + "; not verified (--no-verify)"
        verdict = "every cataloged item served" if self.passed else "VERIFICATION FAILED"
        return f"{line}; {self.checks.total_checked} items checked: {verdict}"


def run_restore(req: RestoreRequest) -> RestoreResult:
    stages: dict[str, float] = {}
    session = make_session(0)  # restore is not idempotent: no automatic retries
    # The target is trusted like the source: vault.ca_cert / vault.tls_skip_verify.
    vault_cfg = req.config.vault
    session.verify = str(vault_cfg.ca_cert) if vault_cfg.ca_cert else not vault_cfg.tls_skip_verify
    node = NodeAPI(session, req.target, req.target)
    status = node.seal_status()
    if not status.get("initialized") or status.get("sealed"):
        raise VaultError(
            f"Vault at {req.target} must be initialized and unsealed to accept a restore "
            "(bao operator init / unseal), then run dr restore again"
        )
    target_cluster = str(status.get("cluster_id", ""))
    source_cluster = str(req.manifest.vault.get("cluster_id", ""))
    forced = target_cluster != source_cluster
    keys = load_unseal_keys(req.unseal_keys_file) if req.unseal_keys_file else None
    if forced and keys is None and status.get("type", "shamir") == "shamir":
        raise UsageError(
            "restoring a backup of another cluster: the target will seal itself and only "
            "the SOURCE cluster's unseal keys open it; pass --unseal-keys-file"
        )

    started = time.monotonic()
    fetched = fetch_backup(req.store, req.manifest, req.wrappers, progress=req.progress)
    stages["fetch_and_authenticate"] = time.monotonic() - started
    with fetched:
        m = req.manifest
        question = (
            f"Replace ALL data of the Vault at {req.target} (cluster {target_cluster or '?'}) "
            f"with backup {m.backup_id} of cluster '{m.cluster}' ({source_cluster or '?'}), "
            f"taken {m.created_at} at raft index {fetched.info.index}"
            + (" -- a FORCED restore from another cluster" if forced else "")
            + "?"
        )
        req.confirm(question)
        t = time.monotonic()
        restore_snapshot(session, req.target, req.token, fetched, force=forced, label=req.target)
        stages["restore_call"] = time.monotonic() - t
    t = time.monotonic()
    if keys is None:
        node.wait_active(timeout=120)
        resealed = False
    else:
        resealed = reseal_and_unseal(node, keys, expect_reseal=forced)
    stages["reseal_unseal_active"] = time.monotonic() - t
    checks = None
    if req.verify_token is not None:
        from dr.drill.checks import check_catalog
        from dr.vault.endpoint import Endpoint

        t = time.monotonic()
        checks = check_catalog(
            Endpoint(addr=req.target),
            req.verify_token,
            fetched.catalog,
            ssl_context=tls_context(vault_cfg, req.target),
        )
        stages["verify"] = time.monotonic() - t
    return RestoreResult(m.backup_id, req.target, forced, resealed, stages, checks)
