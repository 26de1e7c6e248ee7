"""`dr drill`: prove a backup restorable in a throwaway Vault, and time the recovery.

Stages (each timed; RTO = drill start to verified):
  preflight    the seal (dr/ops/seal_preflight.py): the unseal keys reach the source's
               threshold, or (auto-unseal) drill.seal is the backup's seal, its key
               round-trips, and the recovery keys reach their threshold.
  fetch        unwrap the data key, download, authenticate every frame, check the
               snapshot, decrypt the catalog. A backup that fails here never reaches
               a Vault: no runtime is even started.
  provision    start a throwaway server (process or container runtime; drill.nodes: 3
               raft nodes in one isolation, joined), init, unseal. An auto-unseal
               throwaway gets the source's seal through the one relay out of its
               isolation (dr/runtime/sealrelay.py).
  restore      forced restore (the throwaway is another cluster) into the leader, wait
               for every node's self-seal, unseal each with the SOURCE cluster's keys
               (auto-unseal: wait until the seal opened the restored keyring), wait
               until one node is active and the others are standbys.
  authenticate generate a root token from the source unseal (or recovery) keys, valid
               only in the throwaway (never a production token).
  verify       check every cataloged item (dr/ops/checks.py).
  teardown     revoke the token, stop the server, remove every temp file.
RPO at drill time = drill start - the backup's created_at.

Everything started is stopped in `finally`, also on SIGINT/SIGTERM (the CLI turns
SIGTERM into an exception so these blocks run).
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from dr.config import Config
from dr.crypto.recipients import KeyWrapper
from dr.errors import (
    BackupTooOld,
    DRError,
    DrillFailed,
    ExitCode,
    RTOExceeded,
    UsageError,
    VaultError,
)
from dr.manifest import Layout, Manifest
from dr.ops.checks import CheckReport, check_catalog
from dr.ops.fetch import FetchedBackup, fetch_backup
from dr.ops.records import drill_summary, write_record
from dr.ops.seal_preflight import preflight, seal_secrets
from dr.progress import human_duration
from dr.runtime.base import (
    RUNTIMES,
    UNISOLATED_HINT,
    DrillRuntime,
    RuntimeRequest,
    ThrowawayVault,
)
from dr.runtime.isolation import WORKDIR_PREFIX, claim_workdir, sweep_workdirs
from dr.runtime.sealrelay import check_relayable
from dr.storage.base import BackupStore
from dr.timesource import Now, iso, parse_iso, utcnow
from dr.vault.connection import VaultClient
from dr.vault.generate_root import RootToken, generate_root, generate_root_with_keys, revoke_self
from dr.vault.raft import restore_snapshot
from dr.vault.raft_nodes import (
    fast_autopilot,
    join,
    role,
    unseal_all_after_restore,
    wait_one_active,
    wait_voters,
)
from dr.vault.seal import (
    Node,
    UnsealKeys,
    has_recovery_keys,
    load_recovery_keys,
    load_unseal_keys,
    unseal_after_restore,
    wait_auto_unsealed,
)
from dr.vault.sealconf import SealSettings

log = logging.getLogger(__name__)

STAGES = ("preflight", "fetch", "provision", "restore", "authenticate", "verify", "teardown")


@dataclass
class DrillOptions:
    runtime: str = "auto"  # auto | process | container
    allow_version_mismatch: bool = False
    unseal_keys_file: Path | None = None
    rto_objective: float | None = None
    max_backup_age: float | None = None
    workdir_parent: Path | None = None
    # Run even when the runtime cannot isolate the server (the report says NOT ISOLATED).
    allow_unisolated: bool = False
    binary_sha256: str | None = None  # drill.binary_sha256: pin the process binary
    image_digest: str | None = None  # drill.image_digest: pin the container image
    recovery_keys_file: Path | None = None  # auto-unseal sources: for generate-root
    seal: SealSettings | None = None  # drill.seal: the source's auto-unseal seal
    nodes: int = 1  # drill.nodes


@dataclass
class DrillResult:
    backup_id: str
    cluster: str
    backup_created_at: str
    started_at: str
    runtime: str = ""
    isolation: str = ""
    isolated: bool | None = None  # None: no server was started
    binary: str = ""  # process runtime: the server binary's path
    binary_sha256: str = ""
    image_id: str = ""  # container runtime
    product: str = ""
    version: str = ""
    backup_product: str = ""
    backup_version: str = ""
    version_warning: str = ""
    stages: dict[str, float] = field(default_factory=dict)
    rto_seconds: float | None = None
    rpo_seconds: float = 0.0
    rto_objective: float | None = None
    max_backup_age: float | None = None
    checks: CheckReport | None = None
    error: str = ""  # the error that stopped the drill, if any
    exception: DRError | None = field(default=None, repr=False)
    secrets_in_catalog: int = 0
    snapshot_bytes: int = 0
    raft_index: int | None = None
    recipient: str = ""
    skipped_newer: list[str] = field(default_factory=list)  # unauthentic, newer, skipped
    seal: str = ""  # the backup's seal, e.g. "transit 3/5 (...)"
    seal_checks: list[str] = field(default_factory=list)  # what the preflight proved
    seal_exception: str = ""  # the one path out of the isolation (the seal relay)
    nodes: list[str] = field(default_factory=list)  # "drill2: active", one per node
    # Mounts the backup's catalog could not cover (exit 14 at backup time): in the
    # snapshot, so restored, but not checked. Reported, never counted as missing.
    not_cataloged: list[str] = field(default_factory=list)
    # The backup's data key once fetched: MACs the drill record (dr/ops/records.py), then
    # dropped. Never reported.
    data_key: bytes | None = field(default=None, repr=False, compare=False)
    record_key: str | None = None  # where the drill record was stored

    @property
    def verified(self) -> bool:
        return self.checks is not None and self.checks.passed and not self.error

    @property
    def rto_exceeded(self) -> bool:
        return (
            self.rto_objective is not None
            and self.rto_seconds is not None
            and self.rto_seconds > self.rto_objective
        )

    @property
    def too_old(self) -> bool:
        return self.max_backup_age is not None and self.rpo_seconds > self.max_backup_age

    @property
    def passed(self) -> bool:
        return self.verified and not self.rto_exceeded and not self.too_old


class StageClock:
    def __init__(self, result: DrillResult) -> None:
        self.result = result

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        start = time.monotonic()
        log.info(
            "drill stage %s started",
            name,
            extra={"backup_id": self.result.backup_id, "stage": name},
        )
        try:
            yield
        finally:
            self.result.stages[name] = time.monotonic() - start
            log.info(
                "drill stage %s: %.2f s",
                name,
                self.result.stages[name],
                extra={
                    "backup_id": self.result.backup_id,
                    "stage": name,
                    "seconds": round(self.result.stages[name], 3),
                },
            )


def too_old_message(age: float, limit: float) -> str:
    return (
        f"the backup is {human_duration(age)} old, above drill.max_backup_age "
        f"{human_duration(limit)}; check that dr backup runs (or pass --max-backup-age)"
    )


def failure(result: DrillResult) -> DRError | None:
    """The error a finished drill ends in (None when it passed): the one that stopped
    it, else DrillFailed (10), RTOExceeded (11) or BackupTooOld (12). Its class carries
    the exit code: nothing rewrites a code after an error is made."""
    message = f"drill of {result.backup_id}: {verdict(result)}"
    if result.exception is not None:
        return result.exception
    if result.checks is None or not result.checks.passed:
        return DrillFailed(message)
    if result.rto_exceeded:
        return RTOExceeded(message)
    if result.too_old:
        return BackupTooOld(message)
    return None


def exit_code(result: DrillResult) -> int:
    error = failure(result)
    return int(error.exit_code) if error is not None else int(ExitCode.OK)


def verdict(result: DrillResult) -> str:
    if result.error:
        return f"FAILED: {result.error}"
    if result.checks is None or not result.checks.passed:
        failures = result.checks.failures() if result.checks else []
        return "FAILED: " + ("; ".join(failures[:3]) or "verification did not run")
    if result.rto_exceeded:
        return (
            f"FAILED: RTO {result.rto_seconds:.1f} s is above the objective "
            f"{result.rto_objective:.0f} s"
        )
    if result.too_old:
        return f"FAILED: {too_old_message(result.rpo_seconds, result.max_backup_age or 0)}"
    return "PASSED"


def choose_runtime(
    name: str, allow_unisolated: bool = False, image: str | None = None
) -> DrillRuntime:
    """The runtime to use; UsageError (exit 2) when it cannot isolate the server and
    `allow_unisolated` is off, before anything is fetched or started. `auto` takes the
    container runtime only when an engine answers AND holds `image` (the drill's image;
    without a registry a missing image cannot be pulled), else the process runtime."""
    _load_runtimes()
    if name == "auto":
        container = RUNTIMES["container"]()
        ok, why = container.available()
        if ok and image is not None and not _has_image(image):
            ok, why = False, f"the image {image} is not present (python -m dr.runtime.image)"
        if ok:
            return container
        log.info("container runtime unavailable (%s); using the process runtime", why)
        runtime = RUNTIMES["process"]()
        name = "process (auto)"
    elif name not in RUNTIMES:
        raise UsageError(f"unknown drill runtime '{name}'; use auto, process or container")
    else:
        runtime = RUNTIMES[name]()
        ok, why = runtime.available()
        if not ok:
            raise UsageError(f"the {name} drill runtime is not available here: {why}")
    isolated, why_not = runtime.isolation_support()
    if not isolated:
        if not allow_unisolated:
            raise UsageError(
                f"refusing to drill unisolated: the {name} runtime cannot isolate the "
                f"server ({why_not}); {UNISOLATED_HINT}"
            )
        log.warning(
            "WARNING: drilling NOT ISOLATED (--allow-unisolated): the %s runtime cannot "
            "isolate the server (%s)",
            name,
            why_not,
        )
    return runtime


def _default_image(product: str, version: str) -> str | None:
    from dr.runtime.image import default_image

    try:
        return default_image(product or "openbao", version)
    except DRError:
        return None  # an unknown product: the container runtime says so itself


def _has_image(image: str) -> bool:
    from dr.runtime.image import image_exists

    try:
        return image_exists(image)
    except Exception as exc:  # the engine went away between the ping and now
        log.debug("could not look up image %s: %s", image, exc)
        return False


def _load_runtimes() -> None:
    # Imported for their @register side effect; lazily, so `dr backup` never imports
    # testcontainers/docker.
    from dr.runtime import container, process  # noqa: F401


def check_versions(result: DrillResult, allow_mismatch: bool) -> None:
    if (result.product, result.version) == (result.backup_product, result.backup_version):
        return
    message = (
        f"the drill runtime runs {result.product} {result.version} but the backup was taken "
        f"from {result.backup_product} {result.backup_version}"
    )
    if not allow_mismatch:
        raise UsageError(
            message + "; use a matching drill.binary/drill.image, or --allow-version-mismatch"
        )
    result.version_warning = message
    log.warning("WARNING: %s; the drill proves less than it should", message)


def run_drill(
    config: Config,
    store: BackupStore,
    manifest: Manifest,
    wrappers: Sequence[KeyWrapper],
    options: DrillOptions,
    *,
    now: Now = utcnow,
) -> DrillResult:
    """Run one drill. Never raises for a drill FAILURE (missing paths, RTO): those are
    in the result; raises DRError only for usage errors found before anything started.

    Every drill that ran (passed or failed) leaves a record beside the backups for
    `dr status` and `dr prune` (dr/ops/records.py), MACed with the backup's data key."""
    result = _run_drill(config, store, manifest, wrappers, options, now())
    code = exit_code(result)
    result.record_key = write_record(
        store,
        Layout(config.storage.prefix, config.cluster),
        "drill",
        manifest.backup_id,
        passed=code == 0,
        exit_code=code,
        summary=drill_summary(result, code),
        data_key=result.data_key,
        now=now,
    )
    result.data_key = None
    return result


def _run_drill(
    config: Config,
    store: BackupStore,
    manifest: Manifest,
    wrappers: Sequence[KeyWrapper],
    options: DrillOptions,
    now: datetime,
) -> DrillResult:
    t0 = time.monotonic()
    result = DrillResult(
        backup_id=manifest.backup_id,
        cluster=manifest.cluster,
        backup_created_at=manifest.created_at,
        started_at=iso(now),
        backup_product=str(manifest.vault.get("product", "")),
        backup_version=str(manifest.vault.get("version", "")),
        rto_objective=options.rto_objective,
        max_backup_age=options.max_backup_age,
        secrets_in_catalog=int(manifest.catalog_counts.get("secrets", 0)),
        snapshot_bytes=manifest.snapshot.plaintext_size,
        raft_index=manifest.snapshot_info.get("raft_index"),
        skipped_newer=list(manifest.skipped_newer),
    )
    result.rpo_seconds = (now - parse_iso(manifest.created_at)).total_seconds()
    if result.too_old:
        # Before anything is fetched or started: a drill of a stale backup proves the
        # wrong thing, and the operator needs the age now, not after a restore.
        result.error = too_old_message(result.rpo_seconds, options.max_backup_age or 0)
        result.exception = BackupTooOld(f"drill of {manifest.backup_id}: {result.error}")
        return result
    record = manifest.seal_record
    result.seal = record.describe()
    unseal_keys, recovery_keys = _drill_keys(options, record.auto)
    runtime = choose_runtime(
        options.runtime,
        options.allow_unisolated,
        image=config.drill.image or _default_image(result.backup_product, result.backup_version),
    )
    if options.nodes > 1 and runtime.name != "process":
        raise UsageError(
            f"drill.nodes: {options.nodes} needs the process runtime (--runtime process); "
            f"the {runtime.name} runtime drills one node"
        )
    result.runtime = runtime.name
    clock = StageClock(result)
    # Work dirs of drills that were SIGKILLed (their servers died with them) go first.
    for stale in sweep_workdirs(options.workdir_parent):
        log.info("removed the stale drill work dir %s (its drill is gone)", stale)
    workdir = Path(tempfile.mkdtemp(prefix=WORKDIR_PREFIX, dir=options.workdir_parent))
    os.chmod(workdir, 0o700)
    claim_workdir(workdir)
    fetched: FetchedBackup | None = None
    vault: ThrowawayVault | None = None
    token: RootToken | None = None
    nodes: list[Node] = []
    active: Node | None = None
    try:
        with clock.stage("preflight"):
            check = preflight(
                record,
                options.seal,
                unseal_keys=unseal_keys,
                recovery_keys=recovery_keys,
                needed_for="a drill",
                need_recovery=True,
            )
            result.seal_checks = check.checks
            if record.auto and options.seal:
                check_relayable(options.seal)  # before anything is fetched or started
            secrets = seal_secrets(options.seal) if record.auto and options.seal else {}
        with clock.stage("fetch"):
            fetched = fetch_backup(store, manifest, wrappers, spool_parent=workdir)
            result.data_key = fetched.data_key
            result.recipient = f"{fetched.stanza.type}:{fetched.stanza.name}"
            result.not_cataloged = [
                f"{item.get('namespace', '')}{item.get('mount', '')}"
                for item in fetched.catalog.mounts_skipped
            ]
        with clock.stage("provision"):
            vault = runtime.start(
                RuntimeRequest(
                    product=result.backup_product or "openbao",
                    version=result.backup_version,
                    workdir=workdir,
                    binary=config.drill.binary,
                    image=config.drill.image,
                    allow_unisolated=options.allow_unisolated,
                    binary_sha256=options.binary_sha256,
                    image_digest=options.image_digest,
                    seal=options.seal if record.auto else None,
                    seal_secrets=secrets,
                    nodes=options.nodes,
                )
            )
            result.product, result.version = vault.product, vault.version
            result.isolation, result.isolated = vault.isolation, vault.isolated
            result.seal_exception = vault.seal_exception
            result.binary = vault.details.get("binary", "")
            result.binary_sha256 = vault.details.get("binary_sha256", "")
            result.image_id = vault.details.get("image_id", "")
            check_versions(result, options.allow_version_mismatch)
            # retries=0: a restore is not idempotent; the waits poll anyway.
            nodes = [
                Node(VaultClient(endpoint, retries=0, timeout=120))
                for endpoint in (vault.endpoints or [vault.endpoint])
            ]
            init_token = _provision(nodes, vault.api_addrs, auto=record.auto)
        with clock.stage("restore"):
            leader = nodes[0]
            restore_snapshot(
                leader.client.with_token(init_token),
                fetched.plaintext(),
                manifest.snapshot.plaintext_size,
                force=True,
            )
            fetched.close()
            active = _bring_up(nodes, unseal_keys, record.auto, manifest)
            result.nodes = [f"{n.label}: {role(n)}" for n in nodes]
        with clock.stage("authenticate"):
            token = _root_token(active, nodes, recovery_keys)
        with clock.stage("verify"):
            result.checks = check_catalog(active.client.with_token(token.token), fetched.catalog)
        result.rto_seconds = time.monotonic() - t0
    except DRError as exc:
        result.error = exc.message
        result.exception = exc
        log.debug("drill failed", exc_info=True)
    finally:
        with clock.stage("teardown"):
            _teardown(
                active or (nodes[0] if nodes else None), token, nodes, vault, fetched, workdir
            )
    return result


def _drill_keys(options: DrillOptions, auto: bool) -> tuple[UnsealKeys | None, UnsealKeys | None]:
    """(unseal keys, recovery keys) for the backup's seal; the preflight says what is
    missing. A Shamir source needs unseal keys; an auto-unseal source its recovery keys
    (drill.recovery_keys_file, or recovery_keys_b64 in the unseal keys file)."""
    if not auto:
        if options.unseal_keys_file is None:
            raise UsageError(
                "a drill needs the source cluster's unseal keys: set drill.unseal_keys_file "
                "or pass --unseal-keys-file"
            )
        return load_unseal_keys(options.unseal_keys_file), None
    path = options.recovery_keys_file
    if path is None and options.unseal_keys_file and has_recovery_keys(options.unseal_keys_file):
        path = options.unseal_keys_file
    return None, load_recovery_keys(path) if path is not None else None


def _provision(nodes: list[Node], api_addrs: list[str], *, auto: bool) -> str:
    """Init node 1 (1-of-1: the throwaway's own keys are thrown away with it), join the
    others to it; the init root token."""
    leader = nodes[0]
    init = leader.init(1, 1, recovery=auto)
    own = None if auto else UnsealKeys(tuple(init.keys_b64), "the throwaway's own init")
    if own is not None:
        leader.unseal(own)
    leader.wait_active()
    if len(nodes) > 1:
        # Voters only: a non-voter may not seal after a foreign restore (raft_nodes.py).
        fast_autopilot(leader.client.with_token(init.root_token))
    for follower in nodes[1:]:
        join(follower, api_addrs[0], own)
    if len(nodes) > 1:
        wait_voters(leader.client.with_token(init.root_token), len(nodes))
        wait_one_active(nodes)
    return init.root_token


def _bring_up(nodes: list[Node], keys: UnsealKeys | None, auto: bool, manifest: Manifest) -> Node:
    """After the forced restore: every node unsealed (source keys, or its seal), one
    active; the active node."""
    if auto:
        cluster_id = str(manifest.vault.get("cluster_id", ""))
        wait_auto_unsealed(nodes[0], cluster_id)
    elif len(nodes) == 1:
        before = nodes[0].seal_status()
        unseal_after_restore(nodes[0], keys, before=before, expect_reseal=True)
        return nodes[0]
    else:
        unseal_all_after_restore(nodes, keys)
    return wait_one_active(nodes) if len(nodes) > 1 else nodes[0]


def _root_token(active: Node, nodes: list[Node], recovery: UnsealKeys | None) -> RootToken:
    if recovery is not None:
        return generate_root_with_keys(active, recovery)
    key = active.source_key or next((n.source_key for n in nodes if n.source_key), None)
    if key is None:  # pragma: no cover - the unseal sets it
        raise VaultError(f"Vault at {active.label} was not unsealed by the drill")
    return generate_root(active, key)


def _teardown(
    node: Node | None,
    token: RootToken | None,
    nodes: list[Node],
    vault: ThrowawayVault | None,
    fetched: FetchedBackup | None,
    workdir: Path,
) -> None:
    if node is not None and token is not None:
        try:
            revoke_self(node, token)
        except DRError as exc:
            log.warning(
                "could not revoke the drill's root token (%s); the server is "
                "being destroyed anyway",
                exc,
            )
    for each in nodes:
        each.client.close()
    if vault is not None:
        try:
            vault.stop()
        except Exception as exc:
            log.error("could not stop the drill's %s runtime cleanly: %s", vault.runtime, exc)
    if fetched is not None:
        fetched.close()
    shutil.rmtree(workdir, ignore_errors=True)
