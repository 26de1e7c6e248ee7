"""Find stack processes a session left behind (a check, and a manual tool).

A process belongs to a pytest session when its command line names that session's base
temp directory: every LocalBao and SeaweedS3 the fixtures start has its workdir there.
Other sessions running on the same machine (their own basetemp) are never touched.

Manual check after a run:  python -m tests.stack.procs [BASETEMP]
(without BASETEMP it lists every bao/weed whose command line names a pytest temp dir).
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from pathlib import Path

SERVER_NAMES = ("bao", "vault", "weed")


def stack_processes(marker: str) -> list[tuple[int, str]]:
    """(pid, command line) of bao/vault/weed processes whose command line has `marker`."""
    found: list[tuple[int, str]] = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if not argv or not argv[0]:
            continue
        name = os.path.basename(argv[0].decode(errors="replace"))
        line = " ".join(a.decode(errors="replace") for a in argv if a)
        if name in SERVER_NAMES and marker in line:
            found.append((int(entry.name), line))
    return found


def kill_groups(pids: list[int]) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)


if __name__ == "__main__":
    marker = sys.argv[1] if len(sys.argv) > 1 else "/pytest-of-"
    left = stack_processes(marker)
    for pid, line in left:
        print(f"{pid} {line[:200]}")
    print(f"{len(left)} stack process(es) matching {marker!r}")
    sys.exit(1 if left else 0)
