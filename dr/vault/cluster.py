"""The source cluster: find its active node, log in, describe the server.

Raft snapshots must come from the ACTIVE node: standbys have answered with empty or
partial snapshots (vault #8097, #12168). `connect()` therefore asks every configured
node for its seal status and `sys/leader`, refuses a sealed node or a standby with a
message naming the active node, and logs in (`dr.vault.auth`) on the active one.

`dr restore` into a cluster uses the helpers below it: addresses compared normalised
(`normalize_addr`, `merge_addrs`), the other nodes as the cluster reports them
(`ha_node_addrs`: `sys/ha-status`), and raft's members (`raft_servers`,
`raft_server_count`), each falling back (logged) when the token may not read it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
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


def normalize_addr(addr: str) -> str:
    """An API address as dr compares them: no surrounding space, no trailing slash, the
    scheme and host in lower case (they are case-insensitive; a path is kept as is)."""
    text = addr.strip().rstrip("/")
    scheme, sep, rest = text.partition("://")
    if not sep:
        return text
    host, slash, path = rest.partition("/")
    return f"{scheme.lower()}://{host.lower()}{slash}{path}"


def merge_addrs(*groups: Iterable[str]) -> list[str]:
    """The addresses of every group, normalised, in order of first appearance, each once
    (empty ones dropped): the nodes given on the command line first, then those a
    cluster reports."""
    seen: dict[str, None] = {}
    for group in groups:
        for addr in group:
            normal = normalize_addr(addr)
            if normal:
                seen.setdefault(normal, None)
    return list(seen)


def ha_node_addrs(client: VaultClient) -> list[str] | None:
    """API addresses of the cluster's nodes from `GET sys/ha-status` (authenticated,
    root namespace), or None when the node refuses it (403) or is not HA (logged at
    info: the caller goes on with the addresses it was given)."""
    reply = client.send("GET", "sys/ha-status", namespace=None)
    if not reply.ok:
        log.info(
            "Vault at %s answered %s on sys/ha-status (%s): the other nodes of its "
            "cluster are not discovered; only the given addresses are used",
            client.label,
            reply.status,
            reply.errors,
        )
        return None
    body = reply.data()
    nodes = body.get("nodes")
    if not isinstance(nodes, list):
        nodes = (body.get("data") or {}).get("nodes")
    if not isinstance(nodes, list) or not nodes:
        log.info(
            "Vault at %s lists no HA nodes on sys/ha-status: only the given addresses are used",
            client.label,
        )
        return None
    return merge_addrs(str(n.get("api_address", "")) for n in nodes if isinstance(n, dict))


def raft_servers(client: VaultClient) -> list[dict[str, Any]] | None:
    """Raft's configuration (`GET sys/storage/raft/configuration`): one dict per server,
    voters and non-voters (node_id, address, leader, voter), or None when it cannot be
    read (403, not raft; logged at info)."""
    reply = client.send("GET", "sys/storage/raft/configuration", namespace=None)
    if not reply.ok:
        log.info(
            "Vault at %s answered %s on sys/storage/raft/configuration (%s): the raft "
            "membership is not cross-checked",
            client.label,
            reply.status,
            reply.errors,
        )
        return None
    servers = ((reply.data().get("data") or {}).get("config") or {}).get("servers")
    if not isinstance(servers, list):
        return None
    return [server for server in servers if isinstance(server, dict)]


def raft_server_count(client: VaultClient) -> int | None:
    """How many servers raft's configuration holds (voters and non-voters), or None."""
    servers = raft_servers(client)
    return None if servers is None else len(servers)


def find_active(settings: VaultSettings) -> VaultClient:
    """The client of the active node among `settings.addrs` (not logged in yet)."""
    problems: list[str] = []
    unreachable: list[str] = []
    for addr in settings.addrs:
        client = client_for(settings, addr)
        try:
            state = probe_node(client)
        except VaultError as exc:
            client.close()
            problems.append(str(exc))
            unreachable.append(str(exc))
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
            if unreachable:
                # Not an error (the active node answered), but every run pays the dead
                # node's timeouts and retries first: say so.
                log.warning(
                    "WARNING: %s; went on with the active node %s; fix or remove the dead "
                    "node in vault.addrs (each run waits for it first)",
                    " | ".join(unreachable),
                    addr,
                )
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
