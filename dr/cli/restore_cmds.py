"""`dr restore`, `dr decrypt`, `dr drill`."""

from __future__ import annotations

import click

COMMANDS: tuple[click.Command, ...] = ()
