"""The test stack is real: OpenBao, SeaweedFS and moto's KMS behave as the suite assumes."""

from __future__ import annotations

import io
import tarfile
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from botocore.exceptions import ClientError

from tests.stack.openbao import VERSIONED, hvac_client, secret_data

pytestmark = pytest.mark.integration


def _read(client, full: str, kv1_mount: str) -> dict:
    mount, path = full.split("/", 1)
    if mount == kv1_mount:
        return client.secrets.kv.v1.read_secret(path=path, mount_point=mount)["data"]
    resp = client.secrets.kv.v2.read_secret_version(
        path=path, mount_point=mount, raise_on_deleted_version=True
    )
    return resp["data"]["data"]


def test_bao_mounts_are_kv2_and_kv1(bao):
    mounts = bao.client().sys.list_mounted_secrets_engines()["data"]
    for mount in bao.kv2_mounts:
        assert mounts[f"{mount}/"]["type"] == "kv"
        assert mounts[f"{mount}/"]["options"]["version"] == "2"
    legacy = mounts[f"{bao.kv1_mount}/"]
    assert legacy["type"] == "kv"
    assert (legacy.get("options") or {}).get("version", "1") == "1"


def test_bao_serves_every_populated_secret(bao):
    assert len(bao.secrets) >= 2000
    per_mount = {m: 0 for m in (*bao.kv2_mounts, bao.kv1_mount)}
    for full in bao.secrets:
        per_mount[full.split("/", 1)[0]] += 1
    assert all(n > 0 for n in per_mount.values()), per_mount
    assert any(full.count("/") >= 5 for full in bao.secrets), "no nested paths"

    values = [v for data in bao.secrets.values() for v in data.values()]
    assert len(set(values)) == len(values), "secret values must be unique"

    local = threading.local()

    def check(full: str) -> None:
        if not hasattr(local, "client"):
            local.client = bao.client()
        assert _read(local.client, full, bao.kv1_mount) == bao.secrets[full], full

    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(check, sorted(bao.secrets)))


def test_bao_versioned_secrets_and_soft_delete(bao):
    client = bao.client()
    for full, (versions, deleted) in VERSIONED.items():
        mount, path = full.split("/", 1)
        meta = client.secrets.kv.v2.read_secret_metadata(path=path, mount_point=mount)["data"]
        assert meta["current_version"] == versions
        for version in range(1, versions + 1):
            info = meta["versions"][str(version)]
            if version in deleted:
                assert info["deletion_time"], (full, version)
                with pytest.raises(Exception):
                    client.secrets.kv.v2.read_secret_version(
                        path=path,
                        mount_point=mount,
                        version=version,
                        raise_on_deleted_version=True,
                    )
            else:
                assert not info["deletion_time"], (full, version)
                got = client.secrets.kv.v2.read_secret_version(
                    path=path,
                    mount_point=mount,
                    version=version,
                    raise_on_deleted_version=True,
                )["data"]["data"]
                assert got == secret_data(mount, path, version, bao.seed)


def test_snapshot_from_leader_is_gzip_tar(bao):
    resp = bao.client().sys.take_raft_snapshot()
    try:
        body = b"".join(resp.iter_content(chunk_size=1 << 16))
    finally:
        resp.close()
    assert body[:2] == b"\x1f\x8b"
    with tarfile.open(fileobj=io.BytesIO(body), mode="r:gz") as tar:
        names = set(tar.getnames())
    assert {"meta.json", "state.bin", "SHA256SUMS", "SHA256SUMS.sealed"} <= names
    # The barrier encrypts values: none of the secrets appears in the raw state.
    with tarfile.open(fileobj=io.BytesIO(body), mode="r:gz") as tar:
        state = tar.extractfile("state.bin").read()
    for data in list(bao.secrets.values())[:200]:
        assert data["password"].encode() not in state


def test_standby_pair_has_a_real_standby(standby_pair):
    leader, standby = standby_pair
    assert leader.leader()["is_self"] is True
    assert standby.leader()["is_self"] is False
    assert standby.leader()["leader_address"] == leader.addr
    assert leader.health_code() == 200
    assert standby.health_code() == 429
    servers = hvac_client(leader).sys.read_raft_config()["data"]["config"]["servers"]
    assert {s["node_id"] for s in servers} == {"leader", "standby"}


def test_fresh_bao_is_empty_and_active(fresh_bao):
    assert fresh_bao.health_code() == 200
    mounts = hvac_client(fresh_bao).sys.list_mounted_secrets_engines()["data"]
    assert not any(m.get("type") == "kv" for m in mounts.values())


def test_seaweed_versioned_bucket_keeps_versions(seaweed, versioned_bucket):
    s3 = seaweed.client()
    status = s3.get_bucket_versioning(Bucket=versioned_bucket)
    assert status.get("Status") == "Enabled"
    v1 = s3.put_object(Bucket=versioned_bucket, Key="k", Body=b"one")["VersionId"]
    v2 = s3.put_object(Bucket=versioned_bucket, Key="k", Body=b"two")["VersionId"]
    assert v1 and v2 and v1 != v2
    listed = s3.list_object_versions(Bucket=versioned_bucket, Prefix="k")["Versions"]
    assert {v["VersionId"] for v in listed} == {v1, v2}
    old = s3.get_object(Bucket=versioned_bucket, Key="k", VersionId=v1)["Body"].read()
    assert old == b"one"


def test_seaweed_unversioned_bucket_has_no_status(seaweed, unversioned_bucket):
    status = seaweed.client().get_bucket_versioning(Bucket=unversioned_bucket)
    assert "Status" not in status


def test_seaweed_accepts_the_test_environment_credentials(seaweed, versioned_bucket):
    import boto3  # picks up the dummy AWS_* set by the autouse fixture

    s3 = boto3.client("s3", endpoint_url=seaweed.endpoint_url)
    s3.put_object(Bucket=versioned_bucket, Key="env", Body=b"x")
    assert s3.get_object(Bucket=versioned_bucket, Key="env")["Body"].read() == b"x"


def test_moto_kms_encryption_context_is_enforced(moto):
    kms = moto.client("kms")
    context = {"backup_id": "20261126T060000Z-3f9a1c", "cluster": "prod"}
    made = kms.generate_data_key(
        KeyId="alias/vault-backup", KeySpec="AES_256", EncryptionContext=context
    )
    assert len(made["Plaintext"]) == 32
    again = kms.decrypt(CiphertextBlob=made["CiphertextBlob"], EncryptionContext=context)
    assert again["Plaintext"] == made["Plaintext"]
    assert again["KeyId"] in (moto.key.arn, moto.key.key_id)
    with pytest.raises(ClientError):
        kms.decrypt(
            CiphertextBlob=made["CiphertextBlob"], EncryptionContext={**context, "cluster": "other"}
        )


def test_env_is_stripped(monkeypatch):
    import os

    assert not [k for k in os.environ if k.startswith(("VAULT_", "BAO_", "DR_"))]
    assert os.environ["AWS_DEFAULT_REGION"] == "us-east-1"
