"""Drill runtimes: where a throwaway Vault runs for a drill.

A runtime starts an uninitialized Vault/OpenBao server that nothing else uses, reachable
from the host through an `Endpoint`, with no network beyond loopback where the runtime
allows it (a restored Vault tries to revoke leases against the REAL databases and
clouds; FACTS.md). The server's config always enables the unauthenticated
generate-root endpoints, so the drill can make a root token from the source cluster's
unseal keys that is valid only inside the throwaway.

With an auto-unseal seal (`request.seal`) the server's seal stanza points at a unix
socket whose other end, a relay in the drill's process, reaches the seal's one host
and port (dr/runtime/sealrelay.py): the isolation's one, reported, exception.

A runtime that cannot isolate refuses to start (UsageError naming --allow-unisolated)
unless the request says `allow_unisolated`; the ThrowawayVault then says `isolated=False`
and the report says NOT ISOLATED. A pinned binary (`binary_sha256`) or image
(`image_digest`) that differs is refused with IntegrityError (exit 6).

Runtimes register in `RUNTIMES` by name ("process", "container"); `auto` picks the
container runtime when a Docker engine answers, else the process runtime, and refuses
like the runtimes do when neither can isolate.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from dr.vault.endpoint import Endpoint
from dr.vault.sealconf import SealSettings


@dataclass(frozen=True)
class RuntimeRequest:
    """What the drill asks for: the backup's product and version, and a private dir."""

    product: str  # "openbao" | "vault"
    version: str  # e.g. "2.7.2"
    workdir: Path  # a private (0700) directory the runtime may use; removed by the caller
    binary: Path | None = None  # process runtime: drill.binary
    image: str | None = None  # container runtime: drill.image
    allow_unisolated: bool = False  # --allow-unisolated: run even without isolation
    binary_sha256: str | None = None  # process runtime: drill.binary_sha256 (hex)
    image_digest: str | None = None  # container runtime: drill.image_digest (sha256:...)
    # Auto-unseal: the source's seal (drill.seal) and what its stanza needs (the transit
    # token / AWS credentials), written only into the server's 0600 config file.
    seal: SealSettings | None = None
    seal_secrets: Mapping[str, str] = field(default_factory=dict, repr=False)
    nodes: int = 1  # drill.nodes: 1, or 3 raft nodes in the same isolation


UNISOLATED_HINT = (
    "a restored Vault revokes leases against the real databases and clouds; "
    "pass --allow-unisolated only if this host cannot reach them"
)


@dataclass
class ThrowawayVault:
    """A running, uninitialized throwaway server. `stop()` must leave nothing behind:
    no process, container, network, socket or port; it is idempotent."""

    endpoint: Endpoint
    product: str
    version: str
    isolation: str  # what isolation applied, in words, for the report
    runtime: str  # "process" | "container"
    stop: Callable[[], None]
    logs: Callable[[], str] = field(default=lambda: "")
    details: dict[str, str] = field(default_factory=dict)  # pid, container id, image...
    isolated: bool = True  # False only when the request allowed running unisolated
    # The one exception to the isolation, in words ("" without a seal): the relay to
    # the seal's host and port (dr/runtime/sealrelay.py).
    seal_exception: str = ""
    # Every node of a multi-node throwaway (drill.nodes: 3), `endpoint` first.
    endpoints: list[Endpoint] = field(default_factory=list)
    # Each node's API address as the OTHER nodes reach it (for raft join).
    api_addrs: list[str] = field(default_factory=list)


class DrillRuntime(Protocol):
    name: str

    def available(self) -> tuple[bool, str]:
        """(usable here, why not) without side effects."""
        ...

    def isolation_support(self) -> tuple[bool, str]:
        """(can isolate a server here, why not), checked before anything starts."""
        ...

    def start(self, request: RuntimeRequest) -> ThrowawayVault:
        """Start the server and wait until its HTTP API answers (501: uninitialized).

        On failure, everything already started is stopped before raising
        dr.errors.DRError (or a subclass) with a one-line reason.
        """
        ...


RuntimeFactory = Callable[[], DrillRuntime]
RUNTIMES: dict[str, RuntimeFactory] = {}


def register(name: str) -> Callable[[RuntimeFactory], RuntimeFactory]:
    def deco(factory: RuntimeFactory) -> RuntimeFactory:
        RUNTIMES[name] = factory
        return factory

    return deco
