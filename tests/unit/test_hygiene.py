"""The CLI process turns core dumps off and is not dumpable (dr/hygiene.py)."""

from __future__ import annotations

import subprocess
import sys
import textwrap


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
