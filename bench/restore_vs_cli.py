"""Benchmark: `dr restore` against `bao operator raft snapshot restore -force FILE`.

Same snapshot both ways: a source OpenBao filled with incompressible kv-v2 secrets is
backed up by `dr backup` into SeaweedFS (keyfile recipient), and `dr decrypt` writes the
same snapshot as a plaintext file for the CLI. Every run restores into a FRESH target
OpenBao (a forced restore: it seals itself and the source key opens it):

- cli: `bao operator raft snapshot restore -force FILE` (the upload part), then the
  seal wait, `bao operator unseal KEY`, until health answers 200 (the whole);
- dr: `dr restore --backup ID --to TARGET --unseal-keys-file ... --yes --json` under
  `/usr/bin/time -f %M` (the dr process's own peak RSS); the upload part is its
  `fetch_and_authenticate` + `restore_call` stages, the whole is the process.

    python bench/restore_vs_cli.py --size-mb 250 [--runs 3] [--json out.json]

Not part of the test suite: timing goals are measured here, never asserted in tests.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.backup_rss import fill  # noqa: E402
from dr.crypto.keyfile import generate_keyfile  # noqa: E402
from dr.vault.localserver import LocalBao, find_bao_binary  # noqa: E402
from tests.integration.drutil import write_keys, writer_block  # noqa: E402
from tests.stack.seaweedfs import SeaweedS3  # noqa: E402


def _dr(config: Path, *args: str, env: dict[str, str] | None = None) -> str:
    proc = subprocess.run(
        [sys.executable, "-m", "dr", "-c", str(config), *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
    )
    if proc.returncode != 0:
        raise SystemExit(f"dr {args[0]} failed ({proc.returncode}): {proc.stderr}")
    return proc.stdout


def _fresh_target(tmp: Path, name: str) -> LocalBao:
    target = LocalBao(tmp / name)
    target.start()
    target.init()
    return target


def _wait(predicate: Any, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not _safely(predicate):
        if time.monotonic() > deadline:
            raise SystemExit("timed out")
        time.sleep(0.05)


def _safely(predicate: Any) -> bool:
    # A restored node's listener flickers while it tears down and seals (FACTS.md).
    try:
        return bool(predicate())
    except Exception:
        return False


def run_cli(tmp: Path, name: str, plain: Path, key: str) -> dict[str, float]:
    target = _fresh_target(tmp, name)
    try:
        env = {**os.environ, "BAO_ADDR": target.addr, "BAO_TOKEN": target.root_token}
        bao = str(find_bao_binary())
        start = time.monotonic()
        subprocess.run(
            [bao, "operator", "raft", "snapshot", "restore", "-force", str(plain)],
            env=env,
            check=True,
            capture_output=True,
        )
        upload = time.monotonic() - start
        _wait(lambda: target.seal_status().get("sealed") is True)
        subprocess.run([bao, "operator", "unseal", key], env=env, check=True, capture_output=True)
        _wait(lambda: target.health_code() == 200)
        return {"upload": upload, "whole": time.monotonic() - start}
    finally:
        target.stop()


def run_dr(
    tmp: Path,
    name: str,
    config: Path,
    backup_id: str,
    keys: Path,
    source_token: str,
    profile: Path | None = None,
    verify: bool = False,
    pythonpath: str = "",
) -> dict[str, float]:
    target = _fresh_target(tmp, name)
    try:
        rss_file = tmp / f"{name}.rss"
        env = {**os.environ, "TARGET_TOKEN": target.root_token, "SOURCE_TOKEN": source_token}
        if pythonpath:
            env["PYTHONPATH"] = pythonpath
        start = time.monotonic()
        wrap = [
            "py-spy",
            "record",
            "--subprocesses",
            "--format",
            "raw",
            "-r",
            "200",
            "-o",
            str(profile),
            "--",
        ]
        proc = subprocess.run(
            ([] if profile is None else wrap)
            + ["/usr/bin/time", "-o", str(rss_file), "-f", "%M", sys.executable, "-m", "dr",
             "-c", str(config), "restore", "--backup", backup_id, "--to", target.addr,
             "--token-env", "TARGET_TOKEN",
             *(["--verify-token-env", "SOURCE_TOKEN"] if verify else ["--no-verify"]),
             "--unseal-keys-file", str(keys), "--yes", "--json"],
            capture_output=True, text=True, env=env,
            # `python -m` puts the working directory first on sys.path, before PYTHONPATH.
            cwd=pythonpath or None,
        )  # fmt: skip
        whole = time.monotonic() - start
        if proc.returncode != 0:
            raise SystemExit(f"dr restore failed ({proc.returncode}): {proc.stderr}")
        # py-spy (--profile) writes its own lines around dr's JSON.
        out = proc.stdout
        stages = json.loads(out[out.index("{") : out.rindex("}") + 1])["stages"]
        rss_kb = int(rss_file.read_text().split()[-1])
        return {
            "upload": stages["fetch_and_authenticate"] + stages["restore_call"],
            "whole": whole,
            "peak_rss_mb": rss_kb * 1024 / 1e6,
            **{f"stage_{k}": v for k, v in stages.items()},
        }
    finally:
        target.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mb", type=int, default=250)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--json", type=Path)
    parser.add_argument(
        "--tree",
        action="append",
        default=[],
        help="NAME=DIR: also run dr from another source tree (PYTHONPATH=DIR), e.g. the "
        "code before a change, in the same runs",
    )
    parser.add_argument("--no-verify-runs", action="store_true", help="skip the dr_verify runs")
    parser.add_argument("--profile", type=Path, help="also one dr restore under py-spy (raw)")
    args = parser.parse_args()

    os.environ.setdefault("AWS_ACCESS_KEY_ID", "bench")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "bench")
    with tempfile.TemporaryDirectory(prefix="dr-bench-restore-") as tmp_str:
        tmp = Path(tmp_str)
        source = LocalBao(tmp / "source")
        weed = SeaweedS3(tmp / "weed")
        try:
            source.start()
            init = source.init()
            weed.start()
            weed.make_bucket("bench", versioned=True)
            fill(source, init.root_token, args.size_mb)
            generate_keyfile(tmp / "bench.key")
            config = tmp / "dr.yaml"
            config.write_text(yaml.safe_dump({
                "cluster": "bench",
                "vault": {"addr": source.addr},
                "storage": {"type": "s3", "bucket": "bench", "region": weed.region,
                            "endpoint_url": weed.endpoint_url},
                "encryption": {
                    "recipients": [{"type": "keyfile", "path": str(tmp / "bench.key")}],
                    "writer": writer_block(tmp),
                },
            }))  # fmt: skip
            backup = json.loads(
                _dr(config, "backup", "--json", env={"VAULT_TOKEN": init.root_token})
            )
            plain = tmp / "snapshot.snap"
            _dr(config, "decrypt", "--backup", backup["backup_id"], "-o", str(plain))
            keys = write_keys(tmp / "unseal.json", {"keys_base64": init.keys_b64})
            size_mb = plain.stat().st_size / 1e6
            print(f"snapshot {size_mb:.1f} MB", file=sys.stderr)
            trees = dict(t.split("=", 1) for t in args.tree)
            rows: dict[str, list[dict[str, float]]] = {"cli": [], "dr": [], "dr_verify": []}
            rows.update({f"dr_{name}": [] for name in trees})
            for i in range(args.runs):
                rows["cli"].append(run_cli(tmp, f"cli{i}", plain, init.keys_b64[0]))
                if not trees:
                    rows["dr"].append(
                        run_dr(tmp, f"dr{i}", config, backup["backup_id"], keys, init.root_token)
                    )
                for name, path in trees.items():
                    rows[f"dr_{name}"].append(
                        run_dr(tmp, f"dr{name}{i}", config, backup["backup_id"], keys,
                               init.root_token, pythonpath=path)
                    )  # fmt: skip
                if not args.no_verify_runs:
                    rows["dr_verify"].append(
                        run_dr(tmp, f"drv{i}", config, backup["backup_id"], keys,
                               init.root_token, verify=True)
                    )  # fmt: skip
                print(f"run {i + 1}: {json.dumps({k: v[-1] for k, v in rows.items() if v})}",
                      file=sys.stderr, flush=True)  # fmt: skip
            if args.profile:
                for name, path in trees.items() or {"dr": ""}.items():
                    run_dr(tmp, f"prof{name}", config, backup["backup_id"], keys,
                           init.root_token, profile=args.profile.with_suffix(f".{name}.txt"),
                           pythonpath=path)  # fmt: skip
        finally:
            source.stop()
            weed.stop()
    med = {
        who: {k: statistics.median(r[k] for r in runs) for k in runs[0]}
        for who, runs in rows.items()
        if runs
    }
    summary = {
        "snapshot_mb": size_mb,
        "median": med,
        "ratios_vs_cli": {
            who: {part: med[who][part] / med["cli"][part] for part in ("upload", "whole")}
            for who in med
            if who != "cli"
        },
        "runs": rows,
    }
    print(json.dumps(summary, indent=2))
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
