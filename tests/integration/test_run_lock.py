"""The per-cluster run lock against the real stack (issue 10, Build 1, Acceptance 1).

Real `dr backup` processes, a real OpenBao and SeaweedFS. Determinism comes from a
gate in front of OpenBao: the snapshot request of a backup waits until the test opens
the gate, so the run holding the lock is provably still running (the lock is taken
before Vault is contacted, and the snapshot is requested after). Time beyond a lease
moves through the injected clock (`now=`), never by sleeping.
"""

from __future__ import annotations

import http.server
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from dr.config import Config, load_config
from dr.errors import ExitCode, LockedError
from dr.manifest import Layout
from dr.ops.backup import run_backup
from dr.ops.locking import cluster_lock
from dr.storage.factory import open_store
from dr.storage.lock import MAX_RECORD_SIZE, RunLock, read_holder
from dr.vault.localserver import LocalBao
from tests.integration.drutil import (
    dr_json,
    keyfile_recipient,
    one_line_error,
    run_dr,
    s3_storage,
    write_config,
)
from tests.integration.faultproxy import SNAPSHOT_PATH, _Handler

LEASE = 300.0  # the default lock.lease
GATE_TIMEOUT = 120.0  # a gate nobody opens must not hang the suite


class Gate:
    """A proxy in front of OpenBao that holds snapshot requests until `open()`."""

    def __init__(self) -> None:
        self.asked = threading.Event()  # a snapshot request arrived (the lock is held)
        self.gate = threading.Event()

    def open(self) -> None:
        self.gate.set()


@contextmanager
def gated_bao(upstream: str) -> Iterator[tuple[str, Gate]]:
    gate = Gate()

    class Handler(_Handler):
        # TCP_NODELAY: the handler writes the headers and the body in two sends, and with
        # Nagle's algorithm each small response then waits for the client's delayed ACK
        # (~40 ms): a backup's few thousand catalog requests took 18 s through the gate
        # instead of 4 s. Timing only; every request is still forwarded unchanged. (Not
        # set in faultproxy itself: test_auth's renewal test needs a run that long.)
        disable_nagle_algorithm = True

        def _gated(self) -> None:
            if self.command == "GET" and self.path.startswith(SNAPSHOT_PATH):
                gate.asked.set()
                gate.gate.wait(GATE_TIMEOUT)
            self._forward()

        do_GET = do_PUT = do_POST = do_DELETE = do_LIST = _gated

    Handler.upstream = upstream
    Handler.mode = "pass"
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    # A short poll: shutdown waits up to one interval for the loop to notice.
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", gate
    finally:
        gate.open()
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def start_backup(config: Path, token: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "dr", "-c", str(config), "backup", "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "VAULT_TOKEN": token},
    )


def wait_for_snapshot_request(gate: Gate, *procs: subprocess.Popen[str]) -> None:
    if not gate.asked.wait(60):
        outputs = [p.communicate(timeout=5) if p.poll() is not None else ("", "") for p in procs]
        pytest.fail(f"no backup asked for a snapshot within 60 s: {outputs}")


def s3_config(tmp_path: Path, addr: str, seaweed: Any, bucket: str) -> Path:
    return write_config(
        tmp_path,
        addr=addr,
        storage=s3_storage(seaweed, bucket),
        recipients=[keyfile_recipient(tmp_path)],
    )


def file_config(tmp_path: Path, addr: str) -> Path:
    return write_config(
        tmp_path,
        addr=addr,
        storage={"type": "file", "path": str(tmp_path / "store"), "prefix": "prod"},
        recipients=[keyfile_recipient(tmp_path)],
    )


def loaded(config: Path) -> tuple[Config, Any, str]:
    cfg = load_config(str(config))
    return cfg, open_store(cfg.storage), Layout(cfg.storage.prefix, cfg.cluster).lock_key


def later(seconds: float) -> Any:
    """A clock `seconds` ahead of the real one (the real one keeps moving)."""
    return lambda: datetime.now(UTC) + timedelta(seconds=seconds)


def at(moment: datetime) -> Any:
    """A clock standing at `moment`."""
    return lambda: moment


def lock_versions(seaweed: Any, bucket: str, key: str) -> list[dict[str, Any]]:
    versions = seaweed.client().list_object_versions(Bucket=bucket, Prefix=key)
    return [v for v in versions.get("Versions", []) if v["Key"] == key]


# -- (a) two runs at once ------------------------------------------------------------


def test_two_backups_started_together_one_stores_the_other_exits_9(
    tmp_path: Path, module_bao: LocalBao, seaweed: Any, versioned_bucket: str
) -> None:
    with gated_bao(module_bao.addr) as (addr, gate):
        config = s3_config(tmp_path, addr, seaweed, versioned_bucket)
        procs = [start_backup(config, module_bao.root_token) for _ in range(2)]
        try:
            # Snapshots wait at the gate, so the winner cannot finish before the loser
            # has decided: the first process to exit is the loser, whichever it is.
            wait_for_snapshot_request(gate, *procs)
            finished: dict[int, tuple[str, str]] = {}
            while not finished:
                for p in procs:
                    try:
                        finished[p.pid] = p.communicate(timeout=0.2)
                    except subprocess.TimeoutExpired:
                        continue
                    break
            (loser_pid, (_, loser_err)), = finished.items()  # fmt: skip
            (winner,) = [p for p in procs if p.pid != loser_pid]
            assert winner.poll() is None, "the winner finished while its snapshot was held"
            gate.open()
            winner_out, winner_err = winner.communicate(timeout=180)
        finally:
            for p in procs:
                if p.poll() is None:
                    p.kill()
                    p.communicate()
    loser = next(p for p in procs if p.pid == loser_pid)
    assert loser.returncode == ExitCode.LOCKED, loser_err
    assert "Traceback" not in loser_err
    (line,) = [ln for ln in loser_err.splitlines() if ln.startswith("error: ")]
    host = socket.gethostname()
    assert f"host {host} pid {winner.pid} (dr backup), started " in line, line
    assert "wait for it to finish, or if that host is gone the lock expires at" in line
    assert winner.returncode == 0, winner_err
    stored = json.loads(winner_out)
    listed = dr_json("list", config=config)
    assert [b["backup_id"] for b in listed["backups"]] == [stored["backup_id"]]
    _, store, key = loaded(config)
    assert read_holder(store, key, now=later(0)) is None  # released


# -- (b) a SIGKILLed holder's lease ---------------------------------------------------


def test_sigkilled_holder_is_refused_until_its_lease_then_taken_over(
    tmp_path: Path,
    module_bao: LocalBao,
    seaweed: Any,
    versioned_bucket: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    with gated_bao(module_bao.addr) as (addr, gate):
        config = s3_config(tmp_path, addr, seaweed, versioned_bucket)
        victim = start_backup(config, module_bao.root_token)
        try:
            wait_for_snapshot_request(gate, victim)
        finally:
            victim.kill()  # SIGKILL: no finally, no release
            victim.communicate(timeout=30)
    assert victim.returncode == -signal.SIGKILL
    cfg, store, key = loaded(config)
    dead = read_holder(store, key, now=later(0))
    assert dead is not None and dead.pid == victim.pid and not dead.expired(later(0)())

    # Before its lease ends: refused, by the CLI and by the API, naming the dead run.
    proc = run_dr("backup", config=config, token=module_bao.root_token)
    assert proc.returncode == ExitCode.LOCKED
    assert f"pid {victim.pid} (dr backup)" in one_line_error(proc)
    expires = dead.expires_at  # its last write as S3 stamped it, plus its lease
    with pytest.raises(LockedError, match=f"pid {victim.pid}"):
        run_backup(cfg, token=module_bao.root_token, now=at(expires - timedelta(seconds=5)))

    # Once it has ended (by the clock the contender judges with): taken over, logged,
    # and the backup goes through.
    caplog.set_level(logging.INFO)
    direct = write_config(
        tmp_path,
        addr=module_bao.addr,  # not through the (closed) gate
        storage=s3_storage(seaweed, versioned_bucket),
        recipients=[keyfile_recipient(tmp_path)],
        name="direct.yaml",
    )
    result = run_backup(load_config(str(direct)), token=module_bao.root_token, now=at(expires))
    takeovers = [r for r in caplog.records if "took over the run lock" in r.getMessage()]
    assert len(takeovers) == 1 and takeovers[0].levelno == logging.WARNING
    assert f"pid {victim.pid} (dr backup)" in takeovers[0].getMessage()
    listed = dr_json("list", config=config)
    assert [b["backup_id"] for b in listed["backups"]] == [result.manifest.backup_id]
    assert read_holder(store, key, now=later(0)) is None


# -- (c) the file store --------------------------------------------------------------


def test_file_store_lock_names_the_holder_and_dies_with_it(
    tmp_path: Path, module_bao: LocalBao
) -> None:
    with gated_bao(module_bao.addr) as (addr, gate):
        config = file_config(tmp_path, addr)
        holder_proc = start_backup(config, module_bao.root_token)
        try:
            wait_for_snapshot_request(gate, holder_proc)
            proc = run_dr("backup", config=config, token=module_bao.root_token)
            assert proc.returncode == ExitCode.LOCKED, proc.stderr
            line = one_line_error(proc)
            assert f"host {socket.gethostname()} pid {holder_proc.pid} (dr backup)" in line
            assert "it ends when that process exits, even if it is killed" in line
            cfg, store, key = loaded(config)
            held = read_holder(store, key, now=later(0))
            assert held is not None and held.pid == holder_proc.pid
        finally:
            holder_proc.kill()
            holder_proc.communicate(timeout=30)
    # The kernel dropped the flock with the process: free at once, no lease to wait for.
    assert read_holder(store, key, now=later(0)) is None
    with cluster_lock(cfg, store, "backup") as lock:
        lock.check()
    assert read_holder(store, key, now=later(0)) is None


def test_rewrap_takes_the_lock_too(tmp_path: Path, module_bao: LocalBao) -> None:
    config = write_config(
        tmp_path,
        addr=module_bao.addr,
        storage={"type": "file", "path": str(tmp_path / "store"), "prefix": "prod"},
        recipients=[keyfile_recipient(tmp_path, "a"), keyfile_recipient(tmp_path, "b")],
    )
    cfg, store, _ = loaded(config)
    with cluster_lock(cfg, store, "prune") as lock:
        proc = run_dr("rewrap", "--all", "--add", "b", config=config)
        assert proc.returncode == ExitCode.LOCKED, proc.stderr
        assert f"pid {os.getpid()} (dr prune)" in one_line_error(proc)
        lock.check()
    proc = run_dr("rewrap", "--all", "--add", "b", config=config)
    assert proc.returncode == 0, proc.stderr


# -- (d) release on the error paths ----------------------------------------------------


def test_failed_backup_releases_the_lock(
    tmp_path: Path, module_bao: LocalBao, seaweed: Any, versioned_bucket: str
) -> None:
    config = s3_config(tmp_path, module_bao.addr, seaweed, versioned_bucket)
    proc = run_dr("backup", config=config, token="not-a-valid-token")
    assert proc.returncode == ExitCode.VAULT, proc.stderr
    one_line_error(proc)
    _, store, key = loaded(config)
    # The lock was taken (a record is there) and released (it says so).
    versions = lock_versions(seaweed, versioned_bucket, key)
    assert len(versions) == 2, versions  # created, then released
    assert read_holder(store, key, now=later(0)) is None
    proc = run_dr("backup", config=config, token=module_bao.root_token)
    assert proc.returncode == 0, proc.stderr
    assert "took over" not in proc.stderr


def test_sigterm_mid_backup_releases_the_lock(
    tmp_path: Path, module_bao: LocalBao, seaweed: Any, versioned_bucket: str
) -> None:
    with gated_bao(module_bao.addr) as (addr, gate):
        config = s3_config(tmp_path, addr, seaweed, versioned_bucket)
        proc = start_backup(config, module_bao.root_token)
        try:
            wait_for_snapshot_request(gate, proc)
            _, store, key = loaded(config)
            assert read_holder(store, key, now=later(0)) is not None
            proc.send_signal(signal.SIGTERM)
            gate.open()
            _, err = proc.communicate(timeout=120)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    assert proc.returncode == ExitCode.INTERRUPTED, err
    assert read_holder(store, key, now=later(0)) is None


# -- (e) check() after a takeover ------------------------------------------------------


def test_check_fails_after_a_takeover_and_release_leaves_the_new_holder(
    tmp_path: Path, seaweed: Any, versioned_bucket: str
) -> None:
    config = s3_config(tmp_path, "http://127.0.0.1:9", seaweed, versioned_bucket)
    cfg, store, key = loaded(config)
    stalled = RunLock(store, key, "backup", lease=LEASE)
    stalled.acquire()
    try:
        stalled.check()
        with cluster_lock(cfg, store, "prune", now=later(LEASE + 1)) as taker:
            with pytest.raises(LockedError) as lost:
                stalled.check()
            message = str(lost.value)
            assert "lost the run lock" in message and "(dr prune)" in message
            assert "took it over" in message and "run dr backup again" in message
            stalled.release()  # must not overwrite the new holder's record
            taker.check()
            current = read_holder(store, key, now=later(LEASE + 1))
            assert current is not None and current.command == "prune"
    finally:
        stalled.release()
    assert read_holder(store, key, now=later(0)) is None


def test_backup_that_lost_its_lock_writes_no_manifest(
    tmp_path: Path,
    module_bao: LocalBao,
    seaweed: Any,
    versioned_bucket: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The check right before the manifest: a run whose lease was taken over while it
    ran (stalled past its lease) stores no backup."""
    config = s3_config(tmp_path, module_bao.addr, seaweed, versioned_bucket)
    cfg, store, _ = loaded(config)
    import dr.ops.backup

    real_check = RunLock.check

    def taken_over_first(self: RunLock) -> None:
        with cluster_lock(cfg, store, "prune", now=later(LEASE + 1)):
            real_check(self)

    monkeypatch.setattr(dr.ops.backup.RunLock, "check", taken_over_first)
    with pytest.raises(LockedError, match="lost the run lock"):
        run_backup(cfg, token=module_bao.root_token)
    assert dr_json("list", config=config)["backups"] == []


# -- (f) hostile lock content ------------------------------------------------------------


PLANTED = {
    "binary": b"\x00\xffnot a lock",
    "huge-nested": b"[" * 200_000,
    "escape-in-host": b'{"format": "vault-dr-lock-v1", "state": "held", "host": "evil\\u001b[31m"}',
}


@pytest.mark.parametrize("planted", PLANTED.values(), ids=PLANTED.keys())
def test_planted_lock_record_is_an_unknown_holder_then_taken_over(
    tmp_path: Path,
    module_bao: LocalBao,
    seaweed: Any,
    versioned_bucket: str,
    planted: bytes,
    caplog: pytest.LogCaptureFixture,
) -> None:
    config = s3_config(tmp_path, module_bao.addr, seaweed, versioned_bucket)
    cfg, store, key = loaded(config)
    seaweed.client().put_object(Bucket=versioned_bucket, Key=key, Body=planted)
    proc = run_dr("backup", config=config, token=module_bao.root_token)
    assert proc.returncode == ExitCode.LOCKED, proc.stderr
    line = one_line_error(proc)
    assert "an unknown holder (the lock record is unreadable: " in line
    assert "evil" not in line and "\x1b" not in line
    holder = read_holder(store, key, now=later(0))
    assert holder is not None and holder.unreadable
    if len(planted) > MAX_RECORD_SIZE:  # not even read
        assert holder.unreadable == f"it is larger than {MAX_RECORD_SIZE} bytes"
    caplog.set_level(logging.WARNING)
    with cluster_lock(cfg, store, "backup", now=later(LEASE + 2)) as lock:
        lock.check()
    assert any("took over the run lock" in r.getMessage() for r in caplog.records)
    assert read_holder(store, key, now=later(0)) is None


# -- the S3 primitives the lock stands on ------------------------------------------------


def test_s3_conditional_writes_compare_and_swap(
    tmp_path: Path, seaweed: Any, versioned_bucket: str
) -> None:
    config = s3_config(tmp_path, "http://127.0.0.1:9", seaweed, versioned_bucket)
    _, store, key = loaded(config)
    assert store.get_tagged(key, max_size=1024) is None
    first = store.put_if(key, b"one", etag=None)  # If-None-Match: *
    assert first
    assert store.put_if(key, b"two", etag=None) is None  # exists: 412
    current = store.get_tagged(key, max_size=1024)
    assert current is not None and (current.data, current.etag) == (b"one", first)
    second = store.put_if(key, b"two", etag=first)  # If-Match: the current ETag
    assert second and second != first
    assert store.put_if(key, b"three", etag=first) is None  # a stale ETag: 412
    big = store.get_tagged(key, max_size=2)
    assert big is not None and big.data == b"" and big.size == 3
    # A delete marker on top (a bucket owner's delete) frees the key for a new create.
    seaweed.client().delete_object(Bucket=versioned_bucket, Key=key)
    assert store.get_tagged(key, max_size=1024) is None
    assert store.put_if(key, b"four", etag=None)
