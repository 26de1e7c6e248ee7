""".github/workflows/dr-drill.yml run locally, as far as it can be without GitHub.

The drill job's steps are read from the workflow file and run in order, the way the
runner runs them: each `run:` script through `bash --noprofile --norc -eo pipefail`
(the job's `shell: bash`), with the env the workflow sets (`${{ inputs.* }}`,
`${{ runner.temp }}`... substituted), `GITHUB_ENV` / `GITHUB_OUTPUT` files carried to the
later steps, one `GITHUB_STEP_SUMMARY` file per step, `if:` conditions honoured, and
the steps after a failure skipped unless they say `always()`.

What GitHub alone provides is stood in for, and nothing else:
  * `uses:` steps do not run here (checkout, setup-python, configure-aws-credentials,
    upload-artifact). Their effect is given instead: the checkout is this tree, Python
    and vault-dr are this venv's (the `install` step is skipped for that reason), the AWS
    credentials are the test stack's (conftest's dummy keys, as configure-aws-credentials
    would export real ones), and the upload step's `path:` globs are checked to find the
    reports.
  * GitHub's OIDC token service (ACTIONS_ID_TOKEN_REQUEST_URL/_TOKEN) is a small HTTP
    server on 127.0.0.1 that checks the bearer token and answers {"value": JWT}, the JWT
    signed by a test key that the transit Vault's JWT auth method trusts
    (tests/stack/vault_auth.py, as tests/integration/test_auth.py does).

Everything else is real: a source OpenBao (kv secrets, an audit log), a second OpenBao
as the transit Vault (transit key, JWT auth, an audit log), SeaweedFS (S3, versioned
bucket), moto (Secrets Manager holding the source's init JSON), and the real `dr`.

What the workflow's JWT login is for, as the code shows (dr/ops/drill.py,
docs/vault-policy.md): `dr drill` never contacts the source cluster (the source's
audit log stays silent during the drill, asserted below); the drill's login is to the
transit Vault of the `vault-transit` recipient, which unwraps the data key (the only
recipient in the CI config here, so the drill passes only through that JWT login). The
seal-login step (auto-unseal sources) logs in to a seal Vault with the same OIDC token;
it is run against the transit Vault here (token works, 0600 file, revoked by the
logout step), not in a full auto-unseal drill (tests/integration/test_autounseal.py
covers `drill.seal` itself).
"""

from __future__ import annotations

import glob
import http.server
import json
import os
import re
import subprocess
import sys
import threading
import time
import urllib.parse
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import yaml

from dr.errors import ExitCode
from dr.vault.localserver import LocalBao
from tests.conftest import TEST_AWS_ENV
from tests.integration.drutil import run_dr, writer_block
from tests.stack import vault_auth as va
from tests.stack.openbao import populate

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
WORKFLOW = ROOT / ".github" / "workflows" / "dr-drill.yml"
TRANSIT_KEY = "vault-dr-ci"
DRILL_ROLE = "vault-dr-drill"
SEAL_ROLE = "ci-seal"
UNSEAL_SECRET = "vault-dr/ci/unseal-keys"
SECRETS = 40
TRANSIT_POLICY = f"""
path "transit/encrypt/{TRANSIT_KEY}" {{ capabilities = ["update"] }}
path "transit/decrypt/{TRANSIT_KEY}" {{ capabilities = ["update"] }}
"""
# Steps that only GitHub runs (see the docstring); the install step: vault-dr is this venv's.
NOT_RUN_HERE = {"install"}


# --- the workflow, read and run as the runner would ------------------------------------


def workflow() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(WORKFLOW.read_text())
    return data


def on_block(data: dict[str, Any]) -> dict[str, Any]:
    block: dict[str, Any] = data.get("on", data.get(True))  # PyYAML reads `on:` as True
    return block


def input_defaults() -> dict[str, str]:
    inputs = on_block(workflow())["workflow_call"]["inputs"]
    return {name: str(spec.get("default", "")) for name, spec in inputs.items()}


EXPR = re.compile(r"\$\{\{\s*(.*?)\s*\}\}")


@dataclass
class StepResult:
    step: dict[str, Any]
    outcome: str  # success | failure | skipped | github-only
    returncode: int | None = None
    stdout: str = ""
    stderr: str = ""
    summary: str = ""


@dataclass
class LocalRunner:
    """Runs the drill job's steps like the GitHub runner (for the parts it can)."""

    temp: Path  # RUNNER_TEMP
    inputs: dict[str, str]
    base_env: dict[str, str]
    exported: dict[str, str] = field(default_factory=dict)  # GITHUB_ENV
    outputs: dict[str, dict[str, str]] = field(default_factory=dict)  # GITHUB_OUTPUT
    results: list[StepResult] = field(default_factory=list)

    def context(self, expr: str) -> str:
        if expr.startswith("inputs."):
            return self.inputs[expr.removeprefix("inputs.")]
        known = {"runner.temp": str(self.temp), "github.run_id": "4242"}
        assert expr in known, f"the local runner does not know ${{{{ {expr} }}}}"
        return known[expr]

    def expand(self, text: str) -> str:
        return EXPR.sub(lambda m: self.context(m.group(1)), text)

    def condition(self, step: dict[str, Any], failed: bool) -> bool:
        cond = str(step.get("if", "")).strip()
        if not cond:
            return not failed
        if cond == "always()":
            return True
        if m := re.fullmatch(r"inputs\.([\w-]+) != ''", cond):
            return not failed and self.inputs[m.group(1)] != ""
        if m := re.fullmatch(r"always\(\) && steps\.([\w-]+)\.outcome == 'success'", cond):
            done = [r for r in self.results if r.step.get("id") == m.group(1)]
            return any(r.outcome == "success" for r in done)
        raise AssertionError(f"the local runner cannot evaluate if: {cond}")

    def run_job(self, after_step: Callable[[StepResult], None] | None = None) -> list[StepResult]:
        job = workflow()["jobs"]["drill"]
        assert job["defaults"]["run"]["shell"] == "bash"
        job_env = {k: self.expand(str(v)) for k, v in (job.get("env") or {}).items()}
        failed = False
        for step in job["steps"]:
            if not self.condition(step, failed):
                result = StepResult(step, "skipped")
            elif "uses" in step or step.get("id") in NOT_RUN_HERE:
                result = StepResult(step, "github-only")
            else:
                result = self.run_step(step, job_env)
                failed = failed or result.outcome == "failure"
            self.results.append(result)
            if after_step is not None:
                after_step(result)
        return self.results

    def run_step(self, step: dict[str, Any], job_env: dict[str, str]) -> StepResult:
        step_id = step.get("id") or re.sub(r"\W+", "-", step["name"]).lower()
        script = step["run"]
        assert "${{" not in script, f"step {step_id}: expressions belong in env:, not the script"
        files = {
            name: self.temp / "_runner" / f"{step_id}.{name.lower()}"
            for name in ("GITHUB_ENV", "GITHUB_OUTPUT", "GITHUB_STEP_SUMMARY")
        }
        for path in files.values():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("")
        script_file = self.temp / "_runner" / f"{step_id}.sh"
        script_file.write_text(script)
        step_env = {k: self.expand(str(v)) for k, v in (step.get("env") or {}).items()}
        env = {
            **self.base_env,
            **job_env,
            **self.exported,
            **step_env,
            **{k: str(v) for k, v in files.items()},
            "RUNNER_TEMP": str(self.temp),
        }
        proc = subprocess.run(
            ["bash", "--noprofile", "--norc", "-eo", "pipefail", str(script_file)],
            capture_output=True,
            text=True,
            env=env,
            cwd=ROOT,
            timeout=600,
        )
        self.exported.update(parse_env_file(files["GITHUB_ENV"].read_text()))
        self.outputs[step_id] = parse_env_file(files["GITHUB_OUTPUT"].read_text())
        return StepResult(
            step,
            "success" if proc.returncode == 0 else "failure",
            proc.returncode,
            proc.stdout,
            proc.stderr,
            files["GITHUB_STEP_SUMMARY"].read_text(),
        )

    def result(self, step_id: str) -> StepResult:
        return next(r for r in self.results if r.step.get("id") == step_id)

    def step_named(self, prefix: str) -> StepResult:
        return next(r for r in self.results if r.step["name"].startswith(prefix))

    @property
    def job_summary(self) -> str:
        return "".join(r.summary for r in self.results)

    def upload_paths(self) -> list[str]:
        upload = self.step_named("Upload the drill reports")
        assert upload.step["uses"].startswith("actions/upload-artifact@")
        lines = self.expand(upload.step["with"]["path"]).splitlines()
        return [ln.strip() for ln in lines if ln.strip()]


def parse_env_file(text: str) -> dict[str, str]:
    """GITHUB_ENV / GITHUB_OUTPUT: NAME=value lines, or NAME<<DELIM ... DELIM blocks."""
    out: dict[str, str] = {}
    lines = iter(text.splitlines())
    for line in lines:
        if "<<" in line and ("=" not in line or line.index("<<") < line.index("=")):
            name, delim = line.split("<<", 1)
            body = []
            for nxt in lines:
                if nxt == delim:
                    break
                body.append(nxt)
            out[name] = "\n".join(body)
        elif "=" in line:
            name, value = line.split("=", 1)
            out[name] = value
    return out


# --- GitHub's OIDC token service, stood in for on loopback ------------------------------


class TokenService:
    """GET <url>&audience=A with `Authorization: bearer <request token>` -> {"value": JWT}."""

    def __init__(self, issuer: va.JwtIssuer) -> None:
        self.issuer = issuer
        self.request_token = "ghs-request-" + os.urandom(8).hex()
        self.issued: list[tuple[str, str]] = []  # (audience, jwt)
        service = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                query = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query)
                if self.headers.get("Authorization") != f"bearer {service.request_token}":
                    self.send_response(401)
                    self.end_headers()
                    return
                audience = query.get("audience", [""])[0]
                jwt = service.issuer.sign(
                    "repo:org/infra:ref:refs/heads/main", audience=audience, ttl=600
                )
                service.issued.append((audience, jwt))
                body = json.dumps({"count": 1, "value": jwt}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        # A short poll: shutdown waits up to one interval for the loop to notice.
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def url(self) -> str:
        # GitHub's URL already carries a query (?api-version=2.0); the step adds &audience=.
        return f"http://127.0.0.1:{self.server.server_address[1]}/token?api-version=2.0"

    def __enter__(self) -> TokenService:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


# --- the stack: source, transit Vault, S3, Secrets Manager, a backup --------------------


@dataclass
class Stack:
    source: LocalBao
    source_audit: Path
    transit: LocalBao
    transit_adm: va.Admin
    transit_audit: Path
    issuer: va.JwtIssuer
    ci_config: Path
    backup_id: str
    backup_done: float  # time.time() when the backup had finished
    moto_url: str


def _audited(path: Path) -> int:
    return len(va.audit_entries(path))


@pytest.fixture(scope="module")
def stack(
    tmp_path_factory: pytest.TempPathFactory,
    bao_binary: Path,
    seaweed: Any,
    moto_server: Any,
) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("ci-workflow")
    source_audit, transit_audit = tmp / "source-audit.log", tmp / "transit-audit.log"
    source = LocalBao(
        tmp / "source", binary=bao_binary, extra_listener_config=va.audit_config(source_audit)
    )
    transit = LocalBao(
        tmp / "transit",
        binary=bao_binary,
        node_id="transit",
        extra_listener_config=va.audit_config(transit_audit),
    )
    try:
        source.start()
        transit.start()
        # The two inits (mostly waiting for each server to elect itself) side by side.
        with ThreadPoolExecutor(max_workers=1) as pool:
            source_init = pool.submit(source.init)
            transit.init()
            init = source_init.result()
        populate(SimpleNamespace(url=source.addr, token=init.root_token), count=SECRETS)
        adm = va.admin(transit)
        adm.call("POST", "sys/mounts/transit", {"type": "transit"})
        adm.call("POST", f"transit/keys/{TRANSIT_KEY}", {})
        adm.call("POST", "sys/policies/acl/vault-dr-transit", {"policy": TRANSIT_POLICY})
        issuer = va.JwtIssuer(issuer="https://token.actions.githubusercontent.com")
        va.setup_jwt(adm, issuer, role=DRILL_ROLE, policies=("vault-dr-transit",))
        # The seal-login step's role (an auto-unseal seal token's policy is the same shape).
        va.setup_jwt(adm, issuer, role=SEAL_ROLE, policies=("vault-dr-transit",))

        bucket = seaweed.make_bucket(f"dr-ci-{os.urandom(6).hex()}", versioned=True)
        storage = {
            "type": "s3",
            "bucket": bucket,
            "prefix": "ci",
            "region": seaweed.region,
            "endpoint_url": seaweed.endpoint_url,
            "chunk_size": "5MiB",
        }
        transit_recipient = {"type": "vault-transit", "addr": transit.addr, "key": TRANSIT_KEY}
        writer = writer_block(tmp)
        # The backup job's config: its own tokens, the writer's private key.
        backup_config = tmp / "backup.yaml"
        backup_config.write_text(
            yaml.safe_dump(
                {
                    "cluster": "ci",
                    "vault": {"addr": source.addr, "token_env": "VAULT_TOKEN"},
                    "storage": storage,
                    "encryption": {
                        "recipients": [{**transit_recipient, "token_env": "VAULT_TRANSIT_TOKEN"}],
                        "writer": writer,
                    },
                }
            )
        )
        proc = run_dr(
            "backup",
            "--json",
            config=backup_config,
            token=init.root_token,
            # A module fixture runs before conftest's per-test clean env: give its keys.
            env={**TEST_AWS_ENV, "VAULT_TRANSIT_TOKEN": transit.root_token},
        )
        assert proc.returncode == 0, proc.stderr
        backup_id = json.loads(proc.stdout)["backup_id"]
        backup_done = time.time()

        # The CI config, shaped as .github/dr-configs/*.yaml: JWT logins, public key only.
        ci_config = tmp / "ci.yaml"
        ci_config.write_text(
            yaml.safe_dump(
                {
                    "cluster": "ci",
                    "vault": {
                        "addr": source.addr,
                        "auth": {
                            "method": "jwt",
                            "role": "${VAULT_DR_JWT_ROLE}",
                            "jwt_file": "${VAULT_DR_JWT_FILE}",
                        },
                    },
                    "storage": storage,
                    "encryption": {
                        "recipients": [
                            {
                                **transit_recipient,
                                "auth": {
                                    "method": "jwt",
                                    "role": "${VAULT_DR_TRANSIT_JWT_ROLE}",
                                    "jwt_file": "${VAULT_DR_JWT_FILE}",
                                },
                            }
                        ],
                        "writer": {"public_key": writer["public_key"]},
                    },
                    "drill": {"runtime": "process", "rto_objective": "15m"},
                }
            )
        )
        sm = moto_server.client("secretsmanager")
        sm.create_secret(Name=UNSEAL_SECRET, SecretString=json.dumps(init.raw))
        yield Stack(
            source=source,
            source_audit=source_audit,
            transit=transit,
            transit_adm=adm,
            transit_audit=transit_audit,
            issuer=issuer,
            ci_config=ci_config,
            backup_id=backup_id,
            backup_done=backup_done,
            moto_url=moto_server.endpoint_url,
        )
    finally:
        transit.stop()
        source.stop()


def make_runner(stack: Stack, tmp_path: Path, tokens: TokenService, **inputs: str) -> LocalRunner:
    values = {
        **input_defaults(),
        "config": str(stack.ci_config),
        "backup": "latest",
        "runtime": "process",
        "aws-role-arn": "arn:aws:iam::123456789012:role/vault-dr-drill",
        "aws-region": "us-east-1",
        "vault-jwt-role": DRILL_ROLE,
        "transit-jwt-role": DRILL_ROLE,
        "unseal-keys-secret": UNSEAL_SECRET,
        "report-name": "dr-drill-ci",
        **inputs,
    }
    temp = tmp_path / "runner-temp"
    temp.mkdir()
    venv_bin = str(Path(sys.executable).parent)
    env = {
        **os.environ,  # conftest's clean env: the stack's AWS keys, no VAULT_*/DR_*
        "PATH": f"{venv_bin}{os.pathsep}{os.environ.get('PATH', '')}",
        "GITHUB_ACTIONS": "true",
        "ACTIONS_ID_TOKEN_REQUEST_URL": tokens.url,
        "ACTIONS_ID_TOKEN_REQUEST_TOKEN": tokens.request_token,
        # What configure-aws-credentials exports (the keys: conftest's, for the stack).
        "AWS_REGION": values["aws-region"],
        # Secrets Manager is moto's here; on GitHub the SDK reaches AWS.
        "AWS_ENDPOINT_URL_SECRETS_MANAGER": stack.moto_url,
    }
    return LocalRunner(temp=temp, inputs=values, base_env=env)


def assert_never_printed(runner: LocalRunner, secret: str) -> None:
    for r in runner.results:
        for line in (r.stdout + r.stderr).splitlines():
            if secret in line:
                assert line == f"::add-mask::{secret}", f"{r.step['name']} printed a credential"
        assert secret not in r.summary


# --- the tests --------------------------------------------------------------------------


def test_the_drill_job_passes_with_summary_and_reports(stack: Stack, tmp_path: Path) -> None:
    seen: dict[str, Any] = {}

    def inspect(result: StepResult) -> None:
        if result.step.get("id") == "drill":  # before the credentials are removed
            jwt_file = Path(runner.exported["VAULT_DR_JWT_FILE"])
            keys_file = Path(runner.exported["VAULT_DR_UNSEAL_KEYS_FILE"])
            seen["modes"] = [p.stat().st_mode & 0o777 for p in (jwt_file, keys_file)]
            seen["dir"] = jwt_file.parent

    with TokenService(stack.issuer) as tokens:
        runner = make_runner(stack, tmp_path, tokens)
        source_before = _audited(stack.source_audit)
        logins_before = va.login_accessors(stack.transit_audit, "jwt")
        results = runner.run_job(after_step=inspect)

    failures = [(r.step["name"], r.stderr[-2000:]) for r in results if r.outcome == "failure"]
    assert not failures, failures
    outcomes = {r.step["name"]: r.outcome for r in results}
    assert outcomes["OIDC token for Vault"] == "success"
    assert outcomes["Source unseal keys (AWS Secrets Manager)"] == "success"
    assert outcomes["Seal login (auto-unseal sources)"] == "skipped"  # a Shamir source
    assert runner.outputs["drill"]["exit-code"] == "0"

    # One OIDC token, for the Vault audience; in a 0600 file, masked, never printed.
    assert [aud for aud, _ in tokens.issued] == ["vault-dr"]
    jwt = tokens.issued[0][1]
    assert seen["modes"] == [0o600, 0o600]
    assert f"::add-mask::{jwt}" in runner.result("oidc").stdout.splitlines()
    assert_never_printed(runner, jwt)
    assert not seen["dir"].exists(), "the credentials outlived the job"

    # The job summary is the Markdown report.
    summary = runner.job_summary
    assert summary.startswith(f"## ✅ vault-dr drill of `{stack.backup_id}` (ci): PASSED"), summary
    assert "| kv2_secrets |" in summary or "kv2_secrets" in summary

    # The artifacts are where the upload step looks for them.
    paths = runner.upload_paths()
    found = {p: glob.glob(p) for p in paths}
    assert all(len(v) == 1 for v in found.values()), found
    report_json = next(Path(v[0]) for p, v in found.items() if p.endswith(".json"))
    report = json.loads(report_json.read_text())
    assert report["passed"] is True and report["exit_code"] == 0
    assert report["backup"]["id"] == stack.backup_id
    assert report["backup"]["recipient"].startswith("vault-transit"), report["backup"]
    assert report["drill"]["isolated"] is True
    junit = ET.parse(next(Path(v[0]) for p, v in found.items() if p.endswith("junit.xml")))
    suite = junit.getroot()
    assert suite.tag == "testsuite" and suite.get("failures") == "0"
    assert int(suite.get("tests", "0")) >= 3

    # The drill's login was to the transit Vault, with the OIDC token, and was revoked;
    # the source cluster heard nothing from the drill.
    new = [a for a in va.login_accessors(stack.transit_audit, "jwt") if a not in logins_before]
    assert new, "no JWT login at the transit Vault"
    assert not [a for a in new if va.accessor_alive(stack.transit_adm, a)]
    assert _audited(stack.source_audit) == source_before, "the drill contacted the source"


def test_a_failing_drill_fails_the_step_and_still_reports(stack: Stack, tmp_path: Path) -> None:
    # The backup is then older than 1s: 2 s after it finished, as a sleep of 2 s right
    # after the fixture made sure, without sleeping again through the time the earlier
    # tests already took.
    time.sleep(max(0.0, stack.backup_done + 2 - time.time()))
    with TokenService(stack.issuer) as tokens:
        runner = make_runner(stack, tmp_path, tokens, **{"max-backup-age": "1s"})
        results = runner.run_job()

    drill = runner.result("drill")
    assert drill.outcome == "failure"
    assert drill.returncode == ExitCode.BACKUP_TOO_OLD == 12, drill.stderr[-2000:]
    assert runner.outputs["drill"]["exit-code"] == "12"
    assert "::error::dr drill failed with exit code 12" in drill.stdout
    # The summary is written all the same: the report, with its verdict.
    assert runner.job_summary.startswith(f"## ❌ vault-dr drill of `{stack.backup_id}`")
    # The `always()` steps still run after the failure: the upload finds the reports.
    outcomes = {r.step["name"]: r.outcome for r in results}
    assert outcomes["Upload the drill reports"] == "github-only"  # would run (not skipped)
    assert outcomes["Remove credentials"] == "success"
    found = {p: glob.glob(p) for p in runner.upload_paths()}
    assert all(len(v) == 1 for v in found.values()), found
    report_json = next(v[0] for p, v in found.items() if p.endswith(".json"))
    report = json.loads(Path(report_json).read_text())
    assert report["passed"] is False and report["exit_code"] == 12
    junit = ET.parse(next(v[0] for p, v in found.items() if p.endswith("junit.xml"))).getroot()
    failed = [c.get("name") for c in junit.iter("testcase") if c.find("failure") is not None]
    assert "backup_age" in failed, failed


def test_a_drill_that_cannot_start_still_writes_the_summary(stack: Stack, tmp_path: Path) -> None:
    with TokenService(stack.issuer) as tokens:
        runner = make_runner(stack, tmp_path, tokens, config=str(tmp_path / "missing.yaml"))
        runner.run_job()
    drill = runner.result("drill")
    assert drill.returncode == ExitCode.USAGE, drill.stderr
    assert "did not run: exit 2" in runner.job_summary
    assert "no such config file" in drill.stderr


def test_seal_login_and_logout_steps(stack: Stack, tmp_path: Path) -> None:
    """The auto-unseal steps against a real Vault: a working token in a 0600 file,
    masked, revoked by the logout step (which runs `always()`)."""
    seen: dict[str, Any] = {}

    def inspect(result: StepResult) -> None:
        if result.step.get("id") == "seal-login" and result.outcome == "success":
            path = Path(runner.exported["VAULT_DR_SEAL_TOKEN_FILE"])
            seen["mode"] = path.stat().st_mode & 0o777
            seen["token"] = path.read_text().strip()
            seen["policies"] = va.lookup_self(stack.transit_adm, seen["token"])["policies"]

    with TokenService(stack.issuer) as tokens:
        runner = make_runner(
            stack,
            tmp_path,
            tokens,
            **{
                "seal-addr": stack.transit.addr,
                "seal-jwt-role": SEAL_ROLE,
                # Fails fast (exit 12) after the logins: this test is about the seal steps.
                "max-backup-age": "1s",
            },
        )
        runner.run_job(after_step=inspect)

    assert runner.result("seal-login").outcome == "success", runner.result("seal-login").stderr
    assert seen["mode"] == 0o600
    assert "vault-dr-transit" in seen["policies"]
    token = seen["token"]
    assert f"::add-mask::{token}" in runner.result("seal-login").stdout.splitlines()
    assert_never_printed(runner, token)
    assert runner.step_named("Seal logout").outcome == "success"
    with pytest.raises(va.VaultCallError) as err:
        va.lookup_self(stack.transit_adm, token)
    assert err.value.status == 403  # revoked

    # A role the seal Vault does not have: the step fails with one ::error:: line.
    (tmp_path / "bad").mkdir()
    with TokenService(stack.issuer) as tokens:
        bad = make_runner(
            stack,
            tmp_path / "bad",
            tokens,
            **{"seal-addr": stack.transit.addr, "seal-jwt-role": "no-such-role"},
        )
        results = bad.run_job()
    login = bad.result("seal-login")
    assert login.outcome == "failure"
    assert "::error::JWT login to the seal Vault" in login.stdout
    assert {r.step["name"]: r.outcome for r in results}["Drill"] == "skipped"
