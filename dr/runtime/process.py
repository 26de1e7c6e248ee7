"""The `process` drill runtime: a local `bao`/`vault` binary as a child process.

Isolation (a restored Vault revokes expired leases against the REAL backends, FACTS.md):
- as root: the server runs in a private network namespace (`unshare --net`) whose only
  interface is loopback; the host reaches it through a unix socket (a file, so it
  crosses the namespace boundary). Its TCP listener exists only inside the namespace
  (raft needs the cluster address), so no port is opened on the host at all.
- as any other user: the same inside a user namespace where we are root
  (`unshare --user --map-root-user --net`); the server's files are still ours.
- neither possible (no `unshare`/`ip`, or the kernel refuses): the runtime REFUSES to
  start, unless the request allows it (--allow-unisolated): then a plain child with its
  listeners on 127.0.0.1 only, and the report says NOT ISOLATED.
After start the runtime reads /proc/PID/net/dev and refuses to go on unless the server
sees only `lo`, so the isolation in the report is observed, not assumed.

The server's environment is an allow-list (`server_env`): nothing of the host's
secrets. A pinned binary (drill.binary_sha256) that differs is refused (exit 6); the
binary's path and sha256 are in the details either way.

Nothing outlives the drill: the server dies with the drill (PR_SET_PDEATHSIG SIGKILL,
set in LocalBao, holds through unshare), runs in its own process group (stop() signals
the group: SIGTERM, then SIGKILL), `Teardown` also runs at exit, and a server whose
owner died without cleanup is killed by the next process drill (`sweep_orphans`).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import logging
import os
import re
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

from dr.errors import IntegrityError, UsageError, VaultError
from dr.runtime.base import UNISOLATED_HINT, RuntimeRequest, ThrowawayVault, register
from dr.runtime.isolation import (
    MODE_USERNS,
    OWNER_ENV,
    Teardown,
    argv_prefix,
    join_prefix,
    net_interfaces,
    netns_support,
    owner_alive,
    owner_token,
    process_owner,
    server_env,
    socket_dir,
)
from dr.runtime.sealrelay import SealRelay, relay_for_server
from dr.vault.endpoint import Endpoint
from dr.vault.localserver import LocalBao, find_bao_binary

ISOLATION_NETNS = "private network namespace (loopback only), reached through a unix socket"
ISOLATION_USERNS = (
    "private user + network namespace (unprivileged; loopback only), reached through a unix socket"
)
ISOLATION_NONE = "NOT ISOLATED: no network namespace, loopback listener only (--allow-unisolated)"
log = logging.getLogger(__name__)
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
    # The same allow-list as the server: `version` needs no HOME, give it an empty one.
    env = server_env(Path("/nonexistent"), Path(tempfile.gettempdir()))
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


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(functools.partial(handle.read, 1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def check_binary(binary: Path, expected: str | None) -> str:
    """The binary's sha256; IntegrityError when `expected` (drill.binary_sha256) differs."""
    actual = file_sha256(binary)
    if expected is not None:
        want = expected.strip().lower().removeprefix("sha256:")
        if actual != want:
            raise IntegrityError(
                f"drill binary {binary} has sha256 {actual}, not the pinned "
                f"drill.binary_sha256 {want}: refusing to run it"
            )
    return actual


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

    def isolation_support(self) -> tuple[bool, str]:
        mode, why_not = netns_support()
        return mode is not None, why_not

    def start(self, request: RuntimeRequest) -> ThrowawayVault:
        sweep_orphans()
        binary = find_bao_binary(request.binary)
        mode, why_not = netns_support()
        isolated = mode is not None
        if not isolated and not request.allow_unisolated:
            raise UsageError(
                f"the process drill runtime cannot isolate the server ({why_not}); "
                f"{UNISOLATED_HINT}"
            )
        sha256 = check_binary(binary, request.binary_sha256)
        product, version = detect_version(binary)
        # The socket dir holds every node's socket and the seal relay's; it crosses the
        # namespace boundary because it is a file.
        sock_dir, _ = socket_dir(request.workdir / "sock")
        teardown = Teardown()
        teardown.add(functools.partial(shutil.rmtree, sock_dir, ignore_errors=True))
        servers: list[LocalBao] = []
        relay: SealRelay | None = None
        try:
            stanza, relay = relay_for_server(
                request.seal,
                dict(request.seal_secrets),
                sock_dir,
                str(sock_dir / "seal.sock"),
            )
            if relay is not None:
                teardown.add_first(relay.stop)  # after the servers, before the dir
            for index in range(max(1, request.nodes)):
                # Node 1 makes the namespace(s); the others enter node 1's, so raft
                # traffic stays on a loopback that only they share.
                if mode is None:
                    prefix: tuple[str, ...] = ()
                elif index == 0:
                    prefix = argv_prefix(mode)
                else:
                    assert servers[0].pid is not None and mode is not None
                    prefix = join_prefix(mode, servers[0].pid)
                unix = (
                    Endpoint(unix_socket=sock_dir / f"bao{index or ''}.sock") if isolated else None
                )
                server = LocalBao(
                    request.workdir / ("server" if index == 0 else f"server{index + 1}"),
                    binary=binary,
                    node_id="drill" if index == 0 else f"drill{index + 1}",
                    unauthed_generate_root=True,
                    log_level="info",
                    unix_socket=unix.unix_socket if unix else None,
                    argv_prefix=prefix,
                    endpoint=unix,
                    env={OWNER_ENV: owner_token()},
                    disable_mlock=product == "vault",
                    extra_listener_config=stanza,
                )
                servers.append(server)
                # Later nodes stop first: node 1 holds the namespace they entered.
                teardown.add_first(functools.partial(server.stop, STOP_TIMEOUT))
                server.start(timeout=START_TIMEOUT)
                self._check_started(server, isolated)
        except BaseException:
            teardown()
            raise
        first = servers[0]
        assert first.pid is not None
        if not isolated:
            log.warning(
                "WARNING: the drill server pid %s is NOT ISOLATED (%s): a restored Vault "
                "may revoke leases against real backends",
                first.pid,
                why_not,
            )
        isolation = ISOLATION_USERNS if mode == MODE_USERNS else ISOLATION_NETNS
        if len(servers) > 1:
            isolation += f"; {len(servers)} raft nodes share it"
        endpoints = [s.endpoint for s in servers]
        return ThrowawayVault(
            endpoint=endpoints[0],
            product=product,
            version=version,
            isolation=isolation if isolated else ISOLATION_NONE,
            isolated=isolated,
            runtime=self.name,
            stop=teardown,
            logs=functools.partial(_read_logs, [s.log_file for s in servers]),
            seal_exception=relay.describe() if relay is not None else "",
            endpoints=endpoints,
            api_addrs=[s.addr for s in servers],
            details={
                "pid": str(first.pid),
                "pids": ",".join(str(s.pid) for s in servers),
                "binary": str(binary),
                "binary_sha256": sha256,
                "isolation_mode": mode or "none",
                "endpoint": endpoints[0].describe(),
                "tcp_addr": first.addr,
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


def _read_logs(paths: list[Path]) -> str:
    parts = []
    for path in paths:
        try:
            parts.append(path.read_text(errors="replace"))
        except OSError:
            continue
    return "\n".join(parts)
