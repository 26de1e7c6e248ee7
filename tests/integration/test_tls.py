"""`dr backup` against an OpenBao that only speaks TLS, trusting it through vault.ca_cert.

Production Vaults speak TLS: both read paths must honour `vault.ca_cert` (hvac for the
snapshot, the pipelined reader for the catalog metadata) and refuse an unknown CA.
"""

from __future__ import annotations

import datetime
import ipaddress
from pathlib import Path
from typing import Any

import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from dr.errors import ExitCode
from dr.vault.localserver import LocalBao
from tests.integration.drutil import (
    dr_json,
    keyfile_recipient,
    one_line_error,
    run_dr,
    write_config,
)


def self_signed(tmp: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "vault-dr test")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp / "tls.crt", tmp / "tls.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    key_path.chmod(0o600)
    return cert_path, key_path


class TlsBao(LocalBao):
    def __init__(self, workdir: Path, cert: Path, key: Path, **kwargs: Any) -> None:
        def session() -> requests.Session:
            s = requests.Session()
            s.trust_env = False
            s.verify = str(cert)
            return s

        super().__init__(workdir, session_factory=session, **kwargs)
        self.cert, self.key = cert, key

    @property
    def base_url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def config_text(self) -> str:
        return (
            super()
            .config_text()
            .replace(
                "tls_disable     = true",
                f'tls_cert_file = "{self.cert}"\n  tls_key_file  = "{self.key}"',
            )
            .replace(f'api_addr     = "{self.addr}"', f'api_addr     = "{self.base_url}"')
        )


def test_backup_over_tls_with_ca_cert(tmp_path: Path, bao_binary: Path) -> None:
    cert, key = self_signed(tmp_path)
    server = TlsBao(tmp_path / "bao", cert, key, binary=bao_binary)
    try:
        server.start()
        init = server.init()
        client = server.client(init.root_token)
        client.sys.enable_secrets_engine("kv", path="app", options={"version": "2"})
        for i in range(50):
            client.secrets.kv.v2.create_or_update_secret(
                path=f"s{i}", secret={"v": str(i)}, mount_point="app"
            )
        storage = {"type": "file", "path": str(tmp_path / "store")}
        config = write_config(
            tmp_path,
            addr=server.base_url,
            storage=storage,
            recipients=[keyfile_recipient(tmp_path)],
            extra={},
        )
        text = config.read_text().replace("vault:\n", f"vault:\n  ca_cert: {cert}\n", 1)
        config.write_text(text)
        result = dr_json("backup", config=config, token=init.root_token)
        assert result["catalog_secrets"] == 50

        # Without the CA the server is not trusted: one line, exit 3, nothing stored.
        untrusted = tmp_path / "untrusted.yaml"
        untrusted.write_text(text.replace(f"  ca_cert: {cert}\n", ""))
        proc = run_dr("backup", config=untrusted, token=init.root_token)
        line = one_line_error(proc)
        assert proc.returncode == ExitCode.VAULT and "TLS" in line
        assert len(dr_json("list", config=config)["backups"]) == 1
    finally:
        server.stop()
