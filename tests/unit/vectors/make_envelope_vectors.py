"""Write envelope_v1.json, the golden vectors of envelope format v1 (docs/format.md).

Run once, review, commit. These bytes are an on-disk format: they must never change
silently. Regenerating them is only right when the format version changes, and then
the result goes to a NEW file (envelope_v2.json); v1 stays, because old backups stay.

    python tests/unit/vectors/make_envelope_vectors.py [--force]

The inputs are fixed (key, salt, context, plaintext patterns); the intermediate values
(keys, commitment, AAD) are computed here with the primitives directly, so the file
also serves an implementer in another language.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import sys
from pathlib import Path

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from dr.crypto.envelope import encrypt_bytes

OUT = Path(__file__).with_name("envelope_v1.json")

DATA_KEY = bytes(range(0x00, 0x20))
SALT = bytes(range(0x80, 0xA0))
SNAPSHOT = "prod/20261126T060000Z-3f9a1c/snapshot"
CATALOG = "prod/20261126T060000Z-3f9a1c/catalog"


def pattern(n: int) -> bytes:
    return bytes((i * 7 + 3) % 256 for i in range(n))


CASES = [
    ("empty", SNAPSHOT, 4096, b""),
    ("ten-bytes", SNAPSHOT, 4096, b"0123456789"),
    ("two-full-frames", SNAPSHOT, 4096, pattern(2 * 4096)),
    ("two-and-a-half-frames", SNAPSHOT, 4096, pattern(2 * 4096 + 2048)),
    ("default-frame-size-catalog", CATALOG, 1 << 20, b'{"paths": 0}'),
]


def build() -> dict[str, object]:
    okm = HKDF(algorithm=hashes.SHA256(), length=64, salt=SALT, info=b"vault-dr envelope v1")
    keys = okm.derive(DATA_KEY)
    enc_key, commit_key = keys[:32], keys[32:]
    vectors = []
    for name, context, frame_size, plaintext in CASES:
        ciphertext = encrypt_bytes(plaintext, DATA_KEY, context, frame_size=frame_size, salt=SALT)
        header_len = 7 + 1 + 1 + 32 + 2 + len(context.encode()) + 32
        header = ciphertext[:header_len]
        assert hmac.compare_digest(
            header[-32:], hmac.new(commit_key, header[:-32], hashlib.sha256).digest()
        )
        vectors.append(
            {
                "name": name,
                "data_key": DATA_KEY.hex(),
                "salt": SALT.hex(),
                "context": context,
                "frame_size": frame_size,
                "plaintext": plaintext.hex(),
                "enc_key": enc_key.hex(),
                "commit_key": commit_key.hex(),
                "header": header.hex(),
                "aad": hashlib.sha256(header).hexdigest(),
                "ciphertext": ciphertext.hex(),
                "ciphertext_sha256": hashlib.sha256(ciphertext).hexdigest(),
            }
        )
    return {
        "format": "vault-dr envelope v1",
        "spec": "docs/format.md",
        "note": "On-disk format: these bytes must not change silently. All binary fields are hex.",
        "vectors": vectors,
    }


def main() -> int:
    if OUT.exists() and "--force" not in sys.argv[1:]:
        print(f"{OUT} exists; the format is frozen. Use --force only if you know why.")
        return 1
    OUT.write_text(json.dumps(build(), indent=2) + "\n")
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
