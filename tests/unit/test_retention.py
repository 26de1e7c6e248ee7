"""The retention policy (dr/ops/retention.py), table-driven over 88 backups spread over
90 simulated days (2025-11-03 .. 2026-01-31, across a year boundary and an ISO week that
straddles it). Every expected kept set is written out by hand from the calendar below,
never computed by the code under test.

The calendar: one backup a day at 06:00 UTC, except 2026-01-10 .. 2026-01-14 (none:
a gap of five days); extra ones on 2026-01-30 at 12:00 and 18:00 and on 2026-01-31 at
18:00. ISO weeks: 2026-W05 = Jan 26 .. Feb 1, W04 = Jan 19 .. 25, W03 = Jan 12 .. 18
(backups 15..18 only), W02 = Jan 5 .. 11 (backups 5..9 only), W01 = 2025-12-29 ..
2026-01-04, 2025-W52 = Dec 22 .. 28.
"""

from __future__ import annotations

import random
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from dr.config import RetentionConfig
from dr.errors import UsageError
from dr.ops.retention import KEEP, LOCKED, REMOVE, Candidate, Protections, plan

DAY = 86400.0


def _calendar() -> list[datetime]:
    times = []
    day = date(2025, 11, 3)
    while day <= date(2026, 1, 31):
        if not date(2026, 1, 10) <= day <= date(2026, 1, 14):
            times.append(datetime(day.year, day.month, day.day, 6, tzinfo=UTC))
        day += timedelta(days=1)
    times += [
        datetime(2026, 1, 30, 12, tzinfo=UTC),
        datetime(2026, 1, 30, 18, tzinfo=UTC),
        datetime(2026, 1, 31, 18, tzinfo=UTC),
    ]
    return times


def label(ts: datetime) -> str:
    return ts.strftime("%Y-%m-%d %H")


def backup_id(ts: datetime) -> str:
    return ts.strftime("%Y%m%dT%H%M%SZ") + "-" + f"{ts.toordinal() % 4096:03x}{ts.hour:03x}"


TIMES = _calendar()
BY_ID = {backup_id(t): label(t) for t in TIMES}
ID_OF = {label(t): backup_id(t) for t in TIMES}
NOW = datetime(2026, 2, 1, 0, 0, tzinfo=UTC)


def candidates() -> list[Candidate]:
    items = [Candidate(backup_id(t), t) for t in TIMES]
    random.Random(7).shuffle(items)  # the input order must not matter
    return items


def test_the_calendar_is_what_the_table_assumes() -> None:
    assert len(TIMES) == 88
    assert label(min(TIMES)) == "2025-11-03 06" and label(max(TIMES)) == "2026-01-31 18"
    assert (max(TIMES) - min(TIMES)).days >= 89


CASES: list[tuple[str, dict[str, Any], dict[str, Any], set[str]]] = [
    (
        "keep_last only",
        {"keep_last": 5, "min_keep": 1},
        {},
        {"2026-01-31 18", "2026-01-31 06", "2026-01-30 18", "2026-01-30 12", "2026-01-30 06"},
    ),
    (
        "hourly: the newest of each of the 4 most recent hours that have a backup",
        {"keep_hourly": 4, "min_keep": 1},
        {},
        {"2026-01-31 18", "2026-01-31 06", "2026-01-30 18", "2026-01-30 12"},
    ),
    (
        "daily + weekly + monthly (GFS), the gap uses up no daily or weekly count",
        {"keep_daily": 7, "keep_weekly": 4, "keep_monthly": 3, "min_keep": 1},
        {},
        {
            # daily: Jan 31 (its 18:00), Jan 30 (its 18:00), Jan 29 .. 25
            "2026-01-31 18",
            "2026-01-30 18",
            "2026-01-29 06",
            "2026-01-28 06",
            "2026-01-27 06",
            "2026-01-26 06",
            "2026-01-25 06",
            # weekly: W05 Jan 31 18 and W04 Jan 25 (both above), W03 Jan 18, W02 Jan 9
            "2026-01-18 06",
            "2026-01-09 06",
            # monthly: 2026-01 (above), 2025-12, 2025-11
            "2025-12-31 06",
            "2025-11-30 06",
        },
    ),
    (
        "weekly across the year boundary: 2026-W01 holds Dec 29 .. Jan 4",
        {"keep_weekly": 6, "min_keep": 1},
        {},
        {
            "2026-01-31 18",
            "2026-01-25 06",
            "2026-01-18 06",
            "2026-01-09 06",
            "2026-01-04 06",
            "2025-12-28 06",
        },
    ),
    (
        "yearly across a year boundary: only two years have backups",
        {"keep_yearly": 3, "min_keep": 1},
        {},
        {"2026-01-31 18", "2025-12-31 06"},
    ),
    (
        "monthly asks for more months than there are",
        {"keep_monthly": 12, "min_keep": 1},
        {},
        {"2026-01-31 18", "2025-12-31 06", "2025-11-30 06"},
    ),
    (
        "max_age removes what a rule keeps",
        {"keep_daily": 7, "max_age": 3 * DAY, "min_keep": 1},
        {},
        {"2026-01-31 18", "2026-01-30 18", "2026-01-29 06"},
    ),
    (
        "max_age alone keeps everything younger than it",
        {"max_age": 7 * DAY, "min_keep": 1},
        {},
        {
            "2026-01-25 06",
            "2026-01-26 06",
            "2026-01-27 06",
            "2026-01-28 06",
            "2026-01-29 06",
            "2026-01-30 06",
            "2026-01-30 12",
            "2026-01-30 18",
            "2026-01-31 06",
            "2026-01-31 18",
        },
    ),
    (
        "the newest backup survives a max_age that expires every backup",
        {"keep_last": 10, "max_age": 1 * DAY, "min_keep": 1},
        {"now": datetime(2026, 6, 1, tzinfo=UTC)},
        {"2026-01-31 18"},
    ),
    (
        "min_keep wins over max_age",
        {"keep_daily": 2, "max_age": 1 * DAY, "min_keep": 3},
        {"now": datetime(2026, 6, 1, tzinfo=UTC)},
        {"2026-01-31 18", "2026-01-31 06", "2026-01-30 18"},
    ),
    (
        "min_keep above keep_last",
        {"keep_last": 1, "min_keep": 4},
        {},
        {"2026-01-31 18", "2026-01-31 06", "2026-01-30 18", "2026-01-30 12"},
    ),
    (
        "the newest verified and the newest drilled backup are kept, also past max_age",
        {"keep_last": 2, "max_age": 10 * DAY, "min_keep": 1},
        {"verified": {"2026-01-20 06"}, "drilled": {"2025-12-15 06"}},
        {"2026-01-31 18", "2026-01-31 06", "2026-01-20 06", "2025-12-15 06"},
    ),
    (
        "an Object-Locked backup the rules would remove is kept (as locked)",
        {"keep_last": 1, "min_keep": 1},
        {"locked": {"2025-11-03 06": "snapshot.enc: COMPLIANCE retention until 2026-03-01"}},
        {"2026-01-31 18", "2025-11-03 06"},
    ),
]


@pytest.mark.parametrize(
    ("policy", "extra", "expected"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_policy_keeps_exactly_the_expected_set(
    policy: dict[str, Any], extra: dict[str, Any], expected: set[str]
) -> None:
    protections = Protections(
        verified=frozenset(ID_OF[x] for x in extra.get("verified", ())),
        drilled=frozenset(ID_OF[x] for x in extra.get("drilled", ())),
        locked={ID_OF[k]: v for k, v in extra.get("locked", {}).items()},
    )
    result = plan(
        candidates(),
        RetentionConfig(**policy),
        now=extra.get("now", NOW),
        protections=protections,
    )
    assert {BY_ID[d.backup_id] for d in result.kept} == expected
    assert len(result.decisions) == len(TIMES)  # every backup has a decision
    assert [d.created for d in result.decisions] == sorted(TIMES, reverse=True)
    for decision in result.decisions:
        assert decision.reasons, decision  # kept or removed, always with why


def test_reasons_name_every_rule_and_protection() -> None:
    policy = RetentionConfig(keep_daily=7, keep_weekly=4, keep_monthly=3, min_keep=2)
    result = {BY_ID[d.backup_id]: d for d in plan(candidates(), policy, now=NOW).decisions}
    assert result["2026-01-31 18"].reasons == (
        "newest", "min_keep 2", "daily 2026-01-31", "weekly 2026-W05", "monthly 2026-01",
    )  # fmt: skip
    assert result["2026-01-31 06"].reasons == ("min_keep 2",)
    assert result["2026-01-25 06"].reasons == ("daily 2026-01-25", "weekly 2026-W04")
    assert result["2025-11-30 06"].reasons == ("monthly 2025-11",)
    assert result["2026-01-30 12"].action == REMOVE
    assert result["2026-01-30 12"].reasons == ("no rule keeps it",)


def test_max_age_and_lock_reasons() -> None:
    policy = RetentionConfig(keep_last=3, max_age=90 * DAY, min_keep=1)
    later = datetime(2026, 2, 5, tzinfo=UTC)  # 90 days back: 2025-11-07 00:00
    locked = {ID_OF["2025-11-03 06"]: "snapshot.enc: GOVERNANCE retention until 2027-01-01"}
    decisions = plan(candidates(), policy, now=later, protections=Protections(locked=locked))
    result = {BY_ID[d.backup_id]: d for d in decisions.decisions}
    assert result["2025-11-04 06"].reasons == ("older than max_age 90d",)
    assert result["2025-11-10 06"].reasons == ("no rule keeps it",)
    assert result["2025-11-03 06"].action == LOCKED
    assert result["2025-11-03 06"].reasons == (
        "object lock: snapshot.enc: GOVERNANCE retention until 2027-01-01",
        "would be removed: older than max_age 90d",
    )
    assert result["2026-01-31 06"].action == KEEP
    assert result["2026-01-31 06"].reasons == ("last 2/3",)
    assert [BY_ID[d.backup_id] for d in decisions.locked] == ["2025-11-03 06"]


def test_a_tie_in_time_is_broken_by_the_backup_id() -> None:
    at = datetime(2026, 1, 1, 6, tzinfo=UTC)
    pair = [Candidate("20260101T060000Z-aaaaaa", at), Candidate("20260101T060000Z-bbbbbb", at)]
    result = plan(pair, RetentionConfig(keep_daily=1, min_keep=1), now=NOW)
    assert [d.backup_id for d in result.kept] == ["20260101T060000Z-bbbbbb"]


@pytest.mark.parametrize("policy", [RetentionConfig(), RetentionConfig(min_keep=5)])
def test_no_rule_is_refused_naming_the_section_and_the_doc(policy: RetentionConfig) -> None:
    with pytest.raises(UsageError) as info:
        plan(candidates(), policy, now=NOW)
    assert "retention:" in info.value.message
    assert "docs/retention.md" in info.value.message


def test_no_backups_plans_nothing() -> None:
    assert plan([], RetentionConfig(keep_last=3), now=NOW).decisions == ()


def test_removing_a_backup_from_the_input_never_removes_another() -> None:
    """Why an unreadable manifest can be left out of the plan safely (dr/ops/prune.py):
    hiding any one backup from the policy can only make it keep more of the others."""
    policy = RetentionConfig(keep_last=3, keep_daily=5, keep_weekly=3, keep_monthly=2)
    full = {d.backup_id for d in plan(candidates(), policy, now=NOW).kept}
    for hidden in [ID_OF["2026-01-31 18"], ID_OF["2026-01-25 06"], ID_OF["2025-12-31 06"]]:
        rest = [c for c in candidates() if c.backup_id != hidden]
        kept = {d.backup_id for d in plan(rest, policy, now=NOW).kept}
        assert full - {hidden} <= kept, hidden


def test_config_defaults() -> None:
    assert RetentionConfig().min_keep == 3
    assert replace(RetentionConfig(), keep_weekly=1).configured
