"""`dr backup`, `dr list`, `dr verify`."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import click

from dr.cli import output
from dr.cli.reporting import metrics_file_option, reported
from dr.cli.state import State, jitter_option, open_backup, pass_state
from dr.cli.state import jitter as sleep_jitter
from dr.crypto.recipients import select_wrappers
from dr.errors import PartialCatalog, StorageError
from dr.manifest import Layout, Manifest
from dr.ops.backup import run_backup
from dr.ops.find import list_backups
from dr.ops.verify import verify_backup
from dr.progress import Progress, human_bytes
from dr.storage.factory import open_store

log = logging.getLogger(__name__)


def _progress(state: State, label: str) -> Progress:
    return Progress(label, enabled=None if not state.quiet else False)


def _emit_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=True))


def summary(m: Manifest) -> dict[str, Any]:
    """What `dr list --json` shows per backup: no secrets, no wrapped keys."""
    return {
        "backup_id": m.backup_id,
        "cluster": m.cluster,
        "created_at": m.created_at,
        "completed_at": m.completed_at,
        "vault": m.vault,
        "seal": m.seal_record.to_json(),
        "raft_index": m.snapshot_info.get("raft_index"),
        "raft_term": m.snapshot_info.get("raft_term"),
        "snapshot_bytes": m.snapshot.plaintext_size,
        "snapshot_stored_bytes": m.snapshot.ciphertext_size,
        "catalog_secrets": m.catalog_counts.get("secrets"),
        "catalog": {
            "secrets": m.catalog_counts.get("secrets"),
            # backups made before namespaces were walked name none: the root alone
            "namespaces": m.catalog_counts.get("namespaces", 1),
            "namespaces_skipped": m.catalog_counts.get("namespaces_skipped", 0),
            "mounts_skipped": m.catalog_counts.get("mounts_skipped", 0),
        },
        "recipients": [f"{s.type}:{s.name}" for s in m.recipients],
        "signed_by": (m.writer or {}).get("key_id"),  # None: no writer signature
        "version_ids": {
            "snapshot": m.snapshot.version_id,
            "catalog": m.catalog.version_id,
        },
    }


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@jitter_option
@metrics_file_option
@pass_state
def backup(state: State, as_json: bool, jitter: float, metrics_file: Path | None) -> None:
    """Take, check, encrypt and store a snapshot and catalog; print the backup id.

    Exits 0 only once the manifest (the commit marker) is stored; 14 when it is stored
    but the catalog could not cover some mounts (the policy does not name them).
    """
    # Metrics and alerts of every outcome (docs/metrics.md, docs/alerts.md); the config
    # loads on entering, so a broken one fails now, not after the jitter.
    with reported(state, "backup", metrics_file) as run:
        config = run.config
        sleep_jitter(jitter)
        result = run_backup(config, progress=_progress(state, "snapshot"))
        run.backup(result)  # stored: counted so also when it ends in exit 14 below
        m = result.manifest
        if as_json:
            _emit_json(
                {
                    **summary(m),
                    "store": result.store,
                    "seconds": round(result.seconds, 3),
                    "mounts_skipped": list(result.mounts_skipped),
                }
            )
        else:
            click.echo(m.backup_id)
        if result.mounts_skipped:
            raise PartialCatalog(
                f"backup {m.backup_id} is stored, but its catalog misses "
                f"{len(result.mounts_skipped)} mount(s) the token may not list: "
                f"{' | '.join(result.mounts_skipped)[:300]}; the snapshot holds them, a "
                "drill cannot check them: extend the backup policy (docs/vault-policy.md)"
            )


@click.command(name="list")
@click.option("--json", "as_json", is_flag=True, help="Print the backups as JSON.")
@pass_state
def list_(state: State, as_json: bool) -> None:
    """List complete backups, newest first."""
    config = state.config()
    store = open_store(config.storage)
    store.preflight(write=False)
    listing = list_backups(
        store,
        Layout(config.storage.prefix, config.cluster),
        writer=config.encryption.writer_trusted,
        allow_unsigned=True,  # listing only: an unsigned backup is shown (SIGNED column)
    )
    # Unfinished uploads of killed runs (S3 multipart uploads, file-store temp files):
    # invisible in the bucket listing, but they cost storage until removed.
    try:
        uploads = store.list_incomplete_uploads(
            Layout(config.storage.prefix, config.cluster).cluster_prefix
        )
    except StorageError as exc:  # a reader role without ListBucketMultipartUploads
        log.info("cannot list unfinished uploads: %s", exc.message)
        uploads = []
    if as_json:
        _emit_json(
            {
                "cluster": config.cluster,
                "store": store.describe(),
                "backups": [summary(m) for m in listing.backups],
                "incomplete": listing.incomplete,
                "incomplete_uploads": uploads,
                "unreadable": listing.unreadable,
            }
        )
        return
    rows = [
        (
            "BACKUP ID",
            "CREATED",
            "SNAPSHOT",
            "RAFT INDEX",
            "SECRETS",
            "NAMESPACES",
            "SEAL",
            "RECIPIENTS",
        )
    ]
    for m in listing.backups:
        rows.append(
            (
                m.backup_id,
                m.created_at,
                human_bytes(m.snapshot.plaintext_size),
                str(m.snapshot_info.get("raft_index", "")),
                str(m.catalog_counts.get("secrets", "")),
                str(m.catalog_counts.get("namespaces", 1)),
                m.seal_record.describe(),
                ",".join(f"{s.type}:{s.name}" for s in m.recipients),
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        click.echo("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
    if not listing.backups:
        output.note(
            f"(no backups of {config.cluster} in {store.describe()})", cluster=config.cluster
        )
    if listing.incomplete:
        output.note(
            f"note: {len(listing.incomplete)} incomplete backup(s) without a manifest "
            "(failed or killed runs); they are never restored",
            incomplete=len(listing.incomplete),
        )
    for bad in listing.unreadable:
        output.note(f"warning: unreadable manifest {bad}", level="warning", key=bad)
    if uploads:
        output.note(
            f"note: {len(uploads)} unfinished upload(s) of killed runs ({', '.join(uploads[:3])}"
            f"{', ...' if len(uploads) > 3 else ''}): they cost storage until aborted; the "
            "bucket's AbortIncompleteMultipartUpload lifecycle rule (terraform/) removes them",
            incomplete_uploads=len(uploads),
        )


@click.command()
@click.option(
    "--backup",
    "which",
    default="latest",
    show_default=True,
    metavar="ID|latest|random",
    help="Which backup to verify: an id from dr list, latest (the newest that "
    "authenticates), or random (any complete one: a spot check of old backups).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.option(
    "--identity",
    type=click.Path(dir_okay=False, path_type=Path),
    help="An offline identity (dr keygen) or key file, tried before the configured "
    "recipients: works when no KMS is reachable.",
)
@click.option(
    "--skip-unauthentic",
    is_flag=True,
    help="With --backup latest: when the newest backup cannot be authenticated, verify "
    "the newest one that can (with a warning) instead of refusing.",
)
@click.option(
    "--allow-unsigned",
    is_flag=True,
    help="Accept a backup that carries no writer signature (it is named in a warning).",
)
@pass_state
def verify(
    state: State,
    which: str,
    as_json: bool,
    identity: Path | None,
    skip_unauthentic: bool,
    allow_unsigned: bool,
) -> None:
    """Download a backup, authenticate every frame and check the snapshot inside.

    Needs read access to the store and one working recipient (or --identity); no Vault.
    """
    config, store, manifest = open_backup(
        state, which, skip_unauthentic=skip_unauthentic, allow_unsigned=allow_unsigned
    )
    wrappers = select_wrappers(config.encryption, identity)
    result = verify_backup(
        store,
        manifest,
        wrappers,
        progress=_progress(state, "verify"),
        record_in=Layout(config.storage.prefix, config.cluster),  # for dr status and prune
    )
    if as_json:
        _emit_json(result.to_json())
    else:
        click.echo(
            f"backup {result.backup_id} OK: {human_bytes(result.snapshot_bytes)} snapshot at "
            f"raft index {result.raft_index}, {result.catalog_secrets} cataloged secrets, "
            f"opened with {result.recipient}, {result.seconds:.1f} s"
        )


COMMANDS = (backup, list_, verify)
