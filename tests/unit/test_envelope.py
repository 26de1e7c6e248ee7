"""Envelope format v1 (dr/crypto/envelope.py, docs/format.md), tested as a threat model.

Each section is one thing an attacker, a flaky network or a buggy caller can do to an
encrypted backup object, and what the reader must answer. Frames are 4096 bytes here
(the smallest allowed) so that exhaustive tests stay fast.
"""

from __future__ import annotations

import hashlib
import io
import json
import random
import re
import shutil
import tracemalloc
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from dr.crypto import envelope
from dr.crypto.envelope import (
    DEFAULT_FRAME_SIZE,
    MAGIC,
    TAG_SIZE,
    VERSION,
    EncryptingReader,
    EnvelopeFormatError,
    Header,
    decrypt_bytes,
    decrypt_stream,
    decrypt_stream_reusing,
    encrypt_bytes,
    envelope_size,
    parse_header_unauthenticated,
    read_header,
)
from dr.errors import ExitCode, IntegrityError

ROOT = Path(__file__).resolve().parents[2]
VECTORS = json.loads((Path(__file__).parent / "vectors" / "envelope_v1.json").read_text())

FS = 4096
WIRE = FS + TAG_SIZE
CTX = "prod/20261126T060000Z-3f9a1c/snapshot"
CATALOG_CTX = "prod/20261126T060000Z-3f9a1c/catalog"
OTHER_BACKUP_CTX = "prod/20261126T120000Z-77aa01/snapshot"
RNG = random.Random(20261126)
KEY = RNG.randbytes(32)
OTHER_KEY = RNG.randbytes(32)
SALT = RNG.randbytes(32)
# 2.5 frames: two full frames and a half final one, the smallest "interesting" object.
PLAIN = b"TOP-SECRET-PLAINTEXT " + RNG.randbytes(2 * FS + FS // 2 - 21)
BLOB = encrypt_bytes(PLAIN, KEY, CTX, frame_size=FS, salt=SALT)
HEADER_LEN = 75 + len(CTX)


def enc(data: bytes, *, context: str = CTX, key: bytes = KEY, salt: bytes | None = None) -> bytes:
    return encrypt_bytes(data, key, context, frame_size=FS, salt=salt)


def split(blob: bytes, context: str = CTX) -> tuple[bytes, list[bytes]]:
    """Header and wire frames of an envelope (frames of FS)."""
    head_len = 75 + len(context.encode())
    body = blob[head_len:]
    return blob[:head_len], [body[i : i + WIRE] for i in range(0, len(body), WIRE)]


def drain(
    blob: bytes, key: bytes = KEY, context: str | None = CTX
) -> tuple[list[bytes], IntegrityError | None]:
    """Everything decrypt_stream released before it stopped, and the error it stopped on."""
    released: list[bytes] = []
    try:
        for chunk in decrypt_stream(io.BytesIO(blob), key, context):
            released.append(chunk)
    except IntegrityError as exc:
        return released, exc
    return released, None


def assert_only_authentic_frames_released(released: list[bytes], plain: bytes = PLAIN) -> None:
    got = b"".join(released)
    assert all(len(chunk) == FS for chunk in released), "only whole, verified frames"
    assert got == plain[: len(got)]
    assert len(got) < len(plain)


def assert_refused(blob: bytes, context: str | None = CTX) -> IntegrityError:
    released, err = drain(blob, context=context)
    assert err is not None, "tampered envelope was accepted"
    assert_only_authentic_frames_released(released)
    with pytest.raises(IntegrityError):
        decrypt_bytes(blob, KEY, context)
    return err


def chunked(data: bytes, size: int) -> Iterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i : i + size]


# -- round trips -----------------------------------------------------------------------


@pytest.mark.parametrize("size", [0, 1, FS - 1, FS, FS + 1, 2 * FS, 3 * FS, 3 * FS + 1])
def test_round_trip_at_frame_edges(size: int) -> None:
    data = RNG.randbytes(size)
    blob = enc(data)
    assert len(blob) == envelope_size(size, CTX, FS)
    assert decrypt_bytes(blob, KEY, CTX) == data
    # The reader releases one whole frame at a time; an exact multiple of the frame size
    # ends with a full final frame, not an extra empty one.
    sizes = [len(chunk) for chunk in decrypt_stream(io.BytesIO(blob), KEY, CTX)]
    expected = [FS] * (size // FS) + ([size % FS] if size % FS or size == 0 else [])
    assert sizes == expected


def test_round_trip_random_sizes() -> None:
    rng = random.Random(7)
    for _ in range(25):
        data = rng.randbytes(rng.randrange(0, 6 * FS))
        assert decrypt_bytes(enc(data), KEY, CTX) == data


def test_default_frame_size_round_trip() -> None:
    data = RNG.randbytes(DEFAULT_FRAME_SIZE + 5)
    blob = encrypt_bytes(data, KEY, CTX)
    assert blob[8] == 20
    assert len(blob) == envelope_size(len(data), CTX)
    assert decrypt_bytes(blob, KEY, CTX) == data


@pytest.mark.parametrize("chunk_size", [1, 7, 1000, FS - 1, FS, FS + 1, 3 * FS + 5])
def test_how_the_source_is_chunked_does_not_change_a_byte(chunk_size: int) -> None:
    reader = EncryptingReader(chunked(PLAIN, chunk_size), KEY, CTX, frame_size=FS, salt=SALT)
    assert reader.read() == BLOB


def test_source_may_yield_empty_chunks_bytearrays_and_memoryviews() -> None:
    def source() -> Iterator[bytes | bytearray | memoryview]:
        yield b""
        yield bytearray(PLAIN[:100])
        yield b""
        yield memoryview(PLAIN)[100:5000]
        yield PLAIN[5000:]
        yield b""

    reader = EncryptingReader(source(), KEY, CTX, frame_size=FS, salt=SALT)
    assert reader.read() == BLOB


def test_source_may_reuse_and_resize_its_buffer() -> None:
    # Like a readinto() loop: one bytearray, refilled (and shrunk at the end) each time.
    # The writer must copy what it needs and hold no view across the source's next step.
    def source() -> Iterator[bytearray]:
        buf = bytearray()
        for i in range(0, len(PLAIN), 3000):
            buf[:] = PLAIN[i : i + 3000]
            yield buf

    reader = EncryptingReader(source(), KEY, CTX, frame_size=FS, salt=SALT)
    assert reader.read() == BLOB


@pytest.mark.parametrize("n", [1, 15, 16, FS, WIRE, 3 * FS + 1, 8 << 20])
def test_read_n_returns_exactly_n_until_the_end(n: int) -> None:
    # s3transfer's upload_fileobj takes a short read as the end of a part (and S3 refuses
    # parts under 5 MiB), so read(n) must fill n bytes unless the envelope has ended.
    reader = EncryptingReader(chunked(PLAIN, 999), KEY, CTX, frame_size=FS, salt=SALT)
    pieces = []
    while piece := reader.read(n):
        pieces.append(piece)
    assert all(len(p) == n for p in pieces[:-1])
    assert b"".join(pieces) == BLOB
    assert reader.read(n) == b""
    assert reader.read() == b""
    assert reader.readinto(bytearray(10)) == 0


def test_readinto_copyfileobj_and_buffered_wrappers() -> None:
    def fresh() -> EncryptingReader:
        return EncryptingReader(chunked(PLAIN, 1234), KEY, CTX, frame_size=FS, salt=SALT)

    out = io.BytesIO()
    shutil.copyfileobj(fresh(), out, 8 << 20)
    assert out.getvalue() == BLOB

    assert io.BufferedReader(fresh(), buffer_size=5000).read() == BLOB

    reader, buf, got = fresh(), bytearray(3000), bytearray()
    while n := reader.readinto(buf):
        got += buf[:n]
    assert got == BLOB


def test_reader_is_a_readable_non_seekable_file() -> None:
    reader = EncryptingReader([PLAIN], KEY, CTX, frame_size=FS)
    assert reader.readable()
    assert not reader.seekable()
    with pytest.raises(io.UnsupportedOperation):
        reader.seek(0)
    reader.close()
    with pytest.raises(ValueError):
        reader.read(10)


def test_sizes_and_hashes_for_the_manifest_are_known_after_eof() -> None:
    reader = EncryptingReader(chunked(PLAIN, 777), KEY, CTX, frame_size=FS, salt=SALT)
    reader.read(100)
    with pytest.raises(RuntimeError):
        _ = reader.plaintext_sha256
    reader.read()
    assert reader.plaintext_size == len(PLAIN)
    assert reader.plaintext_sha256 == hashlib.sha256(PLAIN).hexdigest()
    assert reader.ciphertext_size == len(BLOB)
    assert reader.ciphertext_sha256 == hashlib.sha256(BLOB).hexdigest()


def test_every_object_gets_a_fresh_salt_so_keys_and_nonces_never_repeat() -> None:
    a, b = enc(PLAIN), enc(PLAIN)
    assert a[9:41] != b[9:41]
    assert a[HEADER_LEN:] != b[HEADER_LEN:]
    assert decrypt_bytes(a, KEY, CTX) == decrypt_bytes(b, KEY, CTX) == PLAIN


# -- golden vectors: these bytes must not change silently, they are an on-disk format ---

VECTOR_IDS = [v["name"] for v in VECTORS["vectors"]]


@pytest.mark.parametrize("vector", VECTORS["vectors"], ids=VECTOR_IDS)
def test_golden_vector_encrypts_to_the_same_bytes(vector: dict[str, object]) -> None:
    blob = encrypt_bytes(
        bytes.fromhex(str(vector["plaintext"])),
        bytes.fromhex(str(vector["data_key"])),
        str(vector["context"]),
        frame_size=int(str(vector["frame_size"])),
        salt=bytes.fromhex(str(vector["salt"])),
    )
    assert blob.hex() == vector["ciphertext"]
    assert hashlib.sha256(blob).hexdigest() == vector["ciphertext_sha256"]


@pytest.mark.parametrize("vector", VECTORS["vectors"], ids=VECTOR_IDS)
def test_golden_vector_decrypts(vector: dict[str, object]) -> None:
    blob = bytes.fromhex(str(vector["ciphertext"]))
    key = bytes.fromhex(str(vector["data_key"]))
    header, enc_key = read_header(io.BytesIO(blob), key, str(vector["context"]))
    assert header == Header(
        version=1,
        frame_size=int(str(vector["frame_size"])),
        salt=bytes.fromhex(str(vector["salt"])),
        context=str(vector["context"]),
        raw=bytes.fromhex(str(vector["header"])),
    )
    assert enc_key.hex() == vector["enc_key"]
    assert hashlib.sha256(header.raw).hexdigest() == vector["aad"]
    assert decrypt_bytes(blob, key, str(vector["context"])).hex() == vector["plaintext"]


def _hand_decryptor() -> Callable[[bytes, bytes], bytes]:
    text = (ROOT / "docs" / "format.md").read_text()
    after = text.split("<!-- hand-decrypt-snippet", 1)[1]
    match = re.search(r"```python\n(.*?)\n```", after, re.DOTALL)
    assert match, "docs/format.md lost its decrypting-by-hand snippet"
    namespace: dict[str, object] = {"__name__": "hand_decrypt"}
    exec(match.group(1), namespace)
    return namespace["decrypt_by_hand"]  # type: ignore[return-value]


def test_the_runbook_snippet_in_docs_decrypts_every_vector() -> None:
    # An independent reader written from the spec alone: if it agrees with the vectors,
    # the spec, the vectors and the implementation agree.
    decrypt_by_hand = _hand_decryptor()
    for vector in VECTORS["vectors"]:
        blob = bytes.fromhex(vector["ciphertext"])
        key = bytes.fromhex(vector["data_key"])
        assert decrypt_by_hand(blob, key).hex() == vector["plaintext"]
    assert decrypt_by_hand(BLOB, KEY) == PLAIN
    with pytest.raises(InvalidTag):
        decrypt_by_hand(BLOB[:-1], KEY)
    with pytest.raises(SystemExit):
        decrypt_by_hand(BLOB, OTHER_KEY)


# -- tampering: every byte, every truncation, frames moved around ---------------------


def test_flipping_any_byte_fails_and_never_releases_corrupt_plaintext() -> None:
    for offset in range(len(BLOB)):
        bad = bytearray(BLOB)
        bad[offset] ^= 0x01
        released, err = drain(bytes(bad))
        assert err is not None, f"flipped byte {offset} was accepted"
        assert_only_authentic_frames_released(released)
        # Magic and version give the format error; everything else is authentication.
        assert isinstance(err, EnvelopeFormatError) == (offset < 8), offset
        if offset >= HEADER_LEN:
            assert len(released) == (offset - HEADER_LEN) // WIRE


def test_truncation_at_any_point_fails() -> None:
    for length in range(len(BLOB)):
        released, err = drain(BLOB[:length])
        assert err is not None, f"envelope truncated to {length} bytes was accepted"
        assert_only_authentic_frames_released(released)


CUTS = {
    "empty": 0,
    "inside-magic": 5,
    "before-frame-size": 8,
    "inside-context-length": 42,
    "inside-commitment": HEADER_LEN - 1,
    "after-header": HEADER_LEN,
    "one-byte-into-frame-0": HEADER_LEN + 1,
    "after-frame-0": HEADER_LEN + WIRE,
    "after-frame-1": HEADER_LEN + 2 * WIRE,
    "final-frame-shorter-than-tag": HEADER_LEN + 2 * WIRE + 15,
    "last-byte-missing": len(BLOB) - 1,
}


@pytest.mark.parametrize("cut", CUTS.values(), ids=CUTS.keys())
def test_truncation_at_frame_boundaries_and_inside_header_and_frames(cut: int) -> None:
    assert_refused(BLOB[:cut])


def test_truncation_at_a_boundary_of_an_exact_multiple_fails() -> None:
    # Two full frames, the second carrying the last flag: dropping it leaves frame 0,
    # which is then read as final and fails, because it was sealed as non-final.
    data = PLAIN[: 2 * FS]
    blob = enc(data)
    released, err = drain(blob[: len(blob) - WIRE])
    assert err is not None
    assert released == []
    assert "final frame 0" in str(err)


def _reorder(frames: list[bytes]) -> list[bytes]:
    return [frames[1], frames[0], frames[2]]


def _drop_middle(frames: list[bytes]) -> list[bytes]:
    return [frames[0], frames[2]]


def _duplicate_first(frames: list[bytes]) -> list[bytes]:
    return [frames[0], frames[0], frames[1], frames[2]]


def _duplicate_middle(frames: list[bytes]) -> list[bytes]:
    return [frames[0], frames[1], frames[1], frames[2]]


def _drop_last(frames: list[bytes]) -> list[bytes]:
    return frames[:2]


def _append_copy_of_final(frames: list[bytes]) -> list[bytes]:
    return [*frames, frames[2]]


def _append_copy_of_first(frames: list[bytes]) -> list[bytes]:
    return [*frames, frames[0]]


def _append_one_byte(frames: list[bytes]) -> list[bytes]:
    return [*frames, b"\x00"]


def _append_a_tag_worth(frames: list[bytes]) -> list[bytes]:
    return [*frames, bytes(TAG_SIZE)]


def _append_a_frame_worth(frames: list[bytes]) -> list[bytes]:
    return [*frames, bytes(WIRE)]


@pytest.mark.parametrize(
    "attack",
    [
        _reorder,
        _drop_middle,
        _duplicate_first,
        _duplicate_middle,
        _drop_last,
        _append_copy_of_final,
        _append_copy_of_first,
        _append_one_byte,
        _append_a_tag_worth,
        _append_a_frame_worth,
    ],
)
def test_moving_dropping_duplicating_or_appending_frames_fails(
    attack: Callable[[list[bytes]], list[bytes]],
) -> None:
    header, frames = split(BLOB)
    assert len(frames) == 3
    assert_refused(header + b"".join(attack(frames)))


def test_appending_a_whole_frame_to_an_exact_multiple_fails() -> None:
    blob = enc(PLAIN[: 2 * FS])
    header, frames = split(blob)
    for extra in (frames[0], frames[1], bytes(WIRE), b"\x01"):
        released, err = drain(header + b"".join(frames) + extra)
        assert err is not None
        assert b"".join(released) == PLAIN[: len(b"".join(released))]


def test_frames_cannot_be_spliced_between_objects_of_the_same_backup() -> None:
    # Same data key, other object (the catalog), and a second encryption of the same
    # object: both have their own salt, so their own enc_key and AAD.
    _, catalog_frames = split(enc(PLAIN, context=CATALOG_CTX), CATALOG_CTX)
    _, again_frames = split(enc(PLAIN))
    header, frames = split(BLOB)
    assert_refused(header + frames[0] + catalog_frames[1] + frames[2])
    assert_refused(header + frames[0] + again_frames[1] + frames[2])
    other_header, _ = split(enc(PLAIN))
    assert_refused(other_header + b"".join(frames))


def test_an_empty_final_frame_after_data_is_refused_even_if_authentic() -> None:
    # Only a key holder (or a buggy writer) can make one; a conforming writer never does.
    header, enc_key = read_header(io.BytesIO(BLOB), KEY, CTX)
    aead, aad = AESGCM(enc_key), hashlib.sha256(header.raw).digest()
    frame0 = aead.encrypt(envelope._nonce(0, False), PLAIN[:FS], aad)
    empty_final = aead.encrypt(envelope._nonce(1, True), b"", aad)
    released, err = drain(header.raw + frame0 + empty_final)
    assert released == [PLAIN[:FS]]  # frame 0 is authentic; the ending is not
    assert err is not None
    assert "empty final frame" in str(err)


# -- keys and contexts ----------------------------------------------------------------


def test_wrong_data_key_fails_at_the_header_before_any_frame_is_read() -> None:
    stream = io.BytesIO(BLOB)
    released: list[bytes] = []
    with pytest.raises(IntegrityError, match="wrong data key") as excinfo:
        for chunk in decrypt_stream(stream, OTHER_KEY, CTX):
            released.append(chunk)
    assert released == []
    assert stream.tell() == HEADER_LEN, "no frame may be read before the key is proven"
    assert type(excinfo.value) is IntegrityError
    assert excinfo.value.exit_code == ExitCode.INTEGRITY


@pytest.mark.parametrize(
    "expected",
    [CATALOG_CTX, OTHER_BACKUP_CTX, "staging/20261126T060000Z-3f9a1c/snapshot"],
    ids=["snapshot-posing-as-catalog", "moved-to-another-backup", "other-cluster"],
)
def test_an_object_bound_to_another_context_is_refused_before_any_plaintext(
    expected: str,
) -> None:
    released, err = drain(BLOB, context=expected)
    assert released == []
    assert err is not None
    assert repr(expected) in str(err) and repr(CTX) in str(err)


def test_catalog_posing_as_snapshot_is_refused() -> None:
    catalog = enc(b'{"paths": []}', context=CATALOG_CTX)
    released, err = drain(catalog, context=CTX)
    assert released == []
    assert err is not None and "context mismatch" in str(err)


def test_rewriting_the_context_in_the_header_breaks_the_commitment() -> None:
    # The attacker edits the clear-text context to match what the reader expects.
    forged_ctx = OTHER_BACKUP_CTX.encode()
    assert len(forged_ctx) == len(CTX.encode())
    forged = BLOB[:43] + forged_ctx + BLOB[43 + len(forged_ctx) :]
    assert parse_header_unauthenticated(forged).context == OTHER_BACKUP_CTX
    released, err = drain(forged, context=OTHER_BACKUP_CTX)
    assert released == []
    assert err is not None and "header authentication failed" in str(err)


def test_without_an_expected_context_the_bound_context_is_reported() -> None:
    header, _ = read_header(io.BytesIO(BLOB), KEY)
    assert header.context == CTX
    assert decrypt_bytes(BLOB, KEY) == PLAIN


def test_unauthenticated_header_shows_the_claim_without_a_key_and_proves_nothing() -> None:
    header = parse_header_unauthenticated(BLOB)
    assert (header.version, header.frame_size, header.salt, header.context) == (
        VERSION,
        FS,
        SALT,
        CTX,
    )
    assert header.raw == BLOB[:HEADER_LEN]
    forged = BLOB[: HEADER_LEN - 32] + bytes(32)  # any commitment parses
    assert parse_header_unauthenticated(forged).context == CTX
    with pytest.raises(IntegrityError, match="header authentication failed"):
        read_header(io.BytesIO(forged), KEY, CTX)
    with pytest.raises(IntegrityError, match="truncated"):
        parse_header_unauthenticated(BLOB[: HEADER_LEN - 1])


# -- streaming: plaintext only after its frame authenticates --------------------------


def test_corrupt_frame_2_of_3_releases_frames_0_and_1_then_fails() -> None:
    bad = bytearray(BLOB)
    bad[HEADER_LEN + 2 * WIRE + 100] ^= 0x80
    stream = decrypt_stream(io.BytesIO(bytes(bad)), KEY, CTX)
    assert next(stream) == PLAIN[:FS]
    assert next(stream) == PLAIN[FS : 2 * FS]
    with pytest.raises(IntegrityError, match="final frame 2 failed authentication"):
        next(stream)


def test_decrypt_stream_checks_the_header_when_called_not_when_iterated() -> None:
    with pytest.raises(IntegrityError):
        decrypt_stream(io.BytesIO(BLOB), OTHER_KEY, CTX)


def test_short_reads_from_a_network_stream_are_not_truncation() -> None:
    class Trickle(io.RawIOBase):
        def __init__(self, data: bytes) -> None:
            self._data, self._pos = data, 0

        def readable(self) -> bool:
            return True

        def readinto(self, b: bytearray) -> int:  # type: ignore[override]
            n = min(len(b), 7, len(self._data) - self._pos)
            b[:n] = self._data[self._pos : self._pos + n]
            self._pos += n
            return n

    assert b"".join(decrypt_stream(Trickle(BLOB), KEY, CTX)) == PLAIN  # type: ignore[arg-type]


@pytest.mark.parametrize("size", [0, 1, FS - 1, FS, FS + 1, 3 * FS, 3 * FS + 1])
def test_reusing_decrypt_yields_the_same_plaintext_through_one_buffer(size: int) -> None:
    data = RNG.randbytes(size)
    frames = [bytes(f) for f in decrypt_stream_reusing(io.BytesIO(enc(data)), KEY, CTX)]
    assert b"".join(frames) == data
    if hasattr(AESGCM, "decrypt_into") and size > FS:
        views = list(decrypt_stream_reusing(io.BytesIO(enc(data)), KEY, CTX))
        assert all(isinstance(v, memoryview) for v in views)
        assert len({id(v.obj) for v in views}) == 1, "one buffer for every frame"


def test_reusing_decrypt_releases_only_authentic_frames() -> None:
    for offset in range(HEADER_LEN, len(BLOB), 509):
        bad = bytearray(BLOB)
        bad[offset] ^= 0x01
        released: list[bytes] = []
        with pytest.raises(IntegrityError):
            for view in decrypt_stream_reusing(io.BytesIO(bytes(bad)), KEY, CTX):
                released.append(bytes(view))
        assert len(released) == (offset - HEADER_LEN) // WIRE
        assert_only_authentic_frames_released(released)


def test_whole_frames_of_immutable_chunks_seal_to_the_same_bytes_as_copied_ones() -> None:
    # Frames lying whole inside a bytes chunk are sealed in place; the same plaintext in
    # a reused bytearray is copied. Both must give the golden envelope.
    in_place = EncryptingReader([PLAIN], KEY, CTX, frame_size=FS, salt=SALT).read()
    copied = EncryptingReader([bytearray(PLAIN)], KEY, CTX, frame_size=FS, salt=SALT).read()
    assert in_place == copied == BLOB


def test_without_its_own_hashes_the_reader_still_counts_and_refuses_the_digests() -> None:
    reader = EncryptingReader(
        [PLAIN], KEY, CTX, frame_size=FS, salt=SALT, hash_plaintext=False, hash_ciphertext=False
    )
    assert reader.read() == BLOB
    assert (reader.plaintext_size, reader.ciphertext_size) == (len(PLAIN), len(BLOB))
    for name in ("plaintext_sha256", "ciphertext_sha256"):
        with pytest.raises(RuntimeError, match="hash_"):
            getattr(reader, name)


# -- the plaintext source fails mid-way ----------------------------------------------


def test_source_exception_propagates_unchanged_and_the_envelope_never_completes() -> None:
    boom = ConnectionResetError("vault closed the snapshot stream")

    def source() -> Iterator[bytes]:
        yield PLAIN[: FS + 10]
        yield PLAIN[FS + 10 : 2 * FS + 10]
        raise boom

    reader = EncryptingReader(source(), KEY, CTX, frame_size=FS)
    written = reader.read(10)
    with pytest.raises(ConnectionResetError) as excinfo:
        while chunk := reader.read(FS):
            written += chunk
    assert excinfo.value is boom
    # A caller that swallows the error must not get a well-formed ending afterwards.
    with pytest.raises(RuntimeError, match="incomplete"):
        reader.read(FS)
    _, err = drain(written)
    assert err is not None


# -- memory: bounded by frames, not by object size ------------------------------------


def test_encrypting_64_mib_keeps_memory_to_a_few_frames() -> None:
    mib = 1 << 20

    def lazy_source() -> Iterator[bytes]:
        for i in range(64):
            yield bytes([i]) * mib

    tracemalloc.start()
    try:
        reader = EncryptingReader(lazy_source(), KEY, CTX)
        total = 0
        while chunk := reader.read(8 * mib):
            total += len(chunk)
            del chunk
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert total == reader.ciphertext_size == envelope_size(64 * mib, CTX)
    assert peak < 5 * 8 * mib, f"peak {peak / mib:.1f} MiB"


def test_decrypting_keeps_memory_to_a_few_frames() -> None:
    mib = 1 << 20
    blob = encrypt_bytes(bytes(32 * mib), KEY, CTX)
    stream = io.BytesIO(blob)
    tracemalloc.start()
    try:
        total = sum(len(chunk) for chunk in decrypt_stream(stream, KEY, CTX))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert total == 32 * mib
    assert peak < 6 * mib, f"peak {peak / mib:.1f} MiB"


# -- not ours, or newer than us -------------------------------------------------------


@pytest.mark.parametrize(
    "blob",
    [b"\x1f\x8b\x08\x00" + bytes(200), b"NOTVAULT" + BLOB[8:], b"VAULTDX" + BLOB[7:], b"VA!"],
    ids=["gzip-snapshot-not-encrypted", "other-magic", "magic-off-by-one", "short-garbage"],
)
def test_unknown_magic_is_a_format_error(blob: bytes) -> None:
    with pytest.raises(
        EnvelopeFormatError, match=r"not a vault-dr encrypted object \(bad magic\)"
    ) as excinfo:
        decrypt_bytes(blob, KEY, CTX)
    assert isinstance(excinfo.value, IntegrityError)
    assert excinfo.value.exit_code == ExitCode.INTEGRITY
    assert repr(CTX) in str(excinfo.value)


def test_a_newer_version_asks_for_an_upgrade() -> None:
    blob = MAGIC + b"\x02" + BLOB[8:]
    with pytest.raises(
        EnvelopeFormatError,
        match="envelope version 2 is newer than this vault-dr supports; upgrade vault-dr",
    ):
        decrypt_bytes(blob, KEY, CTX)
    with pytest.raises(EnvelopeFormatError, match="version 2 is newer"):
        parse_header_unauthenticated(blob)


def test_version_zero_is_a_corrupted_header_not_an_upgrade() -> None:
    with pytest.raises(EnvelopeFormatError, match="corrupted") as excinfo:
        decrypt_bytes(MAGIC + b"\x00" + BLOB[8:], KEY, CTX)
    assert "upgrade" not in str(excinfo.value)


def test_empty_object_is_truncation() -> None:
    with pytest.raises(IntegrityError, match="empty"):
        decrypt_bytes(b"", KEY, CTX)


@pytest.mark.parametrize("log2", [0, 11, 25, 255])
def test_frame_size_out_of_range_is_refused_before_the_commitment(log2: int) -> None:
    # Checked first, so a hostile header cannot make the reader allocate 2**255 bytes.
    blob = BLOB[:8] + bytes([log2]) + BLOB[9:]
    with pytest.raises(IntegrityError, match=rf"frame size 2\*\*{log2} is outside"):
        decrypt_bytes(blob, KEY, CTX)


@pytest.mark.parametrize("length", [0, 1025, 0xFFFF])
def test_context_length_out_of_range_is_refused(length: int) -> None:
    blob = BLOB[:41] + length.to_bytes(2, "big") + BLOB[43:]
    with pytest.raises(IntegrityError, match="context length"):
        decrypt_bytes(blob, KEY, CTX)


def test_frame_counter_overflow_is_checked() -> None:
    assert envelope._nonce(0, False) == bytes(12)
    assert envelope._nonce(envelope.MAX_FRAMES - 1, True) == b"\xff" * 11 + b"\x01"
    with pytest.raises(OverflowError):
        envelope._nonce(envelope.MAX_FRAMES, True)
    with pytest.raises(OverflowError):
        envelope._nonce(-1, False)


# -- caller bugs are refused loudly ---------------------------------------------------


@pytest.mark.parametrize(
    "kwargs",
    [
        {"data_key": bytes(16)},
        {"salt": bytes(31)},
        {"frame_size": 2048},
        {"frame_size": 4095},
        {"frame_size": 1 << 25},
        {"context": ""},
        {"context": "prod/x/snapshot\nFAKE LOG LINE"},
        {"context": "x" * 1025},
        {"context": "é" * 513},
    ],
    ids=lambda kw: next(iter(kw)),
)
def test_writer_refuses_bad_arguments(kwargs: dict[str, object]) -> None:
    args: dict[str, object] = {"data_key": KEY, "context": CTX, "frame_size": FS, "salt": None}
    args.update(kwargs)
    with pytest.raises(ValueError):
        encrypt_bytes(b"data", **args)  # type: ignore[arg-type]


def test_reader_refuses_a_key_of_the_wrong_length() -> None:
    with pytest.raises(ValueError):
        decrypt_bytes(BLOB, bytes(16), CTX)


# -- error messages: one line, name the object, leak nothing --------------------------


def test_error_messages_are_one_line_name_the_object_and_leak_nothing() -> None:
    header, frames = split(BLOB)
    cases = {
        "wrong key": (BLOB, OTHER_KEY, CTX),
        "context": (BLOB, KEY, CATALOG_CTX),
        "frame": (header + frames[1] + frames[0] + frames[2], KEY, CTX),
        "truncated": (BLOB[:-20], KEY, CTX),
        "magic": (b"X" + BLOB[1:], KEY, CTX),
        "header": (BLOB[:60], KEY, CTX),
    }
    for name, (blob, key, context) in cases.items():
        with pytest.raises(IntegrityError) as excinfo:
            decrypt_bytes(blob, key, context)
        message = str(excinfo.value)
        assert "\n" not in message, name
        assert repr(context) in message, name
        for secret in (KEY.hex(), OTHER_KEY.hex(), "TOP-SECRET", PLAIN[21:40].hex()):
            assert secret not in message, name
