"""`dr verify`, `dr list` and the operator-facing behaviour of the CLI, on real backups."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from dr.errors import ExitCode
from dr.vault.localserver import free_port
from tests.integration.drutil import (
    copy_file_store,
    dr_json,
    keyfile_recipient,
    kms_recipient,
    one_line_error,
    run_dr,
    s3_storage,
    write_config,
)


@pytest.fixture(scope="module")
def file_backup(tmp_path_factory: pytest.TempPathFactory, bao: Any) -> dict[str, Any]:
    """A backup of the populated OpenBao into a local file store (keyfile recipient)."""
    tmp_path = tmp_path_factory.mktemp("filestore")
    config = write_config(
        tmp_path,
        addr=bao.addr,
        storage={"type": "file", "path": str(tmp_path / "store"), "prefix": "p"},
        recipients=[keyfile_recipient(tmp_path)],
    )
    result = dr_json("backup", config=config, token=bao.root_token)
    root = tmp_path / "store" / "p" / "prod" / result["backup_id"]
    return {"config": config, "result": result, "dir": root, "tmp": tmp_path}


def copy_config(file_backup: dict[str, Any], tmp_path: Path) -> tuple[Path, Path]:
    """A private copy of the file store, so a test may damage it."""
    config, store = copy_file_store(file_backup["config"], file_backup["tmp"] / "store", tmp_path)
    return config, store / "p" / "prod" / file_backup["result"]["backup_id"]


def test_verify_ok_and_json(file_backup: dict[str, Any]) -> None:
    proc = run_dr("verify", config=file_backup["config"])
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(f"backup {file_backup['result']['backup_id']} OK")
    result = dr_json(
        "verify", "--backup", file_backup["result"]["backup_id"], config=file_backup["config"]
    )
    assert result["ok"] is True and result["catalog_secrets"] >= 2000
    assert "snapshot SHA256SUMS" in result["checks"]
    files = sorted(p.name for p in file_backup["dir"].iterdir())
    assert files == ["catalog.enc", "manifest.json", "snapshot.enc"]
    assert all((file_backup["dir"] / f).stat().st_mode & 0o077 == 0 for f in files)


@pytest.mark.parametrize("name", ["snapshot.enc", "catalog.enc"])
@pytest.mark.parametrize("where", [0.0, 0.5, 1.0])
def test_verify_detects_a_flipped_byte(
    file_backup: dict[str, Any], tmp_path: Path, name: str, where: float
) -> None:
    config, backup_dir = copy_config(file_backup, tmp_path)
    target = backup_dir / name
    data = bytearray(target.read_bytes())
    index = min(int(len(data) * where), len(data) - 1)
    data[index] ^= 0x40
    target.write_bytes(bytes(data))
    proc = run_dr("verify", config=config)
    line = one_line_error(proc)
    assert proc.returncode == ExitCode.INTEGRITY, line


def test_verify_detects_an_altered_manifest(file_backup: dict[str, Any], tmp_path: Path) -> None:
    config, backup_dir = copy_config(file_backup, tmp_path)
    manifest = json.loads((backup_dir / "manifest.json").read_text())
    manifest["snapshot_info"]["raft_index"] += 1
    (backup_dir / "manifest.json").write_text(json.dumps(manifest))
    proc = run_dr("verify", config=config)
    line = one_line_error(proc)
    assert proc.returncode == ExitCode.INTEGRITY and "altered" in line


def test_verify_refuses_objects_swapped_between_backups(
    file_backup: dict[str, Any], tmp_path: Path, bao: Any
) -> None:
    config, backup_dir = copy_config(file_backup, tmp_path)
    second = dr_json("backup", config=config, token=bao.root_token)["backup_id"]
    other = backup_dir.parent / second
    (other / "catalog.enc").write_bytes((backup_dir / "catalog.enc").read_bytes())
    proc = run_dr("verify", "--backup", second, config=config)
    assert proc.returncode == ExitCode.INTEGRITY, proc.stderr
    one_line_error(proc)
    listed = dr_json("list", config=config)
    assert [b["backup_id"] for b in listed["backups"]] == [
        second,
        file_backup["result"]["backup_id"],
    ]


def test_unknown_backup_and_bad_id(file_backup: dict[str, Any]) -> None:
    proc = run_dr("verify", "--backup", "20200101T000000Z-000000", config=file_backup["config"])
    assert proc.returncode == ExitCode.NOT_FOUND and "dr list" in one_line_error(proc)
    proc = run_dr("verify", "--backup", "yesterday", config=file_backup["config"])
    assert proc.returncode == ExitCode.USAGE and "not a backup id" in one_line_error(proc)


def test_incomplete_backup_is_listed_apart_and_never_verified(
    file_backup: dict[str, Any], tmp_path: Path
) -> None:
    config, backup_dir = copy_config(file_backup, tmp_path)
    (backup_dir / "manifest.json").unlink()
    listed = dr_json("list", config=config)
    assert listed["backups"] == []
    assert listed["incomplete"] == [file_backup["result"]["backup_id"]]
    proc = run_dr("verify", config=config)
    assert proc.returncode == ExitCode.NOT_FOUND, proc.stderr


def test_s3_verify_uses_the_manifest_version_ids(
    tmp_path: Path, bao: Any, seaweed: Any, versioned_bucket: str, moto: Any
) -> None:
    config = write_config(
        tmp_path,
        addr=bao.addr,
        storage=s3_storage(seaweed, versioned_bucket),
        recipients=[kms_recipient(moto)],
    )
    result = dr_json("backup", config=config, token=bao.root_token)
    key = f"prod/prod/{result['backup_id']}/snapshot.enc"
    # Someone overwrites the latest version of the snapshot object: the manifest still
    # names the original VersionId, so verify (and restore) read the authentic one.
    seaweed.client().put_object(Bucket=versioned_bucket, Key=key, Body=b"garbage")
    assert dr_json("verify", config=config)["ok"] is True

    # KMS-only backup with the KMS unreachable: exit 5, and the message names the KMS.
    dead = kms_recipient(moto) | {"endpoint_url": f"http://127.0.0.1:{free_port()}"}
    config = write_config(
        tmp_path,
        addr=bao.addr,
        storage=s3_storage(seaweed, versioned_bucket),
        recipients=[dead],
        name="dead-kms.yaml",
    )
    proc = run_dr("verify", config=config, env={"AWS_MAX_ATTEMPTS": "1"})
    line = one_line_error(proc)
    assert proc.returncode == ExitCode.KEYS and "cannot reach the KMS endpoint" in line


def test_json_logs_and_quiet_cron_output(file_backup: dict[str, Any]) -> None:
    proc = run_dr("--log-format", "json", "-v", "verify", config=file_backup["config"])
    assert proc.returncode == 0, proc.stderr
    records = [json.loads(line) for line in proc.stderr.splitlines() if line.strip()]
    assert records and all({"ts", "level", "logger", "msg"} <= set(r) for r in records)
    # Without a terminal and without -v there is no progress noise: stderr is empty.
    proc = run_dr("verify", config=file_backup["config"])
    assert proc.returncode == 0 and proc.stderr == ""


def test_no_token_is_a_usage_error(file_backup: dict[str, Any]) -> None:
    proc = run_dr("backup", config=file_backup["config"])
    line = one_line_error(proc)
    assert proc.returncode == ExitCode.USAGE and "VAULT_TOKEN" in line


def test_demo_runs_end_to_end(tmp_path: Path) -> None:
    proc = run_dr("demo", "--dir", str(tmp_path / "demo"), "--secrets", "60")
    assert proc.returncode == 0, proc.stderr
    assert "demo OK" in proc.stdout
    config = tmp_path / "demo" / "dr.yaml"
    listed = dr_json("list", config=config)
    assert len(listed["backups"]) == 1 and listed["backups"][0]["catalog_secrets"] == 60
    assert dr_json("verify", config=config)["ok"] is True
    assert (tmp_path / "demo" / "demo.key").stat().st_mode & 0o777 == 0o600
