"""Prometheus metrics of `dr backup`, `dr drill` and `dr prune` (docs/metrics.md).

One run of one command of one cluster is a `Measurement`: the gauges it sets and the
counters it increments. It is published to a node_exporter textfile and/or a
Pushgateway, both merged with what is already there, because a run only knows itself:
- "last success" must survive a failing run, so every series a run does not set is
  carried forward from the previous values (a failing backup sets no size and no
  success timestamp; the previous ones stay);
- a family a run does set replaces that family's series of its cluster (a drill that
  stopped at `fetch` leaves no stale `verify` stage time of an older drill);
- counters (failures) are the previous value plus this run's increment;
- one textfile may hold every command and cluster: it is rewritten whole, under an
  flock on a side file (two runs never lose each other's update), atomically
  (prometheus-client's `write_to_textfile`: a temp file renamed over the target, so
  node_exporter never reads half a file).
The Pushgateway has one group per (job, cluster, command); its current values of the
group are read back first (GET /metrics), so counters keep counting on hosts with no
textfile (a CI runner). A success PUTs the whole group; a failure POSTs (pushadd) only
the families it sets, so the last success series already there stay even when the
read-back failed.

Publishing never raises: the caller logs a failure as a warning and the command's
exit code stays what the command made it.
"""

from __future__ import annotations

import fcntl
import logging
import time
import urllib.request
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, push_to_gateway, pushadd_to_gateway
from prometheus_client.exposition import write_to_textfile
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector

from dr.errors import (
    BackupTooOld,
    DRError,
    DrillFailed,
    ExitCode,
    IntegrityError,
    Interrupted,
    KeyAccessError,
    LockedError,
    NotFoundError,
    PartialCatalog,
    RTOExceeded,
    SealError,
    SnapshotError,
    StorageError,
    UsageError,
    VaultError,
)

if TYPE_CHECKING:
    from dr.ops.drill import DrillResult

log = logging.getLogger(__name__)

PREFIX = "vault_dr"
UNKNOWN_CLUSTER = "unknown"  # a run that failed before its config named the cluster
LOCK_WAIT = 10.0  # seconds: another run holds the textfile's lock for milliseconds

# Labels of one series, sorted: the identity of a sample inside its family.
Labels = tuple[tuple[str, str], ...]

GAUGE, COUNTER = "gauge", "counter"

# name -> (type, help). The names are the exposition names (counters end in _total).
# docs/metrics.md documents each one; tests/unit/test_metrics.py holds the two equal.
SERIES: dict[str, tuple[str, str]] = {
    # backup
    "vault_dr_backup_last_success_timestamp_seconds": (
        GAUGE,
        "Unix time the newest backup was stored (exit 0, or 14: stored, catalog partial).",
    ),
    "vault_dr_backup_last_run_timestamp_seconds": (GAUGE, "Unix time the last backup run ended."),
    "vault_dr_backup_last_exit_code": (GAUGE, "Exit code of the last backup run (0 = OK)."),
    "vault_dr_backup_duration_seconds": (GAUGE, "Duration of the last stored backup."),
    "vault_dr_backup_snapshot_bytes": (GAUGE, "Raft snapshot size of the last stored backup."),
    "vault_dr_backup_stored_bytes": (
        GAUGE,
        "Ciphertext bytes the last stored backup put in the store (snapshot and catalog).",
    ),
    "vault_dr_backup_catalog_secrets": (GAUGE, "Secrets in the last stored backup's catalog."),
    "vault_dr_backup_failures_total": (
        COUNTER,
        "Backup runs that ended non-zero, by the stage that failed and the exit code.",
    ),
    # drill
    "vault_dr_drill_last_success_timestamp_seconds": (
        GAUGE,
        "Unix time the last passing drill ended.",
    ),
    "vault_dr_drill_last_run_timestamp_seconds": (GAUGE, "Unix time the last drill ended."),
    "vault_dr_drill_last_exit_code": (GAUGE, "Exit code of the last drill (0 = passed)."),
    "vault_dr_drill_rto_seconds": (
        GAUGE,
        "Measured RTO (drill start to every path verified) of the last drill that got there.",
    ),
    "vault_dr_drill_rto_objective_seconds": (
        GAUGE,
        "drill.rto_objective of the last drill that had one.",
    ),
    "vault_dr_drill_stage_seconds": (GAUGE, "Seconds of each stage of the last drill."),
    "vault_dr_drill_items_verified": (
        GAUGE,
        "Cataloged items the last drill that verified found as cataloged.",
    ),
    "vault_dr_drill_items_failed": (
        GAUGE,
        "Cataloged items the last drill that verified found missing, mismatched or unreadable.",
    ),
    "vault_dr_drill_items_not_cataloged": (
        GAUGE,
        "Mounts the drilled backup's catalog could not cover (restored, not checked).",
    ),
    "vault_dr_drill_backup_age_seconds": (
        GAUGE,
        "Age of the drilled backup when the last drill started (the RPO at drill time).",
    ),
    "vault_dr_drill_failures_total": (
        COUNTER,
        "Drills that ended non-zero, by the stage that failed and the exit code.",
    ),
    # prune
    "vault_dr_prune_last_success_timestamp_seconds": (
        GAUGE,
        "Unix time the last successful prune ended.",
    ),
    "vault_dr_prune_last_run_timestamp_seconds": (GAUGE, "Unix time the last prune ended."),
    "vault_dr_prune_last_exit_code": (GAUGE, "Exit code of the last prune (0 = OK)."),
    "vault_dr_prune_backups_kept": (GAUGE, "Backups the last successful prune kept."),
    "vault_dr_prune_backups_removed": (GAUGE, "Backups the last successful prune removed."),
    "vault_dr_prune_debris_removed": (
        GAUGE,
        "Debris (objects of runs without a manifest, unfinished uploads) the last prune removed.",
    ),
    "vault_dr_prune_locked_skipped": (
        GAUGE,
        "Object-Locked versions the last prune had to leave in place.",
    ),
    "vault_dr_prune_failures_total": (
        COUNTER,
        "Prune runs that ended non-zero, by the stage that failed and the exit code.",
    ),
}

# The stage a failure is counted under when nothing better is known (the drill knows
# its own stages). Looked up along the exception's MRO, so subclasses (ConfigError is a
# UsageError) inherit their parent's stage.
STAGE_OF_ERROR: dict[type[BaseException], str] = {
    UsageError: "config",
    VaultError: "vault",
    StorageError: "storage",
    KeyAccessError: "keys",
    SnapshotError: "snapshot",
    IntegrityError: "integrity",
    LockedError: "lock",
    SealError: "seal",
    PartialCatalog: "catalog",
    DrillFailed: "verify",
    RTOExceeded: "rto",
    BackupTooOld: "backup_age",
    NotFoundError: "not_found",
    Interrupted: "interrupted",
    KeyboardInterrupt: "interrupted",
}


def stage_of(exc: BaseException) -> str:
    for cls in type(exc).__mro__:
        if cls in STAGE_OF_ERROR:
            return STAGE_OF_ERROR[cls]
    return "internal"


def exit_code_of(exc: BaseException | None) -> int:
    if exc is None:
        return int(ExitCode.OK)
    if isinstance(exc, DRError):
        return int(exc.exit_code)
    if isinstance(exc, KeyboardInterrupt):
        return int(ExitCode.INTERRUPTED)
    return int(ExitCode.INTERNAL)


def exit_name(code: int) -> str:
    try:
        return ExitCode(code).name
    except ValueError:
        return str(code)


def error_line(exc: BaseException | None) -> str:
    """The one line the CLI prints for `exc` (dr/cli/main.py), without `error: `."""
    if exc is None:
        return ""
    if isinstance(exc, DRError):
        text = exc.message
    elif isinstance(exc, KeyboardInterrupt):
        text = "interrupted; partial work was cleaned up"
    else:
        text = f"internal error: {type(exc).__name__}: {str(exc)[:200]}"
    return " ".join(text.split())


def drill_stage(result: DrillResult, exc: BaseException) -> str:
    """The drill stage `exc` stopped: the last one started (teardown always runs after),
    else what the error's type says (verify, rto, backup_age)."""
    if exc is result.exception:
        started = [name for name in result.stages if name != "teardown"]
        if started:
            return started[-1]
    return stage_of(exc)


@dataclass(frozen=True)
class Outcome:
    """How one run ended: what metrics and alerts both report."""

    command: str
    cluster: str
    exit_code: int
    error: str  # the one-line error ("" on success)
    stage: str | None  # the failed stage (None on success)
    finished: float  # unix time
    backup_id: str | None = None
    details: Mapping[str, float | int | str] = field(default_factory=dict)

    @property
    def exit_name(self) -> str:
        return exit_name(self.exit_code)

    @property
    def ok(self) -> bool:
        return self.exit_code == ExitCode.OK


@dataclass
class Family:
    """One metric family as exposed: `name` is the samples' name (counters: `..._total`)."""

    name: str
    type: str
    doc: str
    samples: dict[Labels, float] = field(default_factory=dict)


def labels_of(labels: Mapping[str, str]) -> Labels:
    return tuple(sorted(labels.items()))


@dataclass
class Measurement:
    """What one run of `command` for `cluster` sets (gauges) and adds (counters)."""

    command: str
    cluster: str
    gauges: dict[str, dict[Labels, float]] = field(default_factory=dict)
    increments: dict[str, dict[Labels, float]] = field(default_factory=dict)
    ok: bool = False  # set by record_outcome: the run ended 0

    def _name(self, suffix: str) -> str:
        name = f"{PREFIX}_{self.command}_{suffix}"
        if name not in SERIES:  # a programming error: every series is documented
            raise KeyError(f"undocumented metric {name}")
        return name

    def gauge(self, suffix: str, value: float, **labels: str) -> None:
        key = labels_of({"cluster": self.cluster, **labels})
        self.gauges.setdefault(self._name(suffix), {})[key] = float(value)

    def clear(self, suffix: str) -> None:
        """This run owns the family: the cluster's previous series of it go, even when
        the run sets none (a drill that ran no stage leaves no stage times)."""
        self.gauges.setdefault(self._name(suffix), {})

    def count(self, suffix: str, amount: float = 1.0, **labels: str) -> None:
        name = self._name(suffix)
        key = labels_of({"cluster": self.cluster, **labels})
        bucket = self.increments.setdefault(name, {})
        bucket[key] = bucket.get(key, 0.0) + amount

    @property
    def families(self) -> set[str]:
        return set(self.gauges) | set(self.increments)


# --- what each command records -------------------------------------------------------


def record_backup(
    m: Measurement,
    *,
    seconds: float,
    snapshot_bytes: int,
    stored_bytes: int,
    catalog_secrets: int,
    at: float,
) -> None:
    """A stored backup (also one that ends in exit 14: it is stored)."""
    m.gauge("last_success_timestamp_seconds", at)
    m.gauge("duration_seconds", seconds)
    m.gauge("snapshot_bytes", snapshot_bytes)
    m.gauge("stored_bytes", stored_bytes)
    m.gauge("catalog_secrets", catalog_secrets)


def record_drill(m: Measurement, result: DrillResult) -> None:
    """A drill that ran (passed or not): its measurements. The RTO and the item counts
    are of the last drill that measured them (carried forward otherwise)."""
    m.clear("stage_seconds")
    for stage, seconds in result.stages.items():
        m.gauge("stage_seconds", seconds, stage=stage)
    if result.rto_seconds is not None:
        m.gauge("rto_seconds", result.rto_seconds)
    if result.rto_objective is not None:
        m.gauge("rto_objective_seconds", result.rto_objective)
    if result.checks is not None:
        families = result.checks.families
        m.gauge("items_verified", sum(f.ok for f in families))
        m.gauge("items_failed", sum(f.missing + f.mismatched + f.unreadable for f in families))
    m.gauge("items_not_cataloged", len(result.not_cataloged))
    m.gauge("backup_age_seconds", result.rpo_seconds)


def record_prune(m: Measurement, *, kept: int, removed: int, debris: int, locked: int) -> None:
    """A prune that finished: plain counts, so this module needs no prune type."""
    m.gauge("backups_kept", kept)
    m.gauge("backups_removed", removed)
    m.gauge("debris_removed", debris)
    m.gauge("locked_skipped", locked)


def record_outcome(m: Measurement, outcome: Outcome) -> None:
    m.gauge("last_run_timestamp_seconds", outcome.finished)
    m.gauge("last_exit_code", outcome.exit_code)
    m.ok = outcome.ok
    if outcome.ok:
        m.gauge("last_success_timestamp_seconds", outcome.finished)
    else:
        m.count(
            "failures_total", stage=outcome.stage or "internal", exit_code=str(outcome.exit_code)
        )


# --- merging -------------------------------------------------------------------------


def parse_families(text: str) -> list[Family]:
    """Families of a text exposition (a textfile, a Pushgateway's /metrics), as exposed.
    Types other than gauge, counter and untyped are not ours: dropped."""
    out: list[Family] = []
    for metric in text_string_to_metric_families(text):
        if metric.type not in (GAUGE, COUNTER, "unknown"):
            log.debug("metrics: dropping %s (%s)", metric.name, metric.type)
            continue
        name = f"{metric.name}_total" if metric.type == COUNTER else metric.name
        samples = {labels_of(s.labels): s.value for s in metric.samples if s.name == name}
        out.append(Family(name, metric.type, metric.documentation, samples))
    return out


def merge(previous: Iterable[Family], m: Measurement) -> list[Family]:
    """`previous` with this run applied (module docstring), sorted by name."""
    merged: dict[str, Family] = {}
    for fam in previous:
        known = merged.get(fam.name)
        if known is None:
            merged[fam.name] = Family(fam.name, fam.type, fam.doc, dict(fam.samples))
        else:  # the same family twice (a Pushgateway's groups): one family
            known.samples.update(fam.samples)
    for name in m.families:
        typ, doc = SERIES[name]
        known = merged.get(name)
        if known is None or known.type != typ:
            merged[name] = Family(name, typ, doc, {})
        merged[name].doc = doc
    for name, samples in m.gauges.items():
        fam = merged[name]
        fam.samples = {k: v for k, v in fam.samples.items() if dict(k).get("cluster") != m.cluster}
        fam.samples.update(samples)
    for name, increments in m.increments.items():
        fam = merged[name]
        for key, amount in increments.items():
            fam.samples[key] = fam.samples.get(key, 0.0) + amount
    return [merged[name] for name in sorted(merged)]


class _Families(Collector):
    def __init__(self, families: Iterable[Family]) -> None:
        self._families = list(families)

    def collect(self) -> Iterator[Metric]:
        for fam in self._families:
            base = fam.name.removesuffix("_total") if fam.type == COUNTER else fam.name
            metric = Metric(base, fam.doc, fam.type)
            for key, value in sorted(fam.samples.items()):
                # add_sample is how the library's own parser fills a Metric; the typed
                # *MetricFamily helpers need one fixed label set per family, and a family
                # carried over from a file may not have one.
                metric.add_sample(fam.name, dict(key), value)
            yield metric


def registry_of(families: Iterable[Family]) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Families(families))
    return registry


# --- publishing ----------------------------------------------------------------------


def write_textfile(path: Path, m: Measurement) -> None:
    """Merge this run into the textfile at `path` (read-modify-write under an flock of
    `<path>.lock`, written atomically). Raises OSError/ValueError; the caller logs."""
    lock_path = path.with_name(f"{path.name}.lock")
    with open(lock_path, "a") as lock:
        _flock(lock.fileno(), path)
        try:
            text = path.read_text()
        except FileNotFoundError:
            text = ""
        try:
            previous = parse_families(text)
        except ValueError as exc:
            log.warning(
                "metrics: %s does not parse (%s); writing it afresh (counters restart)", path, exc
            )
            previous = []
        write_to_textfile(str(path), registry_of(merge(previous, m)))


def _flock(fd: int, path: Path) -> None:
    deadline = time.monotonic() + LOCK_WAIT
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() > deadline:
                raise OSError(
                    f"{path}.lock is held by another run for over {LOCK_WAIT:g} s"
                ) from None
            time.sleep(0.05)


def grouping_key(m: Measurement) -> dict[str, str]:
    return {"cluster": m.cluster, "command": m.command}


def push(gateway: str, job: str, m: Measurement, *, timeout: float = 10.0) -> None:
    """Push this run to the Pushgateway group (job, cluster, command). Raises on failure
    (OSError and friends); the caller logs."""
    key = grouping_key(m)
    previous = _group_on_gateway(gateway, job, key, m.command, timeout)
    families = merge(previous, m)
    if m.ok:
        push_to_gateway(gateway, job, registry_of(families), grouping_key=key, timeout=timeout)
    else:
        touched = [fam for fam in families if fam.name in m.families]
        pushadd_to_gateway(gateway, job, registry_of(touched), grouping_key=key, timeout=timeout)


def _group_on_gateway(
    gateway: str, job: str, key: Mapping[str, str], command: str, timeout: float
) -> list[Family]:
    """This group's current values of our series, from the gateway's own exposition;
    [] when it cannot be read (a failure then only loses counter history)."""
    url = gateway if "://" in gateway else f"http://{gateway}"
    try:
        # urllib.request, the library's own transport: only dr.vault.connection may
        # import requests/urllib3 (pyproject [tool.importlinter]); TLS is verified.
        with urllib.request.urlopen(f"{url.rstrip('/')}/metrics", timeout=timeout) as resp:  # noqa: S310 - http(s) from the config
            text = resp.read().decode("utf-8", "replace")
        families = parse_families(text)
    except Exception as exc:
        log.info("metrics: cannot read the Pushgateway's current values (%s); pushing anew", exc)
        return []
    want = {"job": job, **key}
    ours = f"{PREFIX}_{command}_"
    out = []
    for fam in families:
        if not fam.name.startswith(ours):
            continue  # push_time_seconds and other groups' series
        samples = {}
        for labels, value in fam.samples.items():
            d = dict(labels)
            if all(d.get(k) == v for k, v in want.items()):
                # The gateway adds job, the grouping labels and an empty instance label.
                for extra in ("job", "command", "instance"):
                    d.pop(extra, None)
                samples[labels_of(d)] = value
        if samples:
            out.append(Family(fam.name, fam.type, fam.doc, samples))
    return out


def publish(
    m: Measurement, *, textfile: Path | None, pushgateway: str | None, job: str
) -> list[str]:
    """Write/push `m`; never raises. Returns one line per failure (also logged as a
    warning), for tests and callers that want to know."""
    problems: list[str] = []
    if textfile is not None:
        try:
            write_textfile(textfile, m)
        except Exception as exc:
            problems.append(f"cannot write the metrics file {textfile}: {_why(exc)}")
    if pushgateway is not None:
        try:
            push(pushgateway, job, m)
        except Exception as exc:
            problems.append(f"cannot push metrics to the Pushgateway: {_why(exc)}")
    for line in problems:
        log.warning("WARNING: %s; the %s result is unchanged", line, m.command)
    return problems


def _why(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return f"{type(exc).__name__}: {exc}"[:300]
