"""The CLI process turns core dumps off and is not dumpable (dr/hygiene.py)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

from dr import hygiene


def test_main_turns_core_dumps_off_and_is_not_dumpable() -> None:
    # In a child: the test process itself keeps its flags.
    code = textwrap.dedent(
        """
        import resource, sys
        from dr import hygiene
        assert hygiene.dumpable() is True
        import dr.cli.main as m
        try:
            m.main(["--version"])
        except SystemExit:
            pass
        print(resource.getrlimit(resource.RLIMIT_CORE), hygiene.dumpable())
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "(0, 0) False"


_ARENAS = """
import ctypes, os, sys, threading
from dr import hygiene
if sys.argv[1] == "limited":
    hygiene.limit_malloc_arenas()
def work(ready, go):
    ready.release()
    go.wait()
    keep = [bytearray(300_000) for _ in range(50)]  # malloc'd in this thread
    del keep
go = threading.Event()
ready = threading.Semaphore(0)
threads = [threading.Thread(target=work, args=(ready, go)) for _ in range(6)]
for t in threads:
    t.start()
for _ in threads:
    ready.acquire()
go.set()
for t in threads:
    t.join()
sys.stderr.flush()
ctypes.CDLL(None).malloc_stats()  # one "Arena N:" block per arena, on stderr
"""


def _arenas(mode: str) -> int:
    env = {k: v for k, v in os.environ.items() if k != "MALLOC_ARENA_MAX"}
    proc = subprocess.run(
        [sys.executable, "-c", _ARENAS, mode],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        env=env,
    )
    return sum(1 for line in proc.stderr.splitlines() if line.startswith("Arena "))


def test_malloc_arenas_are_capped_for_the_memory_bound() -> None:
    # The control shows that the threads do make arenas of their own without the cap.
    assert _arenas("default") > hygiene.MALLOC_ARENAS
    assert 1 <= _arenas("limited") <= hygiene.MALLOC_ARENAS


_TRIM = """
import sys
from dr import hygiene
def rss_kib():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS"):
            return int(line.split()[1])
# 1 MiB buffers, as the pipeline's: with mmap's threshold raised by a freed one, glibc
# keeps them in its heap, resident after free; a small block allocated last pins the
# heap's top, so only malloc_trim gives the pages below it back.
first = bytearray(1 << 20)
del first
keep = [bytearray(1 << 20) for _ in range(40)]
pin = bytearray(600_000)  # placed at the top: no free chunk below is as large
del keep
before = rss_kib()
if sys.argv[1] == "trim":
    hygiene.release_free_memory()
print(before - rss_kib())
"""


def test_release_free_memory_gives_freed_heap_pages_back() -> None:
    def freed(mode: str) -> int:
        proc = subprocess.run(
            [sys.executable, "-c", _TRIM, mode], capture_output=True, text=True, timeout=60
        )
        assert proc.returncode == 0, proc.stderr
        return int(proc.stdout.strip())

    assert freed("trim") > 30 * 1024  # most of the 40 MiB, in KiB
    assert freed("keep") < 5 * 1024
