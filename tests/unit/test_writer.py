"""The writer signature (dr/crypto/writer.py): what it covers, what it refuses."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from dr.config import parse_config
from dr.crypto import writer
from dr.errors import ConfigError, IntegrityError, UsageError

BODY = {"backup_id": "20261201T000000Z-abcdef", "cluster": "prod", "snapshot": {"size": 1}}
MAC = "ab" * 32


def make(tmp_path: Path) -> tuple[writer.WriterKey, bytes, str]:
    public_text = writer.generate_writer_key(tmp_path / "w.key")
    key = writer.read_writer_key(tmp_path / "w.key")
    return key, writer.parse_public(public_text), public_text


def test_sign_and_verify_and_every_tamper(tmp_path: Path) -> None:
    key, public, public_text = make(tmp_path)
    assert public_text.startswith("vdrw1") and key.public == public
    assert "hidden" in repr(key)
    sig = key.sign(BODY, MAC)
    assert sig["alg"] == "ed25519" and sig["key_id"] == writer.key_id(public)
    writer.verify_signature(sig, BODY, MAC, [public], "b")
    with pytest.raises(IntegrityError, match="does not verify"):
        writer.verify_signature(sig, {**BODY, "cluster": "other"}, MAC, [public], "b")
    with pytest.raises(IntegrityError, match="does not verify"):
        writer.verify_signature(sig, BODY, "cd" * 32, [public], "b")  # the MAC is signed
    with pytest.raises(IntegrityError, match="no writer signature"):
        writer.verify_signature(None, BODY, MAC, [public], "b")
    (tmp_path / "o").mkdir()
    other, _, _ = make(tmp_path / "o")
    with pytest.raises(IntegrityError, match="not the pinned"):
        writer.verify_signature(other.sign(BODY, MAC), BODY, MAC, [public], "b")
    forged = {**sig, "sig": other.sign(BODY, MAC)["sig"]}
    with pytest.raises(IntegrityError, match="does not verify"):
        writer.verify_signature(forged, BODY, MAC, [public], "b")
    for bad in ({**sig, "alg": "rsa"}, {**sig, "sig": 5}, {**sig, "sig": "!!"}):
        with pytest.raises(IntegrityError):
            writer.verify_signature(bad, BODY, MAC, [public], "b")


def test_key_file_is_private_and_never_overwritten(tmp_path: Path) -> None:
    make(tmp_path)
    path = tmp_path / "w.key"
    assert path.stat().st_mode & 0o777 == 0o600
    assert "VDR-WRITER-KEY-1:" in path.read_text()
    with pytest.raises(FileExistsError):
        writer.generate_writer_key(path)
    os.chmod(path, 0o644)
    with pytest.raises(UsageError, match="readable by others"):
        writer.read_writer_key(path)
    os.chmod(path, 0o600)
    path.write_text("# nothing\nVDR-WRITER-KEY-1:notbase64!\n")
    with pytest.raises(UsageError, match="damaged"):
        writer.read_writer_key(path)


def test_public_key_strings() -> None:
    with pytest.raises(ValueError, match="writer public key"):
        writer.parse_public("vdr1qqqq")
    public = bytes(range(32))
    text = writer.format_public(public)
    assert writer.parse_public(text.upper()) == public
    broken = text[:-1] + ("q" if text[-1] != "q" else "p")
    with pytest.raises(ValueError):
        writer.parse_public(broken)


def config(writer_section: dict[str, Any]) -> Any:
    data = {
        "cluster": "prod",
        "storage": {"type": "file", "path": "/x"},
        "encryption": {
            "recipients": [{"type": "keyfile", "path": "k"}],
            "writer": writer_section,
        },
    }
    return parse_config(data, "dr.yaml", Path("/etc/dr"), {})


def test_config_pins_the_public_key() -> None:
    public = bytes(range(32))
    enc = config({"public_key": writer.format_public(public), "key_file": "w.key"}).encryption
    assert enc.writer_public == public and enc.writer_key_file == Path("/etc/dr/w.key")
    with pytest.raises(ConfigError, match=r"encryption\.writer\.public_key"):
        config({"public_key": "vdrw1nope"})
    with pytest.raises(ConfigError, match=r"encryption\.writer\.public_key': is required"):
        config({"key_file": "w.key"})


# On-disk format: these bytes must not change silently (Ed25519 is deterministic).
GOLDEN_PUBLIC = "vdrw1qwss00lnecgtu8tsm5vwwj7qn9n7f43snwjs6hcamjrxgyj4xxuq8p957y"
GOLDEN_SIG = {
    "alg": "ed25519",
    "key_id": "56475aa75463474c",
    "sig": "oMamGbic3EQkk76cnRY/gy7ADkqx7v720e9+qTG6o3HkVyn9zNWe"
    "nuSfNFBGNQdYfCqbJCaTC5nXf0eUTnBMAw==",
}
GOLDEN_BODY = {"backup_id": "20261126T060000Z-3f9a1c", "cluster": "prod", "format": 1}


def test_golden_signature_vector() -> None:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = writer.WriterKey(Ed25519PrivateKey.from_private_bytes(bytes(range(32))), "golden")
    assert writer.format_public(key.public) == GOLDEN_PUBLIC
    assert key.sign(GOLDEN_BODY, "ab" * 32) == GOLDEN_SIG
    assert writer.signed_bytes(GOLDEN_BODY, "ab" * 32) == (
        b"vault-dr manifest signature v1\n"
        b'{"body":{"backup_id":"20261126T060000Z-3f9a1c","cluster":"prod","format":1},'
        b'"mac":"' + b"ab" * 32 + b'"}'
    )
    writer.verify_signature(
        GOLDEN_SIG, GOLDEN_BODY, "ab" * 32, [writer.parse_public(GOLDEN_PUBLIC)], "golden"
    )


def test_the_reference_decryptor_checks_the_golden_signature() -> None:
    import importlib.util

    path = Path(__file__).resolve().parents[2] / "tools" / "vdr-decrypt.py"
    spec = importlib.util.spec_from_file_location("vdr_decrypt_writer", path)
    assert spec is not None and spec.loader is not None
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    manifest = {**GOLDEN_BODY, "mac": "ab" * 32, "recipients": [], "writer": GOLDEN_SIG}
    tool.check_writer(manifest, GOLDEN_PUBLIC)  # accepts
    with pytest.raises(SystemExit):
        tool.check_writer({**manifest, "cluster": "other"}, GOLDEN_PUBLIC)


def test_previous_keys_are_trusted_for_opening_only() -> None:
    current, old = bytes(range(32)), bytes(range(1, 33))
    enc = config(
        {
            "public_key": writer.format_public(current),
            "previous_public_keys": [writer.format_public(old)],
        }
    ).encryption
    assert enc.writer_trusted == (current, old)
    assert config({"public_key": writer.format_public(current)}).encryption.writer_previous == ()
