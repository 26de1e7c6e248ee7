"""The source cluster: find its active node, log in, describe the server.

Raft snapshots must come from the ACTIVE node: standbys have answered with empty or
partial snapshots (vault #8097, #12168). `connect()` therefore asks every configured
node for its seal status and `sys/leader`, refuses a sealed node or a standby with a
message naming the active node, and logs in (`dr.vault.auth`) on the active one.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from dr.errors import VaultError
from dr.vault.auth import Login
from dr.vault.connection import VaultClient
from dr.vault.settings import VaultSettings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServerInfo:
    addr: str
    product: str  # "openbao" | "vault"
    version: str
    cluster_id: str
    cluster_name: str
    storage_type: str


@dataclass(frozen=True)
class NodeState:
    addr: str
    sealed: bool
    initialized: bool
    is_self: bool
    leader_address: str


def client_for(settings: VaultSettings, addr: str, *, retries: int | None = None) -> VaultClient:
    """A client for one node with the configured trust, timeout, retries and namespace."""
    return VaultClient.at(
        addr,
        tls=settings.tls,
        timeout=settings.timeout,
        retries=settings.connect_retries if retries is None else retries,
        namespace=settings.namespace,
    )


def probe_node(client: VaultClient) -> NodeState:
    status = client.unauthenticated("sys/seal-status")
    sealed = bool(status.get("sealed", True))
    leader: dict[str, Any] = {}
    if not sealed:
        leader = client.unauthenticated("sys/leader")
    return NodeState(
        addr=client.label,
        sealed=sealed,
        initialized=bool(status.get("initialized", False)),
        is_self=bool(leader.get("is_self", not leader.get("ha_enabled", True))),
        leader_address=str(leader.get("leader_address", "")),
    )


class ActiveVault:
    """The logged-in client of the active node; `close()` revokes a login token."""

    def __init__(self, settings: VaultSettings, client: VaultClient) -> None:
        self.settings = settings
        self.client = client
        self.addr = client.label
        self.login = Login(settings.auth, client)
        client.set_token(self.login.token)

    def start(self) -> ActiveVault:
        self.login.start()
        return self

    def close(self) -> None:
        try:
            self.login.close()
        finally:
            self.client.close()

    def __enter__(self) -> ActiveVault:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def server_info(self) -> ServerInfo:
        status = self.client.unauthenticated("sys/seal-status")
        product = "openbao"
        mounts = self.client.read("sys/mounts", "read sys/mounts")
        data = mounts.get("data", mounts)
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
        health = self.client.unauthenticated("sys/health", any_status=True)
        return int(health.get("server_time_utc", 0))


def find_active(settings: VaultSettings) -> VaultClient:
    """The client of the active node among `settings.addrs` (not logged in yet)."""
    problems: list[str] = []
    for addr in settings.addrs:
        client = client_for(settings, addr)
        try:
            state = probe_node(client)
        except VaultError as exc:
            client.close()
            problems.append(str(exc))
            continue
        if not state.initialized:
            problems.append(f"Vault at {addr} is not initialized")
        elif state.sealed:
            problems.append(
                f"Vault at {addr} is sealed; unseal it or point vault.addr at an unsealed "
                "active node"
            )
        elif state.is_self:
            log.debug("active node: %s", addr)
            return client
        else:
            leader = state.leader_address or "unknown"
            problems.append(
                f"Vault at {addr} is a standby (the active node is {leader}); raft snapshots "
                "must come from the active node: set vault.addr to it or list every node in "
                "vault.addrs"
            )
        client.close()
    if len(problems) == 1:
        raise VaultError(problems[0])
    raise VaultError("no active Vault node among vault.addrs: " + " | ".join(problems))


def connect(settings: VaultSettings) -> ActiveVault:
    """Find the active node and log in there (close the result to revoke the login)."""
    active = ActiveVault(settings, find_active(settings))
    try:
        return active.start()
    except BaseException:
        active.close()
        raise
