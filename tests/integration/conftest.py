"""Fixtures for the container drill runtime: a Docker engine and the local drill image.

Session fixtures:
  docker_engine  DOCKER_HOST of an engine that answers: the one in the environment, else
                 (as root, with Debian's docker.io installed) a private dockerd started
                 for the session by .ci/dockerd.sh and stopped at the end; else skip, or
                 FAIL when CI=true (a CI run must not pass by skipping container tests).
  drill_image    the image tag a drill of the packaged bao would pick
                 (openbao/openbao:VERSION), built FROM scratch when missing.
  drill_timings  a dict of name -> seconds, printed in the terminal summary.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.stack.ci import missing

REPO = Path(__file__).resolve().parents[2]
DOCKERD_SH = REPO / ".ci" / "dockerd.sh"
TESTCONTAINERS_ENV = {
    "TESTCONTAINERS_RYUK_DISABLED": "true",
    "TESTCONTAINERS_CONNECTION_MODE": "docker_host",
    "TC_HOST": "127.0.0.1",
}
_TIMINGS: dict[str, float] = {}


def _engine_answers(host: str) -> tuple[bool, str]:
    try:
        import docker

        client = docker.DockerClient(base_url=host, timeout=5)
        try:
            client.ping()
        finally:
            client.close()
    except Exception as exc:
        return False, str(exc)
    return True, ""


def _set_env(values: dict[str, str], saved: dict[str, str | None]) -> None:
    for name, value in values.items():
        saved.setdefault(name, os.environ.get(name))
        os.environ[name] = value


def _restore_env(saved: dict[str, str | None]) -> None:
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


@pytest.fixture(scope="session")
def docker_engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    saved: dict[str, str | None] = {}
    defaults = {k: v for k, v in TESTCONTAINERS_ENV.items() if k not in os.environ}
    host = os.environ.get("DOCKER_HOST", "")
    if host:
        ok, why = _engine_answers(host)
        if not ok:
            missing("the Docker engine at DOCKER_HOST", f"{host}: {why}")
        _set_env(defaults, saved)
        try:
            yield host
        finally:
            _restore_env(saved)
        return
    if os.geteuid() != 0 or shutil.which("dockerd") is None:
        missing(
            "a Docker engine",
            "set DOCKER_HOST, or run as root with Debian's docker.io installed "
            "(bash .ci/dockerd.sh install)",
        )
    rundir = tmp_path_factory.mktemp("dockerd")
    started = subprocess.run(
        ["bash", str(DOCKERD_SH), "start", str(rundir)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    try:
        if started.returncode != 0:
            missing("a private dockerd", started.stderr.strip()[-800:])
        exports = dict(
            shlex.split(line.removeprefix("export "))[0].split("=", 1)
            for line in started.stdout.splitlines()
            if line.startswith("export ")
        )
        _set_env({**exports, **defaults}, saved)
        yield exports["DOCKER_HOST"]
    finally:
        _restore_env(saved)
        subprocess.run(["bash", str(DOCKERD_SH), "stop", str(rundir)], timeout=60, check=False)
        shutil.rmtree(rundir, ignore_errors=True)


@pytest.fixture(scope="session")
def drill_image(docker_engine: str, bao_binary: Path) -> str:
    from dr.runtime.image import build_local_image, default_image, image_exists
    from dr.runtime.process import detect_version

    tag = default_image(*detect_version(bao_binary))
    if not image_exists(tag):
        build_local_image(tag, bao_binary)
    return tag


@pytest.fixture(scope="session")
def drill_timings() -> dict[str, float]:
    return _TIMINGS


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not _TIMINGS:
        return
    terminalreporter.section("drill runtime timings")
    for name, seconds in sorted(_TIMINGS.items()):
        terminalreporter.write_line(f"{name:40s} {seconds:8.3f} s")
