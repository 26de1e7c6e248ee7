"""Auto-unseal test shapes: a transit seal provider and servers sealed by it.

The provider is a separate OpenBao with a transit key; the seal token is NOT root: a
periodic token whose policy allows only encrypt and decrypt on that key, as a
production seal token is (docs/restore.md). Sealed servers are initialized with
recovery keys (5 shares, threshold 3 by default) and unseal themselves.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

from dr.vault.localserver import LocalBao
from dr.vault.seal import InitResult, Node

KEY = "autounseal"
POLICY = f"""
path "transit/encrypt/{KEY}" {{ capabilities = ["update"] }}
path "transit/decrypt/{KEY}" {{ capabilities = ["update"] }}
"""


@dataclass
class TransitProvider:
    server: LocalBao
    token: str = field(repr=False)  # the policy-limited seal token

    @property
    def addr(self) -> str:
        return self.server.addr

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        resp = requests.request(
            method,
            f"{self.addr}/v1/{path}",
            headers={"X-Vault-Token": self.server.root_token},
            json=body,
            timeout=30,
        )
        assert resp.status_code < 300, (path, resp.status_code, resp.text)
        return resp.json() if resp.content else {}

    def new_token(self) -> str:
        body = self.call(
            "POST", "auth/token/create", {"policies": ["seal"], "period": "24h", "no_parent": True}
        )
        return str(body["auth"]["client_token"])

    def revoke(self, token: str) -> None:
        self.call("POST", "auth/token/revoke", {"token": token})

    def stanza(self, token: str | None = None, address: str | None = None) -> str:
        return f"""
seal "transit" {{
  address    = "{address or self.addr}"
  token      = "{token or self.token}"
  key_name   = "{KEY}"
  mount_path = "transit/"
}}
"""

    def seal_config(self, token_env: str = "SEAL_TOKEN") -> dict[str, Any]:
        """`drill.seal` for this provider (the token from `token_env`)."""
        return {
            "type": "transit",
            "address": self.addr,
            "key_name": KEY,
            "mount_path": "transit/",
            "token_env": token_env,
        }


def start_provider(workdir: Path, binary: Path) -> TransitProvider:
    server = LocalBao(workdir, binary=binary, node_id="seal-provider")
    server.start()
    server.init()
    provider = TransitProvider(server, "")
    provider.call("POST", "sys/mounts/transit", {"type": "transit"})
    provider.call("POST", f"transit/keys/{KEY}", {})
    provider.call("PUT", "sys/policies/acl/seal", {"policy": POLICY})
    provider.token = provider.new_token()
    return provider


def start_sealed(
    workdir: Path,
    binary: Path,
    provider: TransitProvider,
    *,
    token: str | None = None,
    recovery: tuple[int, int] = (5, 3),
    node_id: str = "sealed",
) -> tuple[LocalBao, InitResult]:
    """A transit-sealed server, initialized with recovery keys, active."""
    server = LocalBao(
        workdir, binary=binary, node_id=node_id, extra_listener_config=provider.stanza(token)
    )
    server.start()
    node: Node = server.node
    init = node.init(recovery[0], recovery[1], recovery=True, timeout=60)
    server.init_result = init
    server.wait_active(timeout=60)
    status = server.seal_status()
    assert status["type"] == "transit" and status["recovery_seal"] is True, status
    return server, init


def write_json_0600(path: Path, data: dict[str, Any]) -> Path:
    path.write_text(json.dumps(data))
    path.chmod(0o600)
    return path


def wait_for(what: str, check: Any, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)
