"""`dr restore` into a 3-node raft cluster (issue 9, item 5): every node unsealed.

After `snapshot-force` on the leader of a 3-node cluster every node seals itself and
needs the SOURCE cluster's keys; with only the leader unsealed raft has no quorum. The
source here is a 3-node cluster (5 shares, threshold 3) with >= 2,000 secrets, backed
up through a config that lists a standby first; the target is another 3-node cluster
with its own keys (3 shares, threshold 2), restored through ONE address (a standby's):
its other nodes are found through sys/ha-status. Afterwards every secret must read back
bit for bit through each node's own address with the source root token.

The three clusters (source, target, and a spare for the refusal test) are formed side
by side: most of a cluster's start-up is autopilot's stabilization wait.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import pytest

from dr.errors import ExitCode
from dr.vault.localserver import LocalBao
from tests.integration.drutil import (
    differing_secrets,
    dr_json,
    keyfile_recipient,
    one_line_error,
    run_dr,
    write_config,
    write_keys,
)
from tests.stack.cluster import BaoCluster, set_stabilization_time, start_clusters
from tests.stack.openbao import PopulatedBao, hvac_client, populate


class Clusters(NamedTuple):
    source: BaoCluster
    target: BaoCluster
    spare: BaoCluster
    populated: PopulatedBao  # the source's secrets (populated through its active node)


@pytest.fixture(scope="module")
def clusters(bao_binary: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Clusters]:
    base = tmp_path_factory.mktemp("raft3")
    source, target, spare = start_clusters(
        [
            {"workdir": base / "src", "name": "src", "shares": 5, "threshold": 3},
            {"workdir": base / "tgt", "name": "tgt", "shares": 3, "threshold": 2},
            {"workdir": base / "spare", "name": "spare", "shares": 3, "threshold": 2},
        ],
        binary=bao_binary,
    )
    try:
        leader = source.active()
        assert source.init_result is not None
        secrets = populate(hvac_client(leader, source.root_token), count=2000)
        yield Clusters(source, target, spare, PopulatedBao(leader, source.init_result, secrets))
    finally:
        for cluster in (spare, target, source):
            cluster.stop()


@pytest.fixture(scope="module")
def backup(tmp_path_factory: pytest.TempPathFactory, clusters: Clusters) -> dict[str, Any]:
    tmp = tmp_path_factory.mktemp("raft3-backup")
    source = clusters.source
    leader = source.active()
    standbys = [node.addr for node in source if node is not leader]
    config = write_config(
        tmp,
        addr=[standbys[0], leader.addr, standbys[1]],  # a standby first: dr finds the leader
        storage={"type": "file", "path": str(tmp / "store")},
        recipients=[keyfile_recipient(tmp)],
    )
    made = dr_json("backup", config=config, token=source.root_token)
    assert source.init_result is not None
    keys = write_keys(tmp / "source-init.json", source.init_result.raw)
    return {"config": config, "id": made["backup_id"], "keys": keys}


def _health(cluster: BaoCluster) -> list[int | None]:
    return sorted((node.health_code() or 0) for node in cluster)


def test_restore_into_three_nodes_unseals_all_and_each_serves_every_secret(
    clusters: Clusters, backup: dict[str, Any]
) -> None:
    target, populated = clusters.target, clusters.populated
    source_token = clusters.source.root_token
    # One address: a standby's, by another name than its api_addr and with a trailing
    # slash. dr finds the active node through it and the others through sys/ha-status.
    given = target.standbys()[0].addr.replace("127.0.0.1", "localhost") + "/"
    started = time.monotonic()
    proc = run_dr(
        "restore",
        "--backup",
        backup["id"],
        "--to",
        given,
        "--unseal-keys-file",
        str(backup["keys"]),
        "--verify-token-env",
        "SOURCE_TOKEN",
        "--yes",
        "--json",
        config=backup["config"],
        token=target.root_token,
        env={"SOURCE_TOKEN": source_token},
        timeout=240,
    )
    took = time.monotonic() - started
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["forced"] is True and result["resealed"] is True and result["passed"] is True
    assert result["checks"]["total_checked"] >= len(populated.secrets)
    assert "reseal_unseal_active" in result["stages"]

    # The JSON lists the three nodes (by their api_addr) with their final states.
    nodes = {n["addr"]: n for n in result["nodes"]}
    assert sorted(nodes) == sorted(target.addrs), result["nodes"]
    assert sorted(n["role"] for n in nodes.values()) == ["active", "standby", "standby"]
    for node in nodes.values():
        assert node["sealed"] is False and node["served"] is True, node
        assert node["resealed"] is True and node["unsealed_with_keys"] is True, node

    # The cluster as the test sees it: all unsealed, exactly one active (the target).
    assert _health(target) == [200, 429, 429]
    active = target.active()
    assert result["target"] == active.addr
    assert nodes[active.addr]["role"] == "active"
    for node in target:
        assert node.seal_status()["sealed"] is False
        # The source's seal configuration now (the source keys opened every node).
        assert (node.seal_status()["t"], node.seal_status()["n"]) == (3, 5)

    # Every secret, bit for bit, through EACH node's own address, with the source token.
    for node in target:
        differing = differing_secrets(hvac_client(node, source_token), populated)
        assert not differing, (node.addr, differing[:3])
    print(f"\nrestore into 3 nodes: {took:.1f} s, stages {result['stages']}")


def test_restore_refuses_a_cluster_with_a_sealed_node_before_sending_anything(
    clusters: Clusters, backup: dict[str, Any]
) -> None:
    spare = clusters.spare
    active = spare.active()
    sealed = spare.standbys()[0]
    marker = hvac_client(active, spare.root_token)
    marker.sys.enable_secrets_engine("kv", path="marker", options={"version": "1"})
    marker.secrets.kv.v1.create_or_update_secret(path="m", secret={"v": "1"}, mount_point="marker")
    with sealed.vault(spare.root_token) as client:
        assert client.send("PUT", "sys/seal").ok
    sealed.wait_sealed()
    try:
        # One address (the active node by another name): the sealed node is found
        # through sys/ha-status and named.
        proc = run_dr(
            "restore",
            "--backup",
            backup["id"],
            "--to",
            active.addr.replace("127.0.0.1", "localhost"),
            "--unseal-keys-file",
            str(backup["keys"]),
            "--yes",
            config=backup["config"],
            token=spare.root_token,
        )
        line = one_line_error(proc)
        assert proc.returncode == ExitCode.VAULT, line
        assert sealed.addr in line and "sealed" in line and "unseal" in line, line
        # Only the sealed node given: no active node answers, named the same way.
        proc = run_dr(
            "restore",
            "--to",
            sealed.addr,
            "--unseal-keys-file",
            str(backup["keys"]),
            "--yes",
            config=backup["config"],
            token=spare.root_token,
        )
        line = one_line_error(proc)
        assert proc.returncode == ExitCode.VAULT, line
        assert sealed.addr in line and "sealed" in line, line
        # Not a URL: a usage error before anything else.
        proc = run_dr("restore", "--to", "vault-1:8200", "--yes", config=backup["config"])
        line = one_line_error(proc)
        assert proc.returncode == ExitCode.USAGE and "https://" in line, line
        # Nothing was sent: the spare keeps its own data, keyring and token.
        got = marker.secrets.kv.v1.read_secret(path="m", mount_point="marker")["data"]
        assert got == {"v": "1"}
        assert active.health_code() == 200
    finally:
        sealed.unseal(spare.keys_b64)
        sealed.wait_standby(timeout=30)


def test_restore_refuses_a_forced_restore_while_a_node_is_not_a_voter(
    clusters: Clusters, backup: dict[str, Any], bao_binary: Path, tmp_path: Path
) -> None:
    """A node joined moments ago is a raft non-voter until autopilot promotes it; one
    that installs another cluster's snapshot can stay unusable (dr/vault/raft_nodes.py).
    Autopilot is told to wait an hour here, so the fourth node stays a non-voter."""
    spare = clusters.spare
    active = spare.active()
    set_stabilization_time(active, 3600, spare.root_token)
    late = LocalBao(tmp_path / "late", binary=bao_binary, node_id="spare-late")
    try:
        late.start()
        late.join(active)
        servers = {s["node_id"]: s for s in spare.raft_servers()}
        assert servers["spare-late"]["voter"] is False, servers
        proc = run_dr(
            "restore",
            "--backup",
            backup["id"],
            "--to",
            active.addr,
            "--unseal-keys-file",
            str(backup["keys"]),
            "--yes",
            config=backup["config"],
            token=spare.root_token,
        )
        line = one_line_error(proc)
        assert proc.returncode == ExitCode.VAULT, line
        assert "spare-late" in line and "Voter true" in line, line
        assert active.health_code() == 200 and active.seal_status()["sealed"] is False
    finally:
        late.stop()
        with spare.active().vault(spare.root_token) as client:
            client.write(
                "sys/storage/raft/remove-peer",
                {"server_id": "spare-late"},
                "remove the late node",
                method="POST",
            )
        set_stabilization_time(spare.active(), 2, spare.root_token)
