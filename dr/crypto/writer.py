"""The writer signature: proof that the backup job wrote a backup (docs/keys.md).

Why: the manifest MAC is keyed from the data key, and an x25519 recipient can be
wrapped by anyone who holds its public key (every manifest shows it). So anyone with
write access to the bucket could build a complete, "authentic" backup of a Vault of
their own, which a break-glass restore would force over the real cluster. A signature
by a key only the backup job holds closes that: bucket write access and public keys do
not give it.

- The writer key is Ed25519. Its private half lives with the backup job (a 0600 file
  made by `dr keygen --writer`); its public half `vdrw1...` (Bech32) is pinned in the
  config of every host that opens backups, and printed in the break-glass kit.
- The signature covers the manifest's MAC'd body AND its MAC, as canonical JSON
  (sorted keys, no spaces), prefixed with a domain string. The recipients list stays
  outside (so `dr rewrap` needs no writer key), and since the MAC is signed, a bucket
  writer cannot swap it for one under a key of their own stanza.
- Stored in the manifest as `writer: {"alg": "ed25519", "key_id", "sig"}`; `key_id` is
  the first 8 bytes of SHA-256 of the public key, in hex, to name the key in errors.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import stat
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from dr.crypto import bech32
from dr.errors import IntegrityError, UsageError

PUBLIC_HRP = "vdrw"
ALG = "ed25519"
DOMAIN = b"vault-dr manifest signature v1\n"
_FILE_HEADER = "# vault-dr writer key (Ed25519): keep it with the backup job only, mode 0600\n"
_SECRET_PREFIX = "VDR-WRITER-KEY-1:"  # noqa: S105 - a format prefix, not a secret


def format_public(public: bytes) -> str:
    return bech32.encode(PUBLIC_HRP, public)


def parse_public(text: str) -> bytes:
    """The 32-byte key of a `vdrw1...` string; ValueError naming what is wrong."""
    try:
        hrp, payload = bech32.decode(text.strip().lower())
    except ValueError as exc:
        raise ValueError(f"not a writer public key (vdrw1...): {exc}") from None
    if hrp != PUBLIC_HRP or len(payload) != 32:
        raise ValueError("not a writer public key: expected vdrw1... from `dr keygen --writer`")
    return payload


def key_id(public: bytes) -> str:
    return hashlib.sha256(public).digest()[:8].hex()


def signed_bytes(body: Mapping[str, Any], mac: str) -> bytes:
    """What the signature covers: the MAC'd manifest body and the MAC itself."""
    canonical = json.dumps({"body": body, "mac": mac}, sort_keys=True, separators=(",", ":"))
    return DOMAIN + canonical.encode()


class WriterKey:
    """The private half, for `dr backup` (and nothing else). Never printed."""

    def __init__(self, private: Ed25519PrivateKey, source: str) -> None:
        self._private = private
        self.source = source
        self.public = private.public_key().public_bytes_raw()

    def __repr__(self) -> str:
        return f"WriterKey(<hidden>, public={format_public(self.public)})"

    def sign(self, body: Mapping[str, Any], mac: str) -> dict[str, str]:
        sig = self._private.sign(signed_bytes(body, mac))
        return {"alg": ALG, "key_id": key_id(self.public), "sig": base64.b64encode(sig).decode()}


def generate_writer_key(path: Path) -> str:
    """Write a new writer key to `path` (0600, never overwriting); its public string."""
    private = Ed25519PrivateKey.generate()
    seed = private.private_bytes_raw()
    text = _FILE_HEADER + _SECRET_PREFIX + base64.b64encode(seed).decode() + "\n"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    return format_public(private.public_key().public_bytes_raw())


def read_writer_key(path: Path) -> WriterKey:
    try:
        mode = path.stat().st_mode
        text = path.read_text()
    except OSError as exc:
        raise UsageError(f"cannot read the writer key {path}: {exc.strerror}") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise UsageError(f"the writer key {path} is readable by others; run: chmod 600 {path}")
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.startswith("#")]
    if len(lines) != 1 or not lines[0].startswith(_SECRET_PREFIX):
        raise UsageError(f"{path} is not a vault-dr writer key (dr keygen --writer)")
    try:
        seed = base64.b64decode(lines[0][len(_SECRET_PREFIX) :], validate=True)
        private = Ed25519PrivateKey.from_private_bytes(seed)
    except (ValueError, binascii.Error):
        raise UsageError(f"{path} holds a damaged writer key") from None
    return WriterKey(private, str(path))


def verify_signature(
    writer: Mapping[str, Any] | None,
    body: Mapping[str, Any],
    mac: str,
    pinned: Sequence[bytes],
    backup_id: str,
) -> None:
    """Refuse a manifest not signed by one of the pinned writer keys (IntegrityError,
    exit 6). `pinned`: the current key first, then keys a rotation replaced."""
    names = ", ".join(format_public(p) for p in pinned)
    if not writer:
        raise IntegrityError(
            f"backup {backup_id} carries no writer signature, but encryption.writer pins "
            f"{names}: it was not written by the backup job (or predates the writer key); "
            "do not restore it before finding out why"
        )
    sig_text = writer.get("sig")
    if writer.get("alg") != ALG or not isinstance(sig_text, str):
        raise IntegrityError(f"backup {backup_id}: the writer signature is malformed")
    by_id = {key_id(p): p for p in pinned}
    public = by_id.get(str(writer.get("key_id")))
    if public is None:
        raise IntegrityError(
            f"backup {backup_id} is signed by writer key {str(writer.get('key_id'))[:16]!r}, "
            f"not the pinned {', '.join(by_id)}: it was not written by this backup job"
        )
    try:
        sig = base64.b64decode(sig_text, validate=True)
        Ed25519PublicKey.from_public_bytes(public).verify(sig, signed_bytes(body, mac))
    except (InvalidSignature, ValueError, binascii.Error):
        raise IntegrityError(
            f"backup {backup_id}: the writer signature does not verify: the manifest was "
            "altered or forged; do not restore it before finding out why"
        ) from None
