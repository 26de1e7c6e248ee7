"""Key management against the real stack (key-management issue, acceptance).

- With the KMS endpoint stopped, `dr verify` and `dr restore` work with `--identity`
  and, without it, fail naming the unreachable KMS and suggesting `--identity`.
- A backup for {KMS key A} is rewrapped to {KMS key B}; A's KMS is then stopped; B
  verifies and restores; the manifest names only B; the data objects' VersionIds did
  not change and the old manifest version is still in the bucket's history.
- A vault-transit recipient on a second real OpenBao wraps and unwraps; one inside the
  cluster being backed up is refused.
- The reference decryptor turns a real backup into a snapshot that the real
  `bao operator raft snapshot restore -force` accepts.
- A mistyped character in a typed-back identity is caught by its checksum.

moto's servers share one in-process backend, and moto does not refuse a disabled key:
"key A is unusable" is therefore made real by stopping the server that serves it.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from dr.crypto.x25519 import X25519Identity, write_identity
from dr.errors import ExitCode
from tests.integration.drutil import (
    bao_cli_restore,
    differing_secrets,
    dr_json,
    keyfile_recipient,
    one_line_error,
    run_dr,
    s3_storage,
    write_config,
)
from tests.stack.moto_kms import MotoServer
from tests.stack.openbao import hvac_client

ROOT = Path(__file__).resolve().parents[2]
RECIPIENT_RE = re.compile(r"\bvdr1[02-9ac-hj-np-z]{58}\b")


@pytest.fixture
def kms_servers(moto_server: MotoServer) -> Iterator[Callable[[], MotoServer]]:
    """Start extra KMS servers of our own (the session's must never be stopped)."""
    started: list[MotoServer] = []

    def start() -> MotoServer:
        server = MotoServer()
        server.start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


def kms(server: MotoServer, name: str) -> dict[str, Any]:
    key = server.create_kms_key(f"alias/dr-{name}-{uuid.uuid4().hex[:8]}")
    return {
        "type": "aws-kms",
        "name": name,
        "key_id": key.alias,
        "region": "us-east-1",
        "endpoint_url": server.endpoint_url,
    }


def keygen(path: Path) -> str:
    """`dr keygen --out PATH --print-private`, as an operator runs it (stdout is a pipe
    here, so the flag is needed to print the key); returns the public recipient."""
    proc = run_dr("keygen", "--out", str(path), "--print-private")
    assert proc.returncode == 0, proc.stderr
    assert path.stat().st_mode & 0o777 == 0o600
    recipients = set(RECIPIENT_RE.findall(proc.stdout))
    assert len(recipients) == 1, proc.stdout
    assert "VDR-SECRET-KEY-1" in proc.stdout
    return recipients.pop()


def test_keygen_prints_no_private_key_into_a_pipe(tmp_path: Path) -> None:
    proc = run_dr("keygen", "--out", str(tmp_path / "id.key"))
    assert proc.returncode == 0, proc.stderr
    assert RECIPIENT_RE.findall(proc.stdout)
    assert "VDR-SECRET-KEY-1" not in proc.stdout + proc.stderr
    assert "--print-private" in proc.stderr


def x25519(recipient: str, name: str = "break-glass") -> dict[str, Any]:
    return {"type": "x25519", "name": name, "recipient": recipient}


def require_offline(config: Path) -> None:
    data = yaml.safe_load(config.read_text())
    data["encryption"]["require_offline"] = True
    config.write_text(yaml.safe_dump(data, sort_keys=False))


def unseal_keys(tmp_path: Path, bao: Any) -> Path:
    path = tmp_path / "unseal.json"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(bao.keys.raw, fh)
    return path


def restore(
    config: Path, backup_id: str, target: Any, bao: Any, keys: Path, *extra: str
) -> subprocess.CompletedProcess[str]:
    return run_dr(
        "restore",
        "--backup",
        backup_id,
        "--to",
        target.addr,
        "--unseal-keys-file",
        str(keys),
        "--verify-token-env",
        "SOURCE_TOKEN",
        "--yes",
        "--json",
        *extra,
        config=config,
        token=target.root_token,
        env={"SOURCE_TOKEN": bao.root_token},
    )


def manifest_versions(s3: Any, bucket: str, prefix: str) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for v in s3.list_object_versions(Bucket=bucket, Prefix=prefix).get("Versions", []):
        out.setdefault(v["Key"].rsplit("/", 1)[1], []).append(v)
    return out


def test_kms_down_verify_and_restore_work_with_identity_only(
    tmp_path: Path,
    bao: Any,
    seaweed: Any,
    versioned_bucket: str,
    kms_servers: Callable[[], MotoServer],
    fresh_bao: Any,
) -> None:
    server = kms_servers()
    identity = tmp_path / "break-glass.key"
    recipient = keygen(identity)
    storage = s3_storage(seaweed, versioned_bucket)
    config = write_config(
        tmp_path,
        addr=bao.addr,
        storage=storage,
        recipients=[kms(server, "kms"), x25519(recipient)],
    )
    require_offline(config)  # met by the x25519 recipient
    backup_id = dr_json("backup", config=config, token=bao.root_token)["backup_id"]
    listed = dr_json("list", config=config)["backups"]
    assert listed[0]["recipients"] == ["aws-kms:kms", "x25519:break-glass"]

    server.stop()  # the KMS is gone

    proc = run_dr("verify", "--backup", backup_id, config=config)
    line = one_line_error(proc)
    assert proc.returncode == ExitCode.KEYS, line
    assert "cannot reach the KMS endpoint" in line and server.endpoint_url in line
    assert "--identity" in line

    proc = run_dr("verify", "--backup", backup_id, "--identity", str(identity), config=config)
    assert proc.returncode == 0, proc.stderr
    assert "opened with x25519:break-glass" in proc.stdout

    # The break-glass config: no vault section, no recipients; the identity does it all.
    bare = tmp_path / "break-glass.yaml"
    pinned = {
        "writer": {
            "public_key": yaml.safe_load(config.read_text())["encryption"]["writer"]["public_key"]
        }
    }
    bare.write_text(json.dumps({"cluster": "prod", "storage": storage, "encryption": pinned}))
    proc = run_dr("verify", "--identity", str(identity), config=bare)
    assert proc.returncode == 0, proc.stderr

    keys = unseal_keys(tmp_path, bao)
    proc = restore(config, backup_id, fresh_bao, bao, keys)
    line = one_line_error(proc)
    assert proc.returncode == ExitCode.KEYS and "cannot reach the KMS endpoint" in line
    assert "--identity" in line

    proc = restore(bare, backup_id, fresh_bao, bao, keys, "--identity", str(identity))
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["passed"] is True
    assert result["checks"]["total_checked"] >= len(bao.secrets)


def test_rewrap_takes_keys_and_unnamed_recipients_keep_their_names(
    tmp_path: Path, bao: Any, moto_server: MotoServer
) -> None:
    """An operator rotating "from key A to key B" types the keys' aliases; unnamed
    recipients are named after their keys, so reordering the list renames nothing."""
    unnamed_a = {k: v for k, v in kms(moto_server, "a").items() if k != "name"}
    unnamed_b = {k: v for k, v in kms(moto_server, "b").items() if k != "name"}
    name_a = "kms-" + unnamed_a["key_id"].split("alias/", 1)[1]
    name_b = "kms-" + unnamed_b["key_id"].split("alias/", 1)[1]
    local = keyfile_recipient(tmp_path)
    storage = {"type": "file", "path": str(tmp_path / "store")}
    config_a = write_config(tmp_path, addr=bao.addr, storage=storage, recipients=[unnamed_a, local])
    # B added FIRST: with position-based names A would have become "aws-kms-1".
    config_ba = write_config(
        tmp_path,
        addr=bao.addr,
        storage=storage,
        recipients=[unnamed_b, unnamed_a, local],
        name="ba.yaml",
    )
    made = dr_json("backup", config=config_a, token=bao.root_token)
    assert made["recipients"] == [f"aws-kms:{name_a}", "keyfile:local"]
    result = dr_json(
        "rewrap",
        "--backup",
        made["backup_id"],
        "--add",
        unnamed_b["key_id"],  # the alias, as the operator knows the key
        "--remove",
        unnamed_a["key_id"],
        config=config_ba,
    )
    (change,) = result["backups"]
    assert change["written"], change
    assert sorted(change["after"]) == sorted([f"aws-kms:{name_b}", "keyfile:local"]), change
    # A value that names nothing is one line naming what the config has.
    proc = run_dr("rewrap", "--backup", made["backup_id"], "--add", "alias/none", config=config_ba)
    line = one_line_error(proc)
    assert proc.returncode == ExitCode.USAGE and name_a in line and name_b in line, line


def test_rewrap_from_kms_a_to_kms_b_keeps_the_data_objects(
    tmp_path: Path,
    bao: Any,
    seaweed: Any,
    versioned_bucket: str,
    kms_servers: Callable[[], MotoServer],
    fresh_bao: Any,
) -> None:
    server_a, server_b = kms_servers(), kms_servers()
    key_a, key_b = kms(server_a, "kms-a"), kms(server_b, "kms-b")
    storage = s3_storage(seaweed, versioned_bucket)
    config_a = write_config(tmp_path, addr=bao.addr, storage=storage, recipients=[key_a])
    config_ab = write_config(
        tmp_path, addr=bao.addr, storage=storage, recipients=[key_a, key_b], name="ab.yaml"
    )
    config_b = write_config(
        tmp_path, addr=bao.addr, storage=storage, recipients=[key_b], name="b.yaml"
    )
    made = dr_json("backup", config=config_a, token=bao.root_token)
    backup_id = made["backup_id"]
    assert made["recipients"] == ["aws-kms:kms-a"]
    s3 = seaweed.client()
    prefix = f"prod/prod/{backup_id}/"
    before = manifest_versions(s3, versioned_bucket, prefix)

    result = dr_json(
        "rewrap", "--backup", backup_id, "--add", "kms-b", "--remove", "kms-a", config=config_ab
    )
    (change,) = result["backups"]
    assert change["written"] and change["opened_with"] == "aws-kms:kms-a"
    assert change["before"] == ["aws-kms:kms-a"] and change["after"] == ["aws-kms:kms-b"]
    # A rerun has nothing to do.
    again = dr_json(
        "rewrap", "--backup", backup_id, "--add", "kms-b", "--remove", "kms-a", config=config_ab
    )
    assert again["changed"] == 0 and not again["backups"][0]["written"]

    server_a.stop()  # key A is unusable from now on

    proc = run_dr("verify", "--backup", backup_id, config=config_b)
    assert proc.returncode == 0, proc.stderr
    assert "opened with aws-kms:kms-b" in proc.stdout
    proc = run_dr("verify", "--backup", backup_id, config=config_a)
    line = one_line_error(proc)
    assert proc.returncode == ExitCode.KEYS and "cannot reach the KMS endpoint" in line

    # The new manifest names only B; the data objects kept their one version each; the
    # old manifest version (naming A) is still in the bucket's history.
    after = manifest_versions(s3, versioned_bucket, prefix)
    for name in ("snapshot.enc", "catalog.enc"):
        assert [v["VersionId"] for v in after[name]] == [v["VersionId"] for v in before[name]]
        assert [v["VersionId"] for v in after[name]] == [made["version_ids"][name[:-4]]]
    manifests = after["manifest.json"]
    assert len(manifests) == 2
    latest = next(v for v in manifests if v["IsLatest"])
    assert latest["VersionId"] == change["manifest_version_id"]
    old = next(v for v in manifests if not v["IsLatest"])
    assert old["VersionId"] == before["manifest.json"][0]["VersionId"]

    def stanzas(version_id: str) -> list[tuple[str, str, str]]:
        body = s3.get_object(
            Bucket=versioned_bucket, Key=prefix + "manifest.json", VersionId=version_id
        )
        doc = json.loads(body["Body"].read())
        return [(s["type"], s["name"], s["key_id"]) for s in doc["recipients"]]

    (new_stanza,) = stanzas(latest["VersionId"])
    assert new_stanza[:2] == ("aws-kms", "kms-b")
    assert [s[:2] for s in stanzas(old["VersionId"])] == [("aws-kms", "kms-a")]

    proc = restore(config_b, backup_id, fresh_bao, bao, unseal_keys(tmp_path, bao))
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["passed"] is True


def _transit_on(server: Any) -> str:
    """Enable transit on `server` with a key, and return a token limited to it."""
    client = hvac_client(server)
    client.sys.enable_secrets_engine("transit", path="transit")
    client.secrets.transit.create_key(name="vault-dr")
    client.sys.create_or_update_policy(
        name="vault-dr-transit",
        policy=(
            'path "transit/encrypt/vault-dr" { capabilities = ["update"] }\n'
            'path "transit/decrypt/vault-dr" { capabilities = ["update"] }\n'
        ),
    )
    token = client.auth.token.create(policies=["vault-dr-transit"], ttl="1h")
    return str(token["auth"]["client_token"])


def test_vault_transit_on_a_separate_openbao(tmp_path: Path, bao: Any, fresh_bao: Any) -> None:
    transit_token = _transit_on(fresh_bao)
    recipient = {
        "type": "vault-transit",
        "name": "transit",
        "addr": fresh_bao.addr,
        "key": "vault-dr",
    }
    store = tmp_path / "store"
    config = write_config(
        tmp_path,
        addr=bao.addr,
        storage={"type": "file", "path": str(store)},
        recipients=[recipient],
    )
    env = {"VAULT_TRANSIT_TOKEN": transit_token}
    first = dr_json("backup", config=config, token=bao.root_token, env=env)
    assert first["recipients"] == ["vault-transit:transit"]
    manifest_path = store / "prod" / first["backup_id"] / "manifest.json"
    stanza = json.loads(manifest_path.read_text())["recipients"][0]
    assert stanza["key_id"] == "transit/vault-dr" and stanza["ciphertext"].startswith("vault:v1:")
    proc = run_dr("verify", "--backup", first["backup_id"], config=config, env=env)
    assert proc.returncode == 0, proc.stderr
    assert "opened with vault-transit:transit" in proc.stdout

    # Without its token the recipient says which variable to set.
    proc = run_dr("verify", "--backup", first["backup_id"], config=config)
    line = one_line_error(proc)
    assert proc.returncode == ExitCode.KEYS and "VAULT_TRANSIT_TOKEN" in line

    # A stanza copied into another backup's manifest is refused (context binding).
    second = dr_json("backup", config=config, token=bao.root_token, env=env)
    other = store / "prod" / second["backup_id"] / "manifest.json"
    doc = json.loads(other.read_text())
    doc["recipients"] = [stanza]
    other.write_text(json.dumps(doc))
    proc = run_dr("verify", "--backup", second["backup_id"], config=config, env=env)
    line = one_line_error(proc)
    assert proc.returncode == ExitCode.INTEGRITY and "made for another backup" in line

    # The same transit key cannot protect the cluster it lives in.
    inside = write_config(
        tmp_path,
        addr=fresh_bao.addr,
        storage={"type": "file", "path": str(tmp_path / "inside")},
        recipients=[recipient],
        name="inside.yaml",
    )
    proc = run_dr("backup", config=inside, token=fresh_bao.root_token, env=env)
    line = one_line_error(proc)
    assert proc.returncode == ExitCode.USAGE, line
    assert "inside the cluster being backed up" in line and fresh_bao.addr in line
    assert not list((tmp_path / "inside").rglob("*.enc"))

    # The transit Vault gone: the error names it and the way out.
    fresh_bao.stop()
    proc = run_dr("verify", "--backup", first["backup_id"], config=config, env=env)
    line = one_line_error(proc)
    assert proc.returncode == ExitCode.KEYS and "cannot reach the transit Vault" in line
    assert fresh_bao.addr in line and "--identity FILE" in line


def test_reference_decryptor_output_restores_with_the_bao_cli(
    tmp_path: Path, bao: Any, seaweed: Any, versioned_bucket: str, fresh_bao: Any
) -> None:
    identity = X25519Identity.generate()
    write_identity(tmp_path / "bg.key", identity)
    config = write_config(
        tmp_path,
        addr=bao.addr,
        storage=s3_storage(seaweed, versioned_bucket),
        recipients=[x25519(identity.recipient)],
    )
    made = dr_json("backup", config=config, token=bao.root_token)
    # By hand, as runbooks/break-glass.md does with `aws s3api get-object --version-id`.
    s3 = seaweed.client()
    prefix = f"prod/prod/{made['backup_id']}/"
    (tmp_path / "manifest.json").write_bytes(
        s3.get_object(Bucket=versioned_bucket, Key=prefix + "manifest.json")["Body"].read()
    )
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    (tmp_path / "snapshot.enc").write_bytes(
        s3.get_object(
            Bucket=versioned_bucket,
            Key=manifest["snapshot"]["key"],
            VersionId=manifest["snapshot"]["version_id"],
        )["Body"].read()
    )
    # The key as typed from paper, in a file of its own.
    typed = tmp_path / "typed.txt"
    typed.write_text(identity.printed() + "\n")
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "tools" / "vdr-decrypt.py"),
            "--identity",
            str(typed),
            "--manifest",
            str(tmp_path / "manifest.json"),
            str(tmp_path / "snapshot.enc"),
            str(tmp_path / "restore.snap"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "restore.snap").stat().st_size == manifest["snapshot"]["plaintext_size"]

    proc = bao_cli_restore(fresh_bao, tmp_path / "restore.snap")
    assert proc.returncode == 0, proc.stderr
    fresh_bao.wait_sealed(timeout=60)
    fresh_bao.unseal(bao.keys.keys_b64)
    fresh_bao.wait_active(timeout=60)
    differing = differing_secrets(hvac_client(fresh_bao, bao.root_token), bao)
    assert not differing, differing[:3]


def _type_back(text: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "dr", "keygen", "--from-printed", *args],
        input=text,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_a_mistyped_character_is_caught_by_the_checksum(tmp_path: Path) -> None:
    original = tmp_path / "original.key"
    recipient = keygen(original)
    identity_text = original.read_text().splitlines()[-1]
    data = identity_text[len("VDR-SECRET-KEY-1") :]
    paper = "VDR-SECRET-KEY-1\n" + " ".join(data[i : i + 4] for i in range(0, len(data), 4))

    # One wrong character in group 6: refused, the group named, nothing written.
    pos = 22
    typo = data[:pos] + ("X" if data[pos] != "X" else "Y") + data[pos + 1 :]
    typed_wrong = "VDR-SECRET-KEY-1\n" + " ".join(typo[i : i + 4] for i in range(0, len(typo), 4))
    restored = tmp_path / "restored.key"
    proc = _type_back(typed_wrong, "--out", str(restored))
    line = one_line_error(proc)
    assert proc.returncode == ExitCode.USAGE
    assert "checksum caught a mistyped character" in line and "group 6" in line
    assert not restored.exists()

    # Typed right: the same identity, 0600, and the public key to compare.
    proc = _type_back(paper.lower(), "--out", str(restored))
    assert proc.returncode == 0, proc.stderr
    assert recipient in proc.stdout
    assert restored.stat().st_mode & 0o777 == 0o600
    assert restored.read_text().splitlines()[-1] == identity_text
    # Never over an existing identity.
    proc = _type_back(paper, "--out", str(restored))
    assert proc.returncode == ExitCode.USAGE and "refusing to overwrite" in proc.stderr
    proc = run_dr("keygen", "--out", str(original))
    assert proc.returncode == ExitCode.USAGE and "refusing to overwrite" in proc.stderr


def test_require_offline_refuses_a_kms_only_config(
    tmp_path: Path, bao: Any, seaweed: Any, versioned_bucket: str, moto: Any
) -> None:
    recipient = {
        "type": "aws-kms",
        "name": "kms",
        "key_id": "alias/vault-backup",
        "region": "us-east-1",
        "endpoint_url": moto.endpoint_url,
    }
    config = write_config(
        tmp_path,
        addr=bao.addr,
        storage=s3_storage(seaweed, versioned_bucket),
        recipients=[recipient],
    )
    require_offline(config)
    proc = run_dr("backup", config=config, token=bao.root_token)
    line = one_line_error(proc)
    assert proc.returncode == ExitCode.USAGE and "no recipient is offline" in line
    assert not seaweed.client().list_objects_v2(Bucket=versioned_bucket).get("Contents")
