"""Raft snapshot endpoints: save as a stream (restore comes with `dr restore`)."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import requests

from dr.errors import SnapshotError, VaultError
from dr.vault.client import VaultConnection, vault_errors

log = logging.getLogger(__name__)

SNAPSHOT_PATH = "/v1/sys/storage/raft/snapshot"
CHUNK = 1 << 20


def stream_snapshot(conn: VaultConnection) -> Iterator[bytes]:
    """Yield the raw snapshot (gzip) from the active node, chunk by chunk.

    The body is never buffered whole: hvac returns the requests response opened with
    stream=True, and iter_content hands it on 1 MiB at a time.
    """
    with vault_errors("GET sys/storage/raft/snapshot", conn.addr):
        resp = conn.client.sys.take_raft_snapshot()
    if not isinstance(resp, requests.Response):
        raise VaultError(f"Vault at {conn.addr} answered the snapshot request with no body")
    try:
        if resp.status_code != 200:
            raise VaultError(
                f"Vault at {conn.addr} answered {resp.status_code} to the snapshot request"
            )
        try:
            yield from resp.iter_content(CHUNK)
        except requests.RequestException as exc:
            # A connection that drops mid-body: the snapshot is incomplete. Not retried:
            # the caller's upload is aborted and cron runs the next backup.
            raise SnapshotError(
                f"the snapshot stream from {conn.addr} broke off ({type(exc).__name__}); "
                "nothing was stored; run the backup again"
            ) from None
    finally:
        resp.close()
