"""`vault.auth` in dr.yaml against the real OpenBao: AppRole, wrapped secret_id, JWT, token.

Contract under test (docs of the `vault.auth` issue):
  * `dr` logs in itself (no VAULT_TOKEN in the environment), uses the token for the
    whole run, renews it while the run goes on (a debug line with "renewed" and the
    method) and revokes it at the end;
  * a failed login is exactly one `error:` line naming the method and auth/MOUNT,
    exit 3, no traceback, nothing stored;
  * a drill never needs a source token, also with `vault.auth` configured.

One OpenBao for the module (a file audit device with plain accessors, SECRETS kv
secrets, the docs/vault-policy.md backup policy); every test configures its own role.
The audit log proves which login `dr` did and lets a test find that token's accessor
and check it was revoked (auth/token/lookup-accessor answers 400 "invalid accessor").
The server side of each setup is checked in tests/stack/vault_auth.py's docstring.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import yaml

from dr.errors import ExitCode
from dr.vault.localserver import LocalBao
from tests.integration.drutil import (
    dr_json,
    keyfile_recipient,
    one_line_error,
    run_dr,
    write_config,
)
from tests.stack import vault_auth as va
from tests.stack.openbao import populate

SECRETS = 300
CATALOGED = SECRETS + 2  # populate() adds the two multi-version kv-v2 paths


@dataclass
class AuthBao:
    server: LocalBao
    init: Any  # dr.vault.localserver.InitResult
    adm: va.Admin
    audit: Path
    unseal_keys: Path

    @property
    def addr(self) -> str:
        return self.server.addr

    def logins(self, mount: str) -> list[str]:
        return va.login_accessors(self.audit, mount)


@pytest.fixture(scope="module")
def auth_bao(tmp_path_factory: pytest.TempPathFactory, bao_binary: Path) -> Iterator[AuthBao]:
    tmp = tmp_path_factory.mktemp("auth-bao")
    audit = tmp / "audit.log"
    server = LocalBao(tmp / "bao", binary=bao_binary, extra_listener_config=va.audit_config(audit))
    try:
        server.start()
        init = server.init()
        # populate() needs only .url and .token (not LocalBao.client(), being reworked).
        populate(SimpleNamespace(url=server.addr, token=init.root_token), count=SECRETS)
        adm = va.admin(server)
        va.write_backup_policy(adm)
        keys = tmp / "unseal.json"
        va.write_private(keys, json.dumps(init.raw))
        yield AuthBao(server=server, init=init, adm=adm, audit=audit, unseal_keys=keys)
    finally:
        server.stop()


@pytest.fixture(autouse=True)
def _no_token_in_env() -> None:
    # conftest's _clean_env strips VAULT_*; every run here must log in by itself.
    assert "VAULT_TOKEN" not in os.environ


def auth_config(
    tmp_path: Path,
    addr: str,
    auth: dict[str, Any],
    *,
    extra: dict[str, Any] | None = None,
    name: str = "dr.yaml",
) -> Path:
    """A dr.yaml with a file store under tmp_path and `vault.auth: auth`."""
    (tmp_path / "store").mkdir(exist_ok=True)  # an operator's backup directory exists
    path = write_config(
        tmp_path,
        addr=addr,
        storage={"type": "file", "path": str(tmp_path / "store")},
        recipients=[keyfile_recipient(tmp_path)],
        extra=extra,
        name=name,
    )
    data = yaml.safe_load(path.read_text())
    data["vault"]["auth"] = auth
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def approle_files(tmp_path: Path, role: va.AppRole, secret_id: str | None = None) -> dict[str, str]:
    return {
        "role_id_file": str(va.write_private(tmp_path / "role_id", role.role_id)),
        "secret_id_file": str(
            va.write_private(tmp_path / "secret_id", secret_id or role.secret_id)
        ),
    }


def stored_files(tmp_path: Path) -> list[str]:
    """What backups left in the file store; the run lock's file (docs/locking.md) stays
    after every run, released, and is no part of a backup."""
    store = tmp_path / "store"
    files = (str(p.relative_to(store)) for p in store.rglob("*") if p.is_file())
    return sorted(f for f in files if not f.endswith("lock.json"))


def assert_backed_up(config: Path, proc: Any) -> dict[str, Any]:
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    result: dict[str, Any] = json.loads(proc.stdout)
    assert result["catalog_secrets"] == CATALOGED
    listed = dr_json("list", config=config)
    assert [b["backup_id"] for b in listed["backups"]] == [result["backup_id"]]
    return result


def assert_logins_revoked(auth_bao: AuthBao, mount: str, before: list[str]) -> list[str]:
    """The run logged in at auth/MOUNT (audit log) and every such token is gone now."""
    new = [a for a in auth_bao.logins(mount) if a not in before]
    assert new, f"no login at auth/{mount}/login in the audit log"
    alive = [a for a in new if va.accessor_alive(auth_bao.adm, a)]
    assert not alive, f"login token(s) not revoked at the end of the run: {alive}"
    assert not set(new) & va.token_accessors(auth_bao.adm)
    return new


# --- AppRole ---------------------------------------------------------------------------


def test_approle_backup_from_files_logs_in_and_revokes(tmp_path: Path, auth_bao: AuthBao) -> None:
    role = va.setup_approle(auth_bao.adm, role="files", token_ttl="1h")
    files = approle_files(tmp_path, role)
    config = auth_config(tmp_path, auth_bao.addr, {"method": "approle", **files})
    before = auth_bao.logins("approle")
    tokens_before = va.token_accessors(auth_bao.adm)

    proc = run_dr("backup", "--json", config=config)
    assert_backed_up(config, proc)
    new = assert_logins_revoked(auth_bao, "approle", before)
    assert len(new) == 1, f"one run, one login: {new}"
    # No token of the run is left behind (the 1h TTL would have kept it otherwise).
    assert va.token_accessors(auth_bao.adm) <= tokens_before
    assert role.secret_id not in proc.stderr + proc.stdout


def test_approle_from_env_at_a_custom_mount(tmp_path: Path, auth_bao: AuthBao) -> None:
    role = va.setup_approle(auth_bao.adm, mount="ci-approle", role="env", token_ttl="1h")
    config = auth_config(
        tmp_path,
        auth_bao.addr,
        {
            "method": "approle",
            "mount": "ci-approle",
            "role_id_env": "DR_TEST_ROLE_ID",
            "secret_id_env": "DR_TEST_SECRET_ID",
        },
    )
    before = auth_bao.logins("ci-approle")
    env = {"DR_TEST_ROLE_ID": role.role_id, "DR_TEST_SECRET_ID": role.secret_id}
    proc = run_dr("backup", "--json", config=config, env=env)
    assert_backed_up(config, proc)
    assert_logins_revoked(auth_bao, "ci-approle", before)


def test_short_lived_approle_token_is_renewed_during_a_long_run(
    tmp_path: Path, auth_bao: AuthBao
) -> None:
    from tests.integration.faultproxy import fault_proxy

    ttl = 3
    role = va.setup_approle(auth_bao.adm, role="short", token_ttl=f"{ttl}s", token_max_ttl="120s")
    before = auth_bao.logins("approle")
    # Every request through the "slow" proxy costs a fresh upstream connection and the
    # snapshot dribbles out: measured 15-17 s for this 300-secret backup (1.3 s direct),
    # far past the 3 s TTL, well under token_max_ttl.
    with fault_proxy(auth_bao.addr, "slow") as addr:
        config = auth_config(tmp_path, addr, {"method": "approle", **approle_files(tmp_path, role)})
        start = time.monotonic()
        proc = run_dr("--debug", "backup", "--json", config=config)
        elapsed = time.monotonic() - start
    assert_backed_up(config, proc)
    assert elapsed > 2 * ttl, f"the run took {elapsed:.1f} s: too short to need a renewal"
    renewals = [ln for ln in proc.stderr.splitlines() if "renewed" in ln and "approle" in ln]
    assert renewals, proc.stderr[-3000:]
    assert_logins_revoked(auth_bao, "approle", before)
    # Debug logging must not leak the credentials.
    assert role.secret_id not in proc.stderr


@pytest.mark.parametrize("mount", ["approle", "ci-bad"])
def test_wrong_secret_id_is_one_line_exit_3_and_nothing_stored(
    tmp_path: Path, auth_bao: AuthBao, mount: str
) -> None:
    role = va.setup_approle(auth_bao.adm, mount=mount, role="wrong")
    bogus = "00000000-1111-2222-3333-444444444444"
    # Server side: this is "400 invalid role or secret ID" (tests/stack/vault_auth.py).
    with pytest.raises(va.VaultCallError, match="invalid role or secret ID"):
        va.approle_login(auth_bao.adm, mount, role.role_id, bogus)
    auth: dict[str, Any] = {"method": "approle", **approle_files(tmp_path, role, bogus)}
    if mount != "approle":
        auth["mount"] = mount
    config = auth_config(tmp_path, auth_bao.addr, auth)

    proc = run_dr("backup", config=config)
    line = one_line_error(proc)
    assert proc.returncode == ExitCode.VAULT, line
    assert "approle" in line and f"auth/{mount}" in line, line
    assert bogus not in line
    assert stored_files(tmp_path) == []
    assert dr_json("list", config=config)["backups"] == []


def test_wrapped_secret_id_is_unwrapped_once(tmp_path: Path, auth_bao: AuthBao) -> None:
    role = va.setup_approle(auth_bao.adm, role="wrapped", token_ttl="1h")
    wrapping_token = va.wrapped_secret_id(auth_bao.adm, role.mount, role.role)
    files = approle_files(tmp_path, role, wrapping_token)
    config = auth_config(
        tmp_path, auth_bao.addr, {"method": "approle", **files, "secret_id_wrapped": True}
    )
    before = auth_bao.logins("approle")
    proc = run_dr("backup", "--json", config=config)
    assert_backed_up(config, proc)
    assert_logins_revoked(auth_bao, "approle", before)
    assert "sys/wrapping/unwrap" in va.audited_paths(auth_bao.audit)

    # A wrapping token is single-use: the same file a second time is a failed login.
    proc = run_dr("backup", config=config)
    line = one_line_error(proc)
    assert proc.returncode == ExitCode.VAULT, line
    assert "approle" in line, line
    assert wrapping_token not in line
    assert len(dr_json("list", config=config)["backups"]) == 1


# --- JWT and token -----------------------------------------------------------------------


def test_jwt_backup_with_a_locally_signed_token(tmp_path: Path, auth_bao: AuthBao) -> None:
    issuer = va.JwtIssuer()
    role = va.setup_jwt(auth_bao.adm, issuer, role="ci-job", token_ttl="10m")
    jwt_file = va.write_private(tmp_path / "jwt", issuer.sign("ci-job-42"))
    config = auth_config(
        tmp_path, auth_bao.addr, {"method": "jwt", "role": role, "jwt_file": str(jwt_file)}
    )
    before = auth_bao.logins("jwt")
    proc = run_dr("backup", "--json", config=config)
    assert_backed_up(config, proc)
    assert_logins_revoked(auth_bao, "jwt", before)


def test_jwt_from_another_key_is_refused(tmp_path: Path, auth_bao: AuthBao) -> None:
    va.setup_jwt(auth_bao.adm, va.JwtIssuer(), role="ci-job2")
    intruder = va.JwtIssuer()  # same issuer and audience, another key
    config = auth_config(
        tmp_path,
        auth_bao.addr,
        {"method": "jwt", "role": "ci-job2", "jwt_env": "DR_TEST_JWT"},
    )
    proc = run_dr("backup", config=config, env={"DR_TEST_JWT": intruder.sign()})
    line = one_line_error(proc)
    assert proc.returncode == ExitCode.VAULT, line
    assert "jwt" in line and "auth/jwt" in line, line
    assert stored_files(tmp_path) == []


def test_token_method_from_a_file(tmp_path: Path, auth_bao: AuthBao) -> None:
    token = auth_bao.adm.call(
        "POST", "auth/token/create", {"policies": ["dr-backup"], "no_default_policy": True}
    )["auth"]["client_token"]
    token_file = va.write_private(tmp_path / "token", token)
    config = auth_config(
        tmp_path, auth_bao.addr, {"method": "token", "token_file": str(token_file)}
    )
    proc = run_dr("backup", "--json", config=config)
    assert_backed_up(config, proc)
    # A token dr did not create is not dr's to revoke.
    looked = auth_bao.adm.call("POST", "auth/token/lookup", {"token": token})["data"]
    assert looked["policies"] == ["dr-backup"]


def test_unknown_auth_method_is_a_usage_error(tmp_path: Path, auth_bao: AuthBao) -> None:
    config = auth_config(tmp_path, auth_bao.addr, {"method": "ldap"})
    proc = run_dr("backup", config=config)
    line = one_line_error(proc)
    assert proc.returncode == ExitCode.USAGE, line
    assert str(config) in line and "vault.auth.method" in line, line


# --- drill -------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["approle", "jwt"])
def test_drill_with_a_login_configured_needs_no_token(
    tmp_path: Path, auth_bao: AuthBao, method: str
) -> None:
    if method == "approle":
        role = va.setup_approle(auth_bao.adm, role="drill", token_ttl="1h")
        auth: dict[str, Any] = {"method": "approle", **approle_files(tmp_path, role)}
    else:
        issuer = va.JwtIssuer()
        role = va.setup_jwt(auth_bao.adm, issuer, role="ci-drill", token_ttl="10m")
        jwt_file = va.write_private(tmp_path / "jwt", issuer.sign("ci-drill-7"))
        auth = {"method": "jwt", "role": role, "jwt_file": str(jwt_file)}
    config = auth_config(
        tmp_path,
        auth_bao.addr,
        auth,
        extra={"drill": {"unseal_keys_file": str(auth_bao.unseal_keys), "rto_objective": "15m"}},
    )
    assert_backed_up(config, run_dr("backup", "--json", config=config))

    proc = run_dr("drill", "--json", "--runtime", "process", config=config, timeout=600)
    assert "Traceback" not in proc.stderr, proc.stderr
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["passed"] is True, report["verdict"]
    families = {f["name"]: f for f in report["checks"]["families"]}
    assert families["kv2_secrets"]["ok"] + families["kv1_secrets"]["ok"] == CATALOGED


# --- kubernetes (a fake TokenReview API) -----------------------------------------------


def test_kubernetes_backup_with_a_service_account_token_file(
    tmp_path: Path, auth_bao: AuthBao
) -> None:
    from tests.stack.k8s_api import FakeK8sApi, setup_kubernetes

    with FakeK8sApi() as api:
        role = setup_kubernetes(auth_bao.adm, api, namespace="vault-dr", service_account="dr")
        sa_token = va.write_private(tmp_path / "sa-token", api.issue("vault-dr", "dr"))
        config = auth_config(
            tmp_path,
            auth_bao.addr,
            {"method": "kubernetes", "role": role, "token_file": str(sa_token)},
        )
        before = auth_bao.logins("kubernetes")
        proc = run_dr("backup", "--json", config=config)
        assert_backed_up(config, proc)
        assert_logins_revoked(auth_bao, "kubernetes", before)
        assert len(api.reviews) >= 1  # OpenBao asked the (fake) API server

        # A token the API server does not know: 403 "permission denied" from OpenBao.
        va.write_private(sa_token, FakeK8sApi().issue("vault-dr", "dr"))
        proc = run_dr("backup", config=config)
    line = one_line_error(proc)
    assert proc.returncode == ExitCode.VAULT, line
    assert "kubernetes" in line and "auth/kubernetes" in line, line
