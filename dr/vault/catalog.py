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

Namespaces (OpenBao 2.3+, Vault Enterprise) are walked like mounts: every namespace
below the configured one (`vault.namespace`, default the root), found with one
`GET sys/namespaces?scan=true` (LIST per level when the token lacks `scan`). Every
mount, auth method, policy and secret carries its namespace as a full path with a
trailing slash ("team-a/sub/"; "" is the root). A namespace that is locked, being
deleted or sealed cannot be read: it is recorded in `namespaces_skipped` with the
reason, never silently left out.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote as _quote

from dr.errors import VaultError
from dr.vault.connection import VaultClient
from dr.vault.metadata_reader import MetadataReader

log = logging.getLogger(__name__)

CATALOG_FORMAT = 1
# Mounts every namespace has; not data (the root's sys/, identity/... are not "ns_").
_BUILTIN_TYPES = {"ns_system", "ns_identity", "ns_cubbyhole", "ns_token"}

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
    # kv-v2: when the version the snapshot holds was written (rotation reports).
    version_time: str | None = None

    @property
    def full_path(self) -> str:
        ns = f"{self.namespace}" if self.namespace else ""
        return f"{ns}{self.mount}{self.path}"


_SECRET_FIELDS = tuple(f.name for f in fields(SecretEntry))  # all scalars: no copy needed


@dataclass
class Catalog:
    cluster: str
    backup_id: str
    window_start: float
    window_end: float
    mounts: list[Mount] = field(default_factory=list)
    auth_methods: list[Mount] = field(default_factory=list)
    policies: list[str] = field(default_factory=list)  # "<namespace><name>"
    namespaces: list[str] = field(default_factory=list)  # walked, the base first
    secrets: list[SecretEntry] = field(default_factory=list)
    namespaces_skipped: list[dict[str, str]] = field(default_factory=list)
    # kv mounts the token could not list or read metadata of: {namespace, mount, reason}.
    # Their data is in the snapshot all the same; only the catalog misses them.
    mounts_skipped: list[dict[str, str]] = field(default_factory=list)
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
            "namespaces": max(1, len(self.namespaces)),
            "namespaces_skipped": len(self.namespaces_skipped),
            "mounts_skipped": len(self.mounts_skipped),
            **counts,
        }

    def per_namespace(self) -> dict[str, int]:
        """Secrets per namespace ("" is the root)."""
        counts = {ns: 0 for ns in self.namespaces or [""]}
        for entry in self.secrets:
            counts[entry.namespace] = counts.get(entry.namespace, 0) + 1
        return counts

    def to_json(self) -> dict[str, Any]:
        return {
            "format": self.format,
            "cluster": self.cluster,
            "backup_id": self.backup_id,
            "window": {"start": self.window_start, "end": self.window_end},
            "walk": {"started_at": self.walk_started_at, "finished_at": self.walk_finished_at},
            "namespaces": self.namespaces,
            "namespaces_skipped": self.namespaces_skipped,
            "mounts_skipped": self.mounts_skipped,
            "mounts": [asdict(m) for m in self.mounts],
            "auth_methods": [asdict(m) for m in self.auth_methods],
            "policies": self.policies,
            # Not asdict(): it deep-copies every field of every entry, 9.5 us an entry
            # (0.95 s of a 100k-secret backup) against 1 us for these flat scalars.
            "secrets": [
                {k: v for k in _SECRET_FIELDS if (v := getattr(s, k)) is not None}
                for s in self.secrets
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
            namespaces_skipped=list(data.get("namespaces_skipped", [])),
            mounts_skipped=[
                {str(k): str(v) for k, v in item.items()} for item in data.get("mounts_skipped", [])
            ],
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
    version_time: str | None = None
    if snapshot_version is not None:
        info = versions.get(str(snapshot_version), {})
        version_time = str(info.get("created_time") or "") or None
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
        "version_time": version_time,
    }


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _ns(namespace: str | None) -> str:
    """A namespace as a full path with a trailing slash ("" for the root)."""
    cleaned = (namespace or "").strip("/")
    return f"{cleaned}/" if cleaned else ""


class CatalogWalker:
    """Walks one Vault. Call `prewalk()` before the snapshot and `walk()` after it.

    `client` is logged in; its namespace is the base of the walk."""

    def __init__(
        self, client: VaultClient, *, progress: Callable[[int], None] | None = None
    ) -> None:
        self.client = client
        self.base = _ns(client.namespace)
        self.progress = progress
        self._namespaces: list[str] | None = None
        self._skipped: list[dict[str, str]] = []
        self._mounts_skipped: list[dict[str, str]] = []
        self._denied: set[str] = set()  # "<namespace><mount>" the token may not read
        self._mounts: list[Mount] | None = None
        self._kv1_before: dict[str, set[str]] = {}

    def _in(self, namespace: str) -> VaultClient:
        return self.client.with_namespace(namespace or None)

    # --- namespaces -----------------------------------------------------------------
    def namespaces(self) -> list[str]:
        """The base namespace and every one below it, parents before children."""
        if self._namespaces is None:
            found: dict[str, dict[str, Any]] = self._scan()
            skipped: dict[str, str] = {}
            for path in sorted(found):
                info = found[path]
                parent = next((p for p in skipped if path.startswith(p)), None)
                if parent is not None:  # a lock (or a seal) holds for the whole subtree
                    skipped[path] = f"inside {skipped[parent].split(':')[0]} {parent}"
                elif info.get("locked") is True:
                    skipped[path] = "locked: its API is locked (sys/namespaces/api-lock)"
                elif info.get("tainted") is True:
                    skipped[path] = "being deleted"
            for path, reason in sorted(skipped.items()):
                log.warning("namespace %s is left out of the catalog: %s", path, reason)
            self._skipped = [{"namespace": p, "reason": r} for p, r in sorted(skipped.items())]
            self._namespaces = [self.base] + [p for p in sorted(found) if p not in skipped]
        return self._namespaces

    def _scan(self) -> dict[str, dict[str, Any]]:
        """Full path -> key_info of every namespace below the base."""
        reply = self.client.send("GET", "sys/namespaces", params={"scan": "true"})
        if reply.status == 404 or (reply.status in (400, 405) and "namespace" not in reply.errors):
            return {}  # no namespaces here (Vault CE, OpenBao before 2.3) or a leaf
        if reply.ok:
            return self._key_infos(reply.data(), self.base)
        if reply.status != 403:
            raise self.client.error(reply, "scan sys/namespaces")
        # No `scan` capability: LIST level by level (needs `list` at every depth).
        found: dict[str, dict[str, Any]] = {}
        level = [self.base]
        while level:
            following = []
            for parent in level:
                doc = self._in(parent).call(
                    "LIST",
                    "sys/namespaces",
                    f"list sys/namespaces in {parent or 'the root namespace'}",
                    missing_ok=True,
                    hint="give the token list and scan on sys/namespaces (docs/vault-policy.md):"
                    " without it the catalog would leave out every namespace",
                )
                children = self._key_infos(doc or {}, parent)
                found.update(children)
                following.extend(sorted(children))
            level = following
        return found

    @staticmethod
    def _key_infos(doc: dict[str, Any], parent: str) -> dict[str, dict[str, Any]]:
        data = doc.get("data") if isinstance(doc.get("data"), dict) else {}
        assert isinstance(data, dict)
        infos = data.get("key_info") if isinstance(data.get("key_info"), dict) else {}
        assert isinstance(infos, dict)
        out: dict[str, dict[str, Any]] = {}
        for key in data.get("keys") or []:
            info = infos.get(key) if isinstance(infos.get(key), dict) else {}
            assert isinstance(info, dict)
            full = _ns(str(info.get("path") or f"{parent}{key}"))
            if full and full != parent:
                out[full] = info
        return out

    def _skip(self, namespace: str, reason: str) -> None:
        log.warning("namespace %s is left out of the catalog: %s", namespace, reason)
        self._skipped.append({"namespace": namespace, "reason": reason})
        assert self._namespaces is not None and namespace != self.base
        self._namespaces = [ns for ns in self._namespaces if not ns.startswith(namespace)]

    # --- mounts -----------------------------------------------------------------------
    def mounts(self) -> list[Mount]:
        if self._mounts is None:
            mounts: list[Mount] = []
            for namespace in list(self.namespaces()):
                reply = self._in(namespace).send("GET", "sys/mounts")
                if reply.status == 503 and namespace != self.base:
                    # Sealed (or locked after the scan): its data is in the snapshot, but
                    # nothing inside can be listed.
                    self._skip(namespace, f"unreadable: {reply.errors}")
                    continue
                if not reply.ok:
                    raise self._in(namespace).error(reply, "read sys/mounts")
                doc = reply.data()
                data = doc.get("data", doc) if isinstance(doc.get("data"), dict) else doc
                for path, info in sorted(data.items()):
                    if not isinstance(info, dict) or "type" not in info:
                        continue
                    if info["type"] in _BUILTIN_TYPES:
                        continue
                    kv_version = None
                    if info["type"] in ("kv", "generic"):
                        options = info.get("options") or {}
                        kv_version = 2 if str(options.get("version", "1")) == "2" else 1
                    mounts.append(
                        Mount(
                            path=path,
                            type=str(info["type"]),
                            kv_version=kv_version,
                            namespace=namespace,
                        )
                    )
            self._mounts = mounts
        return self._mounts

    def _kv_mounts(self, version: int) -> Iterator[Mount]:
        return (m for m in self.mounts() if m.kv_version == version)

    def _list_tree(self, mount: Mount, base: str, operation: str) -> Iterator[str]:
        """Every leaf key under `base` (a LIST-able API path ending in '/'), depth first."""
        client = self._in(mount.namespace)
        stack = [""]
        while stack:
            prefix = stack.pop()
            keys = client.list(f"{base}{quote(prefix)}", operation)
            for key in sorted(keys, reverse=True):
                if key.endswith("/"):
                    stack.append(prefix + key)
                else:
                    yield prefix + key

    def prewalk(self) -> None:
        """List kv-v1 paths before the snapshot (they have no metadata to date them)."""
        for mount in self._kv_mounts(1):
            key = mount.namespace + mount.path
            try:
                self._kv1_before[key] = set(self._list_tree(mount, mount.path, f"list {key}"))
            except VaultError as exc:
                self._unlisted(mount, exc)

    def _unlisted(self, mount: Mount, exc: VaultError) -> None:
        """A mount the token may not list: recorded and skipped, never the end of the
        backup (a new mount the policy does not name must not leave the cluster without
        backups). Anything else than a denial still fails the run."""
        if exc.status not in (401, 403):
            raise exc
        key = mount.namespace + mount.path
        if key in self._denied:
            return
        self._denied.add(key)
        log.warning(
            "WARNING: the catalog cannot cover %s (%s); the snapshot holds it all the same, "
            "but no drill can check it: extend the backup policy (docs/vault-policy.md)",
            key,
            exc.message,
        )
        self._mounts_skipped.append(
            {"namespace": mount.namespace, "mount": mount.path, "reason": exc.message}
        )

    def walk(self, cluster: str, backup_id: str, window_start: float, window_end: float) -> Catalog:
        catalog = Catalog(cluster, backup_id, window_start, window_end, walk_started_at=_now())
        catalog.mounts = self.mounts()
        catalog.namespaces = list(self.namespaces())
        catalog.auth_methods = self._auth_methods()
        catalog.policies = self._policies()
        for done, entry in enumerate(self._secrets(window_start, window_end), start=1):
            catalog.secrets.append(entry)
            if self.progress and done % 500 == 0:
                self.progress(done)
        catalog.namespaces_skipped = list(self._skipped)
        catalog.mounts_skipped = list(self._mounts_skipped)
        catalog.walk_finished_at = _now()
        return catalog

    def _secrets(self, start: float, end: float) -> Iterable[SecretEntry]:
        for mount in self._kv_mounts(1):
            key = mount.namespace + mount.path
            if key in self._denied:
                continue
            before = self._kv1_before.get(key, set())
            try:
                after = set(self._list_tree(mount, mount.path, f"list {key}"))
            except VaultError as exc:
                self._unlisted(mount, exc)
                continue
            for path in sorted(before | after):
                state = STABLE if (path in before and path in after) else UNCERTAIN
                yield SecretEntry(
                    mount=mount.path, path=path, kv=1, state=state, namespace=mount.namespace
                )
        reader = MetadataReader(self.client)
        try:
            for mount in self._kv_mounts(2):
                try:
                    yield from self._kv2_entries(reader, mount, start, end)
                except VaultError as exc:
                    # Entries already yielded stay: the mount is recorded as partial.
                    self._unlisted(mount, exc)
        finally:
            reader.close()

    def _kv2_entries(
        self, reader: MetadataReader, mount: Mount, start: float, end: float
    ) -> Iterator[SecretEntry]:
        key = mount.namespace + mount.path
        paths = list(self._list_tree(mount, f"{mount.path}metadata/", f"list {key}metadata"))
        for path, metadata in reader.read(mount.namespace, mount.path, paths):
            if metadata is None:
                # Deleted (metadata and all) between list and read: it was written
                # before the walk, so it may be in the snapshot.
                yield SecretEntry(
                    mount=mount.path, path=path, kv=2, state=UNCERTAIN, namespace=mount.namespace
                )
                continue
            info = classify_kv2(metadata, start, end)
            yield SecretEntry(mount=mount.path, path=path, kv=2, namespace=mount.namespace, **info)

    def _auth_methods(self) -> list[Mount]:
        methods: list[Mount] = []
        for namespace in self.namespaces():
            resp = self._in(namespace).read("sys/auth", "read sys/auth")
            data = resp.get("data", resp) if isinstance(resp.get("data"), dict) else resp
            methods.extend(
                Mount(path=path, type=str(info["type"]), namespace=namespace)
                for path, info in sorted(data.items())
                if isinstance(info, dict) and "type" in info and info["type"] not in _BUILTIN_TYPES
            )
        return methods

    def _policies(self) -> list[str]:
        names: list[str] = []
        for namespace in self.namespaces():
            listed = self._in(namespace).list("sys/policies/acl", "list sys/policies/acl")
            names.extend(namespace + name for name in sorted(listed))
        return names
