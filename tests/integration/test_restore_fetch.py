"""`dr restore` from S3: the concurrent download into the spool, and its failure paths.

A source OpenBao with a snapshot of several S3 ranges (large incompressible secrets) is
backed up into SeaweedFS with 5 MiB parts, so `fetch_backup` downloads it with
concurrent ranged GETs while it authenticates the spool's written prefix in order
(dr/ops/fetch.py). A loopback proxy in front of SeaweedFS damages the snapshot's
ranges on demand (one flipped byte near the END, a connection cut mid-range, a slow
dribble). Whenever the backup did not authenticate whole, the target shows that nothing
reached it: its raft committed index has not moved (a restore, even a refused one, is a
raft write; `dr` replaces a proxy's address by the node's api_addr, so a proxy in front
of the target would not see the call), its marker secret is there and it is unsealed.
"""

from __future__ import annotations

import base64
import http.client
import http.server
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from dr.errors import ExitCode
from dr.vault.localserver import LocalBao
from tests.conftest import TEST_AWS_ENV
from tests.integration.drutil import (
    keyfile_recipient,
    one_line_error,
    run_dr,
    s3_storage,
    write_config,
    write_keys,
)
from tests.stack.openbao import hvac_client

SECRETS = 24  # x 683 KiB of base64: a snapshot of about 16 MB, 4 ranges of 5 MiB


class _Proxy(http.server.BaseHTTPRequestHandler):
    """Forwards every request unchanged (headers too: SigV4 signs the Host) and counts
    them; GET responses of the snapshot object are damaged as `mode` says."""

    upstream = ""
    mode = "pass"  # pass | flip | cut | slow
    at = 0  # the absolute offset of the byte to flip, or of the cut
    seen: list[tuple[str, str, str]]
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:
        pass

    def _forward(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        self.seen.append((self.command, self.path, self.headers.get("Range") or ""))
        up = urlsplit(self.upstream)
        conn = http.client.HTTPConnection(up.hostname, up.port, timeout=60)
        conn.request(self.command, self.path, body=body, headers=dict(self.headers.items()))
        resp = conn.getresponse()
        content = resp.read()
        conn.close()
        start = _range_start(self.headers.get("Range"))
        damaged = (
            self.command == "GET"
            and "snapshot.enc" in self.path
            and resp.status in (200, 206)
            and start <= self.at < start + len(content)
        )
        if damaged and self.mode == "flip":
            flipped = bytearray(content)
            flipped[self.at - start] ^= 0x01
            content = bytes(flipped)
        self.send_response(resp.status)
        for key, value in resp.getheaders():
            if key.lower() not in ("content-length", "transfer-encoding", "connection"):
                self.send_header(key, value)
        if self.command == "HEAD":  # no body: the upstream's length stands
            self.send_header("Content-Length", resp.getheader("Content-Length") or "0")
            self.end_headers()
            return
        self.send_header("Content-Length", str(len(content)))
        self.end_headers()
        if damaged and self.mode == "cut":
            # Half the range, then the connection drops: every retry breaks the same way.
            self.wfile.write(content[: (self.at - start)])
            self.wfile.flush()
            self.close_connection = True
            return
        if self.mode == "slow" and "snapshot.enc" in self.path and self.command == "GET":
            for i in range(0, len(content), 65536):
                self.wfile.write(content[i : i + 65536])
                self.wfile.flush()
                time.sleep(0.05)
            return
        self.wfile.write(content)

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _forward

    def do_LIST(self) -> None:
        self._forward()


def _range_start(header: str | None) -> int:
    if not header or not header.startswith("bytes="):
        return 0
    return int(header[len("bytes=") :].split("-")[0])


@contextmanager
def proxy(upstream: str, mode: str = "pass", at: int = 0) -> Iterator[tuple[str, list[Any]]]:
    seen: list[tuple[str, str, str]] = []
    attrs = {"upstream": upstream, "mode": mode, "at": at, "seen": seen}
    handler = type("Handler", (_Proxy,), attrs)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", seen
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture(scope="module")
def big_backup(
    tmp_path_factory: pytest.TempPathFactory, bao_binary: Path, seaweed: Any
) -> Iterator[dict[str, Any]]:
    tmp = tmp_path_factory.mktemp("restore-fetch")
    source = LocalBao(tmp / "source", binary=bao_binary)
    try:
        source.start()
        init = source.init()
        client = hvac_client(source, init.root_token)
        client.sys.enable_secrets_engine("kv", path="big", options={"version": "2"})
        for i in range(SECRETS):
            value = base64.b64encode(os.urandom(512 << 10)).decode()
            client.secrets.kv.v2.create_or_update_secret(
                path=f"blob-{i:02d}", secret={"v": value}, mount_point="big"
            )
        bucket = seaweed.make_bucket("restore-fetch", versioned=True)
        storage = s3_storage(seaweed, bucket)
        recipients = [keyfile_recipient(tmp)]
        config = write_config(tmp, addr=source.addr, storage=storage, recipients=recipients)
        # A module fixture runs before the per-test environment: give the test keys here.
        proc = run_dr("backup", "--json", config=config, token=init.root_token, env=TEST_AWS_ENV)
        assert proc.returncode == 0, proc.stderr
        result = json.loads(proc.stdout)
        keys = write_keys(tmp / "unseal.json", {"keys_base64": init.keys_b64})
        yield {
            "tmp": tmp,
            "id": result["backup_id"],
            "keys": keys,
            "storage": storage,
            "recipients": recipients,
            "source": source,
            "token": init.root_token,
            "endpoint": seaweed.endpoint_url,
        }
    finally:
        source.stop()


def _config_via(backup: dict[str, Any], tmp_path: Path, endpoint: str) -> Path:
    storage = {**backup["storage"], "endpoint_url": endpoint}
    # The writer key pinned by the source config: the same public key, copied.
    (tmp_path / "writer.key").write_bytes((backup["tmp"] / "writer.key").read_bytes())
    (tmp_path / "writer.key").chmod(0o600)
    return write_config(
        tmp_path, addr="http://127.0.0.1:1", storage=storage, recipients=backup["recipients"]
    )


def _snapshot_object(backup: dict[str, Any], seaweed: Any) -> tuple[str, int]:
    s3 = seaweed.client()
    listing = s3.list_objects_v2(Bucket=backup["storage"]["bucket"])
    key = next(o["Key"] for o in listing["Contents"] if o["Key"].endswith("snapshot.enc"))
    size = next(o["Size"] for o in listing["Contents"] if o["Key"] == key)
    return key, int(size)


def _marked(target: LocalBao) -> Any:
    client = hvac_client(target)
    client.sys.enable_secrets_engine("kv", path="marker", options={"version": "1"})
    client.secrets.kv.v1.create_or_update_secret(path="m", secret={"v": "2"}, mount_point="marker")
    return client


def _raft_index(target: LocalBao) -> int:
    return int(target.leader()["raft_committed_index"])


def _untouched(target: LocalBao, client: Any, index: int) -> None:
    assert _raft_index(target) == index
    assert client.secrets.kv.v1.read_secret(path="m", mount_point="marker")["data"] == {"v": "2"}
    assert target.seal_status()["sealed"] is False


def _restore(
    config: Path, backup: dict[str, Any], addr: str, target: LocalBao, spool: Path, *more: str
) -> subprocess.CompletedProcess[str]:
    return run_dr(
        "restore", "--backup", backup["id"], "--to", addr,
        "--unseal-keys-file", str(backup["keys"]), "--yes", *more,
        config=config, token=target.root_token,
        env={"TMPDIR": str(spool), "SOURCE_TOKEN": backup["token"]},
    )  # fmt: skip


def _spool_parent(tmp_path: Path) -> Path:
    spool = tmp_path / "tmp"
    spool.mkdir()
    return spool


def test_restore_from_s3_downloads_ranges_concurrently_and_serves_every_secret(
    big_backup: dict[str, Any], fresh_bao: LocalBao, tmp_path: Path
) -> None:
    spool = _spool_parent(tmp_path)
    with proxy(big_backup["endpoint"]) as (endpoint, seen):
        config = _config_via(big_backup, tmp_path, endpoint)
        proc = _restore(
            config, big_backup, fresh_bao.addr, fresh_bao, spool,
            "--verify-token-env", "SOURCE_TOKEN", "--json",
        )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["passed"] is True and result["checks"]["total_checked"] >= SECRETS
    ranges = [r for method, path, r in seen if method == "GET" and "snapshot.enc" in path]
    assert len(ranges) >= 3 and all(r.startswith("bytes=") for r in ranges), [
        x for x in seen if "snapshot" in x[1]
    ]
    assert list(spool.iterdir()) == []
    client = hvac_client(fresh_bao, big_backup["token"])
    got = client.secrets.kv.v2.read_secret_version(
        path=f"blob-{SECRETS - 1:02d}", mount_point="big", raise_on_deleted_version=True
    )
    source = hvac_client(big_backup["source"], big_backup["token"])
    want = source.secrets.kv.v2.read_secret_version(
        path=f"blob-{SECRETS - 1:02d}", mount_point="big", raise_on_deleted_version=True
    )
    assert got["data"]["data"] == want["data"]["data"]


@pytest.mark.parametrize(
    ("mode", "exit_code"),
    [("flip", ExitCode.INTEGRITY), ("cut", ExitCode.STORAGE)],
    ids=["tampered-frame-near-the-end", "download-dies-mid-way"],
)
def test_a_damaged_download_sends_no_byte_to_vault_and_leaves_no_spool(
    big_backup: dict[str, Any],
    fresh_bao: LocalBao,
    seaweed: Any,
    tmp_path: Path,
    mode: str,
    exit_code: ExitCode,
) -> None:
    _, size = _snapshot_object(big_backup, seaweed)
    client = _marked(fresh_bao)
    spool = _spool_parent(tmp_path)
    # In the last 5 MiB range, past everything before it: those frames authenticate.
    at = size - 3000 if mode == "flip" else size - (1 << 20)
    index = _raft_index(fresh_bao)
    with proxy(big_backup["endpoint"], mode, at) as (endpoint, _):
        config = _config_via(big_backup, tmp_path, endpoint)
        proc = _restore(config, big_backup, fresh_bao.addr, fresh_bao, spool, "--no-verify")
    line = one_line_error(proc)
    assert proc.returncode == exit_code, line
    _untouched(fresh_bao, client, index)
    assert list(spool.iterdir()) == []  # the ciphertext spool is gone


def test_ctrl_c_during_the_download_removes_the_spool(
    big_backup: dict[str, Any], fresh_bao: LocalBao, tmp_path: Path
) -> None:
    client = _marked(fresh_bao)
    spool = _spool_parent(tmp_path)
    index = _raft_index(fresh_bao)
    with proxy(big_backup["endpoint"], "slow") as (endpoint, _):
        config = _config_via(big_backup, tmp_path, endpoint)
        env = {**os.environ, "VAULT_TOKEN": fresh_bao.root_token, "TMPDIR": str(spool)}
        proc = subprocess.Popen(
            [sys.executable, "-m", "dr", "-c", str(config), "restore", "--backup",
             big_backup["id"], "--to", fresh_bao.addr, "--unseal-keys-file",
             str(big_backup["keys"]), "--yes", "--no-verify"],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 60
            while not any(f.stat().st_size > 0 for f in spool.glob("dr-spool-*/*")):
                assert proc.poll() is None and time.monotonic() < deadline, proc.stderr
                time.sleep(0.05)
            proc.send_signal(signal.SIGINT)
            _, stderr = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
    assert proc.returncode != 0 and "Traceback" not in stderr, stderr
    assert list(spool.iterdir()) == []
    _untouched(fresh_bao, client, index)
