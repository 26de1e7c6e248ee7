"""`dr report rotation`: which kv-v2 secrets have not been rotated in N days.

Read from the newest (or a named) backup's catalog: for every kv-v2 secret, the time
its version at the snapshot was written (`version_time`; `updated_time` for catalogs
from before that field). No secret value is read, and no Vault is needed: the catalog
is what the backup recorded, decrypted with the configured recipients. Grouped by
namespace, mount and the first path segment, the way teams own their paths.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from dr.vault.catalog import Catalog, SecretEntry, parse_time

DAY = 86400.0


@dataclass(frozen=True)
class StaleSecret:
    namespace: str
    mount: str
    path: str
    version: int | None
    written_at: str
    age_days: float

    def to_json(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "version": self.version,
            "written_at": self.written_at,
            "age_days": round(self.age_days, 1),
        }


@dataclass
class RotationGroup:
    namespace: str
    mount: str
    prefix: str
    secrets: list[StaleSecret] = field(default_factory=list)

    @property
    def oldest_days(self) -> float:
        return max(s.age_days for s in self.secrets)

    def to_json(self) -> dict[str, Any]:
        return {
            "namespace": self.namespace,
            "mount": self.mount,
            "prefix": self.prefix,
            "count": len(self.secrets),
            "oldest_days": round(self.oldest_days, 1),
            "secrets": [s.to_json() for s in sorted(self.secrets, key=lambda s: s.path)],
        }


@dataclass
class RotationReport:
    backup_id: str
    days: float
    now: float
    checked: int  # kv-v2 secrets with a known write time
    groups: list[RotationGroup]

    @property
    def stale(self) -> int:
        return sum(len(g.secrets) for g in self.groups)

    def to_json(self) -> dict[str, Any]:
        return {
            "backup_id": self.backup_id,
            "days": self.days,
            "checked": self.checked,
            "stale": self.stale,
            "groups": [g.to_json() for g in self.groups],
        }


def _prefix(path: str) -> str:
    head, sep, _ = path.partition("/")
    return head + sep if sep else ""


def _written(entry: SecretEntry) -> tuple[str, float] | None:
    for text in (entry.version_time, entry.updated_time):
        when = parse_time(text or "")
        if when is not None:
            return str(text), when
    return None


def rotation_report(catalog: Catalog, *, days: float, now: float) -> RotationReport:
    """The kv-v2 secrets whose version at the snapshot is older than `days` days.
    Deleted or destroyed versions are not counted (nothing to rotate)."""
    groups: dict[tuple[str, str, str], RotationGroup] = {}
    checked = 0
    for entry in catalog.secrets:
        if entry.kv != 2 or entry.deleted or entry.destroyed or entry.version is None:
            continue
        written = _written(entry)
        if written is None:
            continue
        checked += 1
        text, when = written
        age = (now - when) / DAY
        if age <= days:
            continue
        key = (entry.namespace, entry.mount, _prefix(entry.path))
        group = groups.get(key) or groups.setdefault(key, RotationGroup(*key))
        group.secrets.append(
            StaleSecret(entry.namespace, entry.mount, entry.path, entry.version, text, age)
        )
    ordered = sorted(groups.values(), key=lambda g: (-len(g.secrets), g.namespace, g.mount))
    return RotationReport(catalog.backup_id, days, now, checked, ordered)


def table(report: RotationReport) -> list[str]:
    """Rows for the terminal: the groups, then a total line."""
    rows = [("NAMESPACE", "MOUNT", "PREFIX", "SECRETS", "OLDEST (days)")]
    rows += [
        (
            g.namespace or "(root)",
            g.mount,
            g.prefix or "-",
            str(len(g.secrets)),
            f"{g.oldest_days:.0f}",
        )
        for g in report.groups
    ]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    lines.append(
        f"{report.stale} of {report.checked} kv-v2 secrets not rotated in {report.days:g} days "
        f"(backup {report.backup_id})"
    )
    return lines
