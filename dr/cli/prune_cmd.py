"""`dr prune`: apply `retention:` and remove the debris of killed runs (docs/retention.md)."""

from __future__ import annotations

import json
from pathlib import Path

import click

from dr.cli import output
from dr.cli.reporting import metrics_file_option, reported
from dr.cli.state import State, pass_state
from dr.ops.prune import DebrisItem, PruneResult, run_prune
from dr.ops.retention import human_age
from dr.progress import human_bytes


@click.command()
@click.option(
    "--dry-run",
    is_flag=True,
    help="Print the plan (each backup kept with the rules that keep it, or removed with "
    "why; Object-Locked ones; debris) and change nothing: no delete, no lock object.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the plan and result as JSON.")
@metrics_file_option
@pass_state
def prune(state: State, dry_run: bool, as_json: bool, metrics_file: Path | None) -> None:
    """Remove the backups `retention:` no longer keeps, and what killed runs left.

    Never removes the newest backup, the newest verified or drilled one, the min_keep
    newest, or an Object-Locked version. Needs the pruner role's delete rights (exit 4
    without them); exit 9 while another run holds the cluster's lock.
    """
    # Metrics and alerts (docs/metrics.md, docs/alerts.md); a dry run changes nothing and
    # reports nothing.
    with reported(state, "prune", metrics_file, enabled=not dry_run) as run:
        result = run_prune(run.config, dry_run=dry_run)
        run.prune(**result.counts)
        if as_json:
            click.echo(json.dumps(result.to_json(), indent=2, sort_keys=True))
        else:
            for line in table(result):
                click.echo(line)
        _notes(result)


def table(result: PruneResult) -> list[str]:
    """The plan as aligned columns, then debris and one summary line."""
    rows = [("BACKUP ID", "CREATED", "ACTION", "WHY")]
    for d in result.plan.decisions:
        action = d.action if not (result.dry_run and d.action == "remove") else "remove*"
        rows.append((d.backup_id, d.to_json()["created_at"], action, ", ".join(d.reasons)))
    rows += [
        (bad.partition(":")[0], "", "keep", "unreadable manifest") for bad in result.unreadable
    ]
    rows += [(bid, "", "keep", "unsigned: not counted") for bid in result.unsigned]
    rows += [(bid, "", "keep", "manifest under a delete marker") for bid in result.debris.hidden]
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    lines = ["  ".join([*(c.ljust(w) for c, w in zip(r[:3], widths, strict=True)), r[3]]).rstrip()
             for r in rows]  # fmt: skip
    grace = human_age(result.debris.grace)
    for item in result.debris.due:
        if item.key in result.debris_locked:
            state = f"locked ({result.debris_locked[item.key]})"
        else:
            state = "would remove" if result.dry_run else "removed"
        lines.append(f"debris {state}: {_debris(item)}")
    for item in result.debris.waiting:
        lines.append(f"debris waiting (younger than debris_grace {grace}): {_debris(item)}")
    counts = result.counts
    verb = "would remove" if result.dry_run else "removed"
    lines.append(
        f"{'dry run: ' if result.dry_run else ''}{counts['kept']} kept, {verb} "
        f"{counts['removed']} backup(s) and {counts['debris']} debris item(s), "
        f"{counts['locked']} Object-Locked"
        + ("" if result.dry_run else f", {human_bytes(result.freed_bytes)} freed")
    )
    return lines


def _debris(item: DebrisItem) -> str:
    what = "unfinished upload" if item.kind == "upload" else f"{len(item.versions)} version(s)"
    return f"{item.key} ({what}, {human_bytes(item.size)}, since {item.to_json()['since']})"


def _notes(result: PruneResult) -> None:
    for bad in result.unreadable:
        output.note(
            f"warning: unreadable manifest, backup kept: {bad[:300]}", level="warning", key=bad
        )
    if result.debris.hidden:
        output.note(
            f"warning: {len(result.debris.hidden)} backup(s) whose manifest.json is under a "
            f"delete marker ({', '.join(result.debris.hidden[:3])}): kept, not debris; "
            "remove the delete marker to bring one back, or delete its versions by hand",
            level="warning",
            hidden=len(result.debris.hidden),
        )
    if result.dry_run:
        output.note("dry run: nothing was changed (remove* = would be removed)")


COMMANDS: tuple[click.Command, ...] = (prune,)
