"""Backup ids, the object layout in the store, and manifest.json (the commit marker).

Layout (ARCHITECTURE.md, docs/manifest.md):
    {prefix}/{cluster}/{backup_id}/snapshot.enc    envelope of the raft snapshot
    {prefix}/{cluster}/{backup_id}/catalog.enc     envelope of the path catalog
    {prefix}/{cluster}/{backup_id}/manifest.json   written LAST; no secret in it

The manifest holds the wrapped data keys (one stanza per recipient) and a MAC over
everything else under a key derived from the data key, so a tool holding any recipient
detects an altered manifest (sizes, hashes, VersionIds). The recipients list is outside
the MAC on purpose: `dr rewrap` changes it without touching the data, and each stanza
is bound to its backup by its own wrapping context.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from dr import validate
from dr.crypto.recipients import Stanza
from dr.crypto.writer import WriterKey, verify_signature
from dr.errors import IntegrityError
from dr.vault.sealconf import SealRecord

MANIFEST_FORMAT = 1
MANIFEST_NAME = "manifest.json"
SNAPSHOT_NAME = "snapshot.enc"
CATALOG_NAME = "catalog.enc"
BACKUP_ID_RE = re.compile(r"^\d{8}T\d{6}Z-[0-9a-f]{6}$")


def new_backup_id(now: datetime | None = None) -> str:
    """Sortable by time: 20261126T060000Z-3f9a1c (6 random hex against collisions)."""
    now = now or datetime.now(UTC)
    return now.strftime("%Y%m%dT%H%M%SZ") + "-" + os.urandom(3).hex()


def backup_time(backup_id: str) -> datetime:
    return datetime.strptime(backup_id[:16], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)


@dataclass(frozen=True)
class Layout:
    prefix: str
    cluster: str

    @property
    def cluster_prefix(self) -> str:
        return f"{self.prefix}/{self.cluster}/" if self.prefix else f"{self.cluster}/"

    def key(self, backup_id: str, name: str) -> str:
        return f"{self.cluster_prefix}{backup_id}/{name}"

    def context(self, backup_id: str, name: str) -> str:
        """The envelope context: binds an object to its cluster, backup and role."""
        role = name.removesuffix(".enc")
        return f"{self.cluster}/{backup_id}/{role}"

    # Beside the backups, never parsed as one (`backup_id_of` is None for them):
    @property
    def lock_key(self) -> str:
        """The per-cluster run lock (dr/storage/lock.py)."""
        return f"{self.cluster_prefix}lock.json"

    @property
    def records_prefix(self) -> str:
        """Drill and verify records (dr/ops/records.py), one object per run."""
        return f"{self.cluster_prefix}records/"

    def state_key(self, command: str) -> str:
        """The last result of a command, for alerts on recovery (dr/ops/alerts.py)."""
        return f"{self.cluster_prefix}state/{command}.json"

    def backup_id_of(self, key: str) -> str | None:
        rest = key[len(self.cluster_prefix) :] if key.startswith(self.cluster_prefix) else ""
        backup_id, _, _ = rest.partition("/")
        return backup_id if BACKUP_ID_RE.match(backup_id) else None


@dataclass
class ObjectRecord:
    key: str
    version_id: str | None
    context: str
    plaintext_size: int
    plaintext_sha256: str
    ciphertext_size: int
    ciphertext_sha256: str

    @classmethod
    def from_json(cls, data: object, field: str) -> ObjectRecord:
        """A stored record, every field checked by type and range (FieldError)."""
        entries = validate.obj(data, field, required=_RECORD_FIELDS, allowed=_RECORD_FIELDS)
        return cls(
            key=validate.text(entries["key"], f"{field}.key", max_len=1024),
            version_id=validate.optional_text(
                entries["version_id"], f"{field}.version_id", max_len=1024
            ),
            context=validate.text(entries["context"], f"{field}.context", max_len=1024),
            plaintext_size=validate.integer(entries["plaintext_size"], f"{field}.plaintext_size"),
            plaintext_sha256=validate.hex64(
                entries["plaintext_sha256"], f"{field}.plaintext_sha256"
            ),
            ciphertext_size=validate.integer(
                entries["ciphertext_size"], f"{field}.ciphertext_size"
            ),
            ciphertext_sha256=validate.hex64(
                entries["ciphertext_sha256"], f"{field}.ciphertext_sha256"
            ),
        )


_RECORD_FIELDS = frozenset(
    {
        "key",
        "version_id",
        "context",
        "plaintext_size",
        "plaintext_sha256",
        "ciphertext_size",
        "ciphertext_sha256",
    }
)

MAX_RECIPIENTS = 64
_ID_RE = re.compile(r"[0-9]{8}T[0-9]{6}Z-[0-9a-f]{6}")  # BACKUP_ID_RE, whole and ASCII
_CLUSTER_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}")  # dr.config.CLUSTER_PATTERN
_MANIFEST_REQUIRED = frozenset(
    {
        "format",
        "cluster",
        "backup_id",
        "created_at",
        "completed_at",
        "tool_version",
        "vault",
        "snapshot",
        "snapshot_info",
        "catalog",
        "catalog_counts",
        "encryption",
        "recipients",
        "mac",
    }
)
_MANIFEST_FIELDS = _MANIFEST_REQUIRED | {"writer", "vault_seal"}
_SEAL_FIELDS = frozenset({"type", "threshold", "shares", "recovery_seal", "key", "key_source"})
_WRITER_FIELDS = frozenset({"alg", "key_id", "sig"})
_WRITER_KEY_ID_RE = re.compile(r"[0-9a-f]{16}")
_SIGNATURE_SIZE = 64


def _size(value: object, field: str) -> None:
    validate.integer(value, field)


def _time(value: object, field: str) -> None:
    validate.number(value, field, lo=0, hi=1e11)


_SNAPSHOT_INFO_CHECKS = {
    "raft_index": _size,
    "raft_term": _size,
    "raft_version": _size,
    "state_size": _size,
    "state_sha256": validate.hex64,
    "window_start": _time,
    "window_end": _time,
    "clock_uncertainty": _time,
}
_ENCRYPTION_CHECKS = {
    "format": lambda v, f: validate.text(v, f, max_len=64, ascii_only=True),
    "frame_size": lambda v, f: validate.integer(v, f, lo=1, hi=1 << 30),
}


def _backup_id(value: object) -> str:
    backup_id = validate.text(value, "backup_id", max_len=23, pattern=_ID_RE)
    try:
        backup_time(backup_id)
    except ValueError:
        raise validate.FieldError("backup_id", "does not start with a valid time") from None
    return backup_id


def _writer(value: object) -> dict[str, str] | None:
    """The optional writer signature: its shape only (the signature is checked by the
    code that verifies writers)."""
    if value is None:
        return None
    entries = validate.obj(value, "writer", required=_WRITER_FIELDS, allowed=_WRITER_FIELDS)
    if entries["alg"] != "ed25519":
        raise validate.FieldError("writer.alg", "must be 'ed25519'")
    key_id = validate.text(entries["key_id"], "writer.key_id", pattern=_WRITER_KEY_ID_RE)
    sig = validate.text(entries["sig"], "writer.sig", max_len=128, ascii_only=True)
    validate.b64_bytes(sig, "writer.sig", size=_SIGNATURE_SIZE)
    return {"alg": "ed25519", "key_id": key_id, "sig": sig}


def _seal(value: object) -> dict[str, Any] | None:
    if value is None:
        return None
    data = validate.obj(value, "vault_seal", required=frozenset({"type"}), allowed=_SEAL_FIELDS)
    flat = validate.scalar_map({k: v for k, v in data.items() if k != "key"}, "vault_seal")
    validate.text(flat["type"], "vault_seal.type", max_len=32, pattern=re.compile(r"[a-z0-9_-]+"))
    for name in ("threshold", "shares"):
        if name in flat:
            validate.integer(flat[name], f"vault_seal.{name}", lo=0, hi=255)
    key = validate.scalar_map(data.get("key", {}), "vault_seal.key")
    for name, item in key.items():
        validate.text(item, f"vault_seal.key.{name}", max_len=512, allow_empty=True)
    return {**flat, "key": key}


@dataclass
class Manifest:
    cluster: str
    backup_id: str
    created_at: str
    completed_at: str
    tool_version: str
    vault: dict[str, Any]
    snapshot: ObjectRecord
    snapshot_info: dict[str, Any]
    catalog: ObjectRecord
    catalog_counts: dict[str, int]
    encryption: dict[str, Any]
    recipients: list[Stanza] = field(default_factory=list)
    mac: str = ""
    format: int = MANIFEST_FORMAT
    # The backup job's signature (issue 8: an authenticated writer): {"alg": "ed25519",
    # "key_id": 16 hex, "sig": base64 of 64 bytes}; None in backups made before it.
    writer: dict[str, str] | None = None
    # The source cluster's seal (dr/vault/sealconf.py SealRecord); None in backups made
    # before it was recorded (all of them from Shamir clusters). Covered by the MAC and
    # the signature when present.
    vault_seal: dict[str, Any] | None = None
    # Set by `latest` when newer unauthentic manifests were skipped (never stored).
    skipped_newer: list[str] = field(default_factory=list, compare=False, repr=False)

    @property
    def seal_record(self) -> SealRecord:
        """The source's seal (shamir with an unknown threshold for older backups)."""
        return SealRecord.from_json(self.vault_seal)

    def _body(self) -> dict[str, Any]:
        body = asdict(self)
        body.pop("recipients")
        body.pop("mac")
        body.pop("writer")
        body.pop("skipped_newer")
        if body["vault_seal"] is None:  # older manifests: MAC and signature have no seal
            body.pop("vault_seal")
        return body

    def to_json(self) -> dict[str, Any]:
        out = {
            **self._body(),
            "recipients": [s.to_json() for s in self.recipients],
            "mac": self.mac,
        }
        if self.writer is not None:
            out["writer"] = dict(self.writer)
        return out

    def dumps(self) -> bytes:
        return json.dumps(self.to_json(), indent=2, sort_keys=True).encode() + b"\n"

    @classmethod
    def loads(cls, raw: bytes, where: str) -> Manifest:
        """Parse a stored manifest, checking every field by type and range before
        anything uses it (it is not authenticated yet: its MAC needs the data key).
        Any problem is an IntegrityError (exit 6) with one line naming the field."""
        try:
            return cls._checked(validate.load_json_object(raw, "manifest"))
        except validate.FieldError as exc:
            raise IntegrityError(f"{where}: manifest is malformed: {exc}") from None
        except IntegrityError as exc:
            raise IntegrityError(f"{where}: {exc}") from None

    @classmethod
    def _checked(cls, data: dict[str, Any]) -> Manifest:
        fmt = validate.integer(data.get("format"), "format", lo=1, hi=2**31)
        if fmt > MANIFEST_FORMAT:
            raise IntegrityError(
                f"manifest format {fmt} is newer than this vault-dr supports; upgrade vault-dr"
            )
        validate.obj(data, "", required=_MANIFEST_REQUIRED, allowed=_MANIFEST_FIELDS)
        recipients = data["recipients"]
        if not isinstance(recipients, list):
            raise validate.FieldError("recipients", "must be a list")
        if not 1 <= len(recipients) <= MAX_RECIPIENTS:
            raise validate.FieldError("recipients", f"must hold 1..{MAX_RECIPIENTS} stanzas")
        return cls(
            format=fmt,
            cluster=validate.text(data["cluster"], "cluster", max_len=63, pattern=_CLUSTER_RE),
            backup_id=_backup_id(data["backup_id"]),
            created_at=validate.iso_utc(data["created_at"], "created_at"),
            completed_at=validate.iso_utc(data["completed_at"], "completed_at"),
            tool_version=validate.text(
                data["tool_version"], "tool_version", max_len=64, ascii_only=True
            ),
            vault=validate.scalar_map(data["vault"], "vault"),
            snapshot=ObjectRecord.from_json(data["snapshot"], "snapshot"),
            snapshot_info=validate.scalar_map(
                data["snapshot_info"], "snapshot_info", checks=_SNAPSHOT_INFO_CHECKS
            ),
            catalog=ObjectRecord.from_json(data["catalog"], "catalog"),
            catalog_counts={
                k: validate.integer(v, f"catalog_counts.{k}")
                for k, v in validate.obj(data["catalog_counts"], "catalog_counts").items()
            },
            encryption=validate.scalar_map(
                data["encryption"], "encryption", checks=_ENCRYPTION_CHECKS
            ),
            recipients=[Stanza.from_json(s, f"recipients[{i}]") for i, s in enumerate(recipients)],
            mac=validate.hex64(data["mac"], "mac"),
            writer=_writer(data.get("writer")),
            vault_seal=_seal(data.get("vault_seal")),
        )

    def compute_mac(self, data_key: bytes) -> str:
        key = HKDF(
            algorithm=hashes.SHA256(), length=32, salt=None, info=b"vault-dr manifest v1"
        ).derive(data_key)
        canonical = json.dumps(self._body(), sort_keys=True, separators=(",", ":")).encode()
        return hmac.new(key, canonical, hashlib.sha256).hexdigest()

    def sign(self, key: WriterKey) -> None:
        """Sign the MAC'd body and the MAC with the backup job's writer key (after seal)."""
        self.writer = key.sign(self._body(), self.mac)

    def check_writer(self, pinned: Sequence[bytes]) -> None:
        """Refuse a manifest no pinned writer key signed (dr/crypto/writer.py)."""
        verify_signature(self.writer, self._body(), self.mac, pinned, self.backup_id)

    def seal(self, data_key: bytes) -> None:
        self.mac = self.compute_mac(data_key)

    def check_mac(self, data_key: bytes) -> None:
        if not hmac.compare_digest(self.mac, self.compute_mac(data_key)):
            raise IntegrityError(
                f"manifest of backup {self.backup_id} does not authenticate: it was altered "
                "after the backup; do not restore it before finding out why"
            )
