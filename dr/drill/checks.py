"""The drill's verify stage: check every cataloged item against a restored Vault, fast.

What is checked (docs/catalog.md has the catalog and its states):

- ``mounts``: every cataloged secrets engine is in ``sys/mounts`` with the same type
  (and kv version); ``auth_methods``: every auth method in ``sys/auth`` with the same
  type; ``policies``: every ACL policy name in ``LIST sys/policies/acl``. Mounts, methods
  or policies the catalog does not name are counted as ``extra`` (not a failure).
- ``kv2_secrets``: ``GET <mount>data/<path>`` for every kv-v2 entry. OpenBao answers 200
  with ``data.data`` and ``data.metadata`` for a live current version, and 404 with
  ``data.data = null`` and ``data.metadata`` (``deletion_time`` set, or ``destroyed``)
  when the current version is soft-deleted or destroyed; a path that does not exist
  answers 404 ``{"errors": []}`` (checked on OpenBao 2.7.2).
- ``kv1_secrets``: ``GET <mount><path>``: 200 with a data object, or 404.
- ``extra_paths``: every kv mount of the restored Vault is LISTed recursively (kv-v2
  through ``metadata/``); a leaf path the catalog does not name is ``extra``. Extras do
  not fail a drill: the catalog is walked after the snapshot, so a secret whose kv-v2
  metadata was deleted (or a kv-v1 path written and removed) between snapshot and walk
  is in the snapshot but not in the catalog. A restore cannot invent data, so an extra
  path is never loss; it is reported so an operator can look. A LIST that fails (403,
  5xx) is ``unreadable`` and fails the family: "each path listed" was not shown.

Values are never compared (the catalog has none: the backup never reads them), so
"readable" means a 200 answer carrying a data object. Response bodies hold secret
values: they are parsed in place and dropped; only status codes, versions, flags and
Vault's own ``errors`` strings are kept, and nothing here logs a body.

How each secret is judged. Every entry lands in exactly one bucket: ``ok`` (verified
as cataloged), ``changed_during_backup`` (accepted because of a change the catalog
recorded or cannot date: reported apart, never a failure), ``missing``, ``mismatched``
or ``unreadable`` (the three failures). Real loss always fails:

========================  ==========================================================
answer                    verdict
========================  ==========================================================
not 200/404, no answer    unreadable (status, or 0 when the connection failed twice)
404, no metadata          stable/changed_after: missing; created_after: apart;
                          uncertain: apart, unless the catalog knows a version that
                          existed before the window (then missing)
version != catalog's      stable/changed_after: mismatched; uncertain: mismatched
                          only when LOWER than the catalog's version (that version
                          existed before the window, so the snapshot holds it or a
                          newer one); created_after: apart
destroyed, catalog not    mismatched (the data is gone: loss)
catalog destroyed         restored destroyed: ok; readable or only deleted: apart
                          (destruction has no timestamp: it may have come after)
soft-delete differs       apart: the data is still there. Undelete and
                          delete_version_after leave no dated trace in metadata
                          (an undelete after the snapshot makes the restored Vault
                          show deleted what the catalog saw live).
same version and state    stable: ok; changed_after: apart (verified at the
                          snapshot's version, reported apart as a recorded change)
========================  ==========================================================

kv-v1: 200 = ok (apart when uncertain), 404 = missing (apart when uncertain or
created_after), anything else unreadable.

The read path. A bare script reads every secret with hvac: about 0.5-0.85 ms of Python
per read in hvac + requests, more than the server spends (FACTS.md, measured floors).
Here instead:

- ``workers`` threads (default 4), each owning ONE persistent HTTP/1.1 connection: a
  plain ``socket`` (TCP with TCP_NODELAY, a unix socket, or TLS when the address is
  https) and a buffered reader over it. No hvac, no requests, no urllib3 per read.
- Request bytes are built once per item (``GET <quoted path> HTTP/1.1`` + a fixed,
  precomputed Host/token header tail).
- HTTP/1.1 pipelining: each worker sends a batch of ``pipeline`` requests (default
  32) with one ``sendall`` and then reads the answers in order. Go's net/http serves a
  connection's requests one after the other, so answers come back in order; the
  client saves a round trip and two syscalls per read, and several connections keep
  both of the server's cores busy while Python parses. A response is parsed by hand:
  status line, Content-Length or chunked transfer encoding (OpenBao chunks bodies over
  2 KiB), ``Connection: close``; ``json.loads`` of the body, then only a few fields are
  kept.
- The GIL is released while a worker waits on its socket, and the server's work per
  read (~0.25 ms of CPU) dominates the client's (~0.06 ms), so 3-4 workers saturate a
  2-core machine.
- Robustness: a connection error or timeout (``timeout`` per socket operation) closes
  that connection; the worker reconnects and sends the unanswered requests again. The
  request whose answer failed is retried once; failing again, it is unreadable. A
  ``Connection: close`` answer just moves on to a fresh connection. If connecting fails
  twice in a row, or three reads in a row fail twice, the server is gone: every read
  not yet answered is unreadable ("not read: ..."), and the check returns at once
  instead of waiting out a timeout item by item.

Measured (bench/verify_reads.py, quiet 2-core machine, OpenBao 2.7.2, N kv-v2
secrets; secrets per second of wall time, median of 3; check_catalog's time includes
its sys reads and the recursive LIST of every mount):

=====================  ========  ========  ========  ========
read path              10k TCP   10k unix  50k TCP   50k unix
=====================  ========  ========  ========  ========
hvac read loop         1,109     1,178     989       1,130
check_catalog (4x32)   5,412     6,438     5,994     6,196
speed-up               4.9x      5.5x      6.1x      5.5x
=====================  ========  ========  ========  ========

At 50k: 50.5 s (hvac, TCP) against 8.3 s. Client CPU per secret: 0.53-0.64 ms with hvac,
0.05-0.06 ms here; the server's fell from ~0.5 ms to ~0.26 ms (fewer wake-ups per
request when requests arrive pipelined). Sweep at 10k (TCP): one connection 2.7k/s
unpipelined and 3.5k/s pipelined; 2 connections 4.5-6.1k/s; 3-4 connections with
8-64 deep pipelines 6.2-6.3k/s; 6-8 connections slightly worse. The server is now the
bound. On a loaded machine (other jobs) all figures roughly halve and vary run to run.

Namespaces: entries' ``namespace`` is used as a path prefix (``/v1/<ns><mount>...``),
which Vault Enterprise accepts; OpenBao drills do not need it.
"""

from __future__ import annotations

import contextlib
import io
import json
import socket
import ssl
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, NamedTuple
from urllib.parse import quote, urlsplit

from dr.drill.endpoint import Endpoint
from dr.errors import UsageError
from dr.vault.catalog import CHANGED_AFTER, CREATED_AFTER, STABLE, Catalog, Mount, SecretEntry

FAMILIES = ("mounts", "auth_methods", "policies", "kv2_secrets", "kv1_secrets", "extra_paths")
DEFAULT_WORKERS = 4
DEFAULT_PIPELINE = 32
DEFAULT_TIMEOUT = 60.0
_MAX_LINE = 65536
_READ_BUFFER = 256 * 1024
_LOST_IN_ROW_FATAL = 3  # reads failing twice in a row before the server counts as gone
_PROGRESS_EVERY = 0.2  # seconds between progress callbacks


# --- results -------------------------------------------------------------------------

OK = "ok"
APART = "changed_during_backup"
MISSING = "missing"
MISMATCHED = "mismatched"
UNREADABLE = "unreadable"
EXTRA = "extra"


@dataclass
class FamilyResult:
    """One check family. Every checked item is counted in exactly one of ok, missing,
    mismatched, unreadable and changed_during_backup (extra_paths: ok or extra).
    `extra` counts items the restored Vault has and the catalog does not name."""

    name: str
    checked: int = 0
    ok: int = 0
    missing: int = 0
    mismatched: int = 0
    unreadable: int = 0
    extra: int = 0
    changed_during_backup: int = 0
    first_missing: str | None = None
    first_mismatched: str | None = None
    first_unreadable: str | None = None
    first_extra: str | None = None
    first_changed: str | None = None
    failed: bool = False

    def add(self, verdict: str, text: str = "", *, checked: bool = True) -> None:
        if checked:
            self.checked += 1
        if verdict == OK:
            self.ok += 1
        elif verdict == MISSING:
            self.missing += 1
            self.first_missing = self.first_missing or text
        elif verdict == MISMATCHED:
            self.mismatched += 1
            self.first_mismatched = self.first_mismatched or text
        elif verdict == UNREADABLE:
            self.unreadable += 1
            self.first_unreadable = self.first_unreadable or text
        elif verdict == EXTRA:
            self.extra += 1
            self.first_extra = self.first_extra or text
        elif verdict == APART:
            self.changed_during_backup += 1
            self.first_changed = self.first_changed or text
        else:  # pragma: no cover - a programming error
            raise ValueError(f"unknown verdict {verdict!r}")
        self.failed = bool(self.missing or self.mismatched or self.unreadable)

    def failure_lines(self) -> list[str]:
        lines = []
        for kind, count, first in (
            (MISSING, self.missing, self.first_missing),
            (MISMATCHED, self.mismatched, self.first_mismatched),
            (UNREADABLE, self.unreadable, self.first_unreadable),
        ):
            if count:
                lines.append(f"{self.name}: {count} {kind}, first: {first}")
        return lines


@dataclass
class CheckReport:
    families: list[FamilyResult]
    total_checked: int
    passed: bool
    seconds: float
    reads: int  # HTTP requests answered (sys, LIST and secret reads; retries included)
    reads_per_second: float
    endpoint: str = ""
    workers: int = 0
    pipeline: int = 0
    stage_seconds: dict[str, float] = field(default_factory=dict)  # sys, secrets, list

    def family(self, name: str) -> FamilyResult:
        for fam in self.families:
            if fam.name == name:
                return fam
        raise KeyError(name)

    @property
    def changed_during_backup(self) -> int:
        return sum(fam.changed_during_backup for fam in self.families)

    def failures(self) -> list[str]:
        """One line per failing kind of each family, naming its first path."""
        return [line for fam in self.families for line in fam.failure_lines()]

    def to_json(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "total_checked": self.total_checked,
            "changed_during_backup": self.changed_during_backup,
            "seconds": round(self.seconds, 3),
            "reads": self.reads,
            "reads_per_second": round(self.reads_per_second, 1),
            "endpoint": self.endpoint,
            "workers": self.workers,
            "pipeline": self.pipeline,
            "stage_seconds": {k: round(v, 3) for k, v in self.stage_seconds.items()},
            "families": [asdict(fam) for fam in self.families],
            "failures": self.failures(),
        }


# --- the lean HTTP/1.1 client ----------------------------------------------------------


class _ProtocolError(Exception):
    """The server's answer is not HTTP we understand; the connection is dropped."""


class Answer(NamedTuple):
    """What is kept of one HTTP answer (never a secret value)."""

    status: int  # 0: no answer
    version: int | None = None
    deleted: bool = False
    destroyed: bool = False
    payload: Any = None  # sys answers and LIST keys only
    error: str = ""


_Parser = Callable[[int, bytes], Answer]


@dataclass(frozen=True)
class _Target:
    host: str
    port: int
    unix_socket: str | None
    ssl_context: ssl.SSLContext | None
    host_header: str

    @classmethod
    def of(cls, endpoint: Endpoint, ssl_context: ssl.SSLContext | None) -> _Target:
        if endpoint.unix_socket is not None:
            return cls("localhost", 0, str(endpoint.unix_socket), None, "localhost")
        if not endpoint.addr:
            raise UsageError("endpoint has neither an address nor a unix socket")
        parts = urlsplit(endpoint.addr)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise UsageError(f"unsupported Vault address {endpoint.addr!r}: use http(s)://host")
        tls = parts.scheme == "https"
        port = parts.port or (443 if tls else 80)
        context = (ssl_context or ssl.create_default_context()) if tls else None
        return cls(parts.hostname, port, None, context, parts.netloc)


class _Connection:
    """One persistent HTTP/1.1 connection, connected on demand."""

    def __init__(self, target: _Target, timeout: float) -> None:
        self.target = target
        self.timeout = timeout
        self.sock: socket.socket | None = None
        self.rfile: io.BufferedReader | None = None

    def connect(self) -> socket.socket:
        target = self.target
        sock: socket.socket
        if target.unix_socket is not None:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                sock.settimeout(self.timeout)
                sock.connect(target.unix_socket)
            except BaseException:
                sock.close()
                raise
        else:
            sock = socket.create_connection((target.host, target.port), timeout=self.timeout)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if target.ssl_context is not None:
                try:
                    sock = target.ssl_context.wrap_socket(sock, server_hostname=target.host)
                except BaseException:
                    sock.close()
                    raise
        self.sock = sock
        self.rfile = io.BufferedReader(socket.SocketIO(sock, "rb"), _READ_BUFFER)
        return sock

    def close(self) -> None:
        if self.rfile is not None:
            with contextlib.suppress(OSError):
                self.rfile.close()
            self.rfile = None
        if self.sock is not None:
            with contextlib.suppress(OSError):
                self.sock.shutdown(socket.SHUT_RDWR)  # wakes a thread blocked in recv
            with contextlib.suppress(OSError):
                self.sock.close()
            self.sock = None

    def read_response(self) -> tuple[int, bytes, bool]:
        """(status, body, server closes after this answer) for the next answer."""
        rfile = self.rfile
        assert rfile is not None
        line = rfile.readline(_MAX_LINE)
        if not line:
            raise ConnectionError("connection closed by the server")
        if not line.startswith(b"HTTP/1.") or len(line) < 12:
            raise _ProtocolError("not an HTTP/1.x status line")
        try:
            status = int(line[9:12])
        except ValueError:
            raise _ProtocolError("bad status line") from None
        close = line.startswith(b"HTTP/1.0")
        length = -1
        chunked = False
        while True:
            header = rfile.readline(_MAX_LINE)
            if header == b"\r\n" or header == b"\n":
                break
            if not header:
                raise ConnectionError("connection closed inside the headers")
            name, _, value = header.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                try:
                    length = int(value)
                except ValueError:
                    raise _ProtocolError("bad Content-Length") from None
            elif name == b"transfer-encoding":
                chunked = b"chunked" in value.lower()
            elif name == b"connection":
                close = close or b"close" in value.lower()
        if status < 200 or status in (204, 304):
            if status < 200:  # an interim answer (no GET of ours asks for one)
                raise _ProtocolError(f"unexpected interim status {status}")
            return status, b"", close
        if chunked:
            return status, self._read_chunked(rfile), close
        if length >= 0:
            body = rfile.read(length)
            if len(body) != length:
                raise ConnectionError("connection closed inside a body")
            return status, body, close
        return status, rfile.read(), True  # delimited by the end of the connection

    @staticmethod
    def _read_chunked(rfile: io.BufferedReader) -> bytes:
        parts: list[bytes] = []
        while True:
            line = rfile.readline(_MAX_LINE)
            if not line:
                raise ConnectionError("connection closed inside a chunked body")
            try:
                size = int(line.split(b";", 1)[0], 16)
            except ValueError:
                raise _ProtocolError("bad chunk size") from None
            if size == 0:
                while True:  # trailers, up to the blank line
                    trailer = rfile.readline(_MAX_LINE)
                    if not trailer:
                        raise ConnectionError("connection closed inside a chunked body")
                    if trailer in (b"\r\n", b"\n"):
                        return b"".join(parts)
            chunk = rfile.read(size)
            if len(chunk) != size or rfile.read(2) != b"\r\n":
                raise ConnectionError("connection closed inside a chunk")
            parts.append(chunk)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError | socket.timeout):
        return "timed out"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, FileNotFoundError):
        return "socket not found"
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}"[:160] if text else type(exc).__name__


class _ReadPool:
    """`workers` persistent connections, each driven by one thread per `run`."""

    def __init__(
        self, target: _Target, token: str, workers: int, pipeline: int, timeout: float
    ) -> None:
        if not token or not token.isascii() or not token.isprintable() or " " in token:
            raise UsageError("the Vault token is empty or holds characters a token cannot have")
        self.workers = max(1, workers)
        self.pipeline = max(1, pipeline)
        self._conns = [_Connection(target, timeout) for _ in range(self.workers)]
        self._tail = (
            f" HTTP/1.1\r\nHost: {target.host_header}\r\nX-Vault-Token: {token}\r\n\r\n"
        ).encode("ascii")
        self._lock = threading.Lock()
        self.fatal: str | None = None
        self.reads = 0

    def request(self, method: str, path: str) -> bytes:
        """Request bytes for /v1/<path> (path unquoted, no leading slash)."""
        return method.encode("ascii") + b" /v1/" + quote(path).encode("ascii") + self._tail

    def close(self) -> None:
        """Stop the workers of a run still going (after an interrupt) and close all."""
        with self._lock:
            self.fatal = self.fatal or "the check was stopped"
        for conn in self._conns:
            conn.close()

    def run(
        self,
        requests: Sequence[bytes],
        parsers: Sequence[_Parser] | _Parser,
        progress: Callable[[int], None] | None = None,
    ) -> list[Answer]:
        """Send every request, answers parsed in the worker threads, in request order."""
        total = len(requests)
        results: list[Answer | None] = [None] * total
        if total == 0:
            return []
        if self.fatal is not None:
            return [Answer(0, error=f"not read: {self.fatal}")] * total
        single = parsers if callable(parsers) else None
        many = None if callable(parsers) else parsers
        batches = iter(range(0, total, self.pipeline))
        done = [0] * self.workers
        errors: list[BaseException] = []

        def next_batch() -> range | None:
            with self._lock:
                if self.fatal is not None:
                    return None
                start = next(batches, None)
            return None if start is None else range(start, min(start + self.pipeline, total))

        def work(slot: int) -> None:
            try:
                self._work(
                    self._conns[slot], slot, requests, single, many, results, next_batch, done
                )
            except BaseException as exc:  # surfaced in the calling thread
                errors.append(exc)
                with self._lock:
                    self.fatal = self.fatal or f"internal error: {type(exc).__name__}"

        threads = [
            threading.Thread(target=work, args=(slot,), name=f"dr-check-{slot}", daemon=True)
            for slot in range(min(self.workers, (total + self.pipeline - 1) // self.pipeline))
        ]
        for thread in threads:
            thread.start()
        last = time.monotonic()
        for thread in threads:
            while thread.is_alive():
                thread.join(_PROGRESS_EVERY)
                if progress is not None and time.monotonic() - last >= _PROGRESS_EVERY:
                    progress(sum(done))
                    last = time.monotonic()
        if errors:
            raise errors[0]
        self.reads += sum(done)
        if progress is not None:
            progress(sum(done))
        missing = Answer(0, error=f"not read: {self.fatal}")
        return [missing if r is None else r for r in results]

    def _work(
        self,
        conn: _Connection,
        slot: int,
        requests: Sequence[bytes],
        single: _Parser | None,
        many: Sequence[_Parser] | None,
        results: list[Answer | None],
        next_batch: Callable[[], range | None],
        done: list[int],
    ) -> None:
        connect_failures = 0
        lost_in_row = 0  # reads that failed twice, one after the other
        while True:
            batch = next_batch()
            if batch is None:
                return
            pending = deque(batch)
            retried: set[int] = set()
            while pending:
                if self.fatal is not None:
                    return
                sock = conn.sock
                if sock is None:
                    try:
                        sock = conn.connect()
                    except OSError as exc:
                        connect_failures += 1
                        if connect_failures >= 2:
                            with self._lock:
                                self.fatal = self.fatal or f"cannot connect: {_describe(exc)}"
                            return
                        time.sleep(0.05)
                        continue
                    connect_failures = 0
                try:
                    sock.sendall(b"".join([requests[i] for i in pending]))
                    while pending:
                        status, body, close = conn.read_response()
                        index = pending.popleft()
                        parse = single if many is None else many[index]
                        assert parse is not None
                        results[index] = parse(status, body)
                        del body
                        done[slot] += 1
                        lost_in_row = 0
                        if close:
                            conn.close()
                            break
                except (OSError, _ProtocolError) as exc:
                    conn.close()
                    # The head of the queue is the answer that failed: it gets one retry.
                    # The requests behind it are sent again without penalty.
                    head = pending[0]
                    if head not in retried:
                        retried.add(head)
                        continue
                    pending.popleft()
                    reason = _describe(exc)
                    results[head] = Answer(0, error=f"connection failed twice: {reason}")
                    lost_in_row += 1
                    if lost_in_row >= _LOST_IN_ROW_FATAL:
                        # The server accepts connections but answers nothing whole: stop
                        # rather than wait out a timeout per remaining item.
                        with self._lock:
                            self.fatal = self.fatal or f"server stopped answering: {reason}"
                        return


# --- parsing answers -------------------------------------------------------------------


def _load(body: bytes) -> Any:
    try:
        return json.loads(body)
    except ValueError:  # the exception would hold the body: never let it travel
        return None


def _errors(status: int, body: bytes) -> Answer:
    doc = _load(body) if body[:1] == b"{" else None
    errors = doc.get("errors") if isinstance(doc, dict) else None
    text = ""
    if isinstance(errors, list) and errors:
        text = "; ".join(_clean_error(str(e)) for e in errors)[:200]
    return Answer(status, error=text)


def _clean_error(text: str) -> str:
    """One line from Vault's error text ("1 error occurred:\n\t* permission denied\n\n")."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if len(lines) > 1 and lines[0].endswith("occurred:"):
        lines = [line.removeprefix("* ") for line in lines[1:]]
    return "; ".join(lines)


def _parse_kv2(status: int, body: bytes) -> Answer:
    if status != 200 and status != 404:
        return _errors(status, body)
    doc = _load(body)
    data = doc.get("data") if isinstance(doc, dict) else None
    meta = data.get("metadata") if isinstance(data, dict) else None
    version = meta.get("version") if isinstance(meta, dict) else None
    if not isinstance(version, int) or isinstance(version, bool):
        if status == 200:
            return Answer(200, error="answer without data and version")
        return Answer(404)  # no such secret
    assert isinstance(meta, dict) and isinstance(data, dict)
    destroyed = meta.get("destroyed") is True
    if status == 200:
        if not isinstance(data.get("data"), dict):
            return Answer(200, error="answer without a data object")
        return Answer(200, version=version)
    # 404 with metadata: the current version is soft-deleted or destroyed. (A 200 may
    # carry a future deletion_time from delete_version_after: status decides.)
    return Answer(404, version=version, deleted=not destroyed, destroyed=destroyed)


def _parse_kv1(status: int, body: bytes) -> Answer:
    if status == 404:
        return Answer(404)
    if status != 200:
        return _errors(status, body)
    doc = _load(body)
    if not isinstance(doc, dict) or not isinstance(doc.get("data"), dict):
        return Answer(200, error="answer without a data object")
    return Answer(200)


def _parse_list(status: int, body: bytes) -> Answer:
    if status == 404:
        return Answer(404, payload=[])
    if status != 200:
        return _errors(status, body)
    doc = _load(body)
    data = doc.get("data") if isinstance(doc, dict) else None
    keys = data.get("keys") if isinstance(data, dict) else None
    if not isinstance(keys, list):
        return Answer(200, error="LIST answer without keys")
    return Answer(200, payload=[str(k) for k in keys])


def _parse_sys(status: int, body: bytes) -> Answer:
    if status != 200:
        return _errors(status, body)
    doc = _load(body)
    if not isinstance(doc, dict):
        return Answer(200, error="answer is not a JSON object")
    data = doc.get("data")
    return Answer(200, payload=data if isinstance(data, dict) else doc)


# --- judging -------------------------------------------------------------------------


def _status_text(read: Answer) -> str:
    if read.status == 0:
        return read.error or "no answer"
    return f"status {read.status}" + (f" ({read.error})" if read.error else "")


def _failed_read(read: Answer) -> bool:
    return read.status not in (200, 404) or bool(read.error)


def judge_kv2(entry: SecretEntry, read: Answer) -> tuple[str, str]:
    """(verdict, text) for one kv-v2 entry; text names the path (never a value)."""
    where = entry.full_path
    if _failed_read(read):
        return UNREADABLE, f"{where}: {_status_text(read)}"
    expected = entry.version
    if read.version is None:  # no such secret
        if entry.state == CREATED_AFTER:
            return APART, f"{where}: absent (created after the snapshot)"
        if entry.state in (STABLE, CHANGED_AFTER) or expected is not None:
            return MISSING, f"{where}: not found (catalog: version {expected})"
        return APART, f"{where}: absent ({entry.state})"
    actual = read.version
    if entry.state == CREATED_AFTER:
        return APART, f"{where}: present at version {actual} (created after the snapshot)"
    if expected is not None and actual != expected:
        if entry.state in (STABLE, CHANGED_AFTER) or actual < expected:
            return MISMATCHED, f"{where}: version {actual}, catalog {expected}"
        return APART, f"{where}: version {actual}, catalog {expected} ({entry.state})"
    if read.destroyed and not entry.destroyed:
        return MISMATCHED, f"{where}: version {actual} destroyed, catalog: not destroyed"
    if entry.destroyed and not read.destroyed:
        return APART, f"{where}: version {actual} not destroyed (destroyed after the snapshot)"
    if not entry.destroyed and read.deleted != entry.deleted:
        seen = "deleted" if read.deleted else "live"
        cataloged = "deleted" if entry.deleted else "live"
        return APART, f"{where}: version {actual} {seen}, catalog {cataloged}"
    if entry.state == STABLE:
        return OK, where
    return APART, f"{where}: version {actual} ({entry.state})"


def judge_kv1(entry: SecretEntry, read: Answer) -> tuple[str, str]:
    where = entry.full_path
    if _failed_read(read):
        return UNREADABLE, f"{where}: {_status_text(read)}"
    if read.status == 404:
        if entry.state == STABLE:
            return MISSING, f"{where}: not found"
        return APART, f"{where}: absent ({entry.state})"
    if entry.state == STABLE:
        return OK, where
    return APART, f"{where}: present ({entry.state})"


def _mount_key(mount: Mount) -> str:
    return f"{mount.namespace}{mount.path}"


def _restored_mounts(payload: Any, with_kv_version: bool) -> dict[str, Mount]:
    out: dict[str, Mount] = {}
    if not isinstance(payload, dict):
        return out
    for path, info in payload.items():
        if not isinstance(info, dict) or "type" not in info:
            continue
        kv_version = None
        if with_kv_version and info["type"] in ("kv", "generic"):
            options = info.get("options") or {}
            kv_version = 2 if str(options.get("version", "1")) == "2" else 1
        out[str(path)] = Mount(path=str(path), type=str(info["type"]), kv_version=kv_version)
    return out


def _check_mounts(
    name: str, cataloged: list[Mount], read: Answer, what: str, with_kv_version: bool
) -> tuple[FamilyResult, dict[str, Mount]]:
    fam = FamilyResult(name)
    if _failed_read(read):
        for mount in cataloged:
            fam.add(UNREADABLE, f"{_mount_key(mount)}: {what} {_status_text(read)}")
        return fam, {}
    restored = _restored_mounts(read.payload, with_kv_version)
    for mount in cataloged:
        key = _mount_key(mount)
        found = restored.get(key)
        if found is None:
            fam.add(MISSING, f"{key} ({_kind(mount)})")
        elif found.type != mount.type or found.kv_version != mount.kv_version:
            fam.add(MISMATCHED, f"{key}: {_kind(found)}, catalog {_kind(mount)}")
        else:
            fam.add(OK, key)
    known = {_mount_key(m) for m in cataloged}
    for key in sorted(set(restored) - known):
        fam.add(EXTRA, f"{key} ({_kind(restored[key])})", checked=False)
    return fam, restored


def _kind(mount: Mount) -> str:
    return f"{mount.type} v{mount.kv_version}" if mount.kv_version else mount.type


def _check_policies(cataloged: list[str], read: Answer) -> FamilyResult:
    fam = FamilyResult("policies")
    if _failed_read(read):
        for policy in cataloged:
            fam.add(UNREADABLE, f"{policy}: list sys/policies/acl {_status_text(read)}")
        return fam
    restored = set(read.payload or [])
    for policy in cataloged:
        fam.add(OK if policy in restored else MISSING, policy)
    for policy in sorted(restored - set(cataloged)):
        fam.add(EXTRA, policy, checked=False)
    return fam


def _list_tree(pool: _ReadPool, roots: list[str]) -> tuple[list[str], list[tuple[str, Answer]]]:
    """Every leaf under the LIST-able `roots` (API paths ending in '/'), level by level.

    One pipelined run per depth level; returns (leaf paths relative to /v1/, failed
    LISTs as (folder, answer))."""
    leaves: list[str] = []
    failed: list[tuple[str, Answer]] = []
    level = list(roots)
    while level:
        reads = pool.run([pool.request("LIST", folder) for folder in level], _parse_list)
        following: list[str] = []
        for folder, read in zip(level, reads, strict=True):
            if _failed_read(read):
                failed.append((folder, read))
                continue
            for key in read.payload:
                (following if key.endswith("/") else leaves).append(folder + key)
        level = following
    return leaves, failed


def _check_extra_paths(pool: _ReadPool, kv_mounts: list[Mount], catalog: Catalog) -> FamilyResult:
    """LIST every kv mount of the restored Vault; count leaves the catalog does not name."""
    fam = FamilyResult("extra_paths")
    known: set[tuple[str, str]] = {(e.namespace + e.mount, e.path) for e in catalog.secrets}
    extras: list[str] = []
    for mount in kv_mounts:
        base = mount.namespace + mount.path
        root = f"{base}metadata/" if mount.kv_version == 2 else base
        leaves, failed = _list_tree(pool, [root])
        for folder, read in failed:
            fam.add(UNREADABLE, f"LIST {folder}: {_status_text(read)}")
        for leaf in leaves:
            path = leaf[len(root) :]
            if (base, path) in known:
                fam.add(OK, base + path)
            else:
                extras.append(base + path)
    for path in sorted(extras):
        fam.add(EXTRA, path)
    return fam


def _secret_request(pool: _ReadPool, entry: SecretEntry) -> bytes:
    base = f"{entry.namespace}{entry.mount}"
    if entry.kv == 2:
        return pool.request("GET", f"{base}data/{entry.path}")
    return pool.request("GET", base + entry.path)


def check_catalog(
    endpoint: Endpoint,
    token: str,
    catalog: Catalog,
    *,
    workers: int | None = None,
    progress: Callable[[int], None] | None = None,
    pipeline: int = DEFAULT_PIPELINE,
    timeout: float = DEFAULT_TIMEOUT,
    ssl_context: ssl.SSLContext | None = None,
) -> CheckReport:
    """Check every cataloged item against the Vault at `endpoint` (see the module doc).

    `progress(n)` is called from this thread with the number of secrets read so far
    (about every 0.2 s, and at the end). Raises UsageError for an unusable endpoint or
    token; a server that stops answering yields unreadable items, not an exception.
    """
    started = time.perf_counter()
    stages: dict[str, float] = {}
    pool = _ReadPool(
        _Target.of(endpoint, ssl_context),
        token,
        workers or DEFAULT_WORKERS,
        pipeline,
        timeout,
    )
    try:
        mounts_read, auth_read, policies_read = pool.run(
            [
                pool.request("GET", "sys/mounts"),
                pool.request("GET", "sys/auth"),
                pool.request("LIST", "sys/policies/acl"),
            ],
            [_parse_sys, _parse_sys, _parse_list],
        )
        mounts, restored_mounts = _check_mounts(
            "mounts", catalog.mounts, mounts_read, "read sys/mounts", True
        )
        auth, _ = _check_mounts(
            "auth_methods", catalog.auth_methods, auth_read, "read sys/auth", False
        )
        policies = _check_policies(catalog.policies, policies_read)
        stages["sys"] = time.perf_counter() - started

        entries = [e for e in catalog.secrets if e.kv == 2] + [
            e for e in catalog.secrets if e.kv != 2
        ]
        requests = [_secret_request(pool, e) for e in entries]
        parsers: list[_Parser] = [_parse_kv2 if e.kv == 2 else _parse_kv1 for e in entries]
        mark = time.perf_counter()
        reads = pool.run(requests, parsers, progress)
        kv2 = FamilyResult("kv2_secrets")
        kv1 = FamilyResult("kv1_secrets")
        for entry, read in zip(entries, reads, strict=True):
            if entry.kv == 2:
                kv2.add(*judge_kv2(entry, read))
            else:
                kv1.add(*judge_kv1(entry, read))
        stages["secrets"] = time.perf_counter() - mark

        if restored_mounts:
            kv_mounts = [m for m in restored_mounts.values() if m.kv_version]
        else:  # sys/mounts unreadable: list what the catalog names
            kv_mounts = [m for m in catalog.mounts if m.kv_version]
        mark = time.perf_counter()
        extra = _check_extra_paths(pool, sorted(kv_mounts, key=_mount_key), catalog)
        stages["list"] = time.perf_counter() - mark
    finally:
        pool.close()

    families = [mounts, auth, policies, kv2, kv1, extra]
    seconds = time.perf_counter() - started
    return CheckReport(
        families=families,
        total_checked=sum(f.checked for f in families),
        passed=not any(f.failed for f in families),
        seconds=seconds,
        reads=pool.reads,
        reads_per_second=pool.reads / seconds if seconds > 0 else 0.0,
        endpoint=endpoint.describe(),
        workers=pool.workers,
        pipeline=pool.pipeline,
        stage_seconds=stages,
    )


__all__ = [
    "DEFAULT_PIPELINE",
    "DEFAULT_TIMEOUT",
    "DEFAULT_WORKERS",
    "FAMILIES",
    "Answer",
    "CheckReport",
    "FamilyResult",
    "check_catalog",
    "judge_kv1",
    "judge_kv2",
]
