"""`dr status` (issue 10, Build 3) against the real stack: OpenBao, SeaweedFS, a real drill.

Time moves through injected clocks: the old backup is made by `run_backup(now=...)` 20
simulated hours ago, and drill ages are judged by `run_status(now=...)`; nothing sleeps.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from dr.config import load_config
from dr.errors import ExitCode
from dr.manifest import Layout
from dr.ops.backup import run_backup
from dr.ops.locking import cluster_lock
from dr.ops.records import RunRecord, list_records, record_key
from dr.ops.status import CRITICAL, OK, WARNING, run_status
from dr.storage.factory import open_store
from dr.timesource import iso
from dr.vault.localserver import LocalBao
from tests.integration.drutil import keyfile_recipient, run_dr, s3_storage, write_config
from tests.stack.openbao import hvac_client, populate
from tests.stack.seaweedfs import SeaweedS3


def _status(config: Path, *args: str) -> tuple[int, Any, str]:
    proc = run_dr("status", *args, config=config)
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc.returncode, proc.stdout, proc.stderr


def _checks(report: dict[str, Any]) -> dict[str, str]:
    return {c["name"]: c["state"] for c in report["checks"]}


@pytest.fixture(scope="module")
def cluster(
    tmp_path_factory: pytest.TempPathFactory, bao_binary: Path, seaweed: SeaweedS3
) -> Iterator[dict[str, Any]]:
    """A small OpenBao, its unseal keys, and a dr.yaml on a versioned SeaweedFS bucket."""
    tmp = tmp_path_factory.mktemp("status")
    server = LocalBao(tmp / "bao", binary=bao_binary)
    server.start()
    try:
        init = server.init()
        populate(hvac_client(server), count=40)
        keys = tmp / "unseal.json"
        fd = os.open(keys, os.O_WRONLY | os.O_CREAT, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump(init.raw, fh)
        bucket = seaweed.make_bucket(f"dr-status-{uuid.uuid4().hex[:10]}", versioned=True)
        config = write_config(
            tmp,
            addr=server.addr,
            storage=s3_storage(seaweed, bucket),
            recipients=[keyfile_recipient(tmp)],
            extra={"drill": {"unseal_keys_file": str(keys), "runtime": "process"}},
        )
        yield {"config": config, "token": init.root_token, "tmp": tmp, "bucket": bucket}
    finally:
        server.stop()


def test_status_stale_then_fresh_then_drill_ages(cluster: dict[str, Any], seaweed: Any) -> None:
    config_path: Path = cluster["config"]
    config = load_config(str(config_path))
    real_now = datetime.now(UTC)

    # 1. Only a backup of 20 simulated hours ago, never drilled: exit 15 (STALE), both
    #    age checks CRITICAL, and the JSON says why.
    old = run_backup(config, token=cluster["token"], now=lambda: real_now - timedelta(hours=20))
    code, out, err = _status(config_path, "--json")
    assert code == ExitCode.STALE, err
    report = json.loads(out)
    assert report["newest_backup"]["backup_id"] == old.manifest.backup_id
    assert report["newest_backup"]["age_seconds"] > 19 * 3600
    assert _checks(report)["backup_age"] == CRITICAL
    assert _checks(report)["drill_age"] == CRITICAL
    assert report["newest_drill"] is None and report["newest_passing_drill"] is None
    assert report["thresholds"]["max_backup_age_seconds"] == 13 * 3600
    assert "max_backup_age" in err and err.startswith("error: "), err
    # Nagios mode: one status line first, plugin exit code 2.
    nag = run_dr("status", "--nagios", config=config_path)
    assert nag.returncode == 2, nag.stderr
    assert nag.stdout.startswith("VAULT-DR CRITICAL - prod: "), nag.stdout

    # 2. A planted passing drill record (the attacker can write to the bucket, not MAC
    #    under a data key) must not make the cluster look drilled.
    store = open_store(config.storage)
    layout = Layout(config.storage.prefix, config.cluster)
    at = real_now - timedelta(hours=1)
    key = record_key(layout, "drill", old.manifest.backup_id, at)
    fake = RunRecord("drill", "prod", old.manifest.backup_id, iso(at), key, True, 0,
                     {"rto_seconds": 1.0}, mac="0" * 64)  # fmt: skip
    store.put_bytes(key, fake.dumps())
    code, out, err = _status(config_path, "--json")
    assert code == ExitCode.STALE, err
    report = json.loads(out)
    assert report["newest_passing_drill"] is None
    assert "ignored" in next(c["message"] for c in report["checks"] if c["name"] == "drill_age")
    store.delete(key)

    # 3. A fresh backup, verified and drilled by the real commands: exit 0, state OK, and
    #    the JSON holds what a monitoring check and an operator need.
    fresh = run_dr("backup", "--json", config=config_path, token=cluster["token"])
    assert fresh.returncode == 0, fresh.stderr
    fresh_id = json.loads(fresh.stdout)["backup_id"]
    verify = run_dr("verify", "--backup", fresh_id, config=config_path)
    assert verify.returncode == 0, verify.stderr
    drill = run_dr("drill", "--json", config=config_path, timeout=600)
    assert drill.returncode == 0, drill.stderr
    drill_report = json.loads(drill.stdout)
    code, out, err = _status(config_path, "--json")
    assert code == 0, err
    report = json.loads(out)
    assert report["state"] == OK, report["checks"]
    assert report["newest_backup"]["backup_id"] == fresh_id
    assert report["newest_backup"]["recipients"] == ["keyfile:local"]
    assert report["newest_verified"]["backup_id"] == fresh_id
    assert report["newest_verified"]["authenticated"] is True
    passing = report["newest_passing_drill"]
    assert passing["backup_id"] == fresh_id and passing["passed"] is True
    assert passing["authenticated"] is True
    assert passing["rto_seconds"] == pytest.approx(drill_report["rto_seconds"], abs=0.01)
    assert set(passing["stages"]) >= {"fetch", "provision", "restore", "verify"}
    assert passing["items"]["failed"] == 0 and passing["items"]["verified"] >= 40
    assert report["newest_drill"]["record"] == passing["record"]
    assert report["backups"] == 2
    assert report["lock"] is None
    assert report["debris"]["removable_count"] == 0 and report["debris"]["waiting"] == []
    text = run_dr("status", config=config_path)
    assert text.returncode == 0, text.stderr
    assert text.stdout.startswith("VAULT-DR OK - prod: "), text.stdout
    assert "RTO" in text.stdout

    # 3b. A run holding the lock is named; a killed run's objects (no manifest) are
    #     debris once older than retention.debris_grace (time moved by the clock).
    with cluster_lock(config, store, "backup"):
        held = run_status(config, store)
        assert held.lock is not None and held.lock["command"] == "backup", held.lock
        assert held.lock["pid"] == os.getpid() and held.lock["expired"] is False
        assert {c.name: c.state for c in held.checks}["lock"] == OK
    assert run_status(config, store).lock is None  # released
    orphan = layout.key("20261101T000000Z-0badc0", "snapshot.enc")
    store.put_bytes(orphan, b"ciphertext of a killed run")
    young = run_status(config, store)
    assert young.debris is not None and young.debris["removable_count"] == 0, young.debris
    assert [w["backup_id"] for w in young.debris["waiting"]] == ["20261101T000000Z-0badc0"]
    later_report = run_status(config, store, now=lambda: datetime.now(UTC) + timedelta(days=2))
    assert later_report.debris is not None and later_report.debris["removable_count"] == 1
    assert {c.name: c.state for c in later_report.checks}["debris"] == WARNING
    assert young.exit_code == 0  # debris needs a look, not a page
    store.delete(orphan)

    # 4. Time moves (injected): two days later with max_drill_age 1d, only the drill is
    #    stale; a failing drill after the passing one is a WARNING, not a page.
    later = replace(
        config, status=replace(config.status, max_drill_age=86400.0, max_backup_age=30 * 86400.0)
    )
    aged = run_status(later, store, now=lambda: datetime.now(UTC) + timedelta(days=2))
    states = {c.name: c.state for c in aged.checks}
    assert states["drill_age"] == CRITICAL and states["backup_age"] == WARNING, aged.checks
    assert aged.exit_code == ExitCode.STALE
    fresh_now = run_status(later, store)
    assert fresh_now.exit_code == 0
    records, bad = list_records(store, layout)
    assert not bad
    assert {r.kind for r in records} == {"drill", "verify"}
