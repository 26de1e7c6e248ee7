"""`dr status [--json] [--nagios]`: the cluster's recoverability now (dr/ops/status.py)."""

from __future__ import annotations

import json
from pathlib import Path

import click

from dr.cli.restore_cmds import identity_option
from dr.cli.state import State, pass_state
from dr.errors import DRError, StatusStale
from dr.progress import human_bytes, human_duration


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print the whole status as JSON.")
@click.option(
    "--nagios",
    is_flag=True,
    help="Monitoring-plugin mode: print one 'VAULT-DR OK|WARNING|CRITICAL - ...' line and "
    "exit 0/1/2 (3 UNKNOWN when the store cannot be read) instead of 0/15.",
)
@identity_option
@pass_state
def status(state: State, as_json: bool, nagios: bool, identity: Path | None) -> int | None:
    """Newest backup's age (the RPO now), newest verified and drilled backup with the
    drill's RTO and stages, recipients, the lock holder and debris waiting for prune.

    Exit 15 when there is no backup or the newest is older than status.max_backup_age,
    or no passing drill within status.max_drill_age; 0 otherwise (warnings included).
    """
    from dr.ops.status import NAGIOS_CODES, UNKNOWN, run_status
    from dr.storage.factory import open_store

    try:
        config = state.config()
        store = open_store(config.storage)
        store.preflight(write=False)
        report = run_status(config, store, identity=identity)
    except DRError as exc:
        if not nagios:
            raise
        click.echo(f"VAULT-DR {UNKNOWN} - {' '.join(exc.message.split())}")
        return NAGIOS_CODES[UNKNOWN]
    if nagios:
        click.echo(report.summary_line())
        for check in report.checks:
            click.echo(f"{check.state}: {check.message}")
        return NAGIOS_CODES[report.state]
    if as_json:
        click.echo(json.dumps(report.to_json(), indent=2, sort_keys=True))
    else:
        _print(report)
    if report.stale:
        raise StatusStale("; ".join(c.message for c in report.stale))
    return None


def _print(report: object) -> None:
    from dr.ops.status import StatusReport

    assert isinstance(report, StatusReport)
    click.echo(report.summary_line())
    newest = report.newest_backup
    if newest:
        click.echo(
            f"newest backup:   {newest['backup_id']}, {human_duration(newest['age_seconds'])} "
            f"ago, {human_bytes(newest['snapshot_bytes'])} snapshot, "
            f"{newest['catalog_secrets']} secrets"
        )
        click.echo(f"recipients:      {', '.join(newest['recipients'])}")
    for label, rec in (
        ("newest verified", report.newest_verified),
        ("newest drill", report.newest_drill),
        ("passing drill", report.newest_passing_drill),
    ):
        if rec is None:
            click.echo(f"{label + ':':<17}none")
            continue
        line = (
            f"{label + ':':<17}{rec['backup_id']}, {human_duration(rec['age_seconds'])} ago, "
            + ("passed" if rec["passed"] else f"FAILED (exit {rec['exit_code']})")
        )
        if rec.get("rto_seconds") is not None:
            stages = ", ".join(
                f"{k} {v:.1f} s" for k, v in (rec.get("stages") or {}).items() if v is not None
            )
            line += f", RTO {rec['rto_seconds']:.1f} s ({stages})"
        click.echo(line)
    click.echo(f"{'backups:':<17}{report.backups}")
    if report.lock:
        click.echo(f"{'lock:':<17}{report.lock['holder']}")
    for check in report.checks:
        if check.state != "OK":
            click.echo(f"{check.state}: {check.message}")


COMMANDS: tuple[click.Command, ...] = (status,)
