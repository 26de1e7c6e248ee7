"""Reference for `dr backup`: the naive cron script it replaces.

    VAULT_TOKEN=... python bench/ref_cron.py --bao BINARY --addr URL --endpoint-url URL \
        --bucket B --key K --dir DIR

`bao operator raft snapshot save DIR/snap` (the real binary, BAO_ADDR and BAO_TOKEN in
its environment), then boto3 `upload_file` (default TransferConfig), then the file is
removed. Prints {"bytes", "seconds", "save_s", "upload_s"}.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import time
from pathlib import Path

import boto3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bao", required=True)
    parser.add_argument("--addr", required=True)
    parser.add_argument("--endpoint-url", required=True)
    parser.add_argument("--region", default="us-east-1")
    parser.add_argument("--bucket", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--dir", type=Path, required=True)
    args = parser.parse_args()
    s3 = boto3.client("s3", endpoint_url=args.endpoint_url, region_name=args.region)
    path = args.dir / "vault.snap"
    env = {**os.environ, "BAO_ADDR": args.addr, "BAO_TOKEN": os.environ["VAULT_TOKEN"]}
    start = time.monotonic()
    try:
        subprocess.run(
            [args.bao, "operator", "raft", "snapshot", "save", str(path)], env=env, check=True
        )
        saved = time.monotonic()
        s3.upload_file(str(path), args.bucket, args.key)
        size = path.stat().st_size
    finally:
        path.unlink(missing_ok=True)
    end = time.monotonic()
    print(
        json.dumps(
            {
                "bytes": size,
                "seconds": end - start,
                "save_s": saved - start,
                "upload_s": end - saved,
            }
        )
    )


if __name__ == "__main__":
    main()
