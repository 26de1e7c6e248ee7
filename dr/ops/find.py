"""Finding backups: listing manifests, resolving `latest`, unwrapping a backup's key.

Listing backups is listing manifests: objects without a manifest belong to a run that
failed or was killed and are never shown or restored (invariant 2).
"""

from __future__ import annotations

import logging
import random
from collections.abc import Sequence
from dataclasses import dataclass

from dr.crypto.recipients import KeyWrapper, Stanza, WrapContext, unwrap_data_key
from dr.errors import DRError, IntegrityError, NotFoundError, UsageError
from dr.manifest import BACKUP_ID_RE, MANIFEST_NAME, Layout, Manifest
from dr.storage.base import BackupStore

log = logging.getLogger(__name__)


@dataclass
class Listing:
    backups: list[Manifest]  # newest first
    incomplete: list[str]  # backup ids with objects but no manifest
    unreadable: list[str]  # manifests that failed to parse: "id: reason"


def list_backups(store: BackupStore, layout: Layout) -> Listing:
    manifests: dict[str, Manifest] = {}
    seen: set[str] = set()
    unreadable: dict[str, str] = {}
    for info in store.list(layout.cluster_prefix):
        backup_id = layout.backup_id_of(info.key)
        if backup_id is None:
            continue
        seen.add(backup_id)
        if info.key == layout.key(backup_id, MANIFEST_NAME):
            try:
                manifests[backup_id] = Manifest.loads(store.get_bytes(info.key), info.key)
            except DRError as exc:
                unreadable[backup_id] = str(exc)
    ordered = [manifests[k] for k in sorted(manifests, reverse=True)]
    incomplete = sorted(seen - set(manifests) - set(unreadable))
    return Listing(ordered, incomplete, [f"{k}: {v}" for k, v in sorted(unreadable.items())])


def resolve_backup(store: BackupStore, layout: Layout, which: str) -> Manifest:
    """`which` is a backup id, `latest`, or `random` (drills pick one at random)."""
    if which in ("latest", "random"):
        listing = list_backups(store, layout)
        if not listing.backups:
            raise NotFoundError(
                f"no backups of cluster '{layout.cluster}' in {store.describe()}; "
                "run `dr backup` first"
            )
        if which == "latest":
            return listing.backups[0]
        return random.choice(listing.backups)
    if not BACKUP_ID_RE.match(which):
        raise UsageError(
            f"'{which}' is not a backup id (like 20261126T060000Z-3f9a1c), 'latest' or 'random'"
        )
    key = layout.key(which, MANIFEST_NAME)
    try:
        raw = store.get_bytes(key)
    except NotFoundError:
        raise NotFoundError(
            f"backup {which} of cluster '{layout.cluster}' not found in {store.describe()} "
            "(or it is incomplete); see `dr list`"
        ) from None
    manifest = Manifest.loads(raw, key)
    if manifest.backup_id != which or manifest.cluster != layout.cluster:
        raise IntegrityError(f"{key} names backup {manifest.backup_id} of {manifest.cluster}")
    return manifest


def unlock(manifest: Manifest, wrappers: Sequence[KeyWrapper]) -> tuple[bytes, Stanza]:
    """Unwrap the backup's data key and check the manifest's MAC with it."""
    context = WrapContext(manifest.cluster, manifest.backup_id)
    data_key, stanza = unwrap_data_key(manifest.recipients, wrappers, context)
    manifest.check_mac(data_key)
    log.info("data key of %s unwrapped by %s:%s", manifest.backup_id, stanza.type, stanza.name)
    return data_key, stanza
