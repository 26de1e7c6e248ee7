"""terraform/vault/policies/*.hcl: each parses with python-hcl2, grants no read of a
secret value anywhere, grants exactly what docs/vault-policy.md documents, and the
backup policy is the one the docs show (issue 11).

Vault's path matching is reproduced for the check: `+` matches one segment, a trailing
`*` any suffix. A path is "granted" if ANY rule matching it grants the capability,
which is stricter than Vault (the most specific rule wins), so a pass here holds there.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from tests.stack.ci import missing

REPO = Path(__file__).resolve().parents[2]
POLICIES = REPO / "terraform" / "vault" / "policies"
DOC = REPO / "docs" / "vault-policy.md"

# Where secret VALUES live: kv-v2 data (also in namespaces and nested mounts), kv-v1
# values, and the cubbyhole. None of these may be readable by any policy here.
VALUE_PATHS = [
    "secret/data/app/db",
    "kv/data/x",
    "team-a/app/data/db",  # a namespace's kv-v2 mount
    "team-a/sub/app/data/db",
    "legacy/app/db",  # kv-v1
    "secret/app",
    "cubbyhole/x",
    "transit/export/encryption-key/vault-dr",
    "transit/backup/vault-dr",
    "sys/raw/core/keyring",
]
WRITES = {"create", "update", "patch", "delete", "sudo"}


def _hcl2() -> Any:
    try:
        import hcl2
    except ImportError:
        missing("python-hcl2", "pip install -e '.[test]' (the test extra has python-hcl2)")
    return hcl2


def _unquote(value: str) -> str:
    return value[1:-1] if len(value) >= 2 and value[0] == value[-1] == '"' else value


def rules(text: str) -> dict[str, set[str]]:
    """{path: capabilities} of a Vault policy's HCL."""
    doc = _hcl2().loads(text)
    out: dict[str, set[str]] = {}
    for entry in doc.get("path", []):
        for path, body in entry.items():
            caps = {_unquote(c) for c in body["capabilities"]}
            out.setdefault(_unquote(path), set()).update(caps)
    return out


def _matches(pattern: str, path: str) -> bool:
    rx = ""
    for i, c in enumerate(pattern):
        if c == "+":
            rx += "[^/]+"
        elif c == "*" and i == len(pattern) - 1:
            rx += ".*"
        else:
            rx += re.escape(c)
    return re.fullmatch(rx, path) is not None


def granted(policy: dict[str, set[str]], path: str) -> set[str]:
    return set().union(*(caps for p, caps in policy.items() if _matches(p, path)))


def _files() -> list[Path]:
    files = sorted(POLICIES.glob("*.hcl"))
    assert {f.stem for f in files} >= {"backup", "drill", "seal", "transit-backup"}, files
    return files


@pytest.mark.parametrize("path", _files(), ids=lambda p: p.name)
def test_policy_parses_and_reads_no_secret_value(path: Path) -> None:
    policy = rules(path.read_text())
    assert policy, f"{path.name} has no path rule"
    for p, caps in policy.items():
        assert caps <= {
            "read",
            "list",
            "scan",
            "update",
            "create",
            "patch",
            "delete",
            "sudo",
            "deny",
        }, (p, caps)
        assert "sudo" not in caps and "delete" not in caps, f"{path.name}: {p} {caps}"
    for value in VALUE_PATHS:
        assert "read" not in granted(policy, value), f"{path.name} can read {value}"


def test_the_evaluator_can_fail() -> None:
    # The check above would catch a policy that grants a value read.
    leaky = rules(
        'path "+/data/*" { capabilities = ["read"] }\npath "legacy/*" '
        '{ capabilities = ["read", "list"] }'
    )
    assert "read" in granted(leaky, "secret/data/app/db")
    assert "read" in granted(leaky, "legacy/app/db")
    assert "read" not in granted(leaky, "secret/metadata/app/db")


def test_backup_reads_the_snapshot_and_metadata_and_writes_nothing() -> None:
    policy = rules((POLICIES / "backup.hcl").read_text())
    assert policy["sys/storage/raft/snapshot"] == {"read"}
    assert "read" in granted(policy, "secret/metadata/app/db")
    assert "list" in granted(policy, "secret/metadata/app/")
    assert "list" in granted(policy, "legacy/app/")
    assert not granted(policy, "sys/storage/raft/snapshot-force") & WRITES  # no restore
    for p, caps in policy.items():
        assert not caps & WRITES, f"backup.hcl grants {caps & WRITES} on {p}"


def test_backup_policy_is_the_documented_one() -> None:
    """backup.hcl and seal.hcl say what docs/vault-policy.md shows, line for line."""
    text = DOC.read_text()

    def block(heading: str) -> dict[str, set[str]]:
        section = text.split(heading, 1)[1]
        m = re.search(r"```hcl\n(.*?)```", section, re.S)
        assert m, f"no hcl block under {heading}"
        return rules(m.group(1))

    assert rules((POLICIES / "backup.hcl").read_text()) == block("## `dr backup`")
    assert rules((POLICIES / "seal.hcl").read_text()) == block("## The seal token")


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("transit-backup", {"transit/encrypt/vault-dr": {"update"}}),
        ("drill", {"transit/decrypt/vault-dr": {"update"}}),
        (
            "seal",
            {"transit/encrypt/autounseal": {"update"}, "transit/decrypt/autounseal": {"update"}},
        ),
    ],
)
def test_transit_policies_are_one_operation_on_one_key(
    name: str, expected: dict[str, set[str]]
) -> None:
    """The backup host may only wrap (never unwrap); a drill only unwraps; the seal
    token only the two operations on the seal key (docs/vault-policy.md, docs/keys.md)."""
    assert rules((POLICIES / f"{name}.hcl").read_text()) == expected


def test_drill_needs_no_source_cluster_policy() -> None:
    # docs/vault-policy.md: the drill makes a root token in its throwaway; a file that
    # granted the drill anything on the source (sys/, a kv mount) would contradict it.
    policy = rules((POLICIES / "drill.hcl").read_text())
    assert all(p.startswith("transit/") for p in policy), policy
