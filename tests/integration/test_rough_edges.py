"""Rough edges a first real user hits (issue 10, Build 7), each against the real stack."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from dr.errors import ExitCode
from tests.integration.drutil import keyfile_recipient, one_line_error, run_dr, write_config


@pytest.mark.parametrize(
    "content",
    [os.urandom(32), b"\xff\xfe not text at all", b"c2hvcnQ=\n"],
    ids=["32-raw-bytes", "binary", "short-base64"],
)
def test_a_key_file_of_the_wrong_kind_is_a_usage_error(
    content: bytes, bao: Any, tmp_path: Path
) -> None:
    key = tmp_path / "raw.key"
    key.write_bytes(content)
    key.chmod(0o600)
    config = write_config(
        tmp_path,
        addr=bao.addr,
        storage={"type": "file", "path": str(tmp_path / "store")},
        recipients=[{"type": "keyfile", "name": "local", "path": str(key)}],
    )
    proc = run_dr("backup", config=config, token=bao.root_token)
    assert proc.returncode == ExitCode.USAGE, proc.stderr
    line = one_line_error(proc)
    assert "is not a vault-dr key file" in line and "base64" in line, line
    assert "head -c 32 /dev/urandom | base64" in line, line
    # Nothing of a backup is stored (the run lock's file, released, is no part of one).
    stored = [p for p in (tmp_path / "store").rglob("*") if p.is_file()]
    assert [p.name for p in stored if p.name != "lock.json"] == []


def test_a_dead_node_in_vault_addrs_is_a_warning(bao: Any, tmp_path: Path) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}"
    config = write_config(
        tmp_path,
        addr=[dead, bao.addr],
        storage={"type": "file", "path": str(tmp_path / "store")},
        recipients=[keyfile_recipient(tmp_path)],
    )
    proc = run_dr("backup", config=config, token=bao.root_token)
    assert proc.returncode == 0, proc.stderr
    warnings = [ln for ln in proc.stderr.splitlines() if "WARNING" in ln]
    assert any(dead in ln and "vault.addrs" in ln for ln in warnings), proc.stderr


def test_an_invalid_token_is_named_as_such(bao: Any, tmp_path: Path) -> None:
    config = write_config(
        tmp_path,
        addr=bao.addr,
        storage={"type": "file", "path": str(tmp_path / "store")},
        recipients=[keyfile_recipient(tmp_path)],
    )
    proc = run_dr("backup", config=config, token="s.not-a-token-of-this-cluster")
    assert proc.returncode == ExitCode.VAULT, proc.stderr
    line = one_line_error(proc)
    assert "the token is not valid there" in line and "policy" not in line.split(";")[0], line


def test_a_token_without_a_policy_is_told_about_the_policy(bao: Any, tmp_path: Path) -> None:
    client = bao.client()
    client.sys.create_or_update_policy("nothing", 'path "sys/nothing" { capabilities = ["read"] }')
    token = client.auth.token.create(policies=["nothing"])["auth"]["client_token"]
    config = write_config(
        tmp_path,
        addr=bao.addr,
        storage={"type": "file", "path": str(tmp_path / "store")},
        recipients=[keyfile_recipient(tmp_path)],
    )
    proc = run_dr("backup", config=config, token=token)
    assert proc.returncode == ExitCode.VAULT, proc.stderr
    line = one_line_error(proc)
    assert "docs/vault-policy.md" in line and "not valid" not in line, line


def test_runtime_auto_falls_back_to_process_when_the_image_is_missing(
    bao: Any, tmp_path: Path, docker_engine: str
) -> None:
    import json

    from tests.integration.drutil import dr_json, write_keys

    keys = write_keys(tmp_path / "unseal.json", bao.keys.raw)
    config = write_config(
        tmp_path,
        addr=bao.addr,
        storage={"type": "file", "path": str(tmp_path / "store")},
        recipients=[keyfile_recipient(tmp_path)],
        extra={"drill": {"unseal_keys_file": str(keys), "image": "example.invalid/none:1"}},
    )
    dr_json("backup", config=config, token=bao.root_token)
    proc = run_dr("-v", "drill", "--json", config=config, timeout=600)
    report = json.loads(proc.stdout)
    assert proc.returncode == 0, report["verdict"]
    assert report["drill"]["runtime"] == "process"
    assert "example.invalid/none:1 is not present" in proc.stderr, proc.stderr


def test_json_log_format_makes_every_stderr_line_json(bao: Any, tmp_path: Path) -> None:
    import json

    config = write_config(
        tmp_path,
        addr=bao.addr,
        storage={"type": "file", "path": str(tmp_path / "store")},
        recipients=[keyfile_recipient(tmp_path)],
    )
    ok = run_dr(
        "--log-format", "json", "-v", "backup", "--json", config=config, token=bao.root_token
    )
    assert ok.returncode == 0, ok.stderr
    lines = [json.loads(line) for line in ok.stderr.splitlines() if line.strip()]
    done = [e for e in lines if e["msg"].startswith("backup ") and "complete" in e["msg"]]
    assert done and done[0]["backup_id"] == json.loads(ok.stdout)["backup_id"], lines
    assert any(e.get("snapshot_bytes", 0) > 0 for e in lines), lines
    # A run that fails (here: a bad token) ends in one JSON error object with its code.
    bad = run_dr("--log-format", "json", "backup", config=config, token="s.invalid")
    (entry,) = [json.loads(line) for line in bad.stderr.splitlines() if line.strip()]
    assert entry["level"] == "error" and entry["exit_code"] == bad.returncode == ExitCode.VAULT
    # ...and so does one that fails before any command ran (a bad option).
    early = run_dr("--log-format=json", "backup", "--no-such-option", config=config)
    (entry,) = [json.loads(line) for line in early.stderr.splitlines() if line.strip()]
    assert entry["exit_code"] == early.returncode == ExitCode.USAGE
    assert "no-such-option" in entry["msg"]


# --- dr restore verified with the target's own (now dead) token ---------------------------
@pytest.fixture(scope="module")
def small_backup(tmp_path_factory: pytest.TempPathFactory, bao: Any) -> dict[str, Any]:
    from tests.integration.drutil import dr_json, write_keys

    tmp = tmp_path_factory.mktemp("rough-restore")
    config = write_config(
        tmp,
        addr=bao.addr,
        storage={"type": "file", "path": str(tmp / "store")},
        recipients=[keyfile_recipient(tmp)],
    )
    backup_id = dr_json("backup", config=config, token=bao.root_token)["backup_id"]
    return {"config": config, "id": backup_id, "keys": write_keys(tmp / "u.json", bao.keys.raw)}


def _restore_verifying_with_target_token(backup: dict[str, Any], target: Any) -> Any:
    return run_dr(
        "restore",
        "--backup",
        backup["id"],
        "--to",
        target.addr,
        "--token-env",
        "TARGET_TOKEN",
        "--verify-token-env",
        "TARGET_TOKEN",  # the mistake: the target's own token dies with its data
        "--unseal-keys-file",
        str(backup["keys"]),
        "--yes",
        "--json",
        config=backup["config"],
        env={"TARGET_TOKEN": target.root_token},
        timeout=600,
    )


def test_restore_verifies_with_a_generated_root_when_the_token_died(
    small_backup: dict[str, Any], bao: Any, bao_binary: Path, tmp_path: Path
) -> None:
    import json

    from dr.vault.localserver import LocalBao
    from tests.integration.drutil import differing_secrets
    from tests.stack.openbao import hvac_client

    target = LocalBao(tmp_path / "t", binary=bao_binary, unauthed_generate_root=True)
    target.start()
    try:
        target.init()
        proc = _restore_verifying_with_target_token(small_backup, target)
        assert proc.returncode == 0, proc.stderr
        result = json.loads(proc.stdout)
        assert result["passed"] is True
        assert result["checks"]["total_checked"] >= len(bao.secrets)
        assert "generated with the source keys" in result["verified_with"]
        assert "rejected the verify credentials" in proc.stderr  # the warning says why
        assert not differing_secrets(hvac_client(target, bao.root_token), bao)
    finally:
        target.stop()


def test_restore_says_it_completed_when_it_cannot_verify(
    small_backup: dict[str, Any], bao: Any, fresh_bao: Any
) -> None:
    from tests.stack.openbao import hvac_client

    proc = _restore_verifying_with_target_token(small_backup, fresh_bao)
    assert proc.returncode == ExitCode.VAULT, proc.stderr
    line = one_line_error(proc)
    assert "completed" in line and "could not be verified" in line, line
    assert "missing" not in line and "does not serve" not in line, line
    # ...and it did complete: the target serves the source with the source's token.
    client = hvac_client(fresh_bao, bao.root_token)
    assert client.sys.list_mounted_secrets_engines()


# --- a mount the backup policy does not name -----------------------------------------------
NAMED_POLICY = """
path "sys/storage/raft/snapshot" { capabilities = ["read"] }
path "sys/mounts"          { capabilities = ["read"] }
path "sys/auth"            { capabilities = ["read"] }
path "sys/policies/acl"    { capabilities = ["list"] }
path "app/metadata/*"      { capabilities = ["list", "read"] }
path "app/metadata"        { capabilities = ["list"] }
path "legacy/*"            { capabilities = ["list"] }
path "legacy"              { capabilities = ["list"] }
path "sys/namespaces"      { capabilities = ["list", "scan"] }
"""


def test_a_mount_the_policy_misses_never_costs_the_snapshot(
    bao_binary: Path, tmp_path: Path
) -> None:
    import json

    from dr.vault.localserver import LocalBao
    from tests.integration.drutil import write_keys
    from tests.stack.openbao import hvac_client

    server = LocalBao(tmp_path / "bao", binary=bao_binary)
    server.start()
    try:
        init = server.init()
        client = hvac_client(server)
        client.sys.enable_secrets_engine("kv", path="app", options={"version": "2"})
        client.sys.enable_secrets_engine("kv", path="legacy", options={"version": "1"})
        client.sys.enable_secrets_engine("kv", path="newv1", options={"version": "1"})
        client.sys.enable_secrets_engine("kv", path="newv2", options={"version": "2"})
        import time

        time.sleep(1)  # kv-v2 mounts upgrade in the background
        for i in range(5):
            client.secrets.kv.v2.create_or_update_secret(f"s{i}", {"v": str(i)}, mount_point="app")
            client.secrets.kv.v1.create_or_update_secret(
                f"s{i}", {"v": str(i)}, mount_point="legacy"
            )
            client.secrets.kv.v1.create_or_update_secret(
                f"s{i}", {"v": str(i)}, mount_point="newv1"
            )
            client.secrets.kv.v2.create_or_update_secret(
                f"s{i}", {"v": str(i)}, mount_point="newv2"
            )
        client.sys.create_or_update_policy("dr-backup", NAMED_POLICY)
        token = client.auth.token.create(policies=["dr-backup"])["auth"]["client_token"]
        keys = write_keys(tmp_path / "unseal.json", init.raw)
        config = write_config(
            tmp_path,
            addr=server.addr,
            storage={"type": "file", "path": str(tmp_path / "store")},
            recipients=[keyfile_recipient(tmp_path)],
            extra={"drill": {"unseal_keys_file": str(keys)}},
        )
        proc = run_dr("backup", "--json", config=config, token=token)
        assert proc.returncode == ExitCode.PARTIAL, proc.stderr
        out = json.loads(proc.stdout)
        assert sorted(m.split(":")[0] for m in out["mounts_skipped"]) == ["newv1/", "newv2/"]
        errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("error: ")]
        assert len(errors) == 1 and "newv1/" in errors[0] and "newv2/" in errors[0], proc.stderr
        assert "Traceback" not in proc.stderr
        # The backup is there, whole: listed, and a drill restores it and passes, naming
        # the mounts it could not check instead of calling their secrets missing.
        listed = json.loads(run_dr("list", "--json", config=config).stdout)["backups"]
        assert [b["backup_id"] for b in listed] == [out["backup_id"]]
        drill = run_dr("drill", "--json", "--runtime", "process", config=config, timeout=600)
        report = json.loads(drill.stdout)
        assert drill.returncode == 0, report["verdict"]
        assert report["drill"]["not_cataloged"] == ["newv1/", "newv2/"]
        assert report["checks"]["total_checked"] >= 10
    finally:
        server.stop()


def test_list_reports_unfinished_uploads_of_killed_runs(
    bao: Any, seaweed: Any, versioned_bucket: str, tmp_path: Path
) -> None:
    import json

    from tests.integration.drutil import s3_storage

    config = write_config(
        tmp_path,
        addr=bao.addr,
        storage=s3_storage(seaweed, versioned_bucket),
        recipients=[keyfile_recipient(tmp_path)],
    )
    # What a SIGKILLed backup leaves: a multipart upload nobody completes or aborts.
    s3 = seaweed.client()
    key = "prod/prod/20261202T000000Z-abcdef/snapshot.enc"
    s3.create_multipart_upload(Bucket=versioned_bucket, Key=key)
    proc = run_dr("list", "--json", config=config)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["incomplete_uploads"] == [key]
    text = run_dr("list", config=config)
    assert "1 unfinished upload(s) of killed runs" in text.stderr, text.stderr


def test_jitter_sleeps_a_random_part_of_the_duration_first(bao: Any, tmp_path: Path) -> None:
    import re

    config = write_config(
        tmp_path,
        addr=bao.addr,
        storage={"type": "file", "path": str(tmp_path / "store")},
        recipients=[keyfile_recipient(tmp_path)],
    )
    proc = run_dr("-v", "backup", "--jitter", "1s", config=config, token=bao.root_token)
    assert proc.returncode == 0, proc.stderr
    match = re.search(r"jitter: sleeping ([0-9.]+) s of at most 1 s first", proc.stderr)
    assert match and 0 <= float(match.group(1)) < 1, proc.stderr
    bad = run_dr("backup", "--jitter", "soon", config=config, token=bao.root_token)
    assert bad.returncode == ExitCode.USAGE and "--jitter" in bad.stderr, bad.stderr
