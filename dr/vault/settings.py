"""Plain typed settings of the Vault layer (the `vault:` section of dr.yaml).

`dr.config` parses YAML into these; nothing in `dr.vault` reads the application config.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from dr.vault.auth import AuthSettings
from dr.vault.connection import TLSSettings


@dataclass(frozen=True)
class VaultSettings:
    addrs: tuple[str, ...]
    auth: AuthSettings = field(default_factory=AuthSettings)
    namespace: str | None = None
    timeout: float = 60.0
    ca_cert: Path | None = None
    tls_skip_verify: bool = False
    connect_retries: int = 3

    @property
    def tls(self) -> TLSSettings:
        return TLSSettings(ca_cert=self.ca_cert, skip_verify=self.tls_skip_verify)


# The vault section of a config without one (break-glass): no node to back up from.
NO_VAULT = VaultSettings(addrs=())
