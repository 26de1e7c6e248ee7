"""Trust (issue 8): only the backup job's backups are accepted, `latest` never rolls back
silently, and a planted stanza cannot block the break-glass path.

The attacker holds write access to the bucket (here: the file store) and the public
keys every manifest shows, and runs the project's own code against a Vault of their
own. The victim's config pins the writer key (`encryption.writer.public_key`); the
backup host holds its private half.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from dr.crypto.x25519 import X25519Identity, X25519Recipient, write_identity
from dr.errors import ExitCode
from dr.manifest import new_backup_id
from tests.integration.drutil import (
    dr_json,
    keyfile_recipient,
    one_line_error,
    run_dr,
    write_config,
)

REPO = Path(__file__).resolve().parents[2]


def pin_writer(config: Path, public: str, key_file: Path | None) -> None:
    """Add `encryption.writer` to a config written by write_config()."""
    data = yaml.safe_load(config.read_text())
    data["encryption"]["writer"] = {"public_key": public}
    if key_file is not None:
        data["encryption"]["writer"]["key_file"] = str(key_file)
    config.write_text(yaml.safe_dump(data))


def keygen_writer(path: Path) -> str:
    proc = run_dr("keygen", "--writer", "--out", str(path))
    assert proc.returncode == 0, proc.stderr
    line = next(ln for ln in proc.stdout.splitlines() if "public_key:" in ln)
    return line.split("public_key:")[1].strip()


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, bao: Any) -> dict[str, Any]:
    tmp = tmp_path_factory.mktemp("trust")
    store = tmp / "store"
    identity = X25519Identity.generate()
    write_identity(tmp / "break-glass.key", identity)
    writer_public = keygen_writer(tmp / "writer.key")
    victim = write_config(
        tmp,
        addr=bao.addr,
        storage={"type": "file", "path": str(store)},
        recipients=[
            keyfile_recipient(tmp),
            {"type": "x25519", "name": "break-glass", "recipient": identity.recipient},
        ],
        name="victim.yaml",
        writer=False,
    )
    pin_writer(victim, writer_public, tmp / "writer.key")
    genuine = dr_json("backup", config=victim, token=bao.root_token)["backup_id"]
    manifest = json.loads((store / "prod" / genuine / "manifest.json").read_text())
    assert manifest["writer"]["alg"] == "ed25519"
    return {
        "tmp": tmp,
        "store": store,
        "victim": victim,
        "genuine": genuine,
        "identity": identity,
        "writer_public": writer_public,
    }


def private_world(world: dict[str, Any], tmp_path: Path) -> tuple[Path, Path]:
    """A copy of the store and a victim config pointing at it (tests damage stores)."""
    store = tmp_path / "store"
    shutil.copytree(world["store"], store)
    config = tmp_path / "victim.yaml"
    config.write_text(world["victim"].read_text().replace(str(world["store"]), str(store)))
    return config, store


def forge(world: dict[str, Any], store: Path, attacker_vault: Any, tmp_path: Path) -> str:
    """A complete backup of the attacker's own Vault, made with the project's code,
    wrapped for the victim's PUBLIC break-glass key, written into the victim's store."""
    attacker = write_config(
        tmp_path,
        addr=attacker_vault.addr,
        storage={"type": "file", "path": str(store)},
        recipients=[
            {"type": "x25519", "name": "break-glass", "recipient": world["identity"].recipient}
        ],
        name="attacker.yaml",
        writer=False,
    )
    data = yaml.safe_load(attacker.read_text())
    data["encryption"]["allow_unsigned"] = True  # the attacker has no writer key
    attacker.write_text(yaml.safe_dump(data))
    return str(dr_json("backup", config=attacker, token=attacker_vault.root_token)["backup_id"])


def test_a_forged_backup_is_refused_everywhere(
    world: dict[str, Any], fresh_bao: Any, tmp_path: Path
) -> None:
    config, store = private_world(world, tmp_path)
    forged = forge(world, store, fresh_bao, tmp_path)
    identity = str(world["tmp"] / "break-glass.key")
    # verify, with and without the break-glass identity
    for extra in ([], ["--identity", identity]):
        proc = run_dr("verify", "--backup", forged, *extra, config=config)
        line = one_line_error(proc)
        assert proc.returncode == ExitCode.INTEGRITY, line
        assert "no writer signature" in line
    # `latest` is the forged one by id: it refuses rather than fall back silently...
    proc = run_dr("verify", config=config)
    line = one_line_error(proc)
    assert proc.returncode == ExitCode.INTEGRITY and "--skip-unauthentic" in line
    # ...and with the flag uses the genuine one, saying so.
    proc = run_dr("verify", "--skip-unauthentic", config=config)
    assert proc.returncode == 0, proc.stderr
    assert world["genuine"] in proc.stdout and "skipped as unauthentic" in proc.stderr
    # restore: refused before the target is touched
    proc = run_dr(
        "restore",
        "--backup",
        forged,
        "--to",
        fresh_bao.addr,
        "--yes",
        "--no-verify",
        "--unseal-keys-file",
        str(tmp_path / "none.json"),
        "--identity",
        identity,
        config=config,
        token=fresh_bao.root_token,
    )
    assert proc.returncode == ExitCode.INTEGRITY, proc.stderr
    assert fresh_bao.seal_status()["sealed"] is False
    # drill: refused before any Vault starts
    proc = run_dr("drill", "--backup", forged, "--runtime", "process", config=config)
    assert proc.returncode == ExitCode.INTEGRITY, proc.stderr
    # the reference decryptor, given the pinned writer key
    manifest = store / "prod" / forged / "manifest.json"
    ref = subprocess.run(
        [
            sys.executable,
            str(REPO / "tools" / "vdr-decrypt.py"),
            "--identity",
            identity,
            "--writer",
            world["writer_public"],
            "--manifest",
            str(manifest),
            str(store / "prod" / forged / "snapshot.enc"),
            str(tmp_path / "out.snap"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert ref.returncode != 0 and "not signed by that writer key" in ref.stderr
    assert not (tmp_path / "out.snap").exists()


def test_a_backup_signed_by_another_writer_key_is_refused(
    world: dict[str, Any], fresh_bao: Any, tmp_path: Path
) -> None:
    config, store = private_world(world, tmp_path)
    other_public = keygen_writer(tmp_path / "attacker-writer.key")
    attacker = write_config(
        tmp_path,
        addr=fresh_bao.addr,
        storage={"type": "file", "path": str(store)},
        recipients=[{"type": "x25519", "name": "bg", "recipient": world["identity"].recipient}],
        name="attacker.yaml",
    )
    pin_writer(attacker, other_public, tmp_path / "attacker-writer.key")
    forged = dr_json("backup", config=attacker, token=fresh_bao.root_token)["backup_id"]
    proc = run_dr("verify", "--backup", forged, config=config)
    line = one_line_error(proc)
    assert proc.returncode == ExitCode.INTEGRITY and "not the pinned" in line


def test_a_manifest_copied_under_a_newer_id_is_refused(
    world: dict[str, Any], tmp_path: Path
) -> None:
    config, store = private_world(world, tmp_path)
    newer = new_backup_id()
    assert newer > world["genuine"]
    shutil.copytree(store / "prod" / world["genuine"], store / "prod" / newer)
    proc = run_dr("verify", "--backup", newer, config=config)
    line = one_line_error(proc)
    assert proc.returncode == ExitCode.INTEGRITY and "found at" in line
    proc = run_dr("verify", config=config)  # latest: refuses, no silent fallback
    line = one_line_error(proc)
    assert proc.returncode == ExitCode.INTEGRITY and newer in line
    listing = dr_json("list", config=config)
    assert [b["backup_id"] for b in listing["backups"]] == [world["genuine"]]
    assert any(u.startswith(newer) for u in listing["unreadable"])


def test_a_damaged_newest_manifest_stops_latest(world: dict[str, Any], tmp_path: Path) -> None:
    config, store = private_world(world, tmp_path)
    newer = new_backup_id()
    (store / "prod" / newer).mkdir()
    (store / "prod" / newer / "manifest.json").write_text('{"format": 1, "cluster": "prod"')
    proc = run_dr("verify", config=config)
    line = one_line_error(proc)
    assert proc.returncode == ExitCode.INTEGRITY and "--skip-unauthentic" in line
    proc = run_dr("verify", "--skip-unauthentic", config=config)
    assert proc.returncode == 0, proc.stderr
    assert "WARNING" in proc.stderr and newer in proc.stderr


def test_a_planted_stanza_does_not_block_the_break_glass_identity(
    world: dict[str, Any], tmp_path: Path
) -> None:
    config, store = private_world(world, tmp_path)
    path = store / "prod" / world["genuine"] / "manifest.json"
    manifest = json.loads(path.read_text())
    # A bucket writer wraps a key of their own for the same public key and puts it first.
    from dr.crypto.wrapping import WrapContext
    from dr.crypto.x25519 import parse_recipient

    public = parse_recipient(world["identity"].recipient)
    bogus = X25519Recipient("break-glass", public).wrap(
        b"\x01" * 32, WrapContext("prod", world["genuine"])
    )
    manifest["recipients"].insert(0, bogus.to_json())
    path.write_text(json.dumps(manifest))
    identity = str(world["tmp"] / "break-glass.key")
    proc = run_dr("verify", "--backup", world["genuine"], "--identity", identity, config=config)
    assert proc.returncode == 0, proc.stderr
    assert "hold a key that does not authenticate the manifest (planted" in proc.stderr
    # The reference decryptor does the same.
    ref = subprocess.run(
        [
            sys.executable,
            str(REPO / "tools" / "vdr-decrypt.py"),
            "--identity",
            identity,
            "--writer",
            world["writer_public"],
            "--manifest",
            str(path),
            str(path.parent / "snapshot.enc"),
            str(tmp_path / "out.snap"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert ref.returncode == 0, ref.stderr
    assert (tmp_path / "out.snap").stat().st_size > 0


def test_rewrap_keeps_the_signature(world: dict[str, Any], tmp_path: Path) -> None:
    """Recipients sit outside the signature: a rewrap needs no writer key and the
    rewrapped backup still verifies against the pinned key."""
    config, _ = private_world(world, tmp_path)
    data = yaml.safe_load(config.read_text())
    data["encryption"]["writer"].pop("key_file")  # a rewrap host without the private key
    data["encryption"]["recipients"].append(keyfile_recipient(tmp_path, name="second"))
    config.write_text(yaml.safe_dump(data))
    proc = run_dr("rewrap", "--backup", world["genuine"], "--add", "second", config=config)
    assert proc.returncode == 0, proc.stderr
    proc = run_dr("verify", "--backup", world["genuine"], config=config)
    assert proc.returncode == 0, proc.stderr


def test_writer_key_rotation(world: dict[str, Any], bao: Any, tmp_path: Path) -> None:
    """Rotate: a new key signs from now on; with the old one listed in
    previous_public_keys both generations open; without it the old backups are refused."""
    config, store = private_world(world, tmp_path)
    new_public = keygen_writer(tmp_path / "writer-2.key")
    data = yaml.safe_load(config.read_text())
    data["encryption"]["writer"] = {
        "public_key": new_public,
        "key_file": str(tmp_path / "writer-2.key"),
        "previous_public_keys": [world["writer_public"]],
    }
    config.write_text(yaml.safe_dump(data))
    fresh = dr_json("backup", config=config, token=bao.root_token)["backup_id"]
    manifest = json.loads((store / "prod" / fresh / "manifest.json").read_text())
    old = json.loads((store / "prod" / world["genuine"] / "manifest.json").read_text())
    assert manifest["writer"]["key_id"] != old["writer"]["key_id"]
    for backup_id in (fresh, world["genuine"]):
        proc = run_dr("verify", "--backup", backup_id, config=config)
        assert proc.returncode == 0, proc.stderr
    # Once the old key is dropped from the config, what it signed is no longer trusted.
    data["encryption"]["writer"].pop("previous_public_keys")
    config.write_text(yaml.safe_dump(data))
    proc = run_dr("verify", "--backup", world["genuine"], config=config)
    line = one_line_error(proc)
    assert proc.returncode == ExitCode.INTEGRITY and "not the pinned" in line
    assert run_dr("verify", "--backup", fresh, config=config).returncode == 0


def test_signing_is_the_default(world: dict[str, Any], bao: Any, tmp_path: Path) -> None:
    """No writer key configured: the backup refuses (and says how to make one); opening
    refuses too, unless --allow-unsigned, which names the unsigned backup."""
    store = tmp_path / "store"
    plain = write_config(
        tmp_path,
        addr=bao.addr,
        storage={"type": "file", "path": str(store)},
        recipients=[keyfile_recipient(tmp_path)],
        writer=False,
    )
    proc = run_dr("backup", config=plain, token=bao.root_token)
    line = one_line_error(proc)
    assert proc.returncode == ExitCode.USAGE and "dr keygen --writer" in line
    assert not store.exists() or not list(store.rglob("*.enc"))
    # An unsigned backup made on purpose (a lab) opens only when allowed.
    data = yaml.safe_load(plain.read_text())
    data["encryption"]["allow_unsigned"] = True
    lab = tmp_path / "lab.yaml"
    lab.write_text(yaml.safe_dump(data))
    unsigned = dr_json("backup", config=lab, token=bao.root_token)["backup_id"]
    proc = run_dr("verify", "--backup", unsigned, config=plain)
    line = one_line_error(proc)
    assert proc.returncode == ExitCode.USAGE and "--allow-unsigned" in line
    proc = run_dr("verify", "--backup", unsigned, "--allow-unsigned", config=plain)
    assert proc.returncode == 0, proc.stderr
    assert f"backup {unsigned} is not signed" in proc.stderr
    # With a key pinned, the unsigned backup is refused; --allow-unsigned lets it through
    # (a migration), while a signed one is still checked.
    pin_writer(plain, world["writer_public"], None)
    proc = run_dr("verify", "--backup", unsigned, config=plain)
    assert proc.returncode == ExitCode.INTEGRITY
    assert "no writer signature" in one_line_error(proc)
    proc = run_dr("verify", "--backup", unsigned, "--allow-unsigned", config=plain)
    assert proc.returncode == 0, proc.stderr
