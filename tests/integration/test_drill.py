"""`dr drill` end to end, with both runtimes (restore/drill issue acceptance).

A source OpenBao with >= 5,000 secrets is backed up once; drills restore that backup
into throwaway servers (a namespaced process, a network-less container), check every
cataloged path, and report. Failure modes: a cataloged secret that the restored Vault
does not serve, a backup that fails authentication (no Vault may start), an RTO above
the objective, and an interrupted drill that must leave nothing behind.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

from dr.config import load_config
from dr.crypto.envelope import encrypt_bytes
from dr.crypto.recipients import build_recipients
from dr.errors import ExitCode
from dr.manifest import CATALOG_NAME, MANIFEST_NAME, Layout
from dr.ops.backup import load_writer
from dr.ops.find import unlock
from dr.ops.verify import load_catalog
from dr.storage.factory import open_store
from dr.vault.catalog import STABLE, SecretEntry
from dr.vault.localserver import LocalBao
from tests.integration.drutil import (
    copy_file_store,
    dr_json,
    keyfile_recipient,
    one_line_error,
    run_dr,
    write_config,
)
from tests.stack.openbao import hvac_client, populate

SECRETS = 5000


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory, bao_binary: Path) -> Any:
    """A backup of a 5,000-secret OpenBao in a file store, plus its unseal keys."""
    tmp = tmp_path_factory.mktemp("drill-src")
    server = LocalBao(tmp / "bao", binary=bao_binary)
    try:
        server.start()
        init = server.init()
        secrets = populate(hvac_client(server), count=SECRETS)
        keys = tmp / "unseal.json"
        fd = os.open(keys, os.O_WRONLY | os.O_CREAT, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump(init.raw, fh)
        config = write_config(
            tmp,
            addr=server.addr,
            storage={"type": "file", "path": str(tmp / "store")},
            recipients=[keyfile_recipient(tmp)],
            extra={"drill": {"unseal_keys_file": str(keys), "rto_objective": "15m"}},
        )
        backup_id = dr_json("backup", config=config, token=init.root_token)["backup_id"]
    finally:
        server.stop()  # the drill needs only the backup, the keys and the config
    return {"config": config, "id": backup_id, "tmp": tmp, "secrets": secrets}


def private_copy(source: Any, tmp_path: Path) -> Path:
    return copy_file_store(source["config"], source["tmp"] / "store", tmp_path)[0]


def drill(config: Path, *args: str, tmpdir: Path | None = None) -> tuple[int, dict[str, Any]]:
    env = {"TMPDIR": str(tmpdir)} if tmpdir else None
    proc = run_dr("drill", "--json", *args, config=config, env=env, timeout=600)
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc.returncode, json.loads(proc.stdout)


def assert_full_pass(report: dict[str, Any], secrets: int) -> None:
    assert report["passed"] is True, report["verdict"]
    families = {f["name"]: f for f in report["checks"]["families"]}
    assert families["kv2_secrets"]["ok"] + families["kv1_secrets"]["ok"] == secrets
    for fam in families.values():
        assert fam["missing"] == fam["mismatched"] == fam["unreadable"] == 0, fam
    assert set(report["stages"]) == {
        "preflight",
        "fetch",
        "provision",
        "restore",
        "authenticate",
        "verify",
        "teardown",
    }
    # (the preflight of a Shamir source only counts keys: it rounds to 0.000 s)
    assert all(v > 0 for k, v in report["stages"].items() if k != "preflight")
    assert report["rto_seconds"] > report["stages"]["verify"]
    assert report["rpo_seconds"] > 0
    assert report["backup"]["catalog_secrets"] == secrets
    # A Shamir source: the preflight counted the unseal keys; no exception to isolation.
    assert report["drill"]["seal"].startswith("shamir"), report["drill"]
    assert report["drill"]["seal_preflight"][0].startswith("unseal keys:"), report["drill"]
    assert report["drill"]["isolation_exception"] is None


def test_process_drill_of_5000_secrets_passes(source: Any, tmp_path: Path) -> None:
    code, report = drill(
        source["config"],
        "--runtime",
        "process",
        "--report-dir",
        str(tmp_path / "r"),
        "--junit",
        str(tmp_path / "r" / "junit.xml"),
    )
    assert code == 0, report["verdict"]
    assert_full_pass(report, len(source["secrets"]))
    assert report["drill"]["runtime"] == "process"
    if os.geteuid() == 0:
        assert "network namespace" in report["drill"]["isolation"]
    written = sorted(p.suffix for p in (tmp_path / "r").iterdir())
    assert written == [".json", ".md", ".xml"]
    suite = ET.parse(tmp_path / "r" / "junit.xml").getroot()
    names = {case.get("name") for case in suite.iter("testcase")}
    assert {"checks.kv2_secrets", "checks.kv1_secrets", "rto_objective"} <= names
    assert suite.get("failures") == "0"


def test_container_drill_of_5000_secrets_passes(
    source: Any, drill_image: str, docker_engine: str
) -> None:
    code, report = drill(source["config"], "--runtime", "container")
    assert code == 0, report["verdict"]
    assert_full_pass(report, len(source["secrets"]))
    assert report["drill"]["runtime"] == "container"
    assert "network none" in report["drill"]["isolation"]


def test_drill_names_a_cataloged_secret_the_vault_does_not_serve(
    source: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Build, with the project's own internals, a backup whose catalog lists one more
    # secret than its snapshot holds: encrypt the edited catalog with the backup's own
    # data key and re-seal the manifest, exactly as a real backup would have.
    config_path = private_copy(source, tmp_path)
    config = load_config(str(config_path))
    store = open_store(config.storage)
    layout = Layout(config.storage.prefix, config.cluster)
    from dr.ops.find import resolve_backup

    manifest = resolve_backup(store, layout, source["id"])
    data_key, _ = unlock(manifest, build_recipients(config.encryption))
    catalog = load_catalog(store, manifest, data_key)
    ghost = SecretEntry(mount="app/", path="ghost/never-written", kv=2, state=STABLE, version=1)
    catalog.secrets.append(ghost)
    plaintext = json.dumps(catalog.to_json()).encode()
    blob = encrypt_bytes(plaintext, data_key, manifest.catalog.context)
    ref = store.put_bytes(layout.key(manifest.backup_id, CATALOG_NAME), blob)
    import hashlib

    manifest.catalog.plaintext_size = len(plaintext)
    manifest.catalog.plaintext_sha256 = hashlib.sha256(plaintext).hexdigest()
    manifest.catalog.ciphertext_size = len(blob)
    manifest.catalog.ciphertext_sha256 = hashlib.sha256(blob).hexdigest()
    manifest.catalog.version_id = ref.version_id
    manifest.catalog_counts = catalog.counts()
    manifest.seal(data_key)
    manifest.sign(load_writer(config))  # as the backup job would, with its writer key
    store.put_bytes(layout.key(manifest.backup_id, MANIFEST_NAME), manifest.dumps())

    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    proc = run_dr(
        "drill",
        "--json",
        "--runtime",
        "process",
        config=config_path,
        timeout=600,
        env={"TMPDIR": str(tmpdir)},
    )
    assert proc.returncode == ExitCode.DRILL_FAILED, proc.stderr
    # A drill that failed leaves nothing: no server process, no temp dir.
    assert list(tmpdir.iterdir()) == [] and _leftovers(tmpdir) == []
    line = one_line_error(proc)
    assert "app/ghost/never-written" in line
    report = json.loads(proc.stdout)
    kv2 = next(f for f in report["checks"]["families"] if f["name"] == "kv2_secrets")
    assert kv2["missing"] == 1 and "app/ghost/never-written" in kv2["first_missing"]


def test_unauthentic_backup_fails_before_any_vault_starts(source: Any, tmp_path: Path) -> None:
    config = private_copy(source, tmp_path)
    snap = next((tmp_path / "store").rglob("snapshot.enc"))
    data = bytearray(snap.read_bytes())
    data[200] ^= 0x10
    snap.write_bytes(bytes(data))
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    code, report = drill(config, "--runtime", "process", tmpdir=tmpdir)
    assert code == ExitCode.INTEGRITY
    assert "provision" not in report["stages"] and report["drill"]["isolation"] == ""
    assert report["rto_seconds"] is None
    assert list(tmpdir.iterdir()) == []


def test_rto_above_objective_exits_with_the_rto_code(source: Any) -> None:
    code, report = drill(source["config"], "--runtime", "process", "--rto-objective", "1s")
    assert code == ExitCode.RTO_EXCEEDED
    assert report["checks"]["passed"] is True and "RTO" in report["verdict"]


def _leftovers(tmpdir: Path) -> list[str]:
    """Processes whose command line mentions the drill's private temp dir."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if str(tmpdir) in cmdline and "pytest" not in cmdline:
            found.append(f"{proc.name}: {cmdline[:120]}")
    return found


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
@pytest.mark.parametrize("runtime", ["process", "container"])
def test_interrupted_drill_leaves_nothing_behind(
    source: Any, tmp_path: Path, runtime: str, sig: signal.Signals, request: pytest.FixtureRequest
) -> None:
    if runtime == "container":
        request.getfixturevalue("drill_image")
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    env = {**os.environ, "TMPDIR": str(tmpdir)}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "dr",
            "-c",
            str(source["config"]),
            "-v",
            "drill",
            "--runtime",
            runtime,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    # Interrupt in the middle of the restore stage (the server is up and restoring).
    assert proc.stderr is not None
    deadline = time.monotonic() + 120
    for line in proc.stderr:
        if "drill stage restore started" in line or time.monotonic() > deadline:
            break
    time.sleep(1.0)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == ExitCode.INTERRUPTED, err
    assert "Traceback" not in err
    assert list(tmpdir.iterdir()) == [], "temp files left"
    assert _leftovers(tmpdir) == []
    if runtime == "container":
        import docker

        client = docker.from_env()
        left = client.containers.list(all=True, filters={"label": "dr.drill"})
        assert [c.name for c in left] == []


def test_version_mismatch_is_refused_or_warned_and_old_backups_fail(
    source: Any, tmp_path: Path
) -> None:
    # A backup that claims to come from another OpenBao version (manifest re-sealed with
    # the backup's own data key, as a real backup of that version would be).
    from dr.ops.find import resolve_backup

    config_path = private_copy(source, tmp_path)
    config = load_config(str(config_path))
    store = open_store(config.storage)
    layout = Layout(config.storage.prefix, config.cluster)
    manifest = resolve_backup(store, layout, source["id"])
    data_key, _ = unlock(manifest, build_recipients(config.encryption))
    manifest.vault["version"] = "2.6.0"
    manifest.seal(data_key)
    manifest.sign(load_writer(config))
    store.put_bytes(layout.key(manifest.backup_id, MANIFEST_NAME), manifest.dumps())

    proc = run_dr("drill", "--runtime", "process", config=config_path, timeout=600)
    line = one_line_error(proc)
    assert proc.returncode == ExitCode.USAGE
    assert "2.6.0" in line and "--allow-version-mismatch" in line

    # With the flag it warns loudly and runs.
    code, report = drill(config_path, "--runtime", "process", "--allow-version-mismatch")
    assert code == 0, report["verdict"]
    assert report["checks"]["passed"] is True
    assert "2.6.0" in report["drill"]["version_warning"]

    # A backup older than max_backup_age fails (exit 12) before anything is fetched or
    # started, and says its age in a readable unit.
    code, report = drill(config_path, "--runtime", "process", "--max-backup-age", "1s")
    assert code == ExitCode.BACKUP_TOO_OLD, report["verdict"]
    assert report["checks"] is None and report["drill"]["isolated"] is None
    assert set(report["stages"]) == set(), report["stages"]
    assert "old, above drill.max_backup_age 1 s" in report["verdict"], report["verdict"]
    assert " 0.0 h" not in report["verdict"]
