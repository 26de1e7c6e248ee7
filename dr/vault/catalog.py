"""The catalog: every secret path a backup should hold, walked with list and metadata only.

No secret value is read (least privilege: the backup token needs `list` and metadata
`read`, never `read` on data). The catalog lets a drill check every path of a restored
Vault, and it is encrypted and stored beside the snapshot.

Snapshot and catalog must agree although the snapshot is one instant and the walk takes
seconds to minutes while writes go on. The backup brackets the snapshot with the
server's clock (`sys/health` server_time_utc): the snapshot was taken inside the window
[start, end] (whole seconds, widened by one). Then, per secret (docs/catalog.md):

- kv-v2: metadata lists every version's created_time and deletion_time on the same
  clock. The version current at the snapshot is the newest created before `start`.
  Versions created after `end` are writes that came later (`changed_after_snapshot`, or
  `created_after_snapshot` when none existed before): the drill expects the snapshot's
  version, or no secret. A version created or deleted inside the window is `uncertain`:
  either state is right.
- kv-v1 has no metadata: its paths are listed before and after the snapshot. A path in
  both walks is `stable`; in only one it changed during the backup (`uncertain`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote as _quote

from dr.vault.client import VaultConnection
from dr.vault.metadata_reader import MetadataReader

log = logging.getLogger(__name__)

CATALOG_FORMAT = 1

STABLE = "stable"
CHANGED_AFTER = "changed_after_snapshot"
CREATED_AFTER = "created_after_snapshot"
UNCERTAIN = "uncertain"
STATES = (STABLE, CHANGED_AFTER, CREATED_AFTER, UNCERTAIN)


@dataclass(frozen=True)
class Mount:
    path: str  # with trailing slash, e.g. "app/"
    type: str
    kv_version: int | None = None
    namespace: str = ""


@dataclass
class SecretEntry:
    mount: str
    path: str
    kv: int
    state: str = STABLE
    namespace: str = ""
    # kv-v2 only: the version current at the snapshot, whether it was deleted then,
    # and what the walk saw afterwards.
    version: int | None = None
    deleted: bool = False
    destroyed: bool = False
    current_version: int | None = None
    created_time: str | None = None
    updated_time: str | None = None

    @property
    def full_path(self) -> str:
        ns = f"{self.namespace}" if self.namespace else ""
        return f"{ns}{self.mount}{self.path}"


@dataclass
class Catalog:
    cluster: str
    backup_id: str
    window_start: float
    window_end: float
    mounts: list[Mount] = field(default_factory=list)
    auth_methods: list[Mount] = field(default_factory=list)
    policies: list[str] = field(default_factory=list)
    namespaces: list[str] = field(default_factory=list)
    secrets: list[SecretEntry] = field(default_factory=list)
    walk_started_at: str = ""
    walk_finished_at: str = ""
    format: int = CATALOG_FORMAT

    def counts(self) -> dict[str, int]:
        counts = {state: 0 for state in STATES}
        for entry in self.secrets:
            counts[entry.state] += 1
        return {
            "secrets": len(self.secrets),
            "mounts": len(self.mounts),
            "auth_methods": len(self.auth_methods),
            "policies": len(self.policies),
            **counts,
        }

    def to_json(self) -> dict[str, Any]:
        return {
            "format": self.format,
            "cluster": self.cluster,
            "backup_id": self.backup_id,
            "window": {"start": self.window_start, "end": self.window_end},
            "walk": {"started_at": self.walk_started_at, "finished_at": self.walk_finished_at},
            "namespaces": self.namespaces,
            "mounts": [asdict(m) for m in self.mounts],
            "auth_methods": [asdict(m) for m in self.auth_methods],
            "policies": self.policies,
            "secrets": [
                {k: v for k, v in asdict(s).items() if v is not None} for s in self.secrets
            ],
            "counts": self.counts(),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Catalog:
        return cls(
            format=int(data["format"]),
            cluster=data["cluster"],
            backup_id=data["backup_id"],
            window_start=float(data["window"]["start"]),
            window_end=float(data["window"]["end"]),
            walk_started_at=data.get("walk", {}).get("started_at", ""),
            walk_finished_at=data.get("walk", {}).get("finished_at", ""),
            namespaces=list(data.get("namespaces", [])),
            mounts=[Mount(**m) for m in data.get("mounts", [])],
            auth_methods=[Mount(**m) for m in data.get("auth_methods", [])],
            policies=list(data.get("policies", [])),
            secrets=[SecretEntry(**s) for s in data.get("secrets", [])],
        )


def quote(path: str) -> str:
    """Percent-encode a kv path for a URL: names may hold '%', '?', '#' or spaces."""
    return _quote(path, safe="/")


def parse_time(text: str) -> float | None:
    """Vault's RFC 3339 times with nanoseconds -> epoch seconds (float)."""
    if not text:
        return None
    main, _, frac = text.rstrip("Z").partition(".")
    try:
        base = datetime.fromisoformat(main).replace(tzinfo=UTC)
    except ValueError:
        return None
    digits = "".join(ch for ch in frac if ch.isdigit())
    return base.timestamp() + (float("0." + digits) if digits else 0.0)


def classify_kv2(metadata: dict[str, Any], start: float, end: float) -> dict[str, Any]:
    """Decide from kv-v2 metadata which version the snapshot holds, and how sure we are."""
    versions: dict[str, Any] = metadata.get("versions") or {}
    before: list[int] = []
    in_window = False
    after = False
    for number, info in versions.items():
        created = parse_time(str(info.get("created_time", "")))
        if created is None:
            in_window = True
            continue
        if created < start:
            before.append(int(number))
        elif created <= end:
            in_window = True
        else:
            after = True
    snapshot_version = max(before) if before else None
    deleted = False
    destroyed = False
    if snapshot_version is not None:
        info = versions.get(str(snapshot_version), {})
        deletion = parse_time(str(info.get("deletion_time", "")))
        if deletion is not None:
            if deletion < start:
                deleted = True
            elif deletion <= end:
                in_window = True
        # Destruction has no timestamp: a destroyed version is recorded as such; if it
        # was destroyed after the snapshot the drill sees it readable, which it accepts.
        destroyed = bool(info.get("destroyed", False))
    if in_window:
        state = UNCERTAIN
    elif snapshot_version is None:
        state = CREATED_AFTER
    elif after:
        state = CHANGED_AFTER
    else:
        state = STABLE
    return {
        "state": state,
        "version": snapshot_version,
        "deleted": deleted,
        "destroyed": destroyed,
        "current_version": int(metadata.get("current_version") or 0) or None,
        "created_time": metadata.get("created_time"),
        "updated_time": metadata.get("updated_time"),
    }


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class CatalogWalker:
    """Walks one Vault. Call `prewalk()` before the snapshot and `walk()` after it."""

    def __init__(
        self, conn: VaultConnection, *, progress: Callable[[int], None] | None = None
    ) -> None:
        self.conn = conn
        self.progress = progress
        self._mounts: list[Mount] | None = None
        self._kv1_before: dict[str, set[str]] = {}

    def mounts(self) -> list[Mount]:
        if self._mounts is None:
            resp = self.conn.get("/v1/sys/mounts", "read sys/mounts")
            data = resp.get("data", resp) if isinstance(resp, dict) else {}
            mounts = []
            for path, info in sorted(data.items()):
                if not isinstance(info, dict) or "type" not in info:
                    continue
                kv_version = None
                if info["type"] in ("kv", "generic"):
                    options = info.get("options") or {}
                    kv_version = 2 if str(options.get("version", "1")) == "2" else 1
                mounts.append(Mount(path=path, type=str(info["type"]), kv_version=kv_version))
            self._mounts = mounts
        return self._mounts

    def _kv_mounts(self, version: int) -> Iterator[Mount]:
        return (m for m in self.mounts() if m.kv_version == version)

    def _list_tree(self, base: str, operation: str) -> Iterator[str]:
        """Every leaf key under `base` (a LIST-able API path ending in '/'), depth first."""
        stack = [""]
        while stack:
            prefix = stack.pop()
            keys = self.conn.list(f"/v1/{base}{quote(prefix)}", operation)
            for key in sorted(keys, reverse=True):
                if key.endswith("/"):
                    stack.append(prefix + key)
                else:
                    yield prefix + key

    def prewalk(self) -> None:
        """List kv-v1 paths before the snapshot (they have no metadata to date them)."""
        for mount in self._kv_mounts(1):
            self._kv1_before[mount.path] = set(self._list_tree(mount.path, f"list {mount.path}"))

    def walk(self, cluster: str, backup_id: str, window_start: float, window_end: float) -> Catalog:
        catalog = Catalog(cluster, backup_id, window_start, window_end, walk_started_at=_now())
        catalog.mounts = self.mounts()
        catalog.auth_methods = self._auth_methods()
        catalog.policies = self._policies()
        for done, entry in enumerate(self._secrets(window_start, window_end), start=1):
            catalog.secrets.append(entry)
            if self.progress and done % 500 == 0:
                self.progress(done)
        catalog.walk_finished_at = _now()
        return catalog

    def _secrets(self, start: float, end: float) -> Iterable[SecretEntry]:
        for mount in self._kv_mounts(1):
            before = self._kv1_before.get(mount.path, set())
            after = set(self._list_tree(mount.path, f"list {mount.path}"))
            for path in sorted(before | after):
                state = STABLE if (path in before and path in after) else UNCERTAIN
                yield SecretEntry(mount=mount.path, path=path, kv=1, state=state)
        reader = MetadataReader(self.conn)
        try:
            for mount in self._kv_mounts(2):
                paths = list(
                    self._list_tree(f"{mount.path}metadata/", f"list {mount.path}metadata")
                )
                for path, metadata in reader.read(mount.path, paths):
                    if metadata is None:
                        # Deleted (metadata and all) between list and read: it was
                        # written before the walk, so it may be in the snapshot.
                        yield SecretEntry(mount=mount.path, path=path, kv=2, state=UNCERTAIN)
                        continue
                    info = classify_kv2(metadata, start, end)
                    yield SecretEntry(mount=mount.path, path=path, kv=2, **info)
        finally:
            reader.close()

    def _auth_methods(self) -> list[Mount]:
        resp = self.conn.get("/v1/sys/auth", "read sys/auth")
        data = resp.get("data", resp) if isinstance(resp, dict) else {}
        return [
            Mount(path=path, type=str(info["type"]))
            for path, info in sorted(data.items())
            if isinstance(info, dict) and "type" in info
        ]

    def _policies(self) -> list[str]:
        return sorted(self.conn.list("/v1/sys/policies/acl", "list sys/policies/acl"))
