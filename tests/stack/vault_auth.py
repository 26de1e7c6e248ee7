"""Configure a LocalBao's auth methods for the `vault.auth` tests (AppRole, JWT, policy).

Every helper takes an `Admin` (addr + a root/admin token, plain `requests`, no proxy
from the environment); `admin(x)` makes one from an hvac client, a LocalBao or a
PopulatedBao. The helpers only configure the server; they never touch `dr`.

Measured against the real OpenBao 2.7.2 (LocalBao, `dr.vault.localserver`), 2026-12:

AppRole (`auth/approle`):
  * POST auth/approle/login {"role_id", "secret_id"} -> 200, body["auth"] has
    client_token, accessor, policies (["default", <token_policies>...]),
    token_policies, metadata {"role_name": ...}, lease_duration (= token_ttl in s),
    renewable: true, token_type "service", orphan: true. The TOP-LEVEL "renewable" of
    the response is false and lease_id "" (the auth block is what counts).
  * wrong secret_id -> 400 {"errors": ["invalid role or secret ID"]}; a wrong role_id
    gives the very same 400 text. A login at a path with no mount
    (auth/nomount/login) -> 403 {"errors": ["permission denied"]}.
  * token_ttl=3s, token_max_ttl=60s: lookup-self shows ttl 2-3, renewable true,
    explicit_max_ttl 0. POST auth/token/renew-self {} (no increment) -> 200 with
    auth.lease_duration 3 again; {"increment": "30s"} -> lease_duration 30 (capped by
    token_max_ttl). POST auth/token/revoke-self -> 204; afterwards
    POST auth/token/lookup-accessor {"accessor"} (root) ->
    400 {"errors": ["1 error occurred:\\n\\t* invalid accessor\\n\\n"]}.
  * Response wrapping: POST auth/approle/role/NAME/secret-id with header
    X-Vault-Wrap-TTL: 120s -> 200, data null, wrap_info {token, accessor, ttl: 120,
    creation_path: "auth/approle/role/NAME/secret-id", wrapped_accessor}.
    Unwrap: POST sys/wrapping/unwrap with the WRAPPING token as X-Vault-Token and an
    empty body -> 200, data {"secret_id", "secret_id_accessor", ...} (the same
    shape as an unwrapped secret-id response). A second unwrap of the same token
    (header form or {"token": ...} body form) -> 400
    {"errors": ["wrapping token is not valid or does not exist"]}.
    The used wrapping token's accessor can still be listed by auth/token/accessors for
    a moment after the unwrap: tests that diff accessors must not count wrapping tokens.

JWT (`auth/jwt`, JwtIssuer: RSA-2048, RS256, a `kid` header):
  * auth/jwt/config {"jwt_validation_pubkeys": [PEM], "bound_issuer"} and a role
    {"role_type": "jwt", "bound_audiences", "user_claim": "sub", "token_policies",
    "token_ttl": "5m"} -> POST auth/jwt/login {"role", "jwt"} -> 200, auth.policies
    ["default", "dr-backup"], lease_duration 300, renewable true, metadata
    {"role": NAME}.
  * refusals, all 400: wrong aud -> "error validating token: invalid audience (aud)
    claim: audience claim does not match any expected audience"; expired -> "error
    validating token: invalid expiration time (exp) claim: token is expired"; another
    key -> "error validating token: error verifying token signature: no known key
    successfully validated the token signature"; wrong iss -> "error validating token:
    invalid issuer (iss) claim".

Policy: docs_backup_policy() (the docs/vault-policy.md hcl block) is enough for a real
`dr backup` of a 300-secret kv-v1/kv-v2 server with an AppRole token holding only it.

Timing (2-core box): a 300-400 secret backup takes 1.3 s direct and 15-17 s through
tests/integration/faultproxy.py's "slow" mode (2,000 secrets: 1.9 s / 23 s); with a
3 s token_ttl and no renewal the token is dead before the run ends.

Audit: OpenBao 2.7 does not enable audit devices through the API by default; a
declarative `audit "file" "NAME" { options { file_path, hmac_accessor = "false" } }`
block in the server config (LocalBao(extra_listener_config=...)) works, and
`audit_config()` returns such a block. With hmac_accessor=false the accessor of every
login response is in the log in plain text (client_token stays HMAC'ed).
"""

from __future__ import annotations

import json
import os
import re
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

DOCS_POLICY = Path(__file__).resolve().parents[2] / "docs" / "vault-policy.md"


class VaultCallError(RuntimeError):
    def __init__(self, method: str, path: str, status: int, body: Any) -> None:
        super().__init__(f"{method} {path}: {status} {body}")
        self.status = status
        self.body = body


@dataclass
class Admin:
    """addr + token, answering with the decoded JSON (or None for 204)."""

    addr: str
    token: str
    session: requests.Session = field(default_factory=requests.Session, repr=False)

    def __post_init__(self) -> None:
        self.addr = self.addr.rstrip("/")
        self.session.trust_env = False

    def call(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None = None,
        *,
        token: str | None = None,
        headers: dict[str, str] | None = None,
        ok: tuple[int, ...] = (200, 204),
    ) -> Any:
        """`token=""` sends no token (a login); `token=None` sends the admin token."""
        hdrs = dict(headers or {})
        tok = self.token if token is None else token
        if tok:
            hdrs["X-Vault-Token"] = tok
        resp = self.session.request(
            method, f"{self.addr}/v1/{path}", json=body, headers=hdrs, timeout=30
        )
        data = resp.json() if resp.content else None
        if resp.status_code not in ok:
            raise VaultCallError(method, path, resp.status_code, data)
        return data


def admin(target: Any, token: str | None = None) -> Admin:
    """An Admin for an hvac client, a LocalBao, a PopulatedBao or an addr string."""
    if isinstance(target, Admin):
        return target
    if isinstance(target, str):
        assert token, "an addr needs a token"
        return Admin(target, token)
    if hasattr(target, "adapter") and hasattr(target, "url"):  # hvac.Client
        return Admin(target.url, token or target.token)
    return Admin(target.addr, token or target.root_token)  # LocalBao / PopulatedBao


def write_private(path: Path, text: str) -> Path:
    """Write a credential file with mode 0600 (created so, never world-readable)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists():
        path.unlink()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text + "\n")
    return path


def audit_config(path: Path, name: str = "testlog") -> str:
    """HCL for LocalBao(extra_listener_config=...): a file audit device with plain accessors."""
    return f"""
audit "file" "{name}" {{
  options {{
    file_path     = "{path}"
    hmac_accessor = "false"
  }}
}}
"""


def audit_entries(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def login_accessors(path: Path, mount: str) -> list[str]:
    """Accessors of tokens issued by successful logins at auth/MOUNT/login (audit log)."""
    out = []
    for entry in audit_entries(path):
        if entry.get("type") != "response":
            continue
        if entry.get("request", {}).get("path") != f"auth/{mount}/login":
            continue
        auth = (entry.get("response") or {}).get("auth") or {}
        if auth.get("accessor"):
            out.append(auth["accessor"])
    return out


def audited_paths(path: Path) -> list[str]:
    """Every request path in the audit log, in order (requests, not responses)."""
    return [
        e.get("request", {}).get("path", "")
        for e in audit_entries(path)
        if e.get("type") == "request"
    ]


def token_accessors(adm: Admin) -> set[str]:
    data = adm.call("LIST", "auth/token/accessors")
    return set(data["data"]["keys"])


def accessor_alive(adm: Admin, accessor: str) -> bool:
    try:
        adm.call("POST", "auth/token/lookup-accessor", {"accessor": accessor})
    except VaultCallError as exc:
        if exc.status == 400 and "invalid accessor" in json.dumps(exc.body):
            return False
        raise
    return True


def enable_auth(adm: Admin, method: str, mount: str | None = None) -> str:
    """Enable `method` at auth/`mount` (default: the method's name) unless it is there."""
    mount = (mount or method).strip("/")
    existing = adm.call("GET", "sys/auth")["data"]
    if f"{mount}/" not in existing:
        adm.call("POST", f"sys/auth/{mount}", {"type": method})
    return mount


# --- policies ------------------------------------------------------------------------


def docs_backup_policy(kv1_mounts: tuple[str, ...] = ("legacy",)) -> str:
    """The backup policy HCL of docs/vault-policy.md, its kv-v1 stanza per `kv1_mounts`."""
    doc = DOCS_POLICY.read_text()
    match = re.search(r"```hcl\n(.*?)```", doc, re.S)
    assert match, f"{DOCS_POLICY} has no hcl block"
    hcl = match.group(1)
    kv1 = "".join(
        f'path "{m}/*" {{ capabilities = ["list"] }}\npath "{m}" {{ capabilities = ["list"] }}\n'
        for m in kv1_mounts
    )
    hcl = re.sub(r'path "legacy/\*".*\n', "", hcl)
    hcl = re.sub(r'path "legacy".*\n', "", hcl)
    return hcl + kv1


def write_backup_policy(
    adm: Admin, name: str = "dr-backup", kv1_mounts: tuple[str, ...] = ("legacy",)
) -> str:
    adm.call("POST", f"sys/policies/acl/{name}", {"policy": docs_backup_policy(kv1_mounts)})
    return name


# --- AppRole -------------------------------------------------------------------------


@dataclass
class AppRole:
    mount: str
    role: str
    role_id: str
    secret_id: str = field(repr=False)


def setup_approle(
    adm: Admin,
    *,
    mount: str = "approle",
    role: str = "dr-backup",
    policies: tuple[str, ...] = ("dr-backup",),
    token_ttl: str | None = None,
    token_max_ttl: str | None = None,
    extra: dict[str, Any] | None = None,
) -> AppRole:
    """Enable AppRole at auth/`mount`, (re)write `role`, return its role_id + a secret_id."""
    enable_auth(adm, "approle", mount)
    body: dict[str, Any] = {"token_policies": list(policies), **(extra or {})}
    if token_ttl is not None:
        body["token_ttl"] = token_ttl
    if token_max_ttl is not None:
        body["token_max_ttl"] = token_max_ttl
    adm.call("POST", f"auth/{mount}/role/{role}", body)
    role_id = adm.call("GET", f"auth/{mount}/role/{role}/role-id")["data"]["role_id"]
    return AppRole(mount, role, role_id, new_secret_id(adm, mount, role))


def new_secret_id(adm: Admin, mount: str, role: str) -> str:
    return str(adm.call("POST", f"auth/{mount}/role/{role}/secret-id", {})["data"]["secret_id"])


def wrapped_secret_id(adm: Admin, mount: str, role: str, ttl: str = "300s") -> str:
    """A response-wrapping token whose unwrap (sys/wrapping/unwrap) yields a secret_id."""
    resp = adm.call(
        "POST", f"auth/{mount}/role/{role}/secret-id", {}, headers={"X-Vault-Wrap-TTL": ttl}
    )
    return str(resp["wrap_info"]["token"])


def approle_login(adm: Admin, mount: str, role_id: str, secret_id: str) -> dict[str, Any]:
    """The login's `auth` block (client_token, accessor, policies, lease_duration...)."""
    body = {"role_id": role_id, "secret_id": secret_id}
    return dict(adm.call("POST", f"auth/{mount}/login", body, token="")["auth"])


def unwrap(adm: Admin, wrapping_token: str) -> dict[str, Any]:
    return dict(adm.call("POST", "sys/wrapping/unwrap", {}, token=wrapping_token)["data"])


# --- JWT -----------------------------------------------------------------------------


@dataclass
class JwtIssuer:
    """An RSA key pair and the claims a JWT role trusts (issuer, audience)."""

    issuer: str = "https://issuer.dr-test.invalid"
    audience: str = "vault-dr"
    kid: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    _key: Any = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self._key is None:
            from cryptography.hazmat.primitives.asymmetric import rsa

            self._key = rsa.generate_private_key(public_exponent=65537, key_size=2048)

    @property
    def public_pem(self) -> str:
        from cryptography.hazmat.primitives import serialization

        pem: bytes = self._key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return pem.decode()

    def sign(
        self,
        sub: str = "dr-backup-job",
        *,
        ttl: float = 600,
        audience: str | None = None,
        issuer: str | None = None,
        **claims: Any,
    ) -> str:
        import jwt

        now = int(time.time())
        payload = {
            "iss": issuer or self.issuer,
            "aud": audience or self.audience,
            "sub": sub,
            "iat": now,
            "nbf": now - 5,
            "exp": now + int(ttl),
            **claims,
        }
        return jwt.encode(payload, self._key, algorithm="RS256", headers={"kid": self.kid})


def setup_jwt(
    adm: Admin,
    issuer: JwtIssuer,
    *,
    mount: str = "jwt",
    role: str = "dr-backup",
    policies: tuple[str, ...] = ("dr-backup",),
    token_ttl: str = "5m",
    bound_subject: str | None = None,
) -> str:
    """Enable JWT auth at auth/`mount` trusting `issuer`'s public key; write `role`."""
    enable_auth(adm, "jwt", mount)
    adm.call(
        "POST",
        f"auth/{mount}/config",
        {"jwt_validation_pubkeys": [issuer.public_pem], "bound_issuer": issuer.issuer},
    )
    body: dict[str, Any] = {
        "role_type": "jwt",
        "bound_audiences": [issuer.audience],
        "user_claim": "sub",
        "token_policies": list(policies),
        "token_ttl": token_ttl,
    }
    if bound_subject is not None:
        body["bound_subject"] = bound_subject
    adm.call("POST", f"auth/{mount}/role/{role}", body)
    return role


def jwt_login(adm: Admin, mount: str, role: str, token: str) -> dict[str, Any]:
    return dict(
        adm.call("POST", f"auth/{mount}/login", {"role": role, "jwt": token}, token="")["auth"]
    )


def lookup_self(adm: Admin, token: str) -> dict[str, Any]:
    return dict(adm.call("GET", "auth/token/lookup-self", token=token)["data"])
