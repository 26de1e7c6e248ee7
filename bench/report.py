"""The pure half of `python -m bench`: options, medians and ratios, targets, the JSON and
Markdown writers, the plot. Nothing here starts a server or times anything
(tests/unit/test_bench.py runs all of it in well under a second).

The results document (results.json) is::

    {"schema": 1, "started", "finished", "argv", "options", "machine", "interrupted",
     "benchmarks": {
        "backup":  [{"requested_mb", "snapshot_mb", "variants": {NAME: VARIANT}}],
        "restore": [{"requested_mb", "snapshot_mb", "variants": {...}}],
        "drill":   [{"secrets", "snapshot_mb", "variants": {...}}],
        "envelope": {...bench/envelope.py's output...}},
     "failures": [{"bench", "size", "error"}]}

    VARIANT = {"runs": [{"wall_s", "max_rss_kib", "cpu_s", "rss_mb", ... }],
               "median": {"wall_s", "rss_mb", "cpu_s", "mb_per_s", "metric_s"}}

`metric_s` is the figure a ratio compares: the process's wall time for backup and
restore, the drill's RTO (and the bare script's own time) for the drill.
"""

from __future__ import annotations

import argparse
import html
import json
import math
import re
import statistics
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

BENCHES = ("backup", "restore", "drill", "envelope")
FULL_SNAPSHOT_MB = (50, 250, 1024)
FULL_SECRETS = (1000, 10000, 50000, 100000)
QUICK_SNAPSHOT_MB = (50,)
QUICK_SECRETS = (1000,)

# The variants, in table order; the first of each bench is dr's, the rest references.
BACKUP = ("dr backup", "bare stream", "cron script")
RESTORE = ("dr restore", "CLI restore")
DRILL = ("dr drill", "bare script")

DOC_BEGIN = "<!-- bench-results:begin (written by python -m bench --update-doc) -->"
DOC_END = "<!-- bench-results:end -->"


# --- options ------------------------------------------------------------------------------


def int_list(text: str) -> tuple[int, ...]:
    """'50,250,1024' -> (50, 250, 1024); 'k' multiplies by 1000 ('10k')."""
    out = []
    for part in text.split(","):
        part = part.strip().lower()
        if not part:
            continue
        scale = 1000 if part.endswith("k") else 1
        try:
            value = int(part.removesuffix("k")) * scale
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a whole number: {part!r}") from None
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be positive: {part!r}")
        out.append(value)
    if not out:
        raise argparse.ArgumentTypeError("empty list")
    return tuple(out)


def bench_list(text: str) -> tuple[str, ...]:
    names = tuple(n.strip() for n in text.split(",") if n.strip())
    unknown = [n for n in names if n not in BENCHES]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"unknown benchmark {', '.join(unknown) or '(none)'}; choose from {', '.join(BENCHES)}"
        )
    return tuple(n for n in BENCHES if n in names)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description=(
            "Run vault-dr's benchmarks against real servers (OpenBao, SeaweedFS, moto KMS "
            "on 127.0.0.1), each next to its reference in the same run; write JSON, a "
            "Markdown table and a plot (docs/performance.md)."
        ),
    )
    parser.add_argument(
        "--snapshot-mb",
        type=int_list,
        help="snapshot sizes in MB for backup and restore (default 50,250,1024)",
    )
    parser.add_argument(
        "--secrets",
        type=int_list,
        help="secret counts for the drill (default 1000,10000,50000,100000)",
    )
    parser.add_argument("--runs", type=int, help="runs of each measurement (default 3)")
    parser.add_argument(
        "--only", type=bench_list, default=BENCHES, help=f"subset of {','.join(BENCHES)}"
    )
    parser.add_argument("--envelope-mib", type=int, default=256, help="envelope bench size")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke run: 50 MB, 1k secrets, 1 run (explicit sizes still win)",
    )
    parser.add_argument("--out", type=Path, help="output directory (default bench/results/DATE)")
    parser.add_argument(
        "--update-doc",
        type=Path,
        metavar="FILE",
        help="also replace the results block of FILE (docs/performance.md) with the table",
    )
    parser.add_argument(
        "--plot",
        choices=("auto", "matplotlib", "svg", "none"),
        default="auto",
        help="auto: matplotlib when installed (the bench extra), else a hand-written SVG",
    )
    return parser


@dataclass(frozen=True)
class Options:
    snapshot_mb: tuple[int, ...]
    secrets: tuple[int, ...]
    runs: int
    only: tuple[str, ...]
    envelope_mib: int
    quick: bool
    out: Path | None
    update_doc: Path | None
    plot: str

    def to_json(self) -> dict[str, Any]:
        return {
            "snapshot_mb": list(self.snapshot_mb),
            "secrets": list(self.secrets),
            "runs": self.runs,
            "only": list(self.only),
            "envelope_mib": self.envelope_mib,
            "quick": self.quick,
        }


def parse_args(argv: Sequence[str] | None = None) -> Options:
    parser = build_parser()
    ns = parser.parse_args(argv)
    runs = ns.runs if ns.runs is not None else (1 if ns.quick else 3)
    if runs < 1:
        parser.error("--runs must be at least 1")
    if ns.envelope_mib < 1:
        parser.error("--envelope-mib must be at least 1")
    return Options(
        snapshot_mb=ns.snapshot_mb or (QUICK_SNAPSHOT_MB if ns.quick else FULL_SNAPSHOT_MB),
        secrets=ns.secrets or (QUICK_SECRETS if ns.quick else FULL_SECRETS),
        runs=runs,
        only=ns.only,
        envelope_mib=ns.envelope_mib,
        quick=ns.quick,
        out=ns.out,
        update_doc=ns.update_doc,
        plot=ns.plot,
    )


# --- medians and ratios -------------------------------------------------------------------


def summarize(runs: list[dict[str, Any]], size_bytes: int | None = None) -> dict[str, Any]:
    """The medians of a variant's runs (wall, RSS, CPU, metric) and MB/s of the median."""

    def med(key: str) -> float | None:
        values = [float(r[key]) for r in runs if r.get(key) is not None]
        return statistics.median(values) if values else None

    wall = med("wall_s")
    out: dict[str, Any] = {
        "wall_s": wall,
        "rss_mb": med("rss_mb"),
        "cpu_s": med("cpu_s"),
        "metric_s": med("metric_s"),
        "n": len(runs),
    }
    metric = out["metric_s"] if out["metric_s"] is not None else wall
    out["mb_per_s"] = size_bytes / 1e6 / metric if size_bytes and metric else None
    return out


def ratio(value: float | None, reference: float | None) -> float | None:
    if value is None or reference is None or reference <= 0 or math.isnan(reference):
        return None
    return value / reference


def metric(variant: dict[str, Any] | None) -> float | None:
    if not variant:
        return None
    median = variant.get("median") or {}
    value = median.get("metric_s")
    return float(value) if value is not None else median.get("wall_s")


def entry_ratio(entry: dict[str, Any], name: str, reference: str) -> float | None:
    variants = entry.get("variants", {})
    return ratio(metric(variants.get(name)), metric(variants.get(reference)))


# --- targets (issue 12) -------------------------------------------------------------------


@dataclass(frozen=True)
class Check:
    target: str
    where: str
    measured: str
    status: str  # MET | MISSED | NOT MEASURED; lower case (met*) outside the sizes


def _status(ok: bool, named: bool) -> str:
    word = "MET" if ok else "MISSED"
    return word if named else f"{word.lower()}*"


def evaluate_targets(results: dict[str, Any]) -> list[Check]:
    """Each target of issue 12 at each size measured. A size the issue does not name is
    shown with a lower-case status and a star (for the trend, not the verdict)."""
    benches = results.get("benchmarks", {})
    checks: list[Check] = []
    backups = benches.get("backup") or []
    restores = benches.get("restore") or []
    drills = benches.get("drill") or []
    envelope = benches.get("envelope")

    def missing(target: str, hint: str) -> None:
        checks.append(Check(target, hint, "-", "NOT MEASURED"))

    t1 = "dr backup <= 1.25x the bare stream (250 MB, 1 GB)"
    t2 = "dr backup faster than the cron script (250 MB, 1 GB)"
    for target, ref, limit in ((t1, "bare stream", 1.25), (t2, "cron script", 1.0)):
        found = False
        for e in backups:
            r = entry_ratio(e, "dr backup", ref)
            if r is None:
                continue
            found = True
            ok = r <= limit if limit != 1.0 else r < 1.0
            named = e["requested_mb"] >= 250
            checks.append(Check(target, _mb(e), f"{r:.2f}x", _status(ok, named)))
        if not found:
            missing(target, "failed or not selected (--only)")

    t3 = "dr backup peak RSS < 150 MB (50 MB, 1 GB)"
    rss = []
    for e in backups:
        value = (e["variants"].get("dr backup") or {}).get("median", {}).get("rss_mb")
        if value is not None:
            rss.append((e, float(value)))
    for e, v in rss:
        named = e["requested_mb"] in (50, 1024) or e["requested_mb"] >= 1000
        checks.append(Check(t3, _mb(e), f"{v:.1f} MB", _status(v < 150, named)))
    if not rss:
        missing(t3, "failed or not selected (--only)")
    t4 = "dr backup peak RSS flat from 50 MB to 1 GB (spread <= 10%)"
    if len(rss) >= 2:
        values = [v for _, v in rss]
        spread = (max(values) - min(values)) / min(values)
        sizes = {e["requested_mb"] for e, _ in rss}
        named = min(sizes) <= 50 and max(sizes) >= 1000
        where = f"{_mb(rss[0][0])} .. {_mb(rss[-1][0])}"
        checks.append(Check(t4, where, f"{spread * 100:.0f}%", _status(spread <= 0.10, named)))
    else:
        missing(t4, "needs two or more --snapshot-mb sizes")

    t5 = "dr restore <= 1.25x the CLI restore"
    found = False
    for e in restores:
        r = entry_ratio(e, "dr restore", "CLI restore")
        if r is not None:
            found = True
            checks.append(Check(t5, _mb(e), f"{r:.2f}x", _status(r <= 1.25, True)))
    if not found:
        missing(t5, "failed or not selected (--only)")

    t6 = "drill RTO <= 1.1x the bare script (every size up to 100k)"
    found = False
    for e in drills:
        r = entry_ratio(e, "dr drill", "bare script")
        if r is not None:
            found = True
            where = f"{e['secrets']:,} secrets"
            checks.append(Check(t6, where, f"{r:.2f}x", _status(r <= 1.1, True)))
    if not found:
        missing(t6, "failed or not selected (--only)")

    for op in ("encrypt", "decrypt"):
        t = f"envelope {op} >= 80% of raw AES-GCM"
        value = (envelope or {}).get(f"ratio_{op}")
        if value is None:
            missing(t, "failed or not selected (--only)")
        else:
            where = f"{int(envelope['bytes']) >> 20} MiB, 1 MiB frames"
            checks.append(Check(t, where, f"{value * 100:.0f}%", _status(value >= 0.8, True)))
    return checks


def _mb(entry: dict[str, Any]) -> str:
    actual = entry.get("snapshot_mb")
    label = f"{entry['requested_mb']} MB"
    if actual and abs(actual - entry["requested_mb"]) > 1:
        return f"{label} ({actual:.0f} MB)"
    return label


# --- Markdown -----------------------------------------------------------------------------


def _f(value: float | None, fmt: str = ".2f", unit: str = "") -> str:
    return "-" if value is None else f"{value:{fmt}}{unit}"


def _x(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def table(header: Sequence[str], rows: Iterable[Sequence[str]], align: str) -> list[str]:
    """A Markdown table; align holds one 'l' or 'r' per column."""
    marks = {"l": "---", "r": "---:"}
    out = ["| " + " | ".join(header) + " |", "| " + " | ".join(marks[a] for a in align) + " |"]
    out += ["| " + " | ".join(row) + " |" for row in rows]
    return out


def _size_rows(
    entries: list[dict[str, Any]],
    names: Sequence[str],
    label: Callable[[dict[str, Any]], str],
    refs: Sequence[str],
    rto: bool = False,
) -> list[list[str]]:
    rows = []
    for e in entries:
        first = True
        for name in names:
            v = e["variants"].get(name)
            if v is None:
                continue
            m = v["median"]
            cells = [label(e) if first else "", name]
            if rto:
                cells.append(_f(m.get("metric_s"), ".2f", " s"))
            cells.append(_f(m.get("wall_s"), ".2f", " s"))
            if not rto:
                cells.append(_f(m.get("mb_per_s"), ".0f"))
            cells += [_f(m.get("rss_mb"), ".0f", " MB"), _f(m.get("cpu_s"), ".2f", " s")]
            for ref in refs:
                cells.append(_x(entry_ratio(e, name, ref)) if name == names[0] else "")
            rows.append(cells)
            first = False
    return rows


def _secrets(entry: dict[str, Any]) -> str:
    return f"{entry['secrets']:,}"


def machine_lines(machine: dict[str, Any]) -> list[str]:
    rows = [
        ("CPU", f"{machine.get('cores')} cores, {machine.get('cpu_model', '?')}"),
        ("RAM", f"{machine.get('ram_gb', 0):.1f} GB"),
        ("OS", f"{machine.get('os')} (kernel {machine.get('kernel')})"),
        ("Python", str(machine.get("python"))),
        ("OpenBao", str(machine.get("openbao"))),
        ("SeaweedFS", str(machine.get("seaweedfs"))),
        ("libraries", ", ".join(f"{k} {v}" for k, v in (machine.get("packages") or {}).items())),
        ("vault-dr", str(machine.get("git"))),
        ("peak RSS read by", str(machine.get("rss_method"))),
        (
            "load average",
            f"{machine.get('load_start', '?')} at start, {machine.get('load_end', '?')} at end",
        ),
    ]
    return table(("machine", ""), rows, "ll")


def render_markdown(results: dict[str, Any]) -> str:
    """The results block docs/performance.md embeds (between DOC_BEGIN and DOC_END)."""
    opts = results.get("options", {})
    benches = results.get("benchmarks", {})
    runs = opts.get("runs", "?")
    lines = [
        f"Run of {results.get('started', '?')} (`{' '.join(results.get('argv', []))}`): "
        f"medians of {runs} run(s) each, references measured in the same run, interleaved."
        + (" **Quick smoke run: not the final numbers.**" if opts.get("quick") else ""),
        "",
        *machine_lines(results.get("machine", {})),
        "",
    ]
    if results.get("interrupted"):
        lines += ["**Interrupted: partial results.**", ""]

    if benches.get("backup"):
        backup_runs = sorted(
            {
                int(v["median"].get("n", 0))
                for entry in benches["backup"]
                for v in entry.get("variants", {}).values()
            }
        )
        lines += [
            "#### Backup: `dr backup` vs the bare stream and the cron script",
            "",
            f"Medians of {'/'.join(str(n) for n in backup_runs)} runs each, after one "
            "untimed warm-up run of each variant.",
            "",
            *table(
                ("snapshot", "what", "wall", "MB/s", "peak RSS", "CPU", "vs bare", "vs cron"),
                _size_rows(benches["backup"], BACKUP, _mb, ("bare stream", "cron script")),
                "llrrrrrr",
            ),
            "",
        ]
    if benches.get("restore"):
        lines += [
            "#### Restore: `dr restore --no-verify` vs `bao operator raft snapshot restore -force`",
            "",
            *table(
                ("snapshot", "what", "wall", "MB/s", "peak RSS", "CPU", "vs CLI restore"),
                _size_rows(benches["restore"], RESTORE, _mb, ("CLI restore",)),
                "llrrrrr",
            ),
            "",
        ]
    if benches.get("drill"):
        lines += [
            "#### Drill: `dr drill --runtime process` RTO vs the bare hvac script",
            "",
            *table(
                ("secrets", "what", "RTO / own time", "wall", "peak RSS", "CPU", "vs bare script"),
                _size_rows(benches["drill"], DRILL, _secrets, ("bare script",), rto=True),
                "llrrrrr",
            ),
            "",
        ]
        stage_rows = []
        for e in benches["drill"]:
            stages = (e["variants"].get("dr drill") or {}).get("stages") or {}
            if stages:
                stage_rows.append(
                    [f"{e['secrets']:,}"] + [_f(stages.get(s), ".2f", " s") for s in DRILL_STAGES]
                )
        if stage_rows:
            lines += [
                "Drill stages (median run's report):",
                "",
                *table(("secrets", *DRILL_STAGES), stage_rows, "l" + "r" * len(DRILL_STAGES)),
                "",
            ]
    env = benches.get("envelope")
    if env:
        size = env["bytes"] / 1e6
        rows = [
            [
                name.replace("_", " "),
                _f(env[name]["mb_per_s"], ".0f"),
                _f(env[name]["cpu_s"], ".3f", " s"),
            ]
            for name in (
                "envelope_encrypt",
                "raw_encrypt",
                "envelope_decrypt",
                "raw_decrypt",
                "envelope_encrypt_hashed",
                "envelope_decrypt_fresh",
            )
            if name in env
        ]
        lines += [
            f"#### Envelope vs raw AES-256-GCM ({env['bytes'] >> 20} MiB = {size:.0f} MB "
            "in 1 MiB frames, one process)",
            "",
            *table(("what", "MB/s", "CPU"), rows, "lrr"),
            "",
            f"Envelope/raw: encrypt {env['ratio_encrypt'] * 100:.0f}%, "
            f"decrypt {env['ratio_decrypt'] * 100:.0f}%. The envelope rows are the paths "
            "the backup and the restore run (bench/envelope.py): encrypt without the "
            "reader's own SHA-256s (the pipeline hashes each byte once, elsewhere), "
            "decrypt into one reused frame buffer. For reference, not in the ratios: "
            "*envelope encrypt hashed* (both SHA-256s in the reader, as the catalog is "
            "written) and *envelope decrypt fresh* (a new bytes per frame, as verify "
            "reads).",
            "",
        ]
    checks = evaluate_targets(results)
    lines += [
        "#### Targets (issue 12)",
        "",
        *table(
            ("target", "where", "measured", "status"),
            ([c.target, c.where, c.measured, c.status] for c in checks),
            "lllr",
        ),
        "",
    ]
    if any(c.status.endswith("*") for c in checks):
        lines += ["\\* a size the target does not name: shown for the trend only.", ""]
    failures = results.get("failures") or []
    if failures:
        lines += ["#### Failed benchmarks", ""]
        lines += [f"- {f['bench']} {f['size']}: {f['error']}" for f in failures]
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


DRILL_STAGES = ("fetch", "provision", "restore", "authenticate", "verify", "teardown")


def replace_doc_block(doc: str, block: str) -> str:
    """docs/performance.md with the text between DOC_BEGIN and DOC_END replaced."""
    pattern = re.compile(re.escape(DOC_BEGIN) + r".*?" + re.escape(DOC_END), re.DOTALL)
    if not pattern.search(doc):
        raise ValueError(f"no results block ({DOC_BEGIN} ... {DOC_END}) in the document")
    return pattern.sub(lambda _: f"{DOC_BEGIN}\n{block.rstrip()}\n{DOC_END}", doc, count=1)


def write_json(path: Path, results: dict[str, Any]) -> None:
    path.write_text(json.dumps(results, indent=2, sort_keys=False, default=str) + "\n")


# --- the plot -----------------------------------------------------------------------------

Series = tuple[str, list[tuple[float, float]]]


def plot_series(results: dict[str, Any]) -> tuple[list[Series], list[Series]]:
    """(seconds vs snapshot MB for backup and restore, seconds vs secrets for the drill)."""
    benches = results.get("benchmarks", {})
    by_size: list[Series] = []
    for bench, names in (("backup", BACKUP), ("restore", RESTORE)):
        for name in names:
            points = []
            for e in benches.get(bench) or []:
                value = metric(e["variants"].get(name))
                if value is not None:
                    points.append((float(e.get("snapshot_mb") or e["requested_mb"]), value))
            if points:
                by_size.append((name, sorted(points)))
    by_count: list[Series] = []
    for name in DRILL:
        points = [
            (float(e["secrets"]), v)
            for e in benches.get("drill") or []
            if (v := metric(e["variants"].get(name))) is not None
        ]
        if points:
            by_count.append((f"{name} (RTO)" if name == "dr drill" else name, sorted(points)))
    return by_size, by_count


PANELS = (
    ("backup and restore: seconds vs snapshot size", "snapshot (MB)"),
    ("drill: seconds vs secrets", "secrets"),
)
COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b")


def plot_matplotlib(path: Path, results: dict[str, Any]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = plot_series(results)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for ax, series, (title, xlabel) in zip(axes, panels, PANELS, strict=True):
        for i, (name, points) in enumerate(series):
            xs, ys = zip(*points, strict=True)
            ax.plot(xs, ys, marker="o", color=COLORS[i % len(COLORS)], label=name)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel(xlabel)
        ax.set_ylabel("seconds (median)")
        xs_all = [x for _, pts in series for x, _ in pts] or [1.0]
        ys_all = [y for _, pts in series for _, y in pts] or [1.0]
        ax.set_xlim(0, max(xs_all) * 1.08)  # room for the last point and its marker
        ax.set_ylim(0, max(ys_all) * 1.12)
        ax.grid(True, alpha=0.3)
        if series:
            ax.legend(fontsize=8)
        else:
            ax.text(0.5, 0.5, "not measured", ha="center", transform=ax.transAxes)
    fig.tight_layout()
    fig.savefig(path, format="svg", metadata={"Date": None})
    plt.close(fig)


def _nice_max(value: float) -> float:
    if value <= 0:
        return 1.0
    exp = 10.0 ** math.floor(math.log10(value))
    for step in (1, 2, 2.5, 5, 10):
        if value <= step * exp:
            return step * exp
    return 10 * exp


def svg_plot(results: dict[str, Any]) -> str:
    """The same two panels as plot_matplotlib, as a hand-written SVG (no dependency)."""
    width, height, pw, ph = 1000, 380, 400, 260
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="11">',
        f'<rect width="{width}" height="{height}" fill="white"/>',
    ]
    for p, (series, (title, xlabel)) in enumerate(zip(plot_series(results), PANELS, strict=True)):
        x0, y0 = 70 + p * 500, 40
        xmax = _nice_max(max((x for _, pts in series for x, _ in pts), default=1))
        ymax = _nice_max(max((y for _, pts in series for _, y in pts), default=1))

        def sx(x: float, x0: int = x0, xmax: float = xmax) -> float:
            return x0 + x / xmax * pw

        def sy(y: float, y0: int = y0, ymax: float = ymax) -> float:
            return y0 + ph - y / ymax * ph

        out.append(
            f'<text x="{x0 + pw / 2}" y="{y0 - 15}" text-anchor="middle" font-size="13">'
            f"{html.escape(title)}</text>"
        )
        out.append(
            f'<rect x="{x0}" y="{y0}" width="{pw}" height="{ph}" fill="none" stroke="#444"/>'
        )
        for i in range(6):
            gx, gy = x0 + pw * i / 5, y0 + ph - ph * i / 5
            out.append(f'<line x1="{gx}" y1="{y0}" x2="{gx}" y2="{y0 + ph}" stroke="#ddd"/>')
            out.append(f'<line x1="{x0}" y1="{gy}" x2="{x0 + pw}" y2="{gy}" stroke="#ddd"/>')
            out.append(
                f'<text x="{gx}" y="{y0 + ph + 15}" text-anchor="middle">{xmax * i / 5:g}</text>'
            )
            out.append(f'<text x="{x0 - 6}" y="{gy + 4}" text-anchor="end">{ymax * i / 5:g}</text>')
        out.append(
            f'<text x="{x0 + pw / 2}" y="{y0 + ph + 34}" text-anchor="middle">'
            f"{html.escape(xlabel)}</text>"
        )
        out.append(
            f'<text x="{x0 - 45}" y="{y0 + ph / 2}" text-anchor="middle" '
            f'transform="rotate(-90 {x0 - 45} {y0 + ph / 2})">seconds (median)</text>'
        )
        if not series:
            out.append(
                f'<text x="{x0 + pw / 2}" y="{y0 + ph / 2}" text-anchor="middle">'
                "not measured</text>"
            )
        for i, (name, points) in enumerate(series):
            color = COLORS[i % len(COLORS)]
            coords = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in points)
            out.append(
                f'<polyline points="{coords}" fill="none" stroke="{color}" stroke-width="2"/>'
            )
            out += [
                f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="3" fill="{color}"/>'
                for x, y in points
            ]
            ly = y0 + 12 + i * 15
            out.append(
                f'<line x1="{x0 + 10}" y1="{ly - 4}" x2="{x0 + 28}" y2="{ly - 4}" '
                f'stroke="{color}" stroke-width="2"/>'
            )
            out.append(f'<text x="{x0 + 32}" y="{ly}">{html.escape(name)}</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


def write_plot(path: Path, results: dict[str, Any], how: str) -> str:
    """Write the plot; return what made it ('matplotlib', 'svg') or 'none'."""
    if how == "none":
        return "none"
    if how in ("auto", "matplotlib"):
        try:
            plot_matplotlib(path, results)
            return "matplotlib"
        except ImportError:
            if how == "matplotlib":
                raise
    path.write_text(svg_plot(results))
    return "svg"
