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
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from dr.crypto.recipients import Stanza
from dr.errors import IntegrityError

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

    def _body(self) -> dict[str, Any]:
        body = asdict(self)
        body.pop("recipients")
        body.pop("mac")
        return body

    def to_json(self) -> dict[str, Any]:
        return {
            **self._body(),
            "recipients": [s.to_json() for s in self.recipients],
            "mac": self.mac,
        }

    def dumps(self) -> bytes:
        return json.dumps(self.to_json(), indent=2, sort_keys=True).encode() + b"\n"

    @classmethod
    def loads(cls, raw: bytes, where: str) -> Manifest:
        try:
            data = json.loads(raw)
            if not isinstance(data, dict):
                raise ValueError("not an object")
            fmt = int(data.get("format", 0))
            if fmt > MANIFEST_FORMAT:
                raise IntegrityError(
                    f"{where}: manifest format {fmt} is newer than this vault-dr supports; "
                    "upgrade vault-dr"
                )
            return cls(
                format=fmt,
                cluster=data["cluster"],
                backup_id=data["backup_id"],
                created_at=data["created_at"],
                completed_at=data["completed_at"],
                tool_version=data["tool_version"],
                vault=dict(data["vault"]),
                snapshot=ObjectRecord(**data["snapshot"]),
                snapshot_info=dict(data["snapshot_info"]),
                catalog=ObjectRecord(**data["catalog"]),
                catalog_counts=dict(data["catalog_counts"]),
                encryption=dict(data["encryption"]),
                recipients=[Stanza.from_json(s) for s in data["recipients"]],
                mac=str(data.get("mac", "")),
            )
        except IntegrityError:
            raise
        except (ValueError, KeyError, TypeError) as exc:
            raise IntegrityError(f"{where}: manifest is malformed ({exc!s:.100})") from None

    def compute_mac(self, data_key: bytes) -> str:
        key = HKDF(
            algorithm=hashes.SHA256(), length=32, salt=None, info=b"vault-dr manifest v1"
        ).derive(data_key)
        canonical = json.dumps(self._body(), sort_keys=True, separators=(",", ":")).encode()
        return hmac.new(key, canonical, hashlib.sha256).hexdigest()

    def seal(self, data_key: bytes) -> None:
        self.mac = self.compute_mac(data_key)

    def check_mac(self, data_key: bytes) -> None:
        if not hmac.compare_digest(self.mac, self.compute_mac(data_key)):
            raise IntegrityError(
                f"manifest of backup {self.backup_id} does not authenticate: it was altered "
                "after the backup; do not restore it before finding out why"
            )
