"""moto in server mode: a real HTTP KMS (and S3) endpoint on loopback.

The server runs in this process (`ThreadedMotoServer`), so it shares moto's global
backends with `moto.mock_aws`: a unit test using `mock_aws` resets them and so deletes
the server's keys too (and, while active, patches botocore in this process). Hence
`ensure_kms_key`, which the per-test fixture calls: it recreates the key when needed.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import socket
import threading
import time
from dataclasses import dataclass
from typing import Any

import boto3
from botocore.config import Config

from dr.vault.localserver import LOOPBACK, free_port

ACCESS_KEY = "dr-test-access-key"
SECRET_KEY = "dr-test-secret-key"
REGION = "us-east-1"


@dataclass(frozen=True)
class KmsKey:
    key_id: str
    arn: str
    alias: str


_running: set[MotoServer] = set()


def _stop_all() -> None:
    for server in list(_running):
        with contextlib.suppress(Exception):
            server.stop()


atexit.register(_stop_all)


class MotoServer:
    def __init__(self, port: int | None = None) -> None:
        self._fixed_port = port
        self.port = 0
        self.region = REGION
        self.access_key = ACCESS_KEY
        self.secret_key = SECRET_KEY
        self.key: KmsKey | None = None  # the first key made by create/ensure
        self._server: Any = None

    @property
    def endpoint_url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    @property
    def key_id(self) -> str:
        assert self.key is not None, "no KMS key created yet"
        return self.key.key_id

    def start(self, timeout: float = 10) -> None:
        if self._server is not None:
            return
        from moto.server import ThreadedMotoServer  # optional: moto[server]

        logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no per-request lines

        for _ in range(1 if self._fixed_port else 3):
            self.port = self._fixed_port or free_port()
            server = ThreadedMotoServer(ip_address=LOOPBACK, port=self.port, verbose=False)
            # start() waits forever if the bind fails (the error dies in its thread).
            starter = threading.Thread(target=server.start, daemon=True)
            starter.start()
            starter.join(timeout)
            if not starter.is_alive() and self._answers():
                self._server = server
                _running.add(self)
                return
        raise RuntimeError(f"moto server did not start on {LOOPBACK}:{self.port}")

    def _answers(self) -> bool:
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection((LOOPBACK, self.port), 1):
                return True
            time.sleep(0.05)
        return False

    def client(self, service: str = "kms") -> Any:
        session = boto3.session.Session(
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            region_name=self.region,
        )
        return session.client(
            service,
            endpoint_url=self.endpoint_url,
            config=Config(retries={"max_attempts": 2, "mode": "standard"}),
        )

    def create_kms_key(self, alias: str) -> KmsKey:
        """A symmetric KMS key with `alias` ("alias/..." added when missing)."""
        if not alias.startswith("alias/"):
            alias = f"alias/{alias}"
        kms = self.client()
        meta = kms.create_key(Description=f"vault-dr test key {alias}")["KeyMetadata"]
        kms.create_alias(AliasName=alias, TargetKeyId=meta["KeyId"])
        key = KmsKey(key_id=meta["KeyId"], arn=meta["Arn"], alias=alias)
        if self.key is None or self.key.alias == alias:
            self.key = key
        return key

    def ensure_kms_key(self, alias: str) -> KmsKey:
        """The key behind `alias`, created if missing (e.g. after a mock_aws reset)."""
        if not alias.startswith("alias/"):
            alias = f"alias/{alias}"
        kms = self.client()
        try:
            meta = kms.describe_key(KeyId=alias)["KeyMetadata"]
        except kms.exceptions.NotFoundException:
            return self.create_kms_key(alias)
        key = KmsKey(key_id=meta["KeyId"], arn=meta["Arn"], alias=alias)
        if self.key is None or self.key.alias == alias:
            self.key = key
        return key

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.stop()
        _running.discard(self)

    def __enter__(self) -> MotoServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
