"""`dr rewrap`: add, rotate or remove the recipients of stored backups, data untouched.

The data key of a backup is small and lives, wrapped once per recipient, in the
backup's manifest.json, outside the manifest's MAC (docs/manifest.md). Rewrapping is
therefore: open the data key with any recipient that works (the config's, or an
offline `--identity`), check the manifest's MAC with it, wrap the key for the added
recipients, and write the manifest again with the new stanza list. snapshot.enc and
catalog.enc are never read or written: their S3 VersionIds, which the manifest pins,
stay what they were. On a versioned bucket the old manifest stays in the version
history; the file store replaces it.

Names: `--add X` wraps for the configured recipient X names: its name, the label
`dr list` shows (`aws-kms:kms-vault-backup`) or its key (KMS alias, ARN or key id,
`vdr1...` public key, key file path, transit key); `--remove X` drops the stanzas X
names the same way (or by their stored key id / KMS alias), whether or not the config
still has that recipient. Unnamed recipients are named after their key
(dr/config.py `default_recipient_name`), so names survive edits of the list. Both
together for one recipient replace its stanza with one made by the current config
(rotation to a new key under the same name).
Adding a name the backup already has, or removing one it does not have, changes
nothing, so a rerun is harmless. A backup is never left without a recipient.

Removal is not revocation: whoever held a removed key and a copy of the old manifest
(or read access to the bucket's version history) can still open that backup, because
its data key did not change. docs/keys.md says what to do after a key is compromised.

All backups are planned first (opened, MAC checked, new stanzas wrapped) and written
only when every one of them could be planned, so a missing key fails the run before any
manifest changes. Each write re-reads the manifest and refuses if it changed meanwhile.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dr.config import Config, RecipientConfig
from dr.crypto.recipients import (
    KeyWrapper,
    Stanza,
    WrapContext,
    build_recipients,
    check_outside,
    select_wrappers,
)
from dr.errors import LockedError, UsageError
from dr.manifest import MANIFEST_NAME, Layout, Manifest
from dr.ops.find import Trust, list_backups, resolve_backup, trust_of, unlock
from dr.ops.locking import cluster_lock
from dr.storage.base import BackupStore
from dr.storage.factory import open_store
from dr.timesource import Now, utcnow

log = logging.getLogger(__name__)


def _label(stanza: Stanza) -> str:
    return f"{stanza.type}:{stanza.name}"


@dataclass
class RewrapChange:
    backup_id: str
    before: list[str]
    after: list[str]
    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    opened_with: str | None = None
    manifest_version_id: str | None = None
    written: bool = False
    # What the write needs: the manifest as read, and its new stanzas.
    _manifest: Manifest | None = field(default=None, repr=False)
    _stanzas: list[Stanza] = field(default_factory=list, repr=False)

    @property
    def changed(self) -> bool:
        return bool(self.added or self.removed)

    def describe(self) -> str:
        if not self.changed:
            return f"{self.backup_id}: unchanged ({', '.join(self.before)})"
        parts = [f"added {', '.join(self.added)}"] if self.added else []
        parts += [f"removed {', '.join(self.removed)}"] if self.removed else []
        version = (
            f"; manifest version {self.manifest_version_id}" if self.manifest_version_id else ""
        )
        return (
            f"{self.backup_id}: {', '.join(self.before)} -> {', '.join(self.after)} "
            f"({'; '.join(parts)}{version})"
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "backup_id": self.backup_id,
            "changed": self.changed,
            "written": self.written,
            "before": self.before,
            "after": self.after,
            "added": self.added,
            "removed": self.removed,
            "opened_with": self.opened_with,
            "manifest_version_id": self.manifest_version_id,
        }


@dataclass
class RewrapResult:
    store: str
    dry_run: bool
    changes: list[RewrapChange]
    skipped: list[str]  # unreadable manifests: "id: reason"

    def to_json(self) -> dict[str, Any]:
        return {
            "store": self.store,
            "dry_run": self.dry_run,
            "changed": sum(c.changed for c in self.changes),
            "backups": [c.to_json() for c in self.changes],
            "skipped": self.skipped,
        }


class _Openers:
    """The recipients that open backups, built on first need: a rerun that changes
    nothing contacts no KMS and needs no identity."""

    def __init__(self, config: Config, identity: Path | None) -> None:
        self._config = config
        self._identity = identity
        self._wrappers: list[KeyWrapper] | None = None

    def get(self) -> list[KeyWrapper]:
        if self._wrappers is None:
            self._wrappers = select_wrappers(self._config.encryption, self._identity)
        return self._wrappers


def recipient_keys(recipient: RecipientConfig) -> set[str]:
    """What an operator may type for a configured recipient: its name, the label
    `dr list` shows (`type:name`), and its key: KMS alias/ARN/key id, `vdr1...` public
    key, key file path, transit key name."""
    keys = {recipient.name, f"{recipient.type}:{recipient.name}"}
    for option in ("key_id", "recipient", "key", "path"):
        value = recipient.options.get(option)
        if isinstance(value, str | Path) and str(value):
            keys.add(str(value))
    return keys


def _configured(config: Config, given: str, flag: str) -> RecipientConfig | None:
    """The one configured recipient `given` names (by name, label or key), None when
    none does; UsageError when several do."""
    matches = [r for r in config.encryption.recipients if given in recipient_keys(r)]
    if not matches and Path(given).expanduser().exists():
        target = Path(given).expanduser().resolve()
        matches = [
            r
            for r in config.encryption.recipients
            if "path" in r.options and Path(str(r.options["path"])).resolve() == target
        ]
    if len(matches) > 1:
        raise UsageError(
            f"{flag} {given}: several recipients match ({', '.join(r.name for r in matches)}); "
            "give the name instead"
        )
    return matches[0] if matches else None


def _adders(config: Config, names: Sequence[str]) -> list[KeyWrapper]:
    chosen: list[str] = []
    for given in names:
        match = _configured(config, given, "--add")
        if match is None:
            have = ", ".join(r.name for r in config.encryption.recipients) or "none"
            raise UsageError(
                f"--add {given}: {config.source} has no recipient with that name, label or "
                f"key (it has: {have}); add it to encryption.recipients first"
            )
        chosen.append(match.name)
    by_name = {w.name: w for w in build_recipients(config.encryption)}
    return [by_name[n] for n in dict.fromkeys(chosen)]


def removal_names(config: Config, manifest: Manifest, given: Sequence[str]) -> set[str]:
    """The stanza names of `manifest` that `--remove` values name: a stanza's name, its
    label (`type:name`) or its key id, or a configured recipient (by name, label or
    key) whose stanza is there."""
    names: set[str] = set()
    for value in given:
        configured = _configured(config, value, "--remove")
        for stanza in manifest.recipients:
            # (an aws-kms stanza keeps the configured key, e.g. the alias, as `alias`)
            own = (stanza.name, f"{stanza.type}:{stanza.name}", stanza.key_id)
            if (
                value in own
                or value == stanza.body.get("alias")
                or (
                    configured is not None
                    and configured.type == stanza.type
                    and configured.name == stanza.name
                )
            ):
                names.add(stanza.name)
    return names


def plan_one(
    manifest: Manifest, adders: Sequence[KeyWrapper], remove: set[str], openers: _Openers
) -> RewrapChange:
    before = [_label(s) for s in manifest.recipients]
    kept = [s for s in manifest.recipients if s.name not in remove]
    removed = [s.name for s in manifest.recipients if s.name in remove]
    present = {s.name for s in kept}
    to_add = [w for w in adders if w.name not in present]
    change = RewrapChange(manifest.backup_id, before, before, removed=removed)
    if not removed and not to_add:
        return change
    if not kept and not to_add:
        raise UsageError(
            f"refusing to remove the last recipient of backup {manifest.backup_id} "
            f"({', '.join(before)}): nothing could open it any more; --add another one"
        )
    data_key, used = unlock(manifest, openers.get())  # also checks the manifest's MAC
    check_outside(to_add, str(manifest.vault.get("cluster_id", "")))
    context = WrapContext(manifest.cluster, manifest.backup_id)
    new = [w.wrap(data_key, context) for w in to_add]
    stanzas = kept + new
    change.after = [_label(s) for s in stanzas]
    change.added = [s.name for s in new]
    change.opened_with = _label(used)
    change._manifest = manifest
    change._stanzas = stanzas
    return change


def _write(store: BackupStore, layout: Layout, change: RewrapChange) -> None:
    manifest = change._manifest
    assert manifest is not None
    current = resolve_backup(store, layout, manifest.backup_id)
    if current.to_json() != manifest.to_json():
        raise LockedError(
            f"the manifest of backup {manifest.backup_id} changed while this rewrap ran "
            "(another rewrap?); nothing was written for it: run dr rewrap again"
        )
    manifest.recipients = change._stanzas
    ref = store.put_bytes(
        layout.key(manifest.backup_id, MANIFEST_NAME),
        manifest.dumps(),
        metadata={"backup-id": manifest.backup_id},
    )
    change.manifest_version_id = ref.version_id
    change.written = True
    log.info("backup %s rewrapped: %s", manifest.backup_id, change.describe())


def run_rewrap(
    config: Config,
    *,
    which: str | None,
    all_backups: bool,
    add: Sequence[str] = (),
    remove: Sequence[str] = (),
    identity: Path | None = None,
    dry_run: bool = False,
    store: BackupStore | None = None,
    allow_unsigned: bool = False,
    now: Now = utcnow,
) -> RewrapResult:
    if not add and not remove:
        raise UsageError(
            "nothing to do: give --add NAME and/or --remove NAME (recipient names as in "
            "the config and in dr list)"
        )
    if (which is None) == (not all_backups):
        raise UsageError("give either --backup ID|latest or --all")
    trust = trust_of(config.encryption, allow_unsigned=allow_unsigned)
    adders = _adders(config, add)
    openers = _Openers(config, identity)
    store = store or open_store(config.storage)
    store.preflight(write=not dry_run)
    if dry_run:  # reads only: no lock, so a plan can be shown while a backup runs
        return _rewrap(config, store, which, all_backups, adders, remove, openers, dry_run, trust)
    with cluster_lock(config, store, "rewrap", now=now):
        return _rewrap(config, store, which, all_backups, adders, remove, openers, dry_run, trust)


def _rewrap(
    config: Config,
    store: BackupStore,
    which: str | None,
    all_backups: bool,
    adders: list[KeyWrapper],
    remove: Sequence[str],
    openers: _Openers,
    dry_run: bool,
    trust: Trust,
) -> RewrapResult:
    layout = Layout(config.storage.prefix, config.cluster)
    skipped: list[str] = []
    if all_backups:
        listing = list_backups(
            store, layout, writer=trust.writer, allow_unsigned=trust.allow_unsigned
        )
        manifests, skipped = listing.backups, listing.unreadable
        for bad in skipped:
            log.warning("skipping unreadable manifest %s", bad)
    else:
        assert which is not None
        manifests = [
            resolve_backup(
                store, layout, which, writer=trust.writer, allow_unsigned=trust.allow_unsigned
            )
        ]
    changes = [plan_one(m, adders, removal_names(config, m, remove), openers) for m in manifests]
    if not dry_run:
        for change in changes:
            if change.changed:
                _write(store, layout, change)
    return RewrapResult(store.describe(), dry_run, changes, skipped)
