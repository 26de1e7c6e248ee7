"""A loopback HTTP proxy in front of the real OpenBao that damages snapshot responses.

Standbys and proxies have returned empty or cut-off snapshots (FACTS.md); a real
server does not do it on demand, so this proxy forwards every request unchanged except
GET /v1/sys/storage/raft/snapshot, whose body it empties, truncates, or replaces. Mode
`auth_fails_after_snapshot` passes the snapshot and then answers every GET of
sys/auth with a 500: the catalog walk (which reads it, and starts once the snapshot is
read) fails while or after the snapshot is uploaded.
"""

from __future__ import annotations

import http.server
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import requests

SNAPSHOT_PATH = "/v1/sys/storage/raft/snapshot"


class _Handler(http.server.BaseHTTPRequestHandler):
    upstream: str = ""
    mode: str = "pass"  # pass | empty | truncate | html | slow | auth_fails_after_snapshot
    snapshot_served = False  # set on the per-proxy subclass once a snapshot body went out
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:
        pass

    def _forward(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        if (
            self.mode == "auth_fails_after_snapshot"
            and type(self).snapshot_served
            and self.command == "GET"
            and self.path.startswith("/v1/sys/auth")
        ):
            reply = b'{"errors":["injected by the test proxy"]}'
            self.send_response(500)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)
            return
        headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host",)}
        resp = requests.request(
            self.command, self.upstream + self.path, data=body, headers=headers, timeout=60
        )
        content = resp.content
        if self.path.startswith(SNAPSHOT_PATH) and self.command == "GET":
            if self.mode == "empty":
                content = b""
            elif self.mode == "truncate":
                content = content[: len(content) * 2 // 3]
            elif self.mode == "html":
                content = b"<html><body>502 Bad Gateway</body></html>"
        self.send_response(resp.status_code)
        for key, value in resp.headers.items():
            if key.lower() in (
                "content-length",
                "transfer-encoding",
                "connection",
                "content-encoding",
            ):
                continue
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(content)))
        self.end_headers()
        if self.mode == "slow" and self.path.startswith(SNAPSHOT_PATH):
            # Dribble the snapshot out so a test can interrupt a backup mid-stream.
            for start in range(0, len(content), 16384):
                self.wfile.write(content[start : start + 16384])
                self.wfile.flush()
                time.sleep(0.05)
            return
        self.wfile.write(content)
        if self.path.startswith(SNAPSHOT_PATH) and self.command == "GET":
            type(self).snapshot_served = True

    do_GET = do_PUT = do_POST = do_DELETE = do_LIST = _forward


@contextmanager
def fault_proxy(upstream: str, mode: str) -> Iterator[str]:
    handler = type("Handler", (_Handler,), {"upstream": upstream, "mode": mode})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
