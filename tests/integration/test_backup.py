"""`dr backup` against the real stack: OpenBao, SeaweedFS (versioned S3), moto KMS.

Acceptance of the backup pipeline issue: stored layout and VersionIds, nothing in
plaintext, a decrypted snapshot that the real `bao` restores bit for bit, and the
failure modes (standby, sealed, unreachable, unversioned bucket, unknown KMS key,
malformed config) each with its exit code, one line, and no manifest.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from dr.config import load_config
from dr.crypto.envelope import decrypt_stream
from dr.crypto.recipients import build_recipients
from dr.errors import ExitCode
from dr.manifest import Layout
from dr.ops.find import list_backups, unlock
from dr.ops.verify import load_catalog
from dr.storage.factory import open_store
from dr.vault.localserver import free_port
from tests.integration.drutil import (
    all_stored_bytes,
    bao_cli_restore,
    bucket_keys,
    differing_secrets,
    dr_json,
    keyfile_recipient,
    kms_recipient,
    one_line_error,
    run_dr,
    s3_storage,
    write_config,
)
from tests.stack.openbao import hvac_client


def _is_lock(key: str) -> bool:
    # The run lock's object (docs/locking.md) sits beside the backups and is no part
    # of one; a run leaves it released (tests/integration/test_run_lock.py).
    return key.endswith("/lock.json")


def _backup_keys(s3: Any, bucket: str) -> list[str]:
    return [key for key in bucket_keys(s3, bucket) if not _is_lock(key)]


def _backup_versions(listing: dict[str, Any]) -> list[dict[str, Any]]:
    return [v for v in listing.get("Versions", []) if not _is_lock(v["Key"])]


@pytest.fixture
def s3_config(tmp_path: Path, bao: Any, seaweed: Any, versioned_bucket: str, moto: Any) -> Path:
    return write_config(
        tmp_path,
        addr=bao.addr,
        storage=s3_storage(seaweed, versioned_bucket),
        recipients=[kms_recipient(moto), keyfile_recipient(tmp_path)],
    )


@pytest.fixture(scope="module")
def stored_backup(
    tmp_path_factory: pytest.TempPathFactory, bao: Any, seaweed: Any, moto_server: Any
) -> dict[str, Any]:
    """One real backup of the populated OpenBao, shared by the read-only checks below."""
    tmp_path = tmp_path_factory.mktemp("backup")
    moto_server.ensure_kms_key("alias/vault-backup")
    bucket = seaweed.make_bucket(f"dr-backup-{os.getpid()}", versioned=True)
    env = {
        "AWS_ACCESS_KEY_ID": "x",
        "AWS_SECRET_ACCESS_KEY": "y",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    config = write_config(
        tmp_path,
        addr=bao.addr,
        storage=s3_storage(seaweed, bucket),
        recipients=[kms_recipient(moto_server), keyfile_recipient(tmp_path)],
    )
    proc = run_dr("backup", "--json", config=config, token=bao.root_token, env=env)
    assert proc.returncode == 0, proc.stderr
    return {"config": config, "bucket": bucket, "result": json.loads(proc.stdout), "env": env}


def test_backup_stores_snapshot_catalog_and_manifest_with_version_ids(
    stored_backup: dict[str, Any], bao: Any, seaweed: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    result = stored_backup["result"]
    backup_id = result["backup_id"]
    s3 = seaweed.client()
    prefix = f"prod/prod/{backup_id}/"
    assert _backup_keys(s3, stored_backup["bucket"]) == [
        prefix + "catalog.enc",
        prefix + "manifest.json",
        prefix + "snapshot.enc",
    ]
    # The VersionIds in the manifest are the versions actually stored.
    for name, version_id in result["version_ids"].items():
        head = s3.head_object(Bucket=stored_backup["bucket"], Key=f"{prefix}{name}.enc")
        assert version_id and head["VersionId"] == version_id
    # The catalog covers every secret written (>= 2,000 across 2 kv-v2 + 1 kv-v1 mounts).
    assert len(bao.secrets) >= 2000
    assert result["catalog_secrets"] == len(bao.secrets)
    assert result["recipients"] == ["aws-kms:kms", "keyfile:local"]

    listed = dr_json("list", config=stored_backup["config"], env=stored_backup["env"])
    assert [b["backup_id"] for b in listed["backups"]] == [backup_id]
    assert listed["backups"][0]["version_ids"] == result["version_ids"]

    # The catalog, decrypted, names each path with its state at the snapshot.
    for key, value in stored_backup["env"].items():
        monkeypatch.setenv(key, value)
    config = load_config(str(stored_backup["config"]))
    store = open_store(config.storage)
    manifest = list_backups(store, Layout(config.storage.prefix, config.cluster)).backups[0]
    data_key, _ = unlock(manifest, build_recipients(config.encryption))
    catalog = load_catalog(store, manifest, data_key)
    cataloged = {f"{s.mount}{s.path}" for s in catalog.secrets}
    assert cataloged == set(bao.secrets)
    kinds = {s.mount: s.kv for s in catalog.secrets}
    assert kinds == {"app/": 2, "team/": 2, "legacy/": 1}
    multi = next(s for s in catalog.secrets if s.mount == "app/" and s.path == "versioned/multi-a")
    assert multi.version == 3 and multi.state == "stable"
    assert {"app/", "team/", "legacy/"} <= {m.path for m in catalog.mounts}
    assert "default" in catalog.policies and "token/" in {a.path for a in catalog.auth_methods}


def test_no_secret_value_or_path_in_plaintext(
    stored_backup: dict[str, Any], bao: Any, seaweed: Any
) -> None:
    stored = all_stored_bytes(seaweed.client(), stored_backup["bucket"])
    assert len([key for key, _ in stored if not _is_lock(key)]) == 3
    blob = b"\n".join(stored.values())
    needles: set[bytes] = set()
    for full_path, data in bao.secrets.items():
        needles.add(full_path.split("/", 1)[1].encode())  # the path inside its mount
        needles.update(v.encode() for v in data.values())
    found = [n for n in needles if n in blob]
    assert not found, f"{len(found)} plaintext secrets/paths in stored bytes, e.g. {found[:3]}"
    # The canary check can fail: the needles do appear in the plaintext catalog.
    assert b"top-00002" not in blob and any(b"top-" in n for n in needles)


def test_decrypted_snapshot_restores_bit_for_bit_with_bao_cli(
    stored_backup: dict[str, Any],
    bao: Any,
    fresh_bao: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for key, value in stored_backup["env"].items():
        monkeypatch.setenv(key, value)
    config = load_config(str(stored_backup["config"]))
    store = open_store(config.storage)
    manifest = list_backups(store, Layout(config.storage.prefix, config.cluster)).backups[0]
    # Only the keyfile recipient: proves any one recipient suffices.
    keyfile_only = [w for w in build_recipients(config.encryption) if w.type_name == "keyfile"]
    data_key, stanza = unlock(manifest, keyfile_only)
    assert stanza.type == "keyfile"
    # The test writes the plaintext to disk on purpose: this is what an operator does
    # for a manual restore with the bao CLI (the decrypt-by-hand path of docs/format.md).
    snap = tmp_path / "restore.snap"
    with (
        store.open_stream(manifest.snapshot.key, manifest.snapshot.version_id) as raw,
        snap.open("wb") as out,
    ):
        for frame in decrypt_stream(raw, data_key, manifest.snapshot.context):
            out.write(frame)

    proc = bao_cli_restore(fresh_bao, snap)
    assert proc.returncode == 0, proc.stderr
    fresh_bao.wait_sealed(timeout=60)
    fresh_bao.unseal(bao.keys.keys_b64)
    fresh_bao.wait_active(timeout=60)

    # The SOURCE cluster's token works now; every secret reads back bit for bit.
    mismatched = differing_secrets(hvac_client(fresh_bao, bao.root_token), bao)
    assert not mismatched, f"{len(mismatched)} secrets differ, e.g. {mismatched[:3]}"


def _no_manifest(seaweed: Any, bucket: str) -> None:
    keys = bucket_keys(seaweed.client(), bucket)
    assert not [k for k in keys if k.endswith("manifest.json")], keys
    uploads = seaweed.client().list_multipart_uploads(Bucket=bucket).get("Uploads", [])
    assert not uploads


def test_standby_is_refused(
    tmp_path: Path, standby_pair: Any, seaweed: Any, versioned_bucket: str
) -> None:
    leader, standby = standby_pair
    config = write_config(
        tmp_path,
        addr=standby.addr,
        storage=s3_storage(seaweed, versioned_bucket),
        recipients=[keyfile_recipient(tmp_path)],
    )
    proc = run_dr("backup", config=config, token=leader.root_token)
    line = one_line_error(proc)
    assert proc.returncode == ExitCode.VAULT
    assert "standby" in line and leader.addr.split("//")[1] in line
    _no_manifest(seaweed, versioned_bucket)

    # With every node listed, the active one is found and used.
    config = write_config(
        tmp_path,
        addr=[standby.addr, leader.addr],
        storage=s3_storage(seaweed, versioned_bucket),
        recipients=[keyfile_recipient(tmp_path)],
        name="both.yaml",
    )
    proc = run_dr("backup", "--json", config=config, token=leader.root_token)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["vault"]["addr"] == leader.addr


def test_sealed_vault_is_refused(
    tmp_path: Path, fresh_bao: Any, seaweed: Any, versioned_bucket: str
) -> None:
    hvac_client(fresh_bao).sys.seal()
    fresh_bao.wait_sealed()
    config = write_config(
        tmp_path,
        addr=fresh_bao.addr,
        storage=s3_storage(seaweed, versioned_bucket),
        recipients=[keyfile_recipient(tmp_path)],
    )
    proc = run_dr("backup", config=config, token=fresh_bao.root_token)
    line = one_line_error(proc)
    assert proc.returncode == ExitCode.VAULT and "sealed" in line
    _no_manifest(seaweed, versioned_bucket)


def test_unreachable_vault_is_refused(tmp_path: Path, seaweed: Any, versioned_bucket: str) -> None:
    addr = f"http://127.0.0.1:{free_port()}"
    config = write_config(
        tmp_path,
        addr=addr,
        storage=s3_storage(seaweed, versioned_bucket),
        recipients=[keyfile_recipient(tmp_path)],
    )
    proc = run_dr("backup", config=config, token="t")
    line = one_line_error(proc)
    assert proc.returncode == ExitCode.VAULT
    assert "cannot reach Vault" in line and addr in line
    _no_manifest(seaweed, versioned_bucket)


def test_unversioned_bucket_is_refused(
    tmp_path: Path, bao: Any, seaweed: Any, unversioned_bucket: str
) -> None:
    config = write_config(
        tmp_path,
        addr=bao.addr,
        storage=s3_storage(seaweed, unversioned_bucket),
        recipients=[keyfile_recipient(tmp_path)],
    )
    proc = run_dr("backup", config=config, token=bao.root_token)
    line = one_line_error(proc)
    assert proc.returncode == ExitCode.STORAGE
    assert "versioning" in line and "put-bucket-versioning" in line
    assert bucket_keys(seaweed.client(), unversioned_bucket) == []


def test_unknown_kms_key_is_refused(
    tmp_path: Path, bao: Any, seaweed: Any, versioned_bucket: str, moto: Any
) -> None:
    recipient = {**kms_recipient(moto), "key_id": "alias/no-such-key"}
    config = write_config(
        tmp_path,
        addr=bao.addr,
        storage=s3_storage(seaweed, versioned_bucket),
        recipients=[recipient, keyfile_recipient(tmp_path)],
    )
    proc = run_dr("backup", config=config, token=bao.root_token)
    line = one_line_error(proc)
    assert proc.returncode == ExitCode.KEYS
    assert "alias/no-such-key" in line and "not found" in line
    assert _backup_keys(seaweed.client(), versioned_bucket) == []


@pytest.mark.parametrize(
    ("mutate", "where"),
    [
        (lambda d: d.pop("cluster"), "cluster"),
        (lambda d: d["storage"].update(type="ftp"), "storage.type"),
        (lambda d: d["vault"].update(addr="127.0.0.1:8200"), "vault.addr"),
        (lambda d: d["storage"].update(bucket_name="x"), "storage.bucket_name"),
        (lambda d: d["encryption"]["recipients"][0].pop("path"), "encryption.recipients[0].path"),
        (lambda d: d["vault"].update(token="s.secret"), "vault.token"),
    ],
)
def test_malformed_config_is_refused(
    tmp_path: Path, seaweed: Any, versioned_bucket: str, mutate: Any, where: str
) -> None:
    import yaml

    config = write_config(
        tmp_path,
        addr="http://127.0.0.1:8200",
        storage=s3_storage(seaweed, versioned_bucket),
        recipients=[keyfile_recipient(tmp_path)],
    )
    data = yaml.safe_load(config.read_text())
    mutate(data)
    config.write_text(yaml.safe_dump(data))
    proc = run_dr("backup", config=config, token="t")
    line = one_line_error(proc)
    assert proc.returncode == ExitCode.USAGE
    assert str(config) in line and f"'{where}'" in line
    assert bucket_keys(seaweed.client(), versioned_bucket) == []


def test_yaml_syntax_error_names_the_line(tmp_path: Path) -> None:
    config = tmp_path / "dr.yaml"
    config.write_text("cluster: prod\nvault: [unclosed\n")
    proc = run_dr("list", config=config)
    line = one_line_error(proc)
    assert proc.returncode == ExitCode.USAGE and "line" in line and "YAML" in line


def _proxied_config(tmp_path: Path, addr: str, seaweed: Any, bucket: str) -> Path:
    """A config whose Vault is `addr` (a fault proxy in front of the real server)."""
    return write_config(
        tmp_path,
        addr=addr,
        storage=s3_storage(seaweed, bucket),
        recipients=[keyfile_recipient(tmp_path)],
    )


@pytest.mark.parametrize(
    ("mode", "words"),
    [
        ("empty", "empty"),
        ("truncate", "truncated"),
        ("html", "HTML"),
    ],
)
def test_damaged_snapshot_never_becomes_a_backup(
    tmp_path: Path, bao: Any, seaweed: Any, versioned_bucket: str, mode: str, words: str
) -> None:
    from tests.integration.faultproxy import fault_proxy

    with fault_proxy(bao.addr, mode) as addr:
        config = _proxied_config(tmp_path, addr, seaweed, versioned_bucket)
        proc = run_dr("backup", config=config, token=bao.root_token)
    line = one_line_error(proc)
    assert proc.returncode == ExitCode.SNAPSHOT, line
    assert words in line
    # Nothing that looks whole: no manifest, no objects, no multipart debris, not listed.
    s3 = seaweed.client()
    versions = _backup_versions(s3.list_object_versions(Bucket=versioned_bucket))
    assert not versions, versions
    _no_manifest(seaweed, versioned_bucket)
    listed = dr_json("list", config=config)
    assert listed["backups"] == [] and listed["incomplete"] == []


def test_a_catalog_walk_failing_beside_the_upload_leaves_no_backup(
    tmp_path: Path, bao: Any, seaweed: Any, versioned_bucket: str
) -> None:
    """The walk starts once the snapshot is read and checked, in its own thread, while
    the last parts upload (dr/ops/catalogwalk.py). Its failure must still end the run
    with the Vault error, and the snapshot it had stored must be deleted."""
    from tests.integration.faultproxy import fault_proxy

    with fault_proxy(bao.addr, "auth_fails_after_snapshot") as addr:
        config = _proxied_config(tmp_path, addr, seaweed, versioned_bucket)
        proc = run_dr("-v", "backup", config=config, token=bao.root_token)
    assert proc.returncode == ExitCode.VAULT, proc.stderr
    assert "Traceback" not in proc.stderr
    line = proc.stderr.strip().splitlines()[-1]
    assert "sys/auth" in line and "500" in line, line
    assert "snapshot stored" in proc.stderr  # the snapshot was whole and uploaded,
    # and is deleted again:
    versions = _backup_versions(seaweed.client().list_object_versions(Bucket=versioned_bucket))
    assert not versions, versions
    _no_manifest(seaweed, versioned_bucket)


def test_sigterm_mid_backup_leaves_nothing_that_looks_whole(
    tmp_path: Path, bao: Any, seaweed: Any, versioned_bucket: str
) -> None:
    import signal
    import sys
    import time

    from tests.integration.faultproxy import fault_proxy

    with fault_proxy(bao.addr, "slow") as addr:
        config = _proxied_config(tmp_path, addr, seaweed, versioned_bucket)
        proc = subprocess.Popen(
            [sys.executable, "-m", "dr", "-c", str(config), "-v", "backup"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "VAULT_TOKEN": bao.root_token},
        )
        time.sleep(3.0)  # past calibration: the snapshot is streaming slowly now
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=120)
    assert proc.returncode == ExitCode.INTERRUPTED, err
    assert "Traceback" not in err
    # It was interrupted while the snapshot streamed, not before or after.
    assert "started" in err and "snapshot stored" not in err, err
    versions = _backup_versions(seaweed.client().list_object_versions(Bucket=versioned_bucket))
    assert not versions, versions
    _no_manifest(seaweed, versioned_bucket)


def _policy_from_docs() -> str:
    import re

    doc = (Path(__file__).resolve().parents[2] / "docs" / "vault-policy.md").read_text()
    match = re.search(r"```hcl\n(.*?)```", doc, re.S)
    assert match, "docs/vault-policy.md has no hcl block"
    return match.group(1)


def test_documented_least_privilege_policy_is_enough(
    tmp_path: Path, fresh_bao: Any, seaweed: Any, versioned_bucket: str
) -> None:
    client = hvac_client(fresh_bao)
    client.sys.enable_secrets_engine("kv", path="app", options={"version": "2"})
    client.sys.enable_secrets_engine("kv", path="legacy", options={"version": "1"})
    for i in range(30):
        client.secrets.kv.v2.create_or_update_secret(
            path=f"svc/s{i}", secret={"v": str(i)}, mount_point="app"
        )
        client.secrets.kv.v1.create_or_update_secret(
            path=f"old/s{i}", secret={"v": str(i)}, mount_point="legacy"
        )
    client.sys.create_or_update_policy("dr-backup", _policy_from_docs())
    token = client.auth.token.create(policies=["dr-backup"], no_default_policy=True)["auth"][
        "client_token"
    ]
    # The backup token can NOT read a secret value.
    import hvac.exceptions

    with pytest.raises(hvac.exceptions.Forbidden):
        hvac_client(fresh_bao, token).secrets.kv.v2.read_secret_version(
            path="svc/s1", mount_point="app", raise_on_deleted_version=True
        )
    config = write_config(
        tmp_path,
        addr=fresh_bao.addr,
        storage=s3_storage(seaweed, versioned_bucket),
        recipients=[keyfile_recipient(tmp_path)],
    )
    result = dr_json("backup", config=config, token=token)
    assert result["catalog_secrets"] == 60

    # Without metadata read the snapshot is still stored: the catalog records app/ as
    # skipped and the run ends with the documented warning code (14), one error line.
    client.sys.create_or_update_policy(
        "dr-no-meta", _policy_from_docs().replace('["list", "read"]', '["list"]')
    )
    weak = client.auth.token.create(policies=["dr-no-meta"], no_default_policy=True)["auth"][
        "client_token"
    ]
    proc = run_dr("backup", config=config, token=weak)
    assert proc.returncode == ExitCode.PARTIAL, proc.stderr
    assert "Traceback" not in proc.stderr
    (line,) = [ln for ln in proc.stderr.splitlines() if ln.startswith("error: ")]
    assert "app/" in line and "denied read app/metadata" in line, line
    listed = dr_json("list", config=config)
    assert len(listed["backups"]) == 2
    assert listed["backups"][0]["catalog"]["mounts_skipped"] == 1
