"""Drill reports: JSON (schema in docs/drill-report.md), Markdown (a CI job summary),
JUnit XML (one test case per check family), and the exit code.

Exit code precedence: the error that stopped the drill (6 authentication, 3 Vault, ...)
> 10 items failed > 11 RTO above objective > 12 backup older than max_backup_age > 0.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import dr
from dr.ops.drill import STAGES, DrillResult, exit_code, failure, verdict

# failure/exit_code/verdict live with DrillResult (the drill's record needs them too);
# re-exported here, where callers have always found them.
__all__ = ["exit_code", "failure", "to_json", "to_junit", "to_markdown", "verdict",
           "write_reports"]  # fmt: skip

REPORT_FORMAT = 1


def to_json(result: DrillResult) -> dict[str, Any]:
    return {
        "format": REPORT_FORMAT,
        "tool_version": dr.__version__,
        "passed": result.passed,
        "exit_code": exit_code(result),
        "verdict": verdict(result),
        "backup": {
            "id": result.backup_id,
            "cluster": result.cluster,
            "created_at": result.backup_created_at,
            "product": result.backup_product,
            "version": result.backup_version,
            "snapshot_bytes": result.snapshot_bytes,
            "raft_index": result.raft_index,
            "catalog_secrets": result.secrets_in_catalog,
            "recipient": result.recipient,
            # `latest` with --skip-unauthentic: the newer backups it could not trust
            "skipped_newer": result.skipped_newer,
        },
        "drill": {
            "started_at": result.started_at,
            "runtime": result.runtime,
            "isolation": result.isolation,
            "isolated": result.isolated,
            # The one path out of the isolation (auto-unseal: the relay to the seal).
            "isolation_exception": result.seal_exception or None,
            "seal": result.seal or None,
            "seal_preflight": result.seal_checks,
            "nodes": result.nodes,
            "not_cataloged": result.not_cataloged,
            "binary": result.binary or None,
            "binary_sha256": result.binary_sha256 or None,
            "image_id": result.image_id or None,
            "product": result.product,
            "version": result.version,
            "version_warning": result.version_warning or None,
        },
        "stages": {name: round(result.stages[name], 3) for name in STAGES if name in result.stages},
        "rto_seconds": None if result.rto_seconds is None else round(result.rto_seconds, 3),
        "rto_objective_seconds": result.rto_objective,
        "rpo_seconds": round(result.rpo_seconds, 3),
        "max_backup_age_seconds": result.max_backup_age,
        "checks": None if result.checks is None else result.checks.to_json(),
        "error": result.error or None,
    }


def _fmt(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds:.2f} s"


def to_markdown(result: DrillResult) -> str:
    icon = "✅" if result.passed else "❌"
    lines = [
        f"## {icon} vault-dr drill of `{result.backup_id}` ({result.cluster}): {verdict(result)}",
        "",
        f"- RTO: **{_fmt(result.rto_seconds)}**"
        + (f" (objective {result.rto_objective:.0f} s)" if result.rto_objective else ""),
        f"- RPO at drill time: **{result.rpo_seconds / 60:.1f} min** (backup taken "
        f"{result.backup_created_at})",
        f"- Runtime: {result.runtime or '-'} ({result.product} {result.version}); "
        f"isolation: {result.isolation or '-'}",
        f"- Backup: {result.backup_product} {result.backup_version}, "
        f"{result.snapshot_bytes} bytes, raft index {result.raft_index}, "
        f"{result.secrets_in_catalog} cataloged secrets, opened with {result.recipient or '-'}",
    ]
    if result.seal:
        lines.append(
            f"- Seal: {result.seal}"
            + (f"; preflight: {'; '.join(result.seal_checks)}" if result.seal_checks else "")
        )
    if result.seal_exception:
        lines.append(f"- Isolation exception: reaches {result.seal_exception}; nothing else")
    if result.nodes:
        lines.append(f"- Nodes: {len(result.nodes)} ({', '.join(result.nodes)})")
    if result.not_cataloged:
        lines.append(
            f"- ⚠️ Not cataloged at backup time (restored, not checked): "
            f"{', '.join(result.not_cataloged)}; extend the backup policy"
        )
    if result.skipped_newer:
        lines.insert(
            1,
            f"> **WARNING**: newer backup(s) skipped as unauthentic: "
            f"{', '.join(result.skipped_newer)} (--skip-unauthentic)",
        )
    if result.binary_sha256:
        lines.append(f"- Server binary: `{result.binary}` (sha256 `{result.binary_sha256}`)")
    if result.image_id:
        lines.append(f"- Image: `{result.image_id}`")
    if result.isolated is False:
        lines.insert(
            2,
            "> ⚠️ **NOT ISOLATED** (--allow-unisolated): the throwaway Vault shared the "
            "host network (loopback listener only); a restored Vault may revoke leases "
            "against real backends",
        )
        lines.insert(3, "")
    if result.version_warning:
        lines.append(f"- ⚠️ {result.version_warning}")
    lines += ["", "| stage | seconds |", "| --- | ---: |"]
    for name in STAGES:
        if name in result.stages:
            lines.append(f"| {name} | {result.stages[name]:.2f} |")
    if result.checks is not None:
        lines += [
            "",
            "| check | checked | ok | missing | mismatched | unreadable | extra "
            "| changed during backup |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        for f in result.checks.families:
            lines.append(
                f"| {f.name} | {f.checked} | {f.ok} | {f.missing} | {f.mismatched} | "
                f"{f.unreadable} | {f.extra} | {f.changed_during_backup} |"
            )
        failures = result.checks.failures()
        if failures:
            lines += ["", "First failures:", *[f"- {line}" for line in failures]]
    if result.error:
        lines += ["", f"Error: {result.error}"]
    return "\n".join(lines) + "\n"


def to_junit(result: DrillResult) -> str:
    suite = ET.Element(
        "testsuite",
        name=f"vault-dr drill {result.cluster}",
        timestamp=result.started_at,
        time=f"{sum(result.stages.values()):.3f}",
    )
    cases: list[tuple[str, float, str | None]] = []
    if result.isolated is not None:
        properties = ET.SubElement(suite, "properties")
        ET.SubElement(properties, "property", name="isolated", value=str(result.isolated).lower())
        ET.SubElement(properties, "property", name="isolation", value=result.isolation)
        if result.seal_exception:
            ET.SubElement(
                properties, "property", name="isolation_exception", value=result.seal_exception
            )
        if result.nodes:
            ET.SubElement(properties, "property", name="nodes", value=", ".join(result.nodes))
        if result.binary_sha256:
            ET.SubElement(properties, "property", name="binary_sha256", value=result.binary_sha256)
        if result.image_id:
            ET.SubElement(properties, "property", name="image_id", value=result.image_id)
    if result.isolated is False:
        # A passing case, so it fails no pipeline by itself, but it shows in every view.
        cases.append(("NOT ISOLATED (--allow-unisolated)", 0.0, None))
    if result.error:
        cases.append(("drill", sum(result.stages.values()), result.error))
    if result.checks is not None:
        for fam in result.checks.families:
            problem = None
            if fam.failed:
                firsts = [
                    x for x in (fam.first_missing, fam.first_mismatched, fam.first_unreadable) if x
                ]
                problem = (
                    f"{fam.missing} missing, {fam.mismatched} mismatched, "
                    f"{fam.unreadable} unreadable; first: {'; '.join(firsts)}"
                )
            cases.append((f"checks.{fam.name}", 0.0, problem))
    if result.rto_seconds is not None:
        rto_problem = verdict(result) if result.rto_exceeded else None
        cases.append(("rto_objective", result.rto_seconds, rto_problem))
    age_problem = verdict(result) if result.too_old else None
    cases.append(("backup_age", 0.0, age_problem))
    failures = 0
    for name, seconds, problem in cases:
        case = ET.SubElement(
            suite, "testcase", classname="vault_dr.drill", name=name, time=f"{seconds:.3f}"
        )
        if problem:
            failures += 1
            ET.SubElement(case, "failure", message=problem[:500]).text = problem
    suite.set("tests", str(len(cases)))
    suite.set("failures", str(failures))
    suite.set("errors", "0")
    return ET.tostring(suite, encoding="unicode", xml_declaration=True) + "\n"


def write_reports(result: DrillResult, report_dir: Path | None, junit: Path | None) -> list[Path]:
    written: list[Path] = []
    if report_dir is not None:
        report_dir.mkdir(parents=True, exist_ok=True)
        stem = f"drill-{result.backup_id}-{result.started_at.replace(':', '')}"
        json_path = report_dir / f"{stem}.json"
        json_path.write_text(json.dumps(to_json(result), indent=2) + "\n")
        md_path = report_dir / f"{stem}.md"
        md_path.write_text(to_markdown(result))
        written += [json_path, md_path]
    if junit is not None:
        junit.parent.mkdir(parents=True, exist_ok=True)
        junit.write_text(to_junit(result))
        written.append(junit)
    return written
