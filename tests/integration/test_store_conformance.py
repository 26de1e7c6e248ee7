"""ONE suite every backup store passes (restic's idea): the file store in a temp
directory, and the S3 store on a fresh versioned bucket of a real SeaweedFS.

Streams here have only `read()`: no seek, no tell, no len, like the snapshot pipeline.
A store type is added by adding it to `STORE_PARAMS` and `make_debris`.
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from dr.errors import NotFoundError, SnapshotError, StorageError
from dr.storage import STORE_TYPES, BackupStore, FileStore, S3Store, open_store

MIB = 1024 * 1024
CHUNK = 5 * MIB  # the S3 minimum part size: 20 MiB goes multipart in 4+ parts
STORE_PARAMS = ["file", "s3"]


# --- streams ---------------------------------------------------------------------------


class ReadOnlyStream:
    """`read(n)` only, and at most `max_read` bytes per call (short reads are legal)."""

    def __init__(self, data: bytes, max_read: int = 256 * 1024 + 7) -> None:
        self._data = memoryview(data)
        self._pos = 0
        self._max_read = max_read
        self.reads = 0

    def read(self, n: int = -1) -> bytes:
        self.reads += 1
        if n is None or n < 0:
            n = len(self._data) - self._pos
        n = min(n, self._max_read)
        chunk = bytes(self._data[self._pos : self._pos + n])
        self._pos += len(chunk)
        return chunk


class GreedyStream(ReadOnlyStream):
    """Ignores `n` and hands out big blocks: a careless producer."""

    def read(self, n: int = -1) -> bytes:
        return super().read(-1 if n is None else max(n, 0) + 3 * MIB)


class FailingStream:
    """Raises `error` on read number `fail_at` (s3transfer's test helper idea).
    `before_failing` runs first, to look at the store while the upload is open."""

    def __init__(
        self,
        error: BaseException,
        *,
        fail_at: int,
        block: int = MIB,
        before_failing: Callable[[], None] | None = None,
    ) -> None:
        self.error = error
        self.fail_at = fail_at
        self.block = block
        self.before_failing = before_failing
        self.reads = 0

    def read(self, n: int = -1) -> bytes:
        self.reads += 1
        if self.reads >= self.fail_at:
            if self.before_failing is not None:
                self.before_failing()
            raise self.error
        return os.urandom(min(n, self.block) if n and n > 0 else self.block)


class Boom(Exception):
    """Not a DRError, not an OSError: must arrive unchanged."""


# --- fixtures --------------------------------------------------------------------------


@pytest.fixture(params=STORE_PARAMS)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> BackupStore:
    if request.param == "file":
        return open_store("file", root=tmp_path / "store")
    seaweed = request.getfixturevalue("seaweed")
    bucket = request.getfixturevalue("versioned_bucket")
    return open_store(
        "s3",
        bucket=bucket,
        endpoint_url=seaweed.endpoint_url,
        region=seaweed.region,
        chunk_size=CHUNK,
    )


def versioned(store: BackupStore) -> bool:
    return isinstance(store, S3Store)


def make_debris(store: BackupStore, key: str) -> None:
    """What a killed run leaves: an open multipart upload, a temp file."""
    if isinstance(store, S3Store):
        store._client.create_multipart_upload(Bucket=store.bucket, Key=key)
    elif isinstance(store, FileStore):
        path = store.root.joinpath(*key.split("/"))
        path.parent.mkdir(parents=True, exist_ok=True)
        (path.parent / f".tmp-{path.name}.abc123").write_bytes(b"half")
    else:
        raise AssertionError(f"no debris recipe for {store!r}")


def keys(infos: Iterator[Any]) -> list[str]:
    return [info.key for info in infos]


# --- tests -----------------------------------------------------------------------------


def test_registry_holds_every_store_type() -> None:
    assert set(STORE_TYPES) == set(STORE_PARAMS)
    for name, cls in STORE_TYPES.items():
        assert cls.type_name == name


def test_store_satisfies_protocol(store: BackupStore) -> None:
    assert isinstance(store, BackupStore)
    assert store.describe().startswith(("s3://", "file:///"))
    store.preflight(write=True)
    store.preflight(write=False)


@pytest.mark.parametrize("size", [0, 1, 20 * MIB + 123], ids=["0B", "1B", "20MiB"])
def test_put_stream_round_trip(store: BackupStore, size: int) -> None:
    data = os.urandom(size)
    ref = store.put_stream("rt/cluster/obj.bin", ReadOnlyStream(data))

    assert ref.key == "rt/cluster/obj.bin"
    assert ref.size == size
    assert ref.sha256 == hashlib.sha256(data).hexdigest()
    with store.open_stream(ref.key) as stream:
        assert stream.read() == data
    info = store.stat(ref.key)
    assert info.size == size
    assert info.is_latest
    if versioned(store):
        assert ref.version_id
        assert info.version_id == ref.version_id
        assert [v.version_id for v in store.list_versions(ref.key)] == [ref.version_id]
        with store.open_stream(ref.key, version_id=ref.version_id) as stream:
            assert stream.read() == data
    else:
        assert ref.version_id is None


def test_open_stream_reads_in_pieces(store: BackupStore) -> None:
    data = os.urandom(3 * MIB + 5)
    store.put_stream("pieces", ReadOnlyStream(data))
    got = bytearray()
    with store.open_stream("pieces") as stream:
        while chunk := stream.read(100_003):
            assert len(chunk) <= 100_003
            got += chunk
    assert got == data


def test_greedy_stream_is_evened_out(store: BackupStore) -> None:
    data = os.urandom(12 * MIB + 1)
    ref = store.put_stream("greedy", GreedyStream(data))
    assert ref.size == len(data)
    assert store.get_bytes("greedy") == data


def test_progress_counts_every_byte(store: BackupStore) -> None:
    seen: list[int] = []
    data = os.urandom(6 * MIB)
    store.put_stream("progress", ReadOnlyStream(data), progress=seen.append)
    assert sum(seen) == len(data)
    assert all(n > 0 for n in seen)


def test_overwrite_keeps_old_version(store: BackupStore) -> None:
    old, new = b"old bytes", b"new bytes, longer"
    ref_old = store.put_bytes("same/key", old)
    ref_new = store.put_bytes("same/key", new)

    assert store.get_bytes("same/key") == new
    versions = list(store.list_versions("same/key"))
    if versioned(store):
        assert ref_old.version_id != ref_new.version_id
        assert [v.version_id for v in versions] == [ref_new.version_id, ref_old.version_id]
        assert [v.is_latest for v in versions] == [True, False]
        assert [v.size for v in versions] == [len(new), len(old)]
        with store.open_stream("same/key", version_id=ref_old.version_id) as stream:
            assert stream.read() == old
        assert store.get_bytes("same/key", ref_new.version_id) == new
        assert store.stat("same/key", ref_old.version_id).is_latest is False
    else:
        assert [(v.key, v.size) for v in versions] == [("same/key", len(new))]


@pytest.mark.parametrize("size", [9, 12 * MIB + 7], ids=["single", "multipart"])
def test_write_once_never_replaces_an_object(store: BackupStore, size: int) -> None:
    """`overwrite=False` (snapshot.enc, catalog.enc): a second write to the key fails and
    the first object stays the only version (S3: If-None-Match on PutObject and on
    CompleteMultipartUpload, which the bucket policy in terraform/ demands)."""
    first = os.urandom(size)
    ref = store.put_stream("once/key", ReadOnlyStream(first), overwrite=False)
    with pytest.raises(StorageError, match="exists"):
        store.put_stream("once/key", ReadOnlyStream(os.urandom(size)), overwrite=False)
    assert store.get_bytes("once/key") == first
    versions = list(store.list_versions("once/key"))
    assert len(versions) == 1 and versions[0].version_id == ref.version_id
    assert store.list_incomplete_uploads("once/") == []  # the refused upload was aborted
    # Overwriting stays possible where it is meant to be (a new manifest version).
    store.put_stream("once/key", ReadOnlyStream(b"manifest v2"))
    assert store.get_bytes("once/key") == b"manifest v2"


def test_list_is_sorted_and_prefix_limited(store: BackupStore) -> None:
    names = ["p/b", "p/a/x", "p/a-1", "p/a/y/z", "q/z", "p2/x", "pp"]
    for name in names:
        store.put_bytes(name, name.encode())

    under_p = [k for k in sorted(names) if k.startswith("p/")]
    assert keys(store.list("p/")) == under_p == ["p/a-1", "p/a/x", "p/a/y/z", "p/b"]
    assert keys(store.list("p")) == sorted(k for k in names if k.startswith("p"))
    assert keys(store.list("p/a")) == ["p/a-1", "p/a/x", "p/a/y/z"]
    assert keys(store.list("")) == sorted(names)
    assert keys(store.list("nothing/")) == []
    infos = {i.key: i for i in store.list("p/")}
    assert infos["p/a/y/z"].size == len(b"p/a/y/z")
    assert infos["p/a/y/z"].last_modified.tzinfo is not None


def test_missing_key_is_not_found(store: BackupStore) -> None:
    store.put_bytes("there", b"x")
    with pytest.raises(NotFoundError):
        store.stat("missing")
    with pytest.raises(NotFoundError):
        store.open_stream("missing")
    with pytest.raises(NotFoundError):
        store.get_bytes("dir/missing")
    with pytest.raises(NotFoundError):
        store.stat("there", version_id="0123456789abcdef0123456789abcdef")
    with pytest.raises(NotFoundError, match="missing"):
        store.open_stream("missing")


def test_delete(store: BackupStore) -> None:
    store.put_bytes("del/a/one", b"1")
    store.put_bytes("del/two", b"2")
    store.delete("del/a/one")
    with pytest.raises(NotFoundError):
        store.stat("del/a/one")
    assert keys(store.list("del/")) == ["del/two"]
    store.delete("del/a/one")  # again: not an error
    store.delete("never/was")
    if isinstance(store, FileStore):
        assert not (store.root / "del" / "a").exists()  # empty dirs pruned


def test_delete_version(store: BackupStore) -> None:
    ref_old = store.put_bytes("dv", b"old")
    ref_new = store.put_bytes("dv", b"new")
    for missing in ("0123456789abcdef0123456789abcdef", "00000000000000000000000000000000"):
        store.delete("dv", version_id=missing)  # no such version: nothing changes
        assert store.get_bytes("dv") == b"new"
    if versioned(store):
        store.delete("dv", version_id=ref_new.version_id)
        assert store.get_bytes("dv") == b"old"
        assert [v.version_id for v in store.list_versions("dv")] == [ref_old.version_id]
    else:
        assert ref_old.version_id is ref_new.version_id is None


@pytest.mark.parametrize(
    "error",
    [Boom("stream broke"), SnapshotError("snapshot truncated"), OSError(5, "EIO")],
    ids=["plain", "SnapshotError", "OSError"],
)
@pytest.mark.parametrize("fail_at", [1, 9], ids=["first-read", "past-first-part"])
def test_failing_stream_leaves_nothing(
    store: BackupStore, error: BaseException, fail_at: int
) -> None:
    with pytest.raises(type(error)) as excinfo:
        store.put_stream("fail/cluster/snapshot.enc", FailingStream(error, fail_at=fail_at))
    assert excinfo.value is error

    with pytest.raises(NotFoundError):
        store.stat("fail/cluster/snapshot.enc")
    assert keys(store.list("fail/")) == []
    assert keys(store.list_versions("fail/")) == []
    assert store.list_incomplete_uploads("fail/") == []
    assert store.list_incomplete_uploads("") == []


def test_put_bytes_get_bytes(store: BackupStore) -> None:
    payload = b'{"format": 1, "backup_id": "20261126T060000Z-3f9a1c"}'
    ref = store.put_bytes("m/manifest.json", payload, metadata={"backup-id": "x"})
    assert ref.size == len(payload)
    assert ref.sha256 == hashlib.sha256(payload).hexdigest()
    assert store.get_bytes("m/manifest.json") == payload
    assert store.get_bytes("m/manifest.json", ref.version_id if versioned(store) else None)


def test_incomplete_uploads_listed_and_aborted(store: BackupStore) -> None:
    make_debris(store, "inc/c1/20261126T060000Z-aa/snapshot.enc")
    make_debris(store, "other/c1/x/catalog.enc")
    store.put_bytes("inc/c1/20261126T060000Z-aa/manifest.json", b"{}")

    assert store.list_incomplete_uploads("inc/") == ["inc/c1/20261126T060000Z-aa/snapshot.enc"]
    assert store.list_incomplete_uploads("inc/c1/20261126T060000Z-aa/snap") == [
        "inc/c1/20261126T060000Z-aa/snapshot.enc"
    ]
    assert keys(store.list("inc/")) == ["inc/c1/20261126T060000Z-aa/manifest.json"]
    assert store.abort_incomplete_uploads("inc/") == 1
    assert store.list_incomplete_uploads("inc/") == []
    assert store.list_incomplete_uploads("") == ["other/c1/x/catalog.enc"]
    assert store.get_bytes("inc/c1/20261126T060000Z-aa/manifest.json") == b"{}"


@pytest.mark.parametrize("bad", ["", "/abs", "../up", "a/../b", "a//b", "a/./b", "a\\b"])
def test_bad_keys_refused(store: BackupStore, bad: str) -> None:
    with pytest.raises(StorageError, match="invalid object key"):
        store.put_bytes(bad, b"x")
    with pytest.raises(StorageError, match="invalid object key"):
        store.stat(bad)


def test_file_store_modes_and_no_temp_left(tmp_path: Path) -> None:
    root = tmp_path / "deep" / "root"
    store = FileStore(root)
    store.preflight(write=True)
    store.put_stream("a/b/c.bin", ReadOnlyStream(os.urandom(MIB)))

    def mode(path: Path) -> int:
        return stat.S_IMODE(path.stat().st_mode)

    for directory in (tmp_path / "deep", root, root / "a", root / "a" / "b"):
        assert mode(directory) == 0o700, directory
    assert mode(root / "a" / "b" / "c.bin") == 0o600
    assert sorted(p.name for p in (root / "a" / "b").iterdir()) == ["c.bin"]
    with pytest.raises(StorageError, match="temp files"):
        store.put_bytes("a/.tmp-x", b"")


def test_file_store_preflight_read_of_missing_dir(tmp_path: Path) -> None:
    with pytest.raises(StorageError, match="does not exist"):
        FileStore(tmp_path / "nope").preflight(write=False)
