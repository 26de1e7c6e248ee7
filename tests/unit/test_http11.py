"""The hand-written HTTP/1.1 answer reader (dr/vault/http11.py): one test per branch."""

from __future__ import annotations

import io
import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dr.vault import http11
from dr.vault.http11 import MAX_HEADERS, MAX_INTERIM, MAX_LINE, ProtocolError, read_response

OK_EMPTY = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"


def stream(raw: bytes) -> io.BufferedReader:
    return io.BufferedReader(io.BytesIO(raw))


def read(raw: bytes, **kwargs: int) -> tuple[int, bytes, bool]:
    return read_response(stream(raw), **kwargs)


def head(*fields: str, status: str = "HTTP/1.1 200 OK") -> bytes:
    return "".join(f"{line}\r\n" for line in (status, *fields)).encode() + b"\r\n"


def chunked(*chunks: bytes, trailer: bytes = b"") -> bytes:
    out = b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in chunks)
    return out + b"0\r\n" + trailer + b"\r\n"


def test_pipelined_alias_is_the_http11_error() -> None:
    from dr.vault.pipelined import _ProtocolError

    assert _ProtocolError is ProtocolError
    assert not issubclass(ProtocolError, OSError)  # pipelined catches (OSError, ProtocolError)


# --- status line ------------------------------------------------------------------------


def test_eof_before_any_answer_is_a_connection_error() -> None:
    with pytest.raises(ConnectionError, match="closed by the server"):
        read(b"")


def test_truncated_status_line_is_a_connection_error() -> None:
    with pytest.raises(ConnectionError, match="status line"):
        read(b"HTTP/1.1 200 O")


def test_status_line_longer_than_the_bound_is_refused() -> None:
    with pytest.raises(ProtocolError, match="longer than"):
        read(b"HTTP/1.1 200 " + b"x" * MAX_LINE + b"\r\n\r\n")


@pytest.mark.parametrize(
    "line",
    [
        b"HTTP/2.0 200 OK",
        b"HTTP/1.1",
        b"HTTP/1.1 20",
        b"HTTX/1.1 200 OK",
        b"HTTP/1.x 200 OK",
        b"HTTP/1.1_200 OK",
        b"garbage",
        b"",
    ],
)
def test_not_an_http1_status_line_is_refused(line: bytes) -> None:
    with pytest.raises(ProtocolError, match=r"not an HTTP/1\.x status line"):
        read(line + b"\r\nContent-Length: 0\r\n\r\n")


@pytest.mark.parametrize("line", [b"HTTP/1.1 2x0 OK", b"HTTP/1.1 +20 OK", b"HTTP/1.1 2000 OK"])
def test_bad_status_code_is_refused(line: bytes) -> None:
    with pytest.raises(ProtocolError, match="bad status line"):
        read(line + b"\r\nContent-Length: 0\r\n\r\n")


@pytest.mark.parametrize("code", [b"000", b"099", b"600", b"999"])
def test_status_outside_100_599_is_refused(code: bytes) -> None:
    with pytest.raises(ProtocolError, match="outside 100-599"):
        read(b"HTTP/1.1 " + code + b" X\r\nContent-Length: 0\r\n\r\n")


def test_status_line_without_reason_phrase() -> None:
    assert read(b"HTTP/1.1 404\r\nContent-Length: 2\r\n\r\n{}") == (404, b"{}", False)
    assert read(b"HTTP/1.1 404 \r\nContent-Length: 2\r\n\r\n{}") == (404, b"{}", False)


def test_bare_lf_line_ends_are_accepted() -> None:
    assert read(b"HTTP/1.1 200 OK\nContent-Length: 3\n\nabc") == (200, b"abc", False)


def test_a_line_of_exactly_the_bound_is_accepted() -> None:
    name = b"X-Pad: "
    line = name + b"p" * (MAX_LINE - len(name) - 2) + b"\r\n"
    assert len(line) == MAX_LINE
    raw = b"HTTP/1.1 200 OK\r\n" + line + b"Content-Length: 1\r\n\r\nz"
    assert read(raw) == (200, b"z", False)


# --- connection persistence -------------------------------------------------------------


def test_http10_implies_close() -> None:
    raw = head("Content-Length: 2", status="HTTP/1.0 200 OK") + b"hi"
    assert read(raw) == (200, b"hi", True)
    raw = head("Content-Length: 2", "Connection: keep-alive", status="HTTP/1.0 200 OK") + b"hi"
    assert read(raw) == (200, b"hi", True)


@pytest.mark.parametrize(
    ("value", "close"),
    [
        ("close", True),
        ("Close", True),
        ("keep-alive, close", True),
        ("TE,  CLOSE ", True),
        ("keep-alive", False),
        ("closed", False),
        ("", False),
    ],
)
def test_connection_close_token(value: str, close: bool) -> None:
    raw = head("Content-Length: 1", f"Connection: {value}") + b"."
    assert read(raw) == (200, b".", close)


def test_persistent_by_default_on_http11() -> None:
    assert read(head("Content-Length: 1") + b"x") == (200, b"x", False)


# --- header block -----------------------------------------------------------------------


def test_truncated_headers_are_a_connection_error() -> None:
    with pytest.raises(ConnectionError, match="header fields"):
        read(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n")
    with pytest.raises(ConnectionError, match="header fields"):
        read(b"HTTP/1.1 200 OK\r\nContent-Len")


def test_header_line_longer_than_the_bound_is_refused() -> None:
    raw = b"HTTP/1.1 200 OK\r\nX-Long: " + b"a" * MAX_LINE + b"\r\nContent-Length: 0\r\n\r\n"
    with pytest.raises(ProtocolError, match="longer than"):
        read(raw)


def test_too_many_headers_are_refused() -> None:
    fields = [f"X-F{i}: v" for i in range(MAX_HEADERS)]
    assert read(head(*fields[:-1], "Content-Length: 0")) == (200, b"", False)
    with pytest.raises(ProtocolError, match=f"more than {MAX_HEADERS} header"):
        read(head(*fields, "Content-Length: 0"))


def test_obs_fold_is_refused() -> None:
    with pytest.raises(ProtocolError, match="folding"):
        read(b"HTTP/1.1 200 OK\r\nX-A: 1\r\n  continued\r\nContent-Length: 0\r\n\r\n")
    with pytest.raises(ProtocolError, match="folding"):
        read(b"HTTP/1.1 200 OK\r\n\tContent-Length: 0\r\n\r\n")


@pytest.mark.parametrize("line", [b"no colon here", b": empty name", b"Content-Length : 5"])
def test_malformed_field_line_is_refused(line: bytes) -> None:
    with pytest.raises(ProtocolError, match="malformed header field"):
        read(b"HTTP/1.1 200 OK\r\n" + line + b"\r\n\r\n")


def test_field_names_are_case_insensitive_and_values_trimmed() -> None:
    raw = head("content-LENGTH:\t 4 \t", "CONNECTION:close") + b"abcd"
    assert read(raw) == (200, b"abcd", True)


# --- interim (1xx) answers --------------------------------------------------------------


def test_100_continue_is_skipped() -> None:
    raw = b"HTTP/1.1 100 Continue\r\n\r\n" + head("Content-Length: 2") + b"ok"
    assert read(raw) == (200, b"ok", False)


def test_103_early_hints_with_headers_is_skipped() -> None:
    hints = head("Link: </a.css>; rel=preload", "Content-Length: 99", status="HTTP/1.1 103 EH")
    raw = hints + b"HTTP/1.1 102 Processing\r\n\r\n" + head("Content-Length: 2") + b"ok"
    assert read(raw) == (200, b"ok", False)


def test_interim_connection_close_does_not_stick_to_the_final_answer() -> None:
    raw = head("Connection: close", status="HTTP/1.1 103 EH") + head("Content-Length: 0")
    assert read(raw) == (200, b"", False)


def test_101_switching_protocols_is_refused() -> None:
    with pytest.raises(ProtocolError, match="101"):
        read(head("Upgrade: websocket", status="HTTP/1.1 101 Switching Protocols"))


def test_too_many_interim_answers_are_refused() -> None:
    interim = b"HTTP/1.1 100 Continue\r\n\r\n"
    assert read(interim * MAX_INTERIM + OK_EMPTY) == (200, b"", False)
    with pytest.raises(ProtocolError, match="interim"):
        read(interim * (MAX_INTERIM + 1) + OK_EMPTY)


def test_eof_after_an_interim_answer_is_a_connection_error() -> None:
    with pytest.raises(ConnectionError, match="closed by the server"):
        read(b"HTTP/1.1 100 Continue\r\n\r\n")


# --- answers without a body -------------------------------------------------------------


@pytest.mark.parametrize("status", ["HTTP/1.1 204 No Content", "HTTP/1.1 304 Not Modified"])
@pytest.mark.parametrize("framing", ["", "Content-Length: 5", "Transfer-Encoding: chunked"])
def test_204_and_304_have_no_body(status: str, framing: str) -> None:
    fields = [framing] if framing else []
    rfile = stream(head(*fields, status=status) + OK_EMPTY)
    assert read_response(rfile) == (int(status[9:12]), b"", False)
    assert read_response(rfile) == (200, b"", False)  # nothing of the next answer was eaten


# --- Content-Length ---------------------------------------------------------------------


def test_content_length_body() -> None:
    assert read(head("Content-Length: 5") + b"hello") == (200, b"hello", False)


def test_content_length_zero() -> None:
    assert read(head("Content-Length: 0")) == (200, b"", False)


@pytest.mark.parametrize("value", ["-1", "+5", "0x5", "5.0", "five", "", "5 5", "1_0", "٣"])
def test_bad_content_length_is_refused(value: str) -> None:
    with pytest.raises(ProtocolError, match="bad Content-Length"):
        read(head(f"Content-Length: {value}") + b"hello")


@pytest.mark.parametrize(
    "fields", [("Content-Length: 5", "Content-Length: 6"), ("Content-Length: 5, 6",)]
)
def test_different_content_lengths_are_refused(fields: tuple[str, ...]) -> None:
    with pytest.raises(ProtocolError, match="different Content-Length"):
        read(head(*fields) + b"hello!")


@pytest.mark.parametrize(
    "fields",
    [
        ("Content-Length: 5", "Content-Length: 5"),
        ("Content-Length: 5, 5",),
        ("Content-Length: 005",),
    ],
)
def test_identical_content_lengths_are_one(fields: tuple[str, ...]) -> None:
    assert read(head(*fields) + b"hello") == (200, b"hello", False)


def test_content_length_with_too_many_digits_is_refused() -> None:
    with pytest.raises(ProtocolError, match="bad Content-Length"):
        read(head("Content-Length: " + "9" * 5000))


def test_truncated_content_length_body_is_a_connection_error() -> None:
    with pytest.raises(ConnectionError, match="inside a body"):
        read(head("Content-Length: 10") + b"short")


def test_content_length_above_max_body_is_refused_before_reading() -> None:
    assert read(head("Content-Length: 10") + b"x" * 10, max_body=10) == (200, b"x" * 10, False)
    # The body is absent: a ConnectionError would mean the reader tried to read it.
    with pytest.raises(ProtocolError, match="above the bound"):
        read(head("Content-Length: 11"), max_body=10)
    with pytest.raises(ProtocolError, match="above the bound"):
        read(head(f"Content-Length: {http11.MAX_BODY + 1}"))


# --- chunked ----------------------------------------------------------------------------


def test_chunked_body() -> None:
    raw = head("Transfer-Encoding: chunked") + chunked(b"hello, ", b"world")
    assert read(raw) == (200, b"hello, world", False)


def test_chunked_empty_body() -> None:
    assert read(head("Transfer-Encoding: chunked") + b"0\r\n\r\n") == (200, b"", False)


def test_chunked_coding_name_is_case_insensitive() -> None:
    raw = head("Transfer-Encoding: Chunked") + chunked(b"abc")
    assert read(raw) == (200, b"abc", False)


def test_chunk_extensions_and_hex_case() -> None:
    body = b"A" * 26 + b"b" * 171
    raw = head("Transfer-Encoding: chunked") + (
        b"1a;name=value\r\n" + b"A" * 26 + b"\r\n"
        b'00Ab ; x="q;uoted" ; y\r\n' + b"b" * 171 + b"\r\n"
        b"0;last\r\n\r\n"
    )
    assert read(raw) == (200, body, False)


def test_chunked_trailers_are_read_up_to_the_blank_line() -> None:
    trailer = b"Checksum: abc\r\nX-Other: 1\r\n"
    raw = head("Transfer-Encoding: chunked") + chunked(b"data", trailer=trailer)
    rfile = stream(raw + OK_EMPTY)
    assert read_response(rfile) == (200, b"data", False)
    assert read_response(rfile) == (200, b"", False)


def test_chunked_takes_precedence_over_content_length() -> None:
    raw = head("Content-Length: 3", "Transfer-Encoding: chunked") + chunked(b"hello")
    assert read(raw) == (200, b"hello", True)  # both framings: the connection is not reused
    raw = head("Transfer-Encoding: chunked", "Content-Length: bogus") + chunked(b"hi")
    assert read(raw) == (200, b"hi", True)


@pytest.mark.parametrize(
    "fields",
    [
        ("Transfer-Encoding: gzip, chunked",),
        ("Transfer-Encoding: gzip",),
        ("Transfer-Encoding: chunked, chunked",),
        ("Transfer-Encoding: gzip", "Transfer-Encoding: chunked"),
    ],
)
def test_other_transfer_codings_are_refused(fields: tuple[str, ...]) -> None:
    with pytest.raises(ProtocolError, match="transfer coding"):
        read(head(*fields) + chunked(b"x"))


def test_empty_transfer_encoding_is_no_framing() -> None:
    assert read(head("Transfer-Encoding: ", "Content-Length: 1") + b"x") == (200, b"x", False)


@pytest.mark.parametrize("size", [b"xyz", b"", b"0x5", b"+5", b" 5", b"-1", b"5_0", b";ext"])
def test_bad_chunk_size_is_refused(size: bytes) -> None:
    with pytest.raises(ProtocolError, match="bad chunk size"):
        read(head("Transfer-Encoding: chunked") + size + b"\r\nhello\r\n0\r\n\r\n")


def test_chunk_data_not_followed_by_crlf_is_refused() -> None:
    with pytest.raises(ProtocolError, match="not followed by CRLF"):
        read(head("Transfer-Encoding: chunked") + b"5\r\nhelloXX0\r\n\r\n")
    with pytest.raises(ProtocolError, match="not followed by CRLF"):
        read(head("Transfer-Encoding: chunked") + b"5\r\nhello\n0\r\n\r\n")


@pytest.mark.parametrize("tail", [b"", b"\r", b"X"])
def test_eof_in_the_crlf_after_chunk_data_is_a_connection_error(tail: bytes) -> None:
    with pytest.raises(ConnectionError, match="chunked body"):
        read(head("Transfer-Encoding: chunked") + b"5\r\nhello" + tail)


def test_truncated_chunk_data_is_a_connection_error() -> None:
    with pytest.raises(ConnectionError, match="inside a chunk"):
        read(head("Transfer-Encoding: chunked") + b"10\r\nshort")


@pytest.mark.parametrize("tail", [b"", b"5", b"5\r\nhello\r\n", b"5\r\nhello\r\n0"])
def test_eof_at_a_chunk_size_line_is_a_connection_error(tail: bytes) -> None:
    with pytest.raises(ConnectionError, match="chunked body"):
        read(head("Transfer-Encoding: chunked") + tail)


def test_chunk_size_line_longer_than_the_bound_is_refused() -> None:
    raw = head("Transfer-Encoding: chunked") + b"5;" + b"e" * MAX_LINE + b"\r\nhello\r\n0\r\n\r\n"
    with pytest.raises(ProtocolError, match="longer than"):
        read(raw)


@pytest.mark.parametrize("tail", [b"0\r\n", b"0\r\nChecksum: abc\r\n", b"0\r\nCheck"])
def test_truncated_trailers_are_a_connection_error(tail: bytes) -> None:
    with pytest.raises(ConnectionError, match="trailer fields"):
        read(head("Transfer-Encoding: chunked") + b"1\r\nx\r\n" + tail)


def test_too_many_trailers_are_refused() -> None:
    ok = b"".join(b"X-T%d: v\r\n" % i for i in range(MAX_HEADERS))
    assert read(head("Transfer-Encoding: chunked") + chunked(b"x", trailer=ok)) == (
        200,
        b"x",
        False,
    )
    many = ok + b"X-Last: v\r\n"
    with pytest.raises(ProtocolError, match=f"more than {MAX_HEADERS} trailer"):
        read(head("Transfer-Encoding: chunked") + chunked(b"x", trailer=many))


def test_malformed_trailer_is_refused() -> None:
    with pytest.raises(ProtocolError, match="malformed trailer field"):
        read(head("Transfer-Encoding: chunked") + chunked(b"x", trailer=b"bogus\r\n"))


def test_chunked_body_above_max_body_is_refused_while_reading() -> None:
    te = head("Transfer-Encoding: chunked")
    assert read(te + chunked(b"a" * 6, b"b" * 4), max_body=10) == (200, b"a" * 6 + b"b" * 4, False)
    # One chunk above the bound: refused at its size line, its data is never read.
    rfile = stream(te + b"b\r\n" + b"x" * 11 + b"\r\n0\r\n\r\n")
    with pytest.raises(ProtocolError, match="above the bound"):
        read_response(rfile, max_body=10)
    assert rfile.tell() == len(te) + len(b"b\r\n")
    # The total crosses the bound at the second chunk: its data is never read.
    first = b"6\r\n" + b"a" * 6 + b"\r\n"
    rfile = stream(te + first + b"5\r\n" + b"b" * 5 + b"\r\n0\r\n\r\n")
    with pytest.raises(ProtocolError, match="above the bound"):
        read_response(rfile, max_body=10)
    assert rfile.tell() == len(te) + len(first) + len(b"5\r\n")


def test_huge_chunk_size_is_refused_by_the_bound() -> None:
    with pytest.raises(ProtocolError, match="above the bound"):
        read(head("Transfer-Encoding: chunked") + b"f" * 1000 + b"\r\n")


# --- close-delimited --------------------------------------------------------------------


def test_close_delimited_body_is_read_to_eof() -> None:
    assert read(head("Content-Type: text/plain") + b"all of it") == (200, b"all of it", True)


def test_close_delimited_empty_body() -> None:
    assert read(head()) == (200, b"", True)


def test_close_delimited_body_larger_than_one_piece() -> None:
    body = bytes(range(256)) * 1000  # 256 KB: several reads
    assert read(head() + body) == (200, body, True)


def test_close_delimited_body_above_max_body_is_refused_while_reading() -> None:
    assert read(head() + b"x" * 10, max_body=10) == (200, b"x" * 10, True)
    rfile = stream(head() + b"x" * 1000)
    with pytest.raises(ProtocolError, match="above the bound"):
        read_response(rfile, max_body=10)
    assert rfile.tell() == len(head()) + 11  # never more than the bound + 1


# --- pipelined answers on one stream ----------------------------------------------------

PIPELINED = (
    head("Content-Type: application/json", "Content-Length: 11")
    + b'{"data":{}}'
    + head("Transfer-Encoding: chunked", status="HTTP/1.1 404 Not Found")
    + chunked(b'{"errors"', b":[]}")
    + head(status="HTTP/1.1 204 No Content")
)


def test_pipelined_answers_are_read_one_after_another() -> None:
    rfile = stream(PIPELINED)
    assert read_response(rfile) == (200, b'{"data":{}}', False)
    assert read_response(rfile) == (404, b'{"errors":[]}', False)
    assert read_response(rfile) == (204, b"", False)
    with pytest.raises(ConnectionError, match="closed by the server"):
        read_response(rfile)


def test_connection_read_response_delegates_to_http11() -> None:
    from dr.vault.pipelined import Target, _Connection

    conn = _Connection(Target("localhost", 0, None, None, "localhost"), timeout=1.0)
    conn.rfile = stream(PIPELINED)
    assert [conn.read_response() for _ in range(3)] == [
        (200, b'{"data":{}}', False),
        (404, b'{"errors":[]}', False),
        (204, b"", False),
    ]


# --- properties -------------------------------------------------------------------------


@st.composite
def split_body(draw: st.DrawFn) -> tuple[bytes, list[bytes]]:
    body = draw(st.binary(max_size=4096))
    cuts = sorted(draw(st.lists(st.integers(0, len(body)), max_size=20)))
    edges = [0, *cuts, len(body)]
    pieces = [body[a:b] for a, b in itertools.pairwise(edges) if b > a]
    return body, pieces


@given(
    split=split_body(),
    upper=st.booleans(),
    ext=st.sampled_from([b"", b";a=b", b" ; x"]),
    trailer=st.sampled_from([b"", b"T: 1\r\n"]),
)
def test_any_body_in_any_chunks_parses_back(
    split: tuple[bytes, list[bytes]], upper: bool, ext: bytes, trailer: bytes
) -> None:
    body, pieces = split
    encoded = b""
    for piece in pieces:
        size = b"%X" % len(piece) if upper else b"%x" % len(piece)
        encoded += size + ext + b"\r\n" + piece + b"\r\n"
    encoded += b"0" + ext + b"\r\n" + trailer + b"\r\n"
    rfile = stream(head("Transfer-Encoding: chunked") + encoded + OK_EMPTY)
    assert read_response(rfile) == (200, body, False)
    assert read_response(rfile) == (200, b"", False)  # the stream is at the next answer


@given(body=st.binary(max_size=4096))
def test_any_body_with_content_length_parses_back(body: bytes) -> None:
    rfile = stream(head(f"Content-Length: {len(body)}") + body + OK_EMPTY)
    assert read_response(rfile) == (200, body, False)
    assert read_response(rfile) == (200, b"", False)


@given(
    prefix=st.sampled_from(
        [b"", b"HTTP/1.1 200 OK\r\n", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"]
    ),
    tail=st.binary(max_size=300),
)
def test_arbitrary_bytes_raise_only_the_documented_errors(prefix: bytes, tail: bytes) -> None:
    try:
        status, body, close = read(prefix + tail, max_body=1000)
    except (ConnectionError, ProtocolError):
        return
    assert 200 <= status <= 599
    assert len(body) <= 1000
    assert isinstance(close, bool)
