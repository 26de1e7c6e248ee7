"""`dr report rotation`: rotation compliance from the newest catalog (no Vault needed)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import click

from dr.cli.restore_cmds import (
    allow_unsigned_option,
    backup_option,
    identity_option,
    wrappers_for,
)
from dr.cli.state import State, open_backup, pass_state


@click.group()
def report() -> None:
    """Reports from stored backups (no Vault is contacted)."""


@report.command()
@click.option(
    "--days",
    type=click.FloatRange(min=0),
    default=90,
    show_default=True,
    help="List the kv-v2 secrets whose version at the backup is older than this many days.",
)
@backup_option
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@identity_option
@allow_unsigned_option
@pass_state
def rotation(
    state: State,
    days: float,
    which: str,
    as_json: bool,
    identity: Path | None,
    allow_unsigned: bool,
) -> None:
    """Kv-v2 secrets not rotated in DAYS days, grouped by namespace, mount and path
    prefix, from the backup's catalog: no secret value is read, no Vault is needed."""
    from dr.ops.find import unlock
    from dr.ops.rotation import rotation_report, table
    from dr.ops.verify import load_catalog

    config, store, manifest = open_backup(state, which, allow_unsigned=allow_unsigned)
    data_key, _ = unlock(manifest, wrappers_for(config, identity))
    catalog = load_catalog(store, manifest, data_key)
    result = rotation_report(catalog, days=days, now=time.time())
    if as_json:
        click.echo(json.dumps(result.to_json(), indent=2, sort_keys=True))
    else:
        for line in table(result):
            click.echo(line)


COMMANDS: tuple[click.Command, ...] = (report,)
