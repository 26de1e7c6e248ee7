"""dr.ops.pipeline: the backup's threaded check-and-encrypt pipeline, without servers.

The envelope it makes must be the one EncryptingReader makes (docs/format.md), every
check must still cover the whole snapshot, a failure anywhere must reach the reader
before the end of the stream, and the queues must bound what is held however slow the
reader is. tests/integration/test_backup_pipeline.py runs it against OpenBao and S3.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from collections.abc import Iterator

import pytest

from dr.crypto.envelope import decrypt_bytes, encrypt_bytes
from dr.errors import IntegrityError, SnapshotError
from dr.ops.pipeline import PipelineAborted, SnapshotPipeline
from tests.unit.test_snapshot_check import ORIG, build, chunked, sums_for

KEY = bytes(range(32))
CONTEXT = "prod/20261126T060000Z-3f9a1c/snapshot.enc"
FRAME = 4096  # the smallest frame the format allows: many frames from little data


def snapshot(state_size: int) -> bytes:
    """A valid raft snapshot whose state.bin is `state_size` random bytes."""
    state = os.urandom(state_size)
    meta = json.loads(ORIG["meta.json"])
    meta["Size"] = state_size
    meta_raw = json.dumps(meta).encode()
    return build(
        [
            ("meta.json", meta_raw),
            ("state.bin", state),
            ("SHA256SUMS", sums_for(meta_raw, state)),
            ("SHA256SUMS.sealed", ORIG["SHA256SUMS.sealed"]),
        ]
    )


def pipeline(chunks: Iterator[bytes], **options: int) -> SnapshotPipeline:
    return SnapshotPipeline(chunks, KEY, CONTEXT, frame_size=FRAME, **options)


def read_all(pipe: SnapshotPipeline, block: int = 10_000) -> bytes:
    out = bytearray()
    while piece := pipe.read(block):
        out += piece
    return bytes(out)


def no_stage_left(pipe: SnapshotPipeline) -> bool:
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        if not any(t.is_alive() for t in pipe._threads):
            return True
        time.sleep(0.02)
    return False


def test_envelope_is_byte_identical_to_the_encrypting_reader() -> None:
    raw = snapshot(300_000)
    with pipeline(chunked(raw, 7_000)) as pipe:
        out = read_all(pipe, 5 * 1024 * 1024 + 1)
    # Same key, context, frame size and salt: the format leaves no other freedom.
    salt = pipe.envelope.header.salt
    assert out == encrypt_bytes(raw, KEY, CONTEXT, frame_size=FRAME, salt=salt)
    assert decrypt_bytes(out, KEY, CONTEXT) == raw
    info = pipe.checker.info
    assert info is not None and info.state_size == 300_000
    assert pipe.envelope.plaintext_size == len(raw)
    # Hashed once, by the checker, for the manifest: the bytes the envelope sealed.
    assert pipe.plaintext_sha256 == hashlib.sha256(raw).hexdigest() == info.sha256
    assert pipe.envelope.ciphertext_size == len(out)
    assert no_stage_left(pipe)


@pytest.mark.parametrize("block", [1, 4096, 4097, 1 << 20])
def test_reads_of_any_size_return_exactly_that_many(block: int) -> None:
    raw = snapshot(40_000)
    with pipeline(chunked(raw, 3_000)) as pipe:
        sizes = []
        out = bytearray()
        while piece := pipe.read(block):
            sizes.append(len(piece))
            out += piece
    assert all(size == block for size in sizes[:-1])
    assert decrypt_bytes(bytes(out), KEY, CONTEXT) == raw


def test_read_all_at_once() -> None:
    raw = snapshot(20_000)
    with pipeline(chunked(raw, 4_096)) as pipe:
        assert decrypt_bytes(pipe.read(), KEY, CONTEXT) == raw
        assert pipe.read(10) == b""


def test_a_check_failing_mid_stream_reaches_the_reader_and_the_stream_never_ends() -> None:
    raw = bytearray(snapshot(400_000))
    raw[len(raw) // 2] ^= 0xFF  # corrupt deflate data (or its CRC): the check fails
    with pipeline(chunked(bytes(raw), 4_096)) as pipe:
        got = bytearray()
        with pytest.raises(SnapshotError) as exc:
            while piece := pipe.read(4_096):
                got += piece
        # The same object the checker raised, and every later read says so too.
        assert exc.value is pipe.error
        with pytest.raises(SnapshotError):
            pipe.read(1)
    assert no_stage_left(pipe)
    # What was handed out before the failure is no whole envelope: its final frame
    # is never sealed.
    with pytest.raises(IntegrityError):
        decrypt_bytes(bytes(got), KEY, CONTEXT)


def test_a_check_failing_only_at_the_end_still_holds_back_the_final_frame() -> None:
    """A truncated gzip stream is only known bad at finish(): the envelope's final
    frame, and so the end of the stream, must wait for that verdict."""
    raw = snapshot(200_000)
    cut = raw[: len(raw) - 10]  # inside the gzip trailer: every byte inflates fine
    with pipeline(chunked(cut, 4_096)) as pipe:
        got = bytearray()
        with pytest.raises(SnapshotError, match="truncated"):
            while piece := pipe.read(4_096):
                got += piece
    assert len(got) < len(encrypt_bytes(cut, KEY, CONTEXT, frame_size=FRAME))
    with pytest.raises(IntegrityError):
        decrypt_bytes(bytes(got), KEY, CONTEXT)


def test_a_stream_that_dies_mid_way_raises_its_own_error() -> None:
    raw = snapshot(200_000)
    broke = SnapshotError("the snapshot stream from test broke off; nothing was stored")

    def dies() -> Iterator[bytes]:
        yield from chunked(raw[: len(raw) // 2], 4_096)
        raise broke

    with pipeline(dies()) as pipe, pytest.raises(SnapshotError) as exc:
        read_all(pipe)
    assert exc.value is broke
    assert no_stage_left(pipe)


def test_the_source_is_closed_in_the_read_thread() -> None:
    closed: list[str] = []
    raw = snapshot(50_000)

    def source() -> Iterator[bytes]:
        try:
            yield from chunked(raw, 4_096)
        finally:
            closed.append(threading.current_thread().name)

    with pipeline(source()) as pipe:
        read_all(pipe)
    assert closed == ["dr-snapshot-read"]


@pytest.mark.parametrize(("depth", "sealed_depth"), [(1, 1), (3, 4), (6, 2)])
def test_queue_depths_bound_what_a_slow_reader_makes_it_hold(depth: int, sealed_depth: int) -> None:
    """A reader that stops reading stops the stages after a bounded number of chunks:
    the memory bound of the module docstring, counted in chunks pulled from Vault."""
    raw = snapshot(2_000_000)
    pulled = 0

    def counting() -> Iterator[bytes]:
        nonlocal pulled
        for chunk in chunked(raw, FRAME):
            pulled += 1
            yield chunk

    with pipeline(counting(), depth=depth, sealed_depth=sealed_depth) as pipe:
        first = pipe.read(FRAME)  # started, then the reader stalls
        time.sleep(0.6)
        stalled_at = pulled
        time.sleep(0.3)
        assert pulled == stalled_at  # nothing moves while nobody reads
        # Chunks in the seal queue, held by the read stage and the envelope (current
        # + lookahead), frames queued and held; the check stage runs ahead by at most
        # its queue, which the read stage waits on too.
        assert stalled_at <= depth + sealed_depth + 5, stalled_at
        rest = read_all(pipe)
    assert decrypt_bytes(first + rest, KEY, CONTEXT) == raw
    assert pulled == -(-len(raw) // FRAME)


def test_abort_releases_a_reader_blocked_on_a_stalled_stream() -> None:
    release = threading.Event()

    def stalls() -> Iterator[bytes]:
        yield snapshot(10_000)[:100]
        release.wait(30)  # a Vault that stops sending mid-body

    pipe = pipeline(stalls()).start()
    outcome: list[BaseException] = []

    def reader() -> None:
        try:
            pipe.read(1 << 20)
        except BaseException as exc:
            outcome.append(exc)

    thread = threading.Thread(target=reader, daemon=True)
    thread.start()
    time.sleep(0.3)
    assert thread.is_alive()  # blocked: nothing to read
    pipe.abort()  # what S3Store does when its upload fails or Ctrl-C arrives
    thread.join(2)
    assert not thread.is_alive()
    assert len(outcome) == 1 and isinstance(outcome[0], PipelineAborted)
    release.set()
    pipe.close()
    assert no_stage_left(pipe)


def test_threads_are_daemons() -> None:
    pipe = pipeline(iter([snapshot(1_000)]))
    assert all(t.daemon for t in pipe._threads)
    pipe.close()  # never started: nothing to join


def test_depths_must_be_positive() -> None:
    with pytest.raises(ValueError):
        pipeline(iter([]), depth=0)


def test_wait_drained_is_true_once_the_store_read_the_whole_checked_envelope() -> None:
    raw = snapshot(200_000)
    with pipeline(chunked(raw, 4_096)) as pipe:
        waited: list[bool] = []
        waiter = threading.Thread(target=lambda: waited.append(pipe.wait_drained()))
        waiter.start()
        got = read_all(pipe)
        waiter.join(5)
    assert waited == [True]
    assert decrypt_bytes(got, KEY, CONTEXT) == raw


def test_wait_drained_is_false_when_the_check_fails() -> None:
    raw = snapshot(200_000)
    cut = raw[: len(raw) - 10]
    with pipeline(chunked(cut, 4_096)) as pipe:
        with pytest.raises(SnapshotError):
            read_all(pipe)
        assert pipe.wait_drained() is False
