"""manifest.json and its stanzas as hostile input (issue 8, item 5).

The manifest is read before it can be authenticated (its MAC needs the data key the
stanzas wrap), so every field is checked by type and range first. Each test here is one
shape a corrupted or forged manifest can take; every one must end in IntegrityError
(exit 6) with one line that names the field, never in a TypeError, ValueError or the
like (exit 1, "internal error"), and never showing a long or secret value.
"""

from __future__ import annotations

import base64
import copy
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from dr.crypto.keyfile import KeyfileRecipient, generate_keyfile
from dr.crypto.recipients import Stanza, WrapContext, new_data_key
from dr.errors import ExitCode, IntegrityError
from dr.manifest import Manifest, ObjectRecord
from dr.ops.find import unlock

BACKUP_ID = "20261126T060000Z-3f9a1c"
SECRETISH = "S3CRET" * 50  # a long value that must never appear in a message


@pytest.fixture(scope="module")
def keyfile(tmp_path_factory: pytest.TempPathFactory) -> KeyfileRecipient:
    path = tmp_path_factory.mktemp("kf") / "a.key"
    generate_keyfile(path)
    return KeyfileRecipient("a", path)


@pytest.fixture(scope="module")
def sealed(keyfile: KeyfileRecipient) -> dict[str, Any]:
    """A genuine sealed manifest, as JSON, with a keyfile stanza."""
    data_key, stanzas = new_data_key([keyfile], WrapContext("prod", BACKUP_ID))
    record = ObjectRecord(
        f"p/prod/{BACKUP_ID}/snapshot.enc", None, f"prod/{BACKUP_ID}/snapshot", 10, "a" * 64,
        106, "b" * 64,
    )  # fmt: skip
    catalog = ObjectRecord(
        f"p/prod/{BACKUP_ID}/catalog.enc", "v1", f"prod/{BACKUP_ID}/catalog", 10, "c" * 64,
        106, "d" * 64,
    )  # fmt: skip
    manifest = Manifest(
        cluster="prod",
        backup_id=BACKUP_ID,
        created_at="2026-11-26T06:00:00Z",
        completed_at="2026-11-26T06:00:09Z",
        tool_version="0.1.0",
        vault={"addr": "https://vault:8200", "product": "openbao", "cluster_id": "c-1"},
        snapshot=record,
        snapshot_info={
            "raft_index": 7,
            "raft_term": 2,
            "raft_version": 1,
            "state_sha256": "e" * 64,
            "state_size": 4096,
            "window_start": 1795000000.5,
            "window_end": 1795000009.25,
            "clock_uncertainty": 0.01,
        },
        catalog=catalog,
        catalog_counts={"secrets": 3, "mounts": 2},
        encryption={"format": "vault-dr-envelope-v1", "frame_size": 1 << 20},
        recipients=stanzas,
    )
    manifest.seal(data_key)
    doc = manifest.to_json()
    return {"doc": doc, "data_key": data_key}


def dump(doc: Any) -> bytes:
    return json.dumps(doc).encode()


def refused(raw: bytes, *, field: str | None = None) -> str:
    """Manifest.loads must raise IntegrityError with one short line; return it."""
    with pytest.raises(IntegrityError) as info:
        Manifest.loads(raw, "p/prod/x/manifest.json")
    message = str(info.value)
    assert info.value.exit_code == ExitCode.INTEGRITY
    assert "\n" not in message and len(message) < 300, message
    assert SECRETISH[:12] not in message
    assert message.startswith("p/prod/x/manifest.json: ")
    if field is not None:
        assert f"field '{field}" in message, message
    return message


def edited(sealed: dict[str, Any], edit: Callable[[dict[str, Any]], None]) -> bytes:
    doc = copy.deepcopy(sealed["doc"])
    edit(doc)
    return dump(doc)


def test_the_genuine_manifest_loads_and_authenticates(
    sealed: dict[str, Any], keyfile: KeyfileRecipient
) -> None:
    manifest = Manifest.loads(dump(sealed["doc"]), "m")
    data_key, _ = unlock(manifest, [keyfile])
    assert data_key == sealed["data_key"]
    assert manifest.to_json() == sealed["doc"]


# -- the shapes the review found ending in "internal error" ---------------------------------


def test_non_ascii_mac(sealed: dict[str, Any]) -> None:
    # hmac.compare_digest refuses non-ASCII str: a TypeError at check_mac before the fix.
    raw = edited(sealed, lambda d: d.update(mac="é" * 64))
    refused(raw, field="mac")


@pytest.mark.parametrize("mac", ["", "A" * 64, "0" * 63, "0" * 65, "g" * 64, 7, None, ["0" * 64]])
def test_mac_is_64_lowercase_hex(sealed: dict[str, Any], mac: object) -> None:
    refused(edited(sealed, lambda d: d.update(mac=mac)), field="mac")


@pytest.mark.parametrize(
    "where",
    [
        ("snapshot", "plaintext_size"),
        ("snapshot", "ciphertext_size"),
        ("catalog", "plaintext_size"),
        ("snapshot_info", "raft_index"),
        ("catalog_counts", "secrets"),
        ("encryption", "frame_size"),
    ],
)
@pytest.mark.parametrize("value", [10**30, 2**48 + 1, -1, True, False, 1.5, "10", None])
def test_sizes_are_bounded_non_negative_integers(
    sealed: dict[str, Any], where: tuple[str, str], value: object
) -> None:
    obj, key = where
    refused(edited(sealed, lambda d: d[obj].update({key: value})), field=f"{obj}.{key}")


def test_a_number_too_long_to_parse(sealed: dict[str, Any]) -> None:
    # Python refuses int literals above 4300 digits with ValueError; so must we, cleanly.
    raw = dump(sealed["doc"]).replace(b'"raft_index": 7', b'"raft_index": ' + b"9" * 5000)
    refused(raw)


def test_format_checks(sealed: dict[str, Any]) -> None:
    refused(edited(sealed, lambda d: d.update(format=True)), field="format")
    refused(edited(sealed, lambda d: d.update(format="1")), field="format")
    refused(edited(sealed, lambda d: d.update(format=0)), field="format")
    refused(edited(sealed, lambda d: d.pop("format")), field="format")
    assert "upgrade vault-dr" in refused(edited(sealed, lambda d: d.update(format=2)))
    refused(edited(sealed, lambda d: d.update(format=10**40)), field="format")


def test_empty_nonce_in_a_stanza_body(sealed: dict[str, Any], keyfile: KeyfileRecipient) -> None:
    # AES-GCM refuses a nonce under 8 bytes with ValueError: it must be exit 6.
    for nonce in (
        "",
        base64.b64encode(b"1234").decode(),
        base64.b64encode(os.urandom(200)).decode(),
    ):
        raw = edited(sealed, lambda d, n=nonce: d["recipients"][0].update(nonce=n))  # type: ignore[misc]
        manifest = Manifest.loads(raw, "m")
        with pytest.raises(IntegrityError):
            unlock(manifest, [keyfile])


@pytest.mark.parametrize(
    "body",
    [
        {"nonce": "!!!not base64!!!"},
        {"wrapped": ""},
        {"wrapped": "QUFB"},
        {"nonce": "QUFBQUFBQUFBQUFB", "wrapped": "QUFB" * 12},
    ],
)
def test_bad_keyfile_stanza_bodies_fail_authentication(
    sealed: dict[str, Any], keyfile: KeyfileRecipient, body: dict[str, str]
) -> None:
    raw = edited(sealed, lambda d: d["recipients"][0].update(body))
    with pytest.raises(IntegrityError):
        unlock(Manifest.loads(raw, "m"), [keyfile])


# -- wrong JSON types at every level ---------------------------------------------------------

WRONG_TYPES: list[object] = [None, True, 0, -1, 1.5, "x", [], {}, [1, 2], {"a": 1}]
TOP_FIELDS = [
    "cluster",
    "backup_id",
    "created_at",
    "completed_at",
    "tool_version",
    "vault",
    "snapshot",
    "snapshot_info",
    "catalog",
    "catalog_counts",
    "encryption",
    "recipients",
    "mac",
    "format",
]


@pytest.mark.parametrize("name", TOP_FIELDS)
@pytest.mark.parametrize("value", WRONG_TYPES, ids=repr)
def test_wrong_type_at_the_top(sealed: dict[str, Any], name: str, value: object) -> None:
    raw = edited(sealed, lambda d: d.update({name: value}))
    if value == "x" and name in ("cluster", "tool_version"):
        Manifest.loads(raw, "m")  # a valid value of these
        return
    if name in ("vault", "snapshot_info", "encryption", "catalog_counts") and value in (
        {},
        {"a": 1},
    ):
        Manifest.loads(raw, "m")  # a well-formed free-form object: fine (the MAC decides)
        return
    refused(raw, field=name)


RECORD_FIELDS = [
    "key",
    "version_id",
    "context",
    "plaintext_size",
    "plaintext_sha256",
    "ciphertext_size",
    "ciphertext_sha256",
]


@pytest.mark.parametrize("obj", ["snapshot", "catalog"])
@pytest.mark.parametrize("name", RECORD_FIELDS)
@pytest.mark.parametrize("value", [True, 1.5, [], {}, "", "\x00", "\ud800", SECRETISH * 10])
def test_wrong_type_in_an_object_record(
    sealed: dict[str, Any], obj: str, name: str, value: object
) -> None:
    refused(edited(sealed, lambda d: d[obj].update({name: value})), field=f"{obj}.{name}")


@pytest.mark.parametrize("obj", ["snapshot", "catalog"])
@pytest.mark.parametrize("name", RECORD_FIELDS)
def test_missing_field_in_an_object_record(sealed: dict[str, Any], obj: str, name: str) -> None:
    refused(edited(sealed, lambda d: d[obj].pop(name)), field=f"{obj}.{name}")


def test_unknown_field_in_an_object_record(sealed: dict[str, Any]) -> None:
    refused(edited(sealed, lambda d: d["snapshot"].update(extra=1)), field="snapshot.extra")


@pytest.mark.parametrize("name", TOP_FIELDS)
def test_missing_top_field(sealed: dict[str, Any], name: str) -> None:
    refused(edited(sealed, lambda d: d.pop(name)), field=name)


def test_unknown_top_field(sealed: dict[str, Any]) -> None:
    refused(edited(sealed, lambda d: d.update(surprise=1)), field="surprise")


@pytest.mark.parametrize("value", [[], [1], {"a": []}, {"a": {}}, "\x07", SECRETISH * 20])
@pytest.mark.parametrize("obj", ["vault", "snapshot_info", "encryption"])
def test_free_form_objects_hold_bounded_scalars(
    sealed: dict[str, Any], obj: str, value: object
) -> None:
    refused(edited(sealed, lambda d: d[obj].update(odd=value)), field=f"{obj}.odd")


@pytest.mark.parametrize(
    ("obj", "key", "value"),
    [
        ("snapshot_info", "state_sha256", "E" * 64),
        ("snapshot_info", "window_start", "yesterday"),
        ("snapshot_info", "window_end", -5),
        ("snapshot_info", "clock_uncertainty", True),
        ("encryption", "format", 1),
        ("encryption", "frame_size", 0),
        ("catalog_counts", "secrets", "3"),
    ],
)
def test_known_keys_of_free_form_objects(
    sealed: dict[str, Any], obj: str, key: str, value: object
) -> None:
    refused(edited(sealed, lambda d: d[obj].update({key: value})), field=f"{obj}.{key}")


def test_free_form_object_with_too_many_keys(sealed: dict[str, Any]) -> None:
    many = {f"k{i}": i for i in range(10_000)}
    refused(edited(sealed, lambda d: d.update(vault=many)), field="vault")


def test_object_key_that_is_not_a_field_name(sealed: dict[str, Any]) -> None:
    refused(edited(sealed, lambda d: d["vault"].update({"\u202e" * 3: "x"})), field="vault")
    refused(edited(sealed, lambda d: d["vault"].update({"": "x"})), field="vault")


# -- identity fields ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        "20261126T060000Z-3f9a1c\n",
        "20261126T060000Z-3F9A1C",
        "20261326T060000Z-3f9a1c",  # month 13
        # Arabic-Indic digits: \d matches them
        "\u0662\u0660\u0662\u0666\u0661\u0661\u0662\u0666T060000Z-3f9a1c",
        "../../../etc",
        "",
    ],
)
def test_backup_id(sealed: dict[str, Any], value: str) -> None:
    refused(edited(sealed, lambda d: d.update(backup_id=value)), field="backup_id")


@pytest.mark.parametrize("value", ["", "-prod", "p" * 64, "prod/x", "prod\ud800", "pröd", "a b"])
def test_cluster(sealed: dict[str, Any], value: str) -> None:
    refused(edited(sealed, lambda d: d.update(cluster=value)), field="cluster")


@pytest.mark.parametrize(
    "value",
    [
        "2026-11-26T06:00:00",
        "2026-11-26T06:00:00+00:00",
        "2026-13-26T06:00:00Z",
        "2026-11-26T25:00:00Z",
        "2026-11-26 06:00:00Z",
        "yesterday",
        "",
    ],
)
@pytest.mark.parametrize("name", ["created_at", "completed_at"])
def test_times(sealed: dict[str, Any], name: str, value: str) -> None:
    refused(edited(sealed, lambda d: d.update({name: value})), field=name)


def test_fractional_seconds_are_accepted(sealed: dict[str, Any]) -> None:
    Manifest.loads(edited(sealed, lambda d: d.update(created_at="2026-11-26T06:00:00.5Z")), "m")


# -- stanzas --------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["type", "name", "key_id"])
@pytest.mark.parametrize("value", [None, 1, True, [], {}, "", "\x00", SECRETISH * 30])
def test_stanza_identity_fields(sealed: dict[str, Any], name: str, value: object) -> None:
    raw = edited(sealed, lambda d: d["recipients"][0].update({name: value}))
    refused(raw, field=f"recipients[0].{name}")


@pytest.mark.parametrize("name", ["type", "name", "key_id"])
def test_stanza_missing_field(sealed: dict[str, Any], name: str) -> None:
    raw = edited(sealed, lambda d: d["recipients"][0].pop(name))
    refused(raw, field=f"recipients[0].{name}")


@pytest.mark.parametrize("value", [None, 12, 1.5, True, [], {"x": "y"}, SECRETISH * 30, "\x1b[2J"])
def test_stanza_body_values_are_bounded_strings(sealed: dict[str, Any], value: object) -> None:
    # Before: str(v) turned a list or a number into a "valid" string silently.
    raw = edited(sealed, lambda d: d["recipients"][0].update(nonce=value))
    message = refused(raw, field="recipients[0].nonce")
    assert "S3CRET" not in message


@pytest.mark.parametrize("value", [None, 1, "x", {}, [[]], [None]])
def test_recipients_list_shape(sealed: dict[str, Any], value: object) -> None:
    refused(edited(sealed, lambda d: d.update(recipients=value)))


def test_stanza_entry_that_is_not_an_object(sealed: dict[str, Any]) -> None:
    refused(edited(sealed, lambda d: d["recipients"].append("x")), field="recipients[1]")


def test_huge_recipients_list(sealed: dict[str, Any]) -> None:
    refused(
        edited(sealed, lambda d: d.update(recipients=d["recipients"] * 65)),
        field="recipients",
    )
    assert "larger" in refused(
        edited(sealed, lambda d: d.update(recipients=d["recipients"] * 10_000))
    )


def test_stanza_with_too_many_entries(sealed: dict[str, Any]) -> None:
    extra = {f"f{i}": "x" for i in range(100)}
    refused(edited(sealed, lambda d: d["recipients"][0].update(extra)), field="recipients[0]")


def test_stanza_from_json_directly() -> None:
    good = {"type": "keyfile", "name": "a", "key_id": "kf-1", "nonce": "QQ=="}
    assert Stanza.from_json(good) == Stanza("keyfile", "a", "kf-1", {"nonce": "QQ=="})
    for bad in (None, [], "x", {**good, "nonce": 1}, {**good, "type": "Key File"}):
        with pytest.raises(IntegrityError, match="recipient"):
            Stanza.from_json(bad)


# -- the writer signature (optional) --------------------------------------------------------

WRITER = {
    "alg": "ed25519",
    "key_id": "0123456789abcdef",
    "sig": base64.b64encode(bytes(64)).decode(),
}


def test_writer_passes_through(sealed: dict[str, Any]) -> None:
    m = Manifest.loads(edited(sealed, lambda d: d.update(writer=WRITER)), "m")
    assert m.writer == WRITER
    assert Manifest.loads(edited(sealed, lambda d: d.update(writer=None)), "m").writer is None


@pytest.mark.parametrize(
    "writer",
    [
        "x",
        [],
        {},
        {**WRITER, "alg": "rsa"},
        {**WRITER, "alg": 1},
        {**WRITER, "key_id": "0123456789ABCDEF"},
        {**WRITER, "key_id": "0123"},
        {**WRITER, "sig": base64.b64encode(bytes(63)).decode()},
        {**WRITER, "sig": "!" * 88},
        {**WRITER, "sig": 5},
        {**WRITER, "extra": "x"},
        {"alg": "ed25519", "key_id": "0123456789abcdef"},
    ],
)
def test_writer_shape(sealed: dict[str, Any], writer: object) -> None:
    refused(edited(sealed, lambda d: d.update(writer=writer)), field="writer")


# -- JSON-level tricks ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"null",
        b"[]",
        b'"manifest"',
        b"7",
        b"{",
        b"\xff\xfe{}",
        b'{"a": "\xc3\x28"}',  # invalid UTF-8
        b'{"cluster": "\xed\xa0\x80"}',  # an encoded surrogate: not UTF-8
        b"\x00" * 100,
    ],
)
def test_not_a_json_object(raw: bytes) -> None:
    refused(raw)


@pytest.mark.parametrize("constant", [b"NaN", b"Infinity", b"-Infinity", b"1e400", b"-1e999"])
def test_nan_and_infinity(sealed: dict[str, Any], constant: bytes) -> None:
    # json.loads accepts NaN and Infinity (and 1e400 becomes inf); a manifest must not.
    raw = dump(sealed["doc"]).replace(
        b'"window_start": 1795000000.5', b'"window_start": ' + constant
    )
    assert constant in raw
    refused(raw)


def test_duplicate_keys(sealed: dict[str, Any]) -> None:
    # The last duplicate would win silently: a reader and a MAC checker could disagree.
    raw = dump(sealed["doc"])
    raw = raw[:-1] + b', "mac": "' + b"0" * 64 + b'"}'
    assert "duplicate" in refused(raw)


def test_deep_nesting(sealed: dict[str, Any]) -> None:
    deep = b"[" * 100_000 + b"]" * 100_000
    refused(dump(sealed["doc"])[:-1] + b', "vault": ' + deep + b"}")
    refused(b'{"vault": ' + b'{"a": ' * 50_000 + b"1" + b"}" * 50_001)


def test_huge_document(sealed: dict[str, Any]) -> None:
    raw = dump({**sealed["doc"], "tool_version": "x" * (2 << 20)})
    assert "larger" in refused(raw)


def test_huge_string_is_not_echoed(sealed: dict[str, Any]) -> None:
    message = refused(edited(sealed, lambda d: d.update(tool_version=SECRETISH)))
    assert "tool_version" in message


def test_a_manifest_file_on_disk_is_read_the_same(tmp_path: Path, sealed: dict[str, Any]) -> None:
    # Manifest.dumps output (indent, sorted keys, trailing newline) loads back.
    manifest = Manifest.loads(dump(sealed["doc"]), "m")
    (tmp_path / "m.json").write_bytes(manifest.dumps())
    assert Manifest.loads((tmp_path / "m.json").read_bytes(), "m").to_json() == sealed["doc"]


# --- vault_seal (issue 9): the source's seal, covered by the MAC ------------------------
SEAL = {
    "type": "transit",
    "threshold": 3,
    "shares": 5,
    "recovery_seal": True,
    "key": {"address": "https://s:8200", "mount_path": "transit/", "key_name": "k"},
    "key_source": "drill.seal",
}


@pytest.mark.parametrize(
    "bad",
    [
        {"type": 7},
        {"type": "Transit!"},
        {"type": "transit", "key": {"a": {"nested": 1}}},
        {"type": "transit", "key": ["x"]},
        {"type": "transit", "threshold": 1000},
        {"type": "transit", "threshold": True},
        {"type": "transit", "surprise": 1},
        {"threshold": 3},
        "transit",
        [SEAL],
    ],
)
def test_hostile_seal_record_is_an_integrity_error(sealed: dict[str, Any], bad: Any) -> None:
    doc = copy.deepcopy(sealed["doc"])
    doc["vault_seal"] = bad
    with pytest.raises(IntegrityError, match="vault_seal"):
        Manifest.loads(dump(doc), "m")


def test_seal_record_is_covered_by_the_mac(sealed: dict[str, Any]) -> None:
    data_key = sealed["data_key"]
    base = Manifest.loads(dump(sealed["doc"]), "m")
    base.vault_seal = dict(SEAL)
    base.seal(data_key)
    loaded = Manifest.loads(base.dumps(), "m")
    loaded.check_mac(data_key)
    assert loaded.seal_record.describe() == "transit 3/5 (transit/k at https://s:8200)"
    # An attacker who rewrites the seal (to point a restore at their own transit key)
    # breaks the MAC.
    doc = json.loads(base.dumps())
    doc["vault_seal"]["key"]["address"] = "https://evil:8200"
    with pytest.raises(IntegrityError):
        Manifest.loads(dump(doc), "m").check_mac(data_key)
    # A manifest from before the record (no vault_seal) still authenticates.
    Manifest.loads(dump(sealed["doc"]), "m").check_mac(data_key)
