"""Namespaces (OpenBao 2.3+): walked by the backup, checked by the drill and restore.

A source with secrets in the root namespace, in `team-a` and in the nested
`team-a/sub` (kv-v2 and kv-v1 mounts, an auth method and policies in the namespaces):
- `dr backup` catalogs all of them, each with its namespace; the manifest and
  `dr list` record three namespaces walked;
- `dr drill` checks all of them through the namespace header; the report's counts per
  namespace equal what the test wrote;
- after `dr restore` into another server, a secret deleted there inside the nested
  namespace is reported missing with its namespace in the path.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import hvac
import pytest
import requests

from dr.config import load_config
from dr.crypto.recipients import build_recipients
from dr.manifest import Layout
from dr.ops.checks import check_catalog
from dr.ops.find import resolve_backup, unlock
from dr.ops.verify import load_catalog
from dr.storage.factory import open_store
from dr.vault.connection import VaultClient
from dr.vault.localserver import LocalBao
from tests.integration.drutil import dr_json, keyfile_recipient, run_dr, write_config

# namespace -> {mount: (kv version, number of secrets)}
LAYOUT: dict[str, dict[str, tuple[int, int]]] = {
    "": {"app/": (2, 20), "legacy/": (1, 5)},
    "team-a/": {"app/": (2, 15), "old/": (1, 4)},
    "team-a/sub/": {"app/": (2, 10)},
}


def expected_counts() -> dict[str, int]:
    return {ns: sum(n for _, n in mounts.values()) for ns, mounts in LAYOUT.items()}


def _client(server: LocalBao, namespace: str = "") -> Any:
    session = requests.Session()
    session.trust_env = False
    return hvac.Client(
        url=server.addr,
        token=server.root_token,
        namespace=namespace.strip("/") or None,
        session=session,
    )


def populate_namespaces(server: LocalBao) -> None:
    root = _client(server)
    root.adapter.post("/v1/sys/namespaces/team-a")
    _client(server, "team-a/").adapter.post("/v1/sys/namespaces/sub")
    for namespace, mounts in LAYOUT.items():
        client = _client(server, namespace)
        for mount, (version, count) in mounts.items():
            client.sys.enable_secrets_engine("kv", path=mount, options={"version": str(version)})
            for i in range(count):
                path = f"svc/{namespace.strip('/').replace('/', '-') or 'root'}-{i:03d}"
                data = {"value": f"{namespace}{mount}{i}"}
                if version == 2:
                    client.secrets.kv.v2.create_or_update_secret(
                        path=path, secret=data, mount_point=mount
                    )
                else:
                    client.secrets.kv.v1.create_or_update_secret(
                        path=path, secret=data, mount_point=mount
                    )
        if namespace:
            client.sys.create_or_update_acl_policy(
                name="reader", policy='path "app/data/*" { capabilities = ["read"] }'
            )
    _client(server, "team-a/").sys.enable_auth_method("approle")


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory, bao_binary: Path) -> dict[str, Any]:
    tmp = tmp_path_factory.mktemp("ns-src")
    server = LocalBao(tmp / "bao", binary=bao_binary, node_id="ns-src")
    try:
        server.start()
        init = server.init()
        populate_namespaces(server)
        keys = tmp / "unseal.json"
        fd = os.open(keys, os.O_WRONLY | os.O_CREAT, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump(init.raw, fh)
        config = write_config(
            tmp,
            addr=server.addr,
            storage={"type": "file", "path": str(tmp / "store")},
            recipients=[keyfile_recipient(tmp)],
            extra={"drill": {"unseal_keys_file": str(keys)}},
        )
        result = dr_json("backup", config=config, token=init.root_token)
    finally:
        server.stop()
    return {"config": config, "backup": result, "keys": keys, "init": init}


def catalog_of(config_path: Path, backup_id: str) -> Any:
    config = load_config(str(config_path))
    store = open_store(config.storage)
    manifest = resolve_backup(store, Layout(config.storage.prefix, config.cluster), backup_id)
    data_key, _ = unlock(manifest, build_recipients(config.encryption))
    return manifest, load_catalog(store, manifest, data_key)


def test_backup_catalogs_every_namespace(source: dict[str, Any]) -> None:
    manifest, catalog = catalog_of(source["config"], source["backup"]["backup_id"])
    assert catalog.namespaces == ["", "team-a/", "team-a/sub/"]
    assert catalog.namespaces_skipped == []
    assert catalog.per_namespace() == expected_counts()
    assert manifest.catalog_counts["namespaces"] == 3
    mounts = {(m.namespace, m.path, m.kv_version) for m in catalog.mounts if m.kv_version}
    assert mounts == {
        (ns, mount, version) for ns, ms in LAYOUT.items() for mount, (version, _) in ms.items()
    }
    assert "team-a/approle/" in {m.namespace + m.path for m in catalog.auth_methods}
    assert {"team-a/reader", "team-a/sub/reader", "root"} <= set(catalog.policies)
    deep = [e for e in catalog.secrets if e.namespace == "team-a/sub/"]
    assert deep and all(e.full_path.startswith("team-a/sub/app/svc/") for e in deep)
    # No namespace mount (ns_system...) leaks into the catalog as data.
    assert not [m for m in catalog.mounts if m.type.startswith("ns_")]
    listing = dr_json("list", config=source["config"])
    assert listing["backups"][0]["catalog"]["namespaces"] == 3


def test_drill_checks_every_namespace(source: dict[str, Any]) -> None:
    proc = run_dr("drill", "--runtime", "process", "--json", config=source["config"], timeout=600)
    assert "Traceback" not in proc.stderr, proc.stderr
    report = json.loads(proc.stdout)
    assert proc.returncode == 0, report["verdict"]
    per_namespace = report["checks"]["namespaces"]
    assert {ns: c["checked"] for ns, c in per_namespace.items()} == expected_counts()
    assert {ns: c["ok"] for ns, c in per_namespace.items()} == expected_counts()
    families = {f["name"]: f for f in report["checks"]["families"]}
    assert families["mounts"]["missing"] == 0 and families["mounts"]["ok"] >= 5
    assert families["policies"]["missing"] == 0


def test_a_secret_deleted_in_a_nested_namespace_is_missing_with_its_namespace(
    source: dict[str, Any], bao_binary: Path, tmp_path: Path
) -> None:
    target = LocalBao(tmp_path / "target", binary=bao_binary, node_id="target")
    try:
        target.start()
        target.init()
        source_token = source["init"].root_token
        proc = run_dr(
            "restore",
            "--to",
            target.addr,
            "--token-env",
            "TARGET_TOKEN",
            "--verify-token-env",
            "SOURCE_TOKEN",
            "--unseal-keys-file",
            str(source["keys"]),
            "--yes",
            "--json",
            config=source["config"],
            env={"TARGET_TOKEN": target.root_token, "SOURCE_TOKEN": source_token},
            timeout=600,
        )
        assert proc.returncode == 0, proc.stderr
        restored = json.loads(proc.stdout)
        counts = restored["checks"]["namespaces"]
        assert {ns: c["ok"] for ns, c in counts.items()} == expected_counts()

        # Delete one secret (metadata and all) inside team-a/sub on the restored server.
        nested = hvac.Client(url=target.addr, token=source_token, namespace="team-a/sub")
        nested.session.trust_env = False
        nested.secrets.kv.v2.delete_metadata_and_all_versions(
            path="svc/team-a-sub-003", mount_point="app"
        )
        _, catalog = catalog_of(source["config"], source["backup"]["backup_id"])
        report = check_catalog(VaultClient.at(target.addr, token=source_token), catalog)
        kv2 = report.family("kv2_secrets")
        assert kv2.missing == 1 and not report.passed
        assert kv2.first_missing is not None
        assert kv2.first_missing.startswith("team-a/sub/app/svc/team-a-sub-003")
        assert report.namespaces["team-a/sub/"]["missing"] == 1
        assert report.namespaces["team-a/"]["missing"] == 0
    finally:
        target.stop()
