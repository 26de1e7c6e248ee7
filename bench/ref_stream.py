"""Reference for `dr backup`: the bare stream, the least any backup to S3 can do.

    VAULT_TOKEN=... python bench/ref_stream.py --addr URL --endpoint-url URL \
        --bucket B --key K

GET /v1/sys/storage/raft/snapshot piped straight into boto3's `upload_fileobj` (its
default TransferConfig: 8 MiB parts, 10 threads). No encryption, no check, no catalog,
no manifest. Prints {"bytes": N, "seconds": S} (S from the request to the upload's end).
"""

from __future__ import annotations

import argparse
import json
import os
import time

import boto3
import requests


class _Counting:
    """The response body as a readable file, counting bytes."""

    def __init__(self, raw: object) -> None:
        self._raw = raw
        self.count = 0

    def read(self, n: int = -1) -> bytes:
        data: bytes = self._raw.read(n)  # type: ignore[attr-defined]
        self.count += len(data)
        return data


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--addr", required=True)
    parser.add_argument("--endpoint-url", required=True)
    parser.add_argument("--region", default="us-east-1")
    parser.add_argument("--bucket", required=True)
    parser.add_argument("--key", required=True)
    args = parser.parse_args()
    s3 = boto3.client("s3", endpoint_url=args.endpoint_url, region_name=args.region)
    start = time.monotonic()
    resp = requests.get(
        f"{args.addr}/v1/sys/storage/raft/snapshot",
        headers={"X-Vault-Token": os.environ["VAULT_TOKEN"]},
        stream=True,
        timeout=300,
    )
    resp.raise_for_status()
    body = _Counting(resp.raw)
    s3.upload_fileobj(body, args.bucket, args.key)
    print(json.dumps({"bytes": body.count, "seconds": time.monotonic() - start}))


if __name__ == "__main__":
    main()
