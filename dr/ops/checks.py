"""The drill's verify stage: check every cataloged item against a restored Vault, fast.

What is checked (docs/catalog.md has the catalog and its states):

- ``mounts``: every cataloged secrets engine is in ``sys/mounts`` with the same type
  (and kv version); ``auth_methods``: every auth method in ``sys/auth`` with the same
  type; ``policies``: every ACL policy name in ``LIST sys/policies/acl``. Mounts, methods
  or policies the catalog does not name are counted as ``extra`` (not a failure).
- ``kv2_secrets``: ``GET <mount>data/<path>`` for every kv-v2 entry. OpenBao answers 200
  with ``data.data`` and ``data.metadata`` for a live current version, and 404 with
  ``data.data = null`` and ``data.metadata`` (``deletion_time`` set, or ``destroyed``)
  when the current version is soft-deleted or destroyed; a path that does not exist
  answers 404 ``{"errors": []}`` (checked on OpenBao 2.7.2).
- ``kv1_secrets``: ``GET <mount><path>``: 200 with a data object, or 404.
- ``extra_paths``: every kv mount of the restored Vault is LISTed recursively (kv-v2
  through ``metadata/``); a leaf path the catalog does not name is ``extra``. Extras do
  not fail a drill: the catalog is walked after the snapshot, so a secret whose kv-v2
  metadata was deleted (or a kv-v1 path written and removed) between snapshot and walk
  is in the snapshot but not in the catalog. A restore cannot invent data, so an extra
  path is never loss; it is reported so an operator can look. A LIST that fails (403,
  5xx) is ``unreadable`` and fails the family: "each path listed" was not shown.

Values are never compared (the catalog has none: the backup never reads them), so
"readable" means a 200 answer carrying a data object. Response bodies hold secret
values: they are parsed in place and dropped; only status codes, versions, flags and
Vault's own ``errors`` strings are kept, and nothing here logs a body.

How each secret is judged. Every entry lands in exactly one bucket: ``ok`` (verified
as cataloged), ``changed_during_backup`` (accepted because of a change the catalog
recorded or cannot date: reported apart, never a failure), ``missing``, ``mismatched``
or ``unreadable`` (the three failures). Real loss always fails:

========================  ==========================================================
answer                    verdict
========================  ==========================================================
not 200/404, no answer    unreadable (status, or 0 when the connection failed twice)
404, no metadata          stable/changed_after: missing; created_after: apart;
                          uncertain: apart, unless the catalog knows a version that
                          existed before the window (then missing)
version != catalog's      stable/changed_after: mismatched; uncertain: mismatched
                          only when LOWER than the catalog's version (that version
                          existed before the window, so the snapshot holds it or a
                          newer one); created_after: apart
destroyed, catalog not    mismatched (the data is gone: loss)
catalog destroyed         restored destroyed: ok; readable or only deleted: apart
                          (destruction has no timestamp: it may have come after)
soft-delete differs       apart: the data is still there. Undelete and
                          delete_version_after leave no dated trace in metadata
                          (an undelete after the snapshot makes the restored Vault
                          show deleted what the catalog saw live).
same version and state    stable: ok; changed_after: apart (verified at the
                          snapshot's version, reported apart as a recorded change)
========================  ==========================================================

kv-v1: 200 = ok (apart when uncertain), 404 = missing (apart when uncertain or
created_after), anything else unreadable.

The read path. A bare script reads every secret with hvac: about 0.5-0.85 ms of Python
per read in hvac + requests, more than the server spends (FACTS.md, measured floors).
Here instead:

- ``workers`` threads (default 4), each owning ONE persistent HTTP/1.1 connection: a
  plain ``socket`` (TCP with TCP_NODELAY, a unix socket, or TLS when the address is
  https) and a buffered reader over it. No hvac, no requests, no urllib3 per read.
- Request bytes are built once per item (``GET <quoted path> HTTP/1.1`` + a fixed,
  precomputed Host/token header tail).
- HTTP/1.1 pipelining: each worker sends a batch of ``pipeline`` requests (default
  32) with one ``sendall`` and then reads the answers in order. Go's net/http serves a
  connection's requests one after the other, so answers come back in order; the
  client saves a round trip and two syscalls per read, and several connections keep
  both of the server's cores busy while Python parses. A response is parsed by hand:
  status line, Content-Length or chunked transfer encoding (OpenBao chunks bodies over
  2 KiB), ``Connection: close``; ``json.loads`` of the body, then only a few fields are
  kept.
- The GIL is released while a worker waits on its socket, and the server's work per
  read (~0.25 ms of CPU) dominates the client's (~0.06 ms), so 3-4 workers saturate a
  2-core machine.
- Robustness: a connection error or timeout (``timeout`` per socket operation) closes
  that connection; the worker reconnects and sends the unanswered requests again. The
  request whose answer failed is retried once; failing again, it is unreadable. A
  ``Connection: close`` answer just moves on to a fresh connection. If connecting fails
  twice in a row, or three reads in a row fail twice, the server is gone: every read
  not yet answered is unreadable ("not read: ..."), and the check returns at once
  instead of waiting out a timeout item by item.

Measured (bench/verify_reads.py, quiet 2-core machine, OpenBao 2.7.2, N kv-v2
secrets; secrets per second of wall time, median of 3; check_catalog's time includes
its sys reads and the recursive LIST of every mount):

=====================  ========  ========  ========  ========
read path              10k TCP   10k unix  50k TCP   50k unix
=====================  ========  ========  ========  ========
hvac read loop         1,109     1,178     989       1,130
check_catalog (4x32)   5,412     6,438     5,994     6,196
speed-up               4.9x      5.5x      6.1x      5.5x
=====================  ========  ========  ========  ========

At 50k: 50.5 s (hvac, TCP) against 8.3 s. Client CPU per secret: 0.53-0.64 ms with hvac,
0.05-0.06 ms here; the server's fell from ~0.5 ms to ~0.26 ms (fewer wake-ups per
request when requests arrive pipelined). Sweep at 10k (TCP): one connection 2.7k/s
unpipelined and 3.5k/s pipelined; 2 connections 4.5-6.1k/s; 3-4 connections with
8-64 deep pipelines 6.2-6.3k/s; 6-8 connections slightly worse. The server is now the
bound. On a loaded machine (other jobs) all figures roughly halve and vary run to run.

Namespaces: every namespace the catalog walked is checked through the
``X-Vault-Namespace`` header (its own ``sys/mounts``, ``sys/auth``, policies, secrets
and listings); every path in the report is the full one (``team-a/sub/app/x``), and
``namespaces`` counts the secrets' verdicts per namespace ("" is the root).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from dr.vault.catalog import CHANGED_AFTER, CREATED_AFTER, STABLE, Catalog, Mount, SecretEntry
from dr.vault.connection import VaultClient
from dr.vault.pipelined import Answer, Parser, ReadPool, error_answer, load_json, parse_data

FAMILIES = ("mounts", "auth_methods", "policies", "kv2_secrets", "kv1_secrets", "extra_paths")
_BUILTIN_TYPES = {"ns_system", "ns_identity", "ns_cubbyhole", "ns_token"}
DEFAULT_WORKERS = 4
DEFAULT_PIPELINE = 32
DEFAULT_TIMEOUT = 60.0


# --- results -------------------------------------------------------------------------

OK = "ok"
APART = "changed_during_backup"
MISSING = "missing"
MISMATCHED = "mismatched"
UNREADABLE = "unreadable"
EXTRA = "extra"


@dataclass
class FamilyResult:
    """One check family. Every checked item is counted in exactly one of ok, missing,
    mismatched, unreadable and changed_during_backup (extra_paths: ok or extra).
    `extra` counts items the restored Vault has and the catalog does not name."""

    name: str
    checked: int = 0
    ok: int = 0
    missing: int = 0
    mismatched: int = 0
    unreadable: int = 0
    extra: int = 0
    changed_during_backup: int = 0
    first_missing: str | None = None
    first_mismatched: str | None = None
    first_unreadable: str | None = None
    first_extra: str | None = None
    first_changed: str | None = None
    failed: bool = False

    def add(self, verdict: str, text: str = "", *, checked: bool = True) -> None:
        if checked:
            self.checked += 1
        if verdict == OK:
            self.ok += 1
        elif verdict == MISSING:
            self.missing += 1
            self.first_missing = self.first_missing or text
        elif verdict == MISMATCHED:
            self.mismatched += 1
            self.first_mismatched = self.first_mismatched or text
        elif verdict == UNREADABLE:
            self.unreadable += 1
            self.first_unreadable = self.first_unreadable or text
        elif verdict == EXTRA:
            self.extra += 1
            self.first_extra = self.first_extra or text
        elif verdict == APART:
            self.changed_during_backup += 1
            self.first_changed = self.first_changed or text
        else:  # pragma: no cover - a programming error
            raise ValueError(f"unknown verdict {verdict!r}")
        self.failed = bool(self.missing or self.mismatched or self.unreadable)

    def failure_lines(self) -> list[str]:
        lines = []
        for kind, count, first in (
            (MISSING, self.missing, self.first_missing),
            (MISMATCHED, self.mismatched, self.first_mismatched),
            (UNREADABLE, self.unreadable, self.first_unreadable),
        ):
            if count:
                lines.append(f"{self.name}: {count} {kind}, first: {first}")
        return lines


@dataclass
class CheckReport:
    families: list[FamilyResult]
    total_checked: int
    passed: bool
    seconds: float
    reads: int  # HTTP requests answered (sys, LIST and secret reads; retries included)
    reads_per_second: float
    endpoint: str = ""
    workers: int = 0
    pipeline: int = 0
    stage_seconds: dict[str, float] = field(default_factory=dict)  # sys, secrets, list
    # secrets' verdicts per namespace ("" is the root): checked, ok, missing, ...
    namespaces: dict[str, dict[str, int]] = field(default_factory=dict)

    def family(self, name: str) -> FamilyResult:
        for fam in self.families:
            if fam.name == name:
                return fam
        raise KeyError(name)

    @property
    def changed_during_backup(self) -> int:
        return sum(fam.changed_during_backup for fam in self.families)

    def failures(self) -> list[str]:
        """One line per failing kind of each family, naming its first path."""
        return [line for fam in self.families for line in fam.failure_lines()]

    def to_json(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "total_checked": self.total_checked,
            "changed_during_backup": self.changed_during_backup,
            "seconds": round(self.seconds, 3),
            "reads": self.reads,
            "reads_per_second": round(self.reads_per_second, 1),
            "endpoint": self.endpoint,
            "workers": self.workers,
            "pipeline": self.pipeline,
            "stage_seconds": {k: round(v, 3) for k, v in self.stage_seconds.items()},
            "families": [asdict(fam) for fam in self.families],
            "namespaces": self.namespaces,
            "failures": self.failures(),
        }


# --- parsing answers -------------------------------------------------------------------


def _parse_kv2(status: int, body: bytes) -> Answer:
    if status != 200 and status != 404:
        return error_answer(status, body)
    doc = load_json(body)
    data = doc.get("data") if isinstance(doc, dict) else None
    meta = data.get("metadata") if isinstance(data, dict) else None
    version = meta.get("version") if isinstance(meta, dict) else None
    if not isinstance(version, int) or isinstance(version, bool):
        if status == 200:
            return Answer(200, error="answer without data and version")
        return Answer(404)  # no such secret
    assert isinstance(meta, dict) and isinstance(data, dict)
    destroyed = meta.get("destroyed") is True
    if status == 200:
        if not isinstance(data.get("data"), dict):
            return Answer(200, error="answer without a data object")
        return Answer(200, version=version)
    # 404 with metadata: the current version is soft-deleted or destroyed. (A 200 may
    # carry a future deletion_time from delete_version_after: status decides.)
    return Answer(404, version=version, deleted=not destroyed, destroyed=destroyed)


def _parse_kv1(status: int, body: bytes) -> Answer:
    if status == 404:
        return Answer(404)
    if status != 200:
        return error_answer(status, body)
    doc = load_json(body)
    if not isinstance(doc, dict) or not isinstance(doc.get("data"), dict):
        return Answer(200, error="answer without a data object")
    return Answer(200)


def _parse_list(status: int, body: bytes) -> Answer:
    if status == 404:
        return Answer(404, payload=[])
    if status != 200:
        return error_answer(status, body)
    doc = load_json(body)
    data = doc.get("data") if isinstance(doc, dict) else None
    keys = data.get("keys") if isinstance(data, dict) else None
    if not isinstance(keys, list):
        return Answer(200, error="LIST answer without keys")
    return Answer(200, payload=[str(k) for k in keys])


# --- judging -------------------------------------------------------------------------


def _status_text(read: Answer) -> str:
    if read.status == 0:
        return read.error or "no answer"
    return f"status {read.status}" + (f" ({read.error})" if read.error else "")


def _failed_read(read: Answer) -> bool:
    return read.status not in (200, 404) or bool(read.error)


def judge_kv2(entry: SecretEntry, read: Answer) -> tuple[str, str]:
    """(verdict, text) for one kv-v2 entry; text names the path (never a value)."""
    where = entry.full_path
    if _failed_read(read):
        return UNREADABLE, f"{where}: {_status_text(read)}"
    expected = entry.version
    if read.version is None:  # no such secret
        if entry.state == CREATED_AFTER:
            return APART, f"{where}: absent (created after the snapshot)"
        if entry.state in (STABLE, CHANGED_AFTER) or expected is not None:
            return MISSING, f"{where}: not found (catalog: version {expected})"
        return APART, f"{where}: absent ({entry.state})"
    actual = read.version
    if entry.state == CREATED_AFTER:
        return APART, f"{where}: present at version {actual} (created after the snapshot)"
    if expected is not None and actual != expected:
        if entry.state in (STABLE, CHANGED_AFTER) or actual < expected:
            return MISMATCHED, f"{where}: version {actual}, catalog {expected}"
        return APART, f"{where}: version {actual}, catalog {expected} ({entry.state})"
    if read.destroyed and not entry.destroyed:
        return MISMATCHED, f"{where}: version {actual} destroyed, catalog: not destroyed"
    if entry.destroyed and not read.destroyed:
        return APART, f"{where}: version {actual} not destroyed (destroyed after the snapshot)"
    if not entry.destroyed and read.deleted != entry.deleted:
        seen = "deleted" if read.deleted else "live"
        cataloged = "deleted" if entry.deleted else "live"
        return APART, f"{where}: version {actual} {seen}, catalog {cataloged}"
    if entry.state == STABLE:
        return OK, where
    return APART, f"{where}: version {actual} ({entry.state})"


def judge_kv1(entry: SecretEntry, read: Answer) -> tuple[str, str]:
    where = entry.full_path
    if _failed_read(read):
        return UNREADABLE, f"{where}: {_status_text(read)}"
    if read.status == 404:
        if entry.state == STABLE:
            return MISSING, f"{where}: not found"
        return APART, f"{where}: absent ({entry.state})"
    if entry.state == STABLE:
        return OK, where
    return APART, f"{where}: present ({entry.state})"


def _mount_key(mount: Mount) -> str:
    return f"{mount.namespace}{mount.path}"


def _restored_mounts(payload: Any, with_kv_version: bool, namespace: str) -> dict[str, Mount]:
    """Full path ("<namespace><mount>") -> Mount of a sys/mounts or sys/auth answer."""
    out: dict[str, Mount] = {}
    if not isinstance(payload, dict):
        return out
    for path, info in payload.items():
        if not isinstance(info, dict) or "type" not in info or info["type"] in _BUILTIN_TYPES:
            continue
        kv_version = None
        if with_kv_version and info["type"] in ("kv", "generic"):
            options = info.get("options") or {}
            kv_version = 2 if str(options.get("version", "1")) == "2" else 1
        out[namespace + str(path)] = Mount(
            path=str(path), type=str(info["type"]), kv_version=kv_version, namespace=namespace
        )
    return out


def _check_mounts(
    name: str,
    cataloged: list[Mount],
    reads: dict[str, Answer],
    what: str,
    with_kv_version: bool,
) -> tuple[FamilyResult, dict[str, Mount]]:
    """`reads`: namespace -> its sys/mounts (or sys/auth) answer."""
    fam = FamilyResult(name)
    restored: dict[str, Mount] = {}
    failed: dict[str, Answer] = {}
    for namespace, read in reads.items():
        if _failed_read(read):
            failed[namespace] = read
        else:
            restored.update(_restored_mounts(read.payload, with_kv_version, namespace))
    for mount in cataloged:
        key = _mount_key(mount)
        if mount.namespace in failed:
            fam.add(UNREADABLE, f"{key}: {what} {_status_text(failed[mount.namespace])}")
            continue
        found = restored.get(key)
        if found is None:
            fam.add(MISSING, f"{key} ({_kind(mount)})")
        elif found.type != mount.type or found.kv_version != mount.kv_version:
            fam.add(MISMATCHED, f"{key}: {_kind(found)}, catalog {_kind(mount)}")
        else:
            fam.add(OK, key)
    known = {_mount_key(m) for m in cataloged}
    for key in sorted(set(restored) - known):
        fam.add(EXTRA, f"{key} ({_kind(restored[key])})", checked=False)
    return fam, restored


def _kind(mount: Mount) -> str:
    return f"{mount.type} v{mount.kv_version}" if mount.kv_version else mount.type


def _namespace_of(name: str, namespaces: list[str]) -> str:
    """The namespace of a cataloged "<namespace><name>": the longest walked prefix."""
    return max((ns for ns in namespaces if ns and name.startswith(ns)), key=len, default="")


def _check_policies(cataloged: list[str], reads: dict[str, Answer]) -> FamilyResult:
    """Policies are cataloged as "<namespace><name>"; `reads`: namespace -> its LIST."""
    fam = FamilyResult("policies")
    restored: set[str] = set()
    for namespace, read in reads.items():
        if not _failed_read(read):
            restored.update(namespace + str(name) for name in read.payload or [])
    for policy in cataloged:
        listing = reads.get(_namespace_of(policy, list(reads)))
        if listing is not None and _failed_read(listing):
            fam.add(UNREADABLE, f"{policy}: list sys/policies/acl {_status_text(listing)}")
        else:
            fam.add(OK if policy in restored else MISSING, policy)
    for policy in sorted(restored - set(cataloged)):
        fam.add(EXTRA, policy, checked=False)
    return fam


def _list_tree(
    pool: ReadPool, namespace: str, roots: list[str]
) -> tuple[list[str], list[tuple[str, Answer]]]:
    """Every leaf under the LIST-able `roots` (API paths ending in '/') of `namespace`,
    level by level: one pipelined run per depth level. Returns (leaf paths relative to
    the namespace's /v1/, failed LISTs as (folder, answer))."""
    leaves: list[str] = []
    failed: list[tuple[str, Answer]] = []
    level = list(roots)
    while level:
        reads = pool.run([pool.request("LIST", folder, namespace) for folder in level], _parse_list)
        following: list[str] = []
        for folder, read in zip(level, reads, strict=True):
            if _failed_read(read):
                failed.append((folder, read))
                continue
            for key in read.payload:
                (following if key.endswith("/") else leaves).append(folder + key)
        level = following
    return leaves, failed


def _check_extra_paths(pool: ReadPool, kv_mounts: list[Mount], catalog: Catalog) -> FamilyResult:
    """LIST every kv mount of the restored Vault; count leaves the catalog does not name."""
    fam = FamilyResult("extra_paths")
    known: set[tuple[str, str]] = {(e.namespace + e.mount, e.path) for e in catalog.secrets}
    extras: list[str] = []
    for mount in kv_mounts:
        base = mount.namespace + mount.path
        root = f"{mount.path}metadata/" if mount.kv_version == 2 else mount.path
        leaves, failed = _list_tree(pool, mount.namespace, [root])
        for folder, read in failed:
            fam.add(UNREADABLE, f"LIST {mount.namespace}{folder}: {_status_text(read)}")
        for leaf in leaves:
            path = leaf[len(root) :]
            if (base, path) in known:
                fam.add(OK, base + path)
            else:
                extras.append(base + path)
    for path in sorted(extras):
        fam.add(EXTRA, path)
    return fam


def _secret_request(pool: ReadPool, entry: SecretEntry) -> bytes:
    if entry.kv == 2:
        return pool.request("GET", f"{entry.mount}data/{entry.path}", entry.namespace)
    return pool.request("GET", entry.mount + entry.path, entry.namespace)


def _per_namespace(
    catalog: Catalog, entries: list[SecretEntry], verdicts: list[str]
) -> dict[str, dict[str, int]]:
    kinds = (OK, MISSING, MISMATCHED, UNREADABLE, APART)
    out = {ns: {"checked": 0, **dict.fromkeys(kinds, 0)} for ns in catalog.namespaces or [""]}
    for entry, verdict in zip(entries, verdicts, strict=True):
        counts = out.setdefault(entry.namespace, {"checked": 0, **dict.fromkeys(kinds, 0)})
        counts["checked"] += 1
        counts[verdict] += 1
    return out


def check_catalog(
    client: VaultClient,
    catalog: Catalog,
    *,
    workers: int | None = None,
    progress: Callable[[int], None] | None = None,
    pipeline: int = DEFAULT_PIPELINE,
    timeout: float = DEFAULT_TIMEOUT,
) -> CheckReport:
    """Check every cataloged item against the Vault of `client` (see the module doc).

    `client` carries the address, TLS trust and token; each item is read in its own
    namespace. `progress(n)` is called from this thread with the number of secrets read
    so far (about every 0.2 s, and at the end). Raises UsageError for an unusable
    endpoint or token; a server that stops answering yields unreadable items, not an
    exception.
    """
    started = time.perf_counter()
    stages: dict[str, float] = {}
    pool: ReadPool = client.with_namespace(None).read_pool(
        workers or DEFAULT_WORKERS, pipeline, timeout
    )
    namespaces = catalog.namespaces or [""]
    try:
        sys_requests: list[bytes] = []
        sys_parsers: list[Parser] = []
        for namespace in namespaces:
            sys_requests += [
                pool.request("GET", "sys/mounts", namespace),
                pool.request("GET", "sys/auth", namespace),
                pool.request("LIST", "sys/policies/acl", namespace),
            ]
            sys_parsers += [parse_data, parse_data, _parse_list]
        sys_reads = pool.run(sys_requests, sys_parsers)
        mounts_reads = {ns: sys_reads[3 * i] for i, ns in enumerate(namespaces)}
        auth_reads = {ns: sys_reads[3 * i + 1] for i, ns in enumerate(namespaces)}
        policy_reads = {ns: sys_reads[3 * i + 2] for i, ns in enumerate(namespaces)}
        mounts, restored_mounts = _check_mounts(
            "mounts", catalog.mounts, mounts_reads, "read sys/mounts", True
        )
        auth, _ = _check_mounts(
            "auth_methods", catalog.auth_methods, auth_reads, "read sys/auth", False
        )
        policies = _check_policies(catalog.policies, policy_reads)
        stages["sys"] = time.perf_counter() - started

        entries = [e for e in catalog.secrets if e.kv == 2] + [
            e for e in catalog.secrets if e.kv != 2
        ]
        requests = [_secret_request(pool, e) for e in entries]
        parsers: list[Parser] = [_parse_kv2 if e.kv == 2 else _parse_kv1 for e in entries]
        mark = time.perf_counter()
        reads = pool.run(requests, parsers, progress)
        kv2 = FamilyResult("kv2_secrets")
        kv1 = FamilyResult("kv1_secrets")
        verdicts: list[str] = []
        for entry, read in zip(entries, reads, strict=True):
            verdict, text = judge_kv2(entry, read) if entry.kv == 2 else judge_kv1(entry, read)
            (kv2 if entry.kv == 2 else kv1).add(verdict, text)
            verdicts.append(verdict)
        stages["secrets"] = time.perf_counter() - mark

        readable = {ns for ns, read in mounts_reads.items() if not _failed_read(read)}
        kv_mounts = [m for m in restored_mounts.values() if m.kv_version]
        # A namespace whose sys/mounts was unreadable: list what the catalog names there.
        kv_mounts += [m for m in catalog.mounts if m.kv_version and m.namespace not in readable]
        mark = time.perf_counter()
        extra = _check_extra_paths(pool, sorted(kv_mounts, key=_mount_key), catalog)
        stages["list"] = time.perf_counter() - mark
    finally:
        pool.close()

    families = [mounts, auth, policies, kv2, kv1, extra]
    seconds = time.perf_counter() - started
    return CheckReport(
        families=families,
        total_checked=sum(f.checked for f in families),
        passed=not any(f.failed for f in families),
        seconds=seconds,
        reads=pool.reads,
        reads_per_second=pool.reads / seconds if seconds > 0 else 0.0,
        endpoint=client.label,
        workers=pool.workers,
        pipeline=pool.pipeline,
        stage_seconds=stages,
        namespaces=_per_namespace(catalog, entries, verdicts),
    )


__all__ = [
    "DEFAULT_PIPELINE",
    "DEFAULT_TIMEOUT",
    "DEFAULT_WORKERS",
    "FAMILIES",
    "Answer",
    "CheckReport",
    "FamilyResult",
    "check_catalog",
    "judge_kv1",
    "judge_kv2",
]
