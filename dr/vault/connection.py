"""The one connection layer to Vault/OpenBao: every HTTP request to a Vault goes here.

`VaultClient` owns, for one node (or one address in front of a cluster):
- the HTTP session: connection pooling, timeouts, TLS trust (`ca_cert`,
  `tls_skip_verify`), and a unix-socket transport for isolated drill servers;
- the token (a fixed one, or whatever `dr.vault.auth` logged in with and keeps renewed);
- the namespace header (`X-Vault-Namespace`), per client or per request;
- retries: connection failures are retried with backoff by urllib3's `Retry` (a
  connection that was never made cannot have changed anything, so this is safe for
  every method); read errors and status codes are never retried here (invariant 7:
  retry where it is safe);
- the mapping of Vault's answers to one-line `VaultError`s naming the node and the
  operation.

This module is the only one in `dr` that imports `requests` or `urllib3`, and nothing in
`dr` imports hvac: an import-linter contract in pyproject.toml holds both. The fast read
path of the drill's checks and of the catalog walk (`dr.vault.pipelined`) speaks raw
HTTP/1.1 over sockets for speed; it is built from a client here (`read_pool`), so it
uses the same address, TLS trust, token and namespace.

Why requests and not hvac: the tool needs a dozen endpoints, streamed bodies both ways,
a unix-socket transport and exact control of headers and errors. hvac added a second
retry stack and silently ignored the CA bundle when given a session (docs/facts.md).
"""

from __future__ import annotations

import logging
import socket
import ssl
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests
import urllib3
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection
from urllib3.connectionpool import HTTPConnectionPool
from urllib3.util.retry import Retry

from dr.errors import UsageError, VaultError
from dr.vault.answers import errors_text
from dr.vault.endpoint import UNIX_BASE_URL, Endpoint

log = logging.getLogger(__name__)

NAMESPACE_HEADER = "X-Vault-Namespace"
TOKEN_HEADER = "X-Vault-Token"  # noqa: S105 - a header name


class VaultUnreachable(VaultError):
    """No HTTP answer at all (refused, timed out, TLS failure, reset)."""


@dataclass(frozen=True)
class TLSSettings:
    """How a Vault's certificate is trusted: `ca_cert` (a PEM bundle) or the system store;
    `skip_verify` turns checking off (never for production)."""

    ca_cert: Path | None = None
    skip_verify: bool = False

    def requests_verify(self) -> bool | str:
        if self.ca_cert is not None:
            return str(self.ca_cert)
        return not self.skip_verify

    def ssl_context(self) -> ssl.SSLContext:
        """The same trust for raw sockets (the pipelined reader)."""
        context = ssl.create_default_context(
            cafile=str(self.ca_cert) if self.ca_cert is not None else None
        )
        if self.skip_verify:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return context


def _describe_failure(exc: BaseException) -> str:
    text = str(exc)
    if isinstance(exc, requests.exceptions.SSLError):
        return "TLS error (check vault.ca_cert)"
    if isinstance(exc, requests.Timeout):
        return "timed out"
    if "Connection refused" in text or "Failed to establish" in text:
        return "connection refused"
    if isinstance(exc, FileNotFoundError) or "No such file" in text:
        return "socket not found"
    if isinstance(exc, requests.exceptions.ChunkedEncodingError):
        return "the connection broke off inside an answer"
    return type(exc).__name__


# --- unix-socket transport --------------------------------------------------------------
# requests has no unix-socket transport; the third-party requests-unixsocket packages
# are thinly maintained and patch URL schemes. An adapter mounted on one fixed base URL
# (the host name is never resolved) is all a drill needs.


class _UnixHTTPConnection(HTTPConnection):
    def __init__(self, socket_path: str, *args: Any, **kwargs: Any) -> None:
        super().__init__("localhost", *args, **kwargs)
        self._socket_path = socket_path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout if isinstance(self.timeout, int | float) else None)
        try:
            sock.connect(self._socket_path)
        except BaseException:
            sock.close()
            raise
        self.sock = sock


class _UnixHTTPConnectionPool(HTTPConnectionPool):
    ConnectionCls = _UnixHTTPConnection

    def __init__(self, socket_path: str, **kwargs: Any) -> None:
        super().__init__("localhost", **kwargs)
        self._socket_path = socket_path

    def _new_conn(self) -> HTTPConnection:
        return _UnixHTTPConnection(self._socket_path, timeout=self.timeout.connect_timeout)


class _UnixSocketAdapter(HTTPAdapter):
    def __init__(self, socket_path: Path, pool_maxsize: int, max_retries: Retry) -> None:
        self._socket_path = str(socket_path)
        self._pool_maxsize = pool_maxsize
        super().__init__(pool_maxsize=pool_maxsize, max_retries=max_retries)
        self._unix_pool: _UnixHTTPConnectionPool | None = None
        self._unix_lock = threading.Lock()

    def get_connection_with_tls_context(
        self,
        request: requests.PreparedRequest,
        verify: Any,
        proxies: Any = None,
        cert: Any = None,
    ) -> HTTPConnectionPool:
        with self._unix_lock:
            if self._unix_pool is None:
                self._unix_pool = _UnixHTTPConnectionPool(
                    self._socket_path,
                    maxsize=self._pool_maxsize,
                    timeout=urllib3.Timeout(connect=10, read=300),
                )
            return self._unix_pool

    def close(self) -> None:
        if self._unix_pool is not None:
            self._unix_pool.close()
        super().close()


def _retry(retries: int) -> Retry:
    return Retry(
        total=retries,
        connect=retries,
        read=0,  # a read error may mean the server acted: never repeated blindly
        status=0,
        other=0,
        backoff_factor=0.5,
        raise_on_status=False,
        allowed_methods=None,  # connect failures only: safe for every method
    )


def _session(endpoint: Endpoint, retries: int, pool_maxsize: int) -> requests.Session:
    session = requests.Session()
    retry = _retry(retries)
    if endpoint.unix_socket is not None:
        session.trust_env = False  # never a proxy for a drill's socket
        session.mount(
            UNIX_BASE_URL + "/", _UnixSocketAdapter(endpoint.unix_socket, pool_maxsize, retry)
        )
    else:
        adapter = HTTPAdapter(max_retries=retry, pool_maxsize=pool_maxsize)
        session.mount("http://", adapter)
        session.mount("https://", adapter)
        if endpoint.loopback:
            session.trust_env = False  # a proxy from the environment never serves loopback
    return session


# --- answers ---------------------------------------------------------------------------


class Reply:
    """One HTTP answer from Vault. `json()` is the decoded body (None when it is not
    JSON); `errors` is Vault's own error text, one line. A streamed reply must be
    closed (`with reply:` or `close()`)."""

    def __init__(self, resp: requests.Response, label: str) -> None:
        self._resp = resp
        self.status = int(resp.status_code)
        self.label = label
        self._doc: Any = None
        self._decoded = False

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    @property
    def reason(self) -> str:
        return str(self._resp.reason or self.status)

    def json(self) -> Any:
        if not self._decoded:
            self._decoded = True
            try:
                self._doc = self._resp.json() if self._resp.content else None
            except ValueError:  # the exception text would hold the body: drop it
                self._doc = None
        return self._doc

    def data(self) -> dict[str, Any]:
        """The answer's JSON object ({} for an empty or non-object body)."""
        doc = self.json()
        return doc if isinstance(doc, dict) else {}

    @property
    def errors(self) -> str:
        return errors_text(self.json()) or self.reason

    def iter_bytes(self, chunk: int = 1 << 20) -> Iterator[bytes]:
        """The body as it arrives; a connection that breaks off raises VaultUnreachable."""
        try:
            yield from self._resp.iter_content(chunk)
        except requests.RequestException as exc:
            raise VaultUnreachable(
                f"the answer from Vault at {self.label} broke off ({_describe_failure(exc)})"
            ) from None

    def close(self) -> None:
        self._resp.close()

    def __enter__(self) -> Reply:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


_DEFAULT: Any = object()  # "the client's own namespace"


class VaultClient:
    """One Vault address, one pooled session, one token and namespace (see module doc).

    `token` may be a string or a callable returning the current one (a login that is
    renewed or redone underneath, `dr.vault.auth`). `label` names the node in errors.
    """

    def __init__(
        self,
        endpoint: Endpoint,
        *,
        tls: TLSSettings | None = None,
        timeout: float = 60.0,
        retries: int = 3,
        namespace: str | None = None,
        token: str | Callable[[], str | None] | None = None,
        pool_maxsize: int = 16,
        label: str | None = None,
        _session_of: VaultClient | None = None,
    ) -> None:
        self.endpoint = endpoint
        self.tls = tls or TLSSettings()
        self.timeout = timeout
        self.retries = retries
        self.namespace = _clean_namespace(namespace)
        self._token = token
        self.label = label or endpoint.describe()
        self._owner = _session_of is None
        self._session: requests.Session = (
            _session_of._session if _session_of else _session(endpoint, retries, pool_maxsize)
        )
        self._session.verify = self.tls.requests_verify()

    @classmethod
    def at(cls, addr: str, **kwargs: Any) -> VaultClient:
        return cls(Endpoint(addr=addr.rstrip("/")), **kwargs)

    # --- token and namespace --------------------------------------------------------
    @property
    def token(self) -> str | None:
        token = self._token() if callable(self._token) else self._token
        return token or None

    def set_token(self, token: str | Callable[[], str | None] | None) -> None:
        self._token = token

    def with_namespace(self, namespace: str | None) -> VaultClient:
        """A client for another namespace over the same session and token."""
        return VaultClient(
            self.endpoint,
            tls=self.tls,
            timeout=self.timeout,
            retries=self.retries,
            namespace=namespace,
            token=self._token,
            label=self.label,
            _session_of=self,
        )

    def with_token(self, token: str | Callable[[], str | None] | None) -> VaultClient:
        """A client with another token over the same session."""
        child = self.with_namespace(self.namespace)
        child._token = token
        return child

    def close(self) -> None:
        if self._owner:
            self._session.close()

    def __enter__(self) -> VaultClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- requests ---------------------------------------------------------------------
    def url(self, path: str) -> str:
        return f"{self.endpoint.base_url}/v1/{path.lstrip('/')}"

    def send(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        body: Any = None,
        headers: Mapping[str, str] | None = None,
        params: Mapping[str, str] | None = None,
        auth: bool = True,
        namespace: str | None = _DEFAULT,
        timeout: float | tuple[float, float] | None = None,
        stream: bool = False,
    ) -> Reply:
        """One request to /v1/`path`. Answers of any status are returned; only a missing
        answer raises (VaultUnreachable). `auth=False` sends no token (sys/health,
        seal-status, unseal, init); `namespace=None` targets the root namespace."""
        sent: dict[str, str] = dict(headers or {})
        if auth:
            token = self.token
            if token:
                sent.setdefault(TOKEN_HEADER, token)
        ns = self.namespace if namespace is _DEFAULT else _clean_namespace(namespace)
        if ns:
            sent[NAMESPACE_HEADER] = ns
        try:
            resp = self._session.request(
                method,
                self.url(path),
                json=json,
                data=body,
                headers=sent,
                params=params,
                timeout=timeout if timeout is not None else self.timeout,
                stream=stream,
            )
        except requests.RequestException as exc:
            raise VaultUnreachable(
                f"cannot reach Vault at {self.label}: {_describe_failure(exc)}; check "
                "vault.addr and that the server is up"
            ) from None
        return Reply(resp, self.label)

    def call(
        self,
        method: str,
        path: str,
        operation: str,
        *,
        missing_ok: bool = False,
        hint: str = "",
        **kwargs: Any,
    ) -> dict[str, Any] | None:
        """A request whose failure is an error: 2xx -> the JSON object ({} when empty),
        404 -> None when `missing_ok`, anything else -> a one-line VaultError."""
        reply = self.send(method, path, **kwargs)
        if reply.ok:
            return reply.data()
        if reply.status == 404 and missing_ok:
            return None
        raise self.error(reply, operation, hint=hint)

    def read(self, path: str, operation: str, **kwargs: Any) -> dict[str, Any]:
        return self.call("GET", path, operation, **kwargs) or {}

    def list(self, path: str, operation: str, **kwargs: Any) -> list[str]:
        """LIST a folder; 404 means empty."""
        doc = self.call("LIST", path, operation, missing_ok=True, **kwargs)
        keys = (doc or {}).get("data", {}).get("keys", []) if doc else []
        return [str(k) for k in keys] if isinstance(keys, list) else []

    def write(
        self, path: str, payload: Any, operation: str, *, method: str = "PUT", **kwargs: Any
    ) -> dict[str, Any]:
        return self.call(method, path, operation, json=payload, **kwargs) or {}

    def unauthenticated(self, path: str, *, any_status: bool = False) -> dict[str, Any]:
        """An unauthenticated sys/ read (seal-status, health, leader) as a JSON object.
        `any_status`: health answers 429/472/473/501/503 with a body worth reading."""
        reply = self.send("GET", path, auth=False, namespace=None, timeout=min(self.timeout, 15))
        if not reply.ok and not (any_status and reply.status in (429, 472, 473, 501, 503)):
            raise VaultError(
                f"Vault at {self.label} answered {reply.status} on {path}: {reply.errors}"
            )
        doc = reply.json()
        if not isinstance(doc, dict):
            raise VaultError(
                f"Vault at {self.label} sent a non-JSON answer on {path}; is it Vault?"
            )
        return doc

    def health_code(self, timeout: float = 10) -> int | None:
        """sys/health status (200 active, 429 standby, 501 uninitialized, 503 sealed), or
        None when the node does not answer."""
        try:
            reply = self.send(
                "GET",
                "sys/health",
                auth=False,
                namespace=None,
                params={"standbyok": "false", "sealedcode": "503", "uninitcode": "501"},
                timeout=timeout,
            )
        except VaultError:
            return None
        reply.close()
        return reply.status

    def error(self, reply: Reply, operation: str, *, hint: str = "") -> VaultError:
        """The one-line error for a failed answer (the caller raises it)."""
        detail = reply.errors
        where = f"Vault at {self.label}"
        if self.namespace:
            where += f" (namespace {self.namespace})"
        if reply.status == 403 and self._token_invalid():
            text = (
                f"{where} denied {operation}: the token is not valid there (expired, "
                "revoked, or a token of another cluster; auth/token/lookup-self is denied "
                "too); get a new one (vault.auth) instead of changing its policy"
            )
        elif reply.status == 403:
            text = f"{where} denied {operation} (403: {detail}); " + (
                hint or "give the token the policy in docs/vault-policy.md"
            )
        elif reply.status == 401:
            text = f"{where} rejected the token for {operation} (401: {detail}); " + (
                hint or "check that it is valid and not expired"
            )
        elif reply.status == 503 and "sealed" in detail.lower():
            text = f"{where} is sealed ({operation}); unseal it first"
        else:
            text = f"{where}: {operation} failed ({reply.status}: {detail})" + (
                f"; {hint}" if hint else ""
            )
        error = VaultError(text)
        error.status = reply.status
        return error

    def _token_invalid(self) -> bool:
        """After a 403: is the token itself invalid? A valid token may look itself up
        (the default policy); an expired, revoked or foreign one is denied that too
        (OpenBao answers both with 403 "permission denied", so only this tells)."""
        if not self.token:
            return False
        try:
            probe = self.send("GET", "auth/token/lookup-self", timeout=10)
        except VaultError:
            return False  # unreachable now: say what we know, the 403
        return probe.status == 403

    # --- the fast read path -------------------------------------------------------------
    def read_pool(self, workers: int, pipeline: int, timeout: float | None = None) -> Any:
        """A `dr.vault.pipelined.ReadPool` over this client's address, trust, token and
        namespace (per request, the namespace can be overridden)."""
        from dr.vault.pipelined import ReadPool, Target

        token = self.token
        if not token:
            raise UsageError(f"no token to read from Vault at {self.label}")
        context = self.tls.ssl_context() if self.endpoint.tls else None
        return ReadPool(
            Target.of(self.endpoint, context),
            token,
            workers,
            pipeline,
            timeout if timeout is not None else self.timeout,
            namespace=self.namespace,
        )


def _clean_namespace(namespace: str | None) -> str | None:
    if not namespace:
        return None
    cleaned = namespace.strip("/")
    return cleaned or None
