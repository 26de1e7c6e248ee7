"""Shared fixtures: the real stack (OpenBao, SeaweedFS, moto KMS) and a clean environment.

Session fixtures (started on first use, stopped at session end, also on failure):
  bao_binary     Path of the real OpenBao server binary
  bao            PopulatedBao: addr, root_token, keys (InitResult), secrets, server,
                 client(); ~2,000 secrets in kv-v2 "app", "team" and kv-v1 "legacy".
                 Shared by every test: do not restore into it, seal it or write to it.
  seaweed        SeaweedS3 (`weed mini`): endpoint_url, access_key, secret_key, region,
                 client(), make_bucket()
  moto_server    MotoServer (moto's KMS/S3 over HTTP): endpoint_url, client("kms")
Function fixtures:
  moto           the moto_server with KMS key alias/vault-backup present: moto.key
                 (KmsKey key_id/arn/alias), moto.key_id
  versioned_bucket / unversioned_bucket   a fresh, uniquely named bucket on seaweed
  fresh_bao      a new, empty, initialized and unsealed LocalBao (init_result,
                 root_token, client()); stopped after the test
  standby_pair   StandbyPair(leader, standby): a 2-node raft cluster; stopped after

When a server binary is missing the fixture skips with a hint, or fails when CI=true
(a CI run must not pass by skipping its integration tests).
"""

from __future__ import annotations

import os
import signal
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import pytest

from dr.errors import UsageError
from dr.vault.localserver import LocalBao, find_bao_binary
from tests.stack.ci import missing
from tests.stack.moto_kms import MotoServer
from tests.stack.openbao import PopulatedBao, hvac_client, populate
from tests.stack.procs import kill_groups, stack_processes
from tests.stack.seaweedfs import SeaweedS3, find_weed_binary

KMS_ALIAS = "alias/vault-backup"
STRIPPED_ENV_PREFIXES = ("VAULT_", "BAO_", "DR_", "AWS_")
TEST_AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "dr-test-access-key",
    "AWS_SECRET_ACCESS_KEY": "dr-test-secret-key",
    "AWS_DEFAULT_REGION": "us-east-1",
    # No user config or credentials file may leak into a test.
    "AWS_CONFIG_FILE": os.devnull,
    "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
}
STACK_FIXTURES = {
    "bao_binary",
    "bao",
    "seaweed",
    "moto_server",
    "moto",
    "versioned_bucket",
    "unversioned_bucket",
    "fresh_bao",
    "standby_pair",
}


def pytest_configure(config: pytest.Config) -> None:
    # A SIGTERM (CI timeout, kill) becomes KeyboardInterrupt so fixtures tear down
    # and atexit hooks run: no OpenBao or weed outlives the session.
    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:

        def _on_sigterm(signum: int, frame: object) -> None:
            raise KeyboardInterrupt(f"signal {signum}")

        signal.signal(signal.SIGTERM, _on_sigterm)


@pytest.hookimpl(trylast=True)  # after the runner tore down the session fixtures
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Fail the run if a server this session started is still alive (then kill it)."""
    factory = getattr(session.config, "_tmp_path_factory", None)
    basetemp = getattr(factory, "_basetemp", None) if factory is not None else None
    if basetemp is None:
        return  # no temp dir was made, so no server was started
    left = stack_processes(f"{basetemp}/")  # the slash: pytest-1 must not match pytest-12
    if not left:
        return
    kill_groups([pid for pid, _ in left])
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line(f"ERROR: {len(left)} stack process(es) outlived the session:", red=True)
        for pid, line in left:
            reporter.write_line(f"  {pid} {line[:160]}", red=True)
    if session.exitstatus == 0:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if STACK_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Strip the tools' environment (borg's idea); give AWS SDKs dummy credentials.

    Session fixtures are set up before this function-scoped fixture, and the servers
    they start get their environment then (and do not read ours later).
    """
    for name in list(os.environ):
        if name.startswith(STRIPPED_ENV_PREFIXES):
            monkeypatch.delenv(name, raising=False)
    for name, value in TEST_AWS_ENV.items():
        monkeypatch.setenv(name, value)


# --- OpenBao -----------------------------------------------------------------------


@pytest.fixture(scope="session")
def bao_binary() -> Path:
    try:
        return find_bao_binary()
    except UsageError as exc:
        missing("the OpenBao server binary", str(exc))


def _started_bao(workdir: Path, binary: Path, node_id: str = "n1") -> LocalBao:
    server = LocalBao(workdir, binary=binary, node_id=node_id)
    try:
        server.start()
        server.init()
    except BaseException:
        server.stop()
        raise
    return server


@pytest.fixture(scope="session")
def bao(bao_binary: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[PopulatedBao]:
    server = LocalBao(tmp_path_factory.mktemp("bao"), binary=bao_binary)
    try:
        server.start()
        keys = server.init()
        secrets = populate(hvac_client(server))
        yield PopulatedBao(server=server, keys=keys, secrets=secrets)
    finally:
        server.stop()


@pytest.fixture(scope="module")
def module_bao(bao_binary: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalBao]:
    """An empty OpenBao (initialized, unsealed) for one test module: for tests about a
    run's outcome or its lock, not its data, where a backup of the shared 2,000-secret
    `bao` would cost several times as much."""
    server = _started_bao(tmp_path_factory.mktemp("module-bao"), bao_binary)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def fresh_bao(bao_binary: Path, tmp_path: Path) -> Iterator[LocalBao]:
    server = _started_bao(tmp_path / "fresh-bao", bao_binary)
    try:
        yield server
    finally:
        server.stop()


class StandbyPair(NamedTuple):
    leader: LocalBao
    standby: LocalBao


@pytest.fixture
def standby_pair(bao_binary: Path, tmp_path: Path) -> Iterator[StandbyPair]:
    leader = LocalBao(tmp_path / "leader", binary=bao_binary, node_id="leader")
    standby = LocalBao(tmp_path / "standby", binary=bao_binary, node_id="standby")
    try:
        leader.start()
        leader.init()
        standby.start()
        standby.join(leader)
        yield StandbyPair(leader, standby)
    finally:
        standby.stop()
        leader.stop()


# --- S3 (SeaweedFS) and KMS (moto) ----------------------------------------------------


@pytest.fixture(scope="session")
def seaweed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedS3]:
    try:
        binary = find_weed_binary()
    except FileNotFoundError as exc:
        missing("SeaweedFS", str(exc))
    server = SeaweedS3(tmp_path_factory.mktemp("seaweed"), binary=binary)
    try:
        server.start()
        yield server
    finally:
        server.stop()


def _bucket_name(kind: str) -> str:
    return f"dr-{kind}-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def versioned_bucket(seaweed: SeaweedS3) -> str:
    return seaweed.make_bucket(_bucket_name("v"), versioned=True)


@pytest.fixture
def unversioned_bucket(seaweed: SeaweedS3) -> str:
    return seaweed.make_bucket(_bucket_name("u"), versioned=False)


@pytest.fixture(scope="session")
def moto_server() -> Iterator[MotoServer]:
    try:
        import moto.server  # noqa: F401
    except ImportError as exc:
        missing("moto[server]", f"pip install 'moto[server]' ({exc})")
    server = MotoServer()
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.fixture
def moto(moto_server: MotoServer) -> MotoServer:
    # Re-checked per test: a mock_aws elsewhere in this process resets moto's backends.
    moto_server.ensure_kms_key(KMS_ALIAS)
    return moto_server
