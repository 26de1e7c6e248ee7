"""The drill runtimes against real servers: a local bao process and a bao container.

For each runtime: start -> 501 through the endpoint -> init + unseal -> kv write/read ->
unauthenticated generate-root through the socket -> stop -> nothing left. Then the
isolation (only `lo` in the server's network namespace, no route out, TCP unreachable
from the host) and interrupts (SIGINT / SIGTERM during and after start, SIGKILL + sweep).
"""

from __future__ import annotations

import errno
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from dr.errors import UsageError
from dr.runtime.base import DrillRuntime, RuntimeRequest, ThrowawayVault
from dr.runtime.container import DRILL_LABEL, ContainerRuntime
from dr.runtime.container import ISOLATION as CONTAINER_ISOLATION
from dr.runtime.container import sweep_orphans as sweep_containers
from dr.runtime.image import render_dockerfile
from dr.runtime.isolation import OWNER_LABEL, net_interfaces, owner_token, process_owner
from dr.runtime.process import (
    ISOLATION_NETNS,
    ISOLATION_NONE,
    ISOLATION_USERNS,
    ProcessRuntime,
    detect_version,
)
from dr.runtime.process import sweep_orphans as sweep_processes
from tests.stack.ci import missing

REPO = Path(__file__).resolve().parents[2]
IS_ROOT = os.geteuid() == 0
# A TEST-NET-1 address: routable from the host (default route), never from an
# isolated namespace (no route at all: ENETUNREACH at once).
OUTSIDE = ("192.0.2.1", 80)


# --- helpers -------------------------------------------------------------------------


@pytest.fixture(params=["process", "container"])
def runtime_name(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def make_request(
    request: pytest.FixtureRequest, bao_binary: Path, tmp_path: Path
) -> Callable[[str], RuntimeRequest]:
    product, version = detect_version(bao_binary)

    def make(name: str) -> RuntimeRequest:
        image = request.getfixturevalue("drill_image") if name == "container" else None
        workdir = tmp_path / f"drill-{name}"
        workdir.mkdir(mode=0o700)
        return RuntimeRequest(product, version, workdir, binary=bao_binary, image=image)

    return make


def _runtime(name: str) -> DrillRuntime:
    return ProcessRuntime() if name == "process" else ContainerRuntime()


@pytest.fixture
def started(
    runtime_name: str,
    make_request: Callable[[str], RuntimeRequest],
    drill_timings: dict[str, float],
) -> Iterator[ThrowawayVault]:
    runtime = _runtime(runtime_name)
    t0 = time.monotonic()
    vault = runtime.start(make_request(runtime_name))
    drill_timings[f"{runtime_name}: start (until 501)"] = time.monotonic() - t0
    try:
        yield vault
    finally:
        vault.stop()


def _docker() -> Any:
    import docker

    return docker.from_env()


def _container(vault: ThrowawayVault) -> Any:
    client = _docker()
    return client.containers.get(vault.details["container_id"])


def _server_pid(vault: ThrowawayVault) -> int:
    if vault.runtime == "process":
        return int(vault.details["pid"])
    return int(_container(vault).attrs["State"]["Pid"])


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _wait(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.05)


def _tcp_answers(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def _assert_nothing_left(vault: ThrowawayVault, pid: int) -> None:
    assert not _alive(pid), f"server pid {pid} still runs"
    sock = vault.endpoint.unix_socket
    if sock is not None:
        assert not sock.exists(), f"socket {sock} left behind"
        assert not sock.parent.exists(), f"socket dir {sock.parent} left behind"
    if vault.runtime == "process":
        port = int(vault.details["tcp_addr"].rsplit(":", 1)[1])
        assert not _tcp_answers("127.0.0.1", port)
    else:
        import docker.errors

        with pytest.raises(docker.errors.NotFound):
            _container(vault)


def _call(
    vault: ThrowawayVault, method: str, path: str, token: str | None = None, **kw: Any
) -> Any:
    return _session(vault).request(
        method,
        f"{_base_url(vault)}/v1/{path}",
        headers={"X-Vault-Token": token} if token else {},
        timeout=60,
        **kw,
    )


def _base_url(vault: ThrowawayVault) -> str:
    return vault.endpoint.base_url


def _session(vault: ThrowawayVault) -> Any:
    """A raw requests session to the throwaway (unix socket or TCP), from the connection
    layer's transport: these tests look at plain HTTP answers, not at dr's mapping."""
    from dr.vault.connection import _session as transport

    return transport(vault.endpoint, retries=0, pool_maxsize=4)


def _init_unseal(vault: ThrowawayVault) -> str:
    body = _call(vault, "PUT", "sys/init", json={"secret_shares": 1, "secret_threshold": 1})
    assert body.status_code == 200, body.text
    init = body.json()
    unseal = _call(vault, "PUT", "sys/unseal", json={"key": init["keys_base64"][0]})
    assert unseal.json()["sealed"] is False
    _wait(lambda: _call(vault, "GET", "sys/health").status_code == 200, 30, "active")
    return str(init["root_token"])


def _in_netns(pid: int, code: str) -> subprocess.CompletedProcess[str]:
    """Run Python `code` inside process `pid`'s network namespace (root only)."""
    return subprocess.run(
        ["nsenter", f"--net=/proc/{pid}/ns/net", sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


CONNECT_ERRNO = """
import socket, sys
try:
    socket.create_connection(({host!r}, {port}), timeout=3).close()
    print("connected")
except OSError as exc:
    print(exc.errno)
"""


# --- lifecycle -----------------------------------------------------------------------


def test_dockerfile_in_deploy_matches_the_one_the_code_builds() -> None:
    assert (REPO / "deploy/drill-image/Dockerfile").read_text() == render_dockerfile("bao")


def test_lifecycle(
    started: ThrowawayVault, bao_binary: Path, drill_timings: dict[str, float]
) -> None:
    vault = started
    assert (vault.product, vault.version) == detect_version(bao_binary)
    health = _call(vault, "GET", "sys/health")
    assert health.status_code == 501
    assert health.json()["initialized"] is False

    t0 = time.monotonic()
    root = _init_unseal(vault)
    drill_timings[f"{vault.runtime}: init + unseal + active"] = time.monotonic() - t0
    mount = _call(
        vault, "POST", "sys/mounts/secret", root, json={"type": "kv", "options": {"version": 2}}
    )
    assert mount.status_code == 204, mount.text
    import hvac

    client = hvac.Client(url=_base_url(vault), token=root, session=_session(vault), timeout=60)
    client.secrets.kv.v2.create_or_update_secret(
        path="drill/canary", secret={"value": "s3cr3t"}, mount_point="secret"
    )
    read = client.secrets.kv.v2.read_secret_version(
        path="drill/canary", mount_point="secret", raise_on_deleted_version=True
    )
    assert read["data"]["data"] == {"value": "s3cr3t"}

    # Unauthenticated generate-root is enabled on the listener the drill uses.
    attempt = _call(vault, "PUT", "sys/generate-root/attempt")
    assert attempt.status_code == 200, attempt.text
    assert attempt.json()["started"] is True and attempt.json()["otp"]
    assert _call(vault, "DELETE", "sys/generate-root/attempt").status_code == 204
    assert _call(vault, "GET", "sys/generate-root/attempt").json()["started"] is False

    # Last (the server then reseals itself): a snapshot round trip. The restore endpoint
    # spools the upload to a temp file inside the server (a FROM-scratch image needs /tmp).
    snap = _call(vault, "GET", "sys/storage/raft/snapshot", root)
    assert snap.status_code == 200 and snap.content[:2] == b"\x1f\x8b"
    restored = _call(vault, "POST", "sys/storage/raft/snapshot", root, data=snap.content)
    assert restored.status_code == 204, restored.text

    logs_before = vault.logs()
    assert "OpenBao server started" in logs_before or "Vault server started" in logs_before
    pid = _server_pid(vault)
    t0 = time.monotonic()
    vault.stop()
    drill_timings[f"{vault.runtime}: stop (right after a restore)"] = time.monotonic() - t0
    vault.stop()  # idempotent
    _assert_nothing_left(vault, pid)


def test_stop_right_after_start_leaves_nothing(
    started: ThrowawayVault, drill_timings: dict[str, float]
) -> None:
    pid = _server_pid(started)
    t0 = time.monotonic()
    started.stop()
    drill_timings[f"{started.runtime}: stop (fresh server)"] = time.monotonic() - t0
    _assert_nothing_left(started, pid)


def test_long_workdir_gets_a_short_socket_dir(
    runtime_name: str, bao_binary: Path, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """sun_path holds 108 bytes; a deep workdir must not break the socket."""
    if runtime_name == "process" and not IS_ROOT:
        missing("root", "the process runtime uses a unix socket only as root")
    image = request.getfixturevalue("drill_image") if runtime_name == "container" else None
    workdir = tmp_path.joinpath(*["a-long-directory-name"] * 6)
    workdir.mkdir(parents=True, mode=0o700)
    product, version = detect_version(bao_binary)
    drill_request = RuntimeRequest(product, version, workdir, binary=bao_binary, image=image)
    vault = _runtime(runtime_name).start(drill_request)
    try:
        sock = vault.endpoint.unix_socket
        assert sock is not None and len(str(sock)) <= 100
        assert not sock.is_relative_to(workdir)
        assert sock.parent.stat().st_mode & 0o777 == 0o700
        assert _call(vault, "GET", "sys/health").status_code == 501
    finally:
        vault.stop()
    assert not sock.parent.exists()


def test_process_runtime_without_netns_is_plain_loopback(
    make_request: Callable[[str], RuntimeRequest], monkeypatch: pytest.MonkeyPatch
) -> None:
    """No namespace possible (simulated): refused, unless allowed; then a plain child on
    127.0.0.1, and the isolation says NOT ISOLATED."""
    import dataclasses

    import dr.runtime.process as process_runtime

    monkeypatch.setattr(process_runtime, "netns_support", lambda: (None, "simulated"))
    request = make_request("process")
    with pytest.raises(UsageError, match="--allow-unisolated"):
        ProcessRuntime().start(request)
    assert list(request.workdir.iterdir()) == []
    vault = ProcessRuntime().start(dataclasses.replace(request, allow_unisolated=True))
    try:
        assert vault.isolation == ISOLATION_NONE and "NOT ISOLATED" in vault.isolation
        assert vault.isolated is False
        assert vault.endpoint.unix_socket is None
        assert vault.endpoint.addr == vault.details["tcp_addr"]
        assert vault.details["netns_unavailable"] == "simulated"
        pid = int(vault.details["pid"])
        assert os.readlink(f"/proc/{pid}/ns/net") == os.readlink("/proc/self/ns/net")
        assert _call(vault, "GET", "sys/health").status_code == 501
        assert _call(vault, "PUT", "sys/generate-root/attempt").status_code == 503  # sealed
    finally:
        vault.stop()
    _assert_nothing_left(vault, pid)


def test_container_runtime_without_engine(
    monkeypatch: pytest.MonkeyPatch, bao_binary: Path, tmp_path: Path
) -> None:
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-engine.sock")
    ok, why = ContainerRuntime().available()
    assert not ok and "no Docker engine answers" in why
    workdir = tmp_path / "drill"
    workdir.mkdir(mode=0o700)
    with pytest.raises(UsageError, match="no Docker engine answers"):
        ContainerRuntime().start(RuntimeRequest("openbao", "2.7.2", workdir))
    assert list(workdir.iterdir()) == []


def test_missing_image_names_the_build_command(
    make_request: Callable[[str], RuntimeRequest], docker_engine: str
) -> None:
    request = make_request("container")
    missing = RuntimeRequest(
        request.product, request.version, request.workdir, image="openbao/openbao:0.0.0-none"
    )
    with pytest.raises(UsageError, match=r"python -m dr\.runtime\.image --tag openbao/openbao:0"):
        ContainerRuntime().start(missing)
    assert list(request.workdir.iterdir()) == []
    assert _child_servers("container", owner_token()) == []


# --- isolation -----------------------------------------------------------------------


def test_process_isolation(make_request: Callable[[str], RuntimeRequest]) -> None:
    vault = ProcessRuntime().start(make_request("process"))
    try:
        pid = int(vault.details["pid"])
        port = int(vault.details["tcp_addr"].rsplit(":", 1)[1])
        assert vault.isolated is True
        assert vault.isolation == (ISOLATION_NETNS if IS_ROOT else ISOLATION_USERNS)
        assert vault.endpoint.unix_socket is not None and vault.endpoint.addr is None
        assert os.readlink(f"/proc/{pid}/ns/net") != os.readlink("/proc/self/ns/net")
        assert net_interfaces(pid) == ["lo"]
        # The server's TCP listener is not on the host's loopback...
        assert not _tcp_answers("127.0.0.1", port)
        if IS_ROOT:
            _assert_private_network(pid, port)
    finally:
        vault.stop()


def test_container_isolation(
    make_request: Callable[[str], RuntimeRequest], drill_image: str
) -> None:
    runtime = ContainerRuntime()
    assert runtime.available() == (True, "")
    vault = runtime.start(make_request("container"))
    try:
        assert vault.isolation == CONTAINER_ISOLATION
        attrs = _container(vault).attrs
        assert attrs["HostConfig"]["NetworkMode"] == "none"
        assert list(attrs["NetworkSettings"]["Networks"]) == ["none"]
        assert not attrs["NetworkSettings"]["Ports"]
        assert not attrs["HostConfig"]["PortBindings"]
        assert not attrs["HostConfig"]["Privileged"]
        assert not attrs["HostConfig"]["CapAdd"]
        pid = int(attrs["State"]["Pid"])
        assert net_interfaces(pid) == ["lo"]
        assert os.readlink(f"/proc/{pid}/ns/net") != os.readlink("/proc/self/ns/net")
        if IS_ROOT:
            _assert_private_network(pid, 8200)
    finally:
        vault.stop()


def _assert_private_network(pid: int, port: int) -> None:
    """Inside `pid`'s namespace: no route, only lo, the server's port, not the host's."""
    routes = subprocess.run(
        ["nsenter", f"--net=/proc/{pid}/ns/net", "ip", "-4", "route"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert routes.stdout.strip() == "", routes.stdout
    links = subprocess.run(
        ["nsenter", f"--net=/proc/{pid}/ns/net", "ip", "-o", "link"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert [line.split(":")[1].strip() for line in links.stdout.splitlines()] == ["lo"]
    # ...it is there, on the namespace's own loopback...
    inside = _in_netns(pid, CONNECT_ERRNO.format(host="127.0.0.1", port=port))
    assert inside.stdout.strip() == "connected", inside.stderr
    # ...no address outside is routable...
    out = _in_netns(pid, CONNECT_ERRNO.format(host=OUTSIDE[0], port=OUTSIDE[1]))
    assert out.stdout.strip() == str(errno.ENETUNREACH), out.stdout + out.stderr
    # ...and the host's loopback services are not reachable either.
    with socket.socket() as host_listener:
        host_listener.bind(("127.0.0.1", 0))
        host_listener.listen()
        host_port = host_listener.getsockname()[1]
        probe = _in_netns(pid, CONNECT_ERRNO.format(host="127.0.0.1", port=host_port))
    assert probe.stdout.strip() == str(errno.ECONNREFUSED), probe.stdout + probe.stderr


# --- interrupts ----------------------------------------------------------------------

CHILD = textwrap.dedent(
    """
    import json, signal, sys, time
    from pathlib import Path
    from dr.runtime import container as container_runtime, process as process_runtime
    from dr.runtime.isolation import owner_token
    from dr.runtime.base import RuntimeRequest
    from dr.errors import Interrupted

    name, workdir, binary, image, when = sys.argv[1:]

    def on_sigterm(signum, frame):  # what dr.cli.main does
        raise Interrupted("terminated by SIGTERM")

    signal.signal(signal.SIGTERM, on_sigterm)
    print(json.dumps({"owner": owner_token()}), flush=True)
    if when == "during-start":
        # Hold start() after the server exists, before it returns.
        def hold(*args, **kwargs):
            print(json.dumps({"holding": True}), flush=True)
            time.sleep(60)
        if name == "process":
            process_runtime.ProcessRuntime._check_started = staticmethod(hold)
        else:
            container_runtime._check_isolation = hold
    runtime = (process_runtime.ProcessRuntime if name == "process"
               else container_runtime.ContainerRuntime)()
    request = RuntimeRequest("openbao", "2.7.2", Path(workdir), binary=Path(binary),
                             image=image or None)
    vault = runtime.start(request)
    print(json.dumps({"started": vault.details}), flush=True)
    time.sleep(60)
    """
)


def _child_servers(runtime_name: str, owner: str) -> list[str]:
    """Servers (pids or container ids) whose owner is the child process."""
    if runtime_name == "process":
        found = []
        for entry in Path("/proc").iterdir():
            pid = int(entry.name) if entry.name.isdigit() else 0
            if pid and process_owner(pid) == owner and _alive(pid):
                found.append(entry.name)
        return found
    containers = _docker().containers.list(all=True, filters={"label": DRILL_LABEL})
    return [c.id for c in containers if c.labels.get(OWNER_LABEL) == owner]


def _spawn_child(runtime_name: str, request: RuntimeRequest, when: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            sys.executable,
            "-c",
            CHILD,
            runtime_name,
            str(request.workdir),
            str(request.binary),
            request.image or "",
            when,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )


def _read_event(child: subprocess.Popen[str], key: str) -> Any:
    assert child.stdout is not None
    for line in child.stdout:
        event = json.loads(line)
        if key in event:
            return event[key]
    child.wait(10)
    assert child.stderr is not None
    pytest.fail(f"child exited ({child.returncode}) before {key!r}: {child.stderr.read()}")


@pytest.mark.parametrize("when", ["during-start", "after-start"])
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_interrupt_leaves_nothing(
    runtime_name: str,
    make_request: Callable[[str], RuntimeRequest],
    sig: signal.Signals,
    when: str,
) -> None:
    request = make_request(runtime_name)
    child = _spawn_child(runtime_name, request, when)
    try:
        owner = _read_event(child, "owner")
        _read_event(child, "holding" if when == "during-start" else "started")
        assert _child_servers(runtime_name, owner), "the child's server should be running"
        child.send_signal(sig)
        child.wait(60)
        assert child.returncode != 0
        _wait(lambda: not _child_servers(runtime_name, owner), 10, "the server to go")
        assert not (request.workdir / "sock").exists()
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()


def test_sigkill_orphans_are_swept_by_the_next_drill(
    runtime_name: str, make_request: Callable[[str], RuntimeRequest]
) -> None:
    """A SIGKILLed owner: a process server dies with it (PR_SET_PDEATHSIG), through
    unshare; a container stays until the next drill's sweep."""
    request = make_request(runtime_name)
    child = _spawn_child(runtime_name, request, "after-start")
    try:
        owner = _read_event(child, "owner")
        _read_event(child, "started")
        assert _child_servers(runtime_name, owner)
        child.kill()  # no cleanup can run
        child.wait(10)
        if runtime_name == "process":
            _wait(lambda: not _child_servers(runtime_name, owner), 5, "PDEATHSIG")
            assert sweep_processes() == []
        else:
            assert _child_servers(runtime_name, owner), "SIGKILL leaves the container"
            sweep_containers(_docker())
        _wait(lambda: not _child_servers(runtime_name, owner), 10, "the orphan to go")
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
