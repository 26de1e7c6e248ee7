"""Process hygiene while the tool holds key material (issue 8, item 6).

Data keys, unseal keys, tokens and the writer key live in this process's memory. A
core dump (or a debugger attaching as the same user) would write them to disk, so the
CLI turns both off at start: RLIMIT_CORE 0, and PR_SET_DUMPABLE 0 on Linux, which also
keeps other processes of the same user from ptrace-attaching or reading
/proc/PID/mem. Children get their own dumpable flag back at exec (the throwaway
servers are exec'd binaries), so this does not leak into them.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import resource
import sys

log = logging.getLogger(__name__)

PR_SET_DUMPABLE = 4
PR_GET_DUMPABLE = 3


def _libc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    except OSError:
        return None


def harden_process() -> None:
    """No core dumps, not dumpable. Best effort: a refusal is logged, never fatal."""
    try:
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    except (ValueError, OSError) as exc:
        log.debug("could not turn core dumps off: %s", exc)
    libc = _libc()
    if libc is not None and libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0:
        log.debug("prctl(PR_SET_DUMPABLE, 0) failed: errno %d", ctypes.get_errno())


def dumpable() -> bool | None:
    """The process's dumpable flag (None where it cannot be read)."""
    libc = _libc()
    return None if libc is None else bool(libc.prctl(PR_GET_DUMPABLE, 0, 0, 0, 0))
