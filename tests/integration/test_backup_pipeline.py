"""The threaded snapshot pipeline of `dr backup` (dr/ops/pipeline.py) against a real
OpenBao and a real S3 (SeaweedFS): a failure in any stage, after parts were already
uploaded, still leaves no object, no multipart upload and no manifest.

The snapshot is made larger than two 5 MiB parts, so the failures land while the
multipart upload is open and holds parts.
"""

from __future__ import annotations

import base64
import http.server
import os
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import requests

import dr.ops.backup as backup_module
from dr.config import load_config
from dr.errors import ExitCode, SnapshotError
from dr.ops.backup import run_backup
from dr.vault.raft import stream_snapshot
from tests.integration.drutil import (
    bucket_keys,
    keyfile_recipient,
    one_line_error,
    run_dr,
    s3_storage,
    write_config,
)

pytestmark = pytest.mark.integration

PART = 5 << 20
SECRET_BYTES = 512 << 10  # raw bytes per value (683 KiB base64): under raft's 1 MiB cap


def _fill(bao: Any, megabytes: int) -> None:
    """Incompressible kv-v2 values, so the snapshot is about `megabytes` MB."""
    headers = {"X-Vault-Token": bao.root_token}
    requests.post(
        f"{bao.addr}/v1/sys/mounts/big",
        json={"type": "kv", "options": {"version": "2"}},
        headers=headers,
        timeout=30,
    ).raise_for_status()

    def one(i: int) -> None:
        value = base64.b64encode(os.urandom(SECRET_BYTES)).decode()
        requests.post(
            f"{bao.addr}/v1/big/data/blob-{i:03d}",
            json={"data": {"v": value}},
            headers=headers,
            timeout=60,
        ).raise_for_status()

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(one, range(megabytes * 3 // 2 + 1)))


@pytest.fixture
def big_bao(fresh_bao: Any) -> Any:
    _fill(fresh_bao, 14)
    return fresh_bao


def _config(tmp_path: Path, addr: str, seaweed: Any, bucket: str) -> Path:
    storage = {**s3_storage(seaweed, bucket), "chunk_size": PART}
    return write_config(
        tmp_path, addr=addr, storage=storage, recipients=[keyfile_recipient(tmp_path)]
    )


def _nothing_left(seaweed: Any, bucket: str) -> None:
    s3 = seaweed.client()
    listing = s3.list_object_versions(Bucket=bucket)
    # The run lock's object (docs/locking.md) is no part of a backup.
    data = [v["Key"] for v in listing.get("Versions", []) if not v["Key"].endswith("/lock.json")]
    assert not data, data
    assert not [k for k in bucket_keys(s3, bucket) if k.endswith("manifest.json")]
    assert not s3.list_multipart_uploads(Bucket=bucket).get("Uploads", [])


def test_a_check_failing_after_parts_were_uploaded_leaves_nothing(
    tmp_path: Path,
    big_bao: Any,
    seaweed: Any,
    versioned_bucket: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """One byte of state.bin flipped past the second part: SHA256SUMS no longer matches
    (the gzip CRC neither), found by the check stage while the upload holds parts."""
    seen = {"bytes": 0, "flipped": False}

    def corrupted(client: Any) -> Iterator[bytes]:
        for chunk in stream_snapshot(client):
            start = seen["bytes"]
            seen["bytes"] += len(chunk)
            target = 2 * PART + 12345
            if start <= target < seen["bytes"]:
                data = bytearray(chunk)
                data[target - start] ^= 0x01
                seen["flipped"] = True
                chunk = bytes(data)
            yield chunk

    monkeypatch.setattr(backup_module, "stream_snapshot", corrupted)
    config = load_config(str(_config(tmp_path, big_bao.addr, seaweed, versioned_bucket)))
    with pytest.raises(SnapshotError) as exc:
        run_backup(config, token=big_bao.root_token)
    assert seen["flipped"]
    assert seen["bytes"] > 2 * PART
    assert exc.value.exit_code == ExitCode.SNAPSHOT
    _nothing_left(seaweed, versioned_bucket)


class _CutHandler(http.server.BaseHTTPRequestHandler):
    """Forwards to OpenBao; the snapshot's body is cut off mid-way, the connection
    closed under a Content-Length that promised more."""

    upstream = ""
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:
        pass

    def _forward(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        headers = {k: v for k, v in self.headers.items() if k.lower() != "host"}
        resp = requests.request(
            self.command, self.upstream + self.path, data=body, headers=headers, timeout=60
        )
        content = resp.content
        snapshot = self.path.startswith("/v1/sys/storage/raft/snapshot")
        self.send_response(resp.status_code)
        for key, value in resp.headers.items():
            if key.lower() not in ("content-length", "transfer-encoding", "connection"):
                self.send_header(key, value)
        self.send_header("Content-Length", str(len(content)))
        self.end_headers()
        if snapshot and self.command == "GET":
            self.wfile.write(content[: len(content) * 3 // 4])
            self.wfile.flush()
            self.close_connection = True
            self.connection.shutdown(2)
            return
        self.wfile.write(content)

    do_GET = do_PUT = do_POST = do_DELETE = do_LIST = _forward


@contextmanager
def _cutting_proxy(upstream: str) -> Iterator[str]:
    handler = type("Handler", (_CutHandler,), {"upstream": upstream})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_a_stream_that_dies_mid_way_leaves_nothing(
    tmp_path: Path, big_bao: Any, seaweed: Any, versioned_bucket: str
) -> None:
    with _cutting_proxy(big_bao.addr) as addr:
        config = _config(tmp_path, addr, seaweed, versioned_bucket)
        proc = run_dr("backup", config=config, token=big_bao.root_token)
    line = one_line_error(proc)
    assert proc.returncode == ExitCode.SNAPSHOT, line
    assert "broke off" in line, line
    _nothing_left(seaweed, versioned_bucket)


def test_a_big_backup_through_the_pipeline_verifies(
    tmp_path: Path, big_bao: Any, seaweed: Any, versioned_bucket: str
) -> None:
    """Several parts, many frames, the clock calibrated beside the stream: the stored
    backup verifies, and its window brackets the snapshot."""
    config_path = _config(tmp_path, big_bao.addr, seaweed, versioned_bucket)
    result = run_backup(load_config(str(config_path)), token=big_bao.root_token)
    manifest = result.manifest
    assert manifest.snapshot.plaintext_size > 2 * PART
    info = manifest.snapshot_info
    assert info["window_start"] <= info["window_end"]
    assert info["clock_uncertainty"] < 1.5
    proc = run_dr("verify", config=config_path)
    assert proc.returncode == 0, proc.stderr


class _FeedsThenStalls:
    """Two parts of data, then a read() that blocks, as the pipeline's does while
    Vault is slow, until abort() releases it."""

    def __init__(self) -> None:
        self.left = 2 * PART
        self.aborted = threading.Event()
        self.blocked = threading.Event()

    def read(self, n: int = -1) -> bytes:
        if self.left > 0:
            take = min(n if n > 0 else PART, self.left)
            self.left -= take
            return os.urandom(take)
        self.blocked.set()
        if not self.aborted.wait(20):
            raise AssertionError("read() was never released")
        raise RuntimeError("aborted")

    def abort(self) -> None:
        self.aborted.set()


def test_ctrl_c_during_an_upload_releases_a_blocked_stream_and_leaves_nothing(
    seaweed: Any, versioned_bucket: str
) -> None:
    """KeyboardInterrupt (SIGINT; SIGTERM raises Interrupted the same way) arrives in
    the caller's thread while s3transfer's submission thread is blocked in read(): the
    store aborts the stream, so the transfer manager's shutdown does not wait for bytes
    that will never come, and the multipart upload is aborted."""
    import signal
    import time

    from dr.storage.s3 import S3Store

    store = S3Store(
        versioned_bucket,
        endpoint_url=seaweed.endpoint_url,
        region=seaweed.region,
        chunk_size=PART,
    )
    stream = _FeedsThenStalls()

    def interrupt() -> None:
        stream.blocked.wait(60)
        time.sleep(0.3)
        os.kill(os.getpid(), signal.SIGINT)  # a real signal: it wakes the blocked wait

    threading.Thread(target=interrupt, daemon=True).start()
    began = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        store.put_stream("prod/c/b/snapshot.enc", stream, overwrite=False)
    assert stream.aborted.is_set()
    assert time.monotonic() - began < 30
    _nothing_left(seaweed, versioned_bucket)
