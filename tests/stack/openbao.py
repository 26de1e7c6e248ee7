"""Populate a LocalBao with many deterministic secrets across kv-v2 and kv-v1 mounts.

Every value is derived from sha256(seed, mount, path, version), so a test can recompute
any secret without keeping state, check "restored bit for bit", and search stored bytes
for every value ("no secret value appears in plaintext"). Values are long, unique and
look random; some are non-ASCII or multi-line to catch encoding slips.

Writes go through plain pooled `requests` sessions, one per thread: OpenBao took about
800 kv writes/s with 8-16 threads on the project's 2-core machines (FACTS.md).
"""

from __future__ import annotations

import base64
import hashlib
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import requests

from dr.vault.localserver import InitResult, LocalBao

DEFAULT_SEED = "vault-dr-test-seed-1"
# kv-v2 paths written with several versions (current data is in the populate() result).
# VERSIONED[path] = (number of versions, soft-deleted version numbers)
VERSIONED: dict[str, tuple[int, tuple[int, ...]]] = {
    "app/versioned/multi-a": (3, ()),
    "team/versioned/multi-b": (3, (2,)),
}


def secret_data(
    mount: str, path: str, version: int = 1, seed: str = DEFAULT_SEED
) -> dict[str, str]:
    """The data written at mount/path (kv-v2: at that version)."""
    digest = hashlib.sha256(f"{seed}\0{mount}\0{path}\0{version}".encode()).digest()
    more = hashlib.sha256(digest).digest()
    n = int.from_bytes(digest[:4], "big")
    data = {
        "username": f"user-{digest[:6].hex()}",
        "password": digest.hex(),
        "token": base64.urlsafe_b64encode(more).decode().rstrip("="),
    }
    if n % 10 == 0:
        data["note"] = f"clé secrète ünïcødé {more[:8].hex()}"
    if n % 50 == 1:
        body = base64.b64encode(digest + more).decode()
        data["pem"] = f"-----BEGIN TEST KEY-----\n{body}\n-----END TEST KEY-----\n"
    return data


def _paths(count: int) -> Iterator[str]:
    """Unique relative paths, flat and nested (up to six levels)."""
    for i in range(count):
        shape = i % 4
        if shape == 0:
            yield f"svc-{i % 13:02d}/config-{i:05d}"
        elif shape == 1:
            yield f"a/b/c/d-{i % 5}/e/item-{i:05d}"
        elif shape == 2:
            yield f"top-{i:05d}"
        else:
            yield f"team-{i % 7}/env-{i % 3}/db/cred-{i:05d}"


def plan(
    kv2_mounts: tuple[str, ...] = ("app", "team"),
    kv1_mount: str = "legacy",
    count: int = 2000,
) -> list[tuple[str, str, int]]:
    """(mount, path, kv_version) for `count` secrets: 40% per kv-v2 mount, rest kv-v1."""
    mounts = [(m, 2) for m in kv2_mounts] + [(kv1_mount, 1)]
    share = [int(count * 0.4)] * len(kv2_mounts)
    share.append(count - sum(share))
    out: list[tuple[str, str, int]] = []
    for (mount, version), n in zip(mounts, share, strict=True):
        out.extend((mount, path, version) for path in _paths(n))
    return out


class _Writer:
    """Per-thread pooled sessions writing straight to the HTTP API."""

    def __init__(self, addr: str, token: str) -> None:
        self.addr = addr.rstrip("/")
        self.token = token
        self._local = threading.local()

    def session(self) -> requests.Session:
        sess: requests.Session | None = getattr(self._local, "session", None)
        if sess is None:
            sess = requests.Session()
            sess.trust_env = False
            sess.headers["X-Vault-Token"] = self.token
            self._local.session = sess
        return sess

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        for attempt in range(5):
            resp = self.session().request(method, f"{self.addr}/v1/{path}", json=body, timeout=30)
            if resp.status_code < 400:
                return resp.json() if resp.content else None
            if resp.status_code < 500 and resp.status_code != 429:
                break
            time.sleep(0.2 * (attempt + 1))
        raise RuntimeError(f"{method} {path}: {resp.status_code} {resp.text[:200]}")

    def write(self, mount: str, path: str, kv_version: int, data: dict[str, str]) -> None:
        if kv_version == 2:
            self.call("POST", f"{mount}/data/{path}", {"data": data})
        else:
            self.call("POST", f"{mount}/{path}", data)


def _enable_mounts(writer: _Writer, kv2: tuple[str, ...], kv1: str) -> None:
    existing = writer.call("GET", "sys/mounts") or {}
    mounts = existing.get("data", existing)
    for mount, version in [(m, "2") for m in kv2] + [(kv1, "1")]:
        if f"{mount}/" in mounts:
            continue
        writer.call("POST", f"sys/mounts/{mount}", {"type": "kv", "options": {"version": version}})
    # A new kv-v2 mount answers a short while before it takes writes.
    for mount in kv2:
        deadline = time.monotonic() + 30
        while True:
            resp = writer.session().get(f"{writer.addr}/v1/{mount}/config", timeout=10)
            if resp.status_code == 200:
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"kv-v2 mount {mount} not ready: {resp.status_code}")
            time.sleep(0.05)


def populate(
    client: Any,
    *,
    kv2_mounts: tuple[str, ...] = ("app", "team"),
    kv1_mount: str = "legacy",
    count: int = 2000,
    seed: str = DEFAULT_SEED,
    threads: int = 12,
) -> dict[str, dict[str, str]]:
    """Write `count` secrets (plus the VERSIONED ones); return {"mount/path": current data}.

    `client` is an authenticated hvac client (its url and token are used).
    """
    writer = _Writer(client.url, client.token)
    _enable_mounts(writer, kv2_mounts, kv1_mount)
    items = plan(kv2_mounts, kv1_mount, count)
    secrets: dict[str, dict[str, str]] = {}

    def one(item: tuple[str, str, int]) -> None:
        mount, path, kv_version = item
        data = secret_data(mount, path, 1, seed)
        writer.write(mount, path, kv_version, data)
        secrets[f"{mount}/{path}"] = data

    with ThreadPoolExecutor(max_workers=threads) as pool:
        list(pool.map(one, items))

    for full, (versions, deleted) in VERSIONED.items():
        mount, path = full.split("/", 1)
        if mount not in kv2_mounts:
            continue
        for version in range(1, versions + 1):
            writer.write(mount, path, 2, secret_data(mount, path, version, seed))
        if deleted:
            writer.call("POST", f"{mount}/delete/{path}", {"versions": list(deleted)})
        secrets[full] = secret_data(mount, path, versions, seed)
    return secrets


@dataclass
class PopulatedBao:
    """A running, initialized, populated LocalBao (session-wide: treat as read-only)."""

    server: LocalBao
    keys: InitResult
    secrets: dict[str, dict[str, str]] = field(repr=False)
    seed: str = DEFAULT_SEED
    kv2_mounts: tuple[str, ...] = ("app", "team")
    kv1_mount: str = "legacy"

    @property
    def addr(self) -> str:
        return self.server.addr

    @property
    def root_token(self) -> str:
        return self.keys.root_token

    def client(self, token: str | None = None) -> Any:
        return hvac_client(self.server, token or self.root_token)


def hvac_client(server: LocalBao, token: str | None = None, verify: bool | str = True) -> Any:
    """An hvac client of a LocalBao (its root token by default): the tests' independent
    way to set up and read OpenBao, apart from dr's own connection layer."""
    import hvac

    if token is None and server.init_result is not None:
        token = server.init_result.root_token
    session = requests.Session()
    session.trust_env = False
    session.verify = verify  # hvac uses the session's, not its own argument (docs/facts.md)
    if server.endpoint.unix_socket is not None:
        raise ValueError("hvac_client() speaks TCP only; use server.vault() for a socket")
    return hvac.Client(
        url=server.endpoint.base_url, token=token, session=session, timeout=60, verify=verify
    )
