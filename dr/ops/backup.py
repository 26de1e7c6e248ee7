"""`dr backup`: snapshot -> checks -> envelope -> store; catalog beside it; manifest last.

Order matters (restic's "write data, then index, then snapshot"):
1. preflight the store (versioning), build the recipients, find the active node;
2. make the data key and wrap it for every recipient, so an unknown KMS key fails
   before a single byte is uploaded;
3. list kv-v1 paths, then stream the snapshot through the checker and the encryptor
   into the store (threads, dr/ops/pipeline.py) while the server clock is calibrated
   beside it;
4. walk the catalog (list and metadata only) from the moment the store has read the
   whole envelope (so the snapshot's body was read and checked), beside the upload's
   last parts (dr/ops/catalogwalk.py); encrypt it, store it once the snapshot is;
5. write manifest.json, the commit marker: only now is the backup listed.
On any failure the objects this run wrote are deleted and no manifest is written. What a
kill leaves has no manifest: it is never listed or restored, and is for retention to
remove.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass, replace

import dr
from dr.config import Config
from dr.crypto.envelope import EncryptingReader
from dr.crypto.recipients import (
    KeyWrapper,
    WrapContext,
    build_recipients,
    check_outside,
    new_data_key,
)
from dr.crypto.writer import WriterKey, read_writer_key
from dr.errors import UsageError
from dr.manifest import (
    CATALOG_NAME,
    MANIFEST_NAME,
    SNAPSHOT_NAME,
    Layout,
    Manifest,
    ObjectRecord,
    new_backup_id,
)
from dr.ops.catalogwalk import CatalogWalk
from dr.ops.locking import cluster_lock
from dr.ops.pipeline import SnapshotPipeline
from dr.progress import NullProgress, Progress
from dr.storage.base import BackupStore, ObjectRef
from dr.storage.factory import open_store
from dr.storage.lock import RunLock
from dr.timesource import Now, iso, utcnow
from dr.vault.auth import AuthSettings, Credential
from dr.vault.catalog import CatalogWalker
from dr.vault.clock import BackgroundCalibration
from dr.vault.cluster import ActiveVault, connect
from dr.vault.raft import stream_snapshot
from dr.vault.sealconf import SealRecord

log = logging.getLogger(__name__)


@dataclass
class BackupResult:
    manifest: Manifest
    manifest_ref: ObjectRef
    store: str
    seconds: float
    # "<namespace><mount>: why" of kv mounts the catalog could not cover (the snapshot
    # holds them); non-empty: the backup is stored but ends with exit 14 (PARTIAL).
    mounts_skipped: tuple[str, ...] = ()


def check_backup_config(config: Config) -> None:
    """A break-glass config (no vault, no recipients) can verify and restore, not back up."""
    for needed, key in (
        (config.vault.addrs, "vault.addr"),
        (config.encryption.recipients, "encryption.recipients"),
    ):
        if not needed:
            raise UsageError(f"{config.source}: dr backup needs {key}; see docs/config.md")


def check_offline_recipient(config: Config, wrappers: Iterable[KeyWrapper]) -> None:
    if config.encryption.require_offline and not any(w.offline for w in wrappers):
        raise UsageError(
            f"{config.source}: encryption.require_offline is set but no recipient is offline; "
            "add a keyfile or x25519 recipient"
        )


def load_writer(config: Config) -> WriterKey | None:
    """The writer key that signs new backups (encryption.writer.key_file), checked
    against the pinned public key so a host cannot sign with a key nobody trusts."""
    enc = config.encryption
    if enc.writer_key_file is None:
        if enc.writer_public is not None:
            raise UsageError(
                f"{config.source}: encryption.writer pins a writer key but has no key_file: "
                "the backup host needs the private writer key (dr keygen --writer)"
            )
        if not enc.allow_unsigned:
            raise UsageError(
                f"{config.source}: encryption.writer is not set: every backup is signed so "
                "that nobody with write access to the bucket can plant one; run `dr keygen "
                "--writer --out /etc/vault-dr/writer.key` and add the block it prints "
                "(docs/keys.md), or set encryption.allow_unsigned: true"
            )
        log.warning("WARNING: this backup is not signed (encryption.allow_unsigned)")
        return None
    key = read_writer_key(enc.writer_key_file)
    if enc.writer_public is not None and key.public != enc.writer_public:
        raise UsageError(
            f"{config.source}: encryption.writer.key_file {enc.writer_key_file} is not the "
            "key encryption.writer.public_key pins; fix one of them"
        )
    return key


def run_backup(
    config: Config,
    *,
    token: str | None = None,
    progress: Progress | None = None,
    store: BackupStore | None = None,
    now: Now = utcnow,
) -> BackupResult:
    """`now`: the wall clock the backup id and created_at come from (tests inject one to
    make backups of simulated days; the server clock calibration stays real)."""
    started = time.monotonic()
    progress = progress or NullProgress()
    check_backup_config(config)
    store = store or open_store(config.storage)
    store.preflight(write=True)
    wrappers = build_recipients(config.encryption)
    check_offline_recipient(config, wrappers)
    writer = load_writer(config)
    settings = config.vault
    if token is not None:  # dr demo: the token of the server it just made
        settings = replace(
            settings, auth=AuthSettings(token=Credential(value=token, where="token"))
        )
    # One run per cluster; taken before Vault is touched, so a second run adds no load.
    with cluster_lock(config, store, "backup", now=now) as lock, connect(settings) as active:
        return _backup(config, active, store, wrappers, progress, started, writer, now, lock)


def _backup(
    config: Config,
    active: ActiveVault,
    store: BackupStore,
    wrappers: list[KeyWrapper],
    progress: Progress,
    started: float,
    writer: WriterKey | None = None,
    now: Now = utcnow,
    lock: RunLock | None = None,
) -> BackupResult:
    conn = active
    server = conn.server_info()
    # The seal decides what a restore needs (unseal keys, or the same seal key): recorded.
    seal = SealRecord.of_status(conn.client.unauthenticated("sys/seal-status"), config.drill.seal)
    check_outside(wrappers, server.cluster_id)  # no transit key inside this cluster
    layout = Layout(config.storage.prefix, config.cluster)
    created = now()
    backup_id = new_backup_id(created)
    log.info(
        "backup %s of %s (%s %s) started",
        backup_id,
        conn.addr,
        server.product,
        server.version,
        extra={"cluster": config.cluster, "backup_id": backup_id, "vault_addr": conn.addr},
    )

    data_key, stanzas = new_data_key(wrappers, WrapContext(config.cluster, backup_id))
    walker = CatalogWalker(conn.client)
    walker.mounts()  # fails early, before any upload, if the token cannot read sys/mounts
    walker.prewalk()

    written: list[ObjectRef] = []
    walk: CatalogWalk | None = None
    try:
        # The server clock is calibrated beside the stream, not before it (up to 1.3 s
        # saved): the window is made of local instants taken around the stream, mapped
        # through the offset whenever it is measured (docs/catalog.md).
        calibration = BackgroundCalibration(conn.server_time)
        began = time.time()  # before the snapshot request is sent
        snap_ctx = layout.context(backup_id, SNAPSHOT_NAME)
        progress.label = "snapshot"
        with SnapshotPipeline(
            stream_snapshot(conn.client),
            data_key,
            snap_ctx,
            frame_size=config.encryption.frame_size,
        ) as pipeline:
            # The walk starts once the store has read the whole (checked) envelope,
            # beside the upload's last parts (dr/ops/catalogwalk.py).
            walk = CatalogWalk(walker, pipeline, calibration, began, config.cluster, backup_id)
            walk.start()
            snap_ref = store.put_stream(
                layout.key(backup_id, SNAPSHOT_NAME),
                pipeline,
                metadata={"backup-id": backup_id, "object": "snapshot"},
                progress=progress,
                overwrite=False,  # write once: If-None-Match, as the bucket policy demands
            )
        written.append(snap_ref)
        progress.finish()
        snap_reader = pipeline.envelope
        info = pipeline.checker.finish()
        log.info(
            "snapshot stored: %d bytes, raft index %d term %d",
            snap_reader.plaintext_size,
            info.index,
            info.term,
            extra={
                "backup_id": backup_id,
                "snapshot_bytes": snap_reader.plaintext_size,
                "raft_index": info.index,
            },
        )

        walked = walk.result()
        catalog, clock = walked.catalog, walked.clock
        window_start, window_end = walked.window_start, walked.window_end
        catalog_json = json.dumps(catalog.to_json(), separators=(",", ":")).encode()
        cat_ctx = layout.context(backup_id, CATALOG_NAME)
        cat_reader = EncryptingReader(
            [catalog_json], data_key, cat_ctx, frame_size=config.encryption.frame_size
        )
        del catalog_json
        cat_ref = store.put_stream(
            layout.key(backup_id, CATALOG_NAME),
            cat_reader,
            metadata={"backup-id": backup_id, "object": "catalog"},
            overwrite=False,
        )
        written.append(cat_ref)
        counts = catalog.counts()
        log.info(
            "catalog stored: %d secrets in %d mounts",
            counts["secrets"],
            counts["mounts"],
            extra={"backup_id": backup_id, "secrets": counts["secrets"]},
        )

        manifest = Manifest(
            cluster=config.cluster,
            backup_id=backup_id,
            created_at=iso(created),
            completed_at=iso(max(now(), created)),
            tool_version=dr.__version__,
            vault={
                "addr": conn.addr,
                "product": server.product,
                "version": server.version,
                "cluster_id": server.cluster_id,
                "cluster_name": server.cluster_name,
            },
            snapshot=_record(
                snap_ref,
                snap_ctx,
                snap_reader,
                plaintext_sha256=pipeline.plaintext_sha256,
                ciphertext_sha256=snap_ref.sha256,
            ),
            snapshot_info={
                "raft_index": info.index,
                "raft_term": info.term,
                "raft_version": info.version,
                "state_sha256": info.state_sha256,
                "state_size": info.state_size,
                "window_start": round(window_start, 6),
                "window_end": round(window_end, 6),
                "clock_uncertainty": round(clock.uncertainty, 6),
            },
            catalog=_record(cat_ref, cat_ctx, cat_reader),
            catalog_counts=counts,
            encryption={
                "format": "vault-dr-envelope-v1",
                "frame_size": config.encryption.frame_size,
            },
            recipients=stanzas,
            vault_seal=seal.to_json(),
        )
        manifest.seal(data_key)
        if writer is not None:
            manifest.sign(writer)  # the proof that this job, not a bucket writer, made it
        if lock is not None:
            lock.check()  # a run that lost its lock (stalled past its lease) never commits
        # The commit marker: everything it names is stored, so the backup now exists.
        manifest_ref = store.put_bytes(
            layout.key(backup_id, MANIFEST_NAME),
            manifest.dumps(),
            metadata={"backup-id": backup_id},
        )
    except BaseException:
        progress.finish()
        if walk is not None:
            walk.cancel()
        _discard(store, written)
        raise
    seconds = time.monotonic() - started
    log.info(
        "backup %s complete in %.1f s",
        backup_id,
        seconds,
        extra={"cluster": config.cluster, "backup_id": backup_id, "seconds": round(seconds, 3)},
    )
    skipped = tuple(
        f"{item['namespace']}{item['mount']}: {item['reason']}" for item in catalog.mounts_skipped
    )
    return BackupResult(manifest, manifest_ref, store.describe(), seconds, skipped)


def _record(
    ref: ObjectRef,
    context: str,
    reader: EncryptingReader,
    *,
    plaintext_sha256: str | None = None,
    ciphertext_sha256: str | None = None,
) -> ObjectRecord:
    """The manifest's record of a stored envelope. The digests default to the reader's;
    the snapshot pipeline's reader makes none (each byte is hashed once, elsewhere): its
    plaintext digest is the checker's, of the same bytes, its ciphertext digest the
    store's, of the bytes it read and stored."""
    if ref.size != reader.ciphertext_size:  # the store read what the envelope made
        raise RuntimeError(f"{ref.key}: stored {ref.size} bytes of {reader.ciphertext_size}")
    return ObjectRecord(
        key=ref.key,
        version_id=ref.version_id,
        context=context,
        plaintext_size=reader.plaintext_size,
        plaintext_sha256=plaintext_sha256 or reader.plaintext_sha256,
        ciphertext_size=reader.ciphertext_size,
        ciphertext_sha256=ciphertext_sha256 or reader.ciphertext_sha256,
    )


def _discard(store: BackupStore, refs: list[ObjectRef]) -> None:
    """Delete what a failed run wrote. Without a manifest it would never be listed or
    restored anyway; this keeps the bucket from filling with orphans."""
    for ref in refs:
        try:
            store.delete(ref.key, ref.version_id)
        except Exception as exc:  # best effort: the original failure is what matters
            log.warning(
                "could not delete %s after the failure (%s); it has no manifest and is never "
                "restored",
                ref.key,
                exc,
            )
