"""Plain typed settings of the crypto layer (the `encryption:` section of dr.yaml).

`dr.config` parses YAML into these; nothing in `dr.crypto` reads the application config.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class RecipientConfig:
    """One recipient of the data key. `options` holds the type's own validated keys."""

    type: str
    name: str
    options: Mapping[str, Any]
    where: str


@dataclass(frozen=True)
class EncryptionConfig:
    recipients: tuple[RecipientConfig, ...]
    frame_size: int = 1 << 20
    require_offline: bool = False
    # encryption.writer: the pinned public key (every host that opens backups) and the
    # private key file (the backup host only). dr/crypto/writer.py.
    writer_public: bytes | None = None
    writer_key_file: Path | None = None
    # Keys a rotation replaced: backups they signed are still accepted (opening only).
    writer_previous: tuple[bytes, ...] = ()
    # Explicitly accept unsigned backups (and make them): a migration or lab setting.
    allow_unsigned: bool = False

    @property
    def writer_trusted(self) -> tuple[bytes, ...] | None:
        """Every writer key a backup may be signed by; None when none is pinned."""
        if self.writer_public is None:
            return None
        return (self.writer_public, *self.writer_previous)
