"""The drill's verify stage (dr.ops.checks) against real OpenBao servers.

Catalogs are built by the real CatalogWalker, then changed by hand to describe a
restored Vault that lost, changed or hides something.
"""

from __future__ import annotations

import copy
import json
import socket
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import requests

from dr.ops.checks import (
    FAMILIES,
    Answer,
    CheckReport,
    check_catalog,
    judge_kv1,
    judge_kv2,
)
from dr.vault.catalog import (
    CHANGED_AFTER,
    CREATED_AFTER,
    STABLE,
    UNCERTAIN,
    Catalog,
    CatalogWalker,
    Mount,
    SecretEntry,
)
from dr.vault.connection import VaultClient
from dr.vault.endpoint import Endpoint
from dr.vault.localserver import LocalBao, free_port

BIG_VALUE = "x" * 20_000  # answered with chunked transfer encoding (over 2 KiB)
ODD_PATH = "odd dir/ünï cødé"  # CatalogWalker (hvac) does not quote "%", "?", "#"


def walk_catalog(addr: str, token: str) -> Catalog:
    walker = CatalogWalker(VaultClient.at(addr, token=token))
    walker.prewalk()
    now = time.time()
    return walker.walk("test", "backup-1", now - 0.001, now)


def families(report: CheckReport) -> dict[str, Any]:
    return {fam.name: fam for fam in report.families}


def check(endpoint: Endpoint | str, token: str, catalog: Catalog, **kw: Any) -> CheckReport:
    if isinstance(endpoint, str):
        endpoint = Endpoint(addr=endpoint)
    report = check_catalog(VaultClient(endpoint, token=token), catalog, **kw)
    json.dumps(report.to_json())  # always JSON-serialisable
    return report


class Api:
    """Plain HTTP writes to a test server (never part of what is being tested)."""

    def __init__(self, addr: str, token: str) -> None:
        self.addr = addr
        self.session = requests.Session()
        self.session.trust_env = False
        self.session.headers["X-Vault-Token"] = token

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        resp = self.session.request(
            method, f"{self.addr}/v1/{quote(path, safe='/')}", json=body, timeout=30
        )
        assert resp.status_code < 300, (method, path, resp.status_code, resp.text[:200])
        return resp.json() if resp.content else None

    def kv2(self, path: str, data: dict[str, str]) -> None:
        self.call("POST", f"app/data/{path}", {"data": data})


def seed(server: LocalBao) -> Api:
    """kv-v2 "app" and kv-v1 "legacy" with versions, a deleted, a destroyed, a big and an
    oddly named secret."""
    api = Api(server.addr, server.root_token)
    api.call("POST", "sys/mounts/app", {"type": "kv", "options": {"version": "2"}})
    api.call("POST", "sys/mounts/legacy", {"type": "kv", "options": {"version": "1"}})
    deadline = time.monotonic() + 30
    while api.session.get(f"{server.addr}/v1/app/config", timeout=10).status_code != 200:
        assert time.monotonic() < deadline, "kv-v2 mount not ready"
        time.sleep(0.05)
    api.kv2("svc/one", {"password": "p1"})
    for version in range(3):
        api.kv2("multi", {"v": str(version)})
    api.kv2("gone-soft", {"v": "1"})
    api.call("DELETE", "app/data/gone-soft")
    api.kv2("burnt", {"v": "1"})
    api.call("POST", "app/destroy/burnt", {"versions": [1]})
    api.kv2("big", {"blob": BIG_VALUE})
    api.kv2(ODD_PATH, {"v": "odd"})
    api.kv2("locked/secret", {"v": "hidden"})
    api.call("POST", "legacy/k1", {"v": "1"})
    api.call("POST", "legacy/dir/k2", {"v": "2"})
    return api


def entry(catalog: Catalog, full_path: str) -> SecretEntry:
    return next(e for e in catalog.secrets if e.full_path == full_path)


def first_in_catalog(catalog: Catalog, texts: dict[str, str]) -> str:
    """The text of the first of these paths in catalog order (how reports pick "first")."""
    return next(texts[e.full_path] for e in catalog.secrets if e.full_path in texts)


@pytest.fixture
def seeded(fresh_bao: LocalBao) -> tuple[LocalBao, Api, Catalog]:
    api = seed(fresh_bao)
    return fresh_bao, api, walk_catalog(fresh_bao.addr, fresh_bao.root_token)


# --- every family passes on the cataloged server itself -------------------------------


def test_populated_server_passes_every_family(bao: Any) -> None:
    catalog = walk_catalog(bao.addr, bao.root_token)
    seen: list[int] = []
    report = check(bao.addr, bao.root_token, catalog, progress=seen.append)

    assert report.passed, report.failures()
    assert report.failures() == []
    fams = families(report)
    assert list(fams) == list(FAMILIES)
    kv2 = [e for e in catalog.secrets if e.kv == 2]
    kv1 = [e for e in catalog.secrets if e.kv == 1]
    assert len(catalog.secrets) >= 2000 and kv2 and kv1
    expected = {
        "mounts": len(catalog.mounts),
        "auth_methods": len(catalog.auth_methods),
        "policies": len(catalog.policies),
        "kv2_secrets": len(kv2),
        "kv1_secrets": len(kv1),
        "extra_paths": len(catalog.secrets),
    }
    for name, count in expected.items():
        fam = fams[name]
        assert (fam.checked, fam.ok, fam.failed) == (count, count, False), fam
        assert fam.missing == fam.mismatched == fam.unreadable == fam.extra == 0, fam
        assert fam.changed_during_backup == 0, fam
    assert report.total_checked == sum(expected.values())
    assert report.reads >= len(catalog.secrets) + 3
    assert report.reads_per_second > 0 and report.seconds > 0
    assert seen and seen[-1] == len(catalog.secrets)
    # The versioned secret with a soft-deleted older version is read at its current one.
    assert entry(catalog, "team/versioned/multi-b").version == 3


def test_report_never_holds_a_value(bao: Any) -> None:
    catalog = walk_catalog(bao.addr, bao.root_token)
    catalog.secrets = catalog.secrets[:200]
    text = json.dumps(check(bao.addr, bao.root_token, catalog).to_json())
    for full, data in list(bao.secrets.items())[:300]:
        for value in data.values():
            assert value not in text, full


# --- a fresh server with hand-made differences -----------------------------------------


def test_deleted_destroyed_big_and_odd_paths_pass(
    seeded: tuple[LocalBao, Api, Catalog],
) -> None:
    server, _, catalog = seeded
    assert entry(catalog, "app/gone-soft").deleted
    assert entry(catalog, "app/burnt").destroyed
    assert entry(catalog, "app/multi").version == 3
    report = check(server.addr, server.root_token, catalog)
    assert report.passed, report.failures()
    fams = families(report)
    assert fams["kv2_secrets"].ok == fams["kv2_secrets"].checked == 7
    assert fams["kv1_secrets"].ok == fams["kv1_secrets"].checked == 2
    assert fams["extra_paths"].ok == 9 and fams["extra_paths"].extra == 0


def test_missing_secret_fails_and_is_named(seeded: tuple[LocalBao, Api, Catalog]) -> None:
    server, _, catalog = seeded
    catalog.secrets.insert(3, SecretEntry(mount="app/", path="ghost/secret", kv=2, version=1))
    catalog.secrets.append(SecretEntry(mount="app/", path="ghost/second", kv=2, version=1))
    catalog.secrets.append(SecretEntry(mount="legacy/", path="ghost", kv=1))
    report = check(server.addr, server.root_token, catalog)
    fams = families(report)
    assert not report.passed
    assert fams["kv2_secrets"].missing == 2 and fams["kv2_secrets"].failed
    assert fams["kv2_secrets"].first_missing is not None
    assert fams["kv2_secrets"].first_missing.startswith("app/ghost/secret")
    assert fams["kv1_secrets"].missing == 1
    assert fams["kv1_secrets"].first_missing == "legacy/ghost: not found"
    failures = report.failures()
    assert len(failures) == 2
    assert "kv2_secrets: 2 missing" in failures[0] and "app/ghost/secret" in failures[0]
    assert fams["kv2_secrets"].ok == 7  # the others still verified


def test_version_mismatch(seeded: tuple[LocalBao, Api, Catalog]) -> None:
    server, _, catalog = seeded
    entry(catalog, "app/multi").version = 2  # the server has 3
    changed = entry(catalog, "app/svc/one")
    changed.version, changed.state = 2, CHANGED_AFTER  # the server has 1: lost a version
    entry(catalog, "app/burnt").destroyed = False  # destroyed in the "restore": loss
    report = check(server.addr, server.root_token, catalog)
    kv2 = families(report)["kv2_secrets"]
    assert not report.passed
    assert kv2.mismatched == 3
    texts = {
        "app/multi": "app/multi: version 3, catalog 2",
        "app/svc/one": "app/svc/one: version 1, catalog 2",
        "app/burnt": "app/burnt: version 1 destroyed, catalog: not destroyed",
    }
    assert kv2.first_mismatched == first_in_catalog(catalog, texts)
    lines = " ".join(report.failures())
    assert "3 mismatched" in lines


def test_mismatch_text_names_both_versions(seeded: tuple[LocalBao, Api, Catalog]) -> None:
    server, _, catalog = seeded
    entry(catalog, "app/multi").version = 2
    kv2 = families(check(server.addr, server.root_token, catalog))["kv2_secrets"]
    assert kv2.mismatched == 1
    assert kv2.first_mismatched == "app/multi: version 3, catalog 2"


def test_unreadable_secret_403(seeded: tuple[LocalBao, Api, Catalog]) -> None:
    server, api, catalog = seeded
    api.call(
        "PUT",
        "sys/policies/acl/checker",
        {
            "policy": 'path "*" { capabilities = ["read", "list"] }\n'
            'path "sys/*" { capabilities = ["read", "list", "sudo"] }\n'
            'path "app/data/locked/*" { capabilities = ["deny"] }\n'
        },
    )
    token = api.call("POST", "auth/token/create", {"policies": ["checker"], "ttl": "10m"})
    catalog = walk_catalog(server.addr, server.root_token)  # now with the new policy
    report = check(server.addr, token["auth"]["client_token"], catalog)
    fams = families(report)
    assert not report.passed
    kv2 = fams["kv2_secrets"]
    assert (kv2.unreadable, kv2.ok, kv2.missing) == (1, 6, 0)
    assert kv2.first_unreadable == "app/locked/secret: status 403 (permission denied)"
    assert report.failures() == [
        "kv2_secrets: 1 unreadable, first: app/locked/secret: status 403 (permission denied)"
    ]
    for name in ("mounts", "auth_methods", "policies", "kv1_secrets", "extra_paths"):
        assert not fams[name].failed, fams[name]


def test_extra_paths_are_counted_not_failed(seeded: tuple[LocalBao, Api, Catalog]) -> None:
    server, _api, catalog = seeded
    catalog.secrets = [
        e for e in catalog.secrets if e.full_path not in ("app/svc/one", "legacy/dir/k2")
    ]
    report = check(server.addr, server.root_token, catalog)
    extra = families(report)["extra_paths"]
    assert report.passed, report.failures()
    assert (extra.extra, extra.ok, extra.checked) == (2, 7, 9)
    assert extra.first_extra == "app/svc/one"
    assert not extra.failed


def test_changes_around_the_snapshot_are_reported_apart(
    seeded: tuple[LocalBao, Api, Catalog],
) -> None:
    server, _, catalog = seeded
    catalog.secrets += [
        SecretEntry(mount="app/", path="late/new", kv=2, state=CREATED_AFTER),
        SecretEntry(mount="app/", path="maybe/new", kv=2, state=UNCERTAIN),
        SecretEntry(mount="legacy/", path="maybe", kv=1, state=UNCERTAIN),
    ]
    entry(catalog, "app/gone-soft").deleted = False  # undeleted after the snapshot
    entry(catalog, "app/big").state = UNCERTAIN
    report = check(server.addr, server.root_token, catalog)
    fams = families(report)
    assert report.passed, report.failures()
    assert fams["kv2_secrets"].changed_during_backup == 4
    assert fams["kv1_secrets"].changed_during_backup == 1
    assert fams["kv2_secrets"].ok == 5
    assert fams["kv2_secrets"].first_changed == first_in_catalog(
        catalog,
        {
            "app/gone-soft": "app/gone-soft: version 1 deleted, catalog live",
            "app/big": "app/big: version 1 (uncertain)",
        },
    )

    # Uncertain, but a version existed before the window: its absence is loss.
    catalog.secrets.append(
        SecretEntry(mount="app/", path="maybe/old", kv=2, state=UNCERTAIN, version=4)
    )
    report = check(server.addr, server.root_token, catalog)
    assert families(report)["kv2_secrets"].missing == 1
    assert not report.passed


def test_mounts_auth_methods_and_policies_checked(
    seeded: tuple[LocalBao, Api, Catalog],
) -> None:
    server, _, catalog = seeded
    original = copy.deepcopy(catalog)
    catalog.mounts = [
        Mount(path=m.path, type=m.type, kv_version=2) if m.path == "legacy/" else m
        for m in catalog.mounts
        if m.path != "cubbyhole/"
    ] + [Mount(path="gone/", type="kv", kv_version=2)]
    catalog.auth_methods.append(Mount(path="userpass/", type="userpass"))
    catalog.policies = [p for p in catalog.policies if p != "default"] + ["ghost-policy"]
    report = check(server.addr, server.root_token, catalog)
    fams = families(report)
    assert not report.passed
    mounts = fams["mounts"]
    assert (mounts.missing, mounts.mismatched, mounts.extra) == (1, 1, 1)
    assert mounts.first_missing == "gone/ (kv v2)"
    assert mounts.first_mismatched == "legacy/: kv v1, catalog kv v2"
    assert mounts.first_extra == "cubbyhole/ (cubbyhole)"
    assert mounts.ok == len(original.mounts) - 2
    auth = fams["auth_methods"]
    assert (auth.missing, auth.first_missing) == (1, "userpass/ (userpass)")
    policies = fams["policies"]
    assert (policies.missing, policies.first_missing, policies.extra) == (1, "ghost-policy", 1)
    assert policies.first_extra == "default"
    assert len(report.failures()) == 4
    # The secrets themselves were all still checked.
    assert not fams["kv2_secrets"].failed and not fams["kv1_secrets"].failed


# --- transports and failures ----------------------------------------------------------


def test_through_a_unix_socket(bao_binary: Path) -> None:
    with tempfile.TemporaryDirectory(prefix="drchk-") as tmp:  # short: AF_UNIX paths <108
        sock = Path(tmp) / "bao.sock"
        server = LocalBao(
            Path(tmp) / "bao",
            binary=bao_binary,
            extra_listener_config=f'listener "unix" {{ address = "{sock}" }}',
        )
        with server:
            server.init()
            seed(server)
            catalog = walk_catalog(server.addr, server.root_token)
            endpoint = Endpoint(unix_socket=sock)
            report = check(endpoint, server.root_token, catalog, workers=2, pipeline=4)
            assert report.passed, report.failures()
            assert report.endpoint == f"unix:{sock}"
            assert families(report)["kv2_secrets"].ok == 7

            catalog.secrets.append(SecretEntry(mount="app/", path="ghost", kv=2, version=1))
            report = check(endpoint, server.root_token, catalog)
            assert families(report)["kv2_secrets"].first_missing == (
                "app/ghost: not found (catalog: version 1)"
            )


@contextmanager
def cutting_relay(upstream_port: int, cuts: list[int]) -> Iterator[tuple[int, list[int]]]:
    """A TCP relay to 127.0.0.1:upstream_port. The n-th client connection is cut inside
    its cuts[n]-th answer, 20 bytes into it (connections after the list: never cut).
    Yields (port, the cuts done so far)."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.2)
    stop = threading.Event()
    plan = list(cuts)
    done: list[int] = []

    def close(*socks: socket.socket) -> None:
        for sock in socks:
            with suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def pump(src: socket.socket, dst: socket.socket, nth: int | None) -> None:
        relayed = bytearray()
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                if nth is not None:
                    total = relayed + data
                    at = -1
                    for _ in range(nth):
                        at = total.find(b"HTTP/1.1 ", at + 1)
                        if at < 0:
                            break
                    if at >= 0:
                        dst.sendall(bytes(total[len(relayed) : at + 20]))
                        done.append(nth)
                        break
                    relayed += data
                dst.sendall(data)
        except OSError:
            pass
        finally:
            close(src, dst)

    def serve() -> None:
        while not stop.is_set():
            try:
                client, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            nth = plan.pop(0) if plan else None
            upstream = socket.create_connection(("127.0.0.1", upstream_port))
            threading.Thread(target=pump, args=(client, upstream, None), daemon=True).start()
            threading.Thread(target=pump, args=(upstream, client, nth), daemon=True).start()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield int(listener.getsockname()[1]), done
    finally:
        stop.set()
        thread.join(timeout=5)
        listener.close()


def test_connections_cut_midway_are_retried(seeded: tuple[LocalBao, Api, Catalog]) -> None:
    server, _, catalog = seeded
    # Every cut lands after at least one whole answer, so each retried read succeeds on
    # its fresh connection.
    with cutting_relay(server.port, cuts=[2, 3, 2, 5, 2, 4, 3, 2]) as (port, cut):
        report = check(
            f"http://127.0.0.1:{port}", server.root_token, catalog, workers=2, pipeline=4
        )
    assert len(cut) >= 5  # the relay did cut connections mid-answer
    assert report.passed, report.failures()
    assert families(report)["kv2_secrets"].ok == 7
    assert families(report)["extra_paths"].ok == 9


def test_server_that_never_answers_whole_is_unreadable_fast(
    seeded: tuple[LocalBao, Api, Catalog],
) -> None:
    server, _, catalog = seeded
    started = time.monotonic()
    with cutting_relay(server.port, cuts=[1] * 500) as (port, _):
        report = check(f"http://127.0.0.1:{port}", server.root_token, catalog, timeout=5)
    assert time.monotonic() - started < 20
    assert not report.passed
    mounts = families(report)["mounts"]
    assert mounts.unreadable == mounts.checked
    assert mounts.first_unreadable is not None
    assert "connection failed twice" in mounts.first_unreadable
    kv2 = families(report)["kv2_secrets"]
    assert kv2.unreadable == kv2.checked == 7
    assert kv2.first_unreadable is not None and "not read: server stopped answering" in (
        kv2.first_unreadable
    )


def test_nothing_listening_is_unreadable_not_a_hang() -> None:
    catalog = Catalog("c", "b", 0.0, 1.0, mounts=[Mount("app/", "kv", 2)], policies=["root"])
    catalog.secrets = [SecretEntry(mount="app/", path=f"s{i}", kv=2, version=1) for i in range(500)]
    started = time.monotonic()
    report = check(f"http://127.0.0.1:{free_port()}", "t", catalog)
    assert time.monotonic() - started < 5
    assert not report.passed
    kv2 = families(report)["kv2_secrets"]
    assert kv2.unreadable == 500
    assert kv2.first_unreadable == "app/s0: not read: cannot connect: connection refused"
    assert report.reads == 0


# --- the verdict table (no server) ----------------------------------------------------


def kv2(state: str = STABLE, version: int | None = 3, **kw: Any) -> SecretEntry:
    return SecretEntry(mount="m/", path="p", kv=2, state=state, version=version, **kw)


LIVE3 = Answer(200, version=3)
DELETED3 = Answer(404, version=3, deleted=True)
DESTROYED3 = Answer(404, version=3, destroyed=True)
ABSENT = Answer(404)


@pytest.mark.parametrize(
    ("secret", "read", "verdict"),
    [
        (kv2(), LIVE3, "ok"),
        (kv2(), Answer(200, version=4), "mismatched"),
        (kv2(), Answer(200, version=2), "mismatched"),
        (kv2(), ABSENT, "missing"),
        (kv2(), Answer(403, error="permission denied"), "unreadable"),
        (kv2(), Answer(500), "unreadable"),
        (kv2(), Answer(0, error="not read"), "unreadable"),
        (kv2(), Answer(200, error="answer without a data object"), "unreadable"),
        (kv2(deleted=True), DELETED3, "ok"),
        (kv2(deleted=True), LIVE3, "changed_during_backup"),
        (kv2(), DELETED3, "changed_during_backup"),
        (kv2(), DESTROYED3, "mismatched"),
        (kv2(destroyed=True), DESTROYED3, "ok"),
        (kv2(destroyed=True, deleted=True), DESTROYED3, "ok"),
        (kv2(destroyed=True), DELETED3, "changed_during_backup"),
        (kv2(destroyed=True), LIVE3, "changed_during_backup"),
        (kv2(CHANGED_AFTER), LIVE3, "changed_during_backup"),
        (kv2(CHANGED_AFTER), Answer(200, version=4), "mismatched"),
        (kv2(CHANGED_AFTER), ABSENT, "missing"),
        (kv2(CREATED_AFTER, None), ABSENT, "changed_during_backup"),
        (kv2(CREATED_AFTER, None), Answer(200, version=1), "changed_during_backup"),
        (kv2(CREATED_AFTER, None), Answer(403), "unreadable"),
        (kv2(UNCERTAIN, None), ABSENT, "changed_during_backup"),
        (kv2(UNCERTAIN, None), LIVE3, "changed_during_backup"),
        (kv2(UNCERTAIN), Answer(200, version=4), "changed_during_backup"),
        (kv2(UNCERTAIN), Answer(200, version=2), "mismatched"),
        (kv2(UNCERTAIN), ABSENT, "missing"),
        (kv2(UNCERTAIN), Answer(503), "unreadable"),
    ],
)
def test_kv2_verdicts(secret: SecretEntry, read: Answer, verdict: str) -> None:
    assert judge_kv2(secret, read)[0] == verdict


@pytest.mark.parametrize(
    ("state", "read", "verdict"),
    [
        (STABLE, Answer(200), "ok"),
        (STABLE, Answer(404), "missing"),
        (STABLE, Answer(403), "unreadable"),
        (UNCERTAIN, Answer(404), "changed_during_backup"),
        (UNCERTAIN, Answer(200), "changed_during_backup"),
        (UNCERTAIN, Answer(500), "unreadable"),
    ],
)
def test_kv1_verdicts(state: str, read: Answer, verdict: str) -> None:
    secret = SecretEntry(mount="l/", path="p", kv=1, state=state)
    assert judge_kv1(secret, read)[0] == verdict


def test_a_token_with_a_line_break_is_refused() -> None:
    from dr.errors import UsageError

    with pytest.raises(UsageError):
        check_catalog(
            VaultClient(Endpoint(addr="http://127.0.0.1:1"), token="s.x\r\nX-Evil: 1"),
            Catalog("c", "b", 0, 1),
        )
