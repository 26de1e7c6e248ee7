"""YAML configuration -> typed, validated objects.

Every error names the file, the key path and what is accepted, in one line (exit 2).
Secrets never live in argv: the Vault token comes from an environment variable named
by `vault.token_env` or from `vault.token_file`; AWS credentials from boto3's chain.
The full reference is docs/config.md.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from dr.configschema import Section, parse_with
from dr.crypto.settings import EncryptionConfig, RecipientConfig
from dr.crypto.writer import parse_public as parse_writer_public
from dr.crypto.x25519 import parse_recipient
from dr.errors import ConfigError
from dr.storage.settings import FileStorageConfig, S3StorageConfig, StorageConfig
from dr.vault.auth import DEFAULT_SA_TOKEN, METHODS, AuthSettings, Credential
from dr.vault.connection import TLSSettings
from dr.vault.sealconf import AUTO_SEALS, SealSettings
from dr.vault.settings import NO_VAULT, VaultSettings

# The leaf packages own their settings types; these names stay importable from here.
VaultConfig = VaultSettings
__all__ = [
    "NO_VAULT",
    "Config",
    "DrillConfig",
    "EncryptionConfig",
    "FileStorageConfig",
    "RecipientConfig",
    "S3StorageConfig",
    "StorageConfig",
    "VaultConfig",
    "load_config",
    "parse_config",
]

DEFAULT_CONFIG = "dr.yaml"
# drill.max_backup_age when unset: 4 x the 6-hourly schedule + 2 h; `0` turns it off.
DEFAULT_MAX_BACKUP_AGE = 26 * 3600.0
# The transit Vault's token has its own variable, so the backed-up cluster's VAULT_TOKEN
# is never sent to another server by accident.
TRANSIT_TOKEN_ENV = "VAULT_TRANSIT_TOKEN"  # noqa: S105 - a variable name
CLUSTER_PATTERN = r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}"
DEFAULT_MIN_KEEP = 3
DEFAULT_DEBRIS_GRACE = 24 * 3600.0
DEFAULT_LOCK_LEASE = 300.0
DEFAULT_SCHEDULE = 6 * 3600.0
# status.max_backup_age: two missed 6-hourly runs plus an hour.
DEFAULT_STATUS_BACKUP_AGE = 13 * 3600.0
DEFAULT_STATUS_DRILL_AGE = 100 * 86400.0  # a quarterly drill, plus ten days


@dataclass(frozen=True)
class DrillConfig:
    runtime: str = "auto"
    binary: Path | None = None
    image: str | None = None
    unseal_keys_file: Path | None = None
    rto_objective: float | None = None
    # Backups run every 6 h (runbooks/backup.md): a drill of a backup older than four
    # missed runs plus margin fails (exit 12) unless the config says otherwise.
    max_backup_age: float | None = DEFAULT_MAX_BACKUP_AGE
    binary_sha256: str | None = None  # pin the process runtime's server binary
    image_digest: str | None = None  # pin the container runtime's image (id or digest)
    # The source's seal stanza for auto-unseal clusters (dr/vault/sealconf.py).
    seal: SealSettings | None = None
    recovery_keys_file: Path | None = None  # auto-unseal: the source's recovery keys
    nodes: int = 1  # 1, or 3: the throwaway is a 3-node raft cluster


@dataclass(frozen=True)
class RetentionConfig:
    """`retention:`, restic's keep rules (docs/retention.md). A backup is kept when any
    rule keeps it; the protections (the newest backup, the newest verified and the
    newest drilled one, `min_keep`, Object Lock) win over every rule and over max_age."""

    keep_last: int = 0
    keep_hourly: int = 0
    keep_daily: int = 0
    keep_weekly: int = 0
    keep_monthly: int = 0
    keep_yearly: int = 0
    min_keep: int = DEFAULT_MIN_KEEP
    max_age: float | None = None  # older than this is removed even if a keep rule keeps it
    # Objects of runs that wrote no manifest (and unfinished uploads) younger than this
    # may belong to a run still writing: left alone.
    debris_grace: float = DEFAULT_DEBRIS_GRACE

    @property
    def configured(self) -> bool:
        """Whether any rule says what to keep; prune refuses to run without one."""
        keeps = (self.keep_last, self.keep_hourly, self.keep_daily, self.keep_weekly,
                 self.keep_monthly, self.keep_yearly)  # fmt: skip
        return any(keeps) or self.max_age is not None


@dataclass(frozen=True)
class LockConfig:
    """`lock:`: the per-cluster run lock of backup, prune and rewrap (docs/locking.md)."""

    lease: float = DEFAULT_LOCK_LEASE  # a holder that stops renewing loses it after this


@dataclass(frozen=True)
class StatusConfig:
    """`status:`, the thresholds of `dr status` (docs/status.md)."""

    schedule: float = DEFAULT_SCHEDULE  # how often `dr backup` runs: the RPO when healthy
    max_backup_age: float = DEFAULT_STATUS_BACKUP_AGE
    max_drill_age: float = DEFAULT_STATUS_DRILL_AGE


@dataclass(frozen=True)
class MetricsConfig:
    """`metrics:` (docs/metrics.md): a node_exporter textfile and/or a Pushgateway."""

    textfile: Path | None = None
    pushgateway: str | None = None
    job: str = "vault_dr"


@dataclass(frozen=True)
class AlertsConfig:
    """`alerts:` (docs/alerts.md). A Slack webhook URL is a secret: prefer
    webhook_url_env / webhook_url_file; `webhook_url` is for receivers whose URL is not."""

    webhook: Credential | None = None
    format: str = "slack"  # slack | generic
    on_drill: bool = False  # post every drill's result, not only failures and recoveries
    timeout: float = 10.0


@dataclass(frozen=True)
class Config:
    cluster: str
    vault: VaultConfig
    storage: StorageConfig
    encryption: EncryptionConfig
    drill: DrillConfig = field(default_factory=DrillConfig)
    retention: RetentionConfig = field(default_factory=RetentionConfig)
    lock: LockConfig = field(default_factory=LockConfig)
    status: StatusConfig = field(default_factory=StatusConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    alerts: AlertsConfig = field(default_factory=AlertsConfig)
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


_ENV_NAME = r"[A-Za-z_][A-Za-z0-9_]*"


def _credential(
    s: Section,
    base: Path,
    name: str,
    *,
    env_default: str | None = None,
    file_default: Path | None = None,
    required: bool = True,
    private: bool = False,
) -> Credential | None:
    """`<name>_file` or `<name>_env` of section `s` (never the value itself); `private`:
    the file must not be readable by others (a Vault token)."""
    where = f"{s.where}.{name}" if s.where else name
    if s.has(name):
        raise s.error(
            name,
            f"secrets do not belong in the config file; set {name}_file (a path) or "
            f"{name}_env (the NAME of an environment variable)",
        )
    path = _path(s, f"{name}_file", base)
    env = s.text(f"{name}_env", pattern=_ENV_NAME)
    if path is not None and env is not None:
        raise s.error(f"{name}_env", f"set either {name}_file or {name}_env, not both")
    if path is None and env is None:
        if file_default is not None:
            path = file_default
        elif env_default is not None:
            env = env_default
        elif required:
            raise s.error(f"{name}_file", f"is required (or {name}_env)")
        else:
            return None
    return Credential(env=env, file=path, where=where, private=private)


def parse_auth(
    s: Section,
    base: Path,
    *,
    token_env_default: str = "VAULT_TOKEN",  # noqa: S107 - a variable name
    legacy: Section | None = None,
) -> AuthSettings:
    """A `vault.auth` block (also the vault-transit recipient's `auth`).

    `legacy`: the enclosing section, whose `token_env`/`token_file` keys (from before
    `auth` existed) still configure the token method."""
    method = s.text("method", "token", choices=METHODS) or "token"
    mount = s.text("mount", method, pattern=r"[A-Za-z0-9._/-]+") or method
    namespace = s.text("namespace")
    where = s.where
    if method == "token":
        source = s
        if legacy is not None and (legacy.has("token_env") or legacy.has("token_file")):
            if s.has("token_env") or s.has("token_file"):
                raise s.error("token_file", "set the token in auth or beside it, not both")
            source = legacy
        token = _credential(source, base, "token", env_default=token_env_default, private=True)
        assert token is not None
        s.done()
        return AuthSettings(method="token", token=token, where=where)
    # Each method's own keys (docs/config.md); a credential is a file or a variable.
    own: dict[str, Any] = {}
    if method == "approle":
        own["role_id"] = _credential(s, base, "role_id")
        own["secret_id"] = _credential(s, base, "secret_id")
        own["secret_id_wrapped"] = s.flag("secret_id_wrapped", False)
    else:
        own["role"] = s.req_str("role", pattern=r"[A-Za-z0-9._@-]+")
        own["jwt"] = (
            _credential(s, base, "token", file_default=DEFAULT_SA_TOKEN)
            if method == "kubernetes"
            else _credential(s, base, "jwt")
        )
    settings = AuthSettings(method=method, mount=mount, namespace=namespace, where=where, **own)
    s.done()
    return settings


def _vault(s: Section, base: Path) -> VaultSettings:
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
    if s.has("auth"):
        auth = parse_with(s.section("auth"), lambda a: parse_auth(a, base, legacy=s))
    else:
        token = _credential(s, base, "token", env_default="VAULT_TOKEN", private=True)
        assert token is not None
        auth = AuthSettings(method="token", token=token, where=f"{s.where}.auth")
    if auth.method != "token" and (s.has("token_env") or s.has("token_file")):
        raise s.error(
            "token_env", f"vault.auth.method is {auth.method}: the token comes from the login"
        )
    return VaultSettings(
        addrs=tuple(n.rstrip("/") for n in nodes),
        auth=auth,
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
    # The check is the codec's own, so a mistyped recipient fails at load time with its
    # location, not at the first backup.
    recipient = s.req_str("recipient")
    try:
        parse_recipient(recipient)
    except ValueError as exc:
        raise s.error("recipient", str(exc)) from None
    return {"recipient": recipient, "identity": _path(s, "identity", base)}


def _transit_options(s: Section, base: Path) -> dict[str, Any]:
    addr = s.req_str("addr", pattern=r"https?://\S+", hint="http(s)://host:port")
    if s.has("auth"):
        auth = parse_with(
            s.section("auth"),
            lambda a: parse_auth(a, base, token_env_default=TRANSIT_TOKEN_ENV, legacy=s),
        )
    else:
        token = _credential(s, base, "token", env_default=TRANSIT_TOKEN_ENV, private=True)
        assert token is not None
        auth = AuthSettings(method="token", token=token, where=f"{s.where}.auth")
    return {
        "addr": addr.rstrip("/"),
        "key": s.req_str("key", pattern=r"[A-Za-z0-9._-]+"),
        "mount": s.text("mount", "transit", pattern=r"[A-Za-z0-9._/-]+"),
        "auth": auth,
        "namespace": s.text("namespace"),
        "ca_cert": _path(s, "ca_cert", base),
        "tls_skip_verify": s.flag("tls_skip_verify", False),
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


def default_recipient_name(kind: str, options: Mapping[str, Any]) -> str:
    """`kms-vault-backup` (alias/vault-backup), `kms-1234abcd` (a key id or ARN),
    `x25519-<8 chars of the public key>`, `keyfile-<file stem>`, `transit-<key>`."""
    if kind == "aws-kms":
        key = str(options.get("key_id", ""))
        # an alias names itself; a key id or key ARN: its first 8 characters
        tail = key.split("alias/", 1)[1] if "alias/" in key else key.rsplit("/", 1)[-1][:8]
        base = "kms-" + tail
    elif kind == "x25519":
        base = "x25519-" + str(options.get("recipient", "")).removeprefix("vdr1")[:8]
    elif kind == "keyfile":
        base = "keyfile-" + Path(str(options.get("path", "key"))).stem
    else:
        base = "transit-" + str(options.get("key", ""))
    cleaned = re.sub(r"[^A-Za-z0-9._-]", "-", base).strip("-")[:63]
    return cleaned or kind


def _unique(name: str, taken: set[str]) -> str:
    candidate, n = name, 2
    while candidate in taken:
        candidate, n = f"{name}-{n}", n + 1
    return candidate


def _encryption(s: Section, base: Path) -> EncryptionConfig:
    recipients = []
    names: set[str] = set()
    # A break-glass config may pin the writer key alone (recipients come from --identity).
    alone = s.has("writer") or s.has("allow_unsigned")
    for r in s.sections("recipients", required=not alone):
        kind = r.req_str("type", choices=tuple(RECIPIENT_OPTIONS))
        explicit = r.text("name", pattern=r"[A-Za-z0-9._-]+")
        options = RECIPIENT_OPTIONS[kind](r, base)
        # Unnamed: a name derived from the key, so it stays the same when the list is
        # reordered or grows (a position-based name moved with every edit).
        name = explicit or _unique(default_recipient_name(kind, options), names)
        if name in names:
            raise r.error("name", f"'{name}' is used by two recipients; names must be unique")
        names.add(name)
        r.done()
        recipients.append(RecipientConfig(kind, name, options, r.where))
    if not recipients and not alone:
        raise s.error("recipients", "needs at least one recipient")
    writer_public: bytes | None = None
    writer_key_file: Path | None = None
    writer_previous: tuple[bytes, ...] = ()
    if s.has("writer"):
        writer_public, writer_key_file, writer_previous = parse_with(
            s.section("writer"), lambda w: _writer(w, base)
        )
    return EncryptionConfig(
        recipients=tuple(recipients),
        frame_size=s.size("frame_size", 1 << 20, minimum=1 << 12, maximum=1 << 24),
        require_offline=s.flag("require_offline", False),
        writer_public=writer_public,
        writer_key_file=writer_key_file,
        writer_previous=writer_previous,
        allow_unsigned=s.flag("allow_unsigned", False),
    )


def _writer(s: Section, base: Path) -> tuple[bytes, Path | None, tuple[bytes, ...]]:
    """`encryption.writer`: public_key (pinned; vdrw1... from `dr keygen --writer`),
    previous_public_keys (still accepted after a rotation), and, on the backup host
    only, key_file (the private half)."""

    def parse(text: str, key: str) -> bytes:
        try:
            return parse_writer_public(text)
        except ValueError as exc:
            raise s.error(key, str(exc)) from None

    public = parse(s.req_str("public_key"), "public_key")
    previous = tuple(
        parse(text, "previous_public_keys") for text in s.str_list("previous_public_keys") or ()
    )
    key_file = _path(s, "key_file", base)
    s.done()
    return public, key_file, previous


def _seal(s: Section, base: Path) -> SealSettings:
    kind = s.req_str("type", choices=AUTO_SEALS)
    tls = TLSSettings(
        ca_cert=_path(s, "tls_ca_cert", base), skip_verify=s.flag("tls_skip_verify", False)
    )
    if kind == "transit":
        address = s.req_str("address", pattern=r"https?://\S+", hint="http(s)://host:port")
        mount = s.text("mount_path", "transit/", pattern=r"[A-Za-z0-9._/-]+") or "transit/"
        settings = SealSettings(
            type=kind,
            where=s.where,
            address=address.rstrip("/"),
            mount_path=mount.strip("/") + "/",
            key_name=s.req_str("key_name", pattern=r"[A-Za-z0-9._-]+"),
            namespace=s.text("namespace"),
            token=_credential(s, base, "token", env_default=TRANSIT_TOKEN_ENV, private=True),
            tls=tls,
            tls_server_name=s.text("tls_server_name"),
        )
    else:
        settings = SealSettings(
            type=kind,
            where=s.where,
            kms_key_id=s.req_str("kms_key_id"),
            region=s.text("region", os.environ.get("AWS_REGION", "")) or "",
            endpoint=s.text("endpoint", pattern=r"https?://\S+", hint="http(s)://host:port"),
            tls=tls,
        )
        if not settings.region:
            raise s.error("region", "is required (or AWS_REGION)")
    s.done()
    return settings


def _nodes(s: Section) -> int:
    nodes = s.integer("nodes", 1, minimum=1, maximum=3)
    if nodes == 2:  # a 2-node raft cluster has no fault tolerance: nobody runs one
        raise s.error("nodes", "must be 1 (one throwaway node) or 3 (a 3-node raft cluster)")
    return nodes


def _drill(s: Section, base: Path) -> DrillConfig:
    return DrillConfig(
        runtime=s.text("runtime", "auto", choices=("auto", "process", "container")) or "auto",
        binary=_path(s, "binary", base),
        image=s.text("image"),
        unseal_keys_file=_path(s, "unseal_keys_file", base),
        rto_objective=s.duration("rto_objective", None),
        max_backup_age=s.duration("max_backup_age", DEFAULT_MAX_BACKUP_AGE) or None,
        binary_sha256=s.text(
            "binary_sha256", pattern=r"(sha256:)?[0-9a-fA-F]{64}", hint="64 hex digits"
        ),
        image_digest=s.text(
            "image_digest", pattern=r"(sha256:)?[0-9a-fA-F]{64}", hint="sha256:<64 hex digits>"
        ),
        seal=parse_with(s.section("seal"), lambda x: _seal(x, base)) if s.has("seal") else None,
        recovery_keys_file=_path(s, "recovery_keys_file", base),
        nodes=_nodes(s),
    )


def _retention(s: Section) -> RetentionConfig:
    def count(key: str, default: int = 0) -> int:
        return s.integer(key, default, minimum=0)

    return RetentionConfig(
        keep_last=count("keep_last"),
        keep_hourly=count("keep_hourly"),
        keep_daily=count("keep_daily"),
        keep_weekly=count("keep_weekly"),
        keep_monthly=count("keep_monthly"),
        keep_yearly=count("keep_yearly"),
        min_keep=s.integer("min_keep", DEFAULT_MIN_KEEP, minimum=1),
        max_age=s.duration("max_age", None) or None,
        debris_grace=s.duration("debris_grace", DEFAULT_DEBRIS_GRACE) or 0.0,
    )


def _lock(s: Section) -> LockConfig:
    lease = s.duration("lease", DEFAULT_LOCK_LEASE) or DEFAULT_LOCK_LEASE
    if lease < 10:
        raise s.error("lease", "must be at least 10s (the holder renews it every third)")
    return LockConfig(lease=lease)


def _status(s: Section) -> StatusConfig:
    return StatusConfig(
        schedule=s.duration("schedule", DEFAULT_SCHEDULE) or DEFAULT_SCHEDULE,
        max_backup_age=s.duration("max_backup_age", DEFAULT_STATUS_BACKUP_AGE)
        or DEFAULT_STATUS_BACKUP_AGE,
        max_drill_age=s.duration("max_drill_age", DEFAULT_STATUS_DRILL_AGE)
        or DEFAULT_STATUS_DRILL_AGE,
    )


def _metrics(s: Section, base: Path) -> MetricsConfig:
    return MetricsConfig(
        textfile=_path(s, "textfile", base),
        pushgateway=s.text("pushgateway", pattern=r"https?://\S+", hint="an http(s):// URL"),
        job=s.text("job", "vault_dr", pattern=r"[A-Za-z_][A-Za-z0-9_]*") or "vault_dr",
    )


def _alerts(s: Section, base: Path) -> AlertsConfig:
    plain = s.text("webhook_url", pattern=r"https?://\S+", hint="an http(s):// URL")
    if plain is not None:
        for other in ("webhook_url_env", "webhook_url_file"):
            if s.has(other):
                raise s.error(other, "set one of webhook_url, webhook_url_env, webhook_url_file")
        webhook: Credential | None = Credential(value=plain, where=s.path("webhook_url"))
    else:
        webhook = _credential(s, base, "webhook_url", required=False)
    return AlertsConfig(
        webhook=webhook,
        format=s.text("format", "slack", choices=("slack", "generic")) or "slack",
        on_drill=s.flag("on_drill", False),
        timeout=s.duration("timeout", 10.0) or 10.0,
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
        retention=parse_with(top.section("retention"), _retention),
        lock=parse_with(top.section("lock"), _lock),
        status=parse_with(top.section("status"), _status),
        metrics=parse_with(top.section("metrics"), lambda s: _metrics(s, base_dir)),
        alerts=parse_with(top.section("alerts"), lambda s: _alerts(s, base_dir)),
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
