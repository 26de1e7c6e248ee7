"""The one way out of a drill's isolation: a relay from a unix socket to the seal.

An auto-unseal throwaway must reach its seal (transit Vault, KMS) and nothing else: a
restored Vault revokes leases against the REAL databases and clouds (FACTS.md). The
throwaway keeps its isolated network (a namespace or container whose only interface is
loopback); its seal stanza points at a unix socket in the drill's private directory
(`address = "unix:///.../seal.sock"`: the Vault API client of the transit seal dials
unix sockets), and this relay, in the drill's own process, connects each accepted
connection to exactly one host and port: the seal's. Nothing else is reachable.

TLS: the API client speaks plain HTTP over a unix socket, so for an https seal address
the relay is the TLS client: it verifies the seal's certificate against
`drill.seal.tls_ca_cert` (or the system store) and `tls_server_name` (default: the host),
so certificates still verify; only the hop inside the drill's 0700 directory is plain.

Why not a library: the relay is a byte pipe over the standard library (socketserver,
selectors, ssl); the proxies on PyPI are HTTP proxies (a CONNECT the Vault client would
have to be told about) or asyncio frameworks heavier than these few lines.
"""

from __future__ import annotations

import contextlib
import logging
import os
import selectors
import socket
import socketserver
import ssl
import threading
from pathlib import Path

from dr.errors import UsageError
from dr.vault.sealconf import SealSettings, server_stanza

log = logging.getLogger(__name__)
CONNECT_TIMEOUT = 10.0
_CHUNK = 1 << 16


class _Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True
    relay: SealRelay


class _Handler(socketserver.BaseRequestHandler):
    server: _Server

    def handle(self) -> None:
        self.server.relay.pipe(self.request)


class SealRelay:
    """Accept on `socket_path`, connect to the seal's (host, port), pipe bytes."""

    def __init__(self, settings: SealSettings, socket_path: Path) -> None:
        self.settings = settings
        self.socket_path = socket_path
        self.host, self.port, self.tls = settings.host_port()
        self._context: ssl.SSLContext | None = settings.tls.ssl_context() if self.tls else None
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()
        self.connections = 0
        self.failures = 0

    def describe(self) -> str:
        scheme = "https" if self.tls else "http"
        return (
            f"the {self.settings.type} seal at {scheme}://{self.host}:{self.port} only, through "
            f"a unix-socket relay{' (TLS verified by the relay)' if self.tls else ''}"
        )

    def start(self) -> SealRelay:
        with contextlib.suppress(FileNotFoundError):
            self.socket_path.unlink()
        server = _Server(str(self.socket_path), _Handler)
        os.chmod(self.socket_path, 0o600)
        server.relay = self
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True
        )
        self._thread.start()
        log.info("seal relay %s -> %s", self.socket_path, self.describe())
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        with self._lock:
            live = list(self._open)
            self._open.clear()
        for sock in live:
            with contextlib.suppress(OSError):
                sock.close()
        with contextlib.suppress(FileNotFoundError):
            self.socket_path.unlink()

    def _track(self, sock: socket.socket) -> None:
        with self._lock:
            self._open.add(sock)

    def _untrack(self, sock: socket.socket) -> None:
        with self._lock:
            self._open.discard(sock)
        with contextlib.suppress(OSError):
            sock.close()

    def _upstream(self) -> socket.socket:
        raw = socket.create_connection((self.host, self.port), timeout=CONNECT_TIMEOUT)
        if self._context is None:
            raw.settimeout(None)
            return raw
        name = self.settings.tls_server_name or self.host
        try:
            wrapped = self._context.wrap_socket(raw, server_hostname=name)
        except BaseException:
            raw.close()
            raise
        wrapped.settimeout(None)
        return wrapped

    def pipe(self, client: socket.socket) -> None:
        self.connections += 1
        self._track(client)
        try:
            upstream = self._upstream()
        except (OSError, ssl.SSLError) as exc:
            self.failures += 1
            log.warning("seal relay: cannot reach %s:%s: %s", self.host, self.port, exc)
            with contextlib.suppress(OSError):
                client.shutdown(socket.SHUT_RDWR)  # the server sees the refusal at once
            self._untrack(client)
            return
        self._track(upstream)
        try:
            _copy_both_ways(client, upstream)
        finally:
            self._untrack(upstream)
            self._untrack(client)


def _copy_both_ways(a: socket.socket, b: socket.socket) -> None:
    """Copy until both directions ended. One thread: an SSLSocket must not be read and
    written from two threads at once; `pending()` covers bytes OpenSSL already holds."""
    try:
        _copy_loop(a, b)
    except (OSError, ValueError):  # a socket closed under us by stop()
        return


def _copy_loop(a: socket.socket, b: socket.socket) -> None:
    peer = {a: b, b: a}
    open_read = {a, b}
    with selectors.DefaultSelector() as selector:
        for sock in open_read:
            selector.register(sock, selectors.EVENT_READ)
        while open_read:
            ready = [s for s in open_read if isinstance(s, ssl.SSLSocket) and s.pending()]
            if not ready:
                ready = [key.fileobj for key, _ in selector.select(timeout=30)]  # type: ignore[misc]
            for sock in ready:
                if sock not in open_read:
                    continue
                try:
                    data = _recv(sock)
                except (ssl.SSLWantReadError, BlockingIOError):
                    continue  # TLS bytes that were no data (a session ticket)
                except OSError:
                    data = b""
                if data:
                    try:
                        peer[sock].sendall(data)
                    except OSError:
                        return
                    continue
                open_read.discard(sock)
                selector.unregister(sock)
                with contextlib.suppress(OSError):
                    # The TCP half-close itself: SSLSocket.shutdown() would drop its
                    # TLS state, and later bytes from the seal would pass encrypted.
                    socket.socket.shutdown(peer[sock], socket.SHUT_WR)


def check_relayable(seal: SealSettings) -> None:
    """Only transit seals can be relayed: the transit seal's client dials a unix socket,
    the AWS SDK of the awskms seal cannot. UsageError (exit 2) otherwise."""
    if seal.type != "transit":
        raise UsageError(
            f"{seal.where}: a drill of an {seal.type}-sealed backup cannot reach its seal "
            "from the isolated throwaway yet (only transit seals are relayed); restore it "
            "with dr restore into a server configured with the same seal (docs/restore.md)"
        )


def relay_for_server(
    seal: SealSettings | None, secrets: dict[str, str], sock_dir: Path, seen_as: str
) -> tuple[str, SealRelay | None]:
    """(the server's seal stanza, the started relay) for a throwaway; ("", None) without
    a seal. `seen_as` is the relay socket's path as the server sees it (a container
    mounts `sock_dir` elsewhere)."""
    if seal is None:
        return "", None
    check_relayable(seal)
    relay = SealRelay(seal, sock_dir / "seal.sock").start()
    stanza = server_stanza(seal, address=f"unix://{seen_as}", secrets=secrets)
    return stanza, relay


def _recv(sock: socket.socket) -> bytes:
    """Read what is there. A TLS socket is read without blocking: a readable TLS socket
    may hold only a record that is no data (TLS 1.3 sends session tickets after the
    handshake), and a blocking read would wait for data while the other side waits
    for us. Writes stay blocking (sendall)."""
    if not isinstance(sock, ssl.SSLSocket):
        return sock.recv(_CHUNK)
    sock.setblocking(False)
    try:
        return sock.recv(_CHUNK)
    finally:
        sock.setblocking(True)
