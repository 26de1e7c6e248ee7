"""`--identity FILE`: open backups with an offline key the config does not (need to) name.

Two kinds of file are accepted, told apart by their content:
- an x25519 identity from `dr keygen` (or typed back with `dr keygen --from-printed`,
  or even typed by hand into a file: spaces, dashes and line breaks are ignored);
- a `keyfile` recipient's key file.

The resulting recipient matches stanzas by key, not by name, so it opens a backup
whatever name the recipient had in the config that made it.
"""

from __future__ import annotations

from pathlib import Path

from dr.crypto.keyfile import KeyfileRecipient, NotAKeyFile, read_keyfile
from dr.crypto.wrapping import KeyWrapper
from dr.crypto.x25519 import (
    SECRET_CHARS,
    SECRET_PREFIX,
    X25519Recipient,
    identity_text,
    read_identity,
)
from dr.errors import KeyAccessError, UsageError

IDENTITY_NAME = "identity"


def load_identity(path: Path) -> KeyWrapper:
    """The recipient for `--identity FILE`; UsageError (exit 2) when it is neither kind."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise UsageError(f"identity file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read identity file {path}: {exc}") from None
    compact = "".join(identity_text(text).split()).replace("-", "").upper()
    if compact.startswith(SECRET_PREFIX.replace("-", "")) or len(compact) == SECRET_CHARS:
        return X25519Recipient.from_identity(IDENTITY_NAME, read_identity(path), path)
    try:
        read_keyfile(path)
    except (KeyAccessError, NotAKeyFile):
        raise UsageError(
            f"{path} is neither an x25519 identity ({SECRET_PREFIX}..., from dr keygen) nor "
            "a vault-dr key file"
        ) from None
    return KeyfileRecipient(IDENTITY_NAME, path)
