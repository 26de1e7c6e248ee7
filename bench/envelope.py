"""Envelope throughput against raw AES-256-GCM over the same frames, in one process.

    python -m bench.envelope [--mib 256] [--runs 3]

The same plaintext (random, 1 MiB frames, --mib MiB in all) goes through:

  envelope encrypt  dr.crypto.envelope.EncryptingReader drained with readinto() into an
                    8 MiB buffer (how s3transfer reads a part): header, HKDF, per-frame
                    nonce and AAD, the frame copy and the two running SHA-256s included
  raw encrypt       AESGCM(key).encrypt(nonce, frame, aad) per 1 MiB frame (the nonce
                    and AAD built once per frame as the envelope does), nothing else
  envelope decrypt  dr.crypto.envelope.decrypt_stream over an in-memory envelope
                    (commitment check, then every frame authenticated)
  raw decrypt       AESGCM.decrypt per sealed frame

Prints one JSON object: MB/s (1 MB = 10^6 bytes) and CPU seconds per pass, medians
of --runs, and the envelope/raw ratios. The machine is shared: read medians.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cryptography.hazmat.primitives.ciphers.aead import AESGCM  # noqa: E402

from dr.crypto.envelope import EncryptingReader, decrypt_stream  # noqa: E402

FRAME = 1 << 20
READ = 8 << 20
CONTEXT = "bench/20260101T000000Z-bench/snapshot"


def _nonce(i: int, last: bool) -> bytes:
    return i.to_bytes(11, "big") + (b"\x01" if last else b"\x00")


def make_frames(mib: int) -> list[bytes]:
    """mib frames of 1 MiB: 16 distinct random frames, repeated (AES does not care)."""
    distinct = [os.urandom(FRAME) for _ in range(min(16, mib))]
    return [distinct[i % len(distinct)] for i in range(mib)]


def envelope_encrypt(frames: list[bytes], key: bytes) -> bytes:
    reader = EncryptingReader(iter(frames), key, CONTEXT, frame_size=FRAME)
    buf = bytearray(READ)
    out = io.BytesIO()
    while n := reader.readinto(buf):
        out.write(memoryview(buf)[:n])
    return out.getvalue()


def envelope_encrypt_discard(frames: list[bytes], key: bytes) -> int:
    reader = EncryptingReader(iter(frames), key, CONTEXT, frame_size=FRAME)
    buf = bytearray(READ)
    total = 0
    while n := reader.readinto(buf):
        total += n
    return total


def raw_encrypt(frames: list[bytes], key: bytes) -> list[bytes]:
    aead = AESGCM(key)
    aad = hashlib.sha256(b"header").digest()
    last = len(frames) - 1
    return [aead.encrypt(_nonce(i, i == last), f, aad) for i, f in enumerate(frames)]


def envelope_decrypt(envelope: bytes, key: bytes) -> int:
    return sum(len(p) for p in decrypt_stream(io.BytesIO(envelope), key, CONTEXT))


def raw_decrypt(sealed: list[bytes], key: bytes) -> int:
    aead = AESGCM(key)
    aad = hashlib.sha256(b"header").digest()
    last = len(sealed) - 1
    return sum(len(aead.decrypt(_nonce(i, i == last), c, aad)) for i, c in enumerate(sealed))


def timed(fn: Callable[[], object]) -> tuple[float, float]:
    cpu, wall = time.process_time(), time.perf_counter()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


def run(mib: int, runs: int) -> dict[str, object]:
    key = os.urandom(32)
    frames = make_frames(mib)
    envelope = envelope_encrypt(frames, key)
    sealed = raw_encrypt(frames, key)
    size = mib * FRAME
    cases: dict[str, Callable[[], object]] = {
        "envelope_encrypt": lambda: envelope_encrypt_discard(frames, key),
        "raw_encrypt": lambda: raw_encrypt(frames, key),
        "envelope_decrypt": lambda: envelope_decrypt(envelope, key),
        "raw_decrypt": lambda: raw_decrypt(sealed, key),
    }
    samples: dict[str, list[tuple[float, float]]] = {name: [] for name in cases}
    for _ in range(runs):  # interleaved, so drift hits every case alike
        for name, fn in cases.items():
            samples[name].append(timed(fn))
    out: dict[str, object] = {"bytes": size, "frame_bytes": FRAME, "runs": runs}
    for name, values in samples.items():
        wall = statistics.median(v[0] for v in values)
        out[name] = {
            "seconds": wall,
            "mb_per_s": size / 1e6 / wall,
            "cpu_s": statistics.median(v[1] for v in values),
            "runs_s": [v[0] for v in values],
        }

    def rate(name: str) -> float:
        return float(out[name]["mb_per_s"])  # type: ignore[index]

    out["ratio_encrypt"] = rate("envelope_encrypt") / rate("raw_encrypt")
    out["ratio_decrypt"] = rate("envelope_decrypt") / rate("raw_decrypt")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mib", type=int, default=256)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    print(json.dumps(run(args.mib, args.runs)))


if __name__ == "__main__":
    main()
