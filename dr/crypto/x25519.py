"""`x25519` recipient: the offline break-glass identity made by `dr keygen`.

The config holds only the public half (`recipient: vdr1...`); the private half (the
identity) goes to the safe, on paper and in a 0600 file, and comes back only for a
recovery: `--identity FILE`. docs/keys.md describes the formats; this docstring is the
wrapping, which tools/vdr-decrypt.py re-implements with nothing but `cryptography`:

    eph      = a fresh X25519 key pair for every wrap
    shared   = X25519(eph_private, recipient_public)            (all-zero result refused)
    kek      = HKDF-SHA256(ikm=shared, salt=eph_public || recipient_public,
                           info=b"vault-dr x25519 v1", length=32)
    wrapped  = AES-256-GCM(kek).encrypt(nonce, data_key, aad=WrapContext.as_bytes())

Stanza: `type: x25519`, `key_id`: the recipient string, body `epk` (eph_public), `nonce`
(12 random bytes), `wrapped` (32-byte key + 16-byte tag), each base64. The associated
data names the cluster and the backup, so a stanza copied into another backup's
manifest does not open there. This is age's X25519 recipient (fresh ephemeral key,
HKDF salted with both public keys) with the backup bound in as associated data.

Text forms (Bech32, dr/crypto/bech32.py): recipient `vdr1` + 58 lower-case characters;
private key `VDR-SECRET-KEY-1` + 58 upper-case characters, printed in groups of four.
A mistyped character fails the checksum, and the error names the group it is in.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from dr.crypto import bech32
from dr.crypto.settings import RecipientConfig
from dr.crypto.wrapping import Stanza, WrapContext, b64d, b64e, register
from dr.errors import IntegrityError, KeyAccessError, UsageError

KEY_SIZE = 32
NONCE_SIZE = 12
HKDF_INFO = b"vault-dr x25519 v1"
RECIPIENT_HRP = "vdr"
SECRET_HRP = "vdr-secret-key-"  # noqa: S105 - a format prefix, not a secret
SECRET_PREFIX = "VDR-SECRET-KEY-1"  # noqa: S105 - a format prefix, not a secret
SECRET_CHARS = 58  # 52 characters for 256 bits + 6 of checksum
GROUP_SIZE = 4
GROUPS_PER_LINE = 5
# Characters Bech32 leaves out, and the one a reader most likely meant.
_LOOKALIKES = {"O": "0", "I": "L", "B": "8", "1": "L"}
_ALPHABET = bech32.CHARSET.upper()
_FILE_HEADER = (
    "# vault-dr x25519 identity (dr keygen): keep it secret and offline; it opens every\n"
    "# backup wrapped for the public key below. Format: docs/keys.md\n"
)


def format_recipient(public_key: bytes) -> str:
    return bech32.encode(RECIPIENT_HRP, public_key)


def parse_recipient(text: str) -> bytes:
    """`vdr1...` -> the 32-byte public key; ValueError with the reason otherwise."""
    try:
        hrp, key = bech32.decode(text.strip())
    except bech32.Bech32Error as exc:
        raise ValueError(f"not an x25519 recipient from dr keygen (vdr1...): {exc}") from None
    if hrp != RECIPIENT_HRP or len(key) != KEY_SIZE:
        raise ValueError("not an x25519 recipient from dr keygen (vdr1... of 62 characters)")
    return key


def _group_of(position: int, data: str) -> str:
    # The group's number only: its characters are part of the secret (never echoed).
    return f"group {position // GROUP_SIZE + 1}"


@dataclass(frozen=True, repr=False)
class X25519Identity:
    """The private half. Its repr never shows the key."""

    private_key: X25519PrivateKey

    def __repr__(self) -> str:
        return f"X25519Identity({self.recipient})"

    @classmethod
    def generate(cls) -> X25519Identity:
        return cls(X25519PrivateKey.generate())

    @property
    def public_key(self) -> bytes:
        return self.private_key.public_key().public_bytes_raw()

    @property
    def recipient(self) -> str:
        return format_recipient(self.public_key)

    @property
    def secret_string(self) -> str:
        return bech32.encode(SECRET_HRP, self.private_key.private_bytes_raw()).upper()

    def printed(self) -> str:
        """The paper form: the prefix, then groups of four characters, five to a line."""
        data = self.secret_string[len(SECRET_PREFIX) :]
        groups = [data[i : i + GROUP_SIZE] for i in range(0, len(data), GROUP_SIZE)]
        lines = [
            " ".join(groups[i : i + GROUPS_PER_LINE])
            for i in range(0, len(groups), GROUPS_PER_LINE)
        ]
        return "\n".join([SECRET_PREFIX, *lines])

    @classmethod
    def from_text(cls, text: str) -> X25519Identity:
        """Parse the key as typed or stored: case, spaces, dashes and line breaks are
        ignored, and the VDR-SECRET-KEY-1 prefix may be left out. A UsageError says
        what is wrong, and where when the checksum can tell."""
        compact = "".join(c for c in text.upper() if not c.isspace() and c != "-")
        if not compact:
            raise UsageError("no key given: type the VDR-SECRET-KEY-1... key as printed")
        prefix = SECRET_PREFIX.replace("-", "")
        if compact.startswith(prefix):
            data = compact[len(prefix) :]
        elif len(compact) == SECRET_CHARS:
            data = compact
        else:
            raise UsageError(f"not a vault-dr identity: the key starts with {SECRET_PREFIX}")
        for i, char in enumerate(data):
            if char not in _ALPHABET:
                hint = (
                    f" ({char!r} is probably {_LOOKALIKES[char]!r})" if char in _LOOKALIKES else ""
                )
                raise UsageError(
                    f"character {char!r} in {_group_of(i, data)} is not used in these keys, "
                    f"which have no 1, B, I or O{hint}; compare that group with the paper copy"
                )
        if len(data) != SECRET_CHARS:
            raise UsageError(
                f"the key has {len(data)} characters after {SECRET_PREFIX} but must have "
                f"{SECRET_CHARS} ({-(-SECRET_CHARS // GROUP_SIZE)} groups): a character or a "
                "group was left out or typed twice"
            )
        values = [bech32.CHARSET.index(c) for c in data.lower()]
        if not bech32.verify_checksum(SECRET_HRP, values):
            pos = bech32.locate_single_error(SECRET_HRP, values)
            where = (
                f": {_group_of(pos, data)} is wrong"
                if pos is not None
                else " (more than one character is wrong)"
            )
            raise UsageError(
                f"the checksum caught a mistyped character in the key{where}; compare it "
                "with the paper copy and type the key again"
            )
        try:
            raw = bytes(bech32.convertbits(values[: -bech32.CHECKSUM_LENGTH], 5, 8, pad=False))
        except bech32.Bech32Error:
            raise UsageError(
                "the key does not decode to a 256-bit key (not from dr keygen)"
            ) from None
        return cls(X25519PrivateKey.from_private_bytes(raw))


def write_identity(path: Path, identity: X25519Identity, *, now: datetime | None = None) -> None:
    """Write an identity file: mode 0600, never over an existing file."""
    created = (now or datetime.now(UTC)).isoformat(timespec="seconds").replace("+00:00", "Z")
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise UsageError(f"{path} already exists; refusing to overwrite an identity") from None
    except OSError as exc:
        raise UsageError(f"cannot create {path}: {exc.strerror}") from None
    with os.fdopen(fd, "w") as fh:
        fh.write(
            f"{_FILE_HEADER}# created: {created}\n# public key: {identity.recipient}\n"
            f"{identity.secret_string}\n"
        )
        fh.flush()
        os.fsync(fh.fileno())


def identity_text(text: str) -> str:
    """The key part of an identity file: every line that is not a '#' comment."""
    return "\n".join(ln for ln in text.splitlines() if not ln.lstrip().startswith("#"))


def read_identity(path: Path) -> X25519Identity:
    try:
        text = path.read_text()
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise UsageError(f"identity file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read identity file {path}: {exc}") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise UsageError(f"identity file {path} is readable by others; run: chmod 600 {path}")
    try:
        return X25519Identity.from_text(identity_text(text))
    except UsageError as exc:
        raise UsageError(f"identity file {path}: {exc}") from None


def _kek(shared: bytes, epk: bytes, recipient_public: bytes) -> AESGCM:
    key = HKDF(
        algorithm=hashes.SHA256(), length=32, salt=epk + recipient_public, info=HKDF_INFO
    ).derive(shared)
    return AESGCM(key)


def seal(
    public_key: bytes,
    data_key: bytes,
    context: WrapContext,
    *,
    eph: X25519PrivateKey | None = None,
    nonce: bytes | None = None,
) -> dict[str, str]:
    """The stanza body wrapping `data_key` for `public_key` (see the module docstring).
    `eph` and `nonce` are fresh unless a test pins them for golden vectors."""
    eph = eph or X25519PrivateKey.generate()
    nonce = nonce or os.urandom(NONCE_SIZE)
    epk = eph.public_key().public_bytes_raw()
    shared = eph.exchange(X25519PublicKey.from_public_bytes(public_key))  # ValueError: low order
    wrapped = _kek(shared, epk, public_key).encrypt(nonce, data_key, context.as_bytes())
    return {"epk": b64e(epk), "nonce": b64e(nonce), "wrapped": b64e(wrapped)}


class X25519Recipient:
    """Wraps for a public key; unwraps only when the identity is at hand."""

    type_name = "x25519"
    offline = True

    def __init__(
        self,
        name: str,
        public_key: bytes,
        *,
        identity: X25519Identity | None = None,
        identity_path: Path | None = None,
    ) -> None:
        self.name = name
        self.public_key = public_key
        self.key_id = format_recipient(public_key)
        self._identity = identity
        self.identity_path = identity_path

    @classmethod
    def from_identity(cls, name: str, identity: X25519Identity, path: Path) -> X25519Recipient:
        return cls(name, identity.public_key, identity=identity, identity_path=path)

    def describe(self) -> str:
        where = f" (identity {self.identity_path})" if self.identity_path else ""
        return f"x25519 {self.key_id[:16]}...{where}"

    def generate(self, context: WrapContext) -> None:
        return None

    def wrap(self, data_key: bytes, context: WrapContext) -> Stanza:
        try:
            body = seal(self.public_key, data_key, context)
        except ValueError:
            raise KeyAccessError(
                f"recipient '{self.name}' ({self.key_id}) is not a usable X25519 public key; "
                "make a new one with dr keygen"
            ) from None
        return Stanza(self.type_name, self.name, self.key_id, body)

    def matches(self, stanza: Stanza) -> bool:
        return stanza.type == self.type_name and stanza.key_id == self.key_id

    def identity(self) -> X25519Identity:
        if self._identity is None:
            if self.identity_path is None:
                raise KeyAccessError(
                    f"recipient '{self.name}' has only the public key {self.key_id[:16]}... "
                    "here; pass --identity FILE (the break-glass identity from dr keygen)"
                )
            identity = read_identity(self.identity_path)
            if identity.public_key != self.public_key:
                raise UsageError(
                    f"identity file {self.identity_path} is for {identity.recipient}, not for "
                    f"recipient '{self.name}' ({self.key_id})"
                )
            self._identity = identity
        return self._identity

    def unwrap(self, stanza: Stanza, context: WrapContext) -> bytes:
        epk = b64d(stanza.body.get("epk", ""), "x25519 stanza epk")
        nonce = b64d(stanza.body.get("nonce", ""), "x25519 stanza nonce")
        wrapped = b64d(stanza.body.get("wrapped", ""), "x25519 stanza key")
        if len(epk) != KEY_SIZE or len(nonce) != NONCE_SIZE:
            raise IntegrityError(f"the x25519 stanza in backup {context.backup_id} is malformed")
        identity = self.identity()
        try:
            shared = identity.private_key.exchange(X25519PublicKey.from_public_bytes(epk))
            return _kek(shared, epk, identity.public_key).decrypt(
                nonce, wrapped, context.as_bytes()
            )
        except (InvalidTag, ValueError):
            raise IntegrityError(
                f"the x25519 stanza in backup {context.backup_id} does not authenticate "
                "(altered, or copied from another backup)"
            ) from None


@register("x25519")
def _factory(config: RecipientConfig) -> X25519Recipient:
    identity_path = config.options.get("identity")
    return X25519Recipient(
        config.name,
        parse_recipient(config.options["recipient"]),
        identity_path=Path(identity_path) if identity_path else None,
    )
