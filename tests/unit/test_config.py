"""Config: typed values, and errors that name file, key path and what is accepted."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from dr.config import FileStorageConfig, S3StorageConfig, load_config, parse_config
from dr.errors import ConfigError, ExitCode, UsageError


def base() -> dict[str, Any]:
    return {
        "cluster": "prod",
        "vault": {"addr": "http://127.0.0.1:8200"},
        "storage": {"type": "s3", "bucket": "vault-backups", "prefix": "/prod/"},
        "encryption": {
            "recipients": [
                {"type": "aws-kms", "key_id": "alias/vault-backup", "region": "us-east-1"},
                {"type": "keyfile", "path": "./dr-demo.key"},
            ]
        },
    }


def parse(data: dict[str, Any], env: dict[str, str] | None = None) -> Any:
    return parse_config(data, "dr.yaml", Path("/etc/dr"), env or {})


def test_the_issue_example_parses_to_typed_values() -> None:
    cfg = parse(base())
    assert cfg.cluster == "prod"
    assert cfg.vault.addrs == ("http://127.0.0.1:8200",)
    assert cfg.vault.auth.method == "token" and cfg.vault.auth.token.env == "VAULT_TOKEN"
    assert isinstance(cfg.storage, S3StorageConfig)
    assert cfg.storage.prefix == "prod" and cfg.storage.chunk_size == 8 << 20
    kms, keyfile = cfg.encryption.recipients
    assert kms.type == "aws-kms" and kms.options["key_id"] == "alias/vault-backup"
    assert keyfile.options["path"] == Path("/etc/dr/dr-demo.key")  # relative to the file
    assert kms.name != keyfile.name


def test_file_store_and_addrs_and_sizes() -> None:
    data = base()
    data["vault"] = {"addrs": ["http://a:8200", "http://b:8200/"], "timeout": "2m"}
    data["storage"] = {"type": "file", "path": "/var/backups/vault"}
    data["encryption"]["frame_size"] = "64KiB"
    data["drill"] = {"rto_objective": "15m", "max_backup_age": "7h"}
    cfg = parse(data)
    assert cfg.vault.addrs == ("http://a:8200", "http://b:8200")
    assert cfg.vault.timeout == 120
    assert isinstance(cfg.storage, FileStorageConfig)
    assert cfg.encryption.frame_size == 65536
    assert cfg.drill.rto_objective == 900 and cfg.drill.max_backup_age == 7 * 3600


def test_env_interpolation() -> None:
    data = base()
    data["storage"]["bucket"] = "${BUCKET}"
    data["storage"]["prefix"] = "${PREFIX:-fallback}"
    data["cluster"] = "c$${x}"[:1] + "1"
    cfg = parse(data, {"BUCKET": "from-env"})
    assert cfg.storage.bucket == "from-env" and cfg.storage.prefix == "fallback"


@pytest.mark.parametrize(
    ("mutate", "where", "words"),
    [
        (lambda d: d.pop("cluster"), "cluster", "is required"),
        (lambda d: d.update(cluster="has space"), "cluster", "not accepted"),
        (lambda d: d["storage"].update(type="gcs"), "storage.type", "s3, file"),
        (lambda d: d["storage"].update(buckt="x"), "storage.buckt", "did you mean 'bucket'"),
        (lambda d: d["storage"].update(bucket="${NOPE}"), "storage.bucket", "NOPE is not set"),
        (lambda d: d["vault"].update(addr="vault:8200"), "vault.addr", "http://"),
        (lambda d: d["vault"].update(token="hvs.x"), "vault.token", "token_env"),
        (lambda d: d["vault"].update(timeout="soon"), "vault.timeout", "not a duration"),
        (lambda d: d["encryption"].update(recipients=[]), "encryption.recipients", "at least"),
        (
            lambda d: d["encryption"]["recipients"][0].update(type="gpg"),
            "encryption.recipients[0].type",
            "aws-kms",
        ),
        (
            lambda d: d["encryption"]["recipients"][0].pop("key_id"),
            "encryption.recipients[0].key_id",
            "is required",
        ),
        (lambda d: d["encryption"].update(frame_size="3GiB"), "encryption.frame_size", "between"),
        (lambda d: d.update(vault=["x"]), "vault", "mapping"),
        (lambda d: d["storage"].update(chunk_size="1MiB"), "storage.chunk_size", "between"),
    ],
)
def test_errors_name_file_key_and_accepted_values(mutate: Any, where: str, words: str) -> None:
    data = base()
    mutate(data)
    with pytest.raises(ConfigError) as info:
        parse(data)
    message = str(info.value)
    assert message.startswith(f"dr.yaml: at '{where}': "), message
    assert words in message
    assert "\n" not in message
    assert info.value.exit_code == ExitCode.USAGE


def test_missing_file_and_bad_yaml(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match=r"dr\.yaml: no such config file; pass --config"):
        load_config(None)
    (tmp_path / "bad.yaml").write_text("a: [1,\n")
    with pytest.raises(ConfigError, match=r"at 'line \d+, column \d+': not valid YAML"):
        load_config(str(tmp_path / "bad.yaml"))
    monkeypatch.setenv("DR_CONFIG", str(tmp_path / "bad.yaml"))
    with pytest.raises(ConfigError, match=r"bad\.yaml"):
        load_config(None)


def test_token_comes_from_env_or_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = base()
    data["vault"]["token_env"] = "MY_TOKEN"
    cfg = parse(data)
    with pytest.raises(UsageError, match="MY_TOKEN"):
        cfg.vault.auth.token.read()
    monkeypatch.setenv("MY_TOKEN", " s.abc \n")
    assert cfg.vault.auth.token.read() == "s.abc"
    token_file = tmp_path / "token"
    token_file.write_text("s.file\n")
    token_file.chmod(0o600)
    del data["vault"]["token_env"]
    data["vault"]["token_file"] = str(token_file)
    assert parse(data).vault.auth.token.read() == "s.file"


def test_a_typo_of_a_required_key_is_named() -> None:
    from dr.config import parse_config
    from dr.errors import ConfigError

    data = {
        "cluster": "prod",
        "vault": {"adr": "http://127.0.0.1:8200"},
        "storage": {"type": "file", "path": "/var/lib/dr"},
    }
    with pytest.raises(ConfigError) as info:
        parse_config(data, "dr.yaml", Path("/etc/dr"), {})
    assert "at 'vault.addr'" in str(info.value)
    assert "'adr' is set: did you mean 'addr'?" in str(info.value)


def test_unnamed_recipients_are_named_after_their_keys() -> None:
    from dr.config import parse_config

    kms = {"type": "aws-kms", "key_id": "alias/vault-backup", "region": "us-east-1"}
    arn = {**kms, "key_id": "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd"}
    key = {"type": "keyfile", "path": "/etc/dr/local.key"}

    def names(recipients: list[dict[str, str]]) -> list[str]:
        data = {
            "cluster": "prod",
            "storage": {"type": "file", "path": "/var/lib/dr"},
            "encryption": {"recipients": recipients},
        }
        config = parse_config(data, "dr.yaml", Path("/etc/dr"), {})
        return [r.name for r in config.encryption.recipients]

    assert names([kms, arn, key]) == ["kms-vault-backup", "kms-1234abcd", "keyfile-local"]
    # Reordered or grown, every name stays what it was.
    assert names([key, arn, kms]) == ["keyfile-local", "kms-1234abcd", "kms-vault-backup"]
    assert names([kms, {**kms}]) == ["kms-vault-backup", "kms-vault-backup-2"]
