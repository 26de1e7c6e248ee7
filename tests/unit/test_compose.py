"""docker-compose.yml: it parses, every image is pinned, the files it mounts exist, the
`dr` service's commands are valid invocations of the real CLI and its config loads, and
the one-shot that initializes OpenBao works against a real (uninitialized) OpenBao.

No Docker engine can pull images on the machines that run this suite, so the stack is
not started here; what can be checked without it is.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import click
import pytest
import yaml

from dr.cli.main import _register_commands, cli
from dr.config import parse_config

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
# name[:tag][@sha256:digest]; a pin is a tag that is not "latest", or a digest.
IMAGE = re.compile(
    r"^(?P<name>[\w./-]+)(?::(?P<tag>[\w.-]+))?(?:@sha256:(?P<digest>[0-9a-f]{64}))?$"
)


def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return data


def services() -> dict[str, Any]:
    result: dict[str, Any] = compose()["services"]
    return result


def test_compose_parses_with_the_stack() -> None:
    svc = services()
    for name in ("openbao", "openbao-init", "seaweedfs", "s3-init", "moto", "kms-init", "dr"):
        assert name in svc, name
    assert set(compose()["volumes"]) >= {"bao-data", "bao-init"}


@pytest.mark.parametrize("name", sorted(services()))
def test_every_image_is_pinned(name: str) -> None:
    svc = services()[name]
    image = svc.get("image")
    if image is None:
        assert "build" in svc, f"{name}: neither image nor build"
        return
    m = IMAGE.match(image)
    assert m, f"{name}: unparsable image {image!r}"
    assert m.group("digest") or (m.group("tag") and m.group("tag") != "latest"), (
        f"{name}: {image!r} is not pinned (a version tag or @sha256 digest)"
    )


def test_mounted_files_exist() -> None:
    for name, svc in services().items():
        for volume in svc.get("volumes", []):
            source = volume.split(":", 1)[0]
            if source.startswith("."):
                assert (ROOT / source).is_file(), f"{name}: {source} missing"


def test_dr_service_builds_the_deploy_dockerfile() -> None:
    dr = services()["dr"]
    assert dr["build"]["context"] == "."
    assert dr["build"]["dockerfile"] == "deploy/Dockerfile"
    assert (ROOT / "deploy" / "Dockerfile").is_file()
    needs = dr["depends_on"]
    for one_shot in ("openbao-init", "s3-init", "kms-init"):
        assert needs[one_shot]["condition"] == "service_completed_successfully", one_shot


def dr_commands() -> list[list[str]]:
    """The `dr` invocations of the dr service: its `sh -c` script cut at ; && || ."""
    command = services()["dr"]["command"]
    assert services()["dr"]["entrypoint"] == [] and command[:2] == ["sh", "-c"], command
    found = []
    for part in re.split(r";|&&|\|\|", command[2]):
        argv = shlex.split(part)
        if argv and argv[0] == "dr":
            found.append(argv[1:])
    return found


def test_dr_service_runs_a_backup_and_a_drill() -> None:
    subcommands = [
        next(a for a in argv if not a.startswith("-") and "/" not in a) for argv in dr_commands()
    ]
    assert subcommands == ["backup", "drill"]


@pytest.mark.parametrize("argv", dr_commands(), ids=lambda a: " ".join(a)[:60])
def test_dr_service_command_parses(argv: list[str]) -> None:
    _register_commands()  # every command, as `dr --help` lists them
    parser = cli.make_parser(click.Context(cli))
    opts, left, _ = parser.parse_args(args=list(argv))
    assert opts.get("config_path") == "/etc/vault-dr/dr.yaml", opts
    sub = cli.get_command(click.Context(cli), left[0])
    assert isinstance(sub, click.Command), left
    sub.make_context(left[0], left[1:])  # raises on an unknown option or a bad value


def test_dr_service_config_loads() -> None:
    mounts = dict(v.split(":")[:2][::-1] for v in services()["dr"]["volumes"])
    source = ROOT / mounts["/etc/vault-dr/dr.yaml"]
    config = parse_config(yaml.safe_load(source.read_text()), str(source), source.parent, env={})
    assert config.storage.type == "s3"
    assert [r.type for r in config.encryption.recipients] == ["aws-kms"]
    host = ROOT / "deploy" / "compose" / "dr.host.yaml"
    parse_config(yaml.safe_load(host.read_text()), str(host), host.parent, env={})


def test_openbao_init_one_shot_against_a_real_openbao(bao_binary: Path, tmp_path: Path) -> None:
    """deploy/compose/init-openbao.py initializes, unseals, writes 0600 files; run twice
    (a restarted stack) it only unseals again."""
    from dr.vault.localserver import LocalBao

    server = LocalBao(tmp_path / "bao", binary=bao_binary)
    shared = tmp_path / "shared"
    env = {**os.environ, "BAO_ADDR": server.addr, "INIT_DIR": str(shared)}
    script = ROOT / "deploy" / "compose" / "init-openbao.py"
    try:
        server.start()
        proc = subprocess.run(
            [sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=60
        )
        assert proc.returncode == 0, proc.stderr
        init = json.loads((shared / "init.json").read_text())
        token = (shared / "root-token").read_text().strip()
        assert token == init["root_token"]
        for name in ("init.json", "root-token"):
            assert (shared / name).stat().st_mode & 0o777 == 0o600, name
        status = server.seal_status()
        assert status["initialized"] is True and status["sealed"] is False, status
        # Again: nothing re-initialized, the same token still works.
        proc = subprocess.run(
            [sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=60
        )
        assert proc.returncode == 0, proc.stderr
        assert (shared / "root-token").read_text().strip() == token
    finally:
        server.stop()
