"""Config of the key-management recipients, the break-glass config, require_offline."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from dr.config import parse_config
from dr.crypto.recipients import build_recipients
from dr.crypto.transit import VaultTransitRecipient
from dr.crypto.x25519 import X25519Recipient
from dr.errors import ConfigError, ExitCode, UsageError
from dr.ops.backup import check_backup_config, check_offline_recipient

RECIPIENT = "vdr13aqvttdk3ujkyjh9kg2w5an6dmy5mq5a84a4uxk3hfhnugfc9p0srf7xhc"


def base(*recipients: dict[str, Any]) -> dict[str, Any]:
    return {
        "cluster": "prod",
        "vault": {"addr": "http://127.0.0.1:8200"},
        "storage": {"type": "s3", "bucket": "vault-backups"},
        "encryption": {"recipients": list(recipients)},
    }


def parse(data: dict[str, Any]) -> Any:
    return parse_config(data, "dr.yaml", Path("/etc/dr"), {})


def test_x25519_and_transit_recipients_parse() -> None:
    cfg = parse(
        base(
            {"type": "x25519", "name": "bg", "recipient": RECIPIENT, "identity": "bg.key"},
            {"type": "vault-transit", "name": "t", "addr": "https://kms-vault:8200/", "key": "dr"},
        )
    )
    x, t = cfg.encryption.recipients
    assert x.options == {"recipient": RECIPIENT, "identity": Path("/etc/dr/bg.key")}
    assert t.options["addr"] == "https://kms-vault:8200"
    assert t.options["mount"] == "transit" and t.options["auth"].token.env == "VAULT_TRANSIT_TOKEN"
    wrappers = build_recipients(cfg.encryption)
    assert isinstance(wrappers[0], X25519Recipient) and wrappers[0].offline
    assert isinstance(wrappers[1], VaultTransitRecipient) and not wrappers[1].offline
    assert wrappers[1].key_id == "transit/dr" and wrappers[1].timeout == 30


@pytest.mark.parametrize(
    ("recipient", "where", "words"),
    [
        ({"type": "x25519"}, "recipient", "is required"),
        ({"type": "x25519", "recipient": RECIPIENT[:-1] + "q"}, "recipient", "checksum"),
        ({"type": "x25519", "recipient": "age1xyz"}, "recipient", "vdr1"),
        ({"type": "x25519", "recipient": RECIPIENT, "path": "x"}, "path", "unknown key"),
        ({"type": "vault-transit", "key": "k"}, "addr", "is required"),
        ({"type": "vault-transit", "addr": "kms:8200", "key": "k"}, "addr", "http(s)://"),
        ({"type": "vault-transit", "addr": "http://v:8200"}, "key", "is required"),
        (
            {"type": "vault-transit", "addr": "http://v:8200", "key": "k", "token": "s.x"},
            "token",
            "do not belong in the config file",
        ),
    ],
)
def test_recipient_errors_name_their_key(recipient: dict[str, Any], where: str, words: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse(base(recipient))
    message = str(info.value)
    assert message.startswith(f"dr.yaml: at 'encryption.recipients[0].{where}': "), message
    assert words in message and "\n" not in message


def test_break_glass_config_needs_only_cluster_and_storage() -> None:
    cfg = parse({"cluster": "prod", "storage": {"type": "s3", "bucket": "vault-backups"}})
    assert cfg.vault.addrs == () and cfg.encryption.recipients == ()
    with pytest.raises(UsageError, match=r"dr backup needs vault\.addr") as info:
        check_backup_config(cfg)
    assert info.value.exit_code == ExitCode.USAGE
    data = base()
    data.pop("encryption")
    with pytest.raises(UsageError, match=r"dr backup needs encryption\.recipients"):
        check_backup_config(parse(data))
    # A section that is there must still be whole.
    with pytest.raises(ConfigError, match=r"'encryption\.recipients': is required"):
        parse({**data, "encryption": {}})
    with pytest.raises(ConfigError, match=r"'vault\.addr': is required"):
        parse({**data, "vault": {}})


def test_require_offline_counts_x25519_and_keyfile_not_kms_or_transit() -> None:
    kms = {"type": "aws-kms", "key_id": "alias/k", "region": "us-east-1"}
    transit = {"type": "vault-transit", "addr": "http://v:8200", "key": "k"}
    online = base(kms, transit)
    online["encryption"]["require_offline"] = True
    cfg = parse(online)
    with pytest.raises(UsageError, match="no recipient is offline") as info:
        check_offline_recipient(cfg, build_recipients(cfg.encryption))
    assert info.value.exit_code == ExitCode.USAGE
    for offline in ({"type": "x25519", "recipient": RECIPIENT}, {"type": "keyfile", "path": "k"}):
        data = base(kms, offline)
        data["encryption"]["require_offline"] = True
        cfg = parse(data)
        check_offline_recipient(cfg, build_recipients(cfg.encryption))
