"""Reading kv-v2 metadata for the catalog walk, many paths at a time.

A catalog walk reads one metadata document per secret. Through hvac that is about
900 reads/s, bound by the client (FACTS.md): 55 s for 50,000 secrets. The drill's
pipelined HTTP/1.1 reader (dr/vault/pipelined.py) does the same reads 5-6x faster, so
the walk uses it too. With `vault.namespace` set, reads go through hvac (the pipelined
reader sends no X-Vault-Namespace header).

Metadata holds no secret values (versions and times only), so answers are kept.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from dr.errors import VaultError
from dr.vault.client import VaultConnection, tls_context
from dr.vault.endpoint import Endpoint
from dr.vault.pipelined import Answer, ReadPool, Target, parse_data

BATCH = 2048  # paths per pipelined run: bounds memory, keeps progress moving
WORKERS = 4
PIPELINE = 32


class MetadataReader:
    """`read(mount, paths)` yields (path, metadata dict or None when gone) in order."""

    def __init__(self, conn: VaultConnection) -> None:
        self.conn = conn
        self._pool: ReadPool | None = None
        if not conn.config.namespace:
            target = Target.of(Endpoint(addr=conn.addr), tls_context(conn.config, conn.addr))
            self._pool = ReadPool(
                target, str(conn.client.token), WORKERS, PIPELINE, conn.config.timeout
            )

    def close(self) -> None:
        if self._pool is not None:
            self._pool.close()

    def read(self, mount: str, paths: Sequence[str]) -> Iterator[tuple[str, dict[str, Any] | None]]:
        if self._pool is None:
            for path in paths:
                yield path, self._read_hvac(mount, path)
            return
        for start in range(0, len(paths), BATCH):
            chunk = paths[start : start + BATCH]
            answers = self._pool.run(
                [self._pool.request("GET", f"{mount}metadata/{p}") for p in chunk], parse_data
            )
            for path, answer in zip(chunk, answers, strict=True):
                yield path, self._judge(mount, path, answer)

    def _judge(self, mount: str, path: str, answer: Answer) -> dict[str, Any] | None:
        if answer.status == 200 and not answer.error:
            payload = answer.payload
            return payload if isinstance(payload, dict) else {}
        if answer.status == 404:
            return None  # deleted (metadata and all) between the LIST and this read
        what = f"read {mount}metadata"
        if answer.status in (401, 403):
            raise VaultError(
                f"Vault at {self.conn.addr} denied {what} ({answer.status}: {answer.error}); "
                "give the token the policy in docs/vault-policy.md"
            )
        if answer.status == 0:
            raise VaultError(
                f"cannot reach Vault at {self.conn.addr} during the catalog walk "
                f"({answer.error}); run the backup again"
            )
        raise VaultError(
            f"Vault at {self.conn.addr}: {what} failed ({answer.status}: "
            f"{answer.error or 'unexpected answer'})"
        )

    def _read_hvac(self, mount: str, path: str) -> dict[str, Any] | None:
        from dr.vault.catalog import quote

        resp = self.conn.get(f"/v1/{mount}metadata/{quote(path)}", f"read {mount}metadata")
        if not resp:
            return None
        data: dict[str, Any] = resp.get("data") or {}
        return data
