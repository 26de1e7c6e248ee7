#!/usr/bin/env python3
"""Reference decryptor for vault-dr backups: Python 3.11+ and `cryptography` only.

  python3 vdr-decrypt.py --identity ID --manifest manifest.json snapshot.enc out.snap

ID: the x25519 identity file from dr keygen, or a file with the key typed as printed
("-": stdin). Checks the key's checksum, the manifest MAC, every frame, the object's
context and its sha256s; the output (created 0600) is removed if any check fails.
Specs: docs/format.md (envelope), docs/manifest.md, docs/keys.md (x25519 stanza).
"""

import argparse
import base64
import contextlib
import hashlib
import hmac
import json
import os
import sys
from collections.abc import Iterator
from typing import Any, BinaryIO

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

CHARSET = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"  # Bech32, BIP-173
GENERATOR = (0x3B6A57B2, 0x26508E6D, 0x1EA119FA, 0x3D4233DD, 0x2A1462B3)
KEY_PREFIX = "vdrsecretkey1"  # VDR-SECRET-KEY-1 without its dashes
SIG_DOMAIN = b"vault-dr manifest signature v1\n"


def polymod(hrp: str, data: list[int]) -> int:
    chk = 1
    for v in [ord(c) >> 5 for c in hrp] + [0] + [ord(c) & 31 for c in hrp] + data:
        top, chk = chk >> 25, (chk & 0x1FFFFFF) << 5 ^ v
        for i, g in enumerate(GENERATOR):
            chk ^= g if (top >> i) & 1 else 0
    return chk


def regroup(data: bytes | list[int], frombits: int, tobits: int) -> list[int]:
    """BIP-173's convertbits: leftover bits are padded with zeros (8 -> 5) or dropped."""
    acc = bits = 0
    out = []
    for v in data:
        acc, bits = (acc << frombits) | v, bits + frombits
        while bits >= tobits:
            bits -= tobits
            out.append((acc >> bits) & ((1 << tobits) - 1))
    if bits and tobits < frombits:
        out.append((acc << (tobits - bits)) & ((1 << tobits) - 1))
    return out


def read_identity(path: str) -> X25519PrivateKey:
    with sys.stdin if path == "-" else open(path) as fh:
        lines = [ln for ln in fh.read().splitlines() if not ln.lstrip().startswith("#")]
    key = "".join("".join(lines).split()).replace("-", "").lower()
    if key.startswith(KEY_PREFIX):
        key = key[len(KEY_PREFIX) :]
    if len(key) != 58 or any(c not in CHARSET for c in key):
        sys.exit("not a vault-dr identity: VDR-SECRET-KEY-1 and 58 characters (no 1, B, I, O)")
    data = [CHARSET.index(c) for c in key]
    if polymod("vdr-secret-key-", data) != 1:
        sys.exit("the checksum caught a mistyped character in the key; check the paper copy")
    return X25519PrivateKey.from_private_bytes(bytes(regroup(data[:-6], 5, 8)))


def recipient_of(public: bytes) -> str:
    data = regroup(public, 8, 5)
    mod = polymod("vdr", data + [0] * 6) ^ 1
    checksum = [(mod >> 5 * (5 - i)) & 31 for i in range(6)]
    return "vdr1" + "".join(CHARSET[d] for d in data + checksum)


def unwrap(identity: X25519PrivateKey, manifest: dict[str, Any]) -> Iterator[bytes]:
    """Every key the manifest's x25519 stanzas for this identity hold (docs/keys.md): the
    caller keeps the first the MAC accepts, so a planted stanza cannot block a restore."""
    public = identity.public_key().public_bytes_raw()
    mine = recipient_of(public)
    stanzas = [s for s in manifest["recipients"] if s["type"] == "x25519" and s["key_id"] == mine]
    if not stanzas:
        sys.exit(f"this backup has no x25519 stanza for {mine}")
    aad = f"vault-dr wrap v1\ncluster={manifest['cluster']}\nbackup={manifest['backup_id']}\n"
    for stanza in stanzas:
        with contextlib.suppress(Exception):  # a broken stanza: try the next one
            epk, nonce, wrapped = (base64.b64decode(stanza[k]) for k in ("epk", "nonce", "wrapped"))
            shared = identity.exchange(X25519PublicKey.from_public_bytes(epk))
            kek = HKDF(hashes.SHA256(), 32, epk + public, b"vault-dr x25519 v1").derive(shared)
            yield AESGCM(kek).decrypt(nonce, wrapped, aad.encode())


def mac_ok(manifest: dict[str, Any], data_key: bytes) -> bool:
    body = {k: v for k, v in manifest.items() if k not in ("recipients", "mac", "writer")}
    key = HKDF(hashes.SHA256(), 32, None, b"vault-dr manifest v1").derive(data_key)
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
    mac = hmac.new(key, canonical, hashlib.sha256).hexdigest()
    return hmac.compare_digest(mac, str(manifest.get("mac", "")))


def check_writer(manifest: dict[str, Any], writer: str) -> None:
    """The backup job's Ed25519 signature over {"body", "mac"} (docs/keys.md)."""
    hrp, _, data = writer.strip().lower().rpartition("1")
    values = [CHARSET.index(c) for c in data]
    if hrp != "vdrw" or polymod(hrp, values) != 1:
        sys.exit("--writer is not a writer public key (vdrw1...)")
    public = bytes(regroup(values[:-6], 5, 8))
    body = {k: v for k, v in manifest.items() if k not in ("recipients", "mac", "writer")}
    signed = json.dumps({"body": body, "mac": manifest.get("mac")}, sort_keys=True, separators=",:")
    try:
        sig = base64.b64decode(manifest["writer"]["sig"])
        Ed25519PublicKey.from_public_bytes(public).verify(sig, SIG_DOMAIN + signed.encode())
    except Exception:
        sys.exit("the manifest is not signed by that writer key: do not restore it")


def decrypt_envelope(
    src: BinaryIO, dst: BinaryIO, data_key: bytes, context: str | None = None
) -> tuple[str, str]:
    """Envelope v1 (docs/format.md), one frame at a time; returns the sha256 hex digests
    of the ciphertext and the plaintext. InvalidTag: a frame failed authentication."""
    fixed = src.read(43)
    if fixed[:8] != b"VAULTDR\x01" or len(fixed) < 43 or not 12 <= fixed[8] <= 24:
        raise ValueError("not a vault-dr envelope v1")
    rest = src.read(int.from_bytes(fixed[41:43], "big") + 32)
    header = fixed + rest
    okm = HKDF(hashes.SHA256(), 64, fixed[9:41], b"vault-dr envelope v1").derive(data_key)
    commitment = hmac.new(okm[32:], header[:-32], hashlib.sha256).digest()
    if not hmac.compare_digest(commitment, header[-32:]):
        raise ValueError("wrong data key, or the header is corrupted")
    if context is not None and rest[:-32] != context.encode():
        raise ValueError(f"the object is {rest[:-32]!r}, not {context!r}")
    aead, aad, wire = AESGCM(okm[:32]), hashlib.sha256(header).digest(), (1 << fixed[8]) + 16
    ct_sha, pt_sha = hashlib.sha256(header), hashlib.sha256()
    current, i = src.read(wire), 0
    while True:  # a frame is the final one when nothing follows it (STREAM)
        following = src.read(wire) if len(current) == wire else b""
        last = not following
        if last and (len(current) < 16 or (i > 0 and len(current) == 16)):
            raise ValueError("truncated envelope")
        plain = aead.decrypt(i.to_bytes(11, "big") + bytes([last]), current, aad)
        ct_sha.update(current)
        pt_sha.update(plain)
        dst.write(plain)
        if last:
            return ct_sha.hexdigest(), pt_sha.hexdigest()
        current, i = following, i + 1


def main() -> None:
    ap = argparse.ArgumentParser(description="Decrypt a vault-dr backup object.")
    ap.add_argument("--identity", required=True, help="identity file, or - for stdin")
    ap.add_argument("--manifest", required=True, help="the backup's manifest.json")
    ap.add_argument("--writer", help="the pinned writer public key (vdrw1...): check it first")
    ap.add_argument("--object", default="snapshot", choices=("snapshot", "catalog"))
    ap.add_argument("input", help="the downloaded snapshot.enc (or catalog.enc)")
    ap.add_argument("output", help="where to write the plaintext (created 0600)")
    args = ap.parse_args()
    with open(args.manifest) as fh:
        manifest = json.load(fh)
    if args.writer:
        check_writer(manifest, args.writer)
    good = (k for k in unwrap(read_identity(args.identity), manifest) if mac_ok(manifest, k))
    data_key = next(good, None)
    if data_key is None:
        sys.exit("the manifest's MAC does not verify under any stanza: it was altered")
    record = manifest[args.object]
    if os.path.lexists(args.output):
        sys.exit(f"{args.output} exists; refusing to overwrite it")
    fd = os.open(args.output, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with open(args.input, "rb") as src, os.fdopen(fd, "wb") as dst:
            sums = decrypt_envelope(src, dst, data_key, record["context"])
        if sums != (record["ciphertext_sha256"], record["plaintext_sha256"]):
            raise ValueError("the object is not the one the manifest names (sha256 differs)")
    except Exception as exc:
        os.unlink(args.output)
        sys.exit(f"decryption failed, {args.output} removed: {type(exc).__name__} {exc}")
    print(f"{args.output}: {record['plaintext_size']} bytes of backup {manifest['backup_id']}")


if __name__ == "__main__":
    main()
