"""Drills that cannot touch production (issue 8, item 4), against real components.

- an UNPRIVILEGED drill (user `nobody`) isolates in a user + network namespace, and the
  server sees only `lo`;
- no isolation possible (no `unshare` on PATH): one error line naming
  --allow-unisolated, exit 2, no server; with the flag it runs and says NOT ISOLATED;
- the throwaway's environment holds none of the host's secrets (both runtimes);
- a SIGKILLed `dr drill` leaves no server (PR_SET_PDEATHSIG), and its work dir goes at
  the next drill;
- a pinned binary checksum that differs is refused (exit 6); the report has the sha256.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from dr.errors import ExitCode, IntegrityError
from dr.runtime.base import RuntimeRequest
from dr.runtime.isolation import OWNER_ENV, OWNER_FILE, net_interfaces, sweep_workdirs
from dr.runtime.process import ISOLATION_USERNS, ProcessRuntime, detect_version
from dr.vault.localserver import ENV_ALLOW, LocalBao
from tests.integration.drutil import dr_json, keyfile_recipient, one_line_error, write_config
from tests.stack.ci import missing
from tests.stack.openbao import hvac_client, populate

REPO = Path(__file__).resolve().parents[2]
SECRETS = 50
HOST_SECRETS = {
    "AWS_ACCESS_KEY_ID": "AKIAHOSTSECRET",
    "AWS_SECRET_ACCESS_KEY": "host-secret",
    "VAULT_TOKEN": "hvs.host-token",
    "BAO_TOKEN": "host-bao-token",
    "DR_SECRET_SETTING": "host-dr",
    "SOME_OTHER_SECRET": "nope",
}
SERVER_ENV = {*ENV_ALLOW, "HOME", "TMPDIR", OWNER_ENV}
NOBODY = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"]


def _require_root() -> None:
    if os.geteuid() != 0:
        missing("root", "running a drill as user nobody needs root to switch users")


@pytest.fixture(scope="module")
def small_source(bao_binary: Path) -> Iterator[dict[str, Any]]:
    """A 50-secret backup, its keys and config, in a dir user `nobody` owns."""
    base = Path(tempfile.mkdtemp(prefix="dr-isolation-test-"))
    base.chmod(0o755)
    server = LocalBao(base / "bao", binary=bao_binary)
    try:
        server.start()
        init = server.init()
        populate(hvac_client(server), count=SECRETS)
        keys = base / "unseal.json"
        keys.write_text(json.dumps(init.raw))
        keys.chmod(0o600)
        config = write_config(
            base,
            addr=server.addr,
            storage={"type": "file", "path": str(base / "store")},
            recipients=[keyfile_recipient(base)],
            extra={"drill": {"unseal_keys_file": str(keys), "rto_objective": "15m"}},
        )
        backup_id = dr_json("backup", config=config, token=init.root_token)["backup_id"]
    finally:
        server.stop()
    shutil.rmtree(base / "bao", ignore_errors=True)
    if os.geteuid() == 0:
        subprocess.run(["chown", "-R", "nobody:nogroup", str(base)], check=True)
    try:
        yield {"base": base, "config": config, "id": backup_id, "keys": keys}
    finally:
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def nobody_dir() -> Iterator[Path]:
    """A dir user nobody can reach (pytest's tmp dirs are under a 0700 root dir)."""
    base = Path(tempfile.mkdtemp(prefix="dr-isolation-nobody-"))
    base.chmod(0o755)
    try:
        yield base
    finally:
        shutil.rmtree(base, ignore_errors=True)


def _tmpdir(parent: Path, name: str) -> Path:
    path = parent / name
    path.mkdir(mode=0o700)
    if os.geteuid() == 0:
        os.chown(path, *_nobody_ids())
    return path


def _nobody_ids() -> tuple[int, int]:
    import grp
    import pwd

    return pwd.getpwnam("nobody").pw_uid, grp.getgrnam("nogroup").gr_gid


def _dr_argv(config: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "dr", "-c", str(config), "drill", *args]


def _env(tmpdir: Path, **extra: str) -> dict[str, str]:
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(tmpdir),
        "TMPDIR": str(tmpdir),
        "PYTHONPATH": str(REPO),
        "TESTCONTAINERS_RYUK_DISABLED": "true",
        **extra,
    }


def _servers_under(tmpdir: Path) -> list[int]:
    """Pids of live bao/vault processes whose command line names `tmpdir`."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state == "Z" or os.path.basename(argv[0].decode(errors="replace")) not in (
            "bao",
            "vault",
        ):
            continue
        if any(str(tmpdir).encode() in arg for arg in argv):
            found.append(int(entry.name))
    return found


def _wait(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.05)


def _environ(pid: int) -> dict[str, str]:
    items = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return dict(item.decode().split("=", 1) for item in items if b"=" in item)


# --- unprivileged ---------------------------------------------------------------------


def test_unprivileged_drill_uses_a_user_and_network_namespace(
    small_source: dict[str, Any], nobody_dir: Path
) -> None:
    """`dr drill --runtime process` as user nobody: passes, and the report says the
    server ran in a user + network namespace; the binary's sha256 is recorded."""
    _require_root()
    tmpdir = _tmpdir(nobody_dir, "nobody-tmp")
    proc = subprocess.run(
        [*NOBODY, *_dr_argv(small_source["config"], "--runtime", "process", "--json")],
        capture_output=True,
        text=True,
        env=_env(tmpdir, **HOST_SECRETS),
        timeout=300,
        cwd=tmpdir,
    )
    assert "Traceback" not in proc.stderr, proc.stderr
    assert proc.returncode == 0, proc.stderr + proc.stdout
    report = json.loads(proc.stdout)
    assert report["passed"] is True, report["verdict"]
    assert report["drill"]["isolation"] == ISOLATION_USERNS
    assert report["drill"]["isolated"] is True
    binary = Path(report["drill"]["binary"])
    assert report["drill"]["binary_sha256"] == hashlib.sha256(binary.read_bytes()).hexdigest()
    assert list(tmpdir.iterdir()) == [], "the drill left files behind"


NOBODY_CHILD = textwrap.dedent(
    """
    import json, sys, time
    from pathlib import Path
    from dr.runtime.base import RuntimeRequest
    from dr.runtime.process import ProcessRuntime
    workdir, binary = sys.argv[1:]
    vault = ProcessRuntime().start(RuntimeRequest("openbao", "2.7.2", Path(workdir),
                                                   binary=Path(binary)))
    print(json.dumps({"isolation": vault.isolation, **vault.details}), flush=True)
    time.sleep(120)
    """
)


def test_unprivileged_server_sees_only_loopback_and_dies_with_its_parent(
    bao_binary: Path, nobody_dir: Path
) -> None:
    """The runtime as nobody: the server is in another user AND network namespace, sees
    only `lo`, has only allow-listed variables; SIGKILL of its parent kills it (< 5 s)."""
    _require_root()
    workdir = _tmpdir(nobody_dir, "work")
    child = subprocess.Popen(
        [*NOBODY, sys.executable, "-c", NOBODY_CHILD, str(workdir), str(bao_binary)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(workdir, **HOST_SECRETS),
        cwd=workdir,
    )
    try:
        assert child.stdout is not None
        line = child.stdout.readline()
        assert line, child.stderr.read() if child.stderr else ""
        details = json.loads(line)
        assert details["isolation"] == ISOLATION_USERNS
        pid = int(details["pid"])
        for ns in ("net", "user"):
            assert os.readlink(f"/proc/{pid}/ns/{ns}") != os.readlink(f"/proc/self/ns/{ns}")
        assert net_interfaces(pid) == ["lo"]
        links = subprocess.run(
            ["nsenter", f"--net=/proc/{pid}/ns/net", "ip", "-o", "link"],
            capture_output=True,
            text=True,
            check=True,
        )
        assert [ln.split(":")[1].strip() for ln in links.stdout.splitlines()] == ["lo"]
        assert Path(f"/proc/{pid}/status").read_text().count("65534") >= 1
        env = _environ(pid)
        assert set(env) <= SERVER_ENV, sorted(env)
        child.kill()
        child.wait(10)
        _wait(lambda: not _servers_under(workdir), 5, "the server to die with its parent")
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()


# --- no isolation possible ------------------------------------------------------------


def test_no_isolation_refuses_unless_allowed(small_source: dict[str, Any], tmp_path: Path) -> None:
    """No `unshare` on PATH: `--runtime process` and `--runtime auto` (no engine) refuse
    with one line naming --allow-unisolated, exit 2, no server and no work dir; with
    --allow-unisolated it runs, and JSON, Markdown and JUnit say NOT ISOLATED."""
    bare_path = tmp_path / "bin"  # holds no unshare and no ip
    bare_path.mkdir()
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    env = _env(tmpdir, PATH=str(bare_path), DOCKER_HOST=f"unix://{tmp_path}/none.sock")
    config = small_source["config"]
    for runtime in ("process", "auto"):
        proc = subprocess.run(
            _dr_argv(config, "--runtime", runtime), capture_output=True, text=True, env=env
        )
        line = one_line_error(proc)
        assert proc.returncode == ExitCode.USAGE, proc.stderr
        assert "--allow-unisolated" in line and "unshare" in line, line
        assert list(tmpdir.iterdir()) == []
        assert proc.stdout == ""

    reports = tmp_path / "reports"
    junit = tmp_path / "junit.xml"
    proc = subprocess.run(
        _dr_argv(
            config,
            "--runtime",
            "process",
            "--allow-unisolated",
            "--json",
            "--report-dir",
            str(reports),
            "--junit",
            str(junit),
        ),
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert "NOT ISOLATED" in proc.stderr  # the warning
    report = json.loads(proc.stdout)
    assert report["passed"] is True
    assert report["drill"]["isolated"] is False
    assert "NOT ISOLATED" in report["drill"]["isolation"]
    markdown = next(reports.glob("*.md")).read_text()
    assert "**NOT ISOLATED**" in markdown
    assert "NOT ISOLATED" in junit.read_text()
    assert list(tmpdir.iterdir()) == []


# --- environment ----------------------------------------------------------------------


@pytest.fixture
def host_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in HOST_SECRETS.items():
        monkeypatch.setenv(name, value)


def _request(bao_binary: Path, tmp_path: Path, **kw: Any) -> RuntimeRequest:
    product, version = detect_version(bao_binary)
    workdir = tmp_path / "drill"
    workdir.mkdir(mode=0o700)
    return RuntimeRequest(product, version, workdir, binary=bao_binary, **kw)


@pytest.mark.usefixtures("host_secrets")
def test_process_server_gets_only_allow_listed_variables(bao_binary: Path, tmp_path: Path) -> None:
    request = _request(bao_binary, tmp_path)
    vault = ProcessRuntime().start(request)
    try:
        env = _environ(int(vault.details["pid"]))
    finally:
        vault.stop()
    assert set(env) <= SERVER_ENV, sorted(env)
    assert not [k for k in env if k.startswith(("AWS_", "VAULT_", "BAO_"))]
    assert [k for k in env if k.startswith("DR_")] == [OWNER_ENV]
    assert env["HOME"] == str(request.workdir / "server")
    assert env["TMPDIR"] == str(request.workdir / "server" / "tmp")


@pytest.mark.usefixtures("host_secrets")
def test_container_server_gets_no_host_variables(
    bao_binary: Path, tmp_path: Path, drill_image: str
) -> None:
    import docker

    from dr.runtime.container import ContainerRuntime

    vault = ContainerRuntime().start(_request(bao_binary, tmp_path, image=drill_image))
    try:
        client = docker.from_env()
        container = client.containers.get(vault.details["container_id"])
        env = container.attrs["Config"]["Env"] or []
        image_env = client.images.get(container.attrs["Image"]).attrs["Config"]["Env"] or []
        assert vault.details["image_id"] == container.attrs["Image"]
    finally:
        vault.stop()
    names = [item.split("=", 1)[0] for item in env]
    assert not [n for n in names if n in HOST_SECRETS or n.startswith(("AWS_", "DR_"))]
    assert set(env) <= set(image_env), env


def test_container_image_digest_pin(bao_binary: Path, tmp_path: Path, drill_image: str) -> None:
    from dr.runtime.container import ContainerRuntime

    request = _request(bao_binary, tmp_path, image=drill_image, image_digest="sha256:" + "0" * 64)
    with pytest.raises(IntegrityError, match=r"drill\.image_digest"):
        ContainerRuntime().start(request)
    vault = ContainerRuntime().start(dataclasses.replace(request, image_digest=None))
    image_id = vault.details["image_id"]
    vault.stop()
    pinned = ContainerRuntime().start(dataclasses.replace(request, image_digest=image_id))
    pinned.stop()
    assert pinned.details["image_id"] == image_id


# --- dies with the drill --------------------------------------------------------------


def test_sigkilled_drill_leaves_no_server_and_its_workdir_is_swept(
    small_source: dict[str, Any], tmp_path: Path
) -> None:
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    drill = subprocess.Popen(
        _dr_argv(small_source["config"], "--runtime", "process"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=_env(tmpdir),
    )
    try:
        _wait(lambda: bool(_servers_under(tmpdir)), 60, "the drill's server to start")
        drill.kill()
        drill.wait(10)
        _wait(lambda: not _servers_under(tmpdir), 5, "no server of the killed drill")
    finally:
        if drill.poll() is None:
            drill.kill()
            drill.wait()
    stale = [p for p in tmpdir.glob("dr-drill-*") if (p / OWNER_FILE).exists()]
    assert stale, "a SIGKILLed drill leaves its work dir (expected)"
    assert set(sweep_workdirs(tmpdir)) >= set(stale)
    assert not any(p.exists() for p in stale)


# --- binary pinning -------------------------------------------------------------------


def test_wrong_binary_checksum_is_refused(bao_binary: Path, tmp_path: Path) -> None:
    request = _request(bao_binary, tmp_path, binary_sha256="0" * 64)
    with pytest.raises(IntegrityError, match="binary_sha256") as caught:
        ProcessRuntime().start(request)
    assert caught.value.exit_code == ExitCode.INTEGRITY == 6
    assert "\n" not in caught.value.message
    assert not _servers_under(request.workdir)
    actual = hashlib.sha256(bao_binary.read_bytes()).hexdigest()
    assert actual in caught.value.message
    vault = ProcessRuntime().start(dataclasses.replace(request, binary_sha256=actual.upper()))
    vault.stop()
    assert vault.details["binary_sha256"] == actual


def test_wrong_binary_checksum_fails_the_drill_with_exit_6(
    small_source: dict[str, Any], tmp_path: Path
) -> None:
    """Through run_drill (drill.binary_sha256 reaches it as DrillOptions.binary_sha256):
    exit 6, and the error in the report names the binary's real sha256."""
    from dr.config import load_config
    from dr.crypto.recipients import select_wrappers
    from dr.manifest import Layout
    from dr.ops.drill import DrillOptions, run_drill
    from dr.ops.find import resolve_backup
    from dr.ops.report import exit_code, to_json
    from dr.storage.factory import open_store

    config = load_config(small_source["config"])
    store = open_store(config.storage)
    manifest = resolve_backup(
        store, Layout(config.storage.prefix, config.cluster), small_source["id"]
    )
    options = DrillOptions(
        runtime="process",
        binary_sha256="ab" * 32,
        unseal_keys_file=small_source["keys"],
        workdir_parent=tmp_path,
    )
    result = run_drill(config, store, manifest, select_wrappers(config.encryption, None), options)
    assert exit_code(result) == ExitCode.INTEGRITY == 6
    assert isinstance(result.exception, IntegrityError)
    report = to_json(result)
    assert "drill.binary_sha256" in report["error"] and "\n" not in report["error"]
    actual = hashlib.sha256(Path(result.exception.message.split()[2]).read_bytes()).hexdigest()
    assert actual in report["error"]
    assert list(tmp_path.glob("dr-drill-*")) == []
