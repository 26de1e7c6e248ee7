"""How the catalog dates kv-v2 versions against the snapshot window (docs/catalog.md)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from dr.vault.catalog import (
    CHANGED_AFTER,
    CREATED_AFTER,
    STABLE,
    UNCERTAIN,
    Catalog,
    SecretEntry,
    classify_kv2,
    parse_time,
)

START = 1_800_000_000.25
END = 1_800_000_000.75


def ts(offset: float) -> str:
    moment = datetime.fromtimestamp(START + offset, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%f") + "123Z"  # nanoseconds, as Vault


def meta(*versions: tuple[float, float | None], destroyed: int = 0) -> dict[str, Any]:
    return {
        "current_version": len(versions),
        "created_time": ts(versions[0][0]),
        "updated_time": ts(versions[-1][0]),
        "versions": {
            str(i + 1): {
                "created_time": ts(created),
                "deletion_time": ts(deleted) if deleted is not None else "",
                "destroyed": i + 1 == destroyed,
            }
            for i, (created, deleted) in enumerate(versions)
        },
    }


def test_parse_time_keeps_sub_second_precision() -> None:
    assert abs(parse_time("2027-01-15T08:00:00.250000789Z") - 1800000000.250000789) < 1e-5
    assert parse_time("") is None and parse_time("garbage") is None


def test_all_before_the_window_is_stable() -> None:
    info = classify_kv2(meta((-100, None), (-10, None)), START, END)
    assert info["state"] == STABLE and info["version"] == 2 and not info["deleted"]


def test_new_version_after_the_window_expects_the_old_one() -> None:
    info = classify_kv2(meta((-100, None), (+5, None)), START, END)
    assert info["state"] == CHANGED_AFTER and info["version"] == 1
    assert info["current_version"] == 2


def test_created_after_the_window_is_not_in_the_snapshot() -> None:
    info = classify_kv2(meta((+5, None)), START, END)
    assert info["state"] == CREATED_AFTER and info["version"] is None


def test_inside_the_window_is_uncertain() -> None:
    assert classify_kv2(meta((-100, None), (0.2, None)), START, END)["state"] == UNCERTAIN
    assert classify_kv2(meta((-100, 0.3)), START, END)["state"] == UNCERTAIN


def test_deletion_before_and_after_the_window() -> None:
    deleted_before = classify_kv2(meta((-100, -50)), START, END)
    assert deleted_before["state"] == STABLE and deleted_before["deleted"]
    deleted_after = classify_kv2(meta((-100, +50)), START, END)
    assert deleted_after["state"] == STABLE and not deleted_after["deleted"]


def test_destroyed_flag_is_kept() -> None:
    assert classify_kv2(meta((-100, None), destroyed=1), START, END)["destroyed"]


def test_catalog_json_round_trip_and_counts() -> None:
    catalog = Catalog("prod", "20261126T060000Z-3f9a1c", START, END)
    catalog.secrets = [
        SecretEntry("app/", "a", 2, STABLE, version=1),
        SecretEntry("legacy/", "b", 1, UNCERTAIN),
    ]
    again = Catalog.from_json(catalog.to_json())
    assert again.secrets == catalog.secrets
    assert again.counts()["secrets"] == 2 and again.counts()[UNCERTAIN] == 1


def test_catalog_json_writes_every_field_of_an_entry_and_leaves_out_only_none() -> None:
    import dataclasses

    full = SecretEntry(
        "app/",
        "a",
        2,
        STABLE,
        namespace="team/",
        version=3,
        deleted=True,
        destroyed=False,
        current_version=4,
        created_time="2026-11-01T00:00:00Z",
        updated_time="2026-11-02T00:00:00Z",
        version_time="2026-11-01T12:00:00Z",
    )
    sparse = SecretEntry("legacy/", "b", 1, UNCERTAIN)
    catalog = Catalog("prod", "20261126T060000Z-3f9a1c", START, END, secrets=[full, sparse])
    written = catalog.to_json()["secrets"]
    assert written[0] == dataclasses.asdict(full)
    assert written[1] == {k: v for k, v in dataclasses.asdict(sparse).items() if v is not None}
    assert Catalog.from_json(catalog.to_json()).secrets == [full, sparse]
