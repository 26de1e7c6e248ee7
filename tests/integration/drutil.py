"""Helpers for tests that drive `dr` like an operator: a config file and the real CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from dr.crypto.keyfile import generate_keyfile


def write_keys(path: Path, data: dict[str, Any]) -> Path:
    """An unseal keys file (init JSON or {"keys": [...]}), mode 0600 as dr requires."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(data, fh)
    return path


def s3_storage(seaweed: Any, bucket: str, prefix: str = "prod") -> dict[str, Any]:
    return {
        "type": "s3",
        "bucket": bucket,
        "prefix": prefix,
        "region": seaweed.region,
        "endpoint_url": seaweed.endpoint_url,
        "chunk_size": "5MiB",
    }


def kms_recipient(moto: Any, name: str = "kms") -> dict[str, Any]:
    return {
        "type": "aws-kms",
        "name": name,
        "key_id": "alias/vault-backup",
        "region": "us-east-1",
        "endpoint_url": moto.endpoint_url,
    }


def keyfile_recipient(tmp_path: Path, name: str = "local") -> dict[str, Any]:
    path = tmp_path / f"{name}.key"
    if not path.exists():
        generate_keyfile(path)
    return {"type": "keyfile", "name": name, "path": str(path)}


def write_config(
    tmp_path: Path,
    *,
    addr: str | list[str],
    storage: dict[str, Any],
    recipients: list[dict[str, Any]],
    cluster: str = "prod",
    extra: dict[str, Any] | None = None,
    name: str = "dr.yaml",
    writer: bool = True,
) -> Path:
    """A dr.yaml as an operator writes one. `writer`: sign backups with a writer key made
    in tmp_path (`writer.key`) and pin it, as every production config does."""
    vault: dict[str, Any] = {"addrs": addr} if isinstance(addr, list) else {"addr": addr}
    vault["connect_retries"] = 1
    vault["timeout"] = "30s"
    encryption: dict[str, Any] = {"recipients": recipients}
    if writer:
        encryption["writer"] = writer_block(tmp_path)
    data: dict[str, Any] = {
        "cluster": cluster,
        "vault": vault,
        "storage": storage,
        "encryption": encryption,
        **(extra or {}),
    }
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def writer_block(tmp_path: Path) -> dict[str, str]:
    """`encryption.writer` for a writer key in tmp_path (made on first use)."""
    from dr.crypto.writer import format_public, generate_writer_key, read_writer_key

    path = tmp_path / "writer.key"
    public = (
        format_public(read_writer_key(path).public) if path.exists() else generate_writer_key(path)
    )
    return {"public_key": public, "key_file": str(path)}


def run_dr(
    *args: str,
    config: Path | None = None,
    token: str | None = None,
    env: dict[str, str] | None = None,
    timeout: float = 300,
) -> subprocess.CompletedProcess[str]:
    """Run the real `dr` CLI in a subprocess (exit codes and stderr as a user sees them)."""
    full_env = dict(os.environ)
    if token is not None:
        full_env["VAULT_TOKEN"] = token
    full_env.update(env or {})
    argv = [sys.executable, "-m", "dr"]
    if config is not None:
        argv += ["-c", str(config)]
    return subprocess.run(
        [*argv, *args], capture_output=True, text=True, env=full_env, timeout=timeout
    )


def one_line_error(proc: subprocess.CompletedProcess[str]) -> str:
    """Assert the run failed the documented way: one `error:` line, no traceback."""
    assert proc.returncode != 0, proc.stdout
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: "), proc.stderr
    return lines[0]


def dr_json(*args: str, **kwargs: Any) -> Any:
    proc = run_dr(*args, "--json", **kwargs)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def bucket_keys(s3: Any, bucket: str) -> list[str]:
    resp = s3.list_objects_v2(Bucket=bucket)
    return sorted(obj["Key"] for obj in resp.get("Contents", []))


def all_stored_bytes(s3: Any, bucket: str) -> dict[tuple[str, str], bytes]:
    """Every version of every object in the bucket."""
    out: dict[tuple[str, str], bytes] = {}
    resp = s3.list_object_versions(Bucket=bucket)
    for v in resp.get("Versions", []):
        body = s3.get_object(Bucket=bucket, Key=v["Key"], VersionId=v["VersionId"])["Body"]
        out[(v["Key"], v["VersionId"])] = body.read()
    return out


def bao_cli_restore(target: Any, snapshot: Path) -> subprocess.CompletedProcess[str]:
    """`bao operator raft snapshot restore -force FILE` into `target`, as an operator would."""
    env = {**os.environ, "BAO_ADDR": target.addr, "BAO_TOKEN": target.root_token}
    return subprocess.run(
        [str(target.binary), "operator", "raft", "snapshot", "restore", "-force", str(snapshot)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


def read_all(client: Any, source: Any) -> dict[str, dict[str, str]]:
    """Every secret the populated `source` wrote, as `client` reads it now."""
    out = {}
    for full_path in source.secrets:
        mount, path = full_path.split("/", 1)
        if mount == source.kv1_mount:
            out[full_path] = client.secrets.kv.v1.read_secret(path=path, mount_point=mount)["data"]
        else:
            out[full_path] = client.secrets.kv.v2.read_secret_version(
                path=path, mount_point=mount, raise_on_deleted_version=True
            )["data"]["data"]
    return out


def differing_secrets(client: Any, source: Any) -> list[str]:
    """Paths whose data as `client` reads it differs from what `source` wrote."""
    restored = read_all(client, source)
    return [p for p, data in source.secrets.items() if restored[p] != data]


def copy_file_store(config: Path, store: Path, tmp_path: Path) -> tuple[Path, Path]:
    """A private copy of a file store and a config pointing at it, for a test that
    damages backups. Returns (config, store)."""
    import shutil

    copy = tmp_path / "store"
    shutil.copytree(store, copy)
    new_config = tmp_path / "dr.yaml"
    new_config.write_text(config.read_text().replace(str(store), str(copy)))
    return new_config, copy
