"""dr.vault.snapshot: the streaming raft snapshot checker.

The real fixture (tests/data/snapshot-small.snap, see tests/data/README.md) comes from a
throwaway OpenBao; tarfile reads it here as an independent oracle. Broken snapshots are
built from its members with tarfile and gzip in memory.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import random
import tarfile
import tracemalloc
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from dr.errors import ExitCode, SnapshotError
from dr.vault.snapshot import (
    MEMBERS,
    SnapshotChecker,
    SnapshotInfo,
    _number,
    check_file,
    checked_stream,
)

FIXTURE = Path(__file__).resolve().parents[1] / "data" / "snapshot-small.snap"
RAW = FIXTURE.read_bytes()


def _fixture_members() -> dict[str, bytes]:
    with tarfile.open(fileobj=io.BytesIO(RAW), mode="r:gz") as tar:
        out = {}
        for m in tar.getmembers():
            f = tar.extractfile(m)
            assert f is not None
            out[m.name] = f.read()
        return out


ORIG = _fixture_members()


def sums_for(meta: bytes, state: bytes) -> bytes:
    return (
        f"{hashlib.sha256(state).hexdigest()}  state.bin\n"
        f"{hashlib.sha256(meta).hexdigest()}  meta.json\n"
    ).encode()


def build(
    members: list[tuple[str, bytes]] | None = None,
    *,
    fmt: int = tarfile.PAX_FORMAT,
    level: int = 6,
) -> bytes:
    """A gzip'd tar of `members` (default: the fixture's four, in Vault's order)."""
    if members is None:
        members = [(name, ORIG[name]) for name in MEMBERS]
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o600
            tar.addfile(info, io.BytesIO(data))
    return gzip.compress(buf.getvalue(), compresslevel=level)


def with_members(**changes: bytes) -> list[tuple[str, bytes]]:
    keys = {"meta": "meta.json", "state": "state.bin", "sums": "SHA256SUMS"}
    data = dict(ORIG)
    for key, value in changes.items():
        data[keys[key]] = value
    return [(name, data[name]) for name in MEMBERS]


def chunked(data: bytes, size: int) -> Iterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i : i + size]


def check(data: bytes, size: int = 4096) -> SnapshotInfo:
    checker = SnapshotChecker()
    for chunk in chunked(data, size):
        checker.feed(chunk)
    return checker.finish()


def fails(data: bytes, match: str, size: int = 4096) -> SnapshotError:
    with pytest.raises(SnapshotError, match=match) as exc:
        check(data, size)
    assert exc.value.exit_code == ExitCode.SNAPSHOT
    assert "\n" not in str(exc.value)
    return exc.value


# -- the real snapshot -----------------------------------------------------------------


def test_real_fixture_passes_with_right_values() -> None:
    info = check_file(FIXTURE)
    meta = json.loads(ORIG["meta.json"])
    assert info.index == meta["Index"] > 0
    assert info.term == meta["Term"] > 0
    assert info.version == meta["Version"] == 1
    assert info.meta == meta
    assert {"Version", "ID", "Index", "Term", "Configuration", "Size"} <= set(meta)
    assert info.members == ("meta.json", "state.bin", "SHA256SUMS", "SHA256SUMS.sealed")
    assert info.state_sha256 == hashlib.sha256(ORIG["state.bin"]).hexdigest()
    assert f"{info.state_sha256}  state.bin" in ORIG["SHA256SUMS"].decode()
    assert info.state_size == len(ORIG["state.bin"]) == meta["Size"]
    assert info.compressed_size == len(RAW)
    assert info.sha256 == hashlib.sha256(RAW).hexdigest()


@pytest.mark.parametrize("size", [1, 7, 512, 4096, 1 << 20])
def test_any_chunking_gives_the_same_info(size: int) -> None:
    assert check(RAW, size) == check_file(FIXTURE)


def test_check_file_takes_str_path_and_stream() -> None:
    expected = check_file(FIXTURE)
    assert check_file(str(FIXTURE)) == expected
    assert check_file(io.BytesIO(RAW)) == expected


def test_rebuilt_by_tarfile_passes() -> None:
    """Python's tar (PAX format, record padding) and gzip framing are accepted too."""
    info = check(build())
    assert info.state_sha256 == check_file(FIXTURE).state_sha256
    assert check(build(fmt=tarfile.GNU_FORMAT)).members == MEMBERS
    assert check(build(fmt=tarfile.USTAR_FORMAT, level=0)).members == MEMBERS


def test_members_in_another_order_pass() -> None:
    order = ["SHA256SUMS.sealed", "SHA256SUMS", "state.bin", "meta.json"]
    info = check(build([(n, ORIG[n]) for n in order]))
    assert info.members == tuple(order)
    assert info.index == check_file(FIXTURE).index


# -- what is not a gzip'd snapshot ------------------------------------------------------


def test_empty_body() -> None:
    fails(b"", "the snapshot is empty: a standby node.*active node")
    checker = SnapshotChecker()
    checker.feed(b"")
    with pytest.raises(SnapshotError, match="empty"):
        checker.finish()


@pytest.mark.parametrize(
    ("body", "looks"),
    [
        (b'{"errors":["permission denied s3cr3t"]}\n', "JSON"),
        (b"<html><body>502 Bad Gateway s3cr3t</body></html>", "HTML"),
        (b"Bad Gateway s3cr3t", "plain text"),
        (b"\x1f\x00binary s3cr3t", "gzip magic"),
        (b"\x00\x00\x00\x00s3cr3t", "gzip magic"),
    ],
)
def test_non_gzip_body(body: bytes, looks: str) -> None:
    for size in (1, 4096):
        err = fails(body, f"not gzip data .*{looks}", size)
        assert "s3cr3t" not in str(err)


def test_non_gzip_fails_on_the_first_chunk() -> None:
    checker = SnapshotChecker()
    with pytest.raises(SnapshotError, match="not gzip"):
        checker.feed(b"<")


def test_gzip_of_something_else() -> None:
    fails(gzip.compress(b"hello " * 1000), "bad checksum")
    fails(gzip.compress(b""), "tar archive is incomplete")


def test_corrupt_deflate_data() -> None:
    data = bytearray(RAW)
    data[len(data) // 2] ^= 0xFF
    fails(bytes(data), "corrupt")


def test_gzip_crc_mismatch() -> None:
    data = bytearray(RAW)
    data[-6] ^= 0x01  # inside the CRC32 of the trailer
    fails(bytes(data), r"gzip stream is corrupt \(.*\)")


# -- truncation and trailing data -------------------------------------------------------


@pytest.mark.parametrize("cut", sorted({*range(1, len(RAW), len(RAW) // 20), len(RAW) - 1}))
def test_truncated(cut: int) -> None:
    err = fails(RAW[:cut], "truncated|incomplete|corrupt")
    if cut > len(RAW) // 2:
        assert "truncated (gzip stream ended early)" in str(err)


def test_truncated_tar_inside_whole_gzip() -> None:
    tar = zlib.decompress(RAW, wbits=31)
    for cut in (0, 100, 512, 1024 + 7, len(tar) - 1024, len(tar) - 512):
        fails(gzip.compress(tar[:cut]), "tar archive is incomplete|lacks")


def test_trailing_garbage_after_gzip() -> None:
    fails(RAW + b"x", "trailing data after its gzip stream")
    fails(RAW + b"\0" * 10, "trailing data")
    fails(RAW + gzip.compress(b""), "trailing data")  # a second gzip member
    checker = SnapshotChecker()
    checker.feed(RAW)
    with pytest.raises(SnapshotError, match="trailing"):
        checker.feed(b"\n")


def test_data_after_tar_end_inside_gzip() -> None:
    tar = zlib.decompress(RAW, wbits=31)
    assert check(gzip.compress(tar + bytes(9216))).members == MEMBERS  # zero padding
    fails(gzip.compress(tar + b"more"), "data after the end of its tar")


# -- members ----------------------------------------------------------------------------


def test_missing_sealed_sums() -> None:
    members = [(n, ORIG[n]) for n in MEMBERS if n != "SHA256SUMS.sealed"]
    fails(build(members), "lacks SHA256SUMS.sealed: standby nodes")


@pytest.mark.parametrize("missing", ["meta.json", "state.bin", "SHA256SUMS"])
def test_missing_member(missing: str) -> None:
    members = [(n, ORIG[n]) for n in MEMBERS if n != missing]
    fails(build(members), f"lacks {missing}: it is not a whole raft snapshot")


def test_extra_member() -> None:
    fails(build([*with_members(), ("notes.txt", b"hi")]), "unexpected member 'notes.txt'")
    fails(build([("./meta.json", ORIG["meta.json"]), *with_members()]), "unexpected member")


def test_duplicate_member() -> None:
    members = with_members()
    fails(build([*members, members[3]]), "holds member 'SHA256SUMS.sealed' twice")
    fails(build([members[0], *members]), "holds member 'meta.json' twice")


def test_directory_member() -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        d = tarfile.TarInfo("state.bin")
        d.type = tarfile.DIRTYPE
        tar.addfile(d)
    fails(gzip.compress(buf.getvalue()), "'state.bin/' is not a regular file \\(tar type 5\\)")


def test_pax_path_and_gnu_long_name_are_honoured() -> None:
    buf = io.BytesIO()
    state = ORIG["state.bin"]
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name in ("meta.json", "SHA256SUMS", "SHA256SUMS.sealed"):
            info = tarfile.TarInfo(name)
            info.size = len(ORIG[name])
            tar.addfile(info, io.BytesIO(ORIG[name]))
        decoy = tarfile.TarInfo("decoy")
        decoy.size = len(state)
        decoy.pax_headers = {"path": "state.bin", "comment": "x" * 600}
        tar.addfile(decoy, io.BytesIO(state))
    assert check(gzip.compress(buf.getvalue())).members[-1] == "state.bin"

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for name in ("meta.json", "SHA256SUMS", "SHA256SUMS.sealed"):
            info = tarfile.TarInfo(name)
            info.size = len(ORIG[name])
            tar.addfile(info, io.BytesIO(ORIG[name]))
        long_name = tarfile.TarInfo("././@LongLink")
        long_name.type = tarfile.GNUTYPE_LONGNAME
        long_name.size = len(b"state.bin\0")
        tar.addfile(long_name, io.BytesIO(b"state.bin\0"))
        decoy = tarfile.TarInfo("decoy")
        decoy.size = len(state)
        tar.addfile(decoy, io.BytesIO(state))
    assert check(gzip.compress(buf.getvalue())).members[-1] == "state.bin"


def test_pax_global_header_is_refused_like_vault_does() -> None:
    buf = io.BytesIO()
    with tarfile.open(
        fileobj=buf, mode="w", format=tarfile.PAX_FORMAT, pax_headers={"comment": "g"}
    ) as tar:
        for name, data in with_members():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    fails(gzip.compress(buf.getvalue()), "PAX global header")


def test_bad_header_checksum() -> None:
    tar = bytearray(zlib.decompress(RAW, wbits=31))
    tar[1024 + 100] ^= 0x01  # the mode field of state.bin's header
    fails(gzip.compress(bytes(tar)), "bad checksum")


def test_oversized_kept_member_refused_from_its_header() -> None:
    """The cap applies before any of the body is read: no big allocation."""
    tar = zlib.decompress(RAW, wbits=31)
    header = bytearray(tar[:512])
    header[124:136] = b"%011o\0" % (2 << 20)
    header[148:156] = b" " * 8
    header[148:156] = b"%06o\0 " % sum(header)
    checker = SnapshotChecker()
    with pytest.raises(SnapshotError, match=r"meta\.json is larger than"):
        checker.feed(gzip.compress(bytes(header)))


def test_base256_size_field() -> None:
    assert _number(b"\x80" + (9 << 30).to_bytes(11, "big")) == 9 << 30
    assert _number(b"00000000273\0") == 187
    assert _number(b"\0" * 12) == 0
    with pytest.raises(SnapshotError):
        _number(b"0000000z273\0")


# -- content ----------------------------------------------------------------------------


def test_state_tampered() -> None:
    state = bytearray(ORIG["state.bin"])
    state[len(state) // 3] ^= 0x01
    fails(build(with_members(state=bytes(state))), "SHA256SUMS does not match state.bin")


def test_state_tampered_fails_before_the_end() -> None:
    """With SHA256SUMS before state.bin, the mismatch shows at state.bin's end."""
    state = bytearray(ORIG["state.bin"])
    state[0] ^= 0x01
    order = ["SHA256SUMS", "meta.json", "state.bin", "SHA256SUMS.sealed"]
    data = {**ORIG, "state.bin": bytes(state)}
    tar = zlib.decompress(build([(n, data[n]) for n in order]), wbits=31)
    checker = SnapshotChecker()
    with pytest.raises(SnapshotError, match=r"does not match state\.bin"):
        checker.feed(gzip.compress(tar[: len(tar) - 2048]))


def test_meta_tampered() -> None:
    meta = ORIG["meta.json"].replace(b'"Term":', b'"Term":1')
    assert meta != ORIG["meta.json"]
    fails(build(with_members(meta=meta)), "SHA256SUMS does not match meta.json")


def test_meta_size_must_match_state() -> None:
    meta = json.loads(ORIG["meta.json"])
    meta["Size"] += 1
    raw = json.dumps(meta).encode()
    fails(
        build(with_members(meta=raw, sums=sums_for(raw, ORIG["state.bin"]))),
        "Size does not match the length of state.bin",
    )


@pytest.mark.parametrize(
    ("meta", "match"),
    [
        (b"not json s3cr3t", "not valid JSON"),
        (b"\xff\xfe", "not valid JSON"),
        (b"[1, 2]", "not a JSON object"),
        (b'{"Term": 3, "Size": 1}', "lacks a valid Index"),
        (b'{"Index": 84, "Term": "3"}', "lacks a valid Term"),
        (b'{"Index": true, "Term": 3}', "lacks a valid Index"),
        (b'{"Index": 84, "Term": 3, "Version": "x"}', "lacks a valid Version"),
        (b'{"Index": 84, "Term": 3, "Size": "big"}', "Size that is not a number"),
    ],
)
def test_meta_invalid(meta: bytes, match: str) -> None:
    err = fails(build(with_members(meta=meta, sums=sums_for(meta, ORIG["state.bin"]))), match)
    assert "s3cr3t" not in str(err)


def test_meta_without_optional_fields() -> None:
    meta = b'{"Index": 7, "Term": 2}'
    info = check(build(with_members(meta=meta, sums=sums_for(meta, ORIG["state.bin"]))))
    assert (info.index, info.term, info.version) == (7, 2, None)


def test_sums_variants_accepted() -> None:
    meta_sha = hashlib.sha256(ORIG["meta.json"]).hexdigest()
    state_sha = hashlib.sha256(ORIG["state.bin"]).hexdigest()
    for sums in (
        f"{meta_sha}  meta.json\n{state_sha}  state.bin\n",
        f"{state_sha}  state.bin\r\n{meta_sha.upper()}  meta.json",
    ):
        assert check(build(with_members(sums=sums.encode()))).index > 0


@pytest.mark.parametrize(
    ("sums", "match"),
    [
        (b"", "no line for"),
        (b"garbage\n", "malformed"),
        (b"{meta}  meta.json\n", "no line for state.bin"),
        (b"{meta}  meta.json\n{state}  state.bin\n\n", "malformed"),
        (b"{meta}  meta.json\n{state}  state.bin\n{state}  other.bin\n", "unexpected file"),
        (b"{meta}  meta.json\n{state}  state.bin\n{state}  state.bin\n", "state.bin twice"),
        (b"{meta}  meta.json\n{state}state.bin\n", "malformed"),
        (b"{meta}  meta.json\n{short}  state.bin\n", "malformed"),
        (b"{meta}  meta.json\n{state}  state.bin\n\xff\n", "malformed"),
        (b"{meta}  meta.json\n{meta}  state.bin\n", "does not match state.bin"),
    ],
)
def test_sums_malformed(sums: bytes, match: str) -> None:
    text = (
        sums.replace(b"{meta}", hashlib.sha256(ORIG["meta.json"]).hexdigest().encode())
        .replace(b"{state}", hashlib.sha256(ORIG["state.bin"]).hexdigest().encode())
        .replace(b"{short}", b"ab" * 31)
    )
    fails(build(with_members(sums=text)), match)


# -- errors are sticky; streams ---------------------------------------------------------


def test_error_is_sticky() -> None:
    checker = SnapshotChecker()
    with pytest.raises(SnapshotError) as first:
        checker.feed(b"<html>")
    with pytest.raises(SnapshotError) as again:
        checker.feed(RAW)
    assert again.value is first.value
    with pytest.raises(SnapshotError):
        checker.finish()


def test_finish_is_idempotent_and_feed_after_finish_is_a_bug() -> None:
    checker = SnapshotChecker()
    checker.feed(RAW)
    info = checker.finish()
    assert checker.finish() is info is checker.info
    with pytest.raises(RuntimeError):
        checker.feed(b"x")


def test_checked_stream_passes_bytes_through() -> None:
    checker = SnapshotChecker()
    out = list(checked_stream(chunked(RAW, 1000), checker))
    assert b"".join(out) == RAW
    assert out == list(chunked(RAW, 1000))
    assert checker.info == check_file(FIXTURE)
    assert b"".join(checked_stream([RAW])) == RAW


def test_checked_stream_raises_before_a_clean_end() -> None:
    seen: list[bytes] = []
    with pytest.raises(SnapshotError, match="truncated"):
        for chunk in checked_stream(chunked(RAW[:-1], 1000)):
            seen.append(chunk)
    assert b"".join(seen) == RAW[:-1]  # all passed through, then the error, never a clean end


def test_checked_stream_withholds_the_chunk_that_fails() -> None:
    seen: list[bytes] = []
    with pytest.raises(SnapshotError, match="trailing"):
        for chunk in checked_stream([RAW, b"junk"]):
            seen.append(chunk)
    assert seen == [RAW]


def test_checked_stream_of_nothing() -> None:
    with pytest.raises(SnapshotError, match="empty"):
        list(checked_stream([]))


# -- memory -----------------------------------------------------------------------------


def big_snapshot(state_size: int, chunk: int = 1 << 20) -> Iterator[bytes]:
    """Stream a gzip'd snapshot with `state_size` random bytes of state.bin, as Vault
    orders it (SHA256SUMS after state.bin), never holding more than one chunk."""
    rng = random.Random(7)
    gz = zlib.compressobj(0, zlib.DEFLATED, 31)  # level 0: random data, keep it fast

    def header(name: str, size: int) -> bytes:
        info = tarfile.TarInfo(name)
        info.size, info.mode = size, 0o600
        return info.tobuf(format=tarfile.USTAR_FORMAT)

    def padded(data: bytes) -> bytes:
        return data + bytes(-len(data) % 512)

    meta = json.dumps({"Version": 1, "ID": "big", "Index": 99, "Term": 4, "Size": state_size})
    meta_b = meta.encode()
    yield gz.compress(header("meta.json", len(meta_b)) + padded(meta_b))
    yield gz.compress(header("state.bin", state_size))
    digest = hashlib.sha256()
    left = state_size
    while left:
        piece = rng.randbytes(min(chunk, left))
        left -= len(piece)
        digest.update(piece)
        yield gz.compress(piece)
    yield gz.compress(bytes(-state_size % 512))
    sums = (
        f"{hashlib.sha256(meta_b).hexdigest()}  meta.json\n{digest.hexdigest()}  state.bin\n"
    ).encode()
    yield gz.compress(header("SHA256SUMS", len(sums)) + padded(sums))
    yield gz.compress(header("SHA256SUMS.sealed", 3) + padded(b"abc") + bytes(1024))
    yield gz.flush()


def test_large_snapshot_memory_is_bounded() -> None:
    size = 50 << 20
    checker = SnapshotChecker()
    tracemalloc.start()
    try:
        total = 0
        for chunk in checked_stream(big_snapshot(size), checker):
            total += len(chunk)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    info = checker.info
    assert info is not None
    assert (info.index, info.term, info.state_size) == (99, 4, size)
    assert info.compressed_size == total
    assert peak < 8 << 20, f"peak {peak / 2**20:.1f} MiB"


def test_decompression_bomb_memory_is_bounded() -> None:
    """A tiny stream that inflates to 100 MiB of zeros in state.bin: bounded memory, and
    refused (SHA256SUMS never arrives)."""
    gz = zlib.compressobj(9, zlib.DEFLATED, 31)
    info = tarfile.TarInfo("state.bin")
    info.size = 100 << 20
    bomb = gz.compress(info.tobuf(format=tarfile.USTAR_FORMAT))
    zeros = bytes(1 << 20)
    bomb += b"".join(gz.compress(zeros) for _ in range(100)) + gz.flush()
    assert len(bomb) < 1 << 20
    tracemalloc.start()
    try:
        with pytest.raises(SnapshotError, match="tar archive is incomplete"):
            check(bomb, 1 << 20)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 8 << 20, f"peak {peak / 2**20:.1f} MiB"
