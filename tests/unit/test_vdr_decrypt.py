"""tools/vdr-decrypt.py, the standalone reference decryptor, against the golden vectors
and against backups written by vault-dr's own code. (A real backup restored by the real
`bao` is in tests/integration/test_keys.py.)"""

from __future__ import annotations

import hashlib
import importlib.util
import io
import json
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from cryptography.exceptions import InvalidTag

from dr.crypto.envelope import encrypt_bytes
from dr.crypto.recipients import WrapContext, new_data_key
from dr.crypto.x25519 import X25519Identity, X25519Recipient, write_identity
from dr.manifest import Manifest, ObjectRecord
from tests.unit.test_x25519 import VECTOR, VECTOR_DATA_KEY

ROOT = Path(__file__).resolve().parents[2]
TOOL = ROOT / "tools" / "vdr-decrypt.py"
VECTORS = json.loads((Path(__file__).parent / "vectors" / "envelope_v1.json").read_text())


def load_tool() -> ModuleType:
    spec = importlib.util.spec_from_file_location("vdr_decrypt", TOOL)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


tool = load_tool()


def test_tool_is_small_and_needs_only_cryptography() -> None:
    source = TOOL.read_text()
    # small enough to read in an emergency (every stanza tried, MAC and writer checked)
    assert len(source.splitlines()) <= 200
    imports = {
        line.split()[1].split(".")[0]
        for line in source.splitlines()
        if line.startswith(("import ", "from "))
    }
    assert imports <= {
        "argparse",
        "base64",
        "collections",
        "contextlib",
        "hashlib",
        "hmac",
        "json",
        "os",
        "sys",
        "typing",
        "cryptography",
    }


@pytest.mark.parametrize("vector", VECTORS["vectors"], ids=[v["name"] for v in VECTORS["vectors"]])
def test_golden_envelope_vectors(vector: dict[str, str]) -> None:
    out = io.BytesIO()
    ct_sha, pt_sha = tool.decrypt_envelope(
        io.BytesIO(bytes.fromhex(vector["ciphertext"])),
        out,
        bytes.fromhex(vector["data_key"]),
        vector["context"],
    )
    assert out.getvalue() == bytes.fromhex(vector["plaintext"])
    assert ct_sha == vector["ciphertext_sha256"]
    assert pt_sha == hashlib.sha256(bytes.fromhex(vector["plaintext"])).hexdigest()


def test_damaged_envelopes_fail() -> None:
    vector = next(v for v in VECTORS["vectors"] if v["name"] == "two-and-a-half-frames")
    blob, key = bytes.fromhex(vector["ciphertext"]), bytes.fromhex(vector["data_key"])
    for index in (0, 8, 20, 60, 120, 4200, len(blob) - 1):
        damaged = bytearray(blob)
        damaged[index] ^= 0x01
        with pytest.raises((ValueError, InvalidTag)):
            tool.decrypt_envelope(io.BytesIO(bytes(damaged)), io.BytesIO(), key)
    for cut in (10, 100, 112 + 4112, 112 + 2 * 4112, len(blob) - 1):
        with pytest.raises((ValueError, InvalidTag)):
            tool.decrypt_envelope(io.BytesIO(blob[:cut]), io.BytesIO(), key)
    with pytest.raises(ValueError, match="not 'prod/x/catalog'"):
        tool.decrypt_envelope(io.BytesIO(blob), io.BytesIO(), key, "prod/x/catalog")
    with pytest.raises(ValueError, match="wrong data key"):
        tool.decrypt_envelope(io.BytesIO(blob), io.BytesIO(), os.urandom(32))


def test_golden_x25519_vector(tmp_path: Path) -> None:
    path = tmp_path / "id"
    path.write_text(VECTOR["secret"])
    identity = tool.read_identity(str(path))
    assert tool.recipient_of(identity.public_key().public_bytes_raw()) == VECTOR["recipient"]
    manifest = {
        "cluster": "prod",
        "backup_id": "20261126T060000Z-3f9a1c",
        "recipients": [
            {"type": "keyfile", "name": "k", "key_id": "kf-1"},
            {"type": "x25519", "name": "bg", "key_id": VECTOR["recipient"]}
            | {k: VECTOR[k] for k in ("epk", "nonce", "wrapped")},
        ],
    }
    assert next(tool.unwrap(identity, manifest)) == VECTOR_DATA_KEY


def write_backup(tmp_path: Path, identity: X25519Identity) -> dict[str, Any]:
    """A backup as vault-dr writes it: objects encrypted by envelope.py, stanzas by
    x25519.py, manifest sealed by manifest.py."""
    backup_id = "20261126T060000Z-3f9a1c"
    recipient = X25519Recipient("bg", identity.public_key)
    data_key, stanzas = new_data_key([recipient], WrapContext("prod", backup_id))
    plain = {"snapshot": os.urandom(10_000), "catalog": b'{"secrets": []}'}
    records = {}
    for obj, data in plain.items():
        context = f"prod/{backup_id}/{obj}"
        blob = encrypt_bytes(data, data_key, context, frame_size=4096)
        (tmp_path / f"{obj}.enc").write_bytes(blob)
        records[obj] = ObjectRecord(
            f"p/prod/{backup_id}/{obj}.enc",
            "v1",
            context,
            len(data),
            hashlib.sha256(data).hexdigest(),
            len(blob),
            hashlib.sha256(blob).hexdigest(),
        )
    manifest = Manifest(
        cluster="prod",
        backup_id=backup_id,
        created_at="2026-11-26T06:00:00Z",
        completed_at="2026-11-26T06:00:09Z",
        tool_version="0.1.0",
        vault={"product": "openbao", "cluster_id": "c"},
        snapshot=records["snapshot"],
        snapshot_info={"raft_index": 7},
        catalog=records["catalog"],
        catalog_counts={"secrets": 0},
        encryption={"format": "vault-dr-envelope-v1", "frame_size": 4096},
        recipients=stanzas,
    )
    manifest.seal(data_key)
    (tmp_path / "manifest.json").write_bytes(manifest.dumps())
    return plain


def run_tool(
    tmp_path: Path, *args: str, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(TOOL), *args],
        capture_output=True,
        text=True,
        input=stdin,
        cwd=tmp_path,
        timeout=60,
    )


def test_decrypts_what_vault_dr_writes(tmp_path: Path) -> None:
    identity = X25519Identity.generate()
    write_identity(tmp_path / "bg.key", identity)
    plain = write_backup(tmp_path, identity)
    proc = run_tool(
        tmp_path, "--identity", "bg.key", "--manifest", "manifest.json", "snapshot.enc", "out.snap"
    )
    assert proc.returncode == 0, proc.stderr
    out = tmp_path / "out.snap"
    assert out.read_bytes() == plain["snapshot"]
    assert out.stat().st_mode & 0o777 == 0o600
    # The printed form typed on stdin; the catalog too.
    proc = run_tool(
        tmp_path,
        "--identity",
        "-",
        "--manifest",
        "manifest.json",
        "--object",
        "catalog",
        "catalog.enc",
        "catalog.json",
        stdin=identity.printed().lower() + "\n",
    )
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "catalog.json").read_bytes() == plain["catalog"]
    # Never over an existing file.
    proc = run_tool(
        tmp_path, "--identity", "bg.key", "--manifest", "manifest.json", "snapshot.enc", "out.snap"
    )
    assert proc.returncode != 0 and "exists; refusing to overwrite" in proc.stderr


def test_refuses_typos_altered_manifests_and_swapped_objects(tmp_path: Path) -> None:
    identity = X25519Identity.generate()
    write_backup(tmp_path, identity)
    secret = identity.secret_string
    typo = secret[:30] + ("Q" if secret[30] != "Q" else "P") + secret[31:]
    proc = run_tool(
        tmp_path, "--identity", "-", "--manifest", "manifest.json", "snapshot.enc", "o1", stdin=typo
    )
    assert proc.returncode != 0 and "checksum caught a mistyped character" in proc.stderr
    assert not (tmp_path / "o1").exists()

    manifest = json.loads((tmp_path / "manifest.json").read_text())
    manifest["snapshot_info"]["raft_index"] = 8
    (tmp_path / "altered.json").write_text(json.dumps(manifest))
    write_identity(tmp_path / "bg.key", identity)
    proc = run_tool(
        tmp_path, "--identity", "bg.key", "--manifest", "altered.json", "snapshot.enc", "o2"
    )
    assert proc.returncode != 0 and "MAC does not verify" in proc.stderr
    assert not (tmp_path / "o2").exists()

    proc = run_tool(
        tmp_path, "--identity", "bg.key", "--manifest", "manifest.json", "catalog.enc", "o3"
    )
    assert proc.returncode != 0 and "o3 removed" in proc.stderr
    assert not (tmp_path / "o3").exists()

    other = X25519Identity.generate()
    write_identity(tmp_path / "other.key", other)
    proc = run_tool(
        tmp_path, "--identity", "other.key", "--manifest", "manifest.json", "snapshot.enc", "o4"
    )
    assert proc.returncode != 0 and f"no x25519 stanza for {other.recipient}" in proc.stderr
