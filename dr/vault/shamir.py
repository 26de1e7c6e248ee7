"""Shamir's secret sharing over GF(2^8), in Vault's and OpenBao's share format.

Why the unseal path needs it: after a forced restore OpenBao keeps the seal
configuration of the node's OLD cluster cached in memory (`defaultSeal.config`; only a
successful unseal or a process restart refreshes it, docs/facts.md). A throwaway
initialized 1-of-1 then asks for ONE whole 32-byte key, while the source cluster's
keys are 33-byte shares of a 3-of-5 split; a 5-of-3 target asks for 3 shares of a
source that needs 2. The node can only be unsealed by giving it what it asks for, so
`dr.vault.seal` combines the source shares into the key (as the server itself would)
and splits that key again into exactly the shares the node's reported threshold
needs. The key exists only in memory, as the shares did.

Share format (Vault `shamir/shamir.go`, the same in OpenBao): share = y bytes || x,
one byte of x (1..255) at the end; each byte of the secret is the constant term of
its own random polynomial of degree threshold-1; combining is Lagrange interpolation
at 0. Field arithmetic is GF(2^8) with the AES polynomial x^8+x^4+x^3+x+1.

Why hand-written: no maintained Python library reads this exact format (the x tag at
the end); the arithmetic is a few lines, and tests/unit/test_shamir.py checks it
against shares made by a real OpenBao.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence

_POLY = 0x11B  # x^8 + x^4 + x^3 + x + 1


def _build_tables() -> tuple[list[int], list[int]]:
    exp = [0] * 510
    log = [0] * 256
    value = 1
    for power in range(255):
        exp[power] = value
        log[value] = power
        # multiply by the generator 3 (x + 1)
        value ^= value << 1
        if value & 0x100:
            value ^= _POLY
    for power in range(255, 510):
        exp[power] = exp[power - 255]
    return exp, log


_EXP, _LOG = _build_tables()


def _mul(a: int, b: int) -> int:
    if a == 0 or b == 0:
        return 0
    return _EXP[_LOG[a] + _LOG[b]]


def _div(a: int, b: int) -> int:
    if b == 0:
        raise ZeroDivisionError("division by zero in GF(2^8)")
    if a == 0:
        return 0
    return _EXP[(_LOG[a] - _LOG[b]) % 255]


def combine(shares: Sequence[bytes]) -> bytes:
    """The secret from `shares` (each y || x). Any number of shares at or above the
    threshold gives the secret; fewer (or a wrong one) give an unrelated value, which
    only the server can tell apart."""
    if len(shares) < 2:
        raise ValueError("combining needs at least two shares")
    length = len(shares[0])
    if length < 2 or any(len(share) != length for share in shares):
        raise ValueError("shares must have the same length, at least two bytes")
    xs = [share[-1] for share in shares]
    if 0 in xs or len(set(xs)) != len(xs):
        raise ValueError("shares must have distinct, non-zero x coordinates")
    # Lagrange basis at 0 for each share: prod_j (0 - x_j) / (x_i - x_j); '-' is XOR.
    basis = []
    for i, xi in enumerate(xs):
        term = 1
        for j, xj in enumerate(xs):
            if i != j:
                term = _mul(term, _div(xj, xi ^ xj))
        basis.append(term)
    secret = bytearray(length - 1)
    for index in range(length - 1):
        value = 0
        for share, weight in zip(shares, basis, strict=True):
            value ^= _mul(share[index], weight)
        secret[index] = value
    return bytes(secret)


def split(secret: bytes, parts: int, threshold: int) -> list[bytes]:
    """`parts` shares of `secret`, any `threshold` of which combine to it (2..255)."""
    if not 2 <= threshold <= parts <= 255:
        raise ValueError("need 2 <= threshold <= parts <= 255")
    if not secret:
        raise ValueError("cannot split an empty secret")
    shares = [bytearray(len(secret)) + bytes([x]) for x in range(1, parts + 1)]
    for index, byte in enumerate(secret):
        coefficients = [byte] + [secrets.randbelow(256) for _ in range(threshold - 1)]
        while coefficients[-1] == 0:  # the degree must be exactly threshold-1
            coefficients[-1] = secrets.randbelow(256)
        for share in shares:
            x = share[-1]
            value = 0
            for coefficient in reversed(coefficients):  # Horner
                value = _mul(value, x) ^ coefficient
            share[index] = value
    return [bytes(share) for share in shares]


def on_polynomial(shares: Sequence[bytes], share: bytes) -> bool:
    """Whether `share` lies on the polynomial through `shares` (at the threshold): used
    to name the keys of a file that are not shares of the key that opened the node."""
    x = share[-1]
    if x in {s[-1] for s in shares}:
        return share in shares
    xs = [s[-1] for s in shares]
    for index in range(len(share) - 1):
        value = 0
        for i, xi in enumerate(xs):
            weight = 1
            for j, xj in enumerate(xs):
                if i != j:
                    weight = _mul(weight, _div(x ^ xj, xi ^ xj))
            value ^= _mul(shares[i][index], weight)
        if value != share[index]:
            return False
    return True
