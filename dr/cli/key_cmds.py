"""Key management commands (`dr keygen`, `dr rewrap`): see the key-management issue."""

from __future__ import annotations

import click

COMMANDS: tuple[click.Command, ...] = ()
