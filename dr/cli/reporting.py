"""The one way a command reports its run: metrics (docs/metrics.md) and alerts
(docs/alerts.md), on success and on every failure.

    with reported(state, "backup", metrics_file) as run:
        result = run_backup(run.config, ...)
        run.backup(result)

The config is loaded on entering; an exception is recorded (stage, exit code, one-line
error) and re-raised unchanged, so dr/cli/main.py still maps it to its exit code.
Reporting itself never raises: a metrics file that cannot be written or a webhook
that fails is a warning, and the command's exit code stays its own.

A run whose config does not load (exit 2) is still written to `--metrics-file` when
one was given: the cluster label is the config file's `cluster:` when that much of
the file reads, else "unknown", so a broken config shows up as a failure instead of
as silence. Nothing is pushed and no alert is posted then: the Pushgateway and the
webhook are in the config that did not load.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import click

from dr.cli.state import State
from dr.config import CLUSTER_PATTERN, Config, resolve_config_path
from dr.manifest import Layout
from dr.ops import alerts
from dr.ops import metrics as m
from dr.storage.factory import open_store
from dr.timesource import utcnow

if TYPE_CHECKING:
    from dr.ops.backup import BackupResult
    from dr.ops.drill import DrillResult

log = logging.getLogger(__name__)

metrics_file_option = click.option(
    "--metrics-file",
    "metrics_file",
    type=click.Path(dir_okay=False, path_type=Path),
    metavar="PATH",
    help="Write this run's metrics to PATH in the node_exporter textfile collector "
    "format (e.g. /var/lib/node_exporter/vault_dr.prom), merged with what the file holds "
    "and written atomically; overrides metrics.textfile (docs/metrics.md).",
)


@dataclass
class Run:
    """What the command hands to its report while it runs."""

    command: str
    config: Config
    measurement: m.Measurement
    backup_id: str | None = None
    details: dict[str, float | int | str] = field(default_factory=dict)
    drill_result: DrillResult | None = None

    def backup(self, result: BackupResult) -> None:
        """A stored backup (call it before raising PartialCatalog: exit 14 is stored)."""
        manifest = result.manifest
        self.backup_id = manifest.backup_id
        m.record_backup(
            self.measurement,
            seconds=result.seconds,
            snapshot_bytes=manifest.snapshot.plaintext_size,
            stored_bytes=manifest.snapshot.ciphertext_size + manifest.catalog.ciphertext_size,
            catalog_secrets=int(manifest.catalog_counts.get("secrets", 0)),
            at=utcnow().timestamp(),
        )

    def drill(self, result: DrillResult) -> None:
        """A drill that ran, passed or failed (call it before raising its failure)."""
        self.drill_result = result
        self.backup_id = result.backup_id
        m.record_drill(self.measurement, result)
        if result.rto_seconds is not None:
            self.details["rto_seconds"] = round(result.rto_seconds, 3)
        if result.checks is not None:
            self.details["items_failed"] = sum(
                f.missing + f.mismatched + f.unreadable for f in result.checks.families
            )

    def prune(self, *, kept: int, removed: int, debris: int, locked: int) -> None:
        m.record_prune(self.measurement, kept=kept, removed=removed, debris=debris, locked=locked)
        self.details.update(kept=kept, removed=removed, debris=debris, locked=locked)

    def stage(self, exc: BaseException) -> str:
        if self.drill_result is not None:
            return m.drill_stage(self.drill_result, exc)
        return m.stage_of(exc)


@contextmanager
def reported(
    state: State, command: str, metrics_file: Path | None, *, enabled: bool = True
) -> Iterator[Run]:
    """`enabled=False` (a prune --dry-run): the same Run, nothing published."""
    try:
        config = state.config()
    except BaseException as exc:
        if enabled:
            _report_early(state, command, metrics_file, exc)
        raise
    run = Run(command, config, m.Measurement(command, config.cluster))
    try:
        yield run
    except BaseException as exc:
        if enabled:
            _report(run, metrics_file, exc)
        raise
    if enabled:
        _report(run, metrics_file, None)


def _outcome(command: str, cluster: str, exc: BaseException | None, run: Run | None) -> m.Outcome:
    return m.Outcome(
        command=command,
        cluster=cluster,
        exit_code=m.exit_code_of(exc),
        error=m.error_line(exc),
        stage=None if exc is None else (run.stage(exc) if run else m.stage_of(exc)),
        finished=utcnow().timestamp(),
        backup_id=run.backup_id if run else None,
        details=dict(run.details) if run else {},
    )


def _report(run: Run, metrics_file: Path | None, exc: BaseException | None) -> None:
    config = run.config
    try:
        outcome = _outcome(run.command, config.cluster, exc, run)
        m.record_outcome(run.measurement, outcome)
        m.publish(
            run.measurement,
            textfile=metrics_file or config.metrics.textfile,
            pushgateway=config.metrics.pushgateway,
            job=config.metrics.job,
        )
        alerts.notify(
            config.alerts,
            lambda: open_store(config.storage),
            Layout(config.storage.prefix, config.cluster),
            outcome,
        )
    except Exception as bug:  # a bug in reporting must not replace the command's result
        _bug(run.command, bug)


def _bug(command: str, bug: Exception) -> None:
    log.warning("WARNING: reporting the %s run failed: %s: %s", command, type(bug).__name__, bug)
    log.debug("reporting failed", exc_info=True)


def _report_early(
    state: State, command: str, metrics_file: Path | None, exc: BaseException
) -> None:
    if metrics_file is None:
        return
    try:
        cluster = cluster_hint(state.config_path)
        measurement = m.Measurement(command, cluster)
        m.record_outcome(measurement, _outcome(command, cluster, exc, None))
        m.publish(measurement, textfile=metrics_file, pushgateway=None, job="")
    except Exception as bug:
        _bug(command, bug)


def cluster_hint(config_path: str | None) -> str:
    """The `cluster:` of a config that did not load, if that much reads; else unknown."""
    import yaml

    try:
        data = yaml.safe_load(resolve_config_path(config_path).read_text())
        cluster = data.get("cluster") if isinstance(data, dict) else None
    except Exception:
        return m.UNKNOWN_CLUSTER
    if isinstance(cluster, str) and re.fullmatch(CLUSTER_PATTERN, cluster):
        return cluster
    return m.UNKNOWN_CLUSTER
