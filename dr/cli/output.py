"""The CLI's own stderr lines (errors, notes, warnings) in the --log-format of the run.

Log records already follow --log-format (dr/logsetup.py); the lines the CLI prints
itself (the one `error:` line, "report: PATH", "warning: ...") must too, or a log
shipper parsing JSON drops exactly the line that says why a run failed. A run that
fails before the group callback ran (a bad option) still knows the format from argv
or DR_LOG_FORMAT.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import click

from dr.logsetup import json_line, json_logging


def json_requested(argv: Sequence[str] | None) -> bool:
    """--log-format json on the command line (also before click parsed it), or in
    DR_LOG_FORMAT, or set up already."""
    args = list(argv or [])
    for i, arg in enumerate(args):
        if arg == "--log-format=json" or (
            arg == "--log-format" and i + 1 < len(args) and args[i + 1] == "json"
        ):
            return True
    return json_logging() or os.environ.get("DR_LOG_FORMAT") == "json"


def note(text: str, *, level: str = "info", json_mode: bool | None = None, **fields: Any) -> None:
    """One line on stderr: plain text, or a JSON object with `fields`."""
    if json_mode if json_mode is not None else json_logging():
        click.echo(json_line(level, "dr.cli", text, **fields), err=True)
    else:
        click.echo(text, err=True)


def error(message: str, exit_code: int, kind: str, *, json_mode: bool) -> None:
    """The one `error:` line of a failed run (text: `error: <cause>; <next step>`)."""
    line = " ".join(message.split())  # one line, whatever a server put in the message
    if json_mode:
        click.echo(json_line("error", "dr.cli", line, exit_code=exit_code, error=kind), err=True)
    else:
        click.echo(f"error: {line}", err=True)
