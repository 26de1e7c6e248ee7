"""Logging in to Vault: a fixed token, or AppRole, Kubernetes or JWT/OIDC, kept renewed.

Operators do not run backups with a root token in an environment variable: the
established snapshot agents log in with AppRole, Kubernetes or JWT and renew their
tokens, and CI drills log in with the CI system's OIDC token. `Login` does that:

- `token`: the token is read from a file (`token_file`, e.g. kept fresh by Vault
  Agent) or an environment variable (`token_env`, default VAULT_TOKEN). It is not
  ours: never renewed or revoked here.
- `approle`: POST auth/<mount>/login {role_id, secret_id}; with `secret_id_wrapped`
  the secret_id source holds a response-wrapping token, unwrapped once
  (sys/wrapping/unwrap), so the real secret_id never exists at rest.
- `kubernetes`: {role, jwt: the service-account token file}.
- `jwt`: {role, jwt: from a file or environment variable} (e.g. the GitHub Actions
  OIDC token a workflow wrote to a file).

A login token is renewed in a background thread at two thirds of its TTL (a 1 GB
snapshot or a 100k-secret drill outlives a short TTL); when Vault will not extend it
(max TTL reached) the login is done again with the same credentials. It is revoked
when the run ends. Every credential comes from a file or the environment, never argv
(pgBackRest's rule), and no credential is logged.
"""

from __future__ import annotations

import contextlib
import logging
import os
import stat
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dr.errors import UsageError, VaultError
from dr.vault.connection import VaultClient

log = logging.getLogger(__name__)

DEFAULT_SA_TOKEN = Path("/var/run/secrets/kubernetes.io/serviceaccount/token")
METHODS = ("token", "approle", "kubernetes", "jwt")
_RENEW_AT = 2 / 3  # of the TTL
_MIN_SLEEP = 0.5  # seconds between renewals, whatever the TTL
_RETRY_SLEEP = 2.0  # after a failed renewal or re-login


@dataclass(frozen=True)
class Credential:
    """Where one secret comes from: a file (wins) or an environment variable."""

    env: str | None = None
    file: Path | None = None
    where: str = ""  # the config key, for messages (e.g. "vault.auth.secret_id")
    value: str | None = field(default=None, repr=False)  # handed over in memory (dr demo)
    # Refuse a file others can read (a Vault token). Not for files that are world-
    # readable by design elsewhere (a Kubernetes projected service-account token).
    private: bool = False

    def _key(self, suffix: str) -> str:
        """`vault.auth.secret_id_file`, or `--token-file` for a command-line option."""
        return f"{self.where}-{suffix}" if self.where.startswith("--") else f"{self.where}_{suffix}"

    def describe(self) -> str:
        if self.value is not None:
            return f"{self.where} (given)"
        if self.file is not None:
            return f"{self._key('file')} {self.file}"
        return f"{self._key('env')} {self.env}"

    def read(self) -> str:
        if self.value is not None:
            return self.value
        if self.file is not None:
            try:
                if self.private and self.file.stat().st_mode & (stat.S_IROTH | stat.S_IWOTH):
                    raise UsageError(
                        f"{self.describe()} is readable by others; run: chmod o-rwx {self.file}"
                    )
                value = self.file.read_text().strip()
            except OSError as exc:
                raise UsageError(f"cannot read {self.describe()}: {exc.strerror}") from None
            if not value:
                raise UsageError(f"{self.describe()} is empty")
            return value
        value = os.environ.get(self.env or "", "").strip()
        if not value:
            raise UsageError(
                f"no {self.where.lstrip('-')}: the environment variable {self.env} is not "
                f"set ({self._key('env')}); set it or use {self._key('file')}"
            )
        return value


@dataclass(frozen=True)
class AuthSettings:
    """`vault.auth` (docs/config.md). `mount` defaults to the method's name."""

    method: str = "token"
    mount: str = ""
    namespace: str | None = None  # None: the client's namespace
    token: Credential = field(
        default_factory=lambda: Credential(env="VAULT_TOKEN", where="vault.token")
    )
    role_id: Credential | None = None
    secret_id: Credential | None = None
    secret_id_wrapped: bool = False
    role: str | None = None
    jwt: Credential | None = None
    where: str = "vault.auth"

    @property
    def mount_path(self) -> str:
        return (self.mount or self.method).strip("/")

    def describe(self) -> str:
        if self.method == "token":
            return f"token from {self.token.describe()}"
        return f"{self.method} login at auth/{self.mount_path}"


def _approle_body(settings: AuthSettings, client: VaultClient) -> dict[str, Any]:
    assert settings.role_id is not None and settings.secret_id is not None
    secret_id = settings.secret_id.read()
    if settings.secret_id_wrapped:
        secret_id = _unwrap_secret_id(settings, client, secret_id)
    return {"role_id": settings.role_id.read(), "secret_id": secret_id}


def _unwrap_secret_id(settings: AuthSettings, client: VaultClient, wrapping: str) -> str:
    reply = client.send(
        "POST", "sys/wrapping/unwrap", headers={"X-Vault-Token": wrapping}, auth=False
    )
    if not reply.ok:
        source = settings.secret_id.describe() if settings.secret_id else "?"
        raise VaultError(
            f"{settings.where}: approle login at auth/{settings.mount_path} on Vault at "
            f"{client.label}: the wrapped secret_id from {source} could not be unwrapped "
            f"({reply.status}: {reply.errors}); a wrapping token works once and expires: "
            "issue a new one"
        )
    secret_id = reply.data().get("data", {}).get("secret_id")
    if not isinstance(secret_id, str) or not secret_id:
        raise VaultError(f"{settings.where}: the unwrapped answer holds no secret_id")
    return secret_id


def _jwt_body(settings: AuthSettings, client: VaultClient) -> dict[str, Any]:
    assert settings.jwt is not None
    return {"role": settings.role, "jwt": settings.jwt.read()}


LOGIN_BODIES: dict[str, Callable[[AuthSettings, VaultClient], dict[str, Any]]] = {
    "approle": _approle_body,
    "kubernetes": _jwt_body,  # the service-account token is a JWT too
    "jwt": _jwt_body,
}


@dataclass
class _Lease:
    token: str
    accessor: str
    ttl: float
    renewable: bool
    obtained: float  # monotonic


class Login:
    """The token a run uses: `start()` logs in (or reads the fixed token), `token()` is
    the current one (pass the method itself to VaultClient), `close()` stops renewing
    and revokes a token we logged in for."""

    def __init__(self, settings: AuthSettings, client: VaultClient) -> None:
        self.settings = settings
        self.client = client.with_namespace(
            settings.namespace if settings.namespace is not None else client.namespace
        )
        self._lease: _Lease | None = None
        self._fixed: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._ttl0 = 0.0  # the TTL a login gives: what each renewal asks for
        self.renewals = 0

    # --- public -----------------------------------------------------------------------
    def token(self) -> str | None:
        if self._fixed is not None:
            return self._fixed
        return self._lease.token if self._lease is not None else None

    @property
    def logged_in(self) -> bool:
        return self._lease is not None

    def start(self) -> str:
        if self.settings.method == "token":
            self._fixed = self.settings.token.read()
            return self._fixed
        self._lease = self._login()
        log.info(
            "logged in to Vault at %s with %s (ttl %ss)",
            self.client.label,
            self.settings.describe(),
            _secs(self._lease.ttl),
        )
        if self._lease.ttl > 0:
            self._thread = threading.Thread(
                target=self._keep_alive, name="dr-vault-token", daemon=True
            )
            self._thread.start()
        return self._lease.token

    def abandon(self) -> None:
        """Stop renewing and forget the token without revoking it (it no longer exists:
        a restore replaced the token store it lived in)."""
        self._stop_renewing()
        self._lease = None

    def _stop_renewing(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None

    def close(self) -> None:
        self._stop_renewing()
        lease, self._lease = self._lease, None
        if lease is None:
            return
        try:
            reply = self.client.with_token(lease.token).send("POST", "auth/token/revoke-self")
            if reply.ok:
                log.debug("revoked the login token of %s", self.settings.describe())
            else:
                log.warning(
                    "could not revoke the login token (%s: %s); it expires with its TTL",
                    reply.status,
                    reply.errors,
                )
        except VaultError as exc:
            log.warning("could not revoke the login token (%s); it expires with its TTL", exc)

    def __enter__(self) -> Login:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- login and renewal ---------------------------------------------------------------
    def _login(self) -> _Lease:
        s = self.settings
        build = LOGIN_BODIES.get(s.method)
        if build is None:  # pragma: no cover - the config refuses unknown methods
            raise UsageError(f"{s.where}.method: unknown method {s.method!r}")
        body = build(s, self.client)
        reply = self.client.send("POST", f"auth/{s.mount_path}/login", json=body, auth=False)
        del body
        if not reply.ok:
            raise VaultError(
                f"{s.where}: {s.method} login at auth/{s.mount_path} on Vault at "
                f"{self.client.label} failed ({reply.status}: {reply.errors}); " + _login_hint(s)
            )
        auth = reply.data().get("auth")
        token = auth.get("client_token") if isinstance(auth, dict) else None
        if not isinstance(auth, dict) or not isinstance(token, str) or not token:
            raise VaultError(
                f"{s.where}: {s.method} login at auth/{s.mount_path} answered without a token"
            )
        self._ttl0 = float(auth.get("lease_duration") or 0)
        return _Lease(
            token=token,
            accessor=str(auth.get("accessor", "")),
            ttl=float(auth.get("lease_duration") or 0),
            renewable=bool(auth.get("renewable")),
            obtained=time.monotonic(),
        )

    def _keep_alive(self) -> None:
        while True:
            lease = self._lease
            if lease is None:
                return
            wait = max(_MIN_SLEEP, lease.obtained + lease.ttl * _RENEW_AT - time.monotonic())
            if self._stop.wait(wait):
                return
            try:
                self._lease = self._renew_or_login(lease)
            except Exception as exc:  # the run goes on until the token really expires
                log.warning("could not renew the Vault token (%s); retrying", exc)
                if self._stop.wait(_RETRY_SLEEP):
                    return

    def _renew_or_login(self, lease: _Lease) -> _Lease:
        what = self.settings.describe()
        if lease.renewable:
            reply = self.client.with_token(lease.token).send(
                "POST", "auth/token/renew-self", json={"increment": f"{int(self._ttl0)}s"}
            )
            auth = reply.data().get("auth") if reply.ok else None
            if isinstance(auth, dict):
                ttl = float(auth.get("lease_duration") or 0)
                # Vault caps the TTL at the token's max TTL: when it no longer grows back,
                # the next step is a fresh login (same credentials) before it runs out.
                if ttl > max(1.0, self._ttl0 * 0.5):
                    self.renewals += 1
                    log.debug("vault token of %s renewed (ttl %ss)", what, _secs(ttl))
                    return _Lease(lease.token, lease.accessor, ttl, True, time.monotonic())
        fresh = self._login()
        log.debug("vault token of %s renewed by a new login (ttl %ss)", what, _secs(fresh.ttl))
        self._revoke_quietly(lease.token)
        return fresh

    def _revoke_quietly(self, token: str) -> None:
        with contextlib.suppress(VaultError):
            self.client.with_token(token).send("POST", "auth/token/revoke-self").close()


def _login_hint(s: AuthSettings) -> str:
    if s.method == "approle":
        sources = [c.describe() for c in (s.role_id, s.secret_id) if c is not None]
        return "check the role_id and secret_id (" + ", ".join(sources) + ")"
    if s.method == "kubernetes":
        return f"check role '{s.role}' and that the service-account token is bound to it"
    jwt = s.jwt.describe() if s.jwt else "?"
    return f"check role '{s.role}' and the JWT ({jwt}): issuer, audience, expiry"


def _secs(value: float) -> str:
    return f"{value:g}"
