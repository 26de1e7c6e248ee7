"""What every recipient type shares: the wrap context, the stanza, the protocol, the
registry. The types (awskms, keyfile, transit, x25519) import this module to register
themselves; `dr.crypto.recipients` loads them and builds the configured ones.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from dr import validate
from dr.crypto.settings import RecipientConfig
from dr.errors import IntegrityError

DATA_KEY_SIZE = 32


@dataclass(frozen=True)
class WrapContext:
    cluster: str
    backup_id: str

    def as_mapping(self) -> dict[str, str]:
        """The context as KMS EncryptionContext (visible in CloudTrail)."""
        return {"vault-dr:cluster": self.cluster, "vault-dr:backup-id": self.backup_id}

    def as_bytes(self) -> bytes:
        """Canonical bytes for AEAD associated data."""
        return f"vault-dr wrap v1\ncluster={self.cluster}\nbackup={self.backup_id}\n".encode()


@dataclass(frozen=True)
class Stanza:
    """One wrapping of the data key, as stored in manifest.json. Holds no secret."""

    type: str
    name: str
    key_id: str
    body: Mapping[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"type": self.type, "name": self.name, "key_id": self.key_id, **self.body}

    @classmethod
    def from_json(cls, data: object, field: str = "recipient") -> Stanza:
        """Check a stored stanza's shape: `type`, `name` and `key_id` short ASCII
        strings, every other entry a bounded printable string (the type's unwrap checks
        its encoding and lengths). A FieldError (IntegrityError) names `field` and the
        entry; it never shows a value."""
        entries = validate.obj(data, field, required=_STANZA_FIELDS, max_keys=_STANZA_MAX_ENTRIES)
        type_ = validate.text(entries["type"], f"{field}.type", pattern=_STANZA_TYPE_RE)
        name = validate.text(entries["name"], f"{field}.name", pattern=_STANZA_NAME_RE)
        key_id = validate.text(
            entries["key_id"], f"{field}.key_id", max_len=_STANZA_KEY_ID_MAX, ascii_only=True
        )
        body = {
            k: validate.text(v, f"{field}.{k}", max_len=_STANZA_VALUE_MAX, allow_empty=True)
            for k, v in entries.items()
            if k not in _STANZA_FIELDS
        }
        return cls(type_, name, key_id, body)


_STANZA_FIELDS = frozenset({"type", "name", "key_id"})
_STANZA_MAX_ENTRIES = 16
_STANZA_TYPE_RE = re.compile(r"[a-z0-9][a-z0-9-]{0,31}")
_STANZA_NAME_RE = re.compile(r"[A-Za-z0-9._-]{1,128}")
_STANZA_KEY_ID_MAX = 2048
_STANZA_VALUE_MAX = 8192


class KeyWrapper(Protocol):
    """A recipient. `generate` may return None when the type cannot make keys."""

    type_name: str
    name: str
    offline: bool  # True when it needs no online service (break-glass)

    def describe(self) -> str: ...

    def wrap(self, data_key: bytes, context: WrapContext) -> Stanza: ...

    def unwrap(self, stanza: Stanza, context: WrapContext) -> bytes: ...

    def matches(self, stanza: Stanza) -> bool: ...

    def generate(self, context: WrapContext) -> tuple[bytes, Stanza] | None: ...


RecipientFactory = Callable[[RecipientConfig], KeyWrapper]
RECIPIENT_TYPES: dict[str, RecipientFactory] = {}


def register(type_name: str) -> Callable[[RecipientFactory], RecipientFactory]:
    def deco(factory: RecipientFactory) -> RecipientFactory:
        RECIPIENT_TYPES[type_name] = factory
        return factory

    return deco


def b64e(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def b64d(text: str, what: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (ValueError, TypeError):
        raise IntegrityError(f"{what} is not valid base64") from None
