"""`dr restore` and `dr decrypt` against real servers (restore/drill issue, acceptance 1).

The source is the session's populated OpenBao (>= 2,000 secrets); the target is a
fresh, initialized OpenBao: a different cluster, so the restore is forced, the target
seals itself, and only the source's unseal keys open it.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import pytest

from dr.errors import ExitCode
from tests.integration.drutil import (
    copy_file_store,
    differing_secrets,
    dr_json,
    keyfile_recipient,
    one_line_error,
    run_dr,
    write_config,
    write_keys,
)
from tests.stack.openbao import hvac_client


@pytest.fixture(scope="module")
def backup(tmp_path_factory: pytest.TempPathFactory, bao: Any) -> dict[str, Any]:
    tmp = tmp_path_factory.mktemp("restore-src")
    config = write_config(
        tmp,
        addr=bao.addr,
        storage={"type": "file", "path": str(tmp / "store")},
        recipients=[keyfile_recipient(tmp)],
    )
    backup_id = dr_json("backup", config=config, token=bao.root_token)["backup_id"]
    keys = write_keys(tmp / "unseal.json", bao.keys.raw)
    return {"config": config, "id": backup_id, "keys": keys, "tmp": tmp}


def test_restore_serves_every_secret_bit_for_bit_with_source_tokens(
    backup: dict[str, Any], bao: Any, fresh_bao: Any
) -> None:
    proc = run_dr(
        "restore",
        "--backup",
        backup["id"],
        "--to",
        fresh_bao.addr,
        "--unseal-keys-file",
        str(backup["keys"]),
        "--verify-token-env",
        "SOURCE_TOKEN",
        "--yes",
        "--json",
        config=backup["config"],
        token=fresh_bao.root_token,
        env={"SOURCE_TOKEN": bao.root_token},
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["forced"] is True and result["resealed"] is True and result["passed"] is True
    assert result["checks"]["total_checked"] >= len(bao.secrets)
    # Every secret, bit for bit, with the SOURCE cluster's token.
    differing = differing_secrets(hvac_client(fresh_bao, bao.root_token), bao)
    assert not differing, differing[:3]
    # The target's own root token died with its old keyring.
    import hvac.exceptions

    with pytest.raises(hvac.exceptions.Forbidden):
        hvac_client(fresh_bao, fresh_bao.root_token).sys.list_mounted_secrets_engines()


def test_restore_verifies_with_vault_token_file(
    backup: dict[str, Any], bao: Any, fresh_bao: Any, tmp_path: Path
) -> None:
    """Token lookup is the config's for every command: `vault.token_file` (the SOURCE
    cluster's token, as a backup host has it) verifies the restored target; the target's
    own token comes from --token-env. No VAULT_TOKEN anywhere."""
    import yaml

    token_file = tmp_path / "source-token"
    fd = os.open(token_file, os.O_WRONLY | os.O_CREAT, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(bao.root_token + "\n")
    data = yaml.safe_load(backup["config"].read_text())
    data["vault"]["token_file"] = str(token_file)
    config = tmp_path / "dr.yaml"
    config.write_text(yaml.safe_dump(data))
    proc = run_dr(
        "restore",
        "--backup",
        backup["id"],
        "--to",
        fresh_bao.addr,
        "--token-env",
        "TARGET_TOKEN",
        "--unseal-keys-file",
        str(backup["keys"]),
        "--yes",
        "--json",
        config=config,
        env={"TARGET_TOKEN": fresh_bao.root_token},
    )
    assert "VAULT_TOKEN" not in os.environ
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["passed"] is True
    assert result["checks"]["total_checked"] >= len(bao.secrets)
    families = {f["name"]: f for f in result["checks"]["families"]}
    ok = families["kv2_secrets"]["ok"] + families["kv1_secrets"]["ok"]
    assert ok + families["kv2_secrets"]["changed_during_backup"] >= len(bao.secrets)
    # A token file that does not exist is named, exit 2, before anything is downloaded.
    data["vault"]["token_file"] = str(tmp_path / "missing")
    config.write_text(yaml.safe_dump(data))
    proc = run_dr(
        "restore",
        "--to",
        fresh_bao.addr,
        "--token-env",
        "TARGET_TOKEN",
        "--yes",
        config=config,
        env={"TARGET_TOKEN": fresh_bao.root_token},
    )
    line = one_line_error(proc)
    assert proc.returncode == ExitCode.USAGE and "missing" in line and "token_file" in line


def test_restore_refuses_without_confirmation_and_leaves_target_alone(
    backup: dict[str, Any], fresh_bao: Any
) -> None:
    client = hvac_client(fresh_bao)
    client.sys.enable_secrets_engine("kv", path="marker", options={"version": "1"})
    client.secrets.kv.v1.create_or_update_secret(path="m", secret={"v": "1"}, mount_point="marker")
    proc = run_dr(
        "restore",
        "--to",
        fresh_bao.addr,
        "--unseal-keys-file",
        str(backup["keys"]),
        config=backup["config"],
        token=fresh_bao.root_token,
    )
    line = one_line_error(proc)
    assert proc.returncode == ExitCode.USAGE and "--yes" in line and backup["id"] in line
    assert client.secrets.kv.v1.read_secret(path="m", mount_point="marker")["data"] == {"v": "1"}


def test_tampered_backup_never_reaches_vault(
    backup: dict[str, Any], fresh_bao: Any, tmp_path: Path
) -> None:
    config, store = copy_file_store(backup["config"], backup["tmp"] / "store", tmp_path)
    snap = next(store.rglob("snapshot.enc"))
    data = bytearray(snap.read_bytes())
    data[len(data) - 100] ^= 1  # the last frame: everything before it authenticates
    snap.write_bytes(bytes(data))
    client = hvac_client(fresh_bao)
    client.sys.enable_secrets_engine("kv", path="marker", options={"version": "1"})
    client.secrets.kv.v1.create_or_update_secret(path="m", secret={"v": "2"}, mount_point="marker")
    spool_parent = tmp_path / "tmp"
    spool_parent.mkdir()
    proc = run_dr(
        "restore",
        "--to",
        fresh_bao.addr,
        "--unseal-keys-file",
        str(backup["keys"]),
        "--yes",
        config=config,
        token=fresh_bao.root_token,
        env={"TMPDIR": str(spool_parent)},
    )
    one_line_error(proc)
    assert proc.returncode == ExitCode.INTEGRITY
    # Nothing was sent: the target still has its own data and keyring, unsealed.
    assert client.secrets.kv.v1.read_secret(path="m", mount_point="marker")["data"] == {"v": "2"}
    assert fresh_bao.seal_status()["sealed"] is False
    assert list(spool_parent.iterdir()) == []  # the ciphertext spool is gone too


def test_forced_restore_needs_unseal_keys(backup: dict[str, Any], fresh_bao: Any) -> None:
    proc = run_dr(
        "restore",
        "--to",
        fresh_bao.addr,
        "--yes",
        config=backup["config"],
        token=fresh_bao.root_token,
    )
    line = one_line_error(proc)
    assert proc.returncode == ExitCode.USAGE and "--unseal-keys-file" in line


def test_decrypt_writes_a_private_verified_snapshot(backup: dict[str, Any], tmp_path: Path) -> None:
    out = tmp_path / "vault.snap"
    proc = run_dr("decrypt", "--backup", backup["id"], "-o", str(out), config=backup["config"])
    assert proc.returncode == 0, proc.stderr
    assert "secret" in proc.stderr and "restore -force" in proc.stdout
    assert out.stat().st_mode & 0o777 == 0o600
    manifest = json.loads(next((backup["tmp"] / "store").rglob("manifest.json")).read_text())
    assert hashlib.sha256(out.read_bytes()).hexdigest() == manifest["snapshot"]["plaintext_sha256"]
    again = run_dr("decrypt", "-o", str(out), config=backup["config"])
    assert again.returncode == ExitCode.USAGE and "refusing to overwrite" in one_line_error(again)


def test_safety_snapshot_lets_the_restore_be_undone(
    backup: dict[str, Any], bao: Any, fresh_bao: Any, tmp_path: Path
) -> None:
    """`--safety-snapshot DIR` backs the target up first (encrypted, signed, its own
    backup id, cluster `prod-safety`); restoring that backup puts the target back."""
    client = hvac_client(fresh_bao)
    client.sys.enable_secrets_engine("kv", path="before", options={"version": "1"})
    client.secrets.kv.v1.create_or_update_secret("marker", {"v": "target"}, mount_point="before")
    target_keys = write_keys(tmp_path / "target-unseal.json", fresh_bao.init_result.raw)
    safety_dir = tmp_path / "safety"
    proc = run_dr(
        "restore",
        "--backup",
        backup["id"],
        "--to",
        fresh_bao.addr,
        "--unseal-keys-file",
        str(backup["keys"]),
        "--safety-snapshot",
        str(safety_dir),
        "--no-verify",
        "--yes",
        "--json",
        config=backup["config"],
        token=fresh_bao.root_token,
    )
    assert proc.returncode == 0, proc.stderr
    safety = json.loads(proc.stdout)["safety_snapshot"]
    assert safety["cluster"] == "prod-safety" and safety["backup_id"] != backup["id"]
    # Nothing of the safety snapshot is plaintext on disk: only envelopes and a manifest.
    stored = [p for p in safety_dir.rglob("*") if p.is_file()]
    assert stored and all(p.name.endswith((".enc", ".json")) for p in stored), stored
    assert b"target" not in b"".join(p.read_bytes() for p in stored if p.suffix == ".enc")
    # The target now serves the SOURCE; undo with the safety backup and the target's keys.
    undo = tmp_path / "undo.yaml"
    undo.write_text(
        backup["config"]
        .read_text()
        .replace("cluster: prod", "cluster: prod-safety")
        .replace(str(backup["tmp"] / "store"), str(safety_dir))
    )
    proc = run_dr(
        "restore",
        "--backup",
        safety["backup_id"],
        "--to",
        fresh_bao.addr,
        "--unseal-keys-file",
        str(target_keys),
        "--verify-token-env",
        "TARGET_ROOT",
        "--yes",
        "--json",
        config=undo,
        token=bao.root_token,  # the target holds the SOURCE's tokens now
        env={"TARGET_ROOT": fresh_bao.root_token},
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["passed"] is True
    got = hvac_client(fresh_bao).secrets.kv.v1.read_secret("marker", mount_point="before")
    assert got["data"] == {"v": "target"}
