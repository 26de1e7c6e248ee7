"""`aws-kms` recipient: the data key made and wrapped by AWS KMS (or a KMS-compatible API).

GenerateDataKey makes the data key when KMS is the first recipient; Encrypt wraps a key
made elsewhere. Both carry an EncryptionContext naming the cluster and the backup id:
KMS refuses to decrypt with any other context, so a wrapped key cannot be moved to
another backup, and CloudTrail shows which backup was decrypted.

Retries are botocore's (standard mode), not hand-written.
"""

from __future__ import annotations

from typing import Any

from botocore.config import Config as BotoConfig
from botocore.exceptions import BotoCoreError, ClientError, EndpointConnectionError

from dr.awssession import new_session
from dr.crypto.settings import RecipientConfig
from dr.crypto.wrapping import Stanza, WrapContext, b64d, b64e, register
from dr.errors import IntegrityError, KeyAccessError

_RETRIES = {"mode": "standard", "max_attempts": 4}


class AwsKmsRecipient:
    type_name = "aws-kms"
    offline = False

    def __init__(
        self,
        name: str,
        key_id: str,
        *,
        region: str | None = None,
        endpoint_url: str | None = None,
        connect_timeout: float = 5,
        read_timeout: float = 30,
        max_attempts: int | None = None,
    ) -> None:
        self.name = name
        self.key_id = key_id
        self.region = region
        self.endpoint_url = endpoint_url
        retries = dict(_RETRIES)
        if max_attempts is not None:
            retries["max_attempts"] = max_attempts
        self._boto_config = BotoConfig(
            retries=retries,
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
        )
        self._client: Any = None
        self._arn: str | None = None

    def describe(self) -> str:
        where = f" at {self.endpoint_url}" if self.endpoint_url else ""
        return f"aws-kms {self.key_id}{where}"

    @property
    def client(self) -> Any:
        if self._client is None:
            # Not boto3's default session: it is not safe to share across threads.
            self._client = new_session(self.region).client(
                "kms", endpoint_url=self.endpoint_url, config=self._boto_config
            )
        return self._client

    def _fail(self, operation: str, exc: Exception) -> KeyAccessError:
        if isinstance(exc, ClientError):
            code = exc.response.get("Error", {}).get("Code", "")
            msg = exc.response.get("Error", {}).get("Message", "")
            if code == "NotFoundException":
                return KeyAccessError(
                    f"KMS {operation}: key {self.key_id} not found"
                    f"{' in ' + self.region if self.region else ''} ({msg}); check the "
                    "recipient's key_id and region"
                )
            if code in ("AccessDeniedException", "UnrecognizedClientException"):
                return KeyAccessError(
                    f"KMS {operation} on {self.key_id} was denied ({code}: {msg}); "
                    "grant kms:GenerateDataKey/Encrypt/Decrypt (see terraform/)"
                )
            if code in ("DisabledException", "KMSInvalidStateException"):
                return KeyAccessError(
                    f"KMS key {self.key_id} cannot be used ({code}: {msg}); "
                    "use another recipient or re-enable the key"
                )
            return KeyAccessError(f"KMS {operation} on {self.key_id} failed: {code}: {msg}")
        if isinstance(exc, EndpointConnectionError):
            # Opening a backup has a way around a KMS that is gone: an offline identity.
            way_out = (
                ", or pass --identity FILE to open the backup with an offline identity"
                if operation == "Decrypt"
                else ""
            )
            return KeyAccessError(
                f"KMS {operation} with key {self.key_id} failed: cannot reach the KMS endpoint "
                f"{exc.kwargs.get('endpoint_url', self.endpoint_url or '')}; check the "
                f"network{way_out}"
            )
        return KeyAccessError(f"KMS {operation} on {self.key_id} failed: {exc}")

    def generate(self, context: WrapContext) -> tuple[bytes, Stanza]:
        try:
            resp = self.client.generate_data_key(
                KeyId=self.key_id, KeySpec="AES_256", EncryptionContext=context.as_mapping()
            )
        except (ClientError, BotoCoreError) as exc:
            raise self._fail("GenerateDataKey", exc) from None
        return bytes(resp["Plaintext"]), self._stanza(resp)

    def wrap(self, data_key: bytes, context: WrapContext) -> Stanza:
        try:
            resp = self.client.encrypt(
                KeyId=self.key_id, Plaintext=data_key, EncryptionContext=context.as_mapping()
            )
        except (ClientError, BotoCoreError) as exc:
            raise self._fail("Encrypt", exc) from None
        return self._stanza(resp)

    def _stanza(self, resp: dict[str, Any]) -> Stanza:
        # KeyId in the response is the key's ARN: record it so unwrap names the exact
        # key even when the config used an alias that later moved.
        return Stanza(
            "aws-kms",
            self.name,
            str(resp.get("KeyId") or self.key_id),
            {"ciphertext": b64e(bytes(resp["CiphertextBlob"])), "alias": self.key_id},
        )

    def matches(self, stanza: Stanza) -> bool:
        return stanza.type == "aws-kms"

    def _resolved_key(self) -> str:
        """The configured key's ARN, resolved once (an alias names one key at a time)."""
        if self._arn is None:
            meta = self.client.describe_key(KeyId=self.key_id)["KeyMetadata"]
            self._arn = str(meta.get("Arn") or meta["KeyId"])
        return self._arn

    def unwrap(self, stanza: Stanza, context: WrapContext) -> bytes:
        """Decrypt with the CONFIGURED key, never the key a stanza names: a planted stanza
        must not make this host call Decrypt on a key of someone else's choosing."""
        blob = b64d(stanza.body.get("ciphertext", ""), "aws-kms stanza ciphertext")
        if not 1 <= len(blob) <= 6144:  # KMS ciphertext blobs are 1..6144 bytes
            raise IntegrityError(f"the aws-kms stanza of backup {context.backup_id} is malformed")
        try:
            key = self._resolved_key()
            if stanza.key_id != key:
                raise KeyAccessError(
                    f"the aws-kms stanza of backup {context.backup_id} was made by key "
                    f"{stanza.key_id[:120]}, not the configured {self.key_id} ({key})"
                )
            resp = self.client.decrypt(
                CiphertextBlob=blob, KeyId=key, EncryptionContext=context.as_mapping()
            )
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code == "InvalidCiphertextException":
                raise IntegrityError(
                    f"KMS refused the wrapped key of backup {context.backup_id}: it was made "
                    "for another backup or cluster, or the manifest was altered"
                ) from None
            raise self._fail("Decrypt", exc) from None
        except BotoCoreError as exc:
            raise self._fail("Decrypt", exc) from None
        return bytes(resp["Plaintext"])


@register("aws-kms")
def _factory(config: RecipientConfig) -> AwsKmsRecipient:
    opts = config.options
    return AwsKmsRecipient(
        config.name,
        opts["key_id"],
        region=opts.get("region"),
        endpoint_url=opts.get("endpoint_url"),
    )
