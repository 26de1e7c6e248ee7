"""A hand-written reader of HTTP/1.1 answers: the fast read path of dr/vault/pipelined.py.

Why hand-written: the drill's verify stage and the catalog walk are bound by the client's
Python time per answer, not by the server. h11 is pure Python too and hands out one event
object per head, body piece and end of message; http.client builds an email.message for
every header block. This reader needs only three things of an answer, the status, its
framing and its body, so it reads a head with a few `readline` calls on a buffered socket
file and a body with one `read` (measured about 6x a loop of hvac reads, with the
pipelining in pipelined.py). Because it is hand-written, every branch has a unit test
(tests/unit/test_http11.py).

Supported (RFC 9112 framing, RFC 9110 semantics):
  * status lines `HTTP/1.x NNN [reason]`; HTTP/1.0 implies the server closes after the
    answer, so does a `Connection: close` token;
  * 1xx interim answers (100 Continue, 103 Early Hints, ...) are skipped and the next
    answer read (RFC 9110 §15.2); a 101 is refused, we never ask to upgrade;
  * 204 and 304 have no body, whatever their framing headers say;
  * Content-Length (digits only; a repeated or listed value must be the same everywhere);
  * `Transfer-Encoding: chunked`, with chunk extensions (ignored) and trailer fields (read
    up to the blank line, discarded); it takes precedence over a Content-Length, and such
    an answer is treated as the last on its connection (RFC 9112 §6.3);
  * close-delimited bodies (neither framing) read to the end of the connection;
  * a bare LF accepted as the end of a head line (RFC 9112 §2.2).
Not supported, answered with ProtocolError: transfer codings other than a single
`chunked`, obs-fold continuation lines, whitespace between a field name and its colon.
HEAD requests are never sent, so a bodiless answer to HEAD is not modelled.

Bounds: a head, chunk-size or trailer line of at most MAX_LINE bytes, at most MAX_HEADERS
fields per block, at most MAX_INTERIM interim answers before the final one, a body of at
most `max_body` bytes in every framing; a body is never read past max_body + 1 bytes.

Errors: ConnectionError (an OSError) when the peer closes before the answer is whole;
ProtocolError when the answer is malformed or over a bound. Either way the connection is
unusable and the caller drops it. Bodies may hold secret values: they are never kept,
logged or quoted in an error message here.
"""

from __future__ import annotations

import io

MAX_LINE = 64 * 1024  # bytes of one status, header, chunk-size or trailer line, with CRLF
MAX_HEADERS = 100  # fields in one header or trailer block
MAX_INTERIM = 16  # 1xx answers before the final answer
# kv values are capped at 1 MiB by raft, but a LIST of a huge folder is several MiB.
MAX_BODY = 64 * 1024 * 1024
_EOF_READ = 64 * 1024  # piece size when reading a close-delimited body
_OWS = b" \t"
_HEX = b"0123456789abcdefABCDEF"


class ProtocolError(Exception):
    """The server's answer is not HTTP/1.1 we understand; the connection is dropped."""


def read_response(rfile: io.BufferedReader, *, max_body: int = MAX_BODY) -> tuple[int, bytes, bool]:
    """Read the next answer: (status, body, the server closes after this answer)."""
    interim = 0
    while True:
        status, close = _read_status_line(rfile)
        fields = _read_fields(rfile, "header")
        if status >= 200:
            break
        if status == 101:
            raise ProtocolError("unexpected 101 Switching Protocols: no upgrade was asked for")
        interim += 1  # an interim answer has no body; the final answer follows
        if interim > MAX_INTERIM:
            raise ProtocolError(f"more than {MAX_INTERIM} interim (1xx) answers")
    lengths: list[bytes] = []
    codings: list[bytes] = []
    for name, value in fields:
        if name == b"content-length":
            lengths.append(value)
        elif name == b"transfer-encoding":
            codings.extend(_tokens(value))
        elif name == b"connection" and b"close" in _tokens(value):
            close = True
    if status in (204, 304):
        return status, b"", close
    if codings:
        if codings != [b"chunked"]:
            raise ProtocolError("unsupported transfer coding (only chunked is read)")
        if lengths:
            close = True  # both framings: Transfer-Encoding wins, the connection is suspect
        return status, _read_chunked(rfile, max_body), close
    if lengths:
        length = _content_length(lengths)
        if length > max_body:
            raise ProtocolError(f"Content-Length {length} above the bound of {max_body}")
        body = rfile.read(length)
        if len(body) != length:
            raise ConnectionError("connection closed inside a body")
        return status, body, close
    return status, _read_to_eof(rfile, max_body), True


def _read_status_line(rfile: io.BufferedReader) -> tuple[int, bool]:
    raw = rfile.readline(MAX_LINE)
    if not raw:
        raise ConnectionError("connection closed by the server")
    line = _complete(raw, "the status line")
    if len(line) < 12 or line[:7] != b"HTTP/1." or not line[7:8].isdigit() or line[8] != 32:
        raise ProtocolError("not an HTTP/1.x status line")
    code = line[9:12]
    if not code.isdigit() or (len(line) > 12 and line[12] != 32):
        raise ProtocolError("bad status line")
    status = int(code)
    if status < 100 or status > 599:
        raise ProtocolError(f"status {status} outside 100-599")
    return status, line[7] == 48  # HTTP/1.0: no persistent connection


def _read_line(rfile: io.BufferedReader, where: str) -> bytes:
    return _complete(rfile.readline(MAX_LINE), where)


def _complete(raw: bytes, where: str) -> bytes:
    """`raw` without its line end; a line that did not end in LF is too long or cut off."""
    if raw.endswith(b"\r\n"):
        return raw[:-2]
    if raw.endswith(b"\n"):
        return raw[:-1]
    if len(raw) >= MAX_LINE:
        raise ProtocolError(f"line in {where} longer than {MAX_LINE} bytes")
    raise ConnectionError(f"connection closed inside {where}")


def _read_fields(rfile: io.BufferedReader, kind: str) -> list[tuple[bytes, bytes]]:
    """(lower-case name, value) of each field line up to the blank line."""
    where = f"the {kind} fields"
    fields: list[tuple[bytes, bytes]] = []
    while True:
        line = _read_line(rfile, where)
        if not line:
            return fields
        if len(fields) >= MAX_HEADERS:
            raise ProtocolError(f"more than {MAX_HEADERS} {kind} fields")
        if line[0] in _OWS:
            raise ProtocolError(f"obsolete line folding in the {kind} fields")
        name, colon, value = line.partition(b":")
        if not colon or not name or name[-1] in _OWS:
            raise ProtocolError(f"malformed {kind} field line")
        fields.append((name.lower(), value.strip(_OWS)))


def _tokens(value: bytes) -> list[bytes]:
    """The lower-case elements of a comma-separated field value, empty ones dropped."""
    return [token for part in value.split(b",") if (token := part.strip(_OWS).lower())]


def _content_length(values: list[bytes]) -> int:
    found: set[bytes] = set()
    for value in values:
        for part in value.split(b","):
            digits = part.strip(_OWS)
            if not digits.isdigit():
                raise ProtocolError("bad Content-Length")
            found.add(digits.lstrip(b"0") or b"0")
    if len(found) != 1:
        raise ProtocolError("different Content-Length values")
    try:
        return int(found.pop())
    except ValueError:  # more digits than int() converts
        raise ProtocolError("bad Content-Length") from None


def _read_chunked(rfile: io.BufferedReader, max_body: int) -> bytes:
    parts: list[bytes] = []
    total = 0
    while True:
        line = _read_line(rfile, "a chunked body")
        size_text = line.split(b";", 1)[0].rstrip(_OWS)  # chunk extensions are ignored
        if not size_text or size_text.translate(None, _HEX):
            raise ProtocolError("bad chunk size")
        size = int(size_text, 16)
        if size == 0:
            _read_fields(rfile, "trailer")
            return b"".join(parts)
        total += size
        if total > max_body:
            raise ProtocolError(f"chunked body above the bound of {max_body}")
        chunk = rfile.read(size)
        if len(chunk) != size:
            raise ConnectionError("connection closed inside a chunk")
        end = rfile.read(2)
        if end != b"\r\n":
            if len(end) < 2:
                raise ConnectionError("connection closed inside a chunked body")
            raise ProtocolError("chunk data not followed by CRLF")
        parts.append(chunk)


def _read_to_eof(rfile: io.BufferedReader, max_body: int) -> bytes:
    parts: list[bytes] = []
    total = 0
    while True:
        piece = rfile.read1(min(_EOF_READ, max_body + 1 - total))
        if not piece:
            return b"".join(parts)
        total += len(piece)
        if total > max_body:
            raise ProtocolError(f"close-delimited body above the bound of {max_body}")
        parts.append(piece)
