"""Keyfile recipient, data-key wrapping across recipients, and the manifest MAC."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from dr.crypto.keyfile import KeyfileRecipient, generate_keyfile, read_keyfile
from dr.crypto.recipients import Stanza, WrapContext, new_data_key, unwrap_data_key
from dr.errors import IntegrityError, KeyAccessError, UsageError
from dr.manifest import Manifest, ObjectRecord, new_backup_id

CTX = WrapContext("prod", "20261126T060000Z-3f9a1c")
OTHER = WrapContext("prod", "20261126T120000Z-aaaaaa")


@pytest.fixture
def keyfile(tmp_path: Path) -> KeyfileRecipient:
    path = tmp_path / "a.key"
    generate_keyfile(path)
    return KeyfileRecipient("a", path)


def test_keyfile_is_private_and_not_overwritten(tmp_path: Path) -> None:
    path = tmp_path / "k.key"
    key_id = generate_keyfile(path)
    assert key_id.startswith("kf-")
    assert path.stat().st_mode & 0o777 == 0o600
    assert len(read_keyfile(path)) == 32
    with pytest.raises(UsageError, match="refusing to overwrite"):
        generate_keyfile(path)
    os.chmod(path, 0o644)
    with pytest.raises(UsageError, match="chmod 600"):
        read_keyfile(path)


def test_keyfile_wrap_unwrap_is_bound_to_the_backup(keyfile: KeyfileRecipient) -> None:
    key, stanzas = new_data_key([keyfile], CTX)
    assert len(key) == 32 and [s.type for s in stanzas] == ["keyfile"]
    assert unwrap_data_key(stanzas, [keyfile], CTX)[0] == key
    # Copied into another backup's manifest, the stanza does not open.
    with pytest.raises(IntegrityError, match="does not authenticate"):
        unwrap_data_key(stanzas, [keyfile], OTHER)


def test_any_one_recipient_suffices(tmp_path: Path, keyfile: KeyfileRecipient) -> None:
    generate_keyfile(tmp_path / "b.key")
    other = KeyfileRecipient("b", tmp_path / "b.key")
    key, stanzas = new_data_key([keyfile, other], CTX)
    assert unwrap_data_key(stanzas, [other], CTX) == (key, stanzas[1])


def test_no_matching_recipient_says_what_the_backup_needs(
    tmp_path: Path, keyfile: KeyfileRecipient
) -> None:
    _, stanzas = new_data_key([keyfile], CTX)
    generate_keyfile(tmp_path / "c.key")
    stranger = KeyfileRecipient("c", tmp_path / "c.key")
    with pytest.raises(KeyAccessError, match="wrapped for: keyfile:a"):
        unwrap_data_key(stanzas, [stranger], CTX)


def test_tampered_stanza_fails(keyfile: KeyfileRecipient) -> None:
    _, stanzas = new_data_key([keyfile], CTX)
    body = dict(stanzas[0].body)
    body["wrapped"] = body["wrapped"][:-4] + ("AAAA" if body["wrapped"][-4:] != "AAAA" else "BBBB")
    bad = Stanza("keyfile", "a", stanzas[0].key_id, body)
    with pytest.raises(IntegrityError):
        unwrap_data_key([bad], [keyfile], CTX)


def manifest() -> Manifest:
    record = ObjectRecord("k", "v1", "prod/x/snapshot", 10, "a" * 64, 40, "b" * 64)
    return Manifest(
        cluster="prod",
        backup_id=new_backup_id(),
        created_at="2026-11-26T06:00:00Z",
        completed_at="2026-11-26T06:00:09Z",
        tool_version="0.1.0",
        vault={"product": "openbao"},
        snapshot=record,
        snapshot_info={"raft_index": 7},
        catalog=record,
        catalog_counts={"secrets": 3},
        encryption={"frame_size": 1 << 20},
        recipients=[Stanza("keyfile", "a", "kf-1", {"nonce": "x"})],
    )


def test_manifest_mac_detects_changes_but_not_rewrap() -> None:
    key = os.urandom(32)
    m = manifest()
    m.seal(key)
    again = Manifest.loads(m.dumps(), "m")
    again.check_mac(key)
    again.recipients.append(Stanza("keyfile", "b", "kf-2", {}))  # rewrap: allowed
    again.check_mac(key)
    again.snapshot_info["raft_index"] = 8
    with pytest.raises(IntegrityError, match="altered"):
        again.check_mac(key)
    with pytest.raises(IntegrityError):
        Manifest.loads(m.dumps(), "m").check_mac(os.urandom(32))


def test_manifest_refuses_newer_format_and_garbage() -> None:
    raw = manifest().dumps().replace(b'"format": 1', b'"format": 9')
    with pytest.raises(IntegrityError, match="upgrade vault-dr"):
        Manifest.loads(raw, "m")
    with pytest.raises(IntegrityError, match="malformed"):
        Manifest.loads(b"{}", "m")
