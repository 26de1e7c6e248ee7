"""Shamir over GF(2^8) in Vault's share format, and choosing unseal key candidates.

The arithmetic is checked here by its properties (any threshold of shares gives the
secret back, fewer do not) and by a known product in the AES field; that it matches
OpenBao's own shares is checked against a real server in
tests/integration/test_thresholds.py (a 5/3 cluster's shares unseal 1/1 and 5/3 nodes).
"""

from __future__ import annotations

import base64
import itertools
import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dr.errors import UsageError
from dr.vault import shamir
from dr.vault.seal import SourceKey, UnsealKeys, candidate_keys


def test_field_is_the_aes_field() -> None:
    assert shamir._mul(0x57, 0x83) == 0xC1  # FIPS-197 §4.2
    assert shamir._mul(0x57, 0x13) == 0xFE
    for a in range(1, 256):
        assert shamir._mul(a, shamir._div(1, a)) == 1


@settings(max_examples=40, deadline=None)
@given(
    secret=st.binary(min_size=1, max_size=40),
    threshold=st.integers(min_value=2, max_value=6),
    extra=st.integers(min_value=0, max_value=3),
)
def test_any_threshold_of_shares_gives_the_secret(
    secret: bytes, threshold: int, extra: int
) -> None:
    shares = shamir.split(secret, threshold + extra, threshold)
    assert all(len(s) == len(secret) + 1 for s in shares)
    assert len({s[-1] for s in shares}) == len(shares)  # distinct x
    for group in itertools.combinations(shares, threshold):
        assert shamir.combine(list(group)) == secret
    assert shamir.combine(shares) == secret  # more than the threshold works too
    assert all(shamir.on_polynomial(shares[:threshold], s) for s in shares)


def test_fewer_than_the_threshold_do_not() -> None:
    secret = os.urandom(32)
    shares = shamir.split(secret, 5, 3)
    assert shamir.combine(shares[:2]) != secret
    assert not shamir.on_polynomial(shares[:3], bytes(33)[:-1] + bytes([9]))


def test_bad_input_is_refused() -> None:
    share = shamir.split(b"k" * 32, 3, 2)
    with pytest.raises(ValueError):
        shamir.combine(share[:1])
    with pytest.raises(ValueError):
        shamir.combine([share[0], share[0]])
    with pytest.raises(ValueError):
        shamir.combine([share[0], share[1][:-2]])
    with pytest.raises(ValueError):
        shamir.split(b"k", 2, 3)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def test_candidates_all_shares_first_then_smaller_groups() -> None:
    secret = os.urandom(32)
    shares = shamir.split(secret, 5, 3)
    wrong = shamir.split(os.urandom(32), 5, 3)[2]
    keys = UnsealKeys(tuple(b64(s) for s in [*shares[:2], wrong, *shares[3:]]), "f.json")
    candidates = list(candidate_keys(keys))
    assert candidates[0][1] == (1, 2, 3, 4, 5) and candidates[0][0] != secret
    found = [used for key, used in candidates if key == secret]
    assert found and 3 not in found[0]  # the group without the wrong share
    assert len(candidates) <= 64


def test_whole_keys_and_bad_files() -> None:
    key = os.urandom(32)
    assert list(candidate_keys(UnsealKeys((b64(key), key.hex()), "f"))) == [(key, (1,))]
    share = shamir.split(os.urandom(32), 3, 2)[0]
    with pytest.raises(UsageError, match="one share"):
        list(candidate_keys(UnsealKeys((b64(share),), "f")))
    with pytest.raises(UsageError, match="different kinds"):
        list(candidate_keys(UnsealKeys((b64(share), b64(key)), "f")))
    with pytest.raises(UsageError, match="key 2 in f is neither"):
        list(candidate_keys(UnsealKeys((b64(key), "not a key!"), "f")))


def test_source_key_is_split_for_what_the_node_asks() -> None:
    key = os.urandom(32)
    source = SourceKey(key, "f")
    assert source.shares(1) == [b64(key)]
    three = [base64.b64decode(s) for s in source.shares(3)]
    assert len(three) == 3 and shamir.combine(three) == key
    assert "hidden" in repr(source) and key.hex() not in repr(source)
