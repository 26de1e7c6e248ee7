"""Reference for `dr restore`: the CLI restore of the plaintext snapshot, until serving.

    BAO_TOKEN=<target token> SOURCE_KEYS_FILE=keys.json \
        python bench/ref_restore.py --bao BINARY --addr URL --snapshot FILE

What an operator types: `bao operator raft snapshot restore -force FILE` (the real
binary; the call returns once the server has the file, and OpenBao applies it in the
background and seals itself about 5 s later), then waits for the seal, unseals with the
SOURCE cluster's keys (`bao operator init -format=json`: unseal_keys_b64) and waits
until sys/health answers 200 (active). Prints {"seconds", "restore_call_s", "sealed_s",
"active_s"} (cumulative).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import time
from pathlib import Path

import requests


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bao", required=True)
    parser.add_argument("--addr", required=True)
    parser.add_argument("--snapshot", type=Path, required=True)
    parser.add_argument("--timeout", type=float, default=600)
    args = parser.parse_args()
    init = json.loads(Path(os.environ["SOURCE_KEYS_FILE"]).read_text())
    keys = next(init[f] for f in ("unseal_keys_b64", "keys_base64", "keys") if f in init)
    env = {**os.environ, "BAO_ADDR": args.addr, "BAO_CLIENT_TIMEOUT": "600s"}
    start = time.monotonic()
    deadline = start + args.timeout
    subprocess.run(
        [args.bao, "operator", "raft", "snapshot", "restore", "-force", str(args.snapshot)],
        env=env,
        check=True,
    )
    called = time.monotonic()
    session = requests.Session()
    while True:  # seal-status can block while the node tears down
        try:
            if session.get(f"{args.addr}/v1/sys/seal-status", timeout=60).json()["sealed"]:
                break
        except (requests.RequestException, ValueError, KeyError):
            pass
        if time.monotonic() > deadline:
            raise SystemExit("the restored node never sealed")
        time.sleep(0.05)
    sealed = time.monotonic()
    for key in keys:
        answer = session.put(f"{args.addr}/v1/sys/unseal", json={"key": key}, timeout=120)
        answer.raise_for_status()
        if not answer.json()["sealed"]:
            break
    while session.get(f"{args.addr}/v1/sys/health", timeout=10).status_code != 200:
        if time.monotonic() > deadline:
            raise SystemExit("the restored node never became active")
        time.sleep(0.05)
    end = time.monotonic()
    print(
        json.dumps(
            {
                "seconds": end - start,
                "restore_call_s": called - start,
                "sealed_s": sealed - start,
                "active_s": end - start,
            }
        )
    )


if __name__ == "__main__":
    main()
