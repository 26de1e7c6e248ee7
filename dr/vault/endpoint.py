"""Where a Vault answers: TCP (`addr`) or a unix socket.

An isolated drill instance has no network but loopback (a private network namespace,
or a container with network "none"), so the host cannot reach its TCP listener. A unix
socket in a shared directory crosses that boundary because it lives in the filesystem
(FACTS.md). `dr.vault.connection` carries requests over either; this module only says
where, so the drill runtimes can describe a server without importing a transport.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

# Requests to this base URL go through the unix socket; the host name is never resolved.
UNIX_BASE_URL = "http://drill.sock"
_LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1", "[::1]")


@dataclass(frozen=True)
class Endpoint:
    """`addr` (TCP, http or https) or `unix_socket` (preferred when set)."""

    addr: str | None = None
    unix_socket: Path | None = None

    @property
    def base_url(self) -> str:
        if self.unix_socket is not None:
            return UNIX_BASE_URL
        assert self.addr is not None
        return self.addr.rstrip("/")

    @property
    def tls(self) -> bool:
        return self.unix_socket is None and bool(self.addr) and str(self.addr).startswith("https:")

    @property
    def loopback(self) -> bool:
        if self.unix_socket is not None:
            return True
        host = urlsplit(self.addr or "").hostname or ""
        return host in _LOOPBACK_HOSTS or host.startswith("127.")

    def describe(self) -> str:
        return f"unix:{self.unix_socket}" if self.unix_socket is not None else str(self.addr)
