"""`dr report rotation` (issue 10, Build 6): stale kv-v2 secrets from the catalog.

The secrets are written now; the test makes some of them old through the catalog's
times (the catalog re-encrypted with the backup's data key, the manifest re-sealed and
re-signed, as a backup of 120 days ago would have recorded them), then the report must
list exactly those, grouped, without reading any value and without a Vault.
"""

from __future__ import annotations

import hashlib
import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from dr.config import load_config
from dr.crypto.envelope import encrypt_bytes
from dr.crypto.recipients import build_recipients
from dr.manifest import CATALOG_NAME, MANIFEST_NAME, Layout
from dr.ops.backup import load_writer
from dr.ops.find import resolve_backup, unlock
from dr.ops.verify import load_catalog
from dr.storage.factory import open_store
from dr.vault.localserver import LocalBao
from tests.integration.drutil import dr_json, keyfile_recipient, run_dr, write_config
from tests.stack.openbao import hvac_client

OLD = {"app/team-a/db", "app/team-a/api", "ops/ci/token"}


def _age(config_path: Path, backup_id: str, old: set[str], days: int) -> None:
    config = load_config(str(config_path))
    store = open_store(config.storage)
    layout = Layout(config.storage.prefix, config.cluster)
    manifest = resolve_backup(store, layout, backup_id)
    data_key, _ = unlock(manifest, build_recipients(config.encryption))
    catalog = load_catalog(store, manifest, data_key)
    then = (datetime.now(UTC) - timedelta(days=days)).isoformat().replace("+00:00", "Z")
    for entry in catalog.secrets:
        if f"{entry.mount}{entry.path}" in old:
            entry.version_time = then
    plaintext = json.dumps(catalog.to_json()).encode()
    blob = encrypt_bytes(plaintext, data_key, manifest.catalog.context)
    ref = store.put_bytes(layout.key(backup_id, CATALOG_NAME), blob)
    manifest.catalog.plaintext_size = len(plaintext)
    manifest.catalog.plaintext_sha256 = hashlib.sha256(plaintext).hexdigest()
    manifest.catalog.ciphertext_size = len(blob)
    manifest.catalog.ciphertext_sha256 = hashlib.sha256(blob).hexdigest()
    manifest.catalog.version_id = ref.version_id
    manifest.seal(data_key)
    manifest.sign(load_writer(config))
    store.put_bytes(layout.key(backup_id, MANIFEST_NAME), manifest.dumps())


def test_rotation_report_lists_exactly_the_old_secrets(bao_binary: Path, tmp_path: Path) -> None:
    server = LocalBao(tmp_path / "bao", binary=bao_binary)
    server.start()
    try:
        server.init()
        client = hvac_client(server)
        for mount in ("app", "ops"):
            client.sys.enable_secrets_engine("kv", path=mount, options={"version": "2"})
        time.sleep(1)  # kv-v2 mounts upgrade in the background
        paths = [*OLD, "app/team-a/fresh", "app/team-b/x", "ops/ci/fresh", "ops/other"]
        for full in paths:
            mount, path = full.split("/", 1)
            client.secrets.kv.v2.create_or_update_secret(path, {"v": "1"}, mount_point=mount)
        config = write_config(
            tmp_path,
            addr=server.addr,
            storage={"type": "file", "path": str(tmp_path / "store")},
            recipients=[keyfile_recipient(tmp_path)],
        )
        backup_id = dr_json("backup", config=config, token=server.root_token)["backup_id"]
    finally:
        server.stop()  # the report needs no Vault
    _age(config, backup_id, OLD, days=120)

    report = dr_json("report", "rotation", "--days", "90", config=config)
    assert report["backup_id"] == backup_id and report["days"] == 90
    assert report["checked"] == len(paths) and report["stale"] == len(OLD)
    listed = {f"{g['mount']}{s['path']}" for g in report["groups"] for s in g["secrets"]}
    assert listed == OLD
    groups = {(g["mount"], g["prefix"]): g["count"] for g in report["groups"]}
    assert groups == {("app/", "team-a/"): 2, ("ops/", "ci/"): 1}
    assert all(119 < g["oldest_days"] < 121 for g in report["groups"])
    assert dr_json("report", "rotation", "--days", "200", config=config)["stale"] == 0
    table = run_dr("report", "rotation", config=config)
    assert table.returncode == 0, table.stderr
    assert f"3 of {len(paths)} kv-v2 secrets not rotated in 90 days" in table.stdout
    assert "team-a/" in table.stdout and "(root)" in table.stdout
