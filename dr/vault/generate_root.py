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
from dr.vault.seal import Node, SourceKey, UnsealKeys, candidate_keys


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


def generate_root(node: Node, key: SourceKey) -> RootToken:
    """Make a root token with the key that unsealed the node, given as exactly the
    shares the node asks for (`required`; the source's threshold after the unseal)."""
    client = node.client
    attempt = "sys/generate-root/attempt"

    def call(method: str, path: str, body: dict[str, object] | None = None) -> dict[str, object]:
        return (
            client.call(method, path, f"{method} {path}", json=body, auth=False, namespace=None)
            or {}
        )

    call("DELETE", attempt)  # cancel a stale attempt, if any
    start = call("PUT", attempt, {})
    otp = str(start.get("otp", ""))
    nonce = str(start.get("nonce", ""))
    need = max(1, int(str(start.get("required") or 1)))
    if not otp or not nonce:
        raise VaultError(
            f"Vault at {node.label} did not start a generate-root attempt with an OTP; "
            "is `disable_unauthed_generate_root_endpoints = false` set in its listener?"
        )
    body: dict[str, object] = {}
    for share in key.shares(need):
        body = call("PUT", "sys/generate-root/update", {"key": share, "nonce": nonce})
        if body.get("complete"):
            break
    encoded = str(body.get("encoded_token") or body.get("encoded_root_token") or "")
    if not body.get("complete") or not encoded:
        call("DELETE", attempt)
        raise VaultError(
            f"generate-root on {node.label} did not complete with {need} shares of the key "
            f"from {key.source}"
        )
    return RootToken(decode_root_token(encoded, otp))


def revoke_self(node: Node, token: RootToken) -> None:
    node.client.with_token(token.token).call(
        "POST", "auth/token/revoke-self", "revoke the drill's token", namespace=None
    )


def generate_root_with_keys(node: Node, keys: UnsealKeys) -> RootToken:
    """A root token from key SHARES (the recovery keys of an auto-unseal source): the
    key they combine to, split again into what the node asks for (its cached recovery
    configuration can be the throwaway's own after a restore, as with unseal keys);
    a combination the node refuses is followed by smaller ones."""
    last: VaultError | None = None
    for secret, _used in candidate_keys(keys):
        try:
            return generate_root(node, SourceKey(secret, keys.source))
        except VaultError as exc:
            last = exc
    raise VaultError(
        f"generate-root on {node.label} refused every combination of the keys in "
        f"{keys.source} ({last}); use the SOURCE cluster's recovery keys"
    )
