"""The x25519 recipient: the wrap as a threat model, the printed key, the identity file."""

from __future__ import annotations

import base64
import os
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from dr.config import EncryptionConfig, RecipientConfig
from dr.crypto import bech32
from dr.crypto.identity import load_identity
from dr.crypto.keyfile import KeyfileRecipient, generate_keyfile
from dr.crypto.recipients import (
    Stanza,
    WrapContext,
    new_data_key,
    select_wrappers,
    unwrap_data_key,
)
from dr.crypto.x25519 import (
    SECRET_PREFIX,
    X25519Identity,
    X25519Recipient,
    format_recipient,
    parse_recipient,
    read_identity,
    seal,
    write_identity,
)
from dr.errors import ExitCode, IntegrityError, KeyAccessError, UsageError

CTX = WrapContext("prod", "20261126T060000Z-3f9a1c")
OTHER = WrapContext("prod", "20261126T120000Z-aaaaaa")

# Golden vector: fixed identity, ephemeral key, nonce and data key. The stanza format is
# on disk in every manifest: these bytes must not change silently.
VECTOR_IDENTITY = bytes(range(32))
VECTOR_EPH = bytes(range(32, 64))
VECTOR_DATA_KEY = bytes(range(64, 96))
VECTOR_NONCE = bytes(range(96, 108))
VECTOR = {
    "secret": "VDR-SECRET-KEY-1QQQSYQCYQ5RQWZQFPG9SCRGWPUGPZYSNZS23V9CCRYDPK8QARC0S5Y4HHP",
    "recipient": "vdr13aqvttdk3ujkyjh9kg2w5an6dmy5mq5a84a4uxk3hfhnugfc9p0srf7xhc",
    "epk": "NYBy1jZYgNGu6jKa35EhODhR7SGijjt16WXQ0s0WYlQ=",
    "nonce": "YGFiY2RlZmdoaWpr",
    "wrapped": "1aLS1Vbr1RNg8J0riKM+J7Wxe6OtwDv1VmEK+rOtGbdzgpm0Zd9bw3uQ6uT312/x",
}


def vector_identity() -> X25519Identity:
    return X25519Identity(X25519PrivateKey.from_private_bytes(VECTOR_IDENTITY))


@pytest.fixture
def identity() -> X25519Identity:
    return X25519Identity.generate()


def holder(identity: X25519Identity, name: str = "break-glass") -> X25519Recipient:
    return X25519Recipient(name, identity.public_key, identity=identity)


# -- the wrap -------------------------------------------------------------------------


def test_golden_vector() -> None:
    ident = vector_identity()
    assert ident.secret_string == VECTOR["secret"]
    assert ident.recipient == VECTOR["recipient"]
    body = seal(
        ident.public_key,
        VECTOR_DATA_KEY,
        CTX,
        eph=X25519PrivateKey.from_private_bytes(VECTOR_EPH),
        nonce=VECTOR_NONCE,
    )
    assert body == {k: VECTOR[k] for k in ("epk", "nonce", "wrapped")}
    stanza = Stanza("x25519", "bg", VECTOR["recipient"], body)
    assert holder(ident).unwrap(stanza, CTX) == VECTOR_DATA_KEY


def test_round_trip_through_the_public_key_only(identity: X25519Identity) -> None:
    public_only = X25519Recipient("break-glass", parse_recipient(identity.recipient))
    key, stanzas = new_data_key([public_only], CTX)
    (stanza,) = stanzas
    assert stanza.type == "x25519" and stanza.key_id == identity.recipient
    assert set(stanza.body) == {"epk", "nonce", "wrapped"}
    assert unwrap_data_key(stanzas, [holder(identity)], CTX) == (key, stanza)
    # Every wrap has its own ephemeral key and nonce.
    again = public_only.wrap(key, CTX)
    assert again.body["epk"] != stanza.body["epk"]


def test_public_key_alone_cannot_unwrap_and_says_use_identity(identity: X25519Identity) -> None:
    public_only = X25519Recipient("break-glass", identity.public_key)
    _, stanzas = new_data_key([public_only], CTX)
    with pytest.raises(KeyAccessError, match=r"--identity FILE"):
        unwrap_data_key(stanzas, [public_only], CTX)


def test_another_identity_does_not_match(identity: X25519Identity) -> None:
    _, stanzas = new_data_key([holder(identity)], CTX)
    stranger = holder(X25519Identity.generate(), "other")
    with pytest.raises(KeyAccessError, match="wrapped for: x25519:break-glass"):
        unwrap_data_key(stanzas, [stranger], CTX)
    # Even when forced past matches(), the other private key cannot open the stanza.
    with pytest.raises(IntegrityError, match="does not authenticate"):
        stranger.unwrap(stanzas[0], CTX)


def test_stanza_from_another_backup_is_refused(identity: X25519Identity) -> None:
    _, stanzas = new_data_key([holder(identity)], CTX)
    with pytest.raises(IntegrityError, match="does not authenticate") as info:
        unwrap_data_key(stanzas, [holder(identity)], OTHER)
    assert info.value.exit_code == ExitCode.INTEGRITY


@pytest.mark.parametrize("field", ["epk", "nonce", "wrapped"])
def test_every_changed_body_field_fails(identity: X25519Identity, field: str) -> None:
    _, (stanza,) = new_data_key([holder(identity)], CTX)
    raw = bytearray(base64.b64decode(stanza.body[field]))
    raw[len(raw) // 2] ^= 0x01
    body = {**stanza.body, field: base64.b64encode(bytes(raw)).decode()}
    with pytest.raises(IntegrityError):
        holder(identity).unwrap(Stanza(stanza.type, stanza.name, stanza.key_id, body), CTX)


def test_malformed_and_low_order_keys(identity: X25519Identity) -> None:
    _, (stanza,) = new_data_key([holder(identity)], CTX)
    short = {**stanza.body, "epk": base64.b64encode(b"x" * 31).decode()}
    with pytest.raises(IntegrityError, match="malformed"):
        holder(identity).unwrap(Stanza("x25519", "b", stanza.key_id, short), CTX)
    zero = {**stanza.body, "epk": base64.b64encode(bytes(32)).decode()}
    with pytest.raises(IntegrityError):
        holder(identity).unwrap(Stanza("x25519", "b", stanza.key_id, zero), CTX)
    low_order = X25519Recipient("bad", bytes(32))
    with pytest.raises(KeyAccessError, match="not a usable X25519 public key"):
        low_order.wrap(os.urandom(32), CTX)


# -- text forms -----------------------------------------------------------------------


def test_recipient_string(identity: X25519Identity) -> None:
    text = identity.recipient
    assert text.startswith("vdr1") and len(text) == 62
    assert parse_recipient(text) == identity.public_key
    assert format_recipient(identity.public_key) == text
    typo = text[:20] + ("q" if text[20] != "q" else "p") + text[21:]
    with pytest.raises(ValueError, match="checksum"):
        parse_recipient(typo)
    with pytest.raises(ValueError, match="not an x25519 recipient"):
        parse_recipient(bech32.encode("age", identity.public_key))


def test_printed_form_types_back_in_any_reasonable_way(identity: X25519Identity) -> None:
    printed = identity.printed()
    lines = printed.splitlines()
    assert lines[0] == SECRET_PREFIX and len(lines) == 4
    assert all(len(g) == 4 for g in " ".join(lines[1:]).split()[:-1])
    data = identity.secret_string[len(SECRET_PREFIX) :]
    for typed in [
        printed,
        printed.lower(),
        identity.secret_string,
        data,  # without the prefix
        "vdr secret key 1\n" + printed.split("\n", 1)[1],
        "-".join(data[i : i + 4] for i in range(0, len(data), 4)),
        "  " + printed.replace("\n", "\n\n   ") + "\n",
    ]:
        assert X25519Identity.from_text(typed).public_key == identity.public_key


def test_every_single_character_substitution_is_caught_and_located(
    identity: X25519Identity,
) -> None:
    data = identity.secret_string[len(SECRET_PREFIX) :]
    alphabet = bech32.CHARSET.upper()
    for pos in range(len(data)):
        group = pos // 4 + 1
        for char in alphabet:
            if char == data[pos]:
                continue
            typo = data[:pos] + char + data[pos + 1 :]
            with pytest.raises(UsageError) as info:
                X25519Identity.from_text(SECRET_PREFIX + typo)
            message = str(info.value)
            assert "the checksum caught a mistyped character" in message
            assert f"group {group} " in message, message
            # No run of the typed key is echoed: the error line may land in a log.
            assert not any(typo[i : i + 4] in message for i in range(0, len(typo) - 3)), message


def test_lookalikes_missing_and_doubled_characters(identity: X25519Identity) -> None:
    data = identity.secret_string[len(SECRET_PREFIX) :]
    with pytest.raises(UsageError, match=r"'O' in group 2 .*'O' is probably '0'"):
        X25519Identity.from_text(SECRET_PREFIX + data[:5] + "O" + data[6:])
    with pytest.raises(UsageError, match=r"57 characters .* must have 58"):
        X25519Identity.from_text(SECRET_PREFIX + data[:-1])
    with pytest.raises(UsageError, match="62 characters"):
        X25519Identity.from_text(SECRET_PREFIX + data + data[:4])
    with pytest.raises(UsageError, match="starts with VDR-SECRET-KEY-1"):
        X25519Identity.from_text("AGE-SECRET-KEY-1" + data)
    with pytest.raises(UsageError, match="no key given"):
        X25519Identity.from_text(" \n ")
    two = (
        data[:3]
        + ("Q" if data[3] != "Q" else "P")
        + data[4:30]
        + ("7" if data[30] != "7" else "8")
        + data[31:]
    )
    with pytest.raises(UsageError, match="more than one character is wrong"):
        X25519Identity.from_text(two)


def test_repr_never_shows_the_secret(identity: X25519Identity) -> None:
    assert identity.secret_string[16:] not in repr(identity)
    assert identity.recipient in repr(identity)


# -- the identity file ----------------------------------------------------------------


def test_identity_file_is_private_documented_and_never_overwritten(
    tmp_path: Path, identity: X25519Identity
) -> None:
    path = tmp_path / "bg.key"
    write_identity(path, identity)
    assert path.stat().st_mode & 0o777 == 0o600
    text = path.read_text()
    assert f"# public key: {identity.recipient}\n" in text and "# created: " in text
    assert text.rstrip().splitlines()[-1] == identity.secret_string
    assert read_identity(path).public_key == identity.public_key
    with pytest.raises(UsageError, match="refusing to overwrite"):
        write_identity(path, X25519Identity.generate())
    assert read_identity(path).public_key == identity.public_key
    os.chmod(path, 0o640)
    with pytest.raises(UsageError, match="chmod 600"):
        read_identity(path)


def test_identity_file_typed_by_hand(tmp_path: Path, identity: X25519Identity) -> None:
    path = tmp_path / "typed.txt"
    path.write_text("# typed from the paper copy\n" + identity.printed().lower() + "\n")
    path.chmod(0o600)
    assert read_identity(path).public_key == identity.public_key
    data = identity.secret_string[len(SECRET_PREFIX) :]
    bad = tmp_path / "bad.txt"
    bad.write_text(SECRET_PREFIX + data[:-1] + ("Q" if data[-1] != "Q" else "P"))
    bad.chmod(0o600)
    with pytest.raises(UsageError, match=rf"identity file {bad}: the checksum caught"):
        read_identity(bad)


def test_configured_identity_must_be_the_recipients(
    tmp_path: Path, identity: X25519Identity
) -> None:
    path = tmp_path / "other.key"
    write_identity(path, X25519Identity.generate())
    configured = X25519Recipient("bg", identity.public_key, identity_path=path)
    _, stanzas = new_data_key([configured], CTX)
    with pytest.raises(UsageError, match="is for vdr1"):
        configured.identity()
    with pytest.raises(KeyAccessError, match="is for vdr1"):
        unwrap_data_key(stanzas, [configured], CTX)


# -- --identity and select_wrappers -----------------------------------------------------


def test_select_wrappers_puts_the_identity_first(tmp_path: Path, identity: X25519Identity) -> None:
    path = tmp_path / "bg.key"
    write_identity(path, identity)
    generate_keyfile(tmp_path / "k.key")
    encryption = EncryptionConfig(
        recipients=(
            RecipientConfig("keyfile", "local", {"path": tmp_path / "k.key"}, "r[0]"),
            RecipientConfig("x25519", "bg", {"recipient": identity.recipient}, "r[1]"),
        )
    )
    wrappers = select_wrappers(encryption, path)
    assert [w.type_name for w in wrappers] == ["x25519", "keyfile", "x25519"]
    assert "identity" in wrappers[0].describe() and str(path) in wrappers[0].describe()
    # A stanza made under the config's name opens with the identity (matched by key).
    _, stanzas = new_data_key(wrappers[1:], CTX)
    _, used = unwrap_data_key(stanzas, select_wrappers(None, path), CTX)
    assert (used.type, used.name) == ("x25519", "bg")
    assert [w.type_name for w in select_wrappers(encryption, None)] == ["keyfile", "x25519"]
    with pytest.raises(UsageError, match="--identity FILE"):
        select_wrappers(EncryptionConfig(recipients=()), None)


def test_a_key_file_works_as_identity_and_garbage_does_not(tmp_path: Path) -> None:
    key = tmp_path / "k.key"
    generate_keyfile(key)
    wrapper = load_identity(key)
    assert isinstance(wrapper, KeyfileRecipient)
    configured = KeyfileRecipient("local", key)
    _, stanzas = new_data_key([configured], CTX)
    assert unwrap_data_key(stanzas, [wrapper], CTX)[1].name == "local"
    junk = tmp_path / "junk"
    junk.write_text("hello\n")
    junk.chmod(0o600)
    with pytest.raises(UsageError, match="neither an x25519 identity"):
        load_identity(junk)
    with pytest.raises(UsageError, match="does not exist"):
        load_identity(tmp_path / "missing")


class _Unreachable:
    """A recipient whose service is down (what an unreachable KMS looks like)."""

    type_name = "aws-kms"
    name = "kms"
    offline = False

    def describe(self) -> str:
        return "aws-kms alias/k"

    def matches(self, stanza: Stanza) -> bool:
        return stanza.type == "aws-kms"

    def unwrap(self, stanza: Stanza, context: WrapContext) -> bytes:
        raise KeyAccessError("cannot reach the KMS endpoint")


def test_an_identity_for_another_key_is_named_in_the_error(tmp_path: Path) -> None:
    path = tmp_path / "other.key"
    write_identity(path, X25519Identity.generate())
    stanzas = [Stanza("aws-kms", "kms", "arn:k", {"ciphertext": "eA=="})]
    wrappers = [*select_wrappers(None, path), _Unreachable()]
    with pytest.raises(KeyAccessError) as info:
        unwrap_data_key(stanzas, wrappers, CTX)
    message = str(info.value)
    assert "cannot reach the KMS endpoint" in message
    assert f"(identity {path}): not among its recipients (aws-kms:kms)" in message
