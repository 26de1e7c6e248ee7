"""The pure parts of dr/ops/alerts.py: when to post, what, and failing quietly."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any

import pytest

from dr.config import AlertsConfig
from dr.errors import NotFoundError, StorageError
from dr.manifest import Layout
from dr.ops import alerts
from dr.ops.metrics import Outcome
from dr.vault.auth import Credential

URL = "https://hooks.example.invalid/services/T1/B2/very-secret"


@pytest.mark.parametrize(
    ("status", "previous", "command", "on_drill", "known", "posted"),
    [
        ("failure", None, "backup", False, True, "failure"),
        ("failure", "failure", "backup", False, True, "failure"),  # every failure posts
        ("failure", None, "backup", False, False, "failure"),  # store unreadable: still
        ("warning", "ok", "backup", False, True, "warning"),
        ("ok", "failure", "backup", False, True, "recovered"),
        ("ok", "warning", "backup", False, True, "recovered"),
        ("ok", "failure", "backup", False, False, None),  # unknown: no recovery claimed
        ("ok", "ok", "backup", False, True, None),
        ("ok", None, "backup", False, True, None),
        ("ok", "ok", "drill", True, True, "ok"),
        ("ok", "ok", "backup", True, True, None),  # on_drill is about drills
        ("ok", "failure", "drill", True, True, "recovered"),  # one post, not two
    ],
)
def test_decide(
    status: str, previous: str | None, command: str, on_drill: bool, known: bool, posted: str
) -> None:
    assert alerts.decide(status, previous, command=command, on_drill=on_drill, known=known) == (
        posted
    )


def outcome(code: int = 3, error: str = "Vault said no", **kw: Any) -> Outcome:
    return Outcome(
        command=kw.get("command", "backup"),
        cluster="prod",
        exit_code=code,
        error=error if code else "",
        stage="vault" if code else None,
        finished=1_800_000_000.0,
        backup_id=kw.get("backup_id"),
        details=kw.get("details", {}),
    )


def test_status_of_a_partial_backup_is_a_warning() -> None:
    assert alerts.status_of(outcome(14, "catalog partial")) == "warning"
    assert alerts.status_of(outcome(3)) == "failure"
    assert alerts.status_of(outcome(0)) == "ok"


def test_slack_payload_names_cluster_command_exit_and_error() -> None:
    body = alerts.payload("slack", "failure", outcome(error="a <b> & c"), host="h1")
    assert body["text"] == (
        ":x: vault-dr backup of prod FAILED (exit 3 VAULT): a &lt;b&gt; &amp; c"
    )
    assert body["blocks"][0]["text"]["text"] == body["text"]
    json.dumps(body)


def test_generic_payload_fields() -> None:
    body = alerts.payload(
        "generic",
        "ok",
        outcome(0, command="drill", backup_id="B1", details={"rto_seconds": 12.5}),
        host="h1",
    )
    assert body["status"] == "ok" and body["exit_code"] == 0 and body["exit_name"] == "OK"
    assert body["error"] is None and body["backup_id"] == "B1"
    assert body["at"] == "2027-01-15T08:00:00Z"
    assert body["summary"] == "vault-dr drill of prod passed (exit 0 OK); RTO 12.5 s; backup B1"
    assert body["details"] == {"rto_seconds": 12.5}


class FakeStore:
    def __init__(self, broken: bool = False) -> None:
        self.objects: dict[str, bytes] = {}
        self.broken = broken

    def get_bytes(self, key: str, version_id: str | None = None) -> bytes:
        if self.broken:
            raise StorageError("the store is down")
        if key not in self.objects:
            raise NotFoundError(key)
        return self.objects[key]

    def put_bytes(self, key: str, data: bytes, **kw: Any) -> None:
        if self.broken:
            raise StorageError("the store is down")
        self.objects[key] = data


def settings(**kw: Any) -> AlertsConfig:
    return AlertsConfig(webhook=Credential(value=URL, where="alerts.webhook_url"), **kw)


def test_notify_failure_then_recovery_then_nothing() -> None:
    store = FakeStore()
    posts: list[Mapping[str, Any]] = []

    def post(url: str, body: Mapping[str, Any], timeout: float) -> None:
        assert url == URL
        posts.append(body)

    layout = Layout("", "prod")
    opened = lambda: store  # noqa: E731
    assert alerts.notify(settings(), opened, layout, outcome(3), post=post) == "failure"
    assert alerts.notify(settings(), opened, layout, outcome(0), post=post) == "recovered"
    assert alerts.notify(settings(), opened, layout, outcome(0), post=post) is None
    assert len(posts) == 2
    assert json.loads(store.objects[layout.state_key("backup")])["status"] == "ok"


def test_an_unreadable_store_posts_failures_and_claims_no_recovery(
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = FakeStore(broken=True)
    posts: list[Mapping[str, Any]] = []
    layout = Layout("", "prod")

    def post(url: str, body: Mapping[str, Any], timeout: float) -> None:
        posts.append(body)

    assert alerts.notify(settings(), lambda: store, layout, outcome(4), post=post) == "failure"
    assert alerts.notify(settings(), lambda: store, layout, outcome(0), post=post) is None
    assert len(posts) == 1
    assert "cannot read the previous backup result" in caplog.text


def test_a_failing_post_is_a_warning_without_the_url(caplog: pytest.LogCaptureFixture) -> None:
    def post(url: str, body: Mapping[str, Any], timeout: float) -> None:
        raise ValueError(f"unknown url type: {url}")

    caplog.set_level(logging.DEBUG)
    kind = alerts.notify(settings(), None, Layout("", "prod"), outcome(3), post=post)
    assert kind == "failure"
    assert "webhook (alerts.webhook_url (given)) failed" in caplog.text
    assert "very-secret" not in caplog.text


def test_a_webhook_variable_that_is_not_set_is_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    missing = AlertsConfig(webhook=Credential(env="NO_SUCH_VARIABLE_X", where="alerts.webhook_url"))
    assert alerts.notify(missing, None, Layout("", "prod"), outcome(3)) == "failure"
    assert "NO_SUCH_VARIABLE_X is not set" in caplog.text


def test_post_json_refuses_other_schemes() -> None:
    with pytest.raises(ValueError, match="not an http"):
        alerts.post_json("file:///etc/passwd", {}, 1.0)
