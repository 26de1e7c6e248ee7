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

The token comes from the environment variable named by `token_env` (default
VAULT_TRANSIT_TOKEN, so the backed-up cluster's VAULT_TOKEN is never sent to another
server by accident) or from `token_file`. It needs `update` on `{mount}/encrypt/{key}`
(backup, rewrap --add) and `{mount}/decrypt/{key}` (verify, restore, rewrap).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import logging
import os
from pathlib import Path
from typing import Any

import hvac
import hvac.exceptions
import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from dr.config import RecipientConfig
from dr.crypto.recipients import DATA_KEY_SIZE, Stanza, WrapContext, register
from dr.errors import DRError, IntegrityError, KeyAccessError, UsageError

log = logging.getLogger(__name__)

DEFAULT_TOKEN_ENV = "VAULT_TRANSIT_TOKEN"  # noqa: S105 - a variable name, not a secret
DEFAULT_MOUNT = "transit"
_CONNECT_RETRIES = 3


def _session() -> requests.Session:
    # Connection errors happen before a request is sent, so retrying them is safe for
    # POST too (urllib3 does not check the method for connect retries); read errors
    # are not retried: the server may have acted.
    session = requests.Session()
    retry = Retry(
        total=_CONNECT_RETRIES, connect=_CONNECT_RETRIES, read=0, status=0, backoff_factor=0.5
    )
    adapter = HTTPAdapter(max_retries=retry)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


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
        token_env: str = DEFAULT_TOKEN_ENV,
        token_file: Path | None = None,
        namespace: str | None = None,
        ca_cert: Path | None = None,
        timeout: float = 30.0,
    ) -> None:
        self.name = name
        self.addr = addr.rstrip("/")
        self.key = key
        self.mount = mount.strip("/")
        self.key_id = f"{self.mount}/{key}"
        self.token_env = token_env
        self.token_file = token_file
        self.namespace = namespace
        self.verify: bool | str = str(ca_cert) if ca_cert else True
        self.timeout = timeout
        self._client: Any = None

    def describe(self) -> str:
        return f"vault-transit {self.key_id} at {self.addr}"

    def _token(self) -> str:
        if self.token_file is not None:
            try:
                token = self.token_file.read_text().strip()
            except OSError as exc:
                raise UsageError(
                    f"recipient '{self.name}': cannot read token_file {self.token_file}: "
                    f"{exc.strerror}"
                ) from None
        else:
            token = os.environ.get(self.token_env, "").strip()
        if not token:
            where = (
                f"token_file {self.token_file} is empty"
                if self.token_file
                else f"set the environment variable {self.token_env} (token_env)"
            )
            raise UsageError(f"no token for the transit Vault of recipient '{self.name}': {where}")
        return token

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = hvac.Client(
                url=self.addr,
                token=self._token(),
                timeout=self.timeout,
                verify=self.verify,
                namespace=self.namespace,
                session=_session(),
            )
        return self._client

    def _fail(self, operation: str, exc: Exception) -> DRError:
        where = f"transit {operation} with key {self.key_id} at {self.addr}"
        if isinstance(exc, hvac.exceptions.Forbidden | hvac.exceptions.Unauthorized):
            return KeyAccessError(
                f"{where} was denied; the token needs update on {self.mount}/{operation}/"
                f"{self.key} (docs/keys.md)"
            )
        if isinstance(exc, hvac.exceptions.InvalidPath):
            return KeyAccessError(
                f"{where} failed: no such mount or key; check the recipient's mount and key"
            )
        if isinstance(exc, hvac.exceptions.VaultDown):
            return KeyAccessError(f"{where} failed: that Vault is sealed; unseal it")
        if isinstance(exc, requests.RequestException):
            # Opening a backup has a way around a Vault that is gone: an offline identity.
            way_out = (
                ", or pass --identity FILE to open the backup with an offline identity"
                if operation == "decrypt"
                else ""
            )
            return KeyAccessError(
                f"{where} failed: cannot reach the transit Vault ({type(exc).__name__}); "
                f"check the network{way_out}"
            )
        detail = "; ".join(str(e) for e in getattr(exc, "errors", None) or [exc])[:200]
        return KeyAccessError(f"{where} failed: {detail}")

    def cluster_id(self) -> str:
        """The transit server's cluster id (unauthenticated sys/seal-status)."""
        try:
            resp = _session().get(
                f"{self.addr}/v1/sys/seal-status", timeout=min(self.timeout, 15), verify=self.verify
            )
            resp.raise_for_status()
            return str(resp.json().get("cluster_id", ""))
        except (requests.RequestException, ValueError) as exc:
            raise self._fail("seal-status", exc) from None

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
        try:
            resp = self.client.secrets.transit.encrypt_data(
                name=self.key, plaintext=plaintext, mount_point=self.mount
            )
            ciphertext = str(resp["data"]["ciphertext"])
        except (hvac.exceptions.VaultError, requests.RequestException) as exc:
            raise self._fail("encrypt", exc) from None
        except (KeyError, TypeError):
            raise KeyAccessError(f"transit encrypt at {self.addr} sent no ciphertext") from None
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
        try:
            resp = self.client.secrets.transit.decrypt_data(
                name=self.key, ciphertext=ciphertext, mount_point=self.mount
            )
            plaintext = base64.b64decode(resp["data"]["plaintext"], validate=True)
        except hvac.exceptions.InvalidRequest as exc:
            # Transit answers 400 when the ciphertext does not authenticate under its key.
            raise IntegrityError(
                f"transit at {self.addr} refused the wrapped key of backup {context.backup_id} "
                f"({'; '.join(str(e) for e in exc.errors or [])[:120]}): made by another key, "
                "or the manifest was altered"
            ) from None
        except (hvac.exceptions.VaultError, requests.RequestException) as exc:
            raise self._fail("decrypt", exc) from None
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


@register("vault-transit")
def _factory(config: RecipientConfig) -> VaultTransitRecipient:
    opts = config.options
    return VaultTransitRecipient(
        config.name,
        opts["addr"],
        opts["key"],
        mount=opts.get("mount") or DEFAULT_MOUNT,
        token_env=opts.get("token_env") or DEFAULT_TOKEN_ENV,
        token_file=opts.get("token_file"),
        namespace=opts.get("namespace"),
        ca_cert=opts.get("ca_cert"),
        timeout=float(opts.get("timeout") or 30.0),
    )
