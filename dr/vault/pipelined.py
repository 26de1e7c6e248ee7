"""A lean, pipelined HTTP/1.1 reader: the drill's verify stage and the catalog walk.

Why hand-written: a drill's verify stage is bound by the client (hvac + requests spend
0.5-0.85 ms of Python per read, more than the server; FACTS.md). This reader keeps one
persistent connection per worker thread (TCP, unix socket or TLS), builds request
bytes once, pipelines `pipeline` requests per `sendall`, and parses answers by hand
(Content-Length, chunked, Connection: close). Parsing of bodies is the caller's
(`Parser`); bodies hold secret values and are never kept or logged here.
dr/ops/checks.py explains the design and the measurements; dr/vault/http11.py parses.
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
from dataclasses import dataclass
from typing import Any, NamedTuple
from urllib.parse import quote, urlsplit

from dr.errors import UsageError
from dr.vault import http11
from dr.vault.answers import one_line
from dr.vault.endpoint import Endpoint

_READ_BUFFER = 256 * 1024
_LOST_IN_ROW_FATAL = 3  # reads failing twice in a row before the server counts as gone
_PROGRESS_EVERY = 0.2  # seconds between progress callbacks


_ProtocolError = http11.ProtocolError  # a malformed answer: the connection is dropped


class Answer(NamedTuple):
    """What is kept of one HTTP answer (never a secret value)."""

    status: int  # 0: no answer
    version: int | None = None
    deleted: bool = False
    destroyed: bool = False
    payload: Any = None  # sys answers and LIST keys only
    error: str = ""


Parser = Callable[[int, bytes], Answer]


@dataclass(frozen=True)
class Target:
    host: str
    port: int
    unix_socket: str | None
    ssl_context: ssl.SSLContext | None
    host_header: str

    @classmethod
    def of(cls, endpoint: Endpoint, ssl_context: ssl.SSLContext | None) -> Target:
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

    def __init__(self, target: Target, timeout: float) -> None:
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
        assert self.rfile is not None
        return http11.read_response(self.rfile)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError | socket.timeout):
        return "timed out"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, FileNotFoundError):
        return "socket not found"
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}"[:160] if text else type(exc).__name__


class ReadPool:
    """`workers` persistent connections, each driven by one thread per `run`."""

    def __init__(
        self,
        target: Target,
        token: str,
        workers: int,
        pipeline: int,
        timeout: float,
        *,
        namespace: str | None = None,
    ) -> None:
        if not token or not token.isascii() or not token.isprintable() or " " in token:
            raise UsageError("the Vault token is empty or holds characters a token cannot have")
        self.workers = max(1, workers)
        self.pipeline = max(1, pipeline)
        self.namespace = namespace
        self._conns = [_Connection(target, timeout) for _ in range(self.workers)]
        self._head = f" HTTP/1.1\r\nHost: {target.host_header}\r\nX-Vault-Token: {token}\r\n"
        self._tails: dict[str | None, bytes] = {}
        self._lock = threading.Lock()
        self.fatal: str | None = None
        self.reads = 0

    def _tail(self, namespace: str | None) -> bytes:
        tail = self._tails.get(namespace)
        if tail is None:
            head = self._head.encode("ascii")
            if namespace:
                # Sent as UTF-8 bytes: OpenBao matches non-ASCII names byte for byte.
                if "\r" in namespace or "\n" in namespace:
                    raise UsageError(f"namespace {namespace!r} holds a line break")
                head += b"X-Vault-Namespace: " + namespace.encode() + b"\r\n"
            tail = self._tails[namespace] = head + b"\r\n"
        return tail

    def request(self, method: str, path: str, namespace: str | object | None = ...) -> bytes:
        """Request bytes for /v1/<path> (path unquoted, no leading slash), in the pool's
        namespace unless `namespace` is given (None or "" for the root namespace)."""
        ns = self.namespace if namespace is ... else namespace
        return (
            method.encode("ascii")
            + b" /v1/"
            + quote(path).encode("ascii")
            + self._tail(ns.strip("/") if isinstance(ns, str) and ns.strip("/") else None)
        )

    def close(self) -> None:
        """Stop the workers of a run still going (after an interrupt) and close all."""
        with self._lock:
            self.fatal = self.fatal or "the check was stopped"
        for conn in self._conns:
            conn.close()

    def run(
        self,
        requests: Sequence[bytes],
        parsers: Sequence[Parser] | Parser,
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
        single: Parser | None,
        many: Sequence[Parser] | None,
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


# --- answer parsing shared by every caller -------------------------------------------


def load_json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except ValueError:  # the exception would hold the body: never let it travel
        return None


def error_answer(status: int, body: bytes) -> Answer:
    """A non-success answer, keeping only Vault's own `errors`, folded to one line."""
    doc = load_json(body) if body[:1] == b"{" else None
    errors = doc.get("errors") if isinstance(doc, dict) else None
    text = ""
    if isinstance(errors, list) and errors:
        text = "; ".join(one_line(str(e)) for e in errors)[:200]
    return Answer(status, error=text)


def parse_data(status: int, body: bytes) -> Answer:
    """A sys/ or metadata answer: its `data` object (or the whole document) as payload."""
    if status != 200:
        return error_answer(status, body)
    doc = load_json(body)
    if not isinstance(doc, dict):
        return Answer(200, error="answer is not a JSON object")
    data = doc.get("data")
    return Answer(200, payload=data if isinstance(data, dict) else doc)
