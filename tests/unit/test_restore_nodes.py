"""The pure parts of a multi-node `dr restore`: addresses, the probe secret, the result."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from dr.ops.restore import (
    NodeResult,
    RestoreResult,
    TargetNode,
    _probe_entry,
    _reason,
    target_addrs,
)
from dr.vault.catalog import STABLE, UNCERTAIN, Catalog, SecretEntry
from dr.vault.cluster import merge_addrs, normalize_addr
from dr.vault.settings import NO_VAULT


@pytest.mark.parametrize(
    ("given", "normal"),
    [
        ("https://vault-1:8200", "https://vault-1:8200"),
        ("https://vault-1:8200/", "https://vault-1:8200"),
        ("https://vault-1:8200///", "https://vault-1:8200"),
        ("  http://127.0.0.1:8200/ \n", "http://127.0.0.1:8200"),
        ("HTTPS://Vault-1.Example.COM:8200", "https://vault-1.example.com:8200"),
        ("https://lb.example/Vault/", "https://lb.example/Vault"),  # a path keeps its case
        ("Vault-1:8200/", "Vault-1:8200"),  # not a URL: only trimmed (the CLI refuses it)
        ("", ""),
    ],
)
def test_normalize_addr(given: str, normal: str) -> None:
    assert normalize_addr(given) == normal


def test_merge_keeps_first_appearance_order_and_drops_duplicates_and_empties() -> None:
    given = ["http://b:8200/", "http://a:8200"]
    reported = ["http://a:8200", "http://B:8200", "http://c:8200", "", "  "]
    assert merge_addrs(given, reported) == ["http://b:8200", "http://a:8200", "http://c:8200"]
    assert merge_addrs() == []
    assert merge_addrs(["http://a:8200"] * 3) == ["http://a:8200"]


def test_target_addrs_takes_one_address_or_several() -> None:
    assert target_addrs("http://a:8200/") == ["http://a:8200"]
    assert target_addrs(("http://a:8200", "http://a:8200/", "http://b:8200")) == [
        "http://a:8200",
        "http://b:8200",
    ]
    assert target_addrs(()) == []


def test_unreachable_reason_is_cut_out_of_the_connection_error() -> None:
    text = "cannot reach Vault at http://a:8200: connection refused; check vault.addr and that"
    assert _reason(text) == "connection refused"


def _catalog(*entries: SecretEntry) -> Catalog:
    return Catalog(
        cluster="prod", backup_id="b", window_start=0, window_end=1, secrets=list(entries)
    )


def test_probe_entry_is_a_stable_live_plain_path_kv2_first() -> None:
    deleted = SecretEntry("app/", "gone", 2, deleted=True)
    uncertain = SecretEntry("app/", "moving", 2, state=UNCERTAIN)
    odd = SecretEntry("app/", "with space/é", 2)
    kv1 = SecretEntry("legacy/", "old", 1)
    good = SecretEntry("app/", "svc-01/config-00001", 2, state=STABLE)
    assert _probe_entry(_catalog(kv1, deleted, uncertain, odd, good)) is good
    assert _probe_entry(_catalog(deleted, kv1)) is kv1
    assert _probe_entry(_catalog(deleted, uncertain)) is None
    assert _probe_entry(_catalog()) is None


def test_node_roles_follow_sys_health() -> None:
    node = TargetNode(SimpleNamespace(vault=NO_VAULT), "http://a:8200")  # type: ignore[arg-type]
    try:
        for code, role, sealed in [
            (200, "active", False),
            (429, "standby", False),
            (503, "sealed", True),
            (None, "unreachable", None),
            (501, "unreachable", False),
        ]:
            node.health = code
            assert (node.role, node.result().sealed) == (role, sealed), code
        node.health, node.served, node.why = 429, False, "400: Waiting for the primary to upgrade"
        assert (
            node.describe() == "standby, not serving yet (400: Waiting for the primary to upgrade)"
        )
        node.health = 500
        assert node.describe() == "health 500"
    finally:
        node.client.close()


def test_result_lists_every_node_in_json_and_summary() -> None:
    nodes = [
        NodeResult("http://a:8200", "active", False, True, True, True),
        NodeResult("http://b:8200", "standby", False, True, True, True),
        NodeResult("http://c:8200", "standby", False, True, True, True),
    ]
    result = RestoreResult("B1", "http://a:8200", True, True, {"restore_call": 1.0}, None, nodes)
    doc = result.to_json()
    assert doc["target"] == "http://a:8200" and doc["passed"] is True
    assert [n["addr"] for n in doc["nodes"]] == ["http://a:8200", "http://b:8200", "http://c:8200"]
    assert doc["nodes"][1] == {
        "addr": "http://b:8200",
        "role": "standby",
        "sealed": False,
        "served": True,
        "resealed": True,
        "unsealed_with_keys": True,
    }
    line = result.summary()
    assert "http://b:8200 standby (served)" in line and "not verified" in line
    single = RestoreResult("B1", "http://a:8200", False, False, {}, None, nodes[:1])
    assert "nodes:" not in single.summary()
    assert RestoreResult("B1", "http://a:8200", False, False, {}, None).to_json()["nodes"] == []
