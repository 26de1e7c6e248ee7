"""`dr restore`: an authenticated backup into a target Vault, unsealed and verified.

1. Read the target's seal status; log in to it (its own token, or the configured
   `vault.auth`) before downloading anything, so a wrong credential fails in seconds.
2. Fetch and authenticate the whole backup into a ciphertext spool (dr/ops/fetch.py):
   nothing reaches the target before every frame authenticated (invariant 3).
3. Confirm (the target's data is replaced), then stream the snapshot in: a forced
   restore when the cluster ids differ.
4. Wait for the post-restore self-seal, unseal with the SOURCE keys for whatever
   threshold the restored node asks, wait until active (dr/vault/seal.py).
5. Log in again, now with the SOURCE cluster's credentials (the target holds its auth
   data), and check every cataloged path (dr/ops/checks.py).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dr.config import Config
from dr.crypto.recipients import KeyWrapper
from dr.errors import DrillFailed, UsageError, VaultError
from dr.manifest import Manifest
from dr.ops.checks import CheckReport, check_catalog
from dr.ops.fetch import fetch_backup
from dr.progress import Progress
from dr.storage.base import BackupStore
from dr.vault.auth import AuthSettings, Login
from dr.vault.cluster import client_for
from dr.vault.raft import restore_snapshot
from dr.vault.seal import Node, load_unseal_keys, unseal_after_restore

log = logging.getLogger(__name__)


@dataclass
class RestoreRequest:
    config: Config
    store: BackupStore
    manifest: Manifest
    wrappers: Sequence[KeyWrapper]
    target: str
    target_auth: AuthSettings  # the target's own credentials, used before the restore
    verify_auth: AuthSettings | None  # SOURCE credentials used after it; None: no verify
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

    def raise_if_failed(self) -> None:
        if not self.passed:
            raise DrillFailed(
                "the restored Vault does not serve every cataloged path: "
                + " | ".join(self.failures()[:3])
            )


def run_restore(req: RestoreRequest) -> RestoreResult:
    stages: dict[str, float] = {}
    # The target is trusted like the source (vault.ca_cert / vault.tls_skip_verify). No
    # automatic retries: a restore is not idempotent, and the waits poll anyway.
    target = client_for(req.config.vault, req.target, retries=0)
    target.namespace = None  # raft, seal and sys/init live in the root namespace
    node = Node(target)
    before = node.seal_status()
    if not before.initialized or before.sealed:
        raise VaultError(
            f"Vault at {req.target} must be initialized and unsealed to accept a restore "
            "(bao operator init / unseal), then run dr restore again"
        )
    target_cluster = before.cluster_id
    source_cluster = str(req.manifest.vault.get("cluster_id", ""))
    forced = target_cluster != source_cluster
    keys = load_unseal_keys(req.unseal_keys_file) if req.unseal_keys_file else None
    if forced and keys is None and before.shamir:
        raise UsageError(
            "restoring a backup of another cluster: the target will seal itself and only "
            "the SOURCE cluster's unseal keys open it; pass --unseal-keys-file"
        )
    login = Login(req.target_auth, target)
    login.start()
    try:
        started = time.monotonic()
        fetched = fetch_backup(req.store, req.manifest, req.wrappers, progress=req.progress)
        stages["fetch_and_authenticate"] = time.monotonic() - started
        with fetched:
            m = req.manifest
            question = (
                f"Replace ALL data of the Vault at {req.target} (cluster "
                f"{target_cluster or '?'}) with backup {m.backup_id} of cluster '{m.cluster}' "
                f"({source_cluster or '?'}), taken {m.created_at} at raft index "
                f"{fetched.info.index}"
                + (" -- a FORCED restore from another cluster" if forced else "")
                + "?"
            )
            req.confirm(question)
            t = time.monotonic()
            restore_snapshot(
                target.with_token(login.token),
                fetched.plaintext(),
                m.snapshot.plaintext_size,
                force=forced,
            )
            stages["restore_call"] = time.monotonic() - t
    finally:
        # The restore replaced the target's token store: a login token from before it is
        # gone with the old data, so it is dropped, not revoked.
        login.abandon()
    t = time.monotonic()
    resealed = unseal_after_restore(node, keys, before=before, expect_reseal=forced)
    stages["reseal_unseal_active"] = time.monotonic() - t
    checks = None
    if req.verify_auth is not None:
        t = time.monotonic()
        with Login(req.verify_auth, target) as verify:
            checks = check_catalog(target.with_token(verify.token), fetched.catalog)
        stages["verify"] = time.monotonic() - t
    return RestoreResult(m.backup_id, req.target, forced, resealed, stages, checks)
