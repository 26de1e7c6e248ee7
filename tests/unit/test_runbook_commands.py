"""Every `dr` command in the runbooks (and docs/restore.md) parses with the real CLI.

Parsing only: nothing runs. A renamed or removed option fails here before an operator
meets it in an incident.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import click
import pytest

from dr.cli.main import _register_commands, cli

ROOT = Path(__file__).resolve().parents[2]
RUNBOOK = ROOT / "runbooks" / "restore.md"
DOCS = [*sorted((ROOT / "runbooks").glob("*.md")), ROOT / "docs" / "restore.md"]


def _commands() -> list[str]:
    found: list[str] = []
    for doc in DOCS:
        for block in re.findall(r"```sh\n(.*?)```", doc.read_text(), re.S):
            for line in block.replace("\\\n", " ").splitlines():
                line = line.split(" #", 1)[0].strip()
                if line.startswith("dr "):
                    found.append(line)
    # The multi-node form is given inline in the text.
    found += re.findall(r"`(dr [^`]*--to [^`]*)`", RUNBOOK.read_text())
    inline = re.findall(r"`(--to https?://\S+(?: --to https?://\S+)+)`", RUNBOOK.read_text())
    found += [f"dr restore --backup ID {flags}" for flags in inline]
    return found


def test_the_runbooks_have_their_commands() -> None:
    commands = _commands()
    assert any(" restore " in c for c in commands), commands
    assert any(c.count("--to ") > 1 for c in commands), commands
    assert any(" drill " in c for c in commands), commands
    assert len(commands) > 10, commands


@pytest.mark.parametrize("command", _commands())
def test_runbook_command_parses(command: str) -> None:
    _register_commands()  # as main() does
    args = shlex.split(command)[1:]
    # The group's own options first; what is left names the command and its arguments.
    parser = cli.make_parser(click.Context(cli))
    _, left, _ = parser.parse_args(args=list(args))
    if not left:  # `dr --version`: group options only
        assert args and all(a in ("--version", "--help") for a in args), command
        return
    sub = cli.get_command(click.Context(cli), left[0])
    assert isinstance(sub, click.Command), f"no command {left[0]!r} in: {command}"
    sub.make_context(left[0], left[1:])  # raises on an unknown option or a bad value
