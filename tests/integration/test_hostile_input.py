"""Hostile input against the store-level verify path (issue 8, item 5).

One genuine backup (the project's own code: a keyfile recipient, the fabricated raft
snapshot tests/data/snapshot-small.snap, a small catalog, 4 KiB frames) is written into a
FileStore once per module; no Vault is needed. Property tests then mutate what a bucket
writer controls: manifest.json (fields deleted, types swapped, numbers, strings with odd
characters, stanza edits, raw bytes), and snapshot.enc / catalog.enc (header bytes,
frames: flips, truncations, appends, drops, swaps, duplicates). Each example runs what
`dr verify` runs (resolve_backup, then verify_backup) in-process and must end in:

- IntegrityError (exit 6) for anything altered,
- NotFoundError (exit 8) for a removed object,
- KeyAccessError (exit 5) only when no stanza is left that names the configured key
  (a key_id or type edited away: "none of the configured recipients can open this
  backup" is then the true answer, and nothing was decrypted),
- success only when the mutation changed nothing the MAC or the AEAD covers.

Anything else (TypeError, ValueError, KeyError, RecursionError, InvalidTag, ...) is a
bug: `dr` would print "internal error" and exit 1. The examples are derandomized (a
fixed seed); CI=true runs 10,000 of them across the tests here, a local run 1,000.
"""

from __future__ import annotations

import base64
import copy
import json
import os
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, currently_in_test_context, event, given, settings
from hypothesis import strategies as st

from dr.crypto.envelope import TAG_SIZE, EncryptingReader
from dr.crypto.keyfile import KeyfileRecipient, generate_keyfile
from dr.crypto.recipients import KeyWrapper, WrapContext, new_data_key
from dr.crypto.writer import format_public, generate_writer_key, read_writer_key
from dr.errors import ExitCode, IntegrityError, KeyAccessError, NotFoundError
from dr.manifest import (
    CATALOG_NAME,
    MANIFEST_NAME,
    SNAPSHOT_NAME,
    Layout,
    Manifest,
    ObjectRecord,
    new_backup_id,
)
from dr.ops.find import resolve_backup
from dr.ops.verify import verify_backup
from dr.storage.file import FileStore
from dr.vault.catalog import Catalog, Mount, SecretEntry
from dr.vault.snapshot import SnapshotChecker
from tests.integration.drutil import one_line_error, run_dr

SNAPSHOT = Path(__file__).resolve().parents[1] / "data" / "snapshot-small.snap"
FRAME = 4096
CLUSTER = "prod"
PREFIX = "p"

CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
# Shares of the 10,000 CI examples (1,000 locally): manifest fields, manifest bytes,
# envelope bytes and frames.
EXAMPLES = {"fields": 4000, "manifest_bytes": 2000, "envelope": 4000}
SCALE = 1 if CI else 10


def examples(kind: str) -> int:
    return EXAMPLES[kind] // SCALE


def hostile_settings(kind: str) -> Callable[[Any], Any]:
    return settings(
        max_examples=examples(kind),
        derandomize=True,
        database=None,
        deadline=None,
        print_blob=True,
        suppress_health_check=[
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
            HealthCheck.function_scoped_fixture,
            HealthCheck.filter_too_much,
        ],
    )


@dataclass
class Backup:
    root: Path
    store: FileStore
    layout: Layout
    backup_id: str
    wrappers: list[KeyWrapper]
    key_id: str
    files: dict[str, bytes]  # name -> genuine bytes
    doc: dict[str, Any]  # the genuine manifest as JSON
    body: dict[str, Any]  # what its MAC covers
    header_len: dict[str, int]  # envelope header size per object

    def path(self, name: str) -> Path:
        return self.root / PREFIX / CLUSTER / self.backup_id / name

    def restore(self) -> None:
        for name, data in self.files.items():
            self.path(name).write_bytes(data)


def make_backup(root: Path) -> Backup:
    """A real backup, written the way dr/ops/backup.py writes one (without a Vault)."""
    store = FileStore(root)
    store.preflight(write=True)
    layout = Layout(PREFIX, CLUSTER)
    backup_id = new_backup_id()
    key_path = root.parent / "local.key"
    generate_keyfile(key_path)
    wrapper = KeyfileRecipient("local", key_path)
    data_key, stanzas = new_data_key([wrapper], WrapContext(CLUSTER, backup_id))

    snapshot = SNAPSHOT.read_bytes()
    checker = SnapshotChecker()
    checker.feed(snapshot)
    info = checker.finish()
    catalog = Catalog(
        cluster=CLUSTER,
        backup_id=backup_id,
        window_start=1795000000.0,
        window_end=1795000009.5,
        mounts=[Mount("app/", "kv", 2)],
        policies=["default"],
        namespaces=[""],
        secrets=[SecretEntry("app/", f"s{i}", 2, version=1) for i in range(40)],
        walk_started_at="2026-11-26T06:00:00Z",
        walk_finished_at="2026-11-26T06:00:09Z",
    )
    catalog_json = json.dumps(catalog.to_json()).encode()

    records: dict[str, ObjectRecord] = {}
    for name, plain in ((SNAPSHOT_NAME, snapshot), (CATALOG_NAME, catalog_json)):
        context = layout.context(backup_id, name)
        reader = EncryptingReader([plain], data_key, context, frame_size=FRAME)
        ref = store.put_stream(layout.key(backup_id, name), reader)  # type: ignore[arg-type]
        records[name] = ObjectRecord(
            ref.key,
            ref.version_id,
            context,
            reader.plaintext_size,
            reader.plaintext_sha256,
            reader.ciphertext_size,
            reader.ciphertext_sha256,
        )
    manifest = Manifest(
        cluster=CLUSTER,
        backup_id=backup_id,
        created_at="2026-11-26T06:00:00Z",
        completed_at="2026-11-26T06:00:09Z",
        tool_version="0.1.0",
        vault={"addr": "https://vault:8200", "product": "openbao", "cluster_id": "c-1"},
        snapshot=records[SNAPSHOT_NAME],
        snapshot_info={
            "raft_index": info.index,
            "raft_term": info.term,
            "raft_version": info.version,
            "state_sha256": info.state_sha256,
            "state_size": info.state_size,
            "window_start": 1795000000.0,
            "window_end": 1795000009.5,
            "clock_uncertainty": 0.01,
        },
        catalog=records[CATALOG_NAME],
        catalog_counts=catalog.counts(),
        encryption={"format": "vault-dr-envelope-v1", "frame_size": FRAME},
        recipients=stanzas,
    )
    manifest.seal(data_key)
    # Signed like every real backup; the in-process checks below pin no writer key (the
    # signature's own checks are tests/integration/test_trust.py), the CLI checks do.
    generate_writer_key(root.parent / "writer.key")
    manifest.sign(read_writer_key(root.parent / "writer.key"))
    store.put_bytes(layout.key(backup_id, MANIFEST_NAME), manifest.dumps())
    backup = Backup(
        root=root,
        store=store,
        layout=layout,
        backup_id=backup_id,
        wrappers=[wrapper],
        key_id=wrapper.key_id,
        files={},
        doc=manifest.to_json(),
        body=manifest._body(),
        header_len={},
    )
    for name in (MANIFEST_NAME, SNAPSHOT_NAME, CATALOG_NAME):
        backup.files[name] = backup.path(name).read_bytes()
    for name in (SNAPSHOT_NAME, CATALOG_NAME):
        backup.header_len[name] = 7 + 1 + 1 + 32 + 2 + len(records[name].context) + 32
    return backup


@pytest.fixture(scope="module")
def backup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Backup]:
    b = make_backup(tmp_path_factory.mktemp("hostile") / "store")
    verify(b, b.backup_id)  # the genuine backup verifies
    yield b


def verify(b: Backup, which: str) -> None:
    """What `dr verify` does after reading its config."""
    manifest = resolve_backup(b.store, b.layout, which)
    verify_backup(b.store, manifest, b.wrappers)


STAGES = (  # (words in the message, the stage it names), first match wins
    ("manifest is malformed", "manifest malformed"),
    ("magic", "envelope magic/version"),
    ("envelope version", "envelope magic/version"),
    ("envelope header", "envelope header"),
    ("context", "envelope header"),
    ("frame", "envelope frame"),
    ("truncated", "envelope frame"),
    ("does not match its manifest", "sizes/sha256"),
    ("not valid JSON", "manifest not JSON"),
    ("UTF-8", "manifest not JSON"),
    ("JSON object", "manifest not JSON"),
    ("larger than", "manifest not JSON"),
    ("names backup", "manifest names another backup"),
    ("altered after the backup", "manifest MAC"),
    ("stanza", "stanza"),
    ("can open this backup", "no matching stanza"),
    ("data key", "stanza"),
)


def outcome(b: Backup, which: str = "") -> BaseException | None:
    """Run verify; return the exception (None on success). Restores the store after.
    `hypothesis --hypothesis-show-statistics` shows how far the examples got."""
    try:
        verify(b, which or b.backup_id)
    except Exception as exc:
        message = str(exc)
        stage = next((name for word, name in STAGES if word in message), "other")
        if stage == "other" and os.environ.get("HOSTILE_SHOW_OTHER"):
            print("OTHER:", type(exc).__name__, message[:200])
        if currently_in_test_context():
            event(f"{type(exc).__name__}: {stage}")
        return exc
    finally:
        b.restore()
    if currently_in_test_context():
        event("verified")
    return None


def allowed_key_access(b: Backup, raw: bytes) -> bool:
    """KeyAccessError is the right answer when the manifest loads but names no
    stanza this key file matches (nothing was tried, so nothing failed to decrypt)."""
    try:
        manifest = Manifest.loads(raw, "m")
    except IntegrityError:
        return False
    return not any(s.type == "keyfile" and s.key_id == b.key_id for s in manifest.recipients)


def benign_manifest(b: Backup, raw: bytes) -> bool:
    """The mutation changed nothing the MAC covers (e.g. a stanza's name, or spacing)."""
    try:
        return Manifest.loads(raw, "m")._body() == b.body
    except IntegrityError:
        return False


def check_manifest(b: Backup, raw: bytes, which: str = "") -> None:
    b.path(MANIFEST_NAME).write_bytes(raw)
    exc = outcome(b, which)
    if exc is None:
        assert benign_manifest(b, raw), "an altered manifest verified"
        return
    if isinstance(exc, KeyAccessError) and allowed_key_access(b, raw):
        return
    if not isinstance(exc, IntegrityError):
        raise AssertionError(f"{type(exc).__name__} instead of IntegrityError: {exc!s:.300}")
    assert exc.exit_code == ExitCode.INTEGRITY
    assert "\n" not in str(exc) and len(str(exc)) < 1000, str(exc)[:300]


# -- strategies -------------------------------------------------------------------------------

ODD_TEXT = st.one_of(
    st.text(max_size=20),
    st.text(alphabet=st.characters(codec="utf-8"), max_size=20),
    st.sampled_from(
        [
            "",
            "\x00",
            "\ud800",
            "\udfff",
            "é",
            "\u202e",
            "\n",
            "A" * 300,
            "0" * 64,
            "é" * 64,
            "Z" * 64,
            "QUFBQQ==",
            "====",
            "vault:v1:x",
            "../../etc/passwd",
            "20261126T060000Z-3f9a1c",
            "NaN",
        ]
    ),
)
ODD_NUMBER = st.one_of(
    st.integers(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([0, -1, 1, 2**31, 2**48, 2**48 + 1, 2**63, 10**30, 10**300]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
)
WRITER_SIG = base64.b64encode(bytes(range(64))).decode()
SCALAR = st.one_of(st.none(), ODD_NUMBER, ODD_TEXT)
JSON_VALUE = st.recursive(
    SCALAR,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(ODD_TEXT, inner, max_size=4)
    ),
    max_leaves=8,
)


def paths(doc: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path to a value inside a JSON document."""
    out = [prefix]
    if isinstance(doc, dict):
        for k, v in doc.items():
            out += paths(v, (*prefix, k))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            out += paths(v, (*prefix, i))
    return out


def get(doc: Any, path: tuple[Any, ...]) -> Any:
    for p in path:
        doc = doc[p]
    return doc


@st.composite
def edit_value(draw: st.DrawFn, value: Any) -> Any:
    """A value related to `value` (a near miss) or anything at all."""
    kind = draw(st.sampled_from(["any", "scalar", "near", "near", "near", "wrap"]))
    if kind == "any":
        return draw(JSON_VALUE)
    if kind == "scalar":
        return draw(SCALAR)
    if kind == "wrap":
        return draw(st.sampled_from([[value], {"v": value}, str(value)[:100]]))
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value + draw(st.sampled_from([1, -1, -value - 1, 2**48, value, -(2**64)]))
    if isinstance(value, float):
        return draw(st.sampled_from([value + 1, -value, float("nan"), float("inf"), 1e300]))
    if isinstance(value, str):
        cut = draw(st.integers(0, len(value)))
        extra = draw(ODD_TEXT)
        how = draw(st.sampled_from(["cut", "append", "insert", "upper", "flip", "b64"]))
        if how == "b64":  # well-formed base64 of any length: nonces, keys, signatures
            return base64.b64encode(draw(st.binary(max_size=80))).decode()
        if how == "cut":
            return value[:cut]
        if how == "append":
            return value + extra
        if how == "insert":
            return value[:cut] + extra + value[cut:]
        if how == "upper":
            return value.upper()
        if value:
            i = min(cut, len(value) - 1)
            return (
                value[:i] + chr((ord(value[i]) ^ draw(st.integers(1, 127))) or 1) + value[i + 1 :]
            )
        return extra
    return draw(JSON_VALUE)


@st.composite
def mutated_manifest(draw: st.DrawFn, doc: dict[str, Any]) -> bytes:
    doc = copy.deepcopy(doc)
    for _ in range(draw(st.integers(1, 3))):
        all_paths = paths(doc)
        op = draw(
            st.sampled_from(["replace", "replace", "delete", "add", "stanza", "stanza", "writer"])
        )
        if op == "writer":  # the optional signature: well-formed (unpinned here) or not
            writer = {"alg": "ed25519", "key_id": "0123456789abcdef", "sig": WRITER_SIG}
            key = draw(st.sampled_from(["alg", "key_id", "sig", "extra", None]))
            if key is not None:
                writer[key] = draw(edit_value(writer.get(key, "")))
            doc["writer"] = writer if draw(st.integers(0, 4)) else draw(JSON_VALUE)
            continue
        if op == "stanza" and isinstance(doc.get("recipients"), list) and doc["recipients"]:
            stanzas = doc["recipients"]
            sop = draw(st.sampled_from(["field", "dup", "drop", "type", "key_id", "clear"]))
            i = draw(st.integers(0, len(stanzas) - 1))
            stanza = stanzas[i]
            if sop == "dup":
                stanzas.append(copy.deepcopy(stanza))
            elif sop == "drop":
                stanzas.pop(i)
            elif not isinstance(stanza, dict):
                stanzas[i] = draw(JSON_VALUE)
            elif sop == "type":
                stanza["type"] = draw(st.sampled_from(["x25519", "aws-kms", "KEYFILE", ""]))
            elif sop == "key_id":
                stanza["key_id"] = draw(edit_value(stanza.get("key_id", "")))
            elif sop == "clear":
                stanza.clear()
            else:
                name = draw(st.sampled_from(["nonce", "wrapped", "name", "epk", "extra"]))
                if draw(st.booleans()) and name in stanza:
                    del stanza[name]
                else:
                    stanza[name] = draw(edit_value(stanza.get(name, "")))
            continue
        path = draw(st.sampled_from(all_paths))
        if not path:
            if op == "replace":
                return json.dumps(draw(JSON_VALUE)).encode()
            continue
        parent = get(doc, path[:-1])
        last = path[-1]
        if op == "delete":
            del parent[last]
        elif op == "add" and isinstance(parent, dict):
            parent[draw(ODD_TEXT)] = draw(JSON_VALUE)
        elif op == "add" and isinstance(parent, list):
            parent.insert(last, draw(JSON_VALUE))
        else:
            parent[last] = draw(edit_value(parent[last]))
    indent = draw(st.sampled_from([None, 2]))
    return json.dumps(doc, indent=indent, sort_keys=draw(st.booleans())).encode()


@st.composite
def mutated_bytes(draw: st.DrawFn, data: bytes, hot: int) -> bytes:
    """Byte-level damage; positions favour the first `hot` bytes (a header)."""
    out = bytearray(data)
    for _ in range(draw(st.integers(1, 3))):
        n = len(out)
        if n == 0:
            out += draw(st.binary(max_size=64))
            continue
        pos = draw(st.one_of(st.integers(0, min(hot, n) - 1), st.integers(0, n - 1)))
        op = draw(st.sampled_from(["flip", "set", "truncate", "append", "insert", "delete"]))
        if op == "flip":
            out[pos] ^= draw(st.integers(1, 255))
        elif op == "set":
            out[pos] = draw(st.integers(0, 255))
        elif op == "truncate":
            del out[pos:]
        elif op == "append":
            out += draw(st.binary(min_size=1, max_size=64))
        elif op == "insert":
            out[pos:pos] = draw(st.binary(min_size=1, max_size=16))
        else:
            del out[pos : pos + draw(st.integers(1, 64))]
    return bytes(out)


@st.composite
def mutated_frames(draw: st.DrawFn, data: bytes, header_len: int) -> bytes:
    """Frame-level damage: drop, swap, duplicate, move, or replace the header."""
    header, body = data[:header_len], data[header_len:]
    wire = FRAME + TAG_SIZE
    frames = [body[i : i + wire] for i in range(0, len(body), wire)]
    op = draw(st.sampled_from(["drop", "swap", "dup", "move", "header", "tail"]))
    i = draw(st.integers(0, len(frames) - 1))
    j = draw(st.integers(0, len(frames) - 1))
    if op == "drop":
        frames.pop(i)
    elif op == "swap":
        frames[i], frames[j] = frames[j], frames[i]
    elif op == "dup":
        frames.insert(j, frames[i])
    elif op == "move":
        frames.insert(j, frames.pop(i))
    elif op == "header":
        header = draw(mutated_bytes(header, header_len))
    else:
        frames[-1] = frames[-1][: draw(st.integers(0, len(frames[-1])))]
    return header + b"".join(frames)


# -- the property tests -----------------------------------------------------------------------


@hostile_settings("fields")
@given(data=st.data())
def test_manifest_field_mutations_end_in_integrity_error(
    backup: Backup, data: st.DataObject
) -> None:
    check_manifest(backup, data.draw(mutated_manifest(backup.doc)))


@hostile_settings("manifest_bytes")
@given(data=st.data())
def test_manifest_byte_mutations_end_in_integrity_error(
    backup: Backup, data: st.DataObject
) -> None:
    raw = backup.files[MANIFEST_NAME]
    check_manifest(backup, data.draw(mutated_bytes(raw, len(raw))))


@hostile_settings("envelope")
@given(data=st.data())
def test_envelope_mutations_end_in_integrity_error(backup: Backup, data: st.DataObject) -> None:
    name = data.draw(st.sampled_from([SNAPSHOT_NAME, CATALOG_NAME]))
    genuine = backup.files[name]
    hot = backup.header_len[name]
    if data.draw(st.booleans()):
        damaged = data.draw(mutated_frames(genuine, hot))
    else:
        damaged = data.draw(mutated_bytes(genuine, hot + 2 * TAG_SIZE))
    backup.path(name).write_bytes(damaged)
    exc = outcome(backup)
    if exc is None:
        assert damaged == genuine, f"an altered {name} verified"
        return
    if not isinstance(exc, IntegrityError):
        raise AssertionError(f"{type(exc).__name__} instead of IntegrityError: {exc!s:.300}")


@pytest.mark.parametrize("name", [SNAPSHOT_NAME, CATALOG_NAME, MANIFEST_NAME])
@pytest.mark.parametrize("which", ["id", "latest"])
def test_a_removed_object_is_not_found(backup: Backup, name: str, which: str) -> None:
    backup.path(name).unlink()
    exc = outcome(backup, backup.backup_id if which == "id" else "latest")
    assert isinstance(exc, NotFoundError), repr(exc)


def test_an_emptied_object_fails_authentication(backup: Backup) -> None:
    for name in (SNAPSHOT_NAME, CATALOG_NAME):
        backup.path(name).write_bytes(b"")
        assert isinstance(outcome(backup), IntegrityError)


# -- the CLI: exit 6, one line, no traceback --------------------------------------------------

HOSTILE_MANIFESTS: dict[str, Callable[[dict[str, Any]], Any]] = {
    "non-ascii mac": lambda d: d.update(mac="é" * 64),
    "huge number": lambda d: d["snapshot"].update(plaintext_size=10**40),
    "empty nonce": lambda d: d["recipients"][0].update(nonce=""),
    "list as stanza value": lambda d: d["recipients"][0].update(wrapped=["x"]),
    "string as object": lambda d: d.update(snapshot="snapshot.enc"),
    "bool as size": lambda d: d["catalog"].update(ciphertext_size=True),
    "not an object": lambda d: [d],
}


def writer_public(backup: Backup) -> str:
    return format_public(read_writer_key(backup.root.parent / "writer.key").public)


@pytest.mark.parametrize("shape", [*HOSTILE_MANIFESTS, "NaN", "invalid UTF-8", "deep"])
def test_cli_verify_exits_6_with_one_line(backup: Backup, tmp_path: Path, shape: str) -> None:
    store = tmp_path / "store"
    shutil.copytree(backup.root, store)
    manifest = store / PREFIX / CLUSTER / backup.backup_id / MANIFEST_NAME
    if shape in HOSTILE_MANIFESTS:
        doc = copy.deepcopy(backup.doc)
        result = HOSTILE_MANIFESTS[shape](doc)
        raw = json.dumps(result if result is not None else doc).encode()
    elif shape == "NaN":
        raw = json.dumps({**backup.doc, "snapshot_info": {"raft_index": float("nan")}}).encode()
    elif shape == "invalid UTF-8":
        raw = backup.files[MANIFEST_NAME].replace(b'"prod"', b'"pr\xffd"', 1)
    else:
        raw = b'{"vault": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    manifest.write_bytes(raw)
    key = backup.root.parent / "local.key"
    config = tmp_path / "dr.yaml"
    config.write_text(
        json.dumps(
            {
                "cluster": CLUSTER,
                "storage": {"type": "file", "path": str(store), "prefix": PREFIX},
                "encryption": {
                    "recipients": [{"type": "keyfile", "name": "local", "path": str(key)}],
                    "writer": {"public_key": writer_public(backup)},
                },
            }
        )
    )
    proc = run_dr("verify", "--backup", backup.backup_id, config=config, timeout=60)
    line = one_line_error(proc)
    assert proc.returncode == ExitCode.INTEGRITY, line
    assert len(line) < 400, line
