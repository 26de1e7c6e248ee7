"""Seal preflight: before a restore or drill sends any byte, prove the seal usable.

Vault's tracker holds many restores that failed half-way because the seal key was no
longer reachable, or the keys at hand could not reach the threshold (recovery keys
cannot unseal anything). Both are cheap to check first:

- transit: an encrypt/decrypt round trip of random bytes with the configured token, on
  the configured key (what the server itself does at start and unseal);
- awskms: DescribeKey (enabled, ENCRYPT_DECRYPT) and an Encrypt/Decrypt round trip,
  with the standard AWS credential chain and the configured endpoint;
- the quorum: the unseal keys (Shamir) or recovery keys (auto-unseal, for generate-root)
  given reach the threshold the backup recorded.
A failure is one SealError line (exit 13) naming the key and what is missing.
"""

from __future__ import annotations

import base64
import hmac
import logging
import os
from dataclasses import dataclass, field
from typing import Any

from dr.errors import DRError, SealError, UsageError, VaultError
from dr.vault.connection import VaultClient, VaultUnreachable
from dr.vault.seal import UnsealKeys, decode_key
from dr.vault.sealconf import SealRecord, SealSettings

log = logging.getLogger(__name__)


@dataclass
class SealCheck:
    """What the preflight found, for the report."""

    seal: str  # e.g. "transit 3/5"
    checks: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"seal": self.seal, "checks": list(self.checks)}


def key_count(keys: UnsealKeys) -> tuple[int, bool]:
    """(distinct shares, holds a whole key): a whole 32-byte key opens any threshold."""
    decoded = [decode_key(k) for k in keys.keys]
    whole = any(raw is not None and len(raw) == 32 for raw in decoded)
    distinct = {raw[-1] for raw in decoded if raw is not None and len(raw) > 1}
    return len(distinct), whole


def check_quorum(keys: UnsealKeys | None, record: SealRecord, kind: str, needed_for: str) -> str:
    """One line for the report; SealError when `keys` cannot reach the threshold."""
    if keys is None:
        raise SealError(
            f"{needed_for} needs the source cluster's {kind} keys ({record.describe()}); "
            f"set drill.{kind}_keys_file or pass --{kind}-keys-file"
        )
    count, whole = key_count(keys)
    if whole:
        return f"{kind} keys: a whole key in {keys.source}"
    if record.threshold and count < record.threshold:
        raise SealError(
            f"{keys.source} holds {count} distinct {kind} key share(s) but the source "
            f"cluster's threshold is {record.threshold} of {record.shares}: add the missing "
            f"shares of the SOURCE cluster's {kind} keys"
        )
    threshold = f" (threshold {record.threshold})" if record.threshold else ""
    return f"{kind} keys: {count} distinct shares in {keys.source}{threshold}"


def check_seal_key(settings: SealSettings) -> str:
    """The configured seal key is usable (a round trip); one line for the report."""
    if settings.type == "transit":
        return _check_transit(settings)
    if settings.type == "awskms":
        return _check_awskms(settings)
    raise UsageError(f"{settings.where}: no preflight for the {settings.type} seal")


def seal_secrets(settings: SealSettings) -> dict[str, str]:
    """What the throwaway's seal stanza needs and the config does not hold: the transit
    token, or AWS credentials resolved from the standard chain (read here, written only
    into the server's 0600 config file, never into its environment or argv)."""
    if settings.type == "transit":
        assert settings.token is not None
        return {"token": settings.token.read()}
    session = _boto_session()
    creds = session.get_credentials()
    if creds is None:
        raise SealError(
            f"{settings.where}: no AWS credentials found for the {settings.describe()} "
            "(standard chain: AWS_ACCESS_KEY_ID/AWS_PROFILE/instance role)"
        )
    frozen = creds.get_frozen_credentials()
    return {
        "access_key": frozen.access_key,
        "secret_key": frozen.secret_key,
        "session_token": frozen.token or "",
    }


def _check_transit(settings: SealSettings) -> str:
    assert settings.token is not None
    where = f"{settings.mount_path}{{encrypt,decrypt}}/{settings.key_name} at {settings.address}"
    try:
        token = settings.token.read()
    except UsageError as exc:
        raise SealError(f"the transit seal's token: {exc.message}") from None
    client = VaultClient.at(
        settings.address,
        tls=settings.tls,
        timeout=10,
        retries=1,
        namespace=settings.namespace,
    )
    client.set_token(token)
    probe = os.urandom(16)
    try:
        enc = client.send(
            "POST",
            f"{settings.mount_path}encrypt/{settings.key_name}",
            json={"plaintext": base64.b64encode(probe).decode()},
        )
        if not enc.ok:
            raise _transit_refused(settings, "encrypt", enc.status, enc.errors)
        ciphertext = str(enc.data().get("data", {}).get("ciphertext", ""))
        dec = client.send(
            "POST",
            f"{settings.mount_path}decrypt/{settings.key_name}",
            json={"ciphertext": ciphertext},
        )
        if not dec.ok:
            raise _transit_refused(settings, "decrypt", dec.status, dec.errors)
        plain = base64.b64decode(str(dec.data().get("data", {}).get("plaintext", "")))
    except VaultUnreachable as exc:
        raise SealError(
            f"the transit seal's Vault at {settings.address} is unreachable ({exc.message}); "
            "the restored barrier cannot be opened without it"
        ) from None
    except VaultError as exc:
        raise SealError(f"transit seal preflight at {settings.address}: {exc.message}") from None
    finally:
        client.close()
    if not hmac.compare_digest(plain, probe):
        raise SealError(
            f"the transit seal key {settings.mount_path}{settings.key_name} at "
            f"{settings.address} did not decrypt what it encrypted: not a usable seal key"
        )
    return f"transit seal: encrypt/decrypt round trip on {where} ok"


def _transit_refused(settings: SealSettings, op: str, status: int, errors: str) -> SealError:
    path = f"{settings.mount_path}{op}/{settings.key_name}"
    if status == 403:
        cause = (
            "permission denied: the token is revoked or expired, or its policy lacks "
            f"'update' on {path}"
        )
    elif status == 400 and op == "decrypt":
        cause = f"decryption refused ({errors}): the key's decryption is disabled or rotated away"
    else:
        cause = f"HTTP {status}: {errors}"
    return SealError(
        f"the transit seal key cannot be used: {path} at {settings.address}: {cause}; "
        f"fix the seal token ({settings.token.describe() if settings.token else '?'}) or the key"
    )


def _boto_session() -> Any:
    import boto3

    return boto3.session.Session()


def _check_awskms(settings: SealSettings) -> str:
    from botocore.exceptions import BotoCoreError, ClientError

    key = settings.kms_key_id
    client = _boto_session().client(
        "kms", region_name=settings.region, endpoint_url=settings.endpoint or None
    )
    step = "kms:DescribeKey"
    try:
        meta = client.describe_key(KeyId=key)["KeyMetadata"]
        if meta.get("KeyState") != "Enabled":
            raise SealError(
                f"the awskms seal key {key} is {meta.get('KeyState')}, not Enabled: the "
                "restored barrier cannot be opened; enable the key (or cancel its deletion)"
            )
        probe = os.urandom(16)
        step = "kms:Encrypt"
        blob = client.encrypt(KeyId=key, Plaintext=probe)["CiphertextBlob"]
        step = "kms:Decrypt"
        plain = client.decrypt(KeyId=key, CiphertextBlob=blob)["Plaintext"]
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        raise SealError(
            f"the awskms seal key {key} in {settings.region} cannot be used: {step} "
            f"answered {code}; grant the credentials {step} on it (and check the key exists)"
        ) from None
    except BotoCoreError as exc:
        raise SealError(f"the awskms seal key {key}: {step} failed: {exc}") from None
    if not hmac.compare_digest(plain, probe):
        raise SealError(f"the awskms seal key {key} did not decrypt what it encrypted")
    return f"awskms seal: DescribeKey, Encrypt and Decrypt on {key} ok"


def preflight(
    record: SealRecord,
    settings: SealSettings | None,
    *,
    unseal_keys: UnsealKeys | None,
    recovery_keys: UnsealKeys | None,
    needed_for: str,
    need_recovery: bool,
) -> SealCheck:
    """Everything a restore or drill of a backup with seal `record` needs, checked.

    Shamir: the unseal keys reach the threshold. Auto-unseal: `settings` (drill.seal)
    is configured, is the backup's seal, its key round-trips, and (`need_recovery`,
    for generate-root) the recovery keys reach the recovery threshold."""
    result = SealCheck(seal=record.describe())
    try:
        if not record.auto:
            result.checks.append(check_quorum(unseal_keys, record, "unseal", needed_for))
            return result
        if settings is None:
            raise SealError(
                f"the backup comes from a cluster with the {record.type} seal: {needed_for} "
                "needs the same seal key; configure drill.seal (docs/restore.md)"
            )
        settings.check_matches(record)
        result.checks.append(check_seal_key(settings))
        if need_recovery:
            result.checks.append(check_quorum(recovery_keys, record, "recovery", needed_for))
    except SealError:
        raise
    except DRError as exc:
        raise SealError(exc.message) from None
    for line in result.checks:
        log.info("seal preflight: %s", line)
    return result
