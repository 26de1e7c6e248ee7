"""`vault.auth` parsing: every method, credentials from files or variables only."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from dr.config import parse_config
from dr.errors import ConfigError, UsageError
from dr.vault.auth import DEFAULT_SA_TOKEN, Credential


def config(auth: dict[str, Any] | None = None, **vault: Any) -> Any:
    data: dict[str, Any] = {
        "cluster": "prod",
        "vault": {"addr": "http://127.0.0.1:8200", **vault},
        "storage": {"type": "file", "path": "/var/lib/dr"},
    }
    if auth is not None:
        data["vault"]["auth"] = auth
    return parse_config(data, "dr.yaml", Path("/etc/dr"), {})


def test_default_is_the_token_from_vault_token() -> None:
    auth = config().vault.auth
    assert auth.method == "token" and auth.token.env == "VAULT_TOKEN"
    legacy = config(token_file="tok").vault.auth
    assert legacy.token.file == Path("/etc/dr/tok") and legacy.token.env is None


def test_approle_from_files_and_variables() -> None:
    auth = config(
        {"method": "approle", "role_id_file": "role", "secret_id_env": "SECRET_ID"}
    ).vault.auth
    assert auth.method == "approle" and auth.mount_path == "approle"
    assert auth.role_id == Credential(file=Path("/etc/dr/role"), where="vault.auth.role_id")
    assert auth.secret_id is not None and auth.secret_id.env == "SECRET_ID"
    assert auth.secret_id_wrapped is False
    custom = config(
        {
            "method": "approle",
            "mount": "ci/approle/",
            "role_id_env": "R",
            "secret_id_file": "/s",
            "secret_id_wrapped": True,
        }
    ).vault.auth
    assert custom.mount_path == "ci/approle" and custom.secret_id_wrapped is True


def test_jwt_and_kubernetes() -> None:
    jwt = config({"method": "jwt", "role": "ci", "jwt_file": "/run/oidc"}).vault.auth
    assert jwt.role == "ci" and jwt.jwt is not None and jwt.jwt.file == Path("/run/oidc")
    k8s = config({"method": "kubernetes", "role": "dr"}).vault.auth
    assert k8s.mount_path == "kubernetes" and k8s.jwt is not None
    assert k8s.jwt.file == DEFAULT_SA_TOKEN


@pytest.mark.parametrize(
    ("auth", "where", "words"),
    [
        ({"method": "ldap"}, "vault.auth.method", "not one of"),
        ({"method": "approle", "secret_id_file": "/s"}, "vault.auth.role_id_file", "required"),
        (
            {"method": "approle", "role_id_file": "/r", "secret_id": "s.hunter2"},
            "vault.auth.secret_id",
            "do not belong in the config file",
        ),
        (
            {"method": "approle", "role_id_file": "/r", "role_id_env": "R", "secret_id_env": "S"},
            "vault.auth.role_id_env",
            "not both",
        ),
        ({"method": "jwt", "jwt_file": "/j"}, "vault.auth.role", "required"),
        ({"method": "jwt", "role": "r"}, "vault.auth.jwt_file", "required"),
        ({"method": "jwt", "role": "r", "jwt_file": "/j", "roel": 1}, "vault.auth.roel", "role"),
        (
            {"method": "approle", "role_id_env": "1BAD", "secret_id_env": "S"},
            "vault.auth.role_id_env",
            "not accepted",
        ),
    ],
)
def test_errors_name_their_key(auth: dict[str, Any], where: str, words: str) -> None:
    with pytest.raises(ConfigError) as info:
        config(auth)
    message = str(info.value)
    assert f"at '{where}'" in message and words in message, message
    assert "hunter2" not in message


def test_a_login_method_refuses_a_token_beside_it() -> None:
    with pytest.raises(ConfigError, match="token comes from the login"):
        config({"method": "jwt", "role": "r", "jwt_env": "J"}, token_env="VAULT_TOKEN")


def test_credentials_are_read_from_file_or_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = tmp_path / "secret-id"
    secret.write_text("  s3cr3t\n")
    assert Credential(file=secret, where="vault.auth.secret_id").read() == "s3cr3t"
    empty = tmp_path / "empty"
    empty.write_text("\n")
    with pytest.raises(UsageError, match=r"vault\.auth\.secret_id_file .*empty"):
        Credential(file=empty, where="vault.auth.secret_id").read()
    with pytest.raises(UsageError, match=r"cannot read vault\.auth\.jwt_file"):
        Credential(file=tmp_path / "nope", where="vault.auth.jwt").read()
    with pytest.raises(UsageError, match="SECRET_ID is not set"):
        Credential(env="SECRET_ID", where="vault.auth.secret_id").read()
    monkeypatch.setenv("SECRET_ID", "from-env")
    assert Credential(env="SECRET_ID", where="vault.auth.secret_id").read() == "from-env"
    # Command-line options name themselves with dashes.
    with pytest.raises(UsageError, match="--token-env"):
        Credential(env="NOPE_TOKEN", where="--token").read()


def test_transit_recipient_takes_the_same_auth_block() -> None:
    data: dict[str, Any] = {
        "cluster": "prod",
        "storage": {"type": "file", "path": "/x"},
        "encryption": {
            "recipients": [
                {
                    "type": "vault-transit",
                    "addr": "https://kms:8200",
                    "key": "dr",
                    "auth": {"method": "approle", "role_id_env": "R", "secret_id_env": "S"},
                }
            ]
        },
    }
    (recipient,) = parse_config(data, "dr.yaml", Path("/etc"), {}).encryption.recipients
    auth = recipient.options["auth"]
    assert auth.method == "approle" and auth.where == "encryption.recipients[0].auth"


def test_a_token_file_others_can_read_is_refused(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("s.tok\n")
    token.chmod(0o644)
    auth = config(token_file=str(token)).vault.auth
    with pytest.raises(UsageError, match="readable by others"):
        auth.token.read()
    token.chmod(0o640)  # group-readable is how Vault Agent's sink is often shared
    assert auth.token.read() == "s.tok"
    # A Kubernetes service-account token is world-readable by design: not refused.
    sa = tmp_path / "sa"
    sa.write_text("eyJ.x.y\n")
    sa.chmod(0o644)
    k8s = config({"method": "kubernetes", "role": "r", "token_file": str(sa)}).vault.auth
    assert k8s.jwt is not None and k8s.jwt.read() == "eyJ.x.y"
