"""The `container` drill runtime: the throwaway server in a container (testcontainers).

Isolation: the container runs with network "none": its only interface is loopback, so a
restored Vault cannot reach the real databases and clouds (FACTS.md). The host reaches
it through a unix socket in a bind-mounted host directory (0700, the caller's), the one
path across that boundary; no port is published. Raft data and /tmp (a restore spools
the snapshot there; a FROM-scratch image has none) are tmpfs mounts that go with the
container. After start the runtime checks NetworkMode and, where /proc
shows it, that the server sees only `lo`.

Image: `drill.image`, else `openbao/openbao:VERSION` or `hashicorp/vault:VERSION` from the
backup. The entrypoint is the server binary itself (/bin/bao or /bin/vault), the same in
the official images and in the local FROM-scratch image (dr/runtime/image.py); running it
as root inside the container keeps the official images' privilege-dropping scripts out.
OpenBao 2.7 needs no IPC_LOCK (it has no mlock); a Vault config gets disable_mlock.

Environment: testcontainers passes only the variables set with `with_env` (none here) and
docker-py adds none of the host's, so the server sees only its image's own ENV; the
runtime checks that Config.Env adds nothing to the image's after start. Image pinning:
with drill.image_digest the image actually started (its id, or one of its RepoDigests)
must match, else IntegrityError (exit 6); the image id is in the details either way.

Auto-unseal (`request.seal`): the config's seal stanza points at a second socket in the
same bind-mounted dir, `/vault/sock/seal.sock`, whose relay in the drill's process
reaches the seal's one host and port (dr/runtime/sealrelay.py); the network stays none.

Cleanup: stop() removes the container (force, with its volumes) and the socket dir;
`Teardown` runs at exit too. testcontainers' Ryuk reaper is off by default here (its
image cannot be pulled without a registry); instead each container carries its owner
("host:pid:starttime") in a label, and the next container drill removes containers whose
owner died without cleaning up (SIGKILL).
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import os
import shutil
import time
import uuid
from typing import Any

from dr.errors import IntegrityError, UsageError, VaultError
from dr.runtime.base import RuntimeRequest, ThrowawayVault, register
from dr.runtime.image import BINARY_PATHS, default_image
from dr.runtime.isolation import OWNER_LABEL, Teardown, net_interfaces, owner_alive, owner_token
from dr.runtime.isolation import socket_dir as make_socket_dir
from dr.runtime.sealrelay import relay_for_server
from dr.vault.connection import VaultClient, VaultUnreachable
from dr.vault.endpoint import Endpoint

ISOLATION = "container with network none (loopback only), reached through a unix socket"
DRILL_LABEL = "dr.drill"
START_TIMEOUT = 60.0
PING_TIMEOUT = 3
# testcontainers settings this runtime needs, applied only when the user set nothing.
# Ryuk: its image cannot be pulled without a registry (FACTS.md). No port is published,
# so TESTCONTAINERS_CONNECTION_MODE and TC_HOST do not matter here.
TESTCONTAINERS_DEFAULTS = {"TESTCONTAINERS_RYUK_DISABLED": "true"}
_IN_CONTAINER_SOCKET = "/vault/sock/bao.sock"
_IN_CONTAINER_SEAL_SOCKET = "/vault/sock/seal.sock"
_IN_CONTAINER_TMP = "/tmp"  # noqa: S108 - a private tmpfs inside the container


def container_config(product: str, uid: int, gid: int) -> str:
    """Server config inside the container: raft on tmpfs, tcp on loopback, unix socket."""
    mlock = "disable_mlock = true\n" if product == "vault" else ""
    return f"""\
storage "raft" {{
  path                   = "/vault/data"
  node_id                = "drill"
  performance_multiplier = 1
}}

listener "tcp" {{
  address         = "127.0.0.1:8200"
  cluster_address = "127.0.0.1:8201"
  tls_disable     = true
  disable_unauthed_generate_root_endpoints = false
}}

listener "unix" {{
  address      = "{_IN_CONTAINER_SOCKET}"
  socket_mode  = "0600"
  socket_user  = "{uid}"
  socket_group = "{gid}"
  disable_unauthed_generate_root_endpoints = false
}}

api_addr     = "http://127.0.0.1:8200"
cluster_addr = "https://127.0.0.1:8201"
log_level    = "info"
{mlock}"""


def _docker(module: str = "docker") -> Any:
    """docker-py (untyped; imported by name so mypy needs no stubs)."""
    return importlib.import_module(module)


def _docker_errors() -> Any:
    """docker.errors: the exception types testcontainers lets through from docker-py."""
    return _docker("docker.errors")


def _testcontainers_env() -> None:
    for name, value in TESTCONTAINERS_DEFAULTS.items():
        os.environ.setdefault(name, value)


def sweep_orphans(client: Any) -> list[str]:
    """Remove drill containers whose owner process died without cleanup; their ids."""
    removed: list[str] = []
    for container in client.containers.list(all=True, filters={"label": DRILL_LABEL}):
        owner = container.labels.get(OWNER_LABEL, "")
        if owner and not owner_alive(owner):
            with contextlib.suppress(Exception):
                container.remove(force=True, v=True)
                removed.append(container.id)
    return removed


@register("container")
class ContainerRuntime:
    name = "container"

    def available(self) -> tuple[bool, str]:
        try:
            docker = _docker()
            import testcontainers.core.container  # noqa: F401
        except ImportError as exc:
            return (
                False,
                f"testcontainers is not installed ({exc}): pip install 'vault-dr[container]'",
            )
        where = os.environ.get("DOCKER_HOST", "the default socket")
        if not where.startswith(("unix://", "the default")):
            # The socket dir is a bind mount: the engine must see this host's files.
            return False, f"DOCKER_HOST={where}: the container runtime needs a local engine"
        try:
            # docker SDK: a bare ping with a short timeout; testcontainers' client
            # would rewrite DOCKER_HOST and may log into registries first.
            client = docker.from_env(timeout=PING_TIMEOUT)
            try:
                client.ping()
            finally:
                client.close()
        except Exception as exc:
            return False, f"no Docker engine answers at {where}: {exc}"
        return True, ""

    def isolation_support(self) -> tuple[bool, str]:
        return True, ""  # network "none" is always available where the engine runs

    def start(self, request: RuntimeRequest) -> ThrowawayVault:
        _testcontainers_env()
        from testcontainers.core.container import DockerContainer

        errors = _docker_errors()
        product = request.product if request.product in BINARY_PATHS else "openbao"
        image = request.image or default_image(request.product, request.version)
        try:
            container = DockerContainer(image)  # connects to the engine
        except errors.DockerException as exc:
            where = os.environ.get("DOCKER_HOST", "the default socket")
            raise UsageError(f"no Docker engine answers at {where}: {exc}") from exc
        if request.nodes > 1:
            raise UsageError(
                f"drill.nodes: {request.nodes} needs the process runtime (--runtime process); "
                "the container runtime drills one node"
            )
        config_dir = request.workdir / "container-config"
        config_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        sock_dir, _ = make_socket_dir(request.workdir / "sock")
        endpoint = Endpoint(unix_socket=sock_dir / "bao.sock")
        # The seal relay's socket sits beside the server's, in the one bind-mounted dir.
        try:
            stanza, relay = relay_for_server(
                request.seal, dict(request.seal_secrets), sock_dir, _IN_CONTAINER_SEAL_SOCKET
            )
        except BaseException:
            shutil.rmtree(sock_dir, ignore_errors=True)
            raise
        config_file = config_dir / "bao.hcl"
        config_file.write_text(container_config(product, os.getuid(), os.getgid()) + stanza)
        config_file.chmod(0o600)  # holds the seal token, if any
        (
            container.with_name(f"dr-drill-{uuid.uuid4().hex[:12]}")
            .with_command(["server", "-config=/vault/config/bao.hcl"])
            .with_volume_mapping(config_dir, "/vault/config", "ro")
            .with_volume_mapping(sock_dir, "/vault/sock", "rw")
            .with_tmpfs_mount("/vault/data")
            # A restore spools the snapshot to os.TempDir(): give every image a /tmp.
            .with_tmpfs_mount(_IN_CONTAINER_TMP)
            .with_kwargs(
                entrypoint=[BINARY_PATHS[product]],
                user="0:0",
                # `network` (not network_mode): testcontainers then keeps its own
                # network guess out; docker-py turns it into NetworkMode "none".
                network="none",
                labels={DRILL_LABEL: "1", OWNER_LABEL: owner_token()},
            )
        )
        last_logs: list[str] = []
        teardown = Teardown(
            functools.partial(_keep_logs, container, last_logs),
            functools.partial(_remove, container),
            relay.stop if relay is not None else (lambda: None),
            functools.partial(shutil.rmtree, sock_dir, ignore_errors=True),
            functools.partial(shutil.rmtree, config_dir, ignore_errors=True),
        )
        try:
            try:
                sweep_orphans(container.get_docker_client().client)
                _start(container, image)
                version = _wait_uninitialized(container, endpoint) or request.version
                _check_isolation(container)
                image_id, digests = _check_image(container, request.image_digest)
            except errors.DockerException as exc:
                raise VaultError(f"Docker engine error while starting {image}: {exc}") from exc
        except BaseException:
            teardown()
            raise
        wrapped = container.get_wrapped_container()
        return ThrowawayVault(
            endpoint=endpoint,
            product=product,
            version=version,
            isolation=ISOLATION,
            runtime=self.name,
            stop=teardown,
            logs=functools.partial(_logs, container, last_logs),
            seal_exception=relay.describe() if relay is not None else "",
            endpoints=[endpoint],
            details={
                "container_id": str(wrapped.id),
                "container_name": str(wrapped.name),
                "image": image,
                "image_id": image_id,
                "image_digests": ",".join(digests),
                "endpoint": endpoint.describe(),
                "docker_host": os.environ.get("DOCKER_HOST", "(default)"),
            },
        )


def _start(container: Any, image: str) -> None:
    errors = _docker_errors()
    try:
        container.start()  # testcontainers pulls the image when it is not present
    except errors.DockerException as exc:
        client = container.get_docker_client().client
        try:
            client.images.get(image)
        except errors.ImageNotFound:
            raise UsageError(
                f"image {image} is not present and could not be pulled ({exc}); set "
                f"drill.image, or build it from a local binary: "
                f"python -m dr.runtime.image --tag {image}"
            ) from exc
        except errors.DockerException:
            pass
        raise VaultError(f"could not start a container from {image}: {exc}") from exc


def _wait_uninitialized(container: Any, endpoint: Endpoint) -> str:
    """Wait until sys/health answers 501 through the socket (fail fast if the container
    exits); the server's version from the health answer."""
    client = VaultClient(endpoint, retries=0, timeout=2, pool_maxsize=1)
    deadline = time.monotonic() + START_TIMEOUT
    next_status_check = 0.0
    try:
        while True:
            with contextlib.suppress(VaultUnreachable):
                reply = client.send(
                    "GET", "sys/health", auth=False, params={"uninitcode": "501"}, timeout=2
                )
                if reply.status == 501:
                    return str(reply.data().get("version") or "")
                raise VaultError(
                    f"drill container answered health {reply.status}, not 501 (uninitialized)"
                )
            now = time.monotonic()
            if now >= next_status_check:
                wrapped = container.get_wrapped_container()
                wrapped.reload()
                if wrapped.status not in ("created", "running"):
                    raise VaultError(
                        f"drill container exited ({wrapped.status}) while starting: "
                        f"{_logs(container)[-600:]}"
                    )
                next_status_check = now + 0.5
            if now > deadline:
                raise VaultError(
                    f"drill container did not answer on {endpoint.describe()} within "
                    f"{START_TIMEOUT:g}s: {_logs(container)[-600:]}"
                )
            time.sleep(0.05)
    finally:
        client.close()


def _check_isolation(container: Any) -> None:
    wrapped = container.get_wrapped_container()
    wrapped.reload()
    mode = wrapped.attrs["HostConfig"]["NetworkMode"]
    ports = wrapped.attrs["NetworkSettings"].get("Ports") or {}
    if mode != "none" or ports:
        raise VaultError(
            f"drill container {wrapped.name} has network mode {mode!r} and ports {ports}; "
            "expected network none and no published port"
        )
    pid = int(wrapped.attrs["State"].get("Pid") or 0)
    if pid and os.path.exists(f"/proc/{pid}/net/dev"):  # same pid namespace as the engine
        interfaces = net_interfaces(pid)
        if interfaces != ["lo"]:
            raise VaultError(
                f"drill container {wrapped.name} sees interfaces {interfaces}, expected 'lo'"
            )


def _check_image(container: Any, pinned: str | None) -> tuple[str, list[str]]:
    """(image id, repo digests) of the running container's image; IntegrityError when
    `pinned` (drill.image_digest) is neither; and no host variable in Config.Env."""
    wrapped = container.get_wrapped_container()
    image_id = str(wrapped.attrs["Image"])
    image = container.get_docker_client().client.images.get(image_id)
    digests = [str(d) for d in image.attrs.get("RepoDigests") or []]
    extra = sorted(
        set(wrapped.attrs["Config"].get("Env") or []) - set(image.attrs["Config"].get("Env") or [])
    )
    if extra:
        names = [item.split("=", 1)[0] for item in extra]
        raise VaultError(f"drill container {wrapped.name} got host variables {names}")
    if pinned is not None:
        want = pinned.strip().lower()
        want = want if want.startswith("sha256:") else f"sha256:{want}"
        known = {image_id.lower(), *(d.rsplit("@", 1)[-1].lower() for d in digests)}
        if want not in known:
            raise IntegrityError(
                f"drill image {wrapped.attrs['Config'].get('Image')} is {image_id} "
                f"(digests {digests or 'none'}), not the pinned drill.image_digest {want}"
            )
    return image_id, digests


def _remove(container: Any) -> None:
    from testcontainers.core.exceptions import ContainerStartException

    errors = _docker_errors()
    try:
        wrapped = container.get_wrapped_container()
    except ContainerStartException:  # never created
        wrapped = None
    try:
        if wrapped is not None:
            wrapped.remove(force=True, v=True)
    except errors.NotFound:
        pass
    finally:
        container.get_docker_client().client.close()


def _logs(container: Any, kept: list[str] | None = None) -> str:
    """The server's output; after stop(), what it printed until then."""
    if kept:
        return kept[0]
    with contextlib.suppress(Exception):
        return bytes(container.get_wrapped_container().logs()).decode(errors="replace")
    return ""


def _keep_logs(container: Any, kept: list[str]) -> None:
    kept[:] = [_logs(container)]
