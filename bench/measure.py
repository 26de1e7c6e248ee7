"""Timing one child process: wall time, peak RSS and CPU seconds of that process alone.

Peak RSS is read the way GNU time reads it: `/usr/bin/time -o FILE -f "%M %U %S %e %x"`
runs the command and reports wait4()'s rusage of it. GNU time is a small C program, so
the figure is the command's own high-water mark. Measuring from this (Python) process
instead would not be: at fork the kernel copies the parent's memory map into the child
and keeps its high-water mark through exec, so a parent that held large buffers when it
forked inflates the child's `ru_maxrss` (docs/performance.md says more).

Without GNU time (`/usr/bin/time` missing, or not GNU), the command runs under
`python -m bench.rusage`, a fresh interpreter that holds no buffers (about 10 MB when
it forks: that is the floor of the figure) and writes the same five fields from
`getrusage(RUSAGE_CHILDREN)`.

Either way, a waited-for grandchild counts: the kernel folds its peak into its parent's
(`ru_maxrss` is the largest of the process and its waited-for descendants) and adds its
CPU time. For `dr drill`, that is the throwaway server dr starts and stops.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

GNU_TIME = Path("/usr/bin/time")
TIME_FORMAT = "%M %U %S %e %x"  # max RSS KiB, user s, sys s, elapsed s, exit status


@dataclass(frozen=True)
class Usage:
    """What GNU time (or bench.rusage) reported for one command."""

    max_rss_kib: int
    user_s: float
    sys_s: float
    elapsed_s: float
    exit_status: int

    @property
    def cpu_s(self) -> float:
        return self.user_s + self.sys_s

    @property
    def rss_mb(self) -> float:
        return self.max_rss_kib * 1024 / 1e6


def parse_time_output(text: str) -> Usage:
    """Parse the output of `-f "%M %U %S %e %x"`.

    GNU time writes "Command exited with non-zero status N" or "Command terminated by
    signal N" on a line before the format's line when the command failed; the figures
    are on the last non-empty line. A command killed by a signal has no exit status
    (GNU time prints it as 0); -N is returned then.
    """
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines:
        raise ValueError("no time output (the command did not run?)")
    fields = lines[-1].split()
    if len(fields) != 5:
        raise ValueError(f"unexpected time output: {lines[-1]!r}")
    status = int(fields[4])
    for line in lines[:-1]:
        if line.startswith("Command terminated by signal"):
            status = -int(line.rsplit(" ", 1)[1])
    return Usage(
        max_rss_kib=int(fields[0]),
        user_s=float(fields[1]),
        sys_s=float(fields[2]),
        elapsed_s=float(fields[3]),
        exit_status=status,
    )


def gnu_time_available(path: Path = GNU_TIME) -> bool:
    if not (path.is_file() and os.access(path, os.X_OK)):
        return False
    try:
        proc = subprocess.run(
            [str(path), "--version"], capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return "GNU" in (proc.stdout + proc.stderr)


def wrapper_argv(usage_file: Path, gnu_time: bool) -> list[str]:
    """The argv prefix that measures the command after it."""
    if gnu_time:
        return [str(GNU_TIME), "-o", str(usage_file), "-f", TIME_FORMAT]
    return [sys.executable, "-m", "bench.rusage", "-o", str(usage_file), "--"]


@dataclass
class ChildRun:
    """One measured command: our wall clock, its usage, its output."""

    argv: list[str]
    wall_s: float
    usage: Usage
    stdout: str
    stderr: str

    @property
    def returncode(self) -> int:
        return self.usage.exit_status

    def summary(self) -> dict[str, Any]:
        return {"wall_s": self.wall_s, **asdict(self.usage), "cpu_s": self.usage.cpu_s}


class ChildFailed(RuntimeError):
    def __init__(self, run: ChildRun, what: str) -> None:
        tail = " | ".join((run.stderr or run.stdout).strip().splitlines()[-6:])
        super().__init__(f"{what} exited {run.returncode}: {tail[-1500:]}")
        self.run = run


_GNU_TIME: bool | None = None


def use_gnu_time() -> bool:
    global _GNU_TIME
    if _GNU_TIME is None:
        _GNU_TIME = gnu_time_available()
    return _GNU_TIME


def run_measured(
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    timeout: float = 3600,
    what: str = "command",
    check: bool = True,
) -> ChildRun:
    """Run argv under GNU time (or bench.rusage); our own wall clock around it.

    The child's stdout and stderr go to temporary files (no pipe to drain while it
    runs). On any exit path, Ctrl-C included, a child still running is killed with its
    process group.
    """
    with tempfile.TemporaryDirectory(prefix="dr-bench-run-") as tmp:
        usage_file = Path(tmp) / "usage"
        out_path, err_path = Path(tmp) / "out", Path(tmp) / "err"
        full = [*wrapper_argv(usage_file, use_gnu_time()), *argv]
        with out_path.open("wb") as out, err_path.open("wb") as err:
            start = time.monotonic()
            proc = subprocess.Popen(
                full,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                env=dict(env) if env is not None else None,
                cwd=cwd,
                start_new_session=True,  # its own group: killed whole on our way out
            )
            try:
                proc.wait(timeout=timeout)
            finally:
                if proc.poll() is None:
                    kill_group(proc)
            wall = time.monotonic() - start
        run = ChildRun(
            argv=list(argv),
            wall_s=wall,
            usage=parse_time_output(usage_file.read_text() if usage_file.exists() else ""),
            stdout=out_path.read_text(errors="replace"),
            stderr=err_path.read_text(errors="replace"),
        )
    if check and run.returncode != 0:
        raise ChildFailed(run, what)
    return run


def kill_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM the child's process group, SIGKILL after 5 s."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout=5)
            return
        except subprocess.TimeoutExpired:
            continue
