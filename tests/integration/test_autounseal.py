"""Auto-unseal clusters (issue 9): a source sealed by a transit key on a separate OpenBao.

Such a snapshot opens only in a server configured with the SAME seal; its recovery keys
authorize generate-root and decrypt nothing. Shown here against real servers:
- `dr backup` records the seal (type, recovery threshold, the key named by drill.seal);
- `dr drill` (process and container runtimes) passes with only `drill.seal` and the
  source's recovery keys; the report states the isolation and its one exception;
- the throwaway reaches the seal through the relay and nothing else (a test tries);
- `dr restore` into a fresh target configured with the same seal serves every secret;
- a revoked seal token, or one that may encrypt but not decrypt, stops drill and restore
  at the preflight: one line, exit 13, nothing started, the target untouched.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from dr.errors import ExitCode
from dr.runtime.base import RuntimeRequest
from dr.vault.localserver import LocalBao
from dr.vault.seal import Node
from dr.vault.sealconf import SealSettings
from tests.integration.drutil import (
    dr_json,
    keyfile_recipient,
    one_line_error,
    run_dr,
    write_config,
    write_keys,
)
from tests.stack.ci import missing
from tests.stack.openbao import hvac_client, populate
from tests.stack.transit_seal import KEY, start_provider, start_sealed

SECRETS = 2000
SEAL_ENV = "SEAL_TOKEN"


@pytest.fixture(scope="module")
def provider(tmp_path_factory: pytest.TempPathFactory, bao_binary: Path) -> Any:
    prov = start_provider(tmp_path_factory.mktemp("seal-provider") / "bao", bao_binary)
    try:
        yield prov
    finally:
        prov.server.stop()


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory, bao_binary: Path, provider: Any) -> Any:
    tmp = tmp_path_factory.mktemp("transit-source")
    server, init = start_sealed(tmp / "bao", bao_binary, provider, node_id="src-transit")
    try:
        secrets = populate(hvac_client(server, init.root_token), count=SECRETS)
        # The init JSON as `bao operator init -format=json` prints it: recovery keys only.
        keys = write_keys(tmp / "init.json", init.raw)
        config = write_config(
            tmp,
            addr=server.addr,
            storage={"type": "file", "path": str(tmp / "store")},
            recipients=[keyfile_recipient(tmp)],
            extra={
                "drill": {
                    "unseal_keys_file": str(keys),
                    "seal": provider.seal_config(SEAL_ENV),
                }
            },
        )
        backup_id = dr_json("backup", config=config, token=init.root_token)["backup_id"]
        yield {
            "server": server,
            "init": init,
            "secrets": secrets,
            "config": config,
            "id": backup_id,
            "tmp": tmp,
        }
    finally:
        server.stop()


def seal_env(provider: Any, token: str | None = None) -> dict[str, str]:
    return {SEAL_ENV: token or provider.token}


def drill(
    config: Path, env: dict[str, str], *args: str
) -> tuple[subprocess.CompletedProcess[str], Any]:
    proc = run_dr("drill", "--json", *args, config=config, env=env, timeout=600)
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc, json.loads(proc.stdout)


def assert_passed_through_the_relay(report: Any, provider: Any, secrets: int) -> None:
    assert report["passed"] is True, report["verdict"]
    families = {f["name"]: f for f in report["checks"]["families"]}
    assert families["kv2_secrets"]["ok"] + families["kv1_secrets"]["ok"] == secrets
    for fam in families.values():
        assert fam["missing"] == fam["mismatched"] == fam["unreadable"] == 0, fam
    run = report["drill"]
    assert run["isolated"] is True
    host_port = provider.addr.removeprefix("http://")
    assert host_port in run["isolation_exception"], run
    assert run["seal"].startswith("transit 3/5"), run
    assert any("encrypt/decrypt round trip" in c for c in run["seal_preflight"]), run
    assert any(c.startswith("recovery keys: 5 distinct") for c in run["seal_preflight"]), run


def test_backup_records_the_seal(source: Any, provider: Any) -> None:
    listing = dr_json("list", config=source["config"])
    (entry,) = [b for b in listing["backups"] if b["backup_id"] == source["id"]]
    seal = entry["seal"]
    assert seal["type"] == "transit" and seal["recovery_seal"] is True
    assert (seal["threshold"], seal["shares"]) == (3, 5)
    assert seal["key"] == {"address": provider.addr, "mount_path": "transit/", "key_name": KEY}
    assert seal["key_source"] == "drill.seal"
    table = run_dr("list", config=source["config"])
    assert f"transit 3/5 (transit/{KEY} at {provider.addr})" in table.stdout


def test_process_drill_passes_through_the_seal_relay(source: Any, provider: Any) -> None:
    proc, report = drill(source["config"], seal_env(provider), "--runtime", "process")
    assert proc.returncode == 0, report["verdict"]
    assert_passed_through_the_relay(report, provider, len(source["secrets"]))
    assert report["drill"]["runtime"] == "process"


def test_container_drill_passes_through_the_seal_relay(
    source: Any, provider: Any, drill_image: str, docker_engine: str
) -> None:
    proc, report = drill(source["config"], seal_env(provider), "--runtime", "container")
    assert proc.returncode == 0, report["verdict"]
    assert_passed_through_the_relay(report, provider, len(source["secrets"]))
    assert report["drill"]["runtime"] == "container"


# --- the throwaway reaches its seal and nothing else ----------------------------------
_PROBE = """
import json, socket, sys
out = {}
for name, host, port in json.loads(sys.argv[1]):
    try:
        socket.create_connection((host, port), timeout=3).close()
        out[name] = "connected"
    except OSError as exc:
        out[name] = type(exc).__name__ + ": " + str(exc)
print(json.dumps(out))
"""


def _probe_from(pid: int, targets: list[tuple[str, str, int]]) -> dict[str, str]:
    """Connect to each target from inside the network namespace of process `pid`."""
    proc = subprocess.run(
        ["nsenter", f"--target={pid}", "--net", sys.executable, "-c", _PROBE, json.dumps(targets)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    return dict(json.loads(proc.stdout))


def _container_pid(container_id: str) -> int:
    import docker

    client = docker.from_env()
    try:
        return int(client.containers.get(container_id).attrs["State"]["Pid"])
    finally:
        client.close()


@pytest.mark.parametrize("runtime_name", ["process", "container"])
def test_throwaway_reaches_the_seal_and_nothing_else(
    runtime_name: str,
    source: Any,
    provider: Any,
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> None:
    from dr.ops.drill import choose_runtime

    if os.geteuid() != 0:
        missing("root", "entering the throwaway's network namespace with nsenter needs root")

    if runtime_name == "container":
        request.getfixturevalue("drill_image")
    runtime = choose_runtime(runtime_name)
    settings = SealSettings(
        type="transit", address=provider.addr, mount_path="transit/", key_name=KEY
    )
    workdir = tmp_path / "work"
    workdir.mkdir(mode=0o700)
    vault = runtime.start(
        RuntimeRequest(
            product="openbao",
            version=source["server"].seal_status()["version"],
            workdir=workdir,
            seal=settings,
            seal_secrets={"token": provider.token},
        )
    )
    try:
        pid = (
            int(vault.details["pid"])
            if runtime_name == "process"
            else _container_pid(vault.details["container_id"])
        )
        host, port = provider.addr.removeprefix("http://").split(":")
        src_port = int(source["server"].addr.rsplit(":", 1)[1])
        reached = _probe_from(
            pid,
            [
                ("seal provider directly", host, int(port)),
                ("the source Vault", "127.0.0.1", src_port),
                ("another host", "192.0.2.1", 443),  # TEST-NET-1: never routable
            ],
        )
        assert all(r != "connected" for r in reached.values()), reached
        # ...while the server itself uses its seal, through the relay only: an auto-
        # unseal init needs the transit key, and the node becomes active with it.
        node = Node(vault_client(vault))
        node.init(1, 1, recovery=True)
        node.wait_active(timeout=60)
        assert node.seal_status().type == "transit"
        assert "seal" in vault.seal_exception and f"{host}:{port}" in vault.seal_exception
    finally:
        vault.stop()


def vault_client(vault: Any) -> Any:
    from dr.vault.connection import VaultClient

    return VaultClient(vault.endpoint, retries=0, timeout=60)


# --- restore into a fresh target with the same seal ------------------------------------
def test_restore_into_a_target_with_the_same_seal_serves_every_secret(
    source: Any, provider: Any, bao_binary: Path, tmp_path: Path
) -> None:
    target, target_init = start_sealed(
        tmp_path / "target", bao_binary, provider, recovery=(1, 1), node_id="target"
    )
    try:
        proc = run_dr(
            "restore",
            "--backup",
            source["id"],
            "--to",
            target.addr,
            "--token-env",
            "TARGET_TOKEN",
            "--verify-token-env",
            "SOURCE_TOKEN",
            "--yes",
            "--json",
            config=source["config"],
            env={
                "TARGET_TOKEN": target_init.root_token,
                "SOURCE_TOKEN": source["init"].root_token,
                **seal_env(provider),
            },
            timeout=600,
        )
        assert proc.returncode == 0, proc.stderr
        result = json.loads(proc.stdout)
        assert result["passed"] is True and result["forced"] is True, result
        status = target.seal_status()
        assert status["type"] == "transit" and status["sealed"] is False
        assert status["cluster_id"] == source["server"].seal_status()["cluster_id"]
        client = hvac_client(target, source["init"].root_token)
        for full, data in source["secrets"].items():
            mount, path = full.split("/", 1)
            if mount == "legacy":
                got = client.secrets.kv.v1.read_secret(path, mount_point=mount)["data"]
            else:
                got = client.secrets.kv.v2.read_secret_version(
                    path, mount_point=mount, raise_on_deleted_version=False
                )["data"]["data"]
            assert got == data, full
    finally:
        target.stop()


# --- a seal key that cannot be used stops everything at the preflight -------------------
@pytest.fixture
def revoked_token(provider: Any) -> str:
    token = str(provider.new_token())
    provider.revoke(token)
    return token


@pytest.fixture
def encrypt_only_token(provider: Any) -> str:
    provider.call(
        "PUT",
        "sys/policies/acl/seal-encrypt-only",
        {"policy": f'path "transit/encrypt/{KEY}" {{ capabilities = ["update"] }}'},
    )
    body = provider.call(
        "POST", "auth/token/create", {"policies": ["seal-encrypt-only"], "no_parent": True}
    )
    return str(body["auth"]["client_token"])


@pytest.mark.parametrize("which", ["revoked", "encrypt-only"])
def test_unusable_seal_key_stops_the_drill_at_the_preflight(
    which: str, source: Any, provider: Any, request: pytest.FixtureRequest
) -> None:
    token = request.getfixturevalue("revoked_token" if which == "revoked" else "encrypt_only_token")
    proc, report = drill(source["config"], seal_env(provider, token), "--runtime", "process")
    assert proc.returncode == ExitCode.SEAL, proc.stderr
    line = one_line_error(proc)
    assert f"transit/{'encrypt' if which == 'revoked' else 'decrypt'}/{KEY}" in line, line
    assert "permission denied" in line, line
    # Nothing was fetched or started: the drill stopped before sending a byte.
    assert set(report["stages"]) == {"preflight", "teardown"}, report["stages"]
    assert report["drill"]["isolated"] is None
    assert "seal" in report["error"]


def _marked(target: LocalBao, token: str) -> Any:
    client = hvac_client(target, token)
    client.sys.enable_secrets_engine("kv", path="marker", options={"version": "1"})
    client.secrets.kv.v1.create_or_update_secret("here", {"v": "1"}, mount_point="marker")
    return client


def _restore_refused(source: Any, target: LocalBao, token: str, env: dict[str, str]) -> str:
    proc = run_dr(
        "restore",
        "--backup",
        source["id"],
        "--to",
        target.addr,
        "--token-env",
        "TARGET_TOKEN",
        "--no-verify",
        "--yes",
        config=source["config"],
        env={"TARGET_TOKEN": token, **env},
        timeout=300,
    )
    assert proc.returncode == ExitCode.SEAL, proc.stderr
    return one_line_error(proc)


def test_unusable_seal_key_stops_the_restore_at_the_preflight(
    source: Any, provider: Any, revoked_token: str, bao_binary: Path, tmp_path: Path
) -> None:
    # The target has the same seal (its own token still works); the operator's seal
    # token was revoked: the restore must stop before sending a byte.
    target, init = start_sealed(
        tmp_path / "target", bao_binary, provider, recovery=(1, 1), node_id="target"
    )
    try:
        client = _marked(target, init.root_token)
        before = target.seal_status()["cluster_id"]
        line = _restore_refused(source, target, init.root_token, seal_env(provider, revoked_token))
        assert "permission denied" in line and KEY in line, line
        # The target was not touched: its own cluster, its own data.
        assert target.seal_status()["cluster_id"] == before
        got = client.secrets.kv.v1.read_secret("here", mount_point="marker")["data"]
        assert got == {"v": "1"}
    finally:
        target.stop()


def test_restore_into_a_shamir_target_is_refused_naming_both_seals(
    source: Any, provider: Any, bao_binary: Path, tmp_path: Path
) -> None:
    target = LocalBao(tmp_path / "target", binary=bao_binary, node_id="target")
    target.start()
    try:
        target.init()
        client = _marked(target, target.root_token)
        line = _restore_refused(source, target, target.root_token, seal_env(provider))
        assert "transit seal" in line and "shamir seal" in line, line
        got = client.secrets.kv.v1.read_secret("here", mount_point="marker")["data"]
        assert got == {"v": "1"}
    finally:
        target.stop()


def test_seal_mismatch_is_refused_naming_both(source: Any, provider: Any, tmp_path: Path) -> None:
    config = source["config"].read_text().replace(f"key_name: {KEY}", "key_name: other-key")
    assert "other-key" in config
    path = tmp_path / "dr.yaml"
    path.write_text(config)
    proc, report = drill(path, seal_env(provider), "--runtime", "process")
    assert proc.returncode == ExitCode.SEAL, proc.stderr
    line = one_line_error(proc)
    assert f"transit/{KEY}" in line and "transit/other-key" in line, line
    assert report["drill"]["isolated"] is None


def test_three_node_drill_of_a_transit_source_passes(
    source: Any, provider: Any, tmp_path: Path
) -> None:
    import yaml

    data = yaml.safe_load(source["config"].read_text())
    data["drill"]["nodes"] = 3
    path = tmp_path / "dr.yaml"
    path.write_text(yaml.safe_dump(data))
    proc, report = drill(path, seal_env(provider), "--runtime", "process")
    assert proc.returncode == 0, report["verdict"]
    assert_passed_through_the_relay(report, provider, len(source["secrets"]))
    roles = sorted(n.split(": ", 1)[1] for n in report["drill"]["nodes"])
    assert roles == ["active", "standby", "standby"], report["drill"]["nodes"]
