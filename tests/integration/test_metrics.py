"""Metrics of backup and drill against the real stack (issue 10, Build 4 acceptance).

One sequence, run once for the module: a backup to SeaweedFS (S3), a backup that fails
(a token that is not valid), a passing drill and a drill that fails on the backup's
age (before anything starts, so it costs nothing). Every run writes the same
`--metrics-file` and pushes to a Pushgateway-compatible receiver started here. The
tests then read the textfile with prometheus-client's own parser and look at what
reached the receiver.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from dr.errors import ExitCode
from tests.integration.drutil import (
    keyfile_recipient,
    one_line_error,
    run_dr,
    s3_storage,
    write_config,
    write_keys,
)

JOB = "vault_dr"
STAGES = {"preflight", "fetch", "provision", "restore", "authenticate", "verify", "teardown"}


class MiniGateway:
    """The Pushgateway's protocol, as much as a push uses: PUT replaces a group, POST
    replaces the families it names in the group, GET /metrics exposes every group with
    its grouping labels (and an empty `instance`, as the real one does). Every request
    is recorded: (method, path, body)."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str, str]] = []
        self.groups: dict[str, dict[str, Any]] = {}
        self.lock = threading.Lock()
        gateway = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _body(self) -> str:
                return self.rfile.read(int(self.headers.get("Content-Length", 0))).decode()

            def do_GET(self) -> None:
                with gateway.lock:
                    gateway.requests.append(("GET", self.path, ""))
                    text = gateway.render() if self.path == "/metrics" else ""
                self._answer(200 if self.path == "/metrics" else 404, text)

            def do_PUT(self) -> None:
                self._push(replace=True)

            def do_POST(self) -> None:
                self._push(replace=False)

            def _push(self, replace: bool) -> None:
                body = self._body()
                families = {f.name: f for f in text_string_to_metric_families(body)}
                with gateway.lock:
                    gateway.requests.append((self.command, self.path, body))
                    group = {} if replace else gateway.groups.get(self.path, {})
                    group.update(families)
                    gateway.groups[self.path] = group
                self._answer(200, "")

            def _answer(self, code: int, text: str) -> None:
                data = text.encode()
                self.send_response(code)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        # A short poll: shutdown waits up to one interval for the loop to notice.
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    def render(self) -> str:
        lines = []
        for path, families in self.groups.items():
            parts = path.removeprefix("/metrics/").split("/")
            grouping = dict(zip(parts[::2], parts[1::2], strict=True))
            for fam in families.values():
                lines.append(f"# TYPE {fam.name} {fam.type}")
                for s in fam.samples:
                    labels = {**s.labels, **grouping, "instance": ""}
                    text = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
                    lines.append(f"{s.name}{{{text}}} {s.value}")
        return "\n".join(lines) + "\n"

    def pushes(self) -> list[tuple[str, str, str]]:
        return [r for r in self.requests if r[0] in ("PUT", "POST")]

    def __enter__(self) -> MiniGateway:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of an exposition, by (name, labels); parsed by prometheus-client."""
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for fam in text_string_to_metric_families(text)
        for s in fam.samples
    }


def value(
    parsed: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str
) -> float:
    key = (name, frozenset({"cluster": "prod", **labels}.items()))
    assert key in parsed, f"{name}{labels} missing from {sorted(k[0] for k in parsed)}"
    return parsed[key]


@pytest.fixture(scope="module")
def runs(
    tmp_path_factory: pytest.TempPathFactory, bao: Any, seaweed: Any
) -> Iterator[dict[str, Any]]:
    tmp = tmp_path_factory.mktemp("metrics")
    bucket = seaweed.make_bucket(f"dr-metrics-{int(time.time() * 1000) % 10**9}")
    keys = write_keys(tmp / "unseal.json", bao.keys.raw)
    metrics_file = tmp / "textfile" / "vault_dr.prom"
    metrics_file.parent.mkdir()
    # A module fixture runs before the per-test environment (tests/conftest.py _clean_env).
    aws = {
        "AWS_ACCESS_KEY_ID": "x",
        "AWS_SECRET_ACCESS_KEY": "y",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    with MiniGateway() as gateway:
        config = write_config(
            tmp,
            addr=bao.addr,
            storage=s3_storage(seaweed, bucket),
            recipients=[keyfile_recipient(tmp)],
            extra={
                "drill": {"unseal_keys_file": str(keys)},
                "metrics": {"pushgateway": gateway.url},
            },
        )
        out: dict[str, Any] = {"gateway": gateway, "file": metrics_file, "secrets": bao.secrets}

        def step(name: str, *args: str, token: str | None = None) -> None:
            before = time.time()
            proc = run_dr(
                *args, "--metrics-file", str(metrics_file), config=config, token=token, env=aws
            )
            out[name] = {
                "proc": proc,
                "text": metrics_file.read_text(),
                "pushes": len(gateway.pushes()),
                "before": before,
                "after": time.time(),
            }

        step("backup", "backup", "--json", token=bao.root_token)
        step("failed_backup", "backup", token="s.not-a-token-of-this-cluster")
        step("drill", "drill", "--json", "--runtime", "process")
        step("old_drill", "drill", "--json", "--runtime", "process", "--max-backup-age", "1s")
        yield out


def test_a_backup_writes_its_series(runs: dict[str, Any]) -> None:
    run = runs["backup"]
    assert run["proc"].returncode == 0, run["proc"].stderr
    result = json.loads(run["proc"].stdout)
    parsed = samples(run["text"])
    success = value(parsed, "vault_dr_backup_last_success_timestamp_seconds")
    assert run["before"] <= success <= run["after"]
    assert value(parsed, "vault_dr_backup_last_run_timestamp_seconds") >= success
    assert value(parsed, "vault_dr_backup_last_exit_code") == 0
    assert value(parsed, "vault_dr_backup_snapshot_bytes") == result["snapshot_bytes"] > 0
    stored = value(parsed, "vault_dr_backup_stored_bytes")
    assert stored > result["snapshot_stored_bytes"] >= result["snapshot_bytes"]
    assert value(parsed, "vault_dr_backup_catalog_secrets") == len(runs["secrets"])
    assert 0 < value(parsed, "vault_dr_backup_duration_seconds") <= run["after"] - run["before"]
    assert not [k for k in parsed if k[0] == "vault_dr_backup_failures_total"]


def test_the_last_success_survives_a_failing_backup(runs: dict[str, Any]) -> None:
    run = runs["failed_backup"]
    assert run["proc"].returncode == ExitCode.VAULT, run["proc"].stderr
    one_line_error(run["proc"])  # the metrics write added no line to stderr
    before, after = samples(runs["backup"]["text"]), samples(run["text"])
    for carried in (
        "vault_dr_backup_last_success_timestamp_seconds",
        "vault_dr_backup_snapshot_bytes",
        "vault_dr_backup_stored_bytes",
        "vault_dr_backup_catalog_secrets",
        "vault_dr_backup_duration_seconds",
    ):
        assert value(after, carried) == value(before, carried), carried
    assert value(after, "vault_dr_backup_last_exit_code") == ExitCode.VAULT
    last_run = value(after, "vault_dr_backup_last_run_timestamp_seconds")
    assert run["before"] <= last_run <= run["after"]
    failures = value(after, "vault_dr_backup_failures_total", stage="vault", exit_code="3")
    assert failures == 1
    # ...and the file still holds it after the drills rewrote it.
    final = samples(runs["old_drill"]["text"])
    assert value(final, "vault_dr_backup_failures_total", stage="vault", exit_code="3") == 1
    assert value(final, "vault_dr_backup_last_success_timestamp_seconds") == value(
        before, "vault_dr_backup_last_success_timestamp_seconds"
    )


def test_a_drill_writes_rto_stages_and_items(runs: dict[str, Any]) -> None:
    run = runs["drill"]
    assert run["proc"].returncode == 0, run["proc"].stderr[-2000:]
    report = json.loads(run["proc"].stdout)
    parsed = samples(run["text"])
    assert value(parsed, "vault_dr_drill_rto_seconds") == pytest.approx(
        report["rto_seconds"], abs=0.001
    )
    stages = {
        dict(labels)["stage"]: v
        for (name, labels), v in parsed.items()
        if name == "vault_dr_drill_stage_seconds"
    }
    assert set(stages) == STAGES
    assert stages["verify"] > 0 and stages["restore"] > 0
    assert value(parsed, "vault_dr_drill_items_verified") >= len(runs["secrets"])
    assert value(parsed, "vault_dr_drill_items_failed") == 0
    assert value(parsed, "vault_dr_drill_items_not_cataloged") == 0
    age = value(parsed, "vault_dr_drill_backup_age_seconds")
    assert 0 < age <= run["after"] - runs["backup"]["before"] + 1  # created_at: whole seconds
    assert value(parsed, "vault_dr_drill_last_exit_code") == 0
    success = value(parsed, "vault_dr_drill_last_success_timestamp_seconds")
    assert run["before"] <= success <= run["after"]
    # The backup's series are still in the shared file.
    assert value(parsed, "vault_dr_backup_last_exit_code") == ExitCode.VAULT


def test_a_failing_drill_counts_its_stage_and_keeps_the_last_success(
    runs: dict[str, Any],
) -> None:
    run = runs["old_drill"]
    assert run["proc"].returncode == ExitCode.BACKUP_TOO_OLD, run["proc"].stderr
    before, after = samples(runs["drill"]["text"]), samples(run["text"])
    assert value(after, "vault_dr_drill_failures_total", stage="backup_age", exit_code="12") == 1
    assert value(after, "vault_dr_drill_last_exit_code") == ExitCode.BACKUP_TOO_OLD
    name = "vault_dr_drill_last_success_timestamp_seconds"
    assert value(after, name) == value(before, name)
    # It measured the age (above 1s) and ran no stage: no stale stage times are left.
    assert value(after, "vault_dr_drill_backup_age_seconds") > 1
    assert not [k for k in after if k[0] == "vault_dr_drill_stage_seconds"]
    assert value(after, "vault_dr_drill_rto_seconds") == value(before, "vault_dr_drill_rto_seconds")


def test_pushes_reach_the_gateway_per_command_group(runs: dict[str, Any]) -> None:
    gateway = runs["gateway"]
    pushes = gateway.pushes()
    backup_path = f"/metrics/job/{JOB}/cluster/prod/command/backup"
    drill_path = f"/metrics/job/{JOB}/cluster/prod/command/drill"
    assert [(method, path) for method, path, _ in pushes] == [
        ("PUT", backup_path),  # a success replaces its group
        ("POST", backup_path),  # a failure adds to it: the success series stay
        ("PUT", drill_path),
        ("POST", drill_path),
    ]
    assert [runs[s]["pushes"] for s in ("backup", "failed_backup", "drill", "old_drill")] == [
        1,
        2,
        3,
        4,
    ]
    ok = samples(pushes[0][2])
    assert value(ok, "vault_dr_backup_last_exit_code") == 0
    assert value(ok, "vault_dr_backup_snapshot_bytes") > 0
    failed = samples(pushes[1][2])
    assert value(failed, "vault_dr_backup_failures_total", stage="vault", exit_code="3") == 1
    assert value(failed, "vault_dr_backup_last_exit_code") == ExitCode.VAULT
    assert not [k for k in failed if k[0] == "vault_dr_backup_last_success_timestamp_seconds"]
    # What the gateway exposes now: the backup group kept its last success.
    exposed = {
        (s.name, frozenset((k, v) for k, v in s.labels.items() if k not in ("instance",))): s.value
        for fam in text_string_to_metric_families(gateway.render())
        for s in fam.samples
    }
    key = frozenset({"cluster": "prod", "job": JOB, "command": "backup"}.items())
    assert ("vault_dr_backup_last_success_timestamp_seconds", key) in exposed
    assert exposed[("vault_dr_backup_last_exit_code", key)] == ExitCode.VAULT
    drill_key = frozenset({"cluster": "prod", "job": JOB, "command": "drill"}.items())
    drill_failures = frozenset(
        {**dict(drill_key), "stage": "backup_age", "exit_code": "12"}.items()
    )
    assert exposed[("vault_dr_drill_failures_total", drill_failures)] == 1
    assert ("vault_dr_drill_rto_seconds", drill_key) in exposed


def test_a_broken_config_is_still_counted_as_a_failure(tmp_path: Path) -> None:
    config = tmp_path / "dr.yaml"
    config.write_text("cluster: prod\nvault:\n  adr: http://127.0.0.1:1\n")
    metrics_file = tmp_path / "vault_dr.prom"
    proc = run_dr("backup", "--metrics-file", str(metrics_file), config=config)
    assert proc.returncode == ExitCode.USAGE
    one_line_error(proc)
    parsed = samples(metrics_file.read_text())
    assert value(parsed, "vault_dr_backup_last_exit_code") == ExitCode.USAGE
    assert value(parsed, "vault_dr_backup_failures_total", stage="config", exit_code="2") == 1
    # Not even the cluster reads: the failure is still there, under cluster="unknown".
    config.write_text("- not a mapping\n")
    proc = run_dr("backup", "--metrics-file", str(metrics_file), config=config)
    assert proc.returncode == ExitCode.USAGE
    parsed = samples(metrics_file.read_text())
    key = ("vault_dr_backup_last_exit_code", frozenset({"cluster": "unknown"}.items()))
    assert parsed[key] == ExitCode.USAGE
    assert value(parsed, "vault_dr_backup_failures_total", stage="config", exit_code="2") == 1


def test_a_metrics_file_that_cannot_be_written_does_not_change_the_exit_code(
    tmp_path: Path, bao: Any
) -> None:
    config = write_config(
        tmp_path,
        addr=bao.addr,
        storage={"type": "file", "path": str(tmp_path / "store")},
        recipients=[keyfile_recipient(tmp_path)],
    )
    target = tmp_path / "no-such-dir" / "vault_dr.prom"
    proc = run_dr("backup", "--metrics-file", str(target), config=config, token="s.invalid")
    assert proc.returncode == ExitCode.VAULT, proc.stderr
    assert "cannot write the metrics file" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr


def test_a_prune_writes_its_counts_and_a_dry_run_writes_nothing(tmp_path: Path, bao: Any) -> None:
    config = write_config(
        tmp_path,
        addr=bao.addr,
        storage={"type": "file", "path": str(tmp_path / "store")},
        recipients=[keyfile_recipient(tmp_path)],
        extra={"retention": {"keep_last": 1, "min_keep": 1}},
    )
    assert run_dr("backup", config=config, token=bao.root_token).returncode == 0
    metrics_file = tmp_path / "vault_dr.prom"
    dry = run_dr("prune", "--dry-run", "--metrics-file", str(metrics_file), config=config)
    assert dry.returncode == 0, dry.stderr
    assert not metrics_file.exists()
    before = time.time()
    proc = run_dr("prune", "--json", "--metrics-file", str(metrics_file), config=config)
    assert proc.returncode == 0, proc.stderr
    parsed = samples(metrics_file.read_text())
    assert value(parsed, "vault_dr_prune_backups_kept") == 1
    assert value(parsed, "vault_dr_prune_backups_removed") == 0
    assert value(parsed, "vault_dr_prune_debris_removed") == 0
    assert value(parsed, "vault_dr_prune_locked_skipped") == 0
    assert value(parsed, "vault_dr_prune_last_exit_code") == 0
    assert value(parsed, "vault_dr_prune_last_success_timestamp_seconds") >= before
    # A prune that fails (no retention rule: a usage error) counts, and keeps the success.
    config.write_text(config.read_text().replace("keep_last: 1", "keep_last: 0"))
    failed = run_dr("prune", "--metrics-file", str(metrics_file), config=config)
    assert failed.returncode == ExitCode.USAGE, failed.stderr
    after = samples(metrics_file.read_text())
    assert value(after, "vault_dr_prune_failures_total", stage="config", exit_code="2") == 1
    assert value(after, "vault_dr_prune_backups_kept") == 1
    name = "vault_dr_prune_last_success_timestamp_seconds"
    assert value(after, name) == value(parsed, name)
