"""Bech32 (BIP-173): the checksummed text form of the x25519 keys `dr keygen` makes.

Why Bech32: the private key is printed on paper and may one day be typed back by a
person under stress. Bech32's BCH code detects every error in up to four characters of
a string of at most 90 (so any single mistyped character, always), its 32-letter
alphabet leaves out the look-alikes 1, b, i and o, and it is case-insensitive. age uses
the same encoding for its keys (AGE-SECRET-KEY-1...).

Why written here rather than imported: the reference implementation on PyPI (`bech32`
1.2.0) has not been released since 2020 and is the same forty lines as below; a
dependency for forty lines of a frozen specification is a supply-chain risk with no
gain. This module is a direct transcription of BIP-173, checked against its test
vectors (tests/unit/test_bech32.py), plus `locate_single_error`, which tells the user
WHERE the single mistyped character is. BIP-173 advises against correcting errors
automatically, so it only names the position; the user retypes the character.

Only Bech32 (constant 1) is implemented, not Bech32m (BIP-350). Bech32's weakness (a
'q' inserted or deleted before a final 'p' can go undetected) cannot hurt fixed-length
keys: the length is checked before the checksum.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence

CHARSET = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"
_VALUES = {c: i for i, c in enumerate(CHARSET)}
_GENERATOR = (0x3B6A57B2, 0x26508E6D, 0x1EA119FA, 0x3D4233DD, 0x2A1462B3)
CHECKSUM_LENGTH = 6
MAX_LENGTH = 90  # BIP-173: the detection guarantees hold up to this length


class Bech32Error(ValueError):
    """Not a valid Bech32 string; the message says why."""


def polymod(values: Iterable[int], chk: int = 1) -> int:
    """BIP-173's checksum function. Linear over GF(2) in (chk, values)."""
    for v in values:
        top = chk >> 25
        chk = (chk & 0x1FFFFFF) << 5 ^ v
        for i, g in enumerate(_GENERATOR):
            if (top >> i) & 1:
                chk ^= g
    return chk


def hrp_expand(hrp: str) -> list[int]:
    return [ord(c) >> 5 for c in hrp] + [0] + [ord(c) & 31 for c in hrp]


def verify_checksum(hrp: str, data: Sequence[int]) -> bool:
    """`hrp` in lower case; `data` the 5-bit values including the 6 checksum symbols."""
    return polymod(hrp_expand(hrp) + list(data)) == 1


def create_checksum(hrp: str, data: Sequence[int]) -> list[int]:
    mod = polymod(hrp_expand(hrp) + list(data) + [0] * CHECKSUM_LENGTH) ^ 1
    return [(mod >> 5 * (5 - i)) & 31 for i in range(CHECKSUM_LENGTH)]


def encode5(hrp: str, data: Sequence[int]) -> str:
    """Encode 5-bit values (checksum appended) as a lower-case Bech32 string."""
    hrp = hrp.lower()
    combined = list(data) + create_checksum(hrp, data)
    return hrp + "1" + "".join(CHARSET[d] for d in combined)


def decode5(text: str) -> tuple[str, list[int]]:
    """Decode a Bech32 string into (hrp in lower case, 5-bit data without checksum)."""
    if any(ord(c) < 33 or ord(c) > 126 for c in text):
        raise Bech32Error("characters outside the printable US-ASCII range")
    if text.lower() != text and text.upper() != text:
        raise Bech32Error("mixed upper and lower case")
    if len(text) > MAX_LENGTH:
        raise Bech32Error(f"longer than {MAX_LENGTH} characters")
    text = text.lower()
    pos = text.rfind("1")
    if pos < 1:
        raise Bech32Error("no human-readable part before the separator '1'")
    if pos + 1 + CHECKSUM_LENGTH > len(text):
        raise Bech32Error("too short for a checksum")
    hrp, rest = text[:pos], text[pos + 1 :]
    bad = [c for c in rest if c not in _VALUES]
    if bad:
        raise Bech32Error(f"character {bad[0]!r} is not in the Bech32 alphabet")
    data = [_VALUES[c] for c in rest]
    if not verify_checksum(hrp, data):
        raise Bech32Error("checksum mismatch")
    return hrp, data[:-CHECKSUM_LENGTH]


def convertbits(data: Iterable[int], frombits: int, tobits: int, *, pad: bool) -> list[int]:
    """Regroup bits (BIP-173's convertbits). Without `pad`, leftover bits must be zero."""
    acc = bits = 0
    out: list[int] = []
    maxv = (1 << tobits) - 1
    for value in data:
        if value < 0 or value >> frombits:
            raise Bech32Error(f"value {value} does not fit in {frombits} bits")
        acc = (acc << frombits) | value
        bits += frombits
        while bits >= tobits:
            bits -= tobits
            out.append((acc >> bits) & maxv)
    if pad:
        if bits:
            out.append((acc << (tobits - bits)) & maxv)
    elif bits >= frombits or ((acc << (tobits - bits)) & maxv):
        raise Bech32Error("non-zero padding bits")
    return out


def encode(hrp: str, payload: bytes) -> str:
    """Bytes -> lower-case Bech32 string."""
    return encode5(hrp, convertbits(payload, 8, 5, pad=True))


def decode(text: str) -> tuple[str, bytes]:
    """Bech32 string -> (hrp in lower case, bytes)."""
    hrp, data = decode5(text)
    return hrp, bytes(convertbits(data, 5, 8, pad=False))


@functools.lru_cache(maxsize=8)
def _single_error_syndromes(length: int) -> dict[int, int]:
    """For a data part of `length` symbols (checksum included): the syndrome of every
    one-symbol error -> its position. The checksum is linear over GF(2), so an error
    pattern's syndrome does not depend on the hrp or on the data it hits."""
    table: dict[int, int] = {}
    for pos in range(length):
        for delta in range(1, 32):
            syndrome = polymod([delta] + [0] * (length - 1 - pos), chk=0)
            table[syndrome] = -1 if table.get(syndrome, pos) != pos else pos
    return table


def locate_single_error(hrp: str, data: Sequence[int]) -> int | None:
    """The position (0-based, in `data`) of the one wrong symbol, if exactly one symbol
    is wrong; None when the checksum holds or no single substitution explains it.

    For strings of at most 90 characters Bech32's code has a minimum distance of 5, so
    a one-symbol error has a unique syndrome: the answer is then certain. With two or
    three wrong symbols no single substitution matches (the answer is None).
    """
    syndrome = polymod(hrp_expand(hrp) + list(data)) ^ 1
    if syndrome == 0:
        return None
    pos = _single_error_syndromes(len(data)).get(syndrome, -1)
    return pos if pos >= 0 else None
