"""Small OS helpers shared by the drill runtimes: network namespaces, socket paths, owners.

- `netns_support()`: can this process start a server in a private network namespace?
  As root: `unshare --net`. As any other user: `unshare --user --map-root-user --net`
  (a user namespace in which we are root, and in it a network namespace; FACTS.md). A
  probe runs the real prefix once (with `ip link set lo up`), so "supported" is observed.
- `net_interfaces(pid)`: the interfaces a process sees, read from /proc; the runtimes
  check it after start, so the isolation written in the report was observed, not assumed.
- `socket_dir(preferred)`: a unix socket path must fit in sun_path (108 bytes); pytest
  and CI temp dirs can be longer, so a short private dir is used instead when needed.
- `owner_token()`/`owner_alive()`: who started a throwaway server ("host:pid:starttime").
  A drill killed with SIGKILL runs no cleanup; the next drill finds servers whose owner
  is gone (by this token) and removes them, and `sweep_workdirs()` removes the drill work
  directories (`dr-drill-*` with an OWNER_FILE) such a drill left behind.
- `server_env()`: the allow-listed environment of a throwaway server (nothing of the
  host's secrets: no AWS_*, VAULT_*, BAO_*, DR_*...).
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import os
import shutil
import socket
import subprocess
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import ClassVar

from dr.vault.localserver import server_env

# Exec the server in a fresh network namespace whose only interface is loopback (up).
# `sh -c SCRIPT BINARY ARGS...`: $0 is the binary, "$@" its arguments; `exec` keeps one
# process (unshare without --fork execs too), so the server's pid is the child's pid.
# `unset PWD`: sh exports its cwd as PWD; the server gets only the allow-listed variables.
_LO_UP: tuple[str, ...] = (
    "--",
    "sh",
    "-c",
    'ip link set lo up && unset PWD OLDPWD && exec "$0" "$@"',
)
NETNS_ARGV_PREFIX: tuple[str, ...] = ("unshare", "--net", *_LO_UP)
# Unprivileged: a user namespace where we are root (mapped to our own uid), and in it a
# network namespace; `ip link set lo up` works there (CAP_NET_ADMIN in the user ns).
USERNS_ARGV_PREFIX: tuple[str, ...] = ("unshare", "--user", "--map-root-user", "--net", *_LO_UP)
MODE_NETNS = "netns"  # root: unshare --net
MODE_USERNS = "userns+netns"  # unprivileged: unshare --user --map-root-user --net
SUN_PATH_MAX = 100  # sun_path is 108 bytes with the NUL; keep a margin
OWNER_ENV = "DR_DRILL_OWNER"
OWNER_LABEL = "dr.drill.owner"
OWNER_FILE = ".dr-drill-owner"  # in a drill work dir: the owner_token() of its drill
WORKDIR_PREFIX = "dr-drill-"
__all__ = ["server_env"]  # re-exported: the allow-listed server environment


def argv_prefix(mode: str) -> tuple[str, ...]:
    """The wrapper that runs a server in the namespace(s) of `mode`."""
    return USERNS_ARGV_PREFIX if mode == MODE_USERNS else NETNS_ARGV_PREFIX


def join_prefix(mode: str, pid: int) -> tuple[str, ...]:
    """The wrapper that runs another server in the namespace(s) process `pid` made (a
    multi-node drill: every node on the same private loopback). Unprivileged, the user
    namespace is entered first (we own it, so we may), which allows the network one."""
    namespaces = (
        ("--user", "--net", "--preserve-credentials") if mode == MODE_USERNS else ("--net",)
    )
    return ("nsenter", f"--target={pid}", *namespaces, *_LO_UP)


@functools.cache
def netns_support() -> tuple[str | None, str]:
    """(mode, "") when a private network namespace can be made here (MODE_NETNS as
    root, MODE_USERNS otherwise), else (None, why not)."""
    missing = [tool for tool in ("unshare", "ip") if shutil.which(tool) is None]
    if missing:
        return None, f"{' and '.join(missing)} not found on PATH"
    mode = MODE_NETNS if os.geteuid() == 0 else MODE_USERNS
    prefix = argv_prefix(mode)
    try:
        probe = subprocess.run(
            [*prefix, "cat", "/proc/self/net/dev"],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=10,
            env=server_env(Path("/"), Path(tempfile.gettempdir())),
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return None, f"{' '.join(prefix[: prefix.index('--')])} could not run: {exc}"
    if probe.returncode != 0:
        command = " ".join(prefix[: prefix.index("--")])
        return None, f"{command} failed: {probe.stderr.strip()[:200] or probe.returncode}"
    interfaces = sorted(
        line.split(":", 1)[0].strip() for line in probe.stdout.splitlines()[2:] if ":" in line
    )
    if interfaces != ["lo"]:
        return None, f"the probe namespace sees interfaces {interfaces}, not only 'lo'"
    return mode, ""


def net_interfaces(pid: int) -> list[str]:
    """Names of the network interfaces process `pid` sees (from /proc/PID/net/dev)."""
    lines = Path(f"/proc/{pid}/net/dev").read_text().splitlines()[2:]
    return sorted(line.split(":", 1)[0].strip() for line in lines if ":" in line)


def socket_dir(preferred: Path) -> tuple[Path, bool]:
    """A 0700 directory for a unix socket: `preferred`, or a short private one.

    Returns (directory, created_elsewhere); the caller removes a directory made
    elsewhere when it is done.
    """
    if len(str(preferred / "bao.sock")) <= SUN_PATH_MAX:
        preferred.mkdir(mode=0o700, parents=True, exist_ok=True)
        preferred.chmod(0o700)
        return preferred, False
    base = tempfile.gettempdir()
    if len(base) > SUN_PATH_MAX - 30:
        base = "/tmp"  # noqa: S108 - mkdtemp below makes a private 0700 directory
    made = Path(tempfile.mkdtemp(prefix=WORKDIR_PREFIX, dir=base))
    claim_workdir(made)
    return made, True


def _start_time(pid: int) -> str | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # Field 22 (starttime); the command name (field 2) may hold spaces, so split after ")".
    return stat.rsplit(")", 1)[1].split()[19]


def owner_token(pid: int | None = None) -> str:
    """'host:pid:starttime' of this process (or `pid`): unique even when pids are reused."""
    pid = os.getpid() if pid is None else pid
    return f"{socket.gethostname()}:{pid}:{_start_time(pid) or '?'}"


def owner_alive(token: str) -> bool:
    """False only when `token` names a process on this host that no longer runs.

    Tokens from other hosts, or that do not parse, count as alive: never clean up what
    might belong to someone else.
    """
    host, _, rest = token.partition(":")
    pid_text, _, start = rest.partition(":")
    if host != socket.gethostname() or not pid_text.isdigit():
        return True
    current = _start_time(int(pid_text))
    return current is not None and (start == "?" or current == start)


def process_owner(pid: int) -> str | None:
    """The OWNER_ENV value in process `pid`'s environment, if readable."""
    try:
        environ = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return None
    prefix = f"{OWNER_ENV}=".encode()
    for item in environ.split(b"\0"):
        if item.startswith(prefix):
            return item[len(prefix) :].decode(errors="replace")
    return None


def claim_workdir(path: Path) -> None:
    """Mark a drill work dir (or socket dir) as this process's, for `sweep_workdirs`."""
    (path / OWNER_FILE).write_text(owner_token())


def sweep_workdirs(*parents: Path | None) -> list[Path]:
    """Remove `dr-drill-*` dirs (under the temp dir and `parents`) whose owner is gone.

    Only dirs that carry an OWNER_FILE naming a dead process on this host are removed:
    a dir without one may belong to a drill that is starting right now.
    """
    removed: list[Path] = []
    bases = {Path(tempfile.gettempdir()), Path("/tmp")}  # noqa: S108 - socket_dir's fallback
    bases.update(Path(p) for p in parents if p is not None)
    for base in bases:
        try:
            candidates = list(base.glob(f"{WORKDIR_PREFIX}*"))
        except OSError:
            continue
        for candidate in candidates:
            try:
                token = (candidate / OWNER_FILE).read_text().strip()
            except OSError:
                continue
            if token and not owner_alive(token):
                shutil.rmtree(candidate, ignore_errors=True)
                removed.append(candidate)
    return removed


class Teardown:
    """Idempotent cleanup for one throwaway server; also runs at interpreter exit.

    Steps run in order, once; every step runs even when an earlier one fails, and the
    first failure is raised afterwards. A drill interrupted by SIGINT, or by SIGTERM
    turned into an exception (dr.cli.main does that), still leaves nothing behind.
    """

    _pending: ClassVar[set[Teardown]] = set()
    _lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self, *steps: Callable[[], None]) -> None:
        self._steps = list(steps)
        self._done = False
        with Teardown._lock:
            Teardown._pending.add(self)

    def add(self, step: Callable[[], None]) -> None:
        """Run `step` after the steps added so far."""
        self._steps.append(step)

    def add_first(self, step: Callable[[], None]) -> None:
        """Run `step` before the steps added so far (undo in reverse order)."""
        self._steps.insert(0, step)

    def __call__(self) -> None:
        with Teardown._lock:
            if self._done:
                return
            self._done = True
            Teardown._pending.discard(self)
        first: BaseException | None = None
        for step in self._steps:
            try:
                step()
            except BaseException as exc:  # every step gets its turn
                first = first or exc
        if first is not None:
            raise first

    @classmethod
    def run_all(cls) -> None:
        with cls._lock:
            pending = list(cls._pending)
        for teardown in pending:
            with contextlib.suppress(Exception):
                teardown()


atexit.register(Teardown.run_all)
