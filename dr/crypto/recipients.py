"""Recipients: the key wrappers that protect each backup's data key.

A backup's 256-bit data key is wrapped once per configured recipient; each wrapping is
a `Stanza` stored in the backup's manifest (restic's key-file idea), so any one
recipient can unwrap it, and `dr rewrap` can add or drop recipients by writing a new
manifest without touching the data. Every wrap is bound to a `WrapContext` (cluster and
backup id): a stanza copied into another backup's manifest does not unwrap there.

Types are registered in `RECIPIENT_TYPES`, keyed by the config's `type`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path

from dr.crypto.settings import EncryptionConfig
from dr.crypto.wrapping import (
    DATA_KEY_SIZE,
    RECIPIENT_TYPES,
    KeyWrapper,
    RecipientFactory,
    Stanza,
    WrapContext,
    b64d,
    b64e,
    register,
)
from dr.errors import DRError, IntegrityError, KeyAccessError, UsageError

__all__ = [
    "DATA_KEY_SIZE",
    "RECIPIENT_TYPES",
    "KeyWrapper",
    "RecipientFactory",
    "Stanza",
    "WrapContext",
    "b64d",
    "b64e",
    "build_recipients",
    "check_outside",
    "new_data_key",
    "register",
    "select_wrappers",
    "unwrap_candidates",
    "unwrap_data_key",
]

log = logging.getLogger(__name__)


def build_recipients(config: EncryptionConfig) -> list[KeyWrapper]:
    _load_builtin_types()
    return [RECIPIENT_TYPES[r.type](r) for r in config.recipients]


def _load_builtin_types() -> None:
    # Imported for their @register side effect; kept lazy so that importing this
    # module does not pull boto3 in for a keyfile-only demo.
    from dr.crypto import awskms, keyfile, transit, x25519  # noqa: F401


def select_wrappers(encryption: EncryptionConfig | None, identity: Path | None) -> list[KeyWrapper]:
    """The recipients to try when opening a backup: `--identity FILE` first (an offline
    x25519 identity from `dr keygen`, or a key file), then the configured ones.

    The identity goes first so that a recovery never waits on a KMS that is gone, and
    it is used whether or not the config names it.
    """
    wrappers: list[KeyWrapper] = []
    if identity is not None:
        from dr.crypto.identity import load_identity

        wrappers.append(load_identity(identity))
    if encryption is not None:
        wrappers.extend(build_recipients(encryption))
    if not wrappers:
        raise UsageError(
            "no recipient to open the backup with: configure encryption.recipients or pass "
            "--identity FILE"
        )
    return wrappers


def check_outside(wrappers: Iterable[KeyWrapper], cluster_id: str) -> None:
    """Refuse a recipient that lives inside the cluster being backed up.

    Types that can live in a Vault (vault-transit) have `check_not_inside(cluster_id)`;
    it raises UsageError when their key is in that cluster.
    """
    for wrapper in wrappers:
        check: Callable[[str], None] | None = getattr(wrapper, "check_not_inside", None)
        if check is not None:
            check(cluster_id)


def new_data_key(
    wrappers: Sequence[KeyWrapper], context: WrapContext
) -> tuple[bytes, list[Stanza]]:
    """Make a fresh data key and wrap it for every recipient.

    The first recipient that can generate keys (a KMS) makes it, so the key comes from
    the KMS's generator; otherwise os.urandom. Any failure aborts: a backup that some
    configured recipient cannot open is not the backup the operator asked for.
    """
    if not wrappers:
        raise KeyAccessError("no encryption recipients configured (encryption.recipients)")
    data_key: bytes | None = None
    stanzas: list[Stanza] = []
    first = wrappers[0].generate(context)
    if first is not None:
        data_key, stanza = first
        stanzas.append(stanza)
        rest: Iterable[KeyWrapper] = wrappers[1:]
    else:
        data_key = os.urandom(DATA_KEY_SIZE)
        rest = wrappers
    if len(data_key) != DATA_KEY_SIZE:
        raise KeyAccessError(f"recipient {wrappers[0].describe()} returned a key of wrong size")
    stanzas.extend(w.wrap(data_key, context) for w in rest)
    return data_key, stanzas


def unwrap_candidates(
    stanzas: Sequence[Stanza], wrappers: Sequence[KeyWrapper], context: WrapContext
) -> Iterator[tuple[bytes, Stanza]]:
    """Every data key a configured recipient can unwrap from a stanza it matches, in
    order (recipients first to last, stanzas as stored).

    A manifest can hold a planted stanza (a bucket writer can add one: stanzas sit
    outside the MAC so that rewrap works), so no single unwrap is trusted: the caller
    keeps the first key that passes the manifest check (and the envelope's key
    commitment). When nothing unwraps, the error says why: no matching recipient
    (exit 5), only unauthentic stanzas (exit 6), or unreachable keys (exit 5).
    """
    failures: list[str] = []
    integrity_only = True
    tried = False
    unmatched: list[str] = []  # e.g. an --identity for another key: say so
    for wrapper in wrappers:
        if not any(wrapper.matches(stanza) for stanza in stanzas):
            unmatched.append(wrapper.describe())
        for stanza in stanzas:
            if not wrapper.matches(stanza):
                continue
            tried = True
            try:
                key = wrapper.unwrap(stanza, context)
            except DRError as exc:
                log.debug("recipient %s could not unwrap: %s", wrapper.describe(), exc)
                failures.append(f"{wrapper.describe()}: {exc}")
                integrity_only = integrity_only and isinstance(exc, IntegrityError)
                continue
            if len(key) != DATA_KEY_SIZE:
                failures.append(f"{wrapper.describe()}: unwrapped key has the wrong size")
                continue
            yield key, stanza
    have = ", ".join(f"{s.type}:{s.name}" for s in stanzas) or "none"
    if not tried:
        mine = ", ".join(w.describe() for w in wrappers) or "none"
        raise KeyAccessError(
            f"none of the configured recipients ({mine}) can open this backup, "
            f"which is wrapped for: {have}; pass --identity FILE if you hold its offline "
            "identity"
        )
    if not failures:
        return  # keys were unwrapped; the caller found none of them authentic
    if integrity_only:
        # Every recipient that answered says the stanza is not authentic: the backup
        # failed authentication (exit 6), which is not the same as a key we cannot reach.
        raise IntegrityError("the data key did not authenticate: " + "; ".join(failures))
    others = f"; {', '.join(unmatched)}: not among its recipients ({have})" if unmatched else ""
    raise KeyAccessError("could not unwrap the data key: " + "; ".join(failures) + others)


def unwrap_data_key(
    stanzas: Sequence[Stanza], wrappers: Sequence[KeyWrapper], context: WrapContext
) -> tuple[bytes, Stanza]:
    """The first key any configured recipient unwraps (callers that can check a key
    use `unwrap_candidates` and keep the first that checks)."""
    for key, stanza in unwrap_candidates(stanzas, wrappers, context):
        return key, stanza
    raise IntegrityError("no stanza of this backup unwrapped to a data key")
