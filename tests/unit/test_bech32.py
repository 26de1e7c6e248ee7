"""Bech32 against the test vectors of BIP-173, and the single-error locator."""

from __future__ import annotations

import os

import pytest

from dr.crypto import bech32

# BIP-173, "Test vectors": valid Bech32 strings.
VALID = [
    "A12UEL5L",
    "a12uel5l",
    "an83characterlonghumanreadablepartthatcontainsthenumber1andtheexcludedcharactersbio1tt5tgs",
    "abcdef1qpzry9x8gf2tvdw0s3jn54khce6mua7lmqqqxw",
    "11" + "q" * 82 + "c8247j",  # 90 characters: the longest allowed
    "split1checkupstagehandshakeupstreamerranterredcaperred2y9e3w",
    "?1ezyfcl",
]

# BIP-173, "Test vectors": invalid Bech32 strings, with the reason the BIP gives.
INVALID = [
    "\x201nwldj5",  # HRP character out of range
    "\x7f1axkwrx",  # HRP character out of range
    "\x801eym55h",  # HRP character out of range
    # overall max length exceeded
    "an84characterslonghumanreadablepartthatcontainsthenumber1andtheexcludedcharactersbio1569pvx",
    "pzry9x0s0muk",  # no separator character
    "1pzry9x0s0muk",  # empty HRP
    "x1b4n0q5v",  # invalid data character
    "li1dgmt3",  # too short checksum
    "de1lg7wt\xff",  # invalid character in checksum
    "A1G7SGD8",  # checksum calculated with uppercase form of HRP
    "10a06t8",  # empty HRP
    "1qzzfhee",  # empty HRP
]


@pytest.mark.parametrize("text", VALID)
def test_bip173_valid_strings_decode_and_reencode(text: str) -> None:
    hrp, data = bech32.decode5(text)
    assert bech32.encode5(hrp, data) == text.lower()


@pytest.mark.parametrize("text", INVALID)
def test_bip173_invalid_strings_are_refused(text: str) -> None:
    with pytest.raises(bech32.Bech32Error):
        bech32.decode5(text)


def test_bip173_segwit_address_payload() -> None:
    # BIP-173: BC1QW508D6QEJXTDG4Y5R3ZARVARY0C5XW7KV8F3T4 is witness version 0 with this
    # 20-byte program; checks convertbits against the BIP.
    hrp, data = bech32.decode5("BC1QW508D6QEJXTDG4Y5R3ZARVARY0C5XW7KV8F3T4")
    assert hrp == "bc" and data[0] == 0
    program = bytes(bech32.convertbits(data[1:], 5, 8, pad=False))
    assert program.hex() == "751e76e8199196d454941c45d1b3a323f1433bd6"
    assert bech32.encode5("bc", [0, *bech32.convertbits(program, 8, 5, pad=True)]) == (
        "bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4"
    )


def test_bytes_round_trip_and_non_zero_padding_refused() -> None:
    payload = os.urandom(32)
    text = bech32.encode("vdr", payload)
    assert bech32.decode(text) == ("vdr", payload)
    assert bech32.decode(text.upper()) == ("vdr", payload)
    with pytest.raises(bech32.Bech32Error, match="mixed"):
        bech32.decode(text[:10] + text[10:].upper())
    # 52 symbols carry 260 bits: the last 4 must be zero for a 32-byte payload.
    values = bech32.convertbits(payload, 8, 5, pad=True)
    values[-1] |= 1
    with pytest.raises(bech32.Bech32Error, match="padding"):
        bech32.decode(bech32.encode5("vdr", values))


def test_every_single_substitution_is_located() -> None:
    hrp, data = "vdr-secret-key-", bech32.convertbits(os.urandom(32), 8, 5, pad=True)
    full = data + bech32.create_checksum(hrp, data)
    assert bech32.verify_checksum(hrp, full)
    assert bech32.locate_single_error(hrp, full) is None
    for pos in range(len(full)):
        for value in range(32):
            if value == full[pos]:
                continue
            typo = list(full)
            typo[pos] = value
            assert not bech32.verify_checksum(hrp, typo)
            assert bech32.locate_single_error(hrp, typo) == pos


def test_two_wrong_symbols_are_detected_but_not_located() -> None:
    hrp, data = "vdr-secret-key-", bech32.convertbits(os.urandom(32), 8, 5, pad=True)
    full = data + bech32.create_checksum(hrp, data)
    for first, second in [(0, 1), (3, 40), (20, 57)]:
        typo = list(full)
        typo[first] ^= 1
        typo[second] ^= 7
        assert not bech32.verify_checksum(hrp, typo)
        assert bech32.locate_single_error(hrp, typo) is None
