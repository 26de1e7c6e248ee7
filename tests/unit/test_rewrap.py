"""`dr rewrap` on a file store: what changes, what never does, and what is refused.

The real-stack acceptance (KMS key A -> key B on versioned S3, old key gone) is in
tests/integration/test_keys.py; these cover the rules quickly.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from dr.config import Config, parse_config
from dr.crypto.keyfile import generate_keyfile
from dr.crypto.recipients import WrapContext, build_recipients, new_data_key, select_wrappers
from dr.crypto.x25519 import X25519Identity, write_identity
from dr.errors import ExitCode, IntegrityError, KeyAccessError, LockedError, UsageError
from dr.manifest import MANIFEST_NAME, Layout, Manifest, ObjectRecord, new_backup_id
from dr.ops.find import unlock
from dr.ops.rewrap import run_rewrap
from dr.storage.file import FileStore


class Site:
    """A file store with backups, and the key material to write configs for it."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp = tmp_path
        self.store = FileStore(tmp_path / "store")
        self.store.preflight(write=True)
        self.layout = Layout("p", "prod")
        for name in ("a", "b", "c"):
            generate_keyfile(tmp_path / f"{name}.key")
        self.identity = X25519Identity.generate()
        self.identity_file = tmp_path / "bg.key"
        write_identity(self.identity_file, self.identity)

    def recipient(self, name: str) -> dict[str, Any]:
        if name == "bg":
            return {"type": "x25519", "name": "bg", "recipient": self.identity.recipient}
        return {"type": "keyfile", "name": name, "path": str(self.tmp / f"{name}.key")}

    def config(self, *names: str) -> Config:
        data: dict[str, Any] = {
            "cluster": "prod",
            "storage": {"type": "file", "path": str(self.tmp / "store"), "prefix": "p"},
        }
        # These manifests are made by hand, unsigned: allowed explicitly.
        data["encryption"] = {"allow_unsigned": True}
        if names:
            data["encryption"]["recipients"] = [self.recipient(n) for n in names]
        return parse_config(data, "dr.yaml", self.tmp, {})

    def backup(self, *names: str) -> Manifest:
        """A manifest whose data objects are placeholders: rewrap never reads them."""
        backup_id = new_backup_id()
        context = WrapContext("prod", backup_id)
        data_key, stanzas = new_data_key(build_recipients(self.config(*names).encryption), context)
        refs = {}
        for obj in ("snapshot", "catalog"):
            refs[obj] = self.store.put_bytes(
                self.layout.key(backup_id, f"{obj}.enc"), os.urandom(64)
            )
        manifest = Manifest(
            cluster="prod",
            backup_id=backup_id,
            created_at="2026-11-26T06:00:00Z",
            completed_at="2026-11-26T06:00:09Z",
            tool_version="0.1.0",
            vault={"product": "openbao", "cluster_id": "c-1"},
            snapshot=ObjectRecord(
                refs["snapshot"].key, None, "prod/x/snapshot", 1, "a" * 64, 64, "b" * 64
            ),
            snapshot_info={"raft_index": 7},
            catalog=ObjectRecord(
                refs["catalog"].key, None, "prod/x/catalog", 1, "a" * 64, 64, "b" * 64
            ),
            catalog_counts={"secrets": 3},
            encryption={"frame_size": 1 << 20},
            recipients=stanzas,
        )
        manifest.seal(data_key)
        self.store.put_bytes(self.layout.key(backup_id, MANIFEST_NAME), manifest.dumps())
        return manifest

    def manifest(self, backup_id: str) -> Manifest:
        key = self.layout.key(backup_id, MANIFEST_NAME)
        return Manifest.loads(self.store.get_bytes(key), key)

    def data_files(self) -> dict[str, tuple[bytes, int]]:
        root = self.tmp / "store"
        return {str(p): (p.read_bytes(), p.stat().st_mtime_ns) for p in root.rglob("*.enc")}


@pytest.fixture
def site(tmp_path: Path) -> Site:
    return Site(tmp_path)


def names(manifest: Manifest) -> list[str]:
    return [f"{s.type}:{s.name}" for s in manifest.recipients]


def test_add_then_remove_keeps_data_and_mac(site: Site) -> None:
    m = site.backup("a")
    data_before = site.data_files()
    config = site.config("a", "b", "bg")
    result = run_rewrap(config, which=m.backup_id, all_backups=False, add=["b", "bg"])
    (change,) = result.changes
    assert change.written and change.added == ["b", "bg"] and change.opened_with == "keyfile:a"
    assert names(site.manifest(m.backup_id)) == ["keyfile:a", "keyfile:b", "x25519:bg"]

    # The old recipient goes; the new ones open it; the MAC still verifies.
    result = run_rewrap(config, which="latest", all_backups=False, remove=["a"])
    assert result.changes[0].removed == ["a"]
    after = site.manifest(m.backup_id)
    assert names(after) == ["keyfile:b", "x25519:bg"]
    assert unlock(after, build_recipients(site.config("b").encryption))[1].name == "b"
    assert unlock(after, select_wrappers(None, site.identity_file))[1].name == "bg"
    with pytest.raises(KeyAccessError, match="wrapped for: keyfile:b, x25519:bg"):
        unlock(after, build_recipients(site.config("a").encryption))
    # Nothing but the manifest was touched: same bytes, same mtimes.
    assert site.data_files() == data_before
    assert after.snapshot == m.snapshot and after.catalog == m.catalog


def test_rerun_changes_nothing_and_needs_no_key(site: Site) -> None:
    m = site.backup("a", "b")
    key = site.layout.key(m.backup_id, MANIFEST_NAME)
    before = site.store.get_bytes(key)
    path = site.tmp / "store" / key
    mtime = path.stat().st_mtime_ns
    # The config's recipient "a" now points at a key file that does not exist: a rerun
    # that has nothing to do must not even try to open the backup.
    os.rename(site.tmp / "a.key", site.tmp / "a.moved")
    result = run_rewrap(
        site.config("a", "b"), which=m.backup_id, all_backups=False, add=["b"], remove=["zz"]
    )
    assert [c.changed for c in result.changes] == [False]
    assert result.to_json()["changed"] == 0
    assert site.store.get_bytes(key) == before and path.stat().st_mtime_ns == mtime


def test_remove_and_add_the_same_name_rotates_it(site: Site, tmp_path: Path) -> None:
    m = site.backup("a", "b")
    old_b = site.manifest(m.backup_id).recipients[1]
    # Rotation: "b" now names another key file.
    generate_keyfile(tmp_path / "b2.key")
    os.replace(tmp_path / "b.key", tmp_path / "b-old.key")
    os.replace(tmp_path / "b2.key", tmp_path / "b.key")
    result = run_rewrap(
        site.config("a", "b"), which=m.backup_id, all_backups=False, add=["b"], remove=["b"]
    )
    change = result.changes[0]
    assert change.added == ["b"] and change.removed == ["b"]
    new_b = site.manifest(m.backup_id).recipients[1]
    assert new_b.name == "b" and new_b.key_id != old_b.key_id
    assert (
        unlock(site.manifest(m.backup_id), build_recipients(site.config("b").encryption))[1]
        == new_b
    )


def test_refuses_to_remove_the_last_recipient(site: Site) -> None:
    m = site.backup("a")
    before = site.store.get_bytes(site.layout.key(m.backup_id, MANIFEST_NAME))
    with pytest.raises(UsageError, match="refusing to remove the last recipient") as info:
        run_rewrap(site.config("a"), which=m.backup_id, all_backups=False, remove=["a"])
    assert info.value.exit_code == ExitCode.USAGE
    assert site.store.get_bytes(site.layout.key(m.backup_id, MANIFEST_NAME)) == before


def test_usage_errors(site: Site) -> None:
    m = site.backup("a")
    config = site.config("a")
    with pytest.raises(UsageError, match="nothing to do"):
        run_rewrap(config, which=m.backup_id, all_backups=False)
    with pytest.raises(UsageError, match=r"--backup ID\|latest or --all"):
        run_rewrap(config, which=None, all_backups=False, add=["a"])
    with pytest.raises(UsageError, match="either"):
        run_rewrap(config, which=m.backup_id, all_backups=True, add=["a"])
    with pytest.raises(
        UsageError,
        match=r"--add nope: dr.yaml has no recipient with that name, label or key \(it has: a\)",
    ):
        run_rewrap(config, which=m.backup_id, all_backups=False, add=["nope"])


def test_all_is_planned_before_anything_is_written(site: Site) -> None:
    first = site.backup("a")
    second = site.backup("c")  # "a" cannot open this one
    before = {
        m.backup_id: site.store.get_bytes(site.layout.key(m.backup_id, MANIFEST_NAME))
        for m in (first, second)
    }
    with pytest.raises(KeyAccessError, match="wrapped for: keyfile:c"):
        run_rewrap(site.config("a", "b"), which=None, all_backups=True, add=["b"])
    for backup_id, raw in before.items():
        assert site.store.get_bytes(site.layout.key(backup_id, MANIFEST_NAME)) == raw
    # With an identity that opens the other one, --all does both.
    result = run_rewrap(
        site.config("a", "b"), which=None, all_backups=True, add=["b"], identity=site.tmp / "c.key"
    )
    assert sorted(c.backup_id for c in result.changes if c.written) == sorted(before)
    assert {c.opened_with for c in result.changes} == {"keyfile:a", "keyfile:c"}


def test_dry_run_writes_nothing(site: Site) -> None:
    m = site.backup("a")
    before = site.store.get_bytes(site.layout.key(m.backup_id, MANIFEST_NAME))
    result = run_rewrap(
        site.config("a", "b"), which=m.backup_id, all_backups=False, add=["b"], dry_run=True
    )
    assert result.changes[0].changed and not result.changes[0].written
    assert result.to_json()["dry_run"] is True
    assert site.store.get_bytes(site.layout.key(m.backup_id, MANIFEST_NAME)) == before


def test_altered_manifest_is_not_rewrapped(site: Site) -> None:
    m = site.backup("a")
    key = site.layout.key(m.backup_id, MANIFEST_NAME)
    altered = site.manifest(m.backup_id)
    altered.snapshot_info["raft_index"] = 8
    site.store.put_bytes(key, altered.dumps())
    with pytest.raises(IntegrityError, match="does not authenticate"):
        run_rewrap(site.config("a", "b"), which=m.backup_id, all_backups=False, add=["b"])


def test_concurrent_change_is_refused(site: Site, monkeypatch: pytest.MonkeyPatch) -> None:
    m = site.backup("a")
    key = site.layout.key(m.backup_id, MANIFEST_NAME)
    import dr.ops.rewrap

    real_plan = dr.ops.rewrap.plan_one

    def plan_then_someone_else_writes(*args: Any, **kwargs: Any) -> Any:
        change = real_plan(*args, **kwargs)
        other = site.manifest(m.backup_id)
        other.recipients = other.recipients[:1] * 2
        site.store.put_bytes(key, other.dumps())
        return change

    monkeypatch.setattr(dr.ops.rewrap, "plan_one", plan_then_someone_else_writes)
    with pytest.raises(LockedError, match="changed while this rewrap ran"):
        run_rewrap(site.config("a", "b"), which=m.backup_id, all_backups=False, add=["b"])
    assert len(site.manifest(m.backup_id).recipients) == 2


def test_cli_shows_what_changed(site: Site) -> None:
    import json
    import subprocess
    import sys

    import yaml

    m = site.backup("a")
    config = site.tmp / "dr.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "cluster": "prod",
                "storage": {"type": "file", "path": str(site.tmp / "store"), "prefix": "p"},
                "encryption": {
                    "recipients": [site.recipient("a"), site.recipient("bg")],
                    "allow_unsigned": True,
                },
            }
        )
    )

    def dr(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "dr", "-c", str(config), "rewrap", *args],
            capture_output=True,
            text=True,
            timeout=60,
        )

    proc = dr("--backup", m.backup_id, "--add", "bg", "--dry-run")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [
        f"{m.backup_id}: keyfile:a -> keyfile:a, x25519:bg (added bg)",
        f"would rewrap 1 of 1 backup(s) in {site.store.describe()}",
    ]
    proc = dr("--all", "--add", "bg", "--remove", "a")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[0] == (
        f"{m.backup_id}: keyfile:a -> x25519:bg (added bg; removed a)"
    )
    assert "keeps no object versions" in proc.stderr
    proc = dr("--all", "--add", "bg", "--json")
    assert json.loads(proc.stdout)["changed"] == 0
    proc = dr("--backup", m.backup_id, "--remove", "bg")
    assert proc.returncode == ExitCode.USAGE
    assert proc.stderr.startswith("error: refusing to remove the last recipient")
