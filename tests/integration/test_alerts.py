"""Webhook alerts of `dr backup` against the real stack (issue 10, Build 5 acceptance).

A webhook receiver started here records every POST. A backup that fails (a token that
is not valid) posts once; the next success posts the recovery once; a further success
posts nothing. A receiver that answers 500, or none at all, changes no exit code. The
URL (a secret, like a Slack webhook's) appears in no log line, even with -v.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from dr.errors import ExitCode
from dr.vault.localserver import LocalBao
from tests.integration.drutil import keyfile_recipient, run_dr, write_config

SECRET_PART = "T0DRTEST/B0DRTEST/s3cr3tWebhookToken"
URL_ENV = "ALERT_WEBHOOK_URL"
BAD_TOKEN = "s.not-a-token-of-this-cluster"


class Receiver:
    """Records (path, JSON body) of every POST; answers `status`."""

    def __init__(self, status: int = 200) -> None:
        self.posts: list[tuple[str, Any]] = []
        self.status = status
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                receiver.posts.append((self.path, json.loads(body)))
                self.send_response(receiver.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/services/{SECRET_PART}"
        # A short poll: close() (shutdown) waits up to one interval for the loop to notice.
        threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    try:
        yield r
    finally:
        r.close()


def config_for(tmp_path: Path, server: LocalBao, fmt: str = "slack") -> Path:
    return write_config(
        tmp_path,
        addr=server.addr,
        storage={"type": "file", "path": str(tmp_path / "store")},
        recipients=[keyfile_recipient(tmp_path)],
        extra={"alerts": {"webhook_url_env": URL_ENV, "format": fmt, "timeout": "3s"}},
    )


def backup(config: Path, url: str, token: str) -> Any:
    proc = run_dr("-v", "backup", config=config, token=token, env={URL_ENV: url})
    assert "Traceback" not in proc.stderr, proc.stderr
    assert SECRET_PART not in proc.stderr + proc.stdout, proc.stderr
    return proc


def test_failure_posts_once_recovery_once_then_nothing(
    tmp_path: Path, module_bao: LocalBao, receiver: Receiver
) -> None:
    config = config_for(tmp_path, module_bao)
    failed = backup(config, receiver.url, BAD_TOKEN)
    assert failed.returncode == ExitCode.VAULT, failed.stderr
    assert len(receiver.posts) == 1
    path, body = receiver.posts[0]
    assert path == f"/services/{SECRET_PART}"
    error = failed.stderr.strip().splitlines()[-1].removeprefix("error: ")
    assert set(body) == {"text", "blocks"}
    assert body["text"].startswith(":x: vault-dr backup of prod FAILED (exit 3 VAULT): ")
    assert error in body["text"], (error, body["text"])
    assert "the token is not valid" in body["text"]
    fields = " ".join(f["text"] for f in body["blocks"][1]["fields"])
    assert "*cluster:* prod" in fields and "*stage:* vault" in fields
    # The previous result is in the store, without the URL.
    (state,) = (tmp_path / "store").rglob("state/backup.json")
    record = json.loads(state.read_text())
    assert record["status"] == "failure" and record["exit_code"] == 3
    assert SECRET_PART not in state.read_text()

    ok = backup(config, receiver.url, module_bao.root_token)
    assert ok.returncode == 0, ok.stderr
    assert len(receiver.posts) == 2
    text = receiver.posts[1][1]["text"]
    assert text.startswith(":white_check_mark: vault-dr backup of prod recovered (exit 0 OK)")
    assert "after exit 3 VAULT" in text and ok.stdout.strip() in text  # names the backup

    again = backup(config, receiver.url, module_bao.root_token)
    assert again.returncode == 0, again.stderr
    assert len(receiver.posts) == 2  # a success after a success posts nothing


def test_generic_payload(tmp_path: Path, module_bao: LocalBao, receiver: Receiver) -> None:
    config = config_for(tmp_path, module_bao, fmt="generic")
    proc = backup(config, receiver.url, BAD_TOKEN)
    assert proc.returncode == ExitCode.VAULT
    ((_, body),) = receiver.posts
    assert body["cluster"] == "prod" and body["command"] == "backup"
    assert body["status"] == "failure"
    assert body["exit_code"] == 3 and body["exit_name"] == "VAULT"
    assert body["stage"] == "vault"
    assert "the token is not valid" in body["error"]
    assert body["backup_id"] is None and body["host"] == socket.gethostname()
    assert body["summary"].startswith("vault-dr backup of prod FAILED (exit 3 VAULT)")


@pytest.mark.parametrize("kind", ["answers-500", "unreachable"])
def test_a_failing_webhook_changes_no_exit_code(
    tmp_path: Path, module_bao: LocalBao, kind: str
) -> None:
    if kind == "answers-500":
        broken = Receiver(status=500)
        url = broken.url
    else:
        with socket.socket() as s:  # a port nothing listens on
            s.bind(("127.0.0.1", 0))
            url = f"http://127.0.0.1:{s.getsockname()[1]}/services/{SECRET_PART}"
    try:
        config = config_for(tmp_path, module_bao)
        failed = backup(config, url, BAD_TOKEN)
        assert failed.returncode == ExitCode.VAULT, failed.stderr
        assert failed.stderr.strip().splitlines()[-1].startswith("error: "), failed.stderr
        warning = [ln for ln in failed.stderr.splitlines() if "webhook" in ln and "failed" in ln]
        assert warning, failed.stderr
        assert ("HTTP 500" if kind == "answers-500" else "refused") in warning[0], warning
        ok = backup(config, url, module_bao.root_token)
        assert ok.returncode == 0, ok.stderr  # the recovery post fails too: still 0
        if kind == "answers-500":
            assert len(broken.posts) == 2  # the failure, then the recovery
    finally:
        if kind == "answers-500":
            broken.close()
