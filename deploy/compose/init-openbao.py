"""docker-compose.yml's openbao-init: initialize and unseal the stack's OpenBao, once.

Writes the init JSON (unseal keys, root token) to $INIT_DIR/init.json and the root
token to $INIT_DIR/root-token, both 0600 and owned by $OWNER_UID (the dr image's user),
on the shared volume. Idempotent: an initialized server is only unsealed again.
Standard library only (runs in the plain python image).
"""

from __future__ import annotations

import json
import os
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

ADDR = os.environ.get("BAO_ADDR", "http://openbao:8200").rstrip("/")
INIT_DIR = Path(os.environ.get("INIT_DIR", "/shared"))
OWNER_UID = int(os.environ.get("OWNER_UID", "65532"))


def call(method: str, path: str, body: dict[str, object] | None = None) -> dict[str, object]:
    data = json.dumps(body).encode() if body is not None else None
    # ADDR is checked to be http(s) in main(): no file: or custom scheme is opened.
    req = urllib.request.Request(f"{ADDR}/v1/{path}", data=data, method=method)  # noqa: S310
    with urllib.request.urlopen(req, timeout=10) as resp:  # noqa: S310
        answer: dict[str, object] = json.loads(resp.read() or b"{}")
        return answer


def write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    if os.geteuid() == 0:
        os.chown(path, OWNER_UID, OWNER_UID)


def main() -> int:
    if not ADDR.startswith(("http://", "https://")):
        print(f"error: BAO_ADDR must be http:// or https://, not {ADDR!r}", file=sys.stderr)
        return 2
    deadline = time.monotonic() + 120
    while True:
        try:
            status = call("GET", "sys/seal-status")
            break
        except (urllib.error.URLError, OSError) as exc:
            if time.monotonic() > deadline:
                print(f"error: OpenBao at {ADDR} did not answer: {exc}", file=sys.stderr)
                return 1
            time.sleep(1)
    INIT_DIR.mkdir(parents=True, exist_ok=True)
    init_file = INIT_DIR / "init.json"
    if not status.get("initialized"):
        init = call("PUT", "sys/init", {"secret_shares": 1, "secret_threshold": 1})
        write_private(init_file, json.dumps(init))
        write_private(INIT_DIR / "root-token", str(init["root_token"]) + "\n")
        print(f"initialized {ADDR}: {init_file}")
    init = json.loads(init_file.read_text())
    keys = init.get("keys_base64") or init.get("unseal_keys_b64") or []
    for key in keys:
        if not call("GET", "sys/seal-status").get("sealed"):
            break
        call("PUT", "sys/unseal", {"key": key})
    if call("GET", "sys/seal-status").get("sealed"):
        print(f"error: {ADDR} is still sealed", file=sys.stderr)
        return 1
    print(f"unsealed {ADDR}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
