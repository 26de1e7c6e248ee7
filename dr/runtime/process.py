"""The `process` drill runtime: a local `bao`/`vault` binary as a child process.

Isolation (a restored Vault revokes expired leases against the REAL backends, FACTS.md):
- as root, with `unshare` and `ip`: the server runs in a private network namespace whose
  only interface is loopback; the host reaches it through a unix socket (a file, so it
  crosses the namespace boundary). Its TCP listener exists only inside the namespace
  (raft needs the cluster address), so no port is opened on the host at all.
- otherwise: a plain child process with its listeners on 127.0.0.1 only; the report says
  that no network isolation applied.
After start the runtime reads /proc/PID/net/dev and refuses to go on unless the server
sees only `lo`, so the isolation in the report is observed, not assumed.

Nothing outlives the drill: the server runs in its own process group (stop() signals
the group: SIGTERM, then SIGKILL), `Teardown` also runs at exit, and a server whose
owner died without cleanup (SIGKILL) is killed by the next process drill
(`sweep_orphans`).
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
import shutil
import signal
import subprocess
from pathlib import Path

from dr.errors import UsageError, VaultError
from dr.runtime.base import RuntimeRequest, ThrowawayVault, register
from dr.runtime.isolation import (
    NETNS_ARGV_PREFIX,
    OWNER_ENV,
    Teardown,
    net_interfaces,
    netns_support,
    owner_alive,
    owner_token,
    process_owner,
    socket_dir,
)
from dr.vault.endpoint import Endpoint
from dr.vault.localserver import LocalBao, find_bao_binary

ISOLATION_NETNS = "private network namespace (loopback only), reached through a unix socket"
ISOLATION_NONE = "none: loopback listener only (run as root for a private network namespace)"
START_TIMEOUT = 30.0
# SIGTERM grace before SIGKILL. An active server stops in about 0.9 s; one inside the
# 5 s post-restore window waits that window out first (measured 6.4 s). Nothing in a
# throwaway needs a clean shutdown, so a short grace keeps interrupts and teardown quick.
STOP_TIMEOUT = 3.0
_VERSION_RE = re.compile(r"^(OpenBao|Vault)\s+v(\d\S*)", re.MULTILINE)
_SERVER_NAMES = ("bao", "vault")


def detect_version(binary: Path) -> tuple[str, str]:
    """(product, version) of a server binary from `BINARY version`: ("openbao", "2.7.2")."""
    stat = binary.stat()
    return _detect_version(str(binary), stat.st_mtime_ns, stat.st_size)


@functools.cache
def _detect_version(binary: str, mtime_ns: int, size: int) -> tuple[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VAULT_", "BAO_"))}
    try:
        out = subprocess.run(
            [binary, "version"],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=30,
            env=env,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise UsageError(f"{binary}: cannot run `{binary} version`: {exc}") from exc
    match = _VERSION_RE.search(out.stdout)
    if match is None:
        raise UsageError(
            f"{binary}: `version` printed {out.stdout.strip()[:120]!r}, not an OpenBao or "
            "Vault version; set drill.binary to a bao or vault server binary"
        )
    return match.group(1).lower(), match.group(2)


def sweep_orphans() -> list[int]:
    """Kill drill servers whose owner process is gone (it was SIGKILLed); their pids."""
    killed: list[int] = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv0 = (entry / "cmdline").read_bytes().split(b"\0", 1)[0]
        except OSError:
            continue
        if os.path.basename(argv0.decode(errors="replace")) not in _SERVER_NAMES:
            continue
        owner = process_owner(int(entry.name))
        if owner is None or owner_alive(owner):
            continue
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(int(entry.name), signal.SIGKILL)
            killed.append(int(entry.name))
    return killed


@register("process")
class ProcessRuntime:
    name = "process"

    def available(self) -> tuple[bool, str]:
        try:
            find_bao_binary()
        except UsageError as exc:
            return False, exc.message
        return True, ""

    def start(self, request: RuntimeRequest) -> ThrowawayVault:
        sweep_orphans()
        binary = find_bao_binary(request.binary)
        product, version = detect_version(binary)
        isolated, why_not = netns_support()
        sock_dir: Path | None = None
        unix: Endpoint | None = None
        if isolated:
            sock_dir, _ = socket_dir(request.workdir / "sock")
            unix = Endpoint(unix_socket=sock_dir / "bao.sock")
        server = LocalBao(
            request.workdir / "server",
            binary=binary,
            node_id="drill",
            unauthed_generate_root=True,
            log_level="info",
            unix_socket=unix.unix_socket if unix else None,
            argv_prefix=NETNS_ARGV_PREFIX if unix else (),
            endpoint=unix,
            env={OWNER_ENV: owner_token()},
            disable_mlock=product == "vault",
        )
        endpoint = unix or Endpoint(addr=server.addr)
        steps = [functools.partial(server.stop, STOP_TIMEOUT)]
        if sock_dir is not None:
            steps.append(functools.partial(shutil.rmtree, sock_dir, ignore_errors=True))
        teardown = Teardown(*steps)
        try:
            server.start(timeout=START_TIMEOUT)
            self._check_started(server, isolated)
        except BaseException:
            teardown()
            raise
        assert server.pid is not None
        return ThrowawayVault(
            endpoint=endpoint,
            product=product,
            version=version,
            isolation=ISOLATION_NETNS if isolated else ISOLATION_NONE,
            runtime=self.name,
            stop=teardown,
            logs=functools.partial(_read_log, server.log_file),
            details={
                "pid": str(server.pid),
                "binary": str(binary),
                "endpoint": endpoint.describe(),
                "tcp_addr": server.addr,
                **({"netns_unavailable": why_not} if not isolated else {}),
            },
        )

    @staticmethod
    def _check_started(server: LocalBao, isolated: bool) -> None:
        code = server.health_code()
        if code != 501:
            raise VaultError(
                f"{server.binary.name} server in {server.workdir} answered health {code}, "
                "not 501 (uninitialized): a drill needs a fresh server"
            )
        if isolated:
            assert server.pid is not None
            interfaces = net_interfaces(server.pid)
            if interfaces != ["lo"]:
                raise VaultError(
                    f"drill server pid {server.pid} sees network interfaces {interfaces}, "
                    "expected only 'lo': the private network namespace did not apply"
                )


def _read_log(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""
