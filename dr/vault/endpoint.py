"""How the host reaches a throwaway Vault: TCP on loopback, or a unix socket.

An isolated drill instance has no network but loopback (a private network namespace,
or a container with network "none"), so the host cannot reach its TCP listener. A unix
socket in a shared directory crosses that boundary because it lives in the filesystem
(FACTS.md). requests, and so hvac, has no unix-socket transport; `UnixSocketAdapter`
is the small adapter it needs (the third-party requests-unixsocket packages are thinly
maintained and patch URL schemes; an adapter mounted on one fixed base URL is simpler).
"""

from __future__ import annotations

import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests
import urllib3
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection
from urllib3.connectionpool import HTTPConnectionPool

# Requests to this base URL go through the unix socket; the host name is never resolved.
UNIX_BASE_URL = "http://drill.sock"


class _UnixHTTPConnection(HTTPConnection):
    def __init__(self, socket_path: str, *args: Any, **kwargs: Any) -> None:
        super().__init__("localhost", *args, **kwargs)
        self._socket_path = socket_path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout if isinstance(self.timeout, int | float) else None)
        sock.connect(self._socket_path)
        self.sock = sock


class _UnixHTTPConnectionPool(HTTPConnectionPool):
    ConnectionCls = _UnixHTTPConnection

    def __init__(self, socket_path: str, **kwargs: Any) -> None:
        super().__init__("localhost", **kwargs)
        self._socket_path = socket_path

    def _new_conn(self) -> HTTPConnection:
        return _UnixHTTPConnection(self._socket_path, timeout=self.timeout.connect_timeout)


class UnixSocketAdapter(HTTPAdapter):
    """A requests adapter that sends every request to one unix socket."""

    def __init__(self, socket_path: Path, pool_maxsize: int = 8) -> None:
        self._socket_path = str(socket_path)
        self._pool_maxsize = pool_maxsize
        super().__init__(pool_maxsize=pool_maxsize)
        self._pool: _UnixHTTPConnectionPool | None = None

    def get_connection_with_tls_context(
        self,
        request: requests.PreparedRequest,
        verify: Any,
        proxies: Any = None,
        cert: Any = None,
    ) -> HTTPConnectionPool:
        if self._pool is None:
            self._pool = _UnixHTTPConnectionPool(
                self._socket_path,
                maxsize=self._pool_maxsize,
                timeout=urllib3.Timeout(connect=10, read=300),
            )
        return self._pool

    def close(self) -> None:
        if self._pool is not None:
            self._pool.close()
        super().close()


@dataclass(frozen=True)
class Endpoint:
    """Where a Vault answers: `addr` (TCP) or `unix_socket` (preferred when set)."""

    addr: str | None = None
    unix_socket: Path | None = None

    @property
    def base_url(self) -> str:
        if self.unix_socket is not None:
            return UNIX_BASE_URL
        assert self.addr is not None
        return self.addr.rstrip("/")

    def describe(self) -> str:
        return f"unix:{self.unix_socket}" if self.unix_socket is not None else str(self.addr)

    def session(self, pool_maxsize: int = 8) -> requests.Session:
        session = requests.Session()
        session.trust_env = False  # never a proxy from the environment for a drill
        if self.unix_socket is not None:
            session.mount(UNIX_BASE_URL + "/", UnixSocketAdapter(self.unix_socket, pool_maxsize))
        else:
            adapter = HTTPAdapter(pool_maxsize=pool_maxsize)
            session.mount("http://", adapter)
            session.mount("https://", adapter)
        return session

    def hvac_client(self, token: str | None = None, timeout: float = 300) -> Any:
        import hvac

        return hvac.Client(url=self.base_url, token=token, session=self.session(), timeout=timeout)
