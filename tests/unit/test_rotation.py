"""The rotation report's selection and grouping (pure logic)."""

from __future__ import annotations

from dr.ops.rotation import rotation_report, table
from dr.vault.catalog import Catalog, SecretEntry, parse_time

NOW = parse_time("2026-12-01T00:00:00Z") or 0.0


def entry(path: str, written: str, **kw: object) -> SecretEntry:
    mount, rest = path.split("/", 1)
    return SecretEntry(mount=f"{mount}/", path=rest, kv=2, version=1, version_time=written, **kw)  # type: ignore[arg-type]


def test_selects_by_age_and_skips_what_cannot_be_rotated() -> None:
    catalog = Catalog("prod", "b1", 0.0, 0.0)
    catalog.secrets = [
        entry("app/a/old", "2026-01-01T00:00:00Z"),
        entry("app/a/new", "2026-11-30T00:00:00Z"),
        entry("app/gone", "2026-01-01T00:00:00Z", deleted=True),
        entry("app/burnt", "2026-01-01T00:00:00Z", destroyed=True),
        SecretEntry(mount="legacy/", path="x", kv=1),
        entry("ns-app/y", "2026-01-01T00:00:00Z", namespace="team-a/"),
    ]
    report = rotation_report(catalog, days=90, now=NOW)
    assert report.checked == 3 and report.stale == 2
    assert {(g.namespace, g.mount, g.prefix) for g in report.groups} == {
        ("", "app/", "a/"),
        ("team-a/", "ns-app/", ""),
    }
    lines = table(report)
    assert lines[-1] == "2 of 3 kv-v2 secrets not rotated in 90 days (backup b1)"
    assert any(line.startswith("team-a/") for line in lines)


def test_older_catalogs_fall_back_to_the_metadata_time() -> None:
    catalog = Catalog("prod", "b1", 0.0, 0.0)
    catalog.secrets = [
        SecretEntry(mount="app/", path="s", kv=2, version=3, updated_time="2026-01-01T00:00:00Z")
    ]
    assert rotation_report(catalog, days=30, now=NOW).stale == 1
