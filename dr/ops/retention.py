"""The retention policy: which backups `dr prune` keeps, and why (docs/retention.md).

Pure: backups and protections in, a plan out; nothing here touches a store, so the
policy is tested over any number of simulated days without one.

Keep rules, restic's (`restic forget --keep-*`), all in UTC:
- `keep_last N`: the N newest backups.
- `keep_hourly|daily|weekly|monthly|yearly N`: walking from the newest backup to the
  oldest, the first backup met in each new hour/day/ISO week/month/year is kept, until
  N such buckets are kept: the newest backup of each of the N most recent buckets that
  HAVE a backup (a week without backups uses up no count).
- A backup kept by any rule is kept; the plan lists every rule that keeps it.
- `max_age`: older backups are removed even if a rule keeps them. With no keep rule at
  all, `max_age` alone keeps every backup younger than it.

Protections win over every rule and over `max_age`: the newest backup, the newest
verified and the newest drilled backup, the `min_keep` newest, and Object-Locked ones
(which the store would refuse to delete anyway: kept and reported).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from dr.config import RetentionConfig
from dr.errors import UsageError

KEEP = "keep"
REMOVE = "remove"
LOCKED = "locked"  # the policy would remove it, Object Lock forbids: kept

# (config field, reason label, bucket of a UTC time). The label and the bucket make the
# reason: "daily 2026-11-30", "weekly 2026-W48".
_Bucket = Callable[[datetime], str]
RULES: tuple[tuple[str, str, _Bucket], ...] = (
    ("keep_hourly", "hourly", lambda t: t.strftime("%Y-%m-%dT%H")),
    ("keep_daily", "daily", lambda t: t.strftime("%Y-%m-%d")),
    ("keep_weekly", "weekly", lambda t: "{}-W{:02d}".format(*t.isocalendar()[:2])),
    ("keep_monthly", "monthly", lambda t: t.strftime("%Y-%m")),
    ("keep_yearly", "yearly", lambda t: t.strftime("%Y")),
)


@dataclass(frozen=True)
class Candidate:
    """One authentic backup the policy may keep or remove."""

    backup_id: str
    created: datetime  # UTC


@dataclass(frozen=True)
class Protections:
    """What no rule may remove. `verified`/`drilled`: backup ids named by passing
    records (dr/ops/records.py); `locked`: backup id -> why it cannot be deleted
    (Object Lock), found by the caller in the store."""

    verified: frozenset[str] = frozenset()
    drilled: frozenset[str] = frozenset()
    locked: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Decision:
    backup_id: str
    created: datetime
    action: str  # KEEP, REMOVE or LOCKED
    reasons: tuple[str, ...]  # rules and protections that keep it, or why it goes

    @property
    def kept(self) -> bool:
        return self.action != REMOVE

    def to_json(self) -> dict[str, Any]:
        return {
            "backup_id": self.backup_id,
            "created_at": self.created.isoformat().replace("+00:00", "Z"),
            "action": self.action,
            "reasons": list(self.reasons),
        }


@dataclass(frozen=True)
class Plan:
    decisions: tuple[Decision, ...]  # newest first

    @property
    def kept(self) -> list[Decision]:
        return [d for d in self.decisions if d.kept]

    @property
    def removed(self) -> list[Decision]:
        return [d for d in self.decisions if d.action == REMOVE]

    @property
    def locked(self) -> list[Decision]:
        return [d for d in self.decisions if d.action == LOCKED]


def human_age(seconds: float) -> str:
    """90d, 36h, 45m, 30s: the largest whole unit (how max_age is usually written)."""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


def check_policy(policy: RetentionConfig, source: str = "the config") -> None:
    if not policy.configured:
        raise UsageError(
            f"{source} has no `retention:` rule (keep_last, keep_daily, ... or max_age), so "
            "dr prune cannot tell what to keep and removes nothing; add one (docs/retention.md)"
        )


def plan(
    backups: Iterable[Candidate],
    policy: RetentionConfig,
    *,
    now: datetime,
    protections: Protections | None = None,
) -> Plan:
    """Every backup with keep/remove and the reasons. Refuses a policy without rules."""
    check_policy(policy)
    protect = protections or Protections()
    ordered = sorted(backups, key=lambda b: (b.created, b.backup_id), reverse=True)
    keeps: dict[str, list[str]] = {b.backup_id: [] for b in ordered}
    _apply_rules(ordered, policy, keeps)
    has_rule = any(getattr(policy, name) for name, _, _ in RULES) or policy.keep_last > 0
    max_age = timedelta(seconds=policy.max_age) if policy.max_age is not None else None
    age_label = human_age(policy.max_age) if policy.max_age is not None else ""
    decisions: list[Decision] = []
    for index, backup in enumerate(ordered):
        shields = _protections(index, backup.backup_id, policy, protect)
        rules = keeps[backup.backup_id]
        too_old = max_age is not None and now - backup.created > max_age
        if max_age is not None and not has_rule and not too_old:
            rules = [f"younger than max_age {age_label}"]
        if shields:
            reasons = shields + ([] if too_old else rules)
            decisions.append(Decision(backup.backup_id, backup.created, KEEP, tuple(reasons)))
            continue
        if too_old:
            why = f"older than max_age {age_label}"
        elif not rules:
            why = "no rule keeps it"
        else:
            decisions.append(Decision(backup.backup_id, backup.created, KEEP, tuple(rules)))
            continue
        lock = protect.locked.get(backup.backup_id)
        if lock is not None:
            locked = (f"object lock: {lock}", f"would be removed: {why}")
            decisions.append(Decision(backup.backup_id, backup.created, LOCKED, locked))
        else:
            decisions.append(Decision(backup.backup_id, backup.created, REMOVE, (why,)))
    return Plan(tuple(decisions))


def _apply_rules(
    ordered: Sequence[Candidate], policy: RetentionConfig, keeps: dict[str, list[str]]
) -> None:
    for index, backup in enumerate(ordered[: policy.keep_last]):
        keeps[backup.backup_id].append(f"last {index + 1}/{policy.keep_last}")
    for name, label, bucket_of in RULES:
        count: int = getattr(policy, name)
        seen: set[str] = set()
        for backup in ordered:
            if len(seen) >= count:
                break
            bucket = bucket_of(backup.created)
            if bucket not in seen:  # newest first: the first of a bucket is its newest
                seen.add(bucket)
                keeps[backup.backup_id].append(f"{label} {bucket}")


def _protections(
    index: int, backup_id: str, policy: RetentionConfig, protect: Protections
) -> list[str]:
    shields = []
    if index == 0:
        shields.append("newest")
    if backup_id in protect.verified:
        shields.append("verified")
    if backup_id in protect.drilled:
        shields.append("drilled")
    if index < policy.min_keep:
        shields.append(f"min_keep {policy.min_keep}")
    return shields
