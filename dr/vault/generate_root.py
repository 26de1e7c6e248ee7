"""A root token for a throwaway Vault, made from the source cluster's unseal keys.

A drill must never use a production token. After the restore, the throwaway holds the
source cluster's keyring, so the legacy generate-root flow (start with a one-time pad,
submit the unseal keys, XOR-decode) yields a root token valid ONLY in that throwaway
instance. OpenBao 2.7 disables the unauthenticated `sys/generate-root/*` endpoints by
default; the drill's own server config re-enables them
(`disable_unauthed_generate_root_endpoints = false`, FACTS.md). The token is revoked
before teardown.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass

from dr.errors import VaultError
from dr.vault.seal import NodeAPI, UnsealKeys


@dataclass(frozen=True)
class RootToken:
    token: str

    def __repr__(self) -> str:
        return "RootToken(<hidden>)"


def decode_root_token(encoded: str, otp: str) -> str:
    """XOR the base64 `encoded_token` with the OTP's bytes (Vault >= 1.10 token format)."""
    raw = base64.b64decode(encoded + "=" * (-len(encoded) % 4))
    pad = otp.encode()
    if len(raw) != len(pad):
        raise VaultError(
            f"generate-root returned a token of {len(raw)} bytes for a {len(pad)}-byte OTP; "
            "this Vault uses an unsupported token encoding"
        )
    return bytes(a ^ b for a, b in zip(raw, pad, strict=True)).decode()


def generate_root(node: NodeAPI, keys: UnsealKeys) -> RootToken:
    node.call("DELETE", "sys/generate-root/attempt")  # cancel a stale attempt, if any
    start = node.call("PUT", "sys/generate-root/attempt", json={}).json()
    otp = str(start.get("otp", ""))
    nonce = str(start.get("nonce", ""))
    if not otp or not nonce:
        raise VaultError(
            f"Vault at {node.label} did not start a generate-root attempt with an OTP; "
            "is `disable_unauthed_generate_root_endpoints = false` set in its listener?"
        )
    body: dict[str, object] = {}
    for key in keys.keys:
        body = node.call(
            "PUT", "sys/generate-root/update", json={"key": key, "nonce": nonce}
        ).json()
        if body.get("complete"):
            break
    encoded = str(body.get("encoded_token") or body.get("encoded_root_token") or "")
    if not body.get("complete") or not encoded:
        node.call("DELETE", "sys/generate-root/attempt")
        raise VaultError(
            f"generate-root on {node.label} did not complete with the {len(keys.keys)} keys "
            f"from {keys.source}; the threshold needs more keys"
        )
    return RootToken(decode_root_token(encoded, otp))


def revoke_self(node: NodeAPI, token: RootToken) -> None:
    node.call("POST", "auth/token/revoke-self", headers={"X-Vault-Token": token.token})
