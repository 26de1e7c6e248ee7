"""`dr restore`: an authenticated backup into a target Vault, unsealed and verified.

1. Find the target cluster's nodes and its ACTIVE node: every `--to` address is probed
   (seal status, `sys/leader`); a standby leads to its active node. Log in there (the
   target's own token, or the configured `vault.auth`) before downloading anything, so
   a wrong credential fails in seconds, and ask the cluster for its other nodes
   (`sys/ha-status`; `sys/storage/raft/configuration` cross-checks the count). Every
   node must be initialized and unsealed and exactly one active, or nothing is sent.
2. Fetch and authenticate the whole backup into a ciphertext spool (dr/ops/fetch.py):
   nothing reaches the target before every frame authenticated (invariant 3).
3. Confirm (the target's data is replaced), then stream the snapshot into the active
   node: a forced restore when the cluster ids differ.
4. Every node of a forced restore seals itself (FACTS.md: all of a 3-node cluster within
   about 6 s, each at its own moment): wait for each, unseal each with the SOURCE keys
   for whatever threshold it asks (dr/vault/seal.py); an auto-unseal node opens itself.
   A same-cluster restore unseals only a node that sealed.
5. Wait (one deadline) until exactly one node is active and every other one is an
   unsealed standby that serves: with the SOURCE cluster's credentials (the target now
   holds its auth data) `auth/token/lookup-self` and one cataloged secret are read
   through each node's own address. Then check every cataloged path once, on the
   active node (dr/ops/checks.py).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from dr.config import Config
from dr.crypto.recipients import KeyWrapper
from dr.errors import DrillFailed, SealError, UsageError, VaultError
from dr.manifest import Manifest
from dr.ops.checks import CheckReport, check_catalog
from dr.ops.fetch import fetch_backup
from dr.ops.seal_preflight import preflight
from dr.progress import Progress
from dr.storage.base import BackupStore
from dr.storage.settings import FileStorageConfig, StorageConfig
from dr.vault.auth import AuthSettings, Login
from dr.vault.catalog import STABLE, Catalog, SecretEntry
from dr.vault.cluster import (
    NodeState,
    client_for,
    ha_node_addrs,
    merge_addrs,
    normalize_addr,
    probe_node,
    raft_servers,
)
from dr.vault.connection import VaultClient, VaultUnreachable
from dr.vault.generate_root import RootToken, generate_root, revoke_self
from dr.vault.raft import restore_snapshot
from dr.vault.raft_nodes import HEALTH_ROLES
from dr.vault.seal import Node, SealConfig, UnsealKeys, load_unseal_keys
from dr.vault.sealconf import SealSettings

log = logging.getLogger(__name__)


@dataclass
class RestoreRequest:
    config: Config
    store: BackupStore
    manifest: Manifest
    wrappers: Sequence[KeyWrapper]
    # One address of the target cluster (its other nodes are discovered) or several.
    target: str | Sequence[str]
    target_auth: AuthSettings  # the target's own credentials, used before the restore
    verify_auth: AuthSettings | None  # SOURCE credentials used after it; None: no verify
    unseal_keys_file: Path | None
    confirm: Callable[[str], None]
    progress: Progress | None = None
    seal: SealSettings | None = None  # drill.seal: the source's auto-unseal seal
    # --safety-snapshot: "auto" (the configured store) or a directory (a file store):
    # a backup of the TARGET first, so that the restore itself can be undone.
    safety_snapshot: str | None = None


@dataclass
class NodeResult:
    """One node of the target cluster after the restore."""

    addr: str
    role: str  # active | standby | sealed | unreachable
    sealed: bool | None  # None: it did not answer
    served: bool | None  # the probe reads through its own address; None: not probed
    resealed: bool = False  # it sealed itself after the restore
    unsealed_with_keys: bool = False  # dr unsealed it with the source keys

    def to_json(self) -> dict[str, Any]:
        return {
            "addr": self.addr,
            "role": self.role,
            "sealed": self.sealed,
            "served": self.served,
            "resealed": self.resealed,
            "unsealed_with_keys": self.unsealed_with_keys,
        }


@dataclass
class RestoreResult:
    backup_id: str
    target: str  # the node active at the end (catalog checked there; leadership can move)
    forced: bool
    resealed: bool  # any node sealed itself after the restore
    stages: dict[str, float]
    checks: CheckReport | None
    nodes: list[NodeResult] = field(default_factory=list)
    seal_checks: list[str] = field(default_factory=list)  # what the seal preflight proved
    safety: dict[str, str] | None = None  # the target's backup taken before the restore
    verified_with: str = ""  # the credentials the catalog check used

    @property
    def passed(self) -> bool:
        return self.checks is None or self.checks.passed

    def failures(self) -> list[str]:
        return [] if self.checks is None else self.checks.failures()

    def to_json(self) -> dict[str, Any]:
        return {
            "backup_id": self.backup_id,
            "target": self.target,
            "forced": self.forced,
            "resealed": self.resealed,
            "stages": {k: round(v, 3) for k, v in self.stages.items()},
            "passed": self.passed,
            "checks": None if self.checks is None else self.checks.to_json(),
            "nodes": [node.to_json() for node in self.nodes],
            "seal_preflight": list(self.seal_checks),
            "safety_snapshot": self.safety,
            "verified_with": self.verified_with or None,
        }

    def summary(self) -> str:
        total = sum(self.stages.values())
        line = (
            f"restored {self.backup_id} into {self.target} "
            f"({'forced: another cluster' if self.forced else 'same cluster'}) in {total:.1f} s"
        )
        if len(self.nodes) > 1:
            line += "; nodes: " + ", ".join(
                f"{n.addr} {n.role}" + (" (served)" if n.served else "") for n in self.nodes
            )
        if self.safety is not None:
            line += (
                f"; safety snapshot {self.safety['backup_id']} (cluster "
                f"{self.safety['cluster']}) in {self.safety['store']}"
            )
        if self.checks is None:
            return line + "; not verified (--no-verify)"
        verdict = "every cataloged item served" if self.passed else "VERIFICATION FAILED"
        return f"{line}; {self.checks.total_checked} items checked: {verdict}"

    def raise_if_failed(self) -> None:
        if not self.passed:
            raise DrillFailed(
                "the restored Vault does not serve every cataloged path: "
                + " | ".join(self.failures()[:3])
            )


RESEAL_TIMEOUT = 60.0  # a forced restore seals every node 6.5-8 s after the call (FACTS.md)
SETTLE_TIMEOUT = 120.0  # one deadline: one node active, every other one a serving standby
DISCOVERY_WAIT = 10.0  # for sys/ha-status to list every raft server after a leader change
SAME_CLUSTER_WATCH = 8.0  # a same-cluster restore normally does not seal: watch this long
# Between two looks at the seal and the health of the nodes while the restored cluster
# reseals and settles: each look is a few ~1 ms requests, and every poll interval is up
# to that much of the restore's RTO lost after the state changed (0.2 s measured ~0.1 s
# slower than the CLI reference's 0.05 s polls, per wait; bench/).
POLL = 0.1


class TargetNode:
    """One node of the target cluster: its client (the configured TLS trust, no retries,
    the root namespace), what it said before the restore, and what happened since."""

    def __init__(self, config: Config, addr: str) -> None:
        self.addr = addr
        self.client = client_for(config.vault, addr, retries=0)
        self.client.namespace = None  # raft, seal and sys/ha-status live in the root
        self.node = Node(self.client)
        self.before: SealConfig | None = None
        self.state: NodeState | None = None
        self.problem = ""  # why it could not be probed
        self.health: int | None = None
        self.resealed = False
        self.unsealed = False
        self.served: bool | None = None
        self.why = ""  # why it does not serve yet

    def probe(self) -> None:
        try:
            self.before = self.node.seal_status()
            self.state = probe_node(self.client)
            self.problem = ""
        except VaultUnreachable as exc:
            self.problem = "unreachable (" + _reason(str(exc)) + ")"
        except VaultError as exc:
            self.problem = str(exc).removeprefix(f"Vault at {self.addr} ")

    @property
    def active(self) -> bool:
        s = self.state
        return s is not None and s.initialized and not s.sealed and s.is_self

    @property
    def shamir(self) -> bool:
        return self.before is None or self.before.shamir

    @property
    def role(self) -> str:
        return HEALTH_ROLES.get(self.health or 0, "unreachable")

    def result(self) -> NodeResult:
        sealed = None if self.health is None else self.health == 503
        return NodeResult(self.addr, self.role, sealed, self.served, self.resealed, self.unsealed)

    def describe(self) -> str:
        if self.health == 429 and self.served is False:
            return f"standby, not serving yet ({self.why})"
        if self.health in HEALTH_ROLES or self.health is None:
            return self.role
        return f"health {self.health}"


def _reason(text: str) -> str:
    """'connection refused' out of VaultUnreachable's 'cannot reach Vault at X: ...; check'."""
    return text.split(": ", 1)[-1].split("; check", 1)[0]


class TargetCluster:
    """The nodes of the target, by normalised address, in the order they became known."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.by_addr: dict[str, TargetNode] = {}

    @property
    def nodes(self) -> list[TargetNode]:
        return list(self.by_addr.values())

    def add(self, addrs: Sequence[str]) -> None:
        """Probe the addresses not known yet."""
        for addr in merge_addrs(addrs):
            if addr not in self.by_addr:
                node = self.by_addr[addr] = TargetNode(self.config, addr)
                node.probe()

    def drop(self, addr: str) -> None:
        node = self.by_addr.pop(addr, None)
        if node is not None:
            node.client.close()

    def close(self) -> None:
        for node in self.nodes:
            node.client.close()


def target_addrs(target: str | Sequence[str]) -> list[str]:
    """The --to addresses, normalised and each once."""
    return merge_addrs([target] if isinstance(target, str) else target)


def run_restore(req: RestoreRequest) -> RestoreResult:
    given = target_addrs(req.target)
    if not given:
        raise UsageError("dr restore needs the address of the target Vault: pass --to ADDR")
    cluster = TargetCluster(req.config)
    try:
        return _restore(req, cluster, given)
    finally:
        cluster.close()


def _restore(req: RestoreRequest, cluster: TargetCluster, given: list[str]) -> RestoreResult:
    stages: dict[str, float] = {}
    cluster.add(given)
    active = _find_active(cluster, given)
    before = active.before
    assert before is not None  # probed without a problem: it is active
    target_cluster = before.cluster_id
    source_cluster = str(req.manifest.vault.get("cluster_id", ""))
    forced = target_cluster != source_cluster
    # An auto-unseal target opens itself through its seal: no unseal keys are read or
    # asked for (the file may hold only recovery keys).
    # Nor for a backup of an auto-unseal cluster (its init JSON holds recovery keys only).
    keys = (
        load_unseal_keys(req.unseal_keys_file)
        if req.unseal_keys_file and before.shamir and not req.manifest.seal_record.auto
        else None
    )
    if forced and keys is None and before.shamir and not req.manifest.seal_record.auto:
        raise UsageError(
            "restoring a backup of another cluster: the target will seal itself and only "
            "the SOURCE cluster's unseal keys open it; pass --unseal-keys-file"
        )
    seal_checks = _seal_preflight(req, before, keys, forced, active.addr)
    safety: dict[str, str] | None = None
    login = Login(req.target_auth, active.client)
    login.start()
    sent = False
    try:
        authed = active.client.with_token(login.token)
        _discover(cluster, active, authed, given, forced=forced)
        started = time.monotonic()
        fetched = fetch_backup(req.store, req.manifest, req.wrappers, progress=req.progress)
        stages["fetch_and_authenticate"] = time.monotonic() - started
        with fetched:
            m = req.manifest
            count = len(cluster.nodes)
            question = (
                f"Replace ALL data of the Vault at {active.addr} (cluster "
                f"{target_cluster or '?'}"
                + (f", {count} nodes" if count > 1 else "")
                + f") with backup {m.backup_id} of cluster '{m.cluster}' "
                f"({source_cluster or '?'}), taken {m.created_at} at raft index "
                f"{fetched.info.index}"
                + (" -- a FORCED restore from another cluster" if forced else "")
                + "?"
            )
            req.confirm(question)
            if req.safety_snapshot is not None:
                t = time.monotonic()
                safety = take_safety_snapshot(req, active.addr, authed)
                stages["safety_snapshot"] = time.monotonic() - t
            t = time.monotonic()
            sent = True
            restore_snapshot(
                authed,
                fetched.plaintext(),
                m.snapshot.plaintext_size,
                force=forced,
            )
            stages["restore_call"] = time.monotonic() - t
    finally:
        if sent:
            # The restore replaced the target's token store: a login token from before
            # it is gone with the old data, so it is dropped, not revoked.
            login.abandon()
        else:
            login.close()
    t = time.monotonic()
    if forced:
        _await_reseal(cluster.nodes, keys, source_cluster)
    else:
        _watch_same_cluster(cluster.nodes, keys)
    entry = _probe_entry(fetched.catalog)
    generated: RootToken | None = None
    try:
        active, verify = _settle(cluster.nodes, keys, req.verify_auth, entry, SETTLE_TIMEOUT)
    except VerifyRejected as rejected:
        # The restore itself worked; only the credentials to check it are wrong. Make a
        # root token on the restored cluster with the source keys, as a drill does.
        active, verify = _settle(cluster.nodes, keys, None, entry, SETTLE_TIMEOUT)
        generated = _verify_token(active, cluster.nodes, rejected, m.backup_id)
    stages["reseal_unseal_active"] = time.monotonic() - t
    checks = None
    verified_with = ""
    token = verify.token if verify is not None else (generated.token if generated else None)
    if token is not None:
        verified_with = (
            "a root token generated with the source keys (revoked)"
            if generated is not None
            else (req.verify_auth.describe() if req.verify_auth else "")
        )
        try:
            t = time.monotonic()
            checks = check_catalog(active.client.with_token(token), fetched.catalog)
            stages["verify"] = time.monotonic() - t
        finally:
            if verify is not None:
                verify.close()
            if generated is not None:
                _revoke(active, generated)
    return RestoreResult(
        m.backup_id,
        active.addr,
        forced,
        any(n.resealed for n in cluster.nodes),
        stages,
        checks,
        [n.result() for n in cluster.nodes],
        seal_checks,
        safety,
        verified_with,
    )


class VerifyRejected(VaultError):
    """The restored Vault refused the verify credentials (not the restore's fault)."""


def _verify_token(
    active: TargetNode, nodes: list[TargetNode], rejected: VerifyRejected, backup_id: str
) -> RootToken:
    """A root token on the restored cluster from the SOURCE keys that unsealed it; when
    that is impossible, one line saying the restore completed and why it is unverified."""
    done = (
        f"the restore of {backup_id} completed (every node unsealed, {active.addr} "
        "active) but could not be verified: "
    )
    key = next((n.node.source_key for n in nodes if n.node.source_key is not None), None)
    if key is None:
        raise VaultError(
            done + rejected.message + "; no source unseal key is at hand to make a token "
            "(auto-unseal): check it with a SOURCE cluster token"
        )
    try:
        token = generate_root(active.node, key)
    except VaultError as exc:
        raise VaultError(
            done + rejected.message + f"; making a root token with the source keys failed "
            f"too ({exc.message}; OpenBao disables unauthenticated generate-root by "
            "default): check it with a SOURCE cluster token"
        ) from None
    log.warning(
        "%s; verifying with a root token generated with the source keys instead (revoked "
        "afterwards)",
        rejected.message,
    )
    return token


def _revoke(active: TargetNode, token: RootToken) -> None:
    try:
        revoke_self(active.node, token)
    except VaultError as exc:
        log.warning(
            "could not revoke the generated root token on %s (%s): revoke it by hand "
            "(bao token revoke -self with it) or it stays valid",
            active.addr,
            exc.message,
        )


SAFETY_SUFFIX = "-safety"


def safety_config(config: Config, where: str) -> Config:
    """The config a safety snapshot is written with: the same encryption and writer,
    the cluster `<cluster>-safety` (so `latest` of the cluster never picks the target's
    old state), the configured store (`auto`) or a file store at `where`."""
    cluster = config.cluster[: 63 - len(SAFETY_SUFFIX)] + SAFETY_SUFFIX
    storage: StorageConfig = (
        config.storage if where == "auto" else FileStorageConfig(path=Path(where))
    )
    # The target's seal key is not drill.seal's (that is the source's): not recorded.
    return replace(config, cluster=cluster, storage=storage, drill=replace(config.drill, seal=None))


def take_safety_snapshot(req: RestoreRequest, addr: str, authed: VaultClient) -> dict[str, str]:
    """Back up the target (its active node, with the target's own token) into the
    safety store, encrypted and signed like any backup; what to restore it with."""
    from dr.ops.backup import run_backup  # the backup pipeline, only when asked for

    assert req.safety_snapshot is not None
    config = safety_config(req.config, req.safety_snapshot)
    target = replace(config.vault, addrs=(addr,), namespace=None)
    token = authed.token
    if not token:  # pragma: no cover - the login gave one
        raise UsageError("the safety snapshot needs the target's token")
    result = run_backup(replace(config, vault=target), token=token)
    log.info(
        "safety snapshot of %s: backup %s of cluster %s in %s",
        addr,
        result.manifest.backup_id,
        config.cluster,
        result.store,
    )
    return {
        "backup_id": result.manifest.backup_id,
        "cluster": config.cluster,
        "store": result.store,
    }


def _seal_preflight(
    req: RestoreRequest,
    before: SealConfig,
    keys: UnsealKeys | None,
    forced: bool,
    addr: str,
) -> list[str]:
    """Before any byte is sent: the target's seal can open the backup's keyring, and
    the seal key (auto-unseal) or the unseal keys (Shamir) are usable (exit 13)."""
    record = req.manifest.seal_record
    if forced and record.type != before.type:
        raise SealError(
            f"the backup comes from a cluster with the {record.type} seal but the target "
            f"{addr} uses the {before.type} seal: its restored keyring could not be opened; "
            f"configure the target with the source's seal (docs/restore.md)"
        )
    if record.auto and (forced or req.seal is not None):
        seal, unseal_keys = req.seal, None
    elif not record.auto and (forced or keys is not None):
        seal, unseal_keys = None, keys
    else:
        return []  # same cluster, nothing to check: it runs with its own seal and keys
    return preflight(
        record,
        seal,
        unseal_keys=unseal_keys,
        recovery_keys=None,
        needed_for="a restore",
        need_recovery=False,  # recovery keys are for the drill's generate-root
    ).checks


def _find_active(cluster: TargetCluster, given: list[str]) -> TargetNode:
    """The active node among the given ones, or the one a given standby names."""
    actives = [n for n in cluster.nodes if n.active]
    if not actives:
        cluster.add(
            [
                n.state.leader_address
                for n in cluster.nodes
                if n.state is not None and not n.state.sealed and n.state.leader_address
            ]
        )
        actives = [n for n in cluster.nodes if n.active]
    for alias in actives:
        # An address in front of the active node (a load balancer, another DNS name):
        # its sys/leader names the node's own api_addr, used instead when it answers.
        real = normalize_addr(alias.state.leader_address if alias.state else "")
        if not real or real == alias.addr:
            continue
        cluster.add([real])
        if cluster.by_addr[real].active:
            cluster.drop(alias.addr)
            log.info("%s answers for the active node %s: using that address", alias.addr, real)
        elif cluster.by_addr[real].problem:
            cluster.drop(real)  # not reachable from here: the given address is used
    actives = [n for n in cluster.nodes if n.active]
    if len(actives) > 1:
        raise _two_actives(actives)
    if not actives:
        problems = [
            f"{n.addr} {_not_ready(n) or 'a standby without a leader'}" for n in cluster.nodes
        ]
        raise VaultError(
            "no active node of the target cluster answers: " + "; ".join(problems) + "; "
            "every node must be initialized and unsealed and the cluster must have elected a "
            "leader (bao operator raft list-peers): fix that, then run dr restore again"
        )
    active = actives[0]
    standbys = [a for a in given if a in cluster.by_addr and not cluster.by_addr[a].active]
    if active.addr not in given and standbys:
        log.info(
            "Vault at %s is a standby: restoring through the active node %s",
            ", ".join(standbys),
            active.addr,
        )
    return active


def _two_actives(actives: list[TargetNode]) -> VaultError:
    return VaultError(
        "more than one active node: "
        + " and ".join(n.addr for n in actives)
        + " are each active, so they are not one cluster; pass (--to) the nodes of the "
        "one target cluster only"
    )


def _not_ready(node: TargetNode) -> str:
    if node.problem:
        return node.problem
    if node.state is None or not node.state.initialized:
        return "is not initialized (bao operator init, or raft join its leader)"
    if node.state.sealed:
        return "is sealed (bao operator unseal with the target's own keys)"
    return ""


def _discover(
    cluster: TargetCluster,
    active: TargetNode,
    authed: VaultClient,
    given: list[str],
    *,
    forced: bool,
) -> None:
    """The other nodes, from the cluster itself, then the preconditions (`_check_ready`).

    `sys/ha-status` lists the nodes' api_addr; `sys/storage/raft/configuration` says how
    many servers raft has (both need the target token: 403 falls back to the given
    addresses, logged). Right after a leader change the standbys reappear in ha-status
    within about 2 s (their echo heartbeats): asked again, up to DISCOVERY_WAIT, while it
    lists fewer nodes than raft has. With one --to address the reported nodes join it
    (that address is dropped when it is another name of a reported standby: it is not
    among a complete list); with several, the user listed the nodes (the reported names
    may be unreachable from here, e.g. cluster-internal) and only the count is checked.
    A forced restore also needs every raft member to be a voter: a non-voter that
    installs another cluster's snapshot was seen to stay unsealed with its old keyring,
    unusable until restarted (dr/vault/raft_nodes.py)."""
    members = raft_servers(authed)
    raft = None if members is None else len(members)
    non_voters = [str(m.get("node_id", "?")) for m in members or [] if m.get("voter") is False]
    if forced and non_voters:
        raise VaultError(
            f"raft member(s) {', '.join(non_voters)} of the target cluster are not voters "
            "yet (joined moments ago?); a non-voter that installs another cluster's "
            "snapshot can stay unusable until restarted: wait until autopilot promotes "
            "them (bao operator raft list-peers shows Voter true), then run dr restore "
            "again"
        )
    deadline = time.monotonic() + DISCOVERY_WAIT
    while True:
        reported = ha_node_addrs(authed)
        if reported is None or raft is None or len(reported) >= raft:
            break
        if time.monotonic() > deadline:
            break
        time.sleep(0.5)
    if reported and len(given) == 1:
        cluster.add(reported)
        complete = raft is not None and len(reported) >= raft
        first = cluster.by_addr.get(given[0])
        if complete and first is not None and first is not active and given[0] not in reported:
            cluster.drop(given[0])
            log.info(
                "%s is not among the node addresses the cluster reports (%s): taken as "
                "another name of one of them",
                given[0],
                ", ".join(reported),
            )
    unlisted = [a for a in reported or [] if a not in cluster.by_addr]
    if unlisted:
        log.info("the cluster also reports %s (not given with --to)", ", ".join(unlisted))
    servers = raft if raft is not None else len(reported or []) or None
    _check_ready(cluster, active, servers, unlisted)


def _check_ready(
    cluster: TargetCluster, active: TargetNode, servers: int | None, unlisted: list[str]
) -> None:
    """Preconditions before any byte is sent: every node reachable, initialized, unsealed;
    exactly one active; one cluster; no more cluster members than known addresses."""
    problems = [f"{n.addr} {_not_ready(n)}" for n in cluster.nodes if _not_ready(n)]
    if problems:
        raise VaultError(
            "every node of the target cluster must be reachable, initialized and unsealed "
            "before a restore (each one seals afterwards and needs the source keys): "
            + "; ".join(problems)
            + "; fix that (a node that is gone: bao operator raft remove-peer; node "
            "addresses not reachable from here: pass each node with --to), then run dr "
            "restore again"
        )
    actives = [n for n in cluster.nodes if n.active]
    if len(actives) > 1:
        raise _two_actives(actives)
    ids = {n.addr: n.before.cluster_id for n in cluster.nodes if n.before and n.before.cluster_id}
    if len(set(ids.values())) > 1:
        raise VaultError(
            "the target nodes belong to different clusters ("
            + ", ".join(f"{addr}: {cid}" for addr, cid in ids.items())
            + "); pass (--to) the nodes of the one target cluster only"
        )
    known = len(cluster.nodes)
    if servers is not None and servers > known:
        raise VaultError(
            f"the target cluster has {servers} nodes but only {known} address(es) are known "
            f"({', '.join(cluster.by_addr)}"
            + (f"; it also reports {', '.join(unlisted)}" if unlisted else "")
            + "); every node seals after the restore and must be unsealed: pass each node "
            "with --to (repeatable)"
        )
    log.info("target cluster: %s (active %s)", ", ".join(cluster.by_addr), active.addr)


def _unseal(node: TargetNode, keys: UnsealKeys | None) -> None:
    if keys is None:
        raise UsageError(
            f"Vault at {node.addr} sealed itself after the restore; unseal it with the "
            "SOURCE cluster's keys (--unseal-keys-file)"
        )
    key = node.node.unseal(keys)
    if key is not None:
        node.node.source_key = key
        node.unsealed = True


def _sealed_now(node: TargetNode) -> SealConfig | None:
    try:
        return node.node.seal_status()
    except VaultError:
        return None  # momentarily unreachable (a node restarting its core): ask again


def _await_reseal(
    nodes: list[TargetNode],
    keys: UnsealKeys | None,
    source_cluster: str,
    timeout: float = RESEAL_TIMEOUT,
) -> None:
    """A forced restore: every node seals itself, each at its own moment (one may be
    sealed already); each Shamir node is unsealed with the source keys as soon as it is
    seen sealed. An auto-unseal node opens itself: its brief seal is noted, never needed;
    it has taken the restore once it reports the SOURCE's cluster id (measured: health
    stays 200 throughout and the id switches about 5.5 s after the call, docs/facts.md)."""
    deadline = time.monotonic() + timeout
    pending = list(nodes)
    while pending:
        for node in list(pending):
            status = _sealed_now(node)
            if status is not None and status.sealed:
                node.resealed = True
                pending.remove(node)
                if status.shamir:
                    _unseal(node, keys)
            elif (
                not node.shamir
                and status is not None
                and source_cluster
                and status.cluster_id == source_cluster
            ):
                pending.remove(node)  # opened the restored keyring through its seal
            elif not node.shamir and node.client.health_code(timeout=5) not in (200, 429):
                node.resealed = True  # auto-unseal: sealed or reloading, opens itself
                pending.remove(node)
        if not pending:
            return
        if time.monotonic() > deadline:
            late = [n.addr for n in pending if n.shamir]
            if late:
                raise VaultError(
                    f"Vault at {', '.join(late)} did not seal itself within {timeout:.0f} s "
                    "after the forced restore, as a node restored from another cluster "
                    "does; check its log; if it seals later, unseal it with the SOURCE "
                    "cluster's keys"
                )
            log.warning(
                "no self-seal seen on the auto-unseal node(s) %s after the restore; waiting "
                "for them to serve",
                ", ".join(n.addr for n in pending),
            )
            return
        time.sleep(POLL)


def _watch_same_cluster(nodes: list[TargetNode], keys: UnsealKeys | None) -> None:
    """Same cluster: the keyring does not change and the nodes normally stay unsealed;
    unseal any that sealed (an auto-unseal node opens itself)."""
    deadline = time.monotonic() + SAME_CLUSTER_WATCH
    while time.monotonic() < deadline:
        for node in nodes:
            if node.resealed:
                continue
            status = _sealed_now(node)
            if status is not None and status.sealed:
                node.resealed = True
                if status.shamir and node.shamir:
                    _unseal(node, keys)
        time.sleep(0.25)


def _probe_entry(catalog: Catalog) -> SecretEntry | None:
    """One cataloged secret every node must serve: stable, live, in a plain path."""
    plain = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_./")
    for kv in (2, 1):
        for entry in catalog.secrets:
            if (
                entry.kv == kv
                and entry.state == STABLE
                and not entry.deleted
                and not entry.destroyed
                and set(entry.mount + entry.path) <= plain
            ):
                return entry
    return None


class _Prober:
    """The probe reads of one node with the verify credentials, through the node's own
    address: `auth/token/lookup-self` (the default policy grants it; a token without it
    is probed with `sys/mounts`, which the catalog check needs anyway) and, when there is
    one, a cataloged secret."""

    def __init__(self, verify: Login, entry: SecretEntry | None) -> None:
        self.verify = verify
        self.entry = entry
        self.path = "auth/token/lookup-self"

    def _read(self, client: VaultClient, path: str, namespace: str | None) -> tuple[int, str]:
        with client.send("GET", path, namespace=namespace) as reply:
            return reply.status, "" if reply.ok else f"{reply.status}: {reply.errors}"

    def serves(self, node: TargetNode, is_active: bool) -> bool:
        client = node.client.with_token(self.verify.token)
        namespace = self.verify.client.namespace
        status, why = self._read(client, self.path, namespace)
        if is_active and status == 403 and self.path != "sys/mounts":
            status, why = self._read(client, "sys/mounts", namespace)
            if status == 200:
                log.info("the verify token may not look itself up: probing with sys/mounts")
                self.path = "sys/mounts"
        if status != 200:
            if is_active and status in (401, 403):
                raise VerifyRejected(
                    f"the restored Vault at {node.addr} rejected the verify credentials "
                    f"({self.verify.settings.describe()}: {why}); they must be the SOURCE "
                    "cluster's (--verify-token-env/--verify-token-file, or vault.auth): "
                    "the target's own tokens died with its old data"
                )
            node.why = why
            return False
        entry = self.entry
        if entry is None:
            return True
        path = f"{entry.mount}data/{entry.path}" if entry.kv == 2 else entry.mount + entry.path
        status, why = self._read(client, path, entry.namespace or None)
        if status == 200:
            return True
        if is_active and status in (403, 404):
            # Not a node that does not serve: this token may not read that path. The
            # catalog check judges every path; the probe goes on without it.
            log.info(
                "the verify token cannot read %s on %s (%s); probing the nodes with %s only",
                entry.full_path,
                node.addr,
                why,
                self.path,
            )
            self.entry = None
            return True
        node.why = f"{why} (a cataloged secret)"
        return False


def _settle(
    nodes: list[TargetNode],
    keys: UnsealKeys | None,
    verify_auth: AuthSettings | None,
    entry: SecretEntry | None,
    timeout: float,
) -> tuple[TargetNode, Login | None]:
    """Until exactly one node is active and every other one an unsealed standby that
    serves the probe reads (when there are credentials to read with). Right after a
    restore a standby answers 400 "Waiting for the primary to upgrade" or 5xx for a
    while: polled until the deadline. A Shamir node that seals again is unsealed again
    (twice at most). Returns the active node and the verify login (close it)."""
    deadline = time.monotonic() + timeout
    verify: Login | None = None
    prober: _Prober | None = None
    reunsealed: dict[str, int] = {}
    try:
        while True:
            for node in nodes:
                node.health = node.client.health_code(timeout=5)
                if node.health == 503 and keys is not None and node.shamir:
                    status = _sealed_now(node)
                    if status is not None and status.sealed and reunsealed.get(node.addr, 0) < 2:
                        reunsealed[node.addr] = reunsealed.get(node.addr, 0) + 1
                        _unseal(node, keys)
                        node.health = node.client.health_code(timeout=5)
            actives = [n for n in nodes if n.health == 200]
            if len(actives) == 1:
                active = actives[0]
                if verify_auth is not None and verify is None:
                    verify = Login(verify_auth, active.client)
                    verify.start()  # a bad credential fails here, at once
                    prober = _Prober(verify, entry)
                if prober is not None:
                    for node in [active, *(n for n in nodes if n is not active)]:
                        if node.health in (200, 429) and not node.served:
                            node.served = prober.serves(node, node is active)
                standbys_ok = all(n is active or n.health == 429 for n in nodes)
                if standbys_ok and (prober is None or all(n.served for n in nodes)):
                    return active, verify
            if time.monotonic() > deadline:
                raise VaultError(
                    f"the restored cluster did not settle within {timeout:.0f} s (one active "
                    "node, every other one an unsealed standby that serves): "
                    + "; ".join(f"{n.addr} {n.describe()}" for n in nodes)
                    + "; check the nodes' logs; unseal a sealed node with the SOURCE keys "
                    "(also any node of the cluster not named here: pass each with --to)"
                )
            time.sleep(POLL)
    except BaseException:
        if verify is not None:
            verify.close()
        raise
