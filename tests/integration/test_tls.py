"""`dr backup` against an OpenBao that only speaks TLS, trusting it through vault.ca_cert.

Production Vaults speak TLS: both read paths must honour `vault.ca_cert` (hvac for the
snapshot, the pipelined reader for the catalog metadata) and refuse an unknown CA.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dr.errors import ExitCode
from dr.vault.connection import TLSSettings
from dr.vault.endpoint import Endpoint
from dr.vault.localserver import LocalBao
from tests.integration.drutil import (
    dr_json,
    keyfile_recipient,
    one_line_error,
    run_dr,
    write_config,
)
from tests.stack import certs
from tests.stack.openbao import hvac_client


def self_signed(tmp: Path) -> tuple[Path, Path]:
    cert_pem, key_pem = certs.self_signed("vault-dr test")
    cert_path, key_path = tmp / "tls.crt", tmp / "tls.key"
    cert_path.write_bytes(cert_pem)
    key_path.write_bytes(key_pem)
    key_path.chmod(0o600)
    return cert_path, key_path


class TlsBao(LocalBao):
    def __init__(self, workdir: Path, cert: Path, key: Path, **kwargs: Any) -> None:
        super().__init__(workdir, tls=TLSSettings(ca_cert=cert), **kwargs)
        self.cert, self.key = cert, key

    @property
    def base_url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    @property
    def endpoint(self) -> Endpoint:
        return Endpoint(addr=self.base_url)

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
        client = hvac_client(server, init.root_token, verify=str(cert))
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
