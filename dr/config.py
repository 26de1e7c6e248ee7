"""YAML configuration -> typed, validated objects.

Every error names the file, the key path and what is accepted, in one line (exit 2).
Secrets never live in argv: the Vault token comes from an environment variable named
by `vault.token_env` or from `vault.token_file`; AWS credentials from boto3's chain.
The full reference is docs/config.md.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from dr.configschema import Section, parse_with
from dr.errors import ConfigError, UsageError

DEFAULT_CONFIG = "dr.yaml"
CLUSTER_PATTERN = r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}"


@dataclass(frozen=True)
class VaultConfig:
    addrs: tuple[str, ...]
    token_env: str = "VAULT_TOKEN"  # noqa: S105 - a variable name, not a secret
    token_file: Path | None = None
    namespace: str | None = None
    timeout: float = 60.0
    ca_cert: Path | None = None
    tls_skip_verify: bool = False
    connect_retries: int = 3

    def token(self) -> str:
        """The token, from the file when set, else from the named environment variable."""
        if self.token_file is not None:
            try:
                token = self.token_file.read_text().strip()
            except OSError as exc:
                raise UsageError(
                    f"cannot read vault.token_file {self.token_file}: {exc.strerror}"
                ) from None
            if token:
                return token
            raise UsageError(f"vault.token_file {self.token_file} is empty")
        token = os.environ.get(self.token_env, "").strip()
        if not token:
            raise UsageError(
                f"no Vault token: set the environment variable {self.token_env} "
                "(vault.token_env) or vault.token_file"
            )
        return token


# The vault section of a config without one (break-glass): no node to back up from.
NO_VAULT = VaultConfig(addrs=())


@dataclass(frozen=True)
class S3StorageConfig:
    bucket: str
    prefix: str = ""
    region: str | None = None
    endpoint_url: str | None = None
    chunk_size: int = 8 << 20
    max_concurrency: int = 2
    type: str = "s3"

    def store_options(self) -> dict[str, Any]:
        """Keyword arguments of the store class registered under `type`."""
        return {
            "bucket": self.bucket,
            "region": self.region,
            "endpoint_url": self.endpoint_url,
            "chunk_size": self.chunk_size,
            "max_concurrency": self.max_concurrency,
        }


@dataclass(frozen=True)
class FileStorageConfig:
    path: Path
    prefix: str = ""
    type: str = "file"

    def store_options(self) -> dict[str, Any]:
        return {"root": self.path}


StorageConfig = S3StorageConfig | FileStorageConfig


@dataclass(frozen=True)
class RecipientConfig:
    """One recipient of the data key. `options` holds the type's own validated keys."""

    type: str
    name: str
    options: Mapping[str, Any]
    where: str


@dataclass(frozen=True)
class EncryptionConfig:
    recipients: tuple[RecipientConfig, ...]
    frame_size: int = 1 << 20
    require_offline: bool = False


@dataclass(frozen=True)
class DrillConfig:
    runtime: str = "auto"
    binary: Path | None = None
    image: str | None = None
    unseal_keys_file: Path | None = None
    rto_objective: float | None = None
    max_backup_age: float | None = None


@dataclass(frozen=True)
class Config:
    cluster: str
    vault: VaultConfig
    storage: StorageConfig
    encryption: EncryptionConfig
    drill: DrillConfig = field(default_factory=DrillConfig)
    source: str = "<config>"
    base_dir: Path = field(default_factory=Path.cwd)


def _path(section: Section, key: str, base: Path, *, required: bool = False) -> Path | None:
    value = section.text(key, required=required)
    if value is None:
        return None
    path = Path(value).expanduser()
    return path if path.is_absolute() else base / path


def _prefix(section: Section) -> str:
    prefix = section.text("prefix", "") or ""
    prefix = prefix.strip("/")
    if ".." in prefix.split("/"):
        raise section.error("prefix", "must not contain '..'")
    return prefix


def _vault(s: Section, base: Path) -> VaultConfig:
    addr = s.text("addr")
    addrs = s.str_list("addrs")
    if addr and addrs:
        raise s.error("addrs", "set either vault.addr or vault.addrs, not both")
    nodes = tuple(addrs or ([addr] if addr else []))
    if not nodes:
        raise s.error("addr", "is required (or vault.addrs: a list of nodes)")
    for node in nodes:
        if not node.startswith(("http://", "https://")):
            raise s.error("addr", f"'{node}' must start with http:// or https://")
    if s.has("token"):
        raise s.error(
            "token",
            "tokens do not belong in the config file; put the variable's name in "
            "vault.token_env or a file path in vault.token_file",
        )
    return VaultConfig(
        addrs=tuple(n.rstrip("/") for n in nodes),
        token_env=s.text("token_env", "VAULT_TOKEN", pattern=r"[A-Za-z_][A-Za-z0-9_]*") or "",
        token_file=_path(s, "token_file", base),
        namespace=s.text("namespace"),
        timeout=s.duration("timeout", 60.0) or 60.0,
        ca_cert=_path(s, "ca_cert", base),
        tls_skip_verify=s.flag("tls_skip_verify", False),
        connect_retries=s.integer("connect_retries", 3, minimum=0, maximum=20),
    )


def _storage(s: Section, base: Path) -> StorageConfig:
    kind = s.req_str("type", choices=("s3", "file"))
    if kind == "s3":
        return S3StorageConfig(
            bucket=s.req_str(
                "bucket", pattern=r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]", hint="an S3 bucket name"
            ),
            prefix=_prefix(s),
            region=s.text("region"),
            endpoint_url=s.text("endpoint_url"),
            chunk_size=s.size("chunk_size", 8 << 20, minimum=5 << 20, maximum=5 << 30),
            max_concurrency=s.integer("max_concurrency", 2, minimum=1, maximum=32),
        )
    path = _path(s, "path", base, required=True)
    assert path is not None
    return FileStorageConfig(path=path, prefix=_prefix(s))


def _kms_options(s: Section, base: Path) -> dict[str, Any]:
    return {
        "key_id": s.req_str("key_id"),
        "region": s.text("region"),
        "endpoint_url": s.text("endpoint_url"),
    }


def _keyfile_options(s: Section, base: Path) -> dict[str, Any]:
    return {"path": _path(s, "path", base, required=True)}


def _x25519_options(s: Section, base: Path) -> dict[str, Any]:
    # Imported here: dr.crypto imports this module. The check is the codec's own, so a
    # mistyped recipient fails at load time with its location, not at the first backup.
    from dr.crypto.x25519 import parse_recipient

    recipient = s.req_str("recipient")
    try:
        parse_recipient(recipient)
    except ValueError as exc:
        raise s.error("recipient", str(exc)) from None
    return {"recipient": recipient, "identity": _path(s, "identity", base)}


def _transit_options(s: Section, base: Path) -> dict[str, Any]:
    addr = s.req_str("addr", pattern=r"https?://\S+", hint="http(s)://host:port")
    return {
        "addr": addr.rstrip("/"),
        "key": s.req_str("key", pattern=r"[A-Za-z0-9._-]+"),
        "mount": s.text("mount", "transit", pattern=r"[A-Za-z0-9._/-]+"),
        "token_env": s.text("token_env", "VAULT_TRANSIT_TOKEN", pattern=r"[A-Za-z_][A-Za-z0-9_]*"),
        "token_file": _path(s, "token_file", base),
        "namespace": s.text("namespace"),
        "ca_cert": _path(s, "ca_cert", base),
        "timeout": s.duration("timeout", 30.0),
    }


# Recipient types and the parser of their own keys; each type also registers its
# factory in dr/crypto/recipients.py (RECIPIENT_TYPES).
RECIPIENT_OPTIONS: dict[str, Callable[[Section, Path], dict[str, Any]]] = {
    "aws-kms": _kms_options,
    "keyfile": _keyfile_options,
    "x25519": _x25519_options,
    "vault-transit": _transit_options,
}


def _encryption(s: Section, base: Path) -> EncryptionConfig:
    recipients = []
    names: set[str] = set()
    for i, r in enumerate(s.sections("recipients", required=True)):
        kind = r.req_str("type", choices=tuple(RECIPIENT_OPTIONS))
        name = r.text("name", f"{kind}-{i}", pattern=r"[A-Za-z0-9._-]+") or ""
        if name in names:
            raise r.error("name", f"'{name}' is used by two recipients; names must be unique")
        names.add(name)
        options = RECIPIENT_OPTIONS[kind](r, base)
        r.done()
        recipients.append(RecipientConfig(kind, name, options, r.where))
    if not recipients:
        raise s.error("recipients", "needs at least one recipient")
    return EncryptionConfig(
        recipients=tuple(recipients),
        frame_size=s.size("frame_size", 1 << 20, minimum=1 << 12, maximum=1 << 24),
        require_offline=s.flag("require_offline", False),
    )


def _drill(s: Section, base: Path) -> DrillConfig:
    return DrillConfig(
        runtime=s.text("runtime", "auto", choices=("auto", "process", "container")) or "auto",
        binary=_path(s, "binary", base),
        image=s.text("image"),
        unseal_keys_file=_path(s, "unseal_keys_file", base),
        rto_objective=s.duration("rto_objective", None),
        max_backup_age=s.duration("max_backup_age", None),
    )


def parse_config(
    data: Any, source: str, base_dir: Path, env: Mapping[str, str] | None = None
) -> Config:
    top = Section(data, source, "", env)
    cluster = top.req_str(
        "cluster", pattern=CLUSTER_PATTERN, hint="letters, digits, '.', '_' and '-', at most 63"
    )
    config = Config(
        cluster=cluster,
        # vault and encryption may be left out: a break-glass config (runbooks/
        # break-glass.md) needs only cluster and storage, with --identity and --to.
        vault=parse_with(top.section("vault"), lambda s: _vault(s, base_dir))
        if top.has("vault")
        else NO_VAULT,
        storage=parse_with(top.section("storage"), lambda s: _storage(s, base_dir)),
        encryption=parse_with(top.section("encryption"), lambda s: _encryption(s, base_dir))
        if top.has("encryption")
        else EncryptionConfig(recipients=()),
        drill=parse_with(top.section("drill"), lambda s: _drill(s, base_dir)),
        source=source,
        base_dir=base_dir,
    )
    top.done()
    return config


def resolve_config_path(explicit: str | None) -> Path:
    if explicit:
        return Path(explicit)
    from_env = os.environ.get("DR_CONFIG")
    return Path(from_env) if from_env else Path(DEFAULT_CONFIG)


def load_config(explicit: str | None = None) -> Config:
    """Read and validate the config file (`--config`, else $DR_CONFIG, else ./dr.yaml)."""
    path = resolve_config_path(explicit)
    source = str(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ConfigError(
            source, "", "no such config file; pass --config FILE or set DR_CONFIG (docs/config.md)"
        ) from None
    except OSError as exc:
        raise ConfigError(source, "", f"cannot read the config file: {exc.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise ConfigError(source, where, f"not valid YAML: {problem}") from None
    return parse_config(data, source, path.resolve().parent)
