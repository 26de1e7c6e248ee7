"""An N-node OpenBao raft cluster on loopback, built from LocalBao nodes.

Node 1 is initialized (`shares`/`threshold`), autopilot's `server_stabilization_time`
is set low (FACTS.md: 2 s brings a 3-node cluster up in about 12 s instead of 22 s),
nodes 2..N `join` node 1 and are unsealed with its keys; `start_cluster` returns once
every follower is a raft voter and answers as an unsealed standby. `start_clusters`
forms several side by side (about 12 s for three 3-node clusters on 2 cores). `stop()`
(or leaving the `with` block) stops every node, also when start-up failed half way.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

from dr.errors import VaultError
from dr.vault.localserver import InitResult, LocalBao


@dataclass
class BaoCluster:
    """Running nodes of one raft cluster; `nodes[0]` was initialized (the first leader)."""

    nodes: list[LocalBao]
    init_result: InitResult | None = field(default=None, repr=False)

    @property
    def addrs(self) -> list[str]:
        return [node.addr for node in self.nodes]

    @property
    def root_token(self) -> str:
        if self.init_result is None:
            raise VaultError("cluster not initialized")
        return self.init_result.root_token

    @property
    def keys_b64(self) -> list[str]:
        if self.init_result is None:
            raise VaultError("cluster not initialized")
        return list(self.init_result.keys_b64)

    def __iter__(self) -> Iterator[LocalBao]:
        return iter(self.nodes)

    def active(self) -> LocalBao:
        """The node answering sys/health 200 (the raft leader)."""
        found = [node for node in self.nodes if node.health_code() == 200]
        if len(found) != 1:
            codes = {node.addr: node.health_code() for node in self.nodes}
            raise VaultError(f"expected exactly one active node, health: {codes}")
        return found[0]

    def standbys(self) -> list[LocalBao]:
        leader = self.active()
        return [node for node in self.nodes if node is not leader]

    def raft_servers(self, token: str | None = None) -> list[dict[str, Any]]:
        """`sys/storage/raft/configuration` servers, read through the active node."""
        client = self.active().vault(token or self.root_token)
        with client:
            body = client.read("sys/storage/raft/configuration", "read raft configuration")
        return list(body.get("data", {}).get("config", {}).get("servers", []))

    def wait_voters(self, timeout: float = 60) -> None:
        """Until every node is a raft voter, one is active and the others are standbys."""
        deadline = time.monotonic() + timeout
        last: Any = None
        while True:
            try:
                servers = self.raft_servers()
                last = [(s.get("node_id"), s.get("voter")) for s in servers]
                codes = sorted(node.health_code() or 0 for node in self.nodes)
                if (
                    len(servers) == len(self.nodes)
                    and all(s.get("voter") is True for s in servers)
                    and codes == [200] + [429] * (len(self.nodes) - 1)
                ):
                    return
            except VaultError as exc:
                last = str(exc)
            if time.monotonic() > deadline:
                raise VaultError(f"raft cluster not settled within {timeout:g} s: {last}")
            time.sleep(0.2)

    def stop(self) -> None:
        for node in reversed(self.nodes):
            with contextlib.suppress(Exception):
                node.stop()

    def __enter__(self) -> BaoCluster:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def set_stabilization_time(leader: LocalBao, seconds: float, token: str) -> None:
    """Autopilot promotes a joined non-voter after `server_stabilization_time`."""
    with leader.vault(token) as client:
        client.write(
            "sys/storage/raft/autopilot/configuration",
            {"server_stabilization_time": f"{seconds:g}s"},
            "set the autopilot configuration",
            method="POST",
        )


def new_cluster(
    workdir: Path, *, binary: Path | None = None, size: int = 3, name: str = "node"
) -> BaoCluster:
    """`size` nodes under `workdir` (`<name>-1` .. `<name>-N`), not started yet."""
    return BaoCluster(
        [
            LocalBao(workdir / f"{name}-{i}", binary=binary, node_id=f"{name}-{i}")
            for i in range(1, size + 1)
        ]
    )


def form_cluster(
    cluster: BaoCluster,
    *,
    shares: int = 1,
    threshold: int = 1,
    stabilization_time: float = 2.0,
    timeout: float = 90,
) -> BaoCluster:
    """Initialize node 1, set autopilot's stabilization time, join and unseal the others,
    wait for voters. HTTP only: may run in a worker thread (see `start_clusters`)."""
    leader = cluster.nodes[0]
    cluster.init_result = leader.init(shares, threshold)
    if stabilization_time and len(cluster.nodes) > 1:
        set_stabilization_time(leader, stabilization_time, cluster.root_token)
    for node in cluster.nodes[1:]:
        node.join(leader)
    cluster.wait_voters(timeout=timeout)
    return cluster


def start_cluster(
    workdir: Path,
    *,
    binary: Path | None = None,
    size: int = 3,
    shares: int = 1,
    threshold: int = 1,
    name: str = "node",
    stabilization_time: float = 2.0,
    timeout: float = 90,
) -> BaoCluster:
    """Start `size` nodes under `workdir` as one raft cluster initialized with
    `shares`/`threshold` (see the module doc). The caller stops it."""
    (cluster,) = start_clusters(
        [
            dict(
                workdir=workdir,
                size=size,
                shares=shares,
                threshold=threshold,
                name=name,
                stabilization_time=stabilization_time,
            )
        ],
        binary=binary,
        timeout=timeout,
    )
    return cluster


def start_clusters(
    specs: list[dict[str, Any]], *, binary: Path | None = None, timeout: float = 90
) -> list[BaoCluster]:
    """Several clusters at once (each spec: workdir, size, shares, threshold, name,
    stabilization_time). Most of a cluster's start-up is autopilot's stabilization wait,
    so they are formed side by side. The server processes are spawned HERE, in the
    caller's thread, never in a worker: LocalBao's servers die with the thread that
    spawned them (PR_SET_PDEATHSIG). On any failure every node of every cluster stops."""
    clusters = [
        new_cluster(spec["workdir"], binary=binary, size=spec.get("size", 3), name=spec["name"])
        for spec in specs
    ]
    try:
        for cluster in clusters:
            for node in cluster.nodes:
                node.start()
        with ThreadPoolExecutor(max_workers=len(clusters)) as pool:
            futures = [
                pool.submit(
                    form_cluster,
                    cluster,
                    shares=spec.get("shares", 1),
                    threshold=spec.get("threshold", 1),
                    stabilization_time=spec.get("stabilization_time", 2.0),
                    timeout=timeout,
                )
                for cluster, spec in zip(clusters, specs, strict=True)
            ]
            for future in futures:
                future.result()
    except BaseException:
        for cluster in clusters:
            cluster.stop()
        raise
    return clusters
