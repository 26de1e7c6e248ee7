"""A stand-in for GNU time where /usr/bin/time is missing: run a command, report its rusage.

    python -m bench.rusage -o FILE -- COMMAND...

Writes "maxrss_kib user_s sys_s elapsed_s exit_status" to FILE, the fields of
`/usr/bin/time -f "%M %U %S %e %x"`, from getrusage(RUSAGE_CHILDREN) after the command
ends. This interpreter is fresh and holds no buffers when it forks (about 10 MB; the
floor of the figure), unlike a benchmark process that may hold hundreds of MB: at fork
the kernel copies the parent's memory map, and the child's high-water mark keeps it
through exec (bench/measure.py).
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.rusage")
    parser.add_argument("-o", "--output", type=Path, required=True)
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("no command")
    start = time.monotonic()
    code = subprocess.call(command)
    elapsed = time.monotonic() - start
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    prefix, status = "", code
    if code < 0:  # killed by a signal: written as GNU time does (status 0 after the line)
        prefix, status, code = f"Command terminated by signal {-code}\n", 0, 128 - code
    args.output.write_text(
        f"{prefix}{usage.ru_maxrss} {usage.ru_utime:.2f} {usage.ru_stime:.2f} "
        f"{elapsed:.2f} {status}\n"
    )
    return code


if __name__ == "__main__":
    sys.exit(main())
