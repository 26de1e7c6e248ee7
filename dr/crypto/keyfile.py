"""`keyfile` recipient: a 256-bit key in a local file (dev, demo, simple setups).

File format: the base64 of 32 random bytes on one line; lines starting with '#' are
comments. Make one with `dr keyfile-gen FILE` (or `head -c 32 /dev/urandom | base64`).

Wrapping: AES-256-GCM under a key-encryption key derived from the file's key with
HKDF-SHA256 (info "vault-dr keyfile wrap v1"), a random 96-bit nonce, and the
WrapContext as associated data, so a stanza only opens in the backup it was made for.
"""

from __future__ import annotations

import base64
import hashlib
import os
import stat
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from dr.crypto.settings import RecipientConfig
from dr.crypto.wrapping import Stanza, WrapContext, b64d, b64e, register
from dr.errors import IntegrityError, KeyAccessError, UsageError

KEY_SIZE = 32
_HEADER = "# vault-dr keyfile: keep it secret; anyone holding it can decrypt these backups\n"


class NotAKeyFile(UsageError):
    """The file is not a vault-dr key file (raw bytes, other text, a short key)."""


def generate_keyfile(path: Path) -> str:
    """Write a new key file (mode 0600, refusing to overwrite); return its key id."""
    key = os.urandom(KEY_SIZE)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise UsageError(f"{path} already exists; refusing to overwrite a key file") from None
    with os.fdopen(fd, "w") as fh:
        fh.write(_HEADER + base64.b64encode(key).decode() + "\n")
    return key_id_of(key)


def key_id_of(key: bytes) -> str:
    return "kf-" + hashlib.sha256(b"vault-dr keyfile id\0" + key).hexdigest()[:16]


def read_keyfile(path: Path) -> bytes:
    try:
        raw = path.read_bytes()
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise KeyAccessError(f"key file {path} does not exist") from None
    except OSError as exc:
        raise KeyAccessError(f"cannot read key file {path}: {exc.strerror}") from None
    try:
        text = raw.decode("ascii")
        lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.startswith("#")]
        key = base64.b64decode("".join(lines), validate=True)
    except ValueError:  # UnicodeDecodeError too: raw bytes, not the base64 text
        key = b""
    if len(key) != KEY_SIZE:
        # A usage error, not a key-access one: the file is the wrong kind of file.
        raise NotAKeyFile(
            f"key file {path} is not a vault-dr key file: expected one line of base64 "
            f"holding {KEY_SIZE} bytes (raw bytes or other text are refused); make one "
            "with: head -c 32 /dev/urandom | base64 > FILE && chmod 600 FILE"
        )
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        # Refuse rather than warn: a world-readable key file makes the encryption moot.
        raise UsageError(f"key file {path} is readable by others; run: chmod 600 {path}")
    return key


def _kek(key: bytes) -> AESGCM:
    derived = HKDF(
        algorithm=hashes.SHA256(), length=32, salt=None, info=b"vault-dr keyfile wrap v1"
    ).derive(key)
    return AESGCM(derived)


class KeyfileRecipient:
    type_name = "keyfile"
    offline = True

    def __init__(self, name: str, path: Path) -> None:
        self.name = name
        self.path = path
        self._key: bytes | None = None

    def describe(self) -> str:
        return f"keyfile {self.path}"

    def _load(self) -> bytes:
        if self._key is None:
            self._key = read_keyfile(self.path)
        return self._key

    @property
    def key_id(self) -> str:
        return key_id_of(self._load())

    def generate(self, context: WrapContext) -> None:
        return None

    def wrap(self, data_key: bytes, context: WrapContext) -> Stanza:
        nonce = os.urandom(12)
        wrapped = _kek(self._load()).encrypt(nonce, data_key, context.as_bytes())
        return Stanza(
            "keyfile", self.name, self.key_id, {"nonce": b64e(nonce), "wrapped": b64e(wrapped)}
        )

    def matches(self, stanza: Stanza) -> bool:
        if stanza.type != "keyfile":
            return False
        try:
            return stanza.key_id == self.key_id
        except KeyAccessError:
            # Unreadable key file: let unwrap() report it with the cause.
            return True

    def unwrap(self, stanza: Stanza, context: WrapContext) -> bytes:
        nonce = b64d(stanza.body.get("nonce", ""), "keyfile stanza nonce")
        wrapped = b64d(stanza.body.get("wrapped", ""), "keyfile stanza key")
        try:
            return _kek(self._load()).decrypt(nonce, wrapped, context.as_bytes())
        except (InvalidTag, ValueError):  # ValueError: a nonce of a length AES-GCM refuses
            raise IntegrityError(
                f"the keyfile stanza in backup {context.backup_id} does not authenticate "
                "(wrong key file, or the manifest was altered or copied from another backup)"
            ) from None


@register("keyfile")
def _factory(config: RecipientConfig) -> KeyfileRecipient:
    return KeyfileRecipient(config.name, Path(config.options["path"]))
