"""`vault-transit` recipient: the data key wrapped by a transit key on a SEPARATE Vault.

Wrap: `POST {mount}/encrypt/{key}` of `data_key || SHA-256(WrapContext.as_bytes())`;
unwrap: `POST {mount}/decrypt/{key}` and check that the second half is the hash of
THIS backup's context. Transit's own AEAD authenticates the plaintext, so nobody
without decrypt rights on the key can make a ciphertext whose plaintext names another
backup: a stanza copied into another backup's manifest decrypts, but is refused. (Why
not transit's `context` or `associated_data`: `context` exists only for derived keys,
and a server too old for `associated_data` ignores it without an error, which would
drop the binding silently. The hash in the plaintext works on every Vault and OpenBao.)

A transit key kept inside the cluster it backs up is lost with that cluster, so the
backup refuses it: `check_not_inside` compares the transit server's cluster id
(sys/seal-status) with the backed-up cluster's.

Logging in: the recipient's `auth` block is the same as `vault.auth` (token, AppRole,
Kubernetes, JWT; dr/vault/auth.py); without it the token comes from the environment
variable named by `token_env` (default VAULT_TRANSIT_TOKEN, so the backed-up cluster's
VAULT_TOKEN is never sent to another server by accident) or from `token_file`. A login
is made on first use and revoked at exit. The token needs `update` on
`{mount}/encrypt/{key}` (backup, rewrap --add) and `{mount}/decrypt/{key}` (verify,
restore, rewrap).
"""

from __future__ import annotations

import atexit
import base64
import binascii
import hashlib
import hmac
import logging
from pathlib import Path
from typing import Any

from dr.crypto.settings import RecipientConfig
from dr.crypto.wrapping import DATA_KEY_SIZE, Stanza, WrapContext, register
from dr.errors import DRError, IntegrityError, KeyAccessError, UsageError, VaultError
from dr.vault.auth import AuthSettings, Credential, Login
from dr.vault.connection import TLSSettings, VaultClient, VaultUnreachable

log = logging.getLogger(__name__)

DEFAULT_TOKEN_ENV = "VAULT_TRANSIT_TOKEN"  # noqa: S105 - a variable name, not a secret
DEFAULT_MOUNT = "transit"
_CONNECT_RETRIES = 3


class VaultTransitRecipient:
    type_name = "vault-transit"
    offline = False

    def __init__(
        self,
        name: str,
        addr: str,
        key: str,
        *,
        mount: str = DEFAULT_MOUNT,
        auth: AuthSettings | None = None,
        token_env: str = DEFAULT_TOKEN_ENV,
        token_file: Path | None = None,
        namespace: str | None = None,
        ca_cert: Path | None = None,
        tls_skip_verify: bool = False,
        timeout: float = 30.0,
    ) -> None:
        self.name = name
        self.addr = addr.rstrip("/")
        self.key = key
        self.mount = mount.strip("/")
        self.key_id = f"{self.mount}/{key}"
        self.auth = auth or AuthSettings(
            token=Credential(env=token_env, file=token_file, where=f"recipient '{name}' token")
        )
        self.namespace = namespace
        self.tls = TLSSettings(ca_cert=ca_cert, skip_verify=tls_skip_verify)
        self.timeout = timeout
        self._client: VaultClient | None = None
        self._login: Login | None = None

    def describe(self) -> str:
        return f"vault-transit {self.key_id} at {self.addr}"

    def _plain_client(self) -> VaultClient:
        return VaultClient.at(
            self.addr,
            tls=self.tls,
            timeout=self.timeout,
            retries=_CONNECT_RETRIES,
            namespace=self.namespace,
            label=self.addr,
        )

    @property
    def client(self) -> VaultClient:
        """Logged in on first use; the login is revoked at exit (or by close())."""
        if self._client is None:
            client = self._plain_client()
            login = Login(self.auth, client)
            try:
                login.start()
            except UsageError as exc:
                raise UsageError(
                    f"no credentials for the transit Vault of recipient '{self.name}': {exc}"
                ) from None
            except VaultError as exc:
                raise self._fail("login", exc) from None
            client.set_token(login.token)
            self._client, self._login = client, login
            atexit.register(self.close)
        return self._client

    def close(self) -> None:
        login, self._login = self._login, None
        if login is not None:
            login.close()
        if self._client is not None:
            self._client.close()
            self._client = None

    def _fail(self, operation: str, exc: Exception, status: int = 0) -> DRError:
        where = f"transit {operation} with key {self.key_id} at {self.addr}"
        if status in (401, 403):
            return KeyAccessError(
                f"{where} was denied; the token needs update on {self.mount}/{operation}/"
                f"{self.key} (docs/keys.md)"
            )
        if status == 404:
            return KeyAccessError(
                f"{where} failed: no such mount or key; check the recipient's mount and key"
            )
        if status == 503:
            return KeyAccessError(f"{where} failed: that Vault is sealed; unseal it")
        if isinstance(exc, VaultUnreachable):
            # Opening a backup has a way around a Vault that is gone: an offline identity.
            way_out = (
                ", or pass --identity FILE to open the backup with an offline identity"
                if operation == "decrypt"
                else ""
            )
            return KeyAccessError(
                f"{where} failed: cannot reach the transit Vault; check the network{way_out}"
            )
        return KeyAccessError(f"{where} failed: {str(exc)[:200]}")

    def _transit(self, operation: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        try:
            reply = self.client.send("POST", f"{self.mount}/{operation}/{self.key}", json=body)
        except VaultUnreachable as exc:
            raise self._fail(operation, exc) from None
        return reply.status, reply.data() if reply.ok or reply.status == 400 else {
            "errors": reply.errors
        }

    def cluster_id(self) -> str:
        """The transit server's cluster id (unauthenticated sys/seal-status)."""
        client = self._plain_client()
        try:
            return str(client.unauthenticated("sys/seal-status").get("cluster_id", ""))
        except VaultError as exc:
            raise self._fail("seal-status", exc) from None
        finally:
            client.close()

    def check_not_inside(self, cluster_id: str) -> None:
        """Refuse a transit key that lives in the cluster being backed up."""
        if not cluster_id:
            log.warning("the backed-up cluster has no cluster id; cannot check %s", self.describe())
            return
        if self.cluster_id() == cluster_id:
            raise UsageError(
                f"recipient '{self.name}' ({self.describe()}) is inside the cluster being "
                f"backed up (cluster id {cluster_id}): a key kept in the thing it protects is "
                "lost with it; use a transit key on a separate Vault or OpenBao"
            )

    def generate(self, context: WrapContext) -> None:
        return None

    @staticmethod
    def _binding(context: WrapContext) -> bytes:
        return hashlib.sha256(context.as_bytes()).digest()

    def wrap(self, data_key: bytes, context: WrapContext) -> Stanza:
        plaintext = base64.b64encode(data_key + self._binding(context)).decode()
        status, doc = self._transit("encrypt", {"plaintext": plaintext})
        if status != 200:
            raise self._fail("encrypt", KeyAccessError(str(doc.get("errors"))), status)
        ciphertext = doc.get("data", {}).get("ciphertext") if isinstance(doc, dict) else None
        if not isinstance(ciphertext, str):
            raise KeyAccessError(f"transit encrypt at {self.addr} sent no ciphertext")
        return Stanza(
            self.type_name, self.name, self.key_id, {"ciphertext": ciphertext, "addr": self.addr}
        )

    def matches(self, stanza: Stanza) -> bool:
        return stanza.type == self.type_name and stanza.key_id == self.key_id

    def unwrap(self, stanza: Stanza, context: WrapContext) -> bytes:
        ciphertext = stanza.body.get("ciphertext", "")
        if not ciphertext.startswith("vault:"):
            raise IntegrityError(
                f"the vault-transit stanza in backup {context.backup_id} is malformed"
            )
        status, doc = self._transit("decrypt", {"ciphertext": ciphertext})
        if status == 400:
            # Transit answers 400 when the ciphertext does not authenticate under its key.
            raise IntegrityError(
                f"transit at {self.addr} refused the wrapped key of backup {context.backup_id} "
                f"({errors_of(doc)[:120]}): made by another key, or the manifest was altered"
            )
        if status != 200:
            raise self._fail("decrypt", KeyAccessError(str(doc.get("errors"))), status)
        try:
            plaintext = base64.b64decode(doc["data"]["plaintext"], validate=True)
        except (KeyError, TypeError, binascii.Error):
            raise KeyAccessError(f"transit decrypt at {self.addr} sent no plaintext") from None
        key, binding = plaintext[:DATA_KEY_SIZE], plaintext[DATA_KEY_SIZE:]
        if len(plaintext) != 2 * DATA_KEY_SIZE or not hmac.compare_digest(
            binding, self._binding(context)
        ):
            raise IntegrityError(
                f"the vault-transit stanza in backup {context.backup_id} was made for another "
                "backup (copied into this manifest); refusing it"
            )
        return key


def errors_of(doc: dict[str, Any]) -> str:
    errors = doc.get("errors")
    return "; ".join(str(e) for e in errors) if isinstance(errors, list) else str(errors or "")


@register("vault-transit")
def _factory(config: RecipientConfig) -> VaultTransitRecipient:
    opts = config.options
    return VaultTransitRecipient(
        config.name,
        opts["addr"],
        opts["key"],
        mount=opts.get("mount") or DEFAULT_MOUNT,
        auth=opts.get("auth"),
        token_env=opts.get("token_env") or DEFAULT_TOKEN_ENV,
        token_file=opts.get("token_file"),
        namespace=opts.get("namespace"),
        ca_cert=opts.get("ca_cert"),
        tls_skip_verify=bool(opts.get("tls_skip_verify")),
        timeout=float(opts.get("timeout") or 30.0),
    )
