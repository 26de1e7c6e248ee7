"""Finding backups: listing manifests, resolving `latest`, unwrapping a backup's key.

Listing backups is listing manifests: objects without a manifest belong to a run that
failed or was killed and are never shown or restored (invariant 2).
"""

from __future__ import annotations

import logging
import random
from collections.abc import Sequence
from dataclasses import dataclass, field

from dr.crypto.recipients import KeyWrapper, Stanza, WrapContext, unwrap_candidates
from dr.crypto.settings import EncryptionConfig
from dr.errors import DRError, IntegrityError, NotFoundError, UsageError
from dr.manifest import (
    BACKUP_ID_RE,
    CATALOG_NAME,
    MANIFEST_NAME,
    SNAPSHOT_NAME,
    Layout,
    Manifest,
)
from dr.storage.base import BackupStore

log = logging.getLogger(__name__)


@dataclass
class Listing:
    backups: list[Manifest]  # newest first; every one where it belongs (and signed)
    incomplete: list[str]  # backup ids with objects but no manifest
    unreadable: list[str]  # manifests that failed to parse or authenticate: "id: reason"
    unreadable_ids: list[str] = field(default_factory=list)


def check_placement(manifest: Manifest, layout: Layout, backup_id: str, key: str) -> None:
    """A manifest must describe the place it was found in: its backup id, its cluster
    and its objects' keys. A genuine manifest copied under a newer id (to make `latest`
    an old backup) fails here (and its signature, where a writer key is pinned, covers
    the id, so it cannot be edited to match)."""
    expected = {
        "backup id": (manifest.backup_id, backup_id),
        "cluster": (manifest.cluster, layout.cluster),
        "snapshot key": (manifest.snapshot.key, layout.key(backup_id, SNAPSHOT_NAME)),
        "catalog key": (manifest.catalog.key, layout.key(backup_id, CATALOG_NAME)),
    }
    for what, (found, wanted) in expected.items():
        if found != wanted:
            raise IntegrityError(
                f"{key} names {what} {str(found)[:80]!r} but was found at {wanted!r}: a "
                "manifest moved or copied from elsewhere; do not restore it"
            )


@dataclass(frozen=True)
class Trust:
    """Which backups may be opened: signed by one of `writer` (the pinned public keys),
    or, with `allow_unsigned`, also unsigned ones (with a warning). Built by
    `trust_of()`, which refuses a config that pins nothing and allows nothing."""

    writer: tuple[bytes, ...] | None = None
    allow_unsigned: bool = False


def trust_of(encryption: EncryptionConfig, *, allow_unsigned: bool = False) -> Trust:
    pinned = encryption.writer_trusted
    allowed = allow_unsigned or encryption.allow_unsigned
    if pinned is None and not allowed:
        raise UsageError(
            "encryption.writer.public_key is not set, so a backup your backup job made "
            "cannot be told from one planted in the bucket: pin the writer public key (the "
            "`vdrw1...` in the break-glass kit; docs/keys.md), or pass --allow-unsigned"
        )
    return Trust(pinned, allowed)


def warn_if_unsigned(manifest: Manifest) -> None:
    """One loud line when an opened backup carries no writer signature."""
    if manifest.writer is None:
        log.warning(
            "WARNING: backup %s is not signed by a writer key; it was accepted because "
            "unsigned backups are allowed (--allow-unsigned / encryption.allow_unsigned)",
            manifest.backup_id,
        )


def _authentic(
    store: BackupStore,
    layout: Layout,
    backup_id: str,
    writer: Sequence[bytes] | None,
    allow_unsigned: bool = False,
) -> Manifest:
    """Load a manifest, check where it was found, and (with `writer`) its signature;
    `allow_unsigned` lets an unsigned one through (a signed one is always checked)."""
    key = layout.key(backup_id, MANIFEST_NAME)
    manifest = Manifest.loads(store.get_bytes(key), key)
    check_placement(manifest, layout, backup_id, key)
    if writer is not None and not (manifest.writer is None and allow_unsigned):
        manifest.check_writer(writer)
    return manifest


def list_backups(
    store: BackupStore,
    layout: Layout,
    *,
    writer: Sequence[bytes] | None = None,
    allow_unsigned: bool = False,
) -> Listing:
    """Every backup of the cluster, newest first. With `writer` (the pinned public key)
    only manifests it signed are listed; the others are `unreadable`, with the reason."""
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
                manifests[backup_id] = _authentic(store, layout, backup_id, writer, allow_unsigned)
            except DRError as exc:
                unreadable[backup_id] = str(exc)
    ordered = [manifests[k] for k in sorted(manifests, reverse=True)]
    incomplete = sorted(seen - set(manifests) - set(unreadable))
    return Listing(
        ordered,
        incomplete,
        [f"{k}: {v}" for k, v in sorted(unreadable.items())],
        sorted(unreadable),
    )


def resolve_backup(
    store: BackupStore,
    layout: Layout,
    which: str,
    *,
    writer: Sequence[bytes] | None = None,
    skip_unauthentic: bool = False,
    allow_unsigned: bool = False,
) -> Manifest:
    """`which` is a backup id, `latest`, or `random` (drills pick one at random).

    `latest` never falls back silently: when a manifest newer than the newest authentic
    one is damaged or unauthentic, it refuses (exit 6), or with `skip_unauthentic` uses
    the older one with a loud warning (`skipped_newer` on the result says which)."""
    if which in ("latest", "random"):
        listing = list_backups(store, layout, writer=writer, allow_unsigned=allow_unsigned)
        if not listing.backups and listing.unreadable:
            raise IntegrityError(
                f"no backup of cluster '{layout.cluster}' in {store.describe()} can be "
                f"authenticated; the newest: {listing.unreadable[-1][:240]}"
            )
        if not listing.backups:
            hint = (
                f" ({len(listing.unreadable)} unreadable: see `dr list`)"
                if listing.unreadable
                else ""
            )
            raise NotFoundError(
                f"no backups of cluster '{layout.cluster}' in {store.describe()}{hint}; "
                "run `dr backup` first"
            )
        newest = listing.backups[0].backup_id
        newer_bad = [bid for bid in listing.unreadable_ids if bid > newest]
        if which == "latest" and newer_bad:
            reason = next(u for u in listing.unreadable if u.startswith(newer_bad[-1]))
            if not skip_unauthentic:
                raise IntegrityError(
                    f"the newest backup cannot be authenticated ({reason[:200]}); `latest` "
                    f"will not fall back to the older {newest} silently: investigate, or pass "
                    "--skip-unauthentic to use it"
                )
            log.warning(
                "WARNING: %d newer backup(s) skipped as unauthentic (%s); using %s",
                len(newer_bad),
                ", ".join(newer_bad),
                newest,
            )
            listing.backups[0].skipped_newer = list(newer_bad)
        if which == "latest":
            return listing.backups[0]
        return random.choice(listing.backups)
    if not BACKUP_ID_RE.match(which):
        raise UsageError(
            f"'{which}' is not a backup id (like 20261126T060000Z-3f9a1c), 'latest' or 'random'"
        )
    try:
        return _authentic(store, layout, which, writer, allow_unsigned)
    except NotFoundError:
        raise NotFoundError(
            f"backup {which} of cluster '{layout.cluster}' not found in {store.describe()} "
            "(or it is incomplete); see `dr list`"
        ) from None


def unlock(manifest: Manifest, wrappers: Sequence[KeyWrapper]) -> tuple[bytes, Stanza]:
    """The backup's data key: the first key unwrapped from ANY matching stanza that
    passes the manifest's MAC (a planted stanza must not block a genuine backup)."""
    context = WrapContext(manifest.cluster, manifest.backup_id)
    refused: list[str] = []
    for data_key, stanza in unwrap_candidates(manifest.recipients, wrappers, context):
        try:
            manifest.check_mac(data_key)
        except IntegrityError:
            refused.append(f"{stanza.type}:{stanza.name}")
            log.debug("backup %s: stanza %s:%s does not authenticate the manifest",
                      manifest.backup_id, stanza.type, stanza.name)  # fmt: skip
            continue
        if refused:
            log.warning(
                "backup %s: %d stanza(s) (%s) hold a key that does not authenticate the "
                "manifest (planted, or damaged); opened with %s:%s",
                manifest.backup_id,
                len(refused),
                ", ".join(refused),
                stanza.type,
                stanza.name,
            )
        log.info("data key of %s unwrapped by %s:%s", manifest.backup_id, stanza.type, stanza.name)
        return data_key, stanza
    raise IntegrityError(
        f"manifest of backup {manifest.backup_id} does not authenticate under any key its "
        f"stanzas hold ({', '.join(refused) or 'none unwrapped'}): it was altered after the "
        "backup; do not restore it before finding out why"
    )
