"""Unseal with any threshold: production shapes (5 shares / threshold 3, and 3/2).

The defect this holds down: after a forced restore OpenBao keeps the seal configuration
of the node's OLD cluster cached (docs/facts.md), so a drill's 1-of-1 throwaway asked
for one whole key and refused the source's 3-of-5 shares ("invalid key size 33").
Every test before this one initialized 1/1, so nothing caught it. Here:

- sources initialized 5/3 and 3/2 are drilled with both runtimes;
- `dr restore` into a target initialized 1/1 and into one initialized 5/3 (another
  cluster, other keys) serves every secret, read with the source's root token;
- a wrong key among the threshold is named as such, exit 3, one line; a wrong key
  beside enough right ones is named in a warning and the restore goes on.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

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
from tests.stack.openbao import PopulatedBao, hvac_client, populate

SECRETS = 60
SHAPES = {"5of3": (5, 3), "3of2": (3, 2)}


@pytest.fixture(scope="module")
def sources(tmp_path_factory: pytest.TempPathFactory, bao_binary: Path) -> dict[str, Any]:
    """One backed-up source per shape: config, backup id, keys file, secrets."""
    out: dict[str, Any] = {}
    for name, (shares, threshold) in SHAPES.items():
        tmp = tmp_path_factory.mktemp(f"src-{name}")
        server = LocalBao(tmp / "bao", binary=bao_binary, node_id=f"src-{name}")
        try:
            server.start()
            init = server.init(shares=shares, threshold=threshold)
            assert len(init.keys_b64) == shares
            secrets = populate(hvac_client(server), count=SECRETS)
            keys = write_keys(tmp / "unseal.json", init.raw)
            config = write_config(
                tmp,
                addr=server.addr,
                storage={"type": "file", "path": str(tmp / "store")},
                recipients=[keyfile_recipient(tmp)],
                extra={"drill": {"unseal_keys_file": str(keys)}},
            )
            backup_id = dr_json("backup", config=config, token=init.root_token)["backup_id"]
        finally:
            server.stop()
        out[name] = {
            "config": config,
            "id": backup_id,
            "keys": keys,
            "init": init,
            "secrets": secrets,
            "tmp": tmp,
            "server": server,
        }
    return out


def drill(config: Path, *args: str) -> tuple[int, dict[str, Any], str]:
    proc = run_dr("drill", "--json", *args, config=config, timeout=600)
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc.returncode, json.loads(proc.stdout), proc.stderr


def assert_every_secret_checked(report: dict[str, Any], secrets: int) -> None:
    assert report["passed"] is True, report["verdict"]
    families = {f["name"]: f for f in report["checks"]["families"]}
    assert families["kv2_secrets"]["ok"] + families["kv1_secrets"]["ok"] == secrets
    for fam in families.values():
        assert fam["missing"] == fam["mismatched"] == fam["unreadable"] == 0, fam


@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_process_drill_of_a_threshold_cluster_passes(sources: dict[str, Any], shape: str) -> None:
    src = sources[shape]
    code, report, _ = drill(src["config"], "--runtime", "process")
    assert code == 0, report["verdict"]
    assert_every_secret_checked(report, len(src["secrets"]))


@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_container_drill_of_a_threshold_cluster_passes(
    sources: dict[str, Any], shape: str, drill_image: str, docker_engine: str
) -> None:
    src = sources[shape]
    code, report, _ = drill(src["config"], "--runtime", "container")
    assert code == 0, report["verdict"]
    assert_every_secret_checked(report, len(src["secrets"]))
    assert report["drill"]["runtime"] == "container"


def restore(src: dict[str, Any], target: LocalBao, keys: Path) -> Any:
    return run_dr(
        "restore",
        "--backup",
        src["id"],
        "--to",
        target.addr,
        "--token-env",
        "TARGET_TOKEN",
        "--verify-token-env",
        "SOURCE_TOKEN",
        "--unseal-keys-file",
        str(keys),
        "--yes",
        "--json",
        config=src["config"],
        env={"TARGET_TOKEN": target.root_token, "SOURCE_TOKEN": src["init"].root_token},
        timeout=600,
    )


@pytest.mark.parametrize("shape", sorted(SHAPES))
@pytest.mark.parametrize("target_shape", [(1, 1), (5, 3)], ids=["target1of1", "target5of3"])
def test_restore_into_another_shape_serves_every_secret(
    sources: dict[str, Any],
    shape: str,
    target_shape: tuple[int, int],
    bao_binary: Path,
    tmp_path: Path,
) -> None:
    src = sources[shape]
    target = LocalBao(tmp_path / "target", binary=bao_binary, node_id="target")
    try:
        target.start()
        target.init(*target_shape)
        proc = restore(src, target, src["keys"])
        assert proc.returncode == 0, proc.stderr
        result = json.loads(proc.stdout)
        assert result["forced"] is True and result["resealed"] is True and result["passed"]
        # Every secret, bit for bit, read with the SOURCE cluster's root token.
        populated = PopulatedBao(server=target, keys=src["init"], secrets=src["secrets"])
        assert differing_secrets(hvac_client(target, src["init"].root_token), populated) == []
        # The restored node now asks for the SOURCE cluster's seal configuration.
        shares, threshold = SHAPES[shape]
        status = target.seal_status()
        assert (status["n"], status["t"]) == (shares, threshold)
    finally:
        target.stop()


def foreign_share(sources: dict[str, Any], shape: str) -> str:
    """A 33-byte share of the OTHER source cluster: right shape, wrong cluster."""
    other = next(name for name in SHAPES if name != shape)
    share = sources[other]["init"].keys_b64[0]
    assert len(base64.b64decode(share)) == 33
    return str(share)


def test_a_wrong_key_among_the_threshold_is_named_exit_3(
    sources: dict[str, Any], bao_binary: Path, tmp_path: Path
) -> None:
    src = sources["5of3"]
    keys = list(src["init"].keys_b64[:3])
    keys[1] = foreign_share(sources, "5of3")
    bad = write_keys(tmp_path / "bad-keys.json", {"keys": keys})

    # The drill: exit 3, one line naming the keys as wrong.
    config = tmp_path / "dr.yaml"
    config.write_text(src["config"].read_text().replace(str(src["keys"]), str(bad)))
    proc = run_dr("drill", "--runtime", "process", config=config, timeout=600)
    assert proc.returncode == ExitCode.VAULT, proc.stderr
    assert "Traceback" not in proc.stderr
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("error: ")]
    assert len(errors) == 1, proc.stderr
    assert "wrong or from another cluster" in errors[0] and str(bad) in errors[0]

    # dr restore: the same, and the target is left sealed (not half-unsealed).
    target = LocalBao(tmp_path / "target", binary=bao_binary, node_id="target")
    try:
        target.start()
        target.init(1, 1)
        proc = restore(src, target, bad)
        line = one_line_error(proc)
        assert proc.returncode == ExitCode.VAULT
        assert "wrong or from another cluster" in line and str(bad) in line
        status = target.seal_status()
        assert status["sealed"] is True and status["progress"] == 0
    finally:
        target.stop()


def test_a_wrong_key_beside_enough_right_ones_is_warned_about(
    sources: dict[str, Any], bao_binary: Path, tmp_path: Path
) -> None:
    src = sources["5of3"]
    keys = list(src["init"].keys_b64)  # all five, the third replaced
    keys[2] = foreign_share(sources, "5of3")
    mixed = write_keys(tmp_path / "mixed-keys.json", {"keys": keys})
    target = LocalBao(tmp_path / "target", binary=bao_binary, node_id="target")
    try:
        target.start()
        target.init(1, 1)
        proc = restore(src, target, mixed)
        assert proc.returncode == 0, proc.stderr
        assert json.loads(proc.stdout)["passed"] is True
        assert f"unseal key(s) 3 in {mixed} are not shares of this cluster's key" in proc.stderr
    finally:
        target.stop()
