"""The pure parts of `python -m bench` (bench/report.py, bench/measure.py): argument
parsing, GNU time parsing, medians and ratios, targets, the Markdown/JSON writers, the
plot. No server is started and nothing is timed here."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

from bench import report
from bench.measure import GNU_TIME, TIME_FORMAT, parse_time_output
from tests.stack.ci import missing

ROOT = Path(__file__).resolve().parents[2]


def variant(walls: list[float], rss: float = 120.0, metric: list[float] | None = None) -> dict:
    runs = [
        {"wall_s": w, "rss_mb": rss, "cpu_s": w / 2, "metric_s": (metric or walls)[i]}
        for i, w in enumerate(walls)
    ]
    return {"runs": runs, "median": report.summarize(runs, 250_000_000)}


def sample_results() -> dict[str, Any]:
    return {
        "started": "2026-12-02 06:00 UTC",
        "argv": ["python -m bench", "--quick"],
        "options": {"runs": 3, "quick": False},
        "machine": {"cores": 2, "ram_gb": 25.3, "python": "3.11.7", "rss_method": "GNU time"},
        "benchmarks": {
            "backup": [
                {
                    "requested_mb": 50,
                    "snapshot_mb": 56.0,
                    "variants": {
                        "dr backup": variant([1.3, 1.2, 1.4], rss=118),
                        "bare stream": variant([1.0, 1.0, 1.1]),
                        "cron script": variant([1.5, 1.6, 1.4]),
                    },
                },
                {
                    "requested_mb": 1024,
                    "snapshot_mb": 1075.0,
                    "variants": {
                        "dr backup": variant([12.0, 13.0, 14.0], rss=140),
                        "bare stream": variant([8.0, 8.0, 8.0]),
                        "cron script": variant([10.0, 10.0, 10.0]),
                    },
                },
            ],
            "restore": [
                {
                    "requested_mb": 250,
                    "snapshot_mb": 262.0,
                    "variants": {
                        "dr restore": variant([10.0, 11.0, 12.0]),
                        "CLI restore": variant([9.0, 9.0, 9.0]),
                    },
                }
            ],
            "drill": [
                {
                    "secrets": 1002,
                    "snapshot_mb": 1.0,
                    "variants": {
                        "dr drill": {
                            **variant([14.0], metric=[10.0]),
                            "stages": {"fetch": 0.2, "verify": 2.0},
                        },
                        "bare script": variant([15.0], metric=[12.5]),
                    },
                }
            ],
            "envelope": {
                "bytes": 256 << 20,
                "ratio_encrypt": 0.85,
                "ratio_decrypt": 0.75,
                **{
                    name: {"mb_per_s": 1000.0, "cpu_s": 0.3}
                    for name in ("envelope_encrypt", "raw_encrypt", "envelope_decrypt")
                },
                "raw_decrypt": {"mb_per_s": 1200.0, "cpu_s": 0.2},
            },
        },
        "failures": [{"bench": "drill", "size": "100000 secrets", "error": "boom"}],
    }


# --- arguments ----------------------------------------------------------------------------


def test_defaults_are_the_full_sizes() -> None:
    opts = report.parse_args([])
    assert opts.snapshot_mb == (50, 250, 1024)
    assert opts.secrets == (1000, 10000, 50000, 100000)
    assert opts.runs == 3 and opts.only == report.BENCHES and not opts.quick


def test_quick_and_explicit_sizes() -> None:
    quick = report.parse_args(["--quick"])
    assert (quick.snapshot_mb, quick.secrets, quick.runs) == ((50,), (1000,), 1)
    mixed = report.parse_args(["--quick", "--snapshot-mb", "250", "--secrets", "10k,2000"])
    assert mixed.snapshot_mb == (250,) and mixed.secrets == (10000, 2000) and mixed.runs == 1
    only = report.parse_args(["--only", "envelope,backup", "--runs", "2", "--out", "x"])
    assert only.only == ("backup", "envelope") and only.runs == 2 and only.out == Path("x")


@pytest.mark.parametrize("bad", ["", "a", "0", "-5", "1.5"])
def test_bad_size_lists(bad: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError):
        report.int_list(bad)


def test_bad_benchmark_names_and_runs(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match="unknown benchmark nope"):
        report.bench_list("backup,nope")
    with pytest.raises(SystemExit):
        report.parse_args(["--runs", "0"])
    assert "--runs must be at least 1" in capsys.readouterr().err


# --- GNU time -----------------------------------------------------------------------------


def test_parse_time_output() -> None:
    usage = parse_time_output("123456 1.50 0.25 3.10 0\n")
    assert usage.max_rss_kib == 123456 and usage.exit_status == 0
    assert usage.cpu_s == pytest.approx(1.75) and usage.rss_mb == pytest.approx(126.418944)
    failed = parse_time_output("Command exited with non-zero status 3\n1572 0.00 0.00 0.01 3\n")
    assert failed.exit_status == 3
    killed = parse_time_output("Command terminated by signal 9\n2000 0.10 0.00 0.20 0\n")
    assert killed.exit_status == -9
    for bad in ("", "1 2 3\n"):
        with pytest.raises(ValueError):
            parse_time_output(bad)


def test_gnu_time_format_is_what_we_parse(tmp_path: Path) -> None:
    if not GNU_TIME.exists():  # the one skip site: fails instead with CI=true
        missing("GNU time", "apt-get install time")
    out = tmp_path / "usage"
    subprocess.run([str(GNU_TIME), "-o", str(out), "-f", TIME_FORMAT, "sh", "-c", "exit 4"])
    assert parse_time_output(out.read_text()).exit_status == 4


def test_rusage_stand_in_writes_the_same_fields(tmp_path: Path) -> None:
    out = tmp_path / "usage"
    code = subprocess.call(
        [sys.executable, "-m", "bench.rusage", "-o", str(out), "--", "sh", "-c", "exit 2"],
        cwd=ROOT,
    )
    usage = parse_time_output(out.read_text())
    assert code == 2 and usage.exit_status == 2 and usage.max_rss_kib > 0


# --- medians, ratios, targets -------------------------------------------------------------


def test_summarize_and_ratio() -> None:
    med = report.summarize([{"wall_s": 3.0, "rss_mb": 100}, {"wall_s": 1.0, "rss_mb": 120}], 10**8)
    assert med["wall_s"] == 2.0 and med["rss_mb"] == 110 and med["mb_per_s"] == 50.0
    assert report.ratio(3.0, 2.0) == 1.5
    assert report.ratio(None, 2.0) is None and report.ratio(1.0, 0.0) is None


def test_targets() -> None:
    by_target: dict[str, list[report.Check]] = {}
    for c in report.evaluate_targets(sample_results()):
        by_target.setdefault(c.target, []).append(c)
    bare = by_target["dr backup <= 1.25x the bare stream (250 MB, 1 GB)"]
    assert [(c.measured, c.status) for c in bare] == [("1.30x", "missed*"), ("1.62x", "MISSED")]
    cron = by_target["dr backup faster than the cron script (250 MB, 1 GB)"]
    assert [c.status for c in cron] == ["met*", "MISSED"]
    rss = by_target["dr backup peak RSS < 150 MB (50 MB, 1 GB)"]
    assert [c.status for c in rss] == ["MET", "MET"]
    flat = by_target["dr backup peak RSS flat from 50 MB to 1 GB (spread <= 10%)"]
    assert flat[0].measured == "19%" and flat[0].status == "MISSED"
    restore = by_target["dr restore <= 1.25x the CLI restore"]
    assert restore[0].measured == "1.22x" and restore[0].status == "MET"
    drill = by_target["drill RTO <= 1.1x the bare script (every size up to 100k)"]
    assert drill[0].measured == "0.80x" and drill[0].status == "MET"
    assert by_target["envelope encrypt >= 80% of raw AES-GCM"][0].status == "MET"
    assert by_target["envelope decrypt >= 80% of raw AES-GCM"][0].status == "MISSED"


def test_targets_not_measured() -> None:
    checks = report.evaluate_targets({"benchmarks": {}})
    assert checks and all(c.status == "NOT MEASURED" for c in checks)


# --- writers ------------------------------------------------------------------------------


def test_markdown() -> None:
    md = report.render_markdown(sample_results())
    assert (
        "| 1024 MB (1075 MB) | dr backup | 13.00 s | 19 | 140 MB | 6.50 s | 1.62x | 1.30x |" in md
    )
    assert "|  | bare stream | 8.00 s |" in md
    n = {
        v["median"]["n"]
        for e in sample_results()["benchmarks"]["backup"]
        for v in e["variants"].values()
    }
    assert (
        f"Medians of {'/'.join(str(x) for x in sorted(n))} runs each, after one untimed warm-up"
        in md
    )
    assert "| 250 MB (262 MB) | dr restore | 11.00 s |" in md and "1.22x |" in md
    assert "| 1,002 | dr drill | 10.00 s | 14.00 s | 120 MB | 7.00 s | 0.80x |" in md
    assert "Envelope/raw: encrypt 85%, decrypt 75%." in md
    assert "| envelope decrypt >= 80% of raw AES-GCM | 256 MiB, 1 MiB frames | 75% | MISSED |" in md
    assert "- drill 100000 secrets: boom" in md
    # every table row has as many cells as its header
    for block in md.split("\n\n"):
        rows = [r for r in block.splitlines() if r.startswith("|")]
        if rows:
            assert len({r.count(" | ") for r in rows}) == 1, block


def test_replace_doc_block() -> None:
    doc = f"# Perf\n\nbefore\n{report.DOC_BEGIN}\nold table\n{report.DOC_END}\nafter\n"
    new = report.replace_doc_block(doc, "| new |\n")
    assert new == f"# Perf\n\nbefore\n{report.DOC_BEGIN}\n| new |\n{report.DOC_END}\nafter\n"
    assert report.replace_doc_block(new, "| new |\n") == new
    with pytest.raises(ValueError, match="no results block"):
        report.replace_doc_block("# nothing", "x")


def test_json_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "r.json"
    report.write_json(path, sample_results())
    assert json.loads(path.read_text())["benchmarks"]["backup"][0]["requested_mb"] == 50


def test_hand_written_svg(tmp_path: Path) -> None:
    path = tmp_path / "p.svg"
    assert report.write_plot(path, sample_results(), "svg") == "svg"
    root = ET.fromstring(path.read_text())
    lines = root.findall("{http://www.w3.org/2000/svg}polyline")
    assert len(lines) == 7  # 3 backup + 2 restore + 2 drill
    texts = [t.text for t in root.iter("{http://www.w3.org/2000/svg}text")]
    assert "dr drill (RTO)" in texts and "CLI restore" in texts
    empty = report.svg_plot({"benchmarks": {}})
    assert empty.count("not measured") == 2
    assert report.write_plot(path, sample_results(), "none") == "none"


def test_plot_series() -> None:
    by_size, by_count = report.plot_series(sample_results())
    assert by_size[0] == ("dr backup", [(56.0, 1.3), (1075.0, 13.0)])
    assert by_count == [("dr drill (RTO)", [(1002.0, 10.0)]), ("bare script", [(1002.0, 12.5)])]


def test_the_bench_compiles_dr_as_an_installed_dr_is_compiled() -> None:
    """Under PYTHONDONTWRITEBYTECODE (this machine sets it) an editable dr would compile
    every module in every timed process; the bench writes the bytecode first."""
    import importlib.util

    from bench.runner import ROOT, compile_dr

    source = ROOT / "dr" / "cli" / "main.py"
    cached = Path(importlib.util.cache_from_source(str(source)))
    cached.unlink(missing_ok=True)
    compile_dr()
    assert cached.is_file() and cached.stat().st_size > 0


def test_backup_variants_take_turns_going_first() -> None:
    """Whichever variant runs first after a size's fill meets the coldest caches; the
    order rotates so that over 3 runs each goes first once, and every run has all three."""
    from bench.runner import backup_order

    names = list(report.BACKUP)
    orders = [backup_order(run, names) for run in (1, 2, 3, 4)]
    assert [o[0] for o in orders[:3]] == names
    assert orders[3] == orders[0]
    assert all(sorted(o) == sorted(names) for o in orders)
