"""docs/exit-codes.md and dr.errors.ExitCode must list the same codes."""

from __future__ import annotations

import re
from pathlib import Path

from dr.errors import ExitCode

DOC = Path(__file__).resolve().parents[2] / "docs" / "exit-codes.md"


def test_every_exit_code_is_documented_with_its_name() -> None:
    rows = re.findall(r"^\|\s*(\d+)\s*\|\s*([A-Z_]+)\s*\|", DOC.read_text(), re.MULTILINE)
    documented = {int(code): name for code, name in rows}
    assert documented == {code.value: code.name for code in ExitCode}
