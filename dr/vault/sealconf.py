"""The seal of a cluster: what a backup records, and what a drill or restore needs.

A raft snapshot of an auto-unseal cluster (transit, awskms, ...) holds its barrier
keyring wrapped by the SEAL key, not by unseal keys: only a server configured with the
same seal, and credentials that may use it, can open it. Its recovery keys authorize
generate-root; they decrypt nothing (vault #15490, #6046; FACTS.md).

- `SealRecord`: what `dr backup` writes into the manifest (`vault.seal`): the type and
  threshold from `sys/seal-status`, and what identifies the seal key. The API exposes
  only the type (`sys/config/state/sanitized` lists `{type, disabled}`), so the key's
  identity is taken from `drill.seal` when that names the same type, and marked so.
- `SealSettings`: `drill.seal` (docs/config.md), the seal stanza the throwaway server (or
  the restore's preflight) uses. Secrets are never in the config file: the transit token
  comes from `token_env`/`token_file`, AWS credentials from the standard AWS chain.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from dr.errors import UsageError
from dr.vault.auth import Credential
from dr.vault.connection import TLSSettings

SHAMIR = "shamir"
AUTO_SEALS = ("transit", "awskms")


@dataclass(frozen=True)
class SealRecord:
    """The source cluster's seal as recorded at backup time."""

    type: str = SHAMIR
    threshold: int = 0  # unseal threshold (shamir) or recovery threshold (auto-unseal)
    shares: int = 0
    recovery_seal: bool = False
    key: dict[str, str] = field(default_factory=dict)  # identifies the seal key
    key_source: str = ""  # where `key` came from ("drill.seal"), "" when unknown

    @property
    def auto(self) -> bool:
        return self.type != SHAMIR

    def to_json(self) -> dict[str, Any]:
        return {
            "type": self.type,
            "threshold": self.threshold,
            "shares": self.shares,
            "recovery_seal": self.recovery_seal,
            "key": dict(self.key),
            "key_source": self.key_source,
        }

    @classmethod
    def from_json(cls, data: Any) -> SealRecord:
        """From a manifest's `vault.seal`; a manifest older than this field: shamir with
        an unknown threshold (every backup before it came from Shamir clusters)."""
        if not isinstance(data, dict):
            return cls()
        key = data.get("key")
        return cls(
            type=str(data.get("type") or SHAMIR),
            threshold=_small_int(data.get("threshold")),
            shares=_small_int(data.get("shares")),
            recovery_seal=bool(data.get("recovery_seal", False)),
            key={str(k): str(v) for k, v in key.items()} if isinstance(key, dict) else {},
            key_source=str(data.get("key_source") or ""),
        )

    @classmethod
    def of_status(cls, status: dict[str, Any], declared: SealSettings | None) -> SealRecord:
        kind = str(status.get("type") or SHAMIR)
        key: dict[str, str] = {}
        source = ""
        if declared is not None and declared.type == kind:
            key, source = declared.identity(), "drill.seal"
        return cls(
            type=kind,
            threshold=_small_int(status.get("t")),
            shares=_small_int(status.get("n")),
            recovery_seal=bool(status.get("recovery_seal", False)),
            key=key,
            key_source=source,
        )

    def describe(self) -> str:
        """For `dr list`: `shamir 3/5`, `transit 3/5 (transit/autounseal at https://...)`."""
        quorum = f" {self.threshold}/{self.shares}" if self.threshold else ""
        text = f"{self.type}{quorum}"
        if self.key:
            text += f" ({describe_key(self.type, self.key)})"
        return text


def _small_int(value: Any) -> int:
    return value if isinstance(value, int) and 0 <= value <= 255 else 0


def describe_key(kind: str, key: dict[str, str]) -> str:
    if kind == "transit":
        return f"{key.get('mount_path', '')}{key.get('key_name', '')} at {key.get('address', '')}"
    if kind == "awskms":
        return f"KMS key {key.get('kms_key_id', '')} in {key.get('region', '')}"
    return json.dumps(key, sort_keys=True)


@dataclass(frozen=True)
class SealSettings:
    """`drill.seal`: the seal stanza of the throwaway / the target, without secrets."""

    type: str
    where: str = "drill.seal"
    # transit
    address: str = ""
    mount_path: str = "transit/"
    key_name: str = ""
    namespace: str | None = None
    token: Credential | None = None
    tls: TLSSettings = field(default_factory=TLSSettings)
    tls_server_name: str | None = None
    # awskms
    kms_key_id: str = ""
    region: str = ""
    endpoint: str | None = None

    def identity(self) -> dict[str, str]:
        """What identifies the seal key (compared with the backup's record)."""
        if self.type == "transit":
            return {
                "address": self.address,
                "mount_path": self.mount_path,
                "key_name": self.key_name,
                **({"namespace": self.namespace} if self.namespace else {}),
            }
        return {"kms_key_id": self.kms_key_id, "region": self.region}

    def describe(self) -> str:
        return f"{self.type} seal ({describe_key(self.type, self.identity())})"

    def host_port(self) -> tuple[str, int, bool]:
        """(host, port, tls) of the endpoint the seal talks to (transit address, or
        the KMS endpoint)."""
        url = self.address if self.type == "transit" else (self.endpoint or "")
        if not url:
            url = f"https://kms.{self.region}.amazonaws.com"
        parts = urlsplit(url)
        tls = parts.scheme == "https"
        host = parts.hostname or ""
        if not host:
            raise UsageError(f"{self.where}: cannot tell the host of {url!r}")
        return host, parts.port or (443 if tls else 80), tls

    def check_matches(self, record: SealRecord) -> None:
        """Refuse, naming both, when the backup's seal and this one disagree."""
        if record.type != self.type:
            raise UsageError(
                f"the backup was taken from a cluster with the {record.type} seal but "
                f"{self.where} is a {self.type} seal; configure {self.where} as the source "
                "cluster's seal stanza"
            )
        for name, want in record.key.items():
            have = self.identity().get(name, "")
            if have != want:
                raise UsageError(
                    f"the backup's seal key is {describe_key(record.type, record.key)} but "
                    f"{self.where} names {describe_key(self.type, self.identity())} "
                    f"({name}: {want!r} != {have!r}); point {self.where} at the source's seal key"
                )


def hcl_string(value: str) -> str:
    """A quoted HCL string (JSON escaping is valid HCL for these values)."""
    return json.dumps(value)


def server_stanza(settings: SealSettings, *, address: str, secrets: dict[str, str]) -> str:
    """The `seal "TYPE" {...}` block of a throwaway server. `address` is the seal's
    endpoint AS THE SERVER SEES IT (the drill's relay socket); `secrets` holds the
    token or AWS credentials, written only into the 0600 config file of the server."""
    lines: list[str] = []
    if settings.type == "transit":
        lines += [
            f"address    = {hcl_string(address)}",
            f"mount_path = {hcl_string(settings.mount_path)}",
            f"key_name   = {hcl_string(settings.key_name)}",
            f"token      = {hcl_string(secrets['token'])}",
        ]
        if settings.namespace:
            lines.append(f"namespace  = {hcl_string(settings.namespace)}")
    elif settings.type == "awskms":
        lines += [
            f"kms_key_id = {hcl_string(settings.kms_key_id)}",
            f"region     = {hcl_string(settings.region)}",
            f"endpoint   = {hcl_string(address)}",
        ]
        for name in ("access_key", "secret_key", "session_token"):
            if secrets.get(name):
                lines.append(f"{name} = {hcl_string(secrets[name])}")
    else:  # pragma: no cover - the config parser allows only AUTO_SEALS
        raise UsageError(f"{settings.where}: unsupported seal type {settings.type}")
    body = "\n".join(f"  {line}" for line in lines)
    return f'\nseal "{settings.type}" {{\n{body}\n}}\n'
