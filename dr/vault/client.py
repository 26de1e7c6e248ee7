"""Talking to Vault/OpenBao: connection, leader discovery, and error mapping.

Raft snapshots must come from the ACTIVE node: standbys have answered with empty or
partial snapshots (vault #8097, #12168). `connect()` therefore asks every configured
node for its seal status and `sys/leader`, and refuses a sealed node or a standby with
a message naming the active node.

Connection failures on idempotent requests are retried with backoff by urllib3's
`Retry` mounted on the requests session that hvac uses (invariant 7: retry where it is
safe). Non-idempotent calls (snapshot restore) are never retried.
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import hvac
import hvac.exceptions
import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from dr.config import VaultConfig
from dr.errors import VaultError

log = logging.getLogger(__name__)


def make_session(retries: int) -> requests.Session:
    session = requests.Session()
    retry = Retry(
        total=retries,
        connect=retries,
        read=0,  # a read error may mean the server acted: do not repeat blindly
        status=0,
        backoff_factor=0.5,
        allowed_methods=frozenset({"GET", "HEAD", "LIST", "OPTIONS"}),
        raise_on_status=False,
    )
    adapter = HTTPAdapter(max_retries=retry, pool_maxsize=16)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


def tls_context(config: VaultConfig, addr: str) -> ssl.SSLContext | None:
    """The TLS trust of `vault.ca_cert` / `vault.tls_skip_verify` for raw sockets."""
    if not addr.startswith("https://"):
        return None
    cafile = str(config.ca_cert) if config.ca_cert else None
    context = ssl.create_default_context(cafile=cafile)
    if config.tls_skip_verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


@dataclass(frozen=True)
class ServerInfo:
    addr: str
    product: str  # "openbao" | "vault"
    version: str
    cluster_id: str
    cluster_name: str
    storage_type: str


def _describe_request_error(addr: str, exc: Exception) -> str:
    text = str(exc)
    if "Connection refused" in text or "Failed to establish" in text:
        cause = "connection refused"
    elif isinstance(exc, requests.Timeout):
        cause = "timed out"
    elif isinstance(exc, requests.exceptions.SSLError):
        cause = "TLS error (check vault.ca_cert)"
    else:
        cause = type(exc).__name__
    return f"cannot reach Vault at {addr}: {cause}; check vault.addr and that the server is up"


@contextmanager
def vault_errors(operation: str, addr: str) -> Iterator[None]:
    """Turn hvac/requests exceptions into one-line VaultErrors naming the operation."""
    try:
        yield
    except hvac.exceptions.Forbidden as exc:
        raise VaultError(
            f"Vault at {addr} denied {operation} (403: {_errors(exc)}); give the token the "
            "policy in docs/vault-policy.md"
        ) from None
    except hvac.exceptions.Unauthorized as exc:
        raise VaultError(
            f"Vault at {addr} rejected the token for {operation} (401: {_errors(exc)}); "
            "check that it is valid and not expired"
        ) from None
    except hvac.exceptions.VaultDown:
        raise VaultError(f"Vault at {addr} is sealed ({operation}); unseal it first") from None
    except hvac.exceptions.VaultError as exc:
        raise VaultError(f"Vault at {addr}: {operation} failed: {_errors(exc)}") from None
    except requests.RequestException as exc:
        raise VaultError(_describe_request_error(addr, exc)) from None


def one_line(text: str) -> str:
    """Vault's multi-error text ("1 error occurred:\n\t* permission denied\n\n") as
    one line ("permission denied"): every user-facing error is a single line."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if len(lines) > 1 and lines[0].endswith("occurred:"):
        lines = [line.removeprefix("* ") for line in lines[1:]]
    return "; ".join(lines)


def response_errors(resp: requests.Response) -> str:
    """Vault's `errors` of a requests answer, one line, else the HTTP reason."""
    try:
        errors = resp.json().get("errors")
    except (ValueError, AttributeError):
        errors = None
    if isinstance(errors, list) and errors:
        return "; ".join(one_line(str(e)) for e in errors)[:300]
    return resp.reason or str(resp.status_code)


def _errors(exc: hvac.exceptions.VaultError) -> str:
    errors = getattr(exc, "errors", None)
    if isinstance(errors, list) and errors:
        return "; ".join(one_line(str(e)) for e in errors)[:300]
    return one_line(str(exc))[:300] or type(exc).__name__


class VaultConnection:
    """An authenticated client bound to the active node."""

    def __init__(self, config: VaultConfig, addr: str, token: str) -> None:
        self.config = config
        self.addr = addr
        self.session = make_session(config.connect_retries)
        verify: bool | str = not config.tls_skip_verify
        if config.ca_cert is not None:
            verify = str(config.ca_cert)
        # hvac ignores its `verify` argument when given a session whose own `verify` is
        # truthy (the default True): set it on the session, or ca_cert is never used.
        self.session.verify = verify
        self.client = hvac.Client(
            url=addr,
            token=token,
            timeout=config.timeout,
            verify=verify,
            namespace=config.namespace,
            session=self.session,
        )

    def get(self, path: str, operation: str) -> Any:
        with vault_errors(operation, self.addr):
            return self.client.adapter.get(path)

    def list(self, path: str, operation: str) -> list[str]:
        """LIST a path; a 404 means an empty folder."""
        with vault_errors(operation, self.addr):
            try:
                resp = self.client.adapter.list(path)
            except hvac.exceptions.InvalidPath:
                return []
        if not resp:
            return []
        keys = resp.get("data", {}).get("keys", []) if isinstance(resp, dict) else []
        return [str(k) for k in keys]

    def server_info(self) -> ServerInfo:
        status = _unauth_json(self.session, self.addr, "sys/seal-status", self.config)
        product = "openbao"
        mounts = self.get("/v1/sys/mounts", "read sys/mounts")
        data = mounts.get("data", mounts) if isinstance(mounts, dict) else {}
        for mount in data.values() if isinstance(data, dict) else []:
            running = (
                str(mount.get("running_plugin_version", "")) if isinstance(mount, dict) else ""
            )
            if running.endswith("+builtin.vault"):
                product = "vault"
                break
        return ServerInfo(
            addr=self.addr,
            product=product,
            version=str(status.get("version", "")),
            cluster_id=str(status.get("cluster_id", "")),
            cluster_name=str(status.get("cluster_name", "")),
            storage_type=str(status.get("storage_type", "")),
        )

    def server_time(self) -> int:
        """Server clock (UTC seconds) from sys/health; kv-v2 metadata uses this clock."""
        health = _unauth_json(self.session, self.addr, "sys/health", self.config, any_status=True)
        return int(health.get("server_time_utc", 0))


def _unauth_json(
    session: requests.Session,
    addr: str,
    path: str,
    config: VaultConfig,
    *,
    any_status: bool = False,
) -> dict[str, Any]:
    verify: bool | str = str(config.ca_cert) if config.ca_cert else not config.tls_skip_verify
    try:
        resp = session.get(f"{addr}/v1/{path}", timeout=min(config.timeout, 15), verify=verify)
    except requests.RequestException as exc:
        raise VaultError(_describe_request_error(addr, exc)) from None
    if resp.status_code >= 400 and not (
        any_status and resp.status_code in (429, 472, 473, 501, 503)
    ):
        raise VaultError(f"Vault at {addr} answered {resp.status_code} on {path}")
    try:
        body = resp.json()
    except ValueError:
        raise VaultError(
            f"Vault at {addr} sent a non-JSON answer on {path}; is it Vault?"
        ) from None
    return body if isinstance(body, dict) else {}


@dataclass(frozen=True)
class NodeState:
    addr: str
    sealed: bool
    initialized: bool
    is_self: bool
    leader_address: str


def probe_node(session: requests.Session, addr: str, config: VaultConfig) -> NodeState:
    status = _unauth_json(session, addr, "sys/seal-status", config)
    sealed = bool(status.get("sealed", True))
    leader: dict[str, Any] = {}
    if not sealed:
        leader = _unauth_json(session, addr, "sys/leader", config)
    return NodeState(
        addr=addr,
        sealed=sealed,
        initialized=bool(status.get("initialized", False)),
        is_self=bool(leader.get("is_self", not leader.get("ha_enabled", True))),
        leader_address=str(leader.get("leader_address", "")),
    )


def connect(config: VaultConfig, token: str) -> VaultConnection:
    """Find the active node among `config.addrs`; refuse standbys and sealed nodes."""
    session = make_session(config.connect_retries)
    problems: list[str] = []
    states: list[NodeState] = []
    for addr in config.addrs:
        try:
            state = probe_node(session, addr, config)
        except VaultError as exc:
            problems.append(str(exc))
            continue
        states.append(state)
        if not state.initialized:
            problems.append(f"Vault at {addr} is not initialized")
        elif state.sealed:
            problems.append(
                f"Vault at {addr} is sealed; unseal it or point vault.addr at an unsealed "
                "active node"
            )
        elif state.is_self:
            log.debug("active node: %s", addr)
            return VaultConnection(config, addr, token)
        else:
            leader = state.leader_address or "unknown"
            problems.append(
                f"Vault at {addr} is a standby (the active node is {leader}); raft snapshots "
                "must come from the active node: set vault.addr to it or list every node in "
                "vault.addrs"
            )
    if len(problems) == 1:
        raise VaultError(problems[0])
    raise VaultError("no active Vault node among vault.addrs: " + " | ".join(problems))
