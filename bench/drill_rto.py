"""Benchmark: `dr drill` RTO against a bare hvac script doing only the same steps.

For each size (default 2k, 10k, 50k kv secrets over two kv-v2 mounts and one kv-v1
mount), in the same run and on the same machine:

1. a source OpenBao is populated and backed up with `dr backup` (file store, keyfile);
2. `dr drill --runtime process` restores it into a throwaway OpenBao and checks every
   cataloged path; its report gives the RTO (drill start to verified);
3. the bare script: start a throwaway OpenBao, init, unseal, force-restore the (already
   decrypted) snapshot file, wait for the self-seal, unseal with the source keys, wait
   until active, read every secret with hvac (one client, paths known in advance).

The bare script gets the plaintext snapshot for free and knows the paths; the drill
also downloads, authenticates and decrypts, walks nothing, and checks versions too.

    python bench/drill_rto.py [--sizes 2000,10000,50000] [--runs 1] [--json out.json]

Targets (restore/drill issue): at 2k at most 10% longer than the bare script; at 50k at
most 0.7x of it. Not part of the test suite.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import hvac
import requests
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from dr.crypto.keyfile import generate_keyfile  # noqa: E402
from dr.vault.localserver import LocalBao  # noqa: E402
from tests.integration.drutil import writer_block  # noqa: E402
from tests.stack.openbao import hvac_client, populate  # noqa: E402


def dr(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "dr", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=3600,
    )


def _sealed(addr: str) -> bool:
    # seal-status can block for seconds while the restored node tears down (FACTS.md).
    try:
        return bool(requests.get(f"{addr}/v1/sys/seal-status", timeout=30).json()["sealed"])
    except requests.RequestException:
        return False


def bare_script(
    snapshot: Path,
    source_keys: list[str],
    source_token: str,
    secrets: dict[str, Any],
    kv1: str,
    workdir: Path,
) -> float:
    """Start, init, restore, unseal, read every secret: the obvious script, timed."""
    t0 = time.monotonic()
    bao = LocalBao(workdir)
    try:
        bao.start()
        init = bao.init()  # init + unseal + wait active
        client = hvac.Client(url=bao.addr, token=init.root_token)
        with snapshot.open("rb") as fh:
            client.sys.force_restore_raft_snapshot(fh)
        while not _sealed(bao.addr):
            time.sleep(0.1)
        for key in source_keys:
            if not client.sys.submit_unseal_key(key)["sealed"]:
                break
        while requests.get(f"{bao.addr}/v1/sys/health", timeout=5).status_code != 200:
            time.sleep(0.1)
        client = hvac.Client(url=bao.addr, token=source_token)
        for full_path in secrets:
            mount, path = full_path.split("/", 1)
            if mount == kv1:
                client.secrets.kv.v1.read_secret(path=path, mount_point=mount)
            else:
                client.secrets.kv.v2.read_secret_version(
                    path=path, mount_point=mount, raise_on_deleted_version=True
                )
        return time.monotonic() - t0
    finally:
        bao.stop()


def one_size(count: int, tmp: Path) -> dict[str, Any]:
    source = LocalBao(tmp / f"src-{count}")
    try:
        source.start()
        init = source.init()
        t = time.monotonic()
        secrets = populate(hvac_client(source), count=count)
        print(f"[{count}] populated in {time.monotonic() - t:.1f} s", file=sys.stderr)
        keyfile = tmp / f"k-{count}.key"
        generate_keyfile(keyfile)
        keys_file = tmp / f"unseal-{count}.json"
        fd = os.open(keys_file, os.O_WRONLY | os.O_CREAT, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump(init.raw, fh)
        config = tmp / f"dr-{count}.yaml"
        config.write_text(
            yaml.safe_dump(
                {
                    "cluster": f"bench{count}",
                    "vault": {"addr": source.addr},
                    "storage": {"type": "file", "path": str(tmp / f"store-{count}")},
                    "encryption": {
                        "recipients": [{"type": "keyfile", "path": str(keyfile)}],
                        "writer": writer_block(tmp),
                    },
                    "drill": {"runtime": "process", "unseal_keys_file": str(keys_file)},
                }
            )
        )
        t = time.monotonic()
        proc = dr("-c", str(config), "backup", env={"VAULT_TOKEN": init.root_token})
        assert proc.returncode == 0, proc.stderr
        print(f"[{count}] backup in {time.monotonic() - t:.1f} s", file=sys.stderr)
        snapshot = tmp / f"plain-{count}.snap"
        proc = dr("-c", str(config), "decrypt", "-o", str(snapshot))
        assert proc.returncode == 0, proc.stderr
    finally:
        source.stop()

    t = time.monotonic()
    proc = dr("-c", str(config), "drill", "--runtime", "process", "--json")
    drill_wall = time.monotonic() - t
    assert proc.returncode == 0, proc.stderr + proc.stdout
    report = json.loads(proc.stdout)
    bare = bare_script(
        snapshot, init.keys_b64, init.root_token, secrets, "legacy", tmp / f"bare-{count}"
    )
    snapshot.unlink()
    row = {
        "secrets": len(secrets),
        "bare_script_s": round(bare, 2),
        "drill_rto_s": report["rto_seconds"],
        "drill_wall_s": round(drill_wall, 2),
        "ratio_rto": round(report["rto_seconds"] / bare, 3),
        "ratio_wall": round(drill_wall / bare, 3),
        "stages": report["stages"],
        "checked": report["checks"]["total_checked"],
    }
    print(f"[{count}] {row}", file=sys.stderr)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="2000,10000,50000")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="dr-bench-drill-") as tmp:
        for size in (int(s) for s in args.sizes.split(",")):
            rows.append(one_size(size, Path(tmp)))
    print("| secrets | bare hvac script | dr drill RTO | ratio | dr drill wall | verify stage |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in rows:
        print(
            f"| {r['secrets']} | {r['bare_script_s']:.2f} s | {r['drill_rto_s']:.2f} s | "
            f"{r['ratio_rto']:.2f}x | {r['drill_wall_s']:.2f} s | {r['stages']['verify']:.2f} s |"
        )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
