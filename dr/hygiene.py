"""Process hygiene while the tool holds key material (issue 8, item 6).

Data keys, unseal keys, tokens and the writer key live in this process's memory. A
core dump (or a debugger attaching as the same user) would write them to disk, so the
CLI turns both off at start: RLIMIT_CORE 0, and PR_SET_DUMPABLE 0 on Linux, which also
keeps other processes of the same user from ptrace-attaching or reading
/proc/PID/mem. Children get their own dumpable flag back at exec (the throwaway
servers are exec'd binaries), so this does not leak into them.

It also caps glibc's malloc arenas (`limit_malloc_arenas`), for the memory bound.
"""

from __future__ import annotations

import ctypes
import logging
import os
import resource
import sys

log = logging.getLogger(__name__)

PR_SET_DUMPABLE = 4
PR_GET_DUMPABLE = 3
M_ARENA_MAX = -8  # glibc's mallopt parameter (malloc.h)
MALLOC_ARENAS = 2


def _libc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        # The process's own symbols, libc's among them: ctypes.util.find_library would
        # run ldconfig in a child on every start (~9 ms of each command).
        return ctypes.CDLL(None, use_errno=True)
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


def limit_malloc_arenas() -> None:
    """Cap glibc's malloc arenas at MALLOC_ARENAS, before any thread starts.

    glibc gives a thread that allocates under contention an arena of its own (up to 8
    per core), and each arena keeps the 1-8 MiB buffers freed in it for reuse. A backup
    runs a dozen threads that pass such buffers along (dr/ops/pipeline.py, s3transfer's
    workers), so the freed memory of several arenas added up: two arenas cut the peak
    RSS of `dr backup` by ~9 MB at 250 MB, with no measurable cost in time (bench/).
    MALLOC_ARENA_MAX set in the environment wins (glibc read it at start). Elsewhere
    (musl, macOS) there is no mallopt or no such parameter: nothing to do.
    """
    if "MALLOC_ARENA_MAX" in os.environ:
        return
    libc = _libc()
    mallopt = getattr(libc, "mallopt", None) if libc is not None else None
    if mallopt is not None and mallopt(M_ARENA_MAX, MALLOC_ARENAS) != 1:
        log.debug("mallopt(M_ARENA_MAX, %d) was refused", MALLOC_ARENAS)


def release_free_memory() -> None:
    """Hand the memory glibc's malloc holds free back to the kernel (malloc_trim(0)).

    glibc keeps freed 1 MiB buffers resident for reuse, and Python's small objects come
    from arenas of their own that cannot reuse them. The backup's catalog walk starts
    when the snapshot pipeline's queues have just been emptied (~19 MiB freed) while the
    upload's last parts are still held: the walk's objects came on top of both, ~4 MB
    above the streaming peak at 1 GB. Trimming first gives those pages back. Takes a
    few milliseconds; elsewhere (musl, macOS: no malloc_trim) nothing is done.
    """
    libc = _libc()
    trim = getattr(libc, "malloc_trim", None) if libc is not None else None
    if trim is not None:
        trim(0)
