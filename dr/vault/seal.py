"""Unseal keys, unsealing, and waiting for a node's state (over any `requests` session).

After a raft restore from another cluster a node becomes that cluster: it seals itself
about 5-7 s after the restore call, and only the SOURCE cluster's unseal keys open it
(FACTS.md). These helpers work over a plain session so they serve `dr restore` (TCP)
and drills (unix socket) alike.
"""

from __future__ import annotations

import json
import stat
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

from dr.errors import UsageError, VaultError
from dr.vault.client import response_errors


@dataclass(frozen=True)
class UnsealKeys:
    keys: tuple[str, ...]  # base64 or hex, as Vault accepts either
    source: str

    def __repr__(self) -> str:  # never print keys
        return f"UnsealKeys(<{len(self.keys)} hidden>, source={self.source!r})"


def load_unseal_keys(path: Path) -> UnsealKeys:
    """Read the JSON `bao|vault operator init -format=json` prints, or {"keys": [...]}."""
    try:
        mode = path.stat().st_mode
        raw = path.read_text()
    except FileNotFoundError:
        raise UsageError(f"unseal keys file {path} does not exist") from None
    except OSError as exc:
        raise UsageError(f"cannot read unseal keys file {path}: {exc.strerror}") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise UsageError(f"unseal keys file {path} is readable by others; run: chmod 600 {path}")
    try:
        data = json.loads(raw)
    except ValueError:
        raise UsageError(
            f"unseal keys file {path} is not JSON; expected the output of "
            '`bao operator init -format=json` or {"keys": ["base64", ...]}'
        ) from None
    keys: Any = None
    if isinstance(data, dict):
        for field in ("unseal_keys_b64", "keys_base64", "keys", "unseal_keys_hex"):
            if isinstance(data.get(field), list) and data[field]:
                keys = data[field]
                break
    if not keys or not all(isinstance(k, str) and k for k in keys):
        raise UsageError(
            f"unseal keys file {path} holds no keys; expected unseal_keys_b64 (from "
            '`operator init -format=json`) or {"keys": [...]}'
        )
    return UnsealKeys(tuple(keys), str(path))


class NodeAPI:
    """The few unauthenticated sys/ calls a restore needs, over one session."""

    def __init__(self, session: requests.Session, base_url: str, label: str) -> None:
        self.session = session
        self.base_url = base_url.rstrip("/")
        self.label = label

    def call(self, method: str, path: str, timeout: float = 30, **kwargs: Any) -> Any:
        try:
            resp = self.session.request(
                method, f"{self.base_url}/v1/{path}", timeout=timeout, **kwargs
            )
        except requests.RequestException as exc:
            raise VaultError(f"cannot reach Vault at {self.label}: {type(exc).__name__}") from None
        if resp.status_code >= 400 and path != "sys/health":
            raise VaultError(
                f"Vault at {self.label}: {method} {path} answered {resp.status_code}: "
                f"{response_errors(resp)}"
            )
        return resp

    def seal_status(self) -> dict[str, Any]:
        body = self.call("GET", "sys/seal-status").json()
        return body if isinstance(body, dict) else {}

    def health_code(self) -> int | None:
        try:
            return int(self.call("GET", "sys/health", timeout=10).status_code)
        except VaultError:
            return None

    def unseal(self, keys: UnsealKeys, *, timeout: float = 120) -> None:
        """Submit keys until the node is unsealed; a key the node refuses means these are
        not the keys of the cluster the node now belongs to."""
        self.call("PUT", "sys/unseal", json={"reset": True}, timeout=timeout)
        for key in keys.keys:
            resp = self.session.put(
                f"{self.base_url}/v1/sys/unseal", json={"key": key}, timeout=timeout
            )
            if resp.status_code >= 400:
                raise VaultError(
                    f"Vault at {self.label} refused an unseal key from {keys.source} "
                    f"({response_errors(resp)}); are these the SOURCE cluster's unseal keys?"
                )
            body = resp.json()
            if not body.get("sealed", True):
                return
        raise VaultError(
            f"Vault at {self.label} is still sealed after all {len(keys.keys)} keys from "
            f"{keys.source}; the threshold needs more keys"
        )

    def wait(
        self, what: str, check: Callable[[], bool], timeout: float, every: float = 0.2
    ) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if check():
                    return
            except VaultError:
                pass
            time.sleep(every)
        raise VaultError(f"Vault at {self.label} did not become {what} within {timeout:.0f} s")

    def wait_sealed(self, timeout: float = 60) -> None:
        self.wait("sealed", lambda: bool(self.seal_status().get("sealed")), timeout)

    def wait_active(self, timeout: float = 120) -> None:
        self.wait("active", lambda: self.health_code() == 200, timeout)
