"""Several raft nodes as one cluster: join, unseal every node after a restore, wait for
one active node and serving standbys.

After `snapshot-force` on the leader of a multi-node cluster every node seals itself
within about 6 s and each needs the SOURCE cluster's keys (Shamir), or opens itself
through the seal (auto-unseal); the target keeps its own raft membership (FACTS.md).
Unsealing only the leader leaves raft without quorum: nothing becomes active.

Only VOTERS seal themselves reliably: a node joined moments ago is a non-voter until
autopilot promotes it (server_stabilization_time, 10 s by default), and a non-voter
that installs a foreign snapshot was seen (4 runs of 5, 5,000 secrets) to stay
unsealed with its old keyring, answering 500 "decryption failed: cipher: message
authentication failed" to everything until restarted (docs/facts.md). A drill's
throwaway cluster therefore waits until every node is a voter before the restore.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

from dr.errors import VaultError
from dr.vault.connection import VaultClient
from dr.vault.seal import Node, SourceKey, UnsealKeys

log = logging.getLogger(__name__)

ACTIVE, STANDBY, SEALED, UNREACHABLE = "active", "standby", "sealed", "unreachable"
# sys/health codes (standbyok=false, sealedcode=503) and the role each one means.
HEALTH_ROLES = {200: ACTIVE, 429: STANDBY, 503: SEALED}


def role(node: Node) -> str:
    """active (health 200), standby (429), sealed (503), else unreachable/other."""
    code = node.health_code()
    if code is None:
        return UNREACHABLE
    return HEALTH_ROLES.get(code, f"health {code}")


def join(
    follower: Node, leader_api_addr: str, keys: UnsealKeys | None, timeout: float = 60
) -> None:
    """Join `follower` to the raft cluster whose leader is at `leader_api_addr` (as the
    follower reaches it) and unseal it with the cluster's keys (None: auto-unseal)."""
    body = follower.client.write(
        "sys/storage/raft/join",
        {"leader_api_addr": leader_api_addr},
        "raft join",
        method="POST",
        auth=False,
        namespace=None,
        timeout=timeout,
    )
    if body.get("joined") is not True:
        raise VaultError(f"{follower.label}: raft join to {leader_api_addr} refused: {body}")
    deadline = time.monotonic() + timeout
    # Unseal completes the join (the node answers the leader's challenge); until the
    # leader has the node's answer, an unseal may report "still sealed".
    while keys is not None:
        try:
            follower.unseal(keys)
            break
        except VaultError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
    follower.wait("a standby", lambda: role(follower) == STANDBY, deadline - time.monotonic())


def unseal_all_after_restore(
    nodes: Sequence[Node], keys: UnsealKeys | None, *, reseal_timeout: float = 60
) -> SourceKey | None:
    """A forced restore into a Shamir cluster: wait for each node to seal, unseal each
    with the SOURCE keys (each node may ask its own threshold). The key that opened
    them. Auto-unseal (keys None): nothing to submit, the nodes open themselves."""
    if keys is None:
        return None
    opened: SourceKey | None = None
    for node in nodes:
        node.wait_sealed(timeout=reseal_timeout)
    for node in nodes:
        key = node.unseal(keys)
        if key is not None:
            node.source_key = key
            opened = opened or key
    return opened


def wait_one_active(nodes: Sequence[Node], timeout: float = 120) -> Node:
    """Wait until exactly one node is active and every other one an unsealed standby;
    the active node."""
    deadline = time.monotonic() + timeout
    while True:
        roles = [role(n) for n in nodes]
        if roles.count(ACTIVE) == 1 and roles.count(STANDBY) == len(nodes) - 1:
            return nodes[roles.index(ACTIVE)]
        if time.monotonic() > deadline:
            states = ", ".join(f"{n.label}: {r}" for n, r in zip(nodes, roles, strict=True))
            raise VaultError(
                f"the cluster did not settle into one active node and unsealed standbys "
                f"within {timeout:.0f} s ({states}); check every node's log and that each "
                "was unsealed with the SOURCE cluster's keys"
            )
        time.sleep(0.2)


def fast_autopilot(leader: VaultClient, stabilization: str = "1s") -> None:
    """A throwaway cluster promotes joined nodes to voters after `stabilization`
    instead of the default 10 s (autopilot needs a token: `leader` carries one)."""
    leader.call(
        "POST",
        "sys/storage/raft/autopilot/configuration",
        "configure autopilot",
        json={"server_stabilization_time": stabilization},
        namespace=None,
    )


def wait_voters(leader: VaultClient, count: int, timeout: float = 90) -> None:
    """Wait until the raft configuration lists `count` servers, every one a voter."""
    deadline = time.monotonic() + timeout
    servers: list[dict[str, object]] = []
    while True:
        body = leader.read("sys/storage/raft/configuration", "read the raft configuration")
        servers = list(body.get("data", {}).get("config", {}).get("servers", []))
        if len(servers) == count and all(s.get("voter") for s in servers):
            return
        if time.monotonic() > deadline:
            states = ", ".join(f"{s.get('node_id')}: voter={s.get('voter')}" for s in servers)
            raise VaultError(
                f"the raft cluster did not promote {count} voters within {timeout:.0f} s "
                f"({states or 'no servers'}); check autopilot and the nodes' logs"
            )
        time.sleep(0.3)
