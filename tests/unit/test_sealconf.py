"""Seal records, `drill.seal` parsing, the preflight's quorum logic, and the relay's pipe
(real sockets on loopback, plain and TLS)."""

from __future__ import annotations

import base64
import os
import socket
import ssl
import threading
from pathlib import Path
from typing import Any

import pytest

from dr.config import parse_config
from dr.errors import ConfigError, SealError, UsageError
from dr.ops.seal_preflight import check_quorum, key_count, preflight
from dr.runtime.sealrelay import SealRelay
from dr.vault import shamir
from dr.vault.auth import Credential
from dr.vault.connection import TLSSettings
from dr.vault.seal import UnsealKeys
from dr.vault.sealconf import SealRecord, SealSettings, server_stanza
from tests.stack.certs import self_signed

TRANSIT = {
    "type": "transit",
    "address": "https://seal.example.com:8200/",
    "key_name": "autounseal",
    "token_env": "SEAL_TOKEN",
}


def config(drill: dict[str, Any]) -> Any:
    data = {
        "cluster": "prod",
        "vault": {"addr": "http://127.0.0.1:8200"},
        "storage": {"type": "file", "path": "/var/lib/dr"},
        "drill": drill,
    }
    return parse_config(data, "dr.yaml", Path("/etc/dr"), {})


# --- drill.seal ------------------------------------------------------------------------
def test_transit_seal_parses_with_defaults() -> None:
    seal = config({"seal": TRANSIT}).drill.seal
    assert seal.type == "transit" and seal.address == "https://seal.example.com:8200"
    assert seal.mount_path == "transit/" and seal.token.env == "SEAL_TOKEN"
    assert seal.identity() == {
        "address": "https://seal.example.com:8200",
        "mount_path": "transit/",
        "key_name": "autounseal",
    }
    assert seal.host_port() == ("seal.example.com", 8200, True)
    assert config({"seal": {**TRANSIT, "mount_path": "/seals"}}).drill.seal.mount_path == "seals/"


def test_transit_token_never_in_the_config() -> None:
    with pytest.raises(ConfigError, match="secrets do not belong in the config file"):
        config({"seal": {**TRANSIT, "token": "s.abc"}})


@pytest.mark.parametrize(
    ("seal", "where"),
    [
        ({"type": "shamir"}, "drill.seal.type"),
        ({"type": "transit", "key_name": "k"}, "drill.seal.address"),
        ({"type": "transit", "address": "seal:8200", "key_name": "k"}, "drill.seal.address"),
        ({"type": "awskms"}, "drill.seal.kms_key_id"),
        ({**TRANSIT, "key_nmae": "x"}, "drill.seal"),
    ],
)
def test_bad_seal_settings_name_the_key(seal: dict[str, Any], where: str) -> None:
    with pytest.raises(ConfigError) as info:
        config({"seal": seal})
    assert where in str(info.value)


def test_awskms_seal_needs_a_region() -> None:
    with pytest.raises(ConfigError, match="region"):
        config({"seal": {"type": "awskms", "kms_key_id": "alias/k"}})
    seal = config({"seal": {"type": "awskms", "kms_key_id": "alias/k", "region": "eu-west-1"}})
    assert seal.drill.seal.host_port() == ("kms.eu-west-1.amazonaws.com", 443, True)


@pytest.mark.parametrize("nodes", [0, 2, 4, "three"])
def test_nodes_is_one_or_three(nodes: Any) -> None:
    with pytest.raises(ConfigError, match=r"drill.nodes"):
        config({"nodes": nodes})
    assert config({"nodes": 3}).drill.nodes == 3
    assert config({}).drill.nodes == 1


# --- the record --------------------------------------------------------------------------
def settings() -> SealSettings:
    return SealSettings(type="transit", address="https://s:8200", key_name="k")


def test_record_takes_the_key_from_a_matching_drill_seal_only() -> None:
    status = {"type": "transit", "t": 3, "n": 5, "recovery_seal": True}
    record = SealRecord.of_status(status, settings())
    assert record.key == {"address": "https://s:8200", "mount_path": "transit/", "key_name": "k"}
    assert record.describe() == "transit 3/5 (transit/k at https://s:8200)"
    other = SealRecord.of_status({"type": "awskms", "t": 3, "n": 5}, settings())
    assert other.key == {} and other.key_source == ""
    assert SealRecord.from_json(record.to_json()) == record
    # Backups from before the record: Shamir, threshold unknown.
    assert SealRecord.from_json(None) == SealRecord()


def test_mismatch_names_both() -> None:
    record = SealRecord.of_status({"type": "transit", "t": 3, "n": 5}, settings())
    moved = SealSettings(type="transit", address="https://s:8200", key_name="other")
    with pytest.raises(UsageError, match=r"transit/k at https://s:8200.*transit/other"):
        moved.check_matches(record)
    with pytest.raises(UsageError, match=r"shamir seal but drill.seal is a transit seal"):
        settings().check_matches(SealRecord())


def test_stanza_quotes_values() -> None:
    stanza = server_stanza(settings(), address="unix:///x/seal.sock", secrets={"token": 'a"b'})
    assert 'token      = "a\\"b"' in stanza and 'address    = "unix:///x/seal.sock"' in stanza


# --- quorum --------------------------------------------------------------------------
def shares(n: int, t: int) -> list[str]:
    return [base64.b64encode(s).decode() for s in shamir.split(os.urandom(32), n, t)]


def test_quorum_counts_distinct_shares() -> None:
    record = SealRecord(type="shamir", threshold=3, shares=5)
    keys = shares(5, 3)
    assert key_count(UnsealKeys(tuple(keys), "f")) == (5, False)
    assert "5 distinct" in check_quorum(UnsealKeys(tuple(keys), "f"), record, "unseal", "x")
    twice = UnsealKeys((keys[0], keys[0], keys[1]), "f")
    with pytest.raises(SealError, match=r"2 distinct unseal key share.*threshold is 3 of 5"):
        check_quorum(twice, record, "unseal", "a drill")
    whole = UnsealKeys((base64.b64encode(os.urandom(32)).decode(),), "f")
    assert "whole key" in check_quorum(whole, record, "unseal", "x")


def test_auto_unseal_preflight_needs_drill_seal() -> None:
    record = SealRecord(type="transit", threshold=3, shares=5)
    with pytest.raises(SealError, match=r"configure drill.seal"):
        preflight(
            record,
            None,
            unseal_keys=None,
            recovery_keys=None,
            needed_for="a drill",
            need_recovery=True,
        )


def test_transit_preflight_unreachable_is_a_seal_error() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    seal = SealSettings(
        type="transit",
        address=f"http://127.0.0.1:{port}",
        key_name="k",
        token=Credential(value="t", where="drill.seal.token"),
    )
    with pytest.raises(SealError, match="unreachable"):
        preflight(
            SealRecord(type="transit"),
            seal,
            unseal_keys=None,
            recovery_keys=None,
            needed_for="x",
            need_recovery=False,
        )


# --- the relay -----------------------------------------------------------------------
def echo_server(context: ssl.SSLContext | None = None) -> tuple[int, threading.Thread]:
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def serve() -> None:
        conn, _ = listener.accept()
        if context is not None:
            try:
                conn = context.wrap_socket(conn, server_side=True)
            except ssl.SSLError:  # the relay refused our certificate: as it should
                conn.close()
                listener.close()
                return
        with conn:
            data = b""
            while not data.endswith(b"END"):
                chunk = conn.recv(65536)
                if not chunk:
                    break
                data += chunk
            conn.sendall(data[::-1])
        listener.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return port, thread


def through(relay_socket: Path, payload: bytes) -> bytes:
    with socket.socket(socket.AF_UNIX) as client:
        client.connect(str(relay_socket))
        client.sendall(payload)
        client.shutdown(socket.SHUT_WR)
        out = b""
        try:
            while chunk := client.recv(65536):
                out += chunk
        except ConnectionResetError:  # the relay refused: nothing came through
            return b""
    return out


def test_relay_pipes_both_ways_to_its_one_destination(tmp_path: Path) -> None:
    port, thread = echo_server()
    seal = SealSettings(type="transit", address=f"http://127.0.0.1:{port}", key_name="k")
    relay = SealRelay(seal, tmp_path / "seal.sock").start()
    try:
        payload = os.urandom(300_000) + b"END"
        assert through(tmp_path / "seal.sock", payload) == payload[::-1]
        assert relay.connections == 1 and relay.failures == 0
        assert (tmp_path / "seal.sock").stat().st_mode & 0o077 == 0
    finally:
        relay.stop()
    thread.join(5)
    assert not (tmp_path / "seal.sock").exists()


def test_relay_verifies_the_seal_certificate(tmp_path: Path) -> None:
    cert, key = self_signed("seal")
    (tmp_path / "ca.pem").write_bytes(cert)
    (tmp_path / "key.pem").write_bytes(key)
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(tmp_path / "ca.pem", tmp_path / "key.pem")
    port, thread = echo_server(server_ctx)
    good = SealSettings(
        type="transit",
        address=f"https://127.0.0.1:{port}",
        key_name="k",
        tls=TLSSettings(ca_cert=tmp_path / "ca.pem"),
    )
    relay = SealRelay(good, tmp_path / "seal.sock").start()
    try:
        assert through(tmp_path / "seal.sock", b"hello END") == b"DNE olleh"
    finally:
        relay.stop()
    thread.join(5)
    # Without the CA the relay refuses the connection: nothing reaches the throwaway.
    port, _ = echo_server(server_ctx)
    untrusted = SealSettings(type="transit", address=f"https://127.0.0.1:{port}", key_name="k")
    relay = SealRelay(untrusted, tmp_path / "seal2.sock").start()
    try:
        assert through(tmp_path / "seal2.sock", b"x END") == b""
        assert relay.failures == 1
    finally:
        relay.stop()
