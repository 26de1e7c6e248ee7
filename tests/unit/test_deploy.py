"""deploy/: the schedules (cron, systemd, Kubernetes) and the image are real and agree
with the CLI and the config they run.

- every `dr` command line in deploy/ (crontab, ExecStart, CronJob args, the image's
  CMD) parses with the real click CLI: subcommand, every option and its value;
- `systemd-analyze verify` accepts the units, with no warning;
- every Kubernetes manifest, the base and each overlay rendered, validates against the
  Kubernetes OpenAPI schemas (kubernetes-validate, strict: unknown fields fail);
- the overlays are rendered by a small renderer here (the kustomize features the base
  documents it uses), and checked against real kustomize (`kubectl kustomize`): no pip
  or npm package has kustomize, Debian's kubectl (1.20) embeds one too old for
  `patches:`, but this machine kind's kubectl (google-cloud-cli's) embeds v5; with
  CI=true a missing kubectl fails;
- every dr.yaml in deploy/ loads with the real config parser, with the environment its
  scheduler gives it ($CREDENTIALS_DIRECTORY, the overlay's ConfigMap);
- checkov passes on deploy/ and the rendered overlays (kubernetes, dockerfile and
  secrets frameworks), each skip with its reason, listed in deploy/README.md
  (deploy/compose/, docker-compose's files, excepted: NOT_SCANNED).

Nothing is started except systemd-analyze, kubectl kustomize, checkov and one
`unshare` probe (the drill unit's isolation under its own restrictions).
"""

from __future__ import annotations

import copy
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import click
import pytest
import yaml

from dr.cli.main import _register_commands, cli
from tests.stack.ci import missing
from tests.stack.tools import checkov_bin, clean_env

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
SYSTEMD = DEPLOY / "systemd"
K8S = DEPLOY / "kubernetes"
BASE = K8S / "base"
OVERLAYS = sorted(p.parent for p in (K8S / "overlays").glob("*/kustomization.yaml"))
CRONTAB = DEPLOY / "cron" / "vault-dr.crontab"
DOCKERFILE = DEPLOY / "Dockerfile"
UNIT_DR = "/opt/vault-dr/bin/dr"  # where the units expect the venv's dr (deploy/README.md)
IMAGE_DIGEST = re.compile(r"@sha256:[0-9a-f]{64}$")
# The Kubernetes versions the manifests must validate against: the oldest where every
# field used is GA (podFailurePolicy: 1.31), and the newest the schemas know.
K8S_VERSIONS = ["1.31.0", "latest"]


# -- readers: unit files, kustomize ----------------------------------------------------


def _unit(path: Path) -> dict[str, list[str]]:
    """Key -> values of a unit file (keys may repeat; sections are not kept apart:
    each key used here belongs to one section)."""
    values: dict[str, list[str]] = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line[0] in "#;[":
            continue
        key, _, value = line.partition("=")
        values.setdefault(key.strip(), []).append(value.strip())
    return values


KNOWN_KEYS = {
    "apiVersion",
    "kind",
    "resources",
    "generatorOptions",
    "configMapGenerator",
    "patches",
}


def _key(doc: dict[str, Any]) -> tuple[str, str, str]:
    meta = doc["metadata"]
    return doc["kind"], meta.get("namespace", ""), meta["name"]


@cache
def _render(path: Path) -> tuple[str, ...]:
    return tuple(json.dumps(d, sort_keys=True) for d in _render_docs(path))


def render(path: Path) -> list[dict[str, Any]]:
    """The resources `kustomize build path` makes (a deep copy per call)."""
    return [json.loads(d) for d in _render(path)]


def _render_docs(path: Path) -> list[dict[str, Any]]:
    """A renderer of the kustomize subset the base documents it uses: resources (files
    and kustomization directories), configMapGenerator (files, literals, namespace,
    behavior create/merge, no name hash) and JSON6902 patches with a kind/name
    target. Anything else in a kustomization fails here, not silently."""
    import jsonpatch

    kustomization = yaml.safe_load((path / "kustomization.yaml").read_text())
    unknown = set(kustomization) - KNOWN_KEYS
    assert not unknown, f"{path}: the test's renderer does not know {sorted(unknown)}"
    docs: list[dict[str, Any]] = []
    for entry in kustomization.get("resources", []):
        target = (path / entry).resolve()
        if target.is_dir():
            docs += render(target)
        else:
            docs += [d for d in yaml.safe_load_all(target.read_text()) if d]
    options = kustomization.get("generatorOptions", {})
    for gen in kustomization.get("configMapGenerator", []):
        assert set(gen) <= {"name", "namespace", "behavior", "files", "literals"}, gen
        data: dict[str, str] = {}
        for name in gen.get("files", []):
            data[Path(name).name] = (path / name).read_text()
        for literal in gen.get("literals", []):
            key, sep, value = literal.partition("=")
            assert sep, f"{path}: literal {literal!r} has no '='"
            data[key] = value
        behavior = gen.get("behavior", "create")
        ident = ("ConfigMap", gen.get("namespace", ""), gen["name"])
        if behavior == "merge":
            (existing,) = [d for d in docs if _key(d) == ident]
            existing["data"].update(data)
            continue
        assert behavior == "create", f"{path}: behavior {behavior!r}"
        assert options.get("disableNameSuffixHash") is True, "the renderer makes no hash"
        assert not any(_key(d) == ident for d in docs), f"{path}: {ident} twice"
        metadata = {"name": gen["name"]}
        if gen.get("namespace"):
            metadata["namespace"] = gen["namespace"]
        docs.append({"apiVersion": "v1", "kind": "ConfigMap", "metadata": metadata, "data": data})
    for patch in kustomization.get("patches", []):
        assert set(patch) == {"target", "patch"}, f"{path}: only inline JSON6902 patches"
        target = patch["target"]
        assert set(target) <= {"kind", "name", "namespace"}, target
        ops = jsonpatch.JsonPatch(yaml.safe_load(patch["patch"]))
        matched = 0
        for i, doc in enumerate(docs):
            kind, namespace, name = _key(doc)
            if (kind, name) == (target["kind"], target["name"]) and target.get(
                "namespace", namespace
            ) == namespace:
                docs[i] = ops.apply(doc)
                matched += 1
        assert matched, f"{path}: the patch target {target} matches no resource"
    return docs


def _pod(cronjob: dict[str, Any]) -> dict[str, Any]:
    return cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]


def _by_key(docs: list[dict[str, Any]]) -> dict[tuple[str, str, str], dict[str, Any]]:
    out = {}
    for doc in docs:
        assert _key(doc) not in out, f"{_key(doc)} twice"
        out[_key(doc)] = doc
    return out


# -- dr command lines -----------------------------------------------------------------


def _crontab_commands() -> list[str]:
    """The command of every schedule line: five time fields, then `VAR=value` words,
    then dr and its arguments up to the first redirection."""
    found = []
    for line in CRONTAB.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#") or re.match(r"^[A-Z_]+=", line):
            continue
        words = shlex.split(line)[5:]
        while words and re.match(r"^[A-Za-z_]\w*=", words[0]):
            words.pop(0)
        words = [w for w in words if not re.match(r"^\d?>>?|^<|^\|", w)]
        found.append(shlex.join(words))
    return found


def _unit_commands() -> list[str]:
    found = []
    for unit in sorted(SYSTEMD.glob("*.service")):
        for value in _unit(unit).get("ExecStart", []):
            words = shlex.split(value)
            assert words[0] == UNIT_DR, f"{unit.name}: ExecStart does not run {UNIT_DR}"
            found.append(shlex.join(["dr", *words[1:]]))
    return found


def _image_entrypoint() -> list[str]:
    text = DOCKERFILE.read_text()
    (entry,) = re.findall(r"^ENTRYPOINT (\[.*\])$", text, re.M)
    return list(json.loads(entry))


def _cronjob_commands() -> list[str]:
    """Each CronJob container's args after the image's ENTRYPOINT (`dr`)."""
    entry = _image_entrypoint()
    found = []
    for path in (BASE, *OVERLAYS):
        for doc in render(path):
            if doc["kind"] != "CronJob":
                continue
            for container in _pod(doc)["containers"]:
                assert "command" not in container, "the image's ENTRYPOINT is dr: no command"
                found.append(shlex.join([*entry, *container["args"]]))
    return sorted(set(found))


def _dockerfile_commands() -> list[str]:
    (cmd,) = re.findall(r"^CMD (\[.*\])$", DOCKERFILE.read_text(), re.M)
    return [shlex.join([*_image_entrypoint(), *json.loads(cmd)])]


def _all_commands() -> list[str]:
    return _crontab_commands() + _unit_commands() + _cronjob_commands() + _dockerfile_commands()


def parse_dr(command: str) -> None:
    """Parses `command` with the real CLI as test_runbook_commands.py does; raises
    click.UsageError (or an AssertionError) on anything the CLI would refuse."""
    _register_commands()  # every command, as `dr --help` lists them
    args = shlex.split(command)
    assert args[0] == "dr", command
    args = args[1:]
    parser = cli.make_parser(click.Context(cli))
    _, left, _ = parser.parse_args(args=list(args))
    if not left:
        assert args and all(a in ("--version", "--help") for a in args), command
        return
    # The group's options are parsed with their types too (`--log-format xml` fails).
    cli.make_context("dr", [*args[: len(args) - len(left)], left[0]])
    sub = cli.get_command(click.Context(cli), left[0])
    assert isinstance(sub, click.Command), f"no command {left[0]!r} in: {command}"
    sub.make_context(left[0], left[1:])  # an unknown option or a bad value raises


def test_deploy_has_its_commands() -> None:
    for sub in ("backup", "prune", "drill"):
        for source in (_crontab_commands, _unit_commands, _cronjob_commands):
            assert any(f" {sub}" in c for c in source()), f"no dr {sub} in {source.__name__}"
    assert any("--jitter" in c and " backup" in c for c in _crontab_commands())


@pytest.mark.parametrize("command", _all_commands())
def test_deploy_command_parses(command: str) -> None:
    parse_dr(command)


@pytest.mark.parametrize(
    "command",
    [
        "dr backup --jiter 10m",  # a misspelled option
        "dr backup --jitter",  # an option without its value
        "dr --log-format xml backup",  # a value the group option does not accept
        "dr backups",  # no such command
        "dr prune --metrics-file",
    ],
)
def test_a_bad_command_line_is_refused(command: str) -> None:
    with pytest.raises((click.UsageError, AssertionError)):
        parse_dr(command)


# -- systemd --------------------------------------------------------------------------


def test_systemd_analyze_verify_accepts_the_units(tmp_path: Path) -> None:
    """`verify` loads each unit as systemd would and refuses a bad setting, an unknown
    key (a warning: any output fails here) or an ExecStart binary that does not exist.
    /opt/vault-dr is not installed on the test machine, so a copy of the units runs
    this venv's real `dr` instead; nothing else is changed."""
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        missing("systemd-analyze", "apt-get install systemd")
    dr_bin = Path(sys.executable).parent / "dr"
    assert dr_bin.is_file(), f"no dr entry point next to {sys.executable}"
    units = sorted([*SYSTEMD.glob("*.service"), *SYSTEMD.glob("*.timer")])
    assert len(units) == 6, units
    for unit in units:
        text = unit.read_text()
        if unit.suffix == ".service":
            assert f"ExecStart={UNIT_DR} " in text, unit.name
            text = text.replace(f"ExecStart={UNIT_DR} ", f"ExecStart={dr_bin} ")
        (tmp_path / unit.name).write_text(text)
    run = subprocess.run(
        [analyze, "verify", *(str(tmp_path / u.name) for u in units)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "SYSTEMD_LOG_COLOR": "0"},
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout + run.stderr == "", f"systemd-analyze verify warned:\n{run.stderr}"


HARDENING = {
    "Type": "oneshot",
    "DynamicUser": "yes",
    "ProtectSystem": "strict",
    "ProtectHome": "yes",
    "PrivateTmp": "yes",
    "NoNewPrivileges": "yes",
    "CapabilityBoundingSet": "",
    "SystemCallFilter": "@system-service",
}


@pytest.mark.parametrize("name", ["backup", "prune", "drill"])
def test_units_are_hardened_and_timed(name: str) -> None:
    service = _unit(SYSTEMD / f"vault-dr-{name}.service")
    for key, value in HARDENING.items():
        assert value in service.get(key, []), f"vault-dr-{name}.service: {key}={value}"
    families = service["RestrictAddressFamilies"][0].split()
    assert {"AF_INET", "AF_INET6", "AF_UNIX"} <= set(families)
    timer = _unit(SYSTEMD / f"vault-dr-{name}.timer")
    assert timer["Persistent"] == ["true"]
    assert timer["RandomizedDelaySec"], "no RandomizedDelaySec"
    assert timer["WantedBy"] == ["timers.target"]
    expected_success = ["14"] if name == "backup" else []
    assert service.get("SuccessExitStatus", []) == expected_success


def test_backup_timer_runs_every_six_hours() -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        missing("systemd-analyze", "apt-get install systemd")
    (calendar,) = _unit(SYSTEMD / "vault-dr-backup.timer")["OnCalendar"]
    run = subprocess.run(
        [analyze, "calendar", "--iterations=5", calendar],
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, "TZ": "UTC", "SYSTEMD_LOG_COLOR": "0"},
    )
    assert run.returncode == 0, run.stderr
    hours = re.findall(r"\d{4}-\d\d-\d\d (\d\d):00:00", run.stdout)
    assert len(hours) == 5, run.stdout
    assert sorted(set(hours)) == ["00", "06", "12", "18"], run.stdout


def test_drill_unit_lets_the_throwaway_isolate() -> None:
    """The drill's throwaway needs a user + network namespace (dr/runtime/
    isolation.py): the unit must allow both, and rtnetlink for `ip link set lo up`."""
    drill = _unit(SYSTEMD / "vault-dr-drill.service")
    assert set(drill["RestrictNamespaces"][0].split()) == {"user", "net"}
    assert "AF_NETLINK" in drill["RestrictAddressFamilies"][0].split()
    assert "PrivateUsers" not in drill and "PrivateNetwork" not in drill
    for other in ("backup", "prune"):
        assert _unit(SYSTEMD / f"vault-dr-{other}.service")["RestrictNamespaces"] == ["yes"]


def test_drill_isolation_works_without_capabilities() -> None:
    """The claim in vault-dr-drill.service: with no capability (CapabilityBoundingSet=),
    no_new_privs (NoNewPrivileges=yes) and an unprivileged uid (DynamicUser=yes), dr's
    own namespace probe still gets a loopback-only network namespace, because a new
    user namespace brings a full capability set of its own. setpriv applies exactly
    those three restrictions to the real probe (systemd's seccomp filter is not
    emulated: unshare and setns are in @system-service's @process)."""
    from dr.runtime.isolation import MODE_USERNS, netns_support

    if os.geteuid() != 0:
        missing("root", "setpriv needs root to drop to another uid")
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        missing("setpriv", "apt-get install util-linux")
    mode, why = netns_support()
    if mode is None:
        missing("network namespaces", why)
    probe = (
        "from dr.runtime.isolation import netns_support; "
        "mode, why = netns_support(); print(mode or 'NONE: ' + why)"
    )
    run = subprocess.run(
        [
            setpriv,
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--inh-caps=-all",
            "--bounding-set=-all",
            "--no-new-privs",
            sys.executable,
            "-c",
            probe,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        cwd="/",
        env={**os.environ, "PYTHONPATH": str(REPO), "HOME": "/nonexistent"},
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == MODE_USERNS, run.stdout + run.stderr


def _strings(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for value in node.values():
            yield from _strings(value)
    elif isinstance(node, list):
        for value in node:
            yield from _strings(value)
    elif isinstance(node, str):
        yield node


def test_every_credential_is_loaded_and_used() -> None:
    """dr.yaml's ${CREDENTIALS_DIRECTORY}/NAME files and the units' LoadCredential=
    names are the same set: no credential referenced that no unit loads, none loaded
    that the config does not use."""
    used = {
        m.group(1)
        for value in _strings(yaml.safe_load((SYSTEMD / "dr.yaml").read_text()))
        if (m := re.fullmatch(r"\$\{CREDENTIALS_DIRECTORY\}/([\w.-]+)", value))
    }
    loaded = {
        value.split(":", 1)[0]
        for unit in SYSTEMD.glob("*.service")
        for value in _unit(unit).get("LoadCredential", [])
    }
    assert used and used == loaded, f"dr.yaml uses {sorted(used)}, units load {sorted(loaded)}"
    for unit in SYSTEMD.glob("*.service"):
        # ${CREDENTIALS_DIRECTORY} is set only for a unit that loads one: else the
        # config's ${CREDENTIALS_DIRECTORY}/... refuses to load.
        assert _unit(unit).get("LoadCredential"), f"{unit.name} loads no credential"


# -- kustomize ------------------------------------------------------------------------


@pytest.mark.parametrize("path", [BASE, *OVERLAYS], ids=lambda p: p.name)
def test_real_kustomize_renders_the_same(path: Path) -> None:
    """The renderer above is only trusted because real kustomize agrees with it."""
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        missing("kubectl (kustomize)", "the machine's google-cloud-cli kubectl embeds kustomize")
    run = subprocess.run(
        [kubectl, "kustomize", str(path)], capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 0, run.stderr
    real = _by_key([d for d in yaml.safe_load_all(run.stdout) if d])
    assert real == _by_key(render(path))


@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize("path", [BASE, *OVERLAYS], ids=lambda p: p.name)
def test_manifests_validate_against_the_kubernetes_schemas(path: Path, version: str) -> None:
    kubernetes_validate = _kubernetes_validate()
    if version == "latest":
        version = kubernetes_validate.utils.latest_version()
    docs = render(path)
    kinds = {d["kind"] for d in docs}
    assert {"Namespace", "ServiceAccount", "ConfigMap", "CronJob", "NetworkPolicy"} <= kinds
    for doc in docs:
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{path.name}: {'/'.join(_key(doc))}: {exc.message} at {list(exc.path)}")


def test_schema_validation_catches_a_bad_manifest() -> None:
    kubernetes_validate = _kubernetes_validate()
    version = kubernetes_validate.utils.latest_version()
    backup = _by_key(render(BASE))[("CronJob", "vault-dr", "vault-dr-backup")]
    for mutate in (
        lambda d: d["spec"].update(concurencyPolicy="Forbid"),  # unknown field
        lambda d: d["spec"].update(startingDeadlineSeconds="1h"),  # wrong type
        lambda d: _pod(d)["containers"][0]["securityContext"].update(readOnlyRoot=True),
    ):
        bad = copy.deepcopy(backup)
        mutate(bad)
        with pytest.raises(kubernetes_validate.ValidationError):
            kubernetes_validate.validate(bad, version, strict=True)


def _kubernetes_validate() -> Any:
    try:
        import kubernetes_validate
        import kubernetes_validate.utils
    except ImportError:
        missing("kubernetes-validate", "pip install -e '.[test]' (the test extra has it)")
    return kubernetes_validate


def _cronjobs(path: Path) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in render(path) if d["kind"] == "CronJob"}


def test_cronjobs_are_locked_down() -> None:
    cronjobs = _cronjobs(BASE)
    assert set(cronjobs) == {"vault-dr-backup", "vault-dr-prune", "vault-dr-drill"}
    accounts = set()
    for name, cronjob in cronjobs.items():
        spec, job, pod = cronjob["spec"], cronjob["spec"]["jobTemplate"]["spec"], _pod(cronjob)
        assert spec["concurrencyPolicy"] == "Forbid", name
        for key in ("startingDeadlineSeconds", "successfulJobsHistoryLimit"):
            assert spec[key] > 0, (name, key)
        assert "backoffLimit" in job and job["activeDeadlineSeconds"] > 0, name
        assert pod["automountServiceAccountToken"] is False, name
        accounts.add(pod["serviceAccountName"])
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] >= 10000
        (container,) = pod["containers"]
        for each in [container, *pod.get("initContainers", [])]:
            where = f"{name}/{each['name']}"
            assert IMAGE_DIGEST.search(each["image"]), f"{where}: image not pinned by digest"
            context = each["securityContext"]
            assert context["readOnlyRootFilesystem"] is True, where
            assert context["allowPrivilegeEscalation"] is False, where
            assert context["capabilities"] == {"drop": ["ALL"]}, where
            assert context["runAsNonRoot"] is True, where
            seccomp = context["seccompProfile"]["type"]
            # The drill's dr alone is Unconfined: its throwaway's user namespace
            # (cronjob-drill.yaml says why; checkov reads only the pod-level profile).
            drill = each is container and name == "vault-dr-drill"
            assert seccomp == ("Unconfined" if drill else "RuntimeDefault"), where
            assert {"cpu", "memory"} <= set(each["resources"]["limits"]), where
            assert {"cpu", "memory"} <= set(each["resources"]["requests"]), where
        mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
        volumes = {v["name"]: v for v in pod["volumes"]}
        assert "emptyDir" in volumes[mounts["/tmp"]], f"{name}: /tmp is not an emptyDir"
    assert len(accounts) == 3, f"the three jobs share ServiceAccounts: {accounts}"


def test_backup_logs_in_with_its_projected_token() -> None:
    """dr.yaml's kubernetes auth reads the token the backup pod projects; only that pod
    has one (prune and drill never log in)."""
    config = yaml.safe_load((BASE / "dr.yaml").read_text())
    auth = config["vault"]["auth"]
    assert auth["method"] == "kubernetes"
    token = Path(auth["token_file"])
    for name, cronjob in _cronjobs(BASE).items():
        pod = _pod(cronjob)
        (container,) = pod["containers"]
        mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
        projected = [
            (v["name"], s["serviceAccountToken"])
            for v in pod["volumes"]
            for s in v.get("projected", {}).get("sources", [])
            if "serviceAccountToken" in s
        ]
        if name != "vault-dr-backup":
            assert projected == [], f"{name} mounts a token it does not need"
            continue
        ((volume, source),) = projected
        assert Path(mounts[volume]) / source["path"] == token
        assert source["audience"] == "vault" and source["expirationSeconds"] <= 3600


def test_key_files_reach_dr_as_0600_files_of_its_own() -> None:
    """dr refuses a writer key or unseal keys file its group may read, which a Secret
    volume's files are: each pod that needs one copies it with `install -m 0600`, as
    its own user, into a memory-backed emptyDir where dr.yaml expects it; and only
    that pod mounts that Secret."""
    config = yaml.safe_load((BASE / "dr.yaml").read_text())
    wanted = {
        "vault-dr-backup": (
            "vault-dr-writer-key",
            Path(config["encryption"]["writer"]["key_file"]),
        ),
        "vault-dr-drill": ("vault-dr-unseal-keys", Path(config["drill"]["unseal_keys_file"])),
    }
    for name, cronjob in _cronjobs(BASE).items():
        pod = _pod(cronjob)
        volumes = {v["name"]: v for v in pod["volumes"]}
        secrets = {v["secret"]["secretName"] for v in volumes.values() if "secret" in v}
        if name not in wanted:
            assert secrets == set() and "initContainers" not in pod, name
            continue
        secret, target = wanted[name]
        assert secrets == {secret}, name
        (init,) = pod["initContainers"]
        assert init["command"][:3] == ["install", "-m", "0600"], init["command"]
        assert Path(init["command"][-1]) == target, (init["command"], target)
        (container,) = pod["containers"]
        mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
        keys = volumes[mounts[str(target.parent)]]
        assert keys["emptyDir"]["medium"] == "Memory", name
        init_mounts = {m["mountPath"]: m["name"] for m in init["volumeMounts"]}
        assert init_mounts[str(target.parent)] == mounts[str(target.parent)]
        assert pod["securityContext"]["runAsUser"] == init["securityContext"]["runAsUser"]


def test_service_accounts_carry_the_cloud_identities() -> None:
    for path in (BASE, *OVERLAYS):
        accounts = [d for d in render(path) if d["kind"] == "ServiceAccount"]
        assert len(accounts) == 3
        for account in accounts:
            annotations = account["metadata"]["annotations"]
            assert annotations["eks.amazonaws.com/role-arn"].startswith("arn:aws:iam::")
            assert annotations["iam.gke.io/gcp-service-account"].endswith(
                ".iam.gserviceaccount.com"
            )
            assert account["automountServiceAccountToken"] is False


def test_overlays_differ_where_clusters_differ() -> None:
    assert [p.name for p in OVERLAYS] == ["prod-eu", "prod-us"]
    seen: dict[str, set[str]] = {"cluster": set(), "schedule": set(), "arn": set()}
    for path in OVERLAYS:
        docs = render(path)
        text = json.dumps(docs)
        # Only the two public keys are left for the operator (the overlay says so).
        left = set(re.findall(r'"(\w+)": "[^"]*REPLACE_ME', text))
        assert left == {"DR_BREAK_GLASS_RECIPIENT", "DR_WRITER_PUBLIC_KEY"}, left
        clusters = {
            d["data"]["DR_CLUSTER"] for d in docs if d["metadata"]["name"] == "vault-dr-cluster"
        }
        assert clusters == {path.name}, clusters  # both namespaces, the same cluster
        seen["cluster"] |= clusters
        seen["schedule"].add(_cronjobs(path)["vault-dr-backup"]["spec"]["schedule"])
        seen["arn"] |= {
            d["metadata"]["annotations"]["eks.amazonaws.com/role-arn"]
            for d in docs
            if d["kind"] == "ServiceAccount"
        }
    assert len(seen["cluster"]) == len(seen["schedule"]) == len(OVERLAYS), seen
    assert len(seen["arn"]) == 3 * len(OVERLAYS), seen["arn"]
    base_schedule = _cronjobs(BASE)["vault-dr-backup"]["spec"]["schedule"]
    assert base_schedule not in seen["schedule"]


# -- the image ------------------------------------------------------------------------


def _stages() -> list[list[str]]:
    """The Dockerfile's instructions (continuation lines joined), split by FROM."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    stages: list[list[str]] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("FROM "):
            stages.append([])
        stages[-1].append(line)
    return stages


def test_image_is_pinned_non_root_and_without_pip() -> None:
    """What can be checked without a registry to pull the base from (the image is not
    built in CI): a multi-stage build from one pinned tag, the final stage running the
    venv's dr as a numeric non-root user, with pip removed from both the venv and the
    base, and no compiler installed."""
    stages = _stages()
    assert len(stages) == 2, "a builder and a final stage"
    bases = [s[0].split()[1] for s in stages]
    assert bases[0] == bases[1], f"the venv's interpreter must be the same in both: {bases}"
    assert re.fullmatch(r"python:3\.\d+\.\d+-slim-\w+", bases[0]), bases[0]
    builder, final = ("\n".join(s) for s in stages)
    assert "pip uninstall --yes pip" in builder
    # Bytecode compiled in the image, after the last removal of __pycache__: otherwise
    # every run compiles dr and boto3 from source again (~0.7 s per command).
    compile_at = builder.find("-m compileall")
    assert compile_at > builder.rfind("__pycache__"), "no bytecode compiled in the image"
    assert "--invalidation-mode unchecked-hash" in builder[compile_at:]
    assert "COPY --from=builder /opt/vault-dr /opt/vault-dr" in final
    assert re.search(r"rm -rf /usr/local/lib/python3\.\d+/site-packages/pip ", final)
    assert not re.search(r"\b(gcc|g\+\+|build-essential|make|pip install)\b", final)
    (user,) = [line for line in stages[1] if line.startswith("USER ")]
    uid = user.split()[1].split(":")[0]
    assert uid.isdigit() and int(uid) >= 10000, user
    assert _image_entrypoint() == ["dr"]
    assert "HEALTHCHECK NONE" in stages[1]
    assert any(line.startswith("LABEL ") for line in stages[1])


def test_dockerignore_keeps_what_the_image_copies() -> None:
    import fnmatch

    patterns = [
        line.strip()
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert ".git" in patterns and ".venv*" in patterns
    copied = [
        word
        for stage in _stages()
        for line in stage
        if line.startswith("COPY ") and "--from=" not in line
        for word in line.split()[1:-1]
    ]
    assert copied, "the Dockerfile copies nothing from the context"
    for source in copied:
        source = source.rstrip("/")
        assert (REPO / source).exists(), f"COPY {source}: not in the repo"
        hit = [p for p in patterns if fnmatch.fnmatch(source, p.rstrip("/"))]
        assert not hit, f"COPY {source} is excluded by .dockerignore {hit}"


# -- the configs load -----------------------------------------------------------------


@cache
def _public_keys() -> dict[str, str]:
    """A real break-glass recipient and writer public key for the placeholders (the
    private halves are thrown away)."""
    import tempfile

    from dr.crypto.writer import generate_writer_key
    from dr.crypto.x25519 import X25519Identity

    with tempfile.TemporaryDirectory() as tmp:
        writer = generate_writer_key(Path(tmp) / "writer.key")
    return {"recipient": X25519Identity.generate().recipient, "writer": writer}


def _parse(text: str, source: str, env: dict[str, str]) -> Any:
    from dr.config import parse_config

    return parse_config(yaml.safe_load(text), source, Path("/etc/vault-dr"), env=env)


def test_systemd_config_loads() -> None:
    keys = _public_keys()
    text = (SYSTEMD / "dr.yaml").read_text()
    text = text.replace("REPLACE_ME_BREAK_GLASS_RECIPIENT", keys["recipient"])
    text = text.replace("REPLACE_ME_WRITER_PUBLIC_KEY", keys["writer"])
    assert "REPLACE_ME" not in text.split("\n", 10)[-1]
    credentials = "/run/credentials/vault-dr-backup.service"
    config = _parse(text, "deploy/systemd/dr.yaml", {"CREDENTIALS_DIRECTORY": credentials})
    assert str(config.encryption.writer_key_file) == f"{credentials}/writer.key"
    assert config.drill.runtime == "process"
    # Without the unit's credentials directory it does not load (the unit comment's claim).
    from dr.errors import ConfigError

    with pytest.raises(ConfigError, match="CREDENTIALS_DIRECTORY"):
        _parse(text, "deploy/systemd/dr.yaml", {})


@pytest.mark.parametrize("path", [BASE, *OVERLAYS], ids=lambda p: p.name)
def test_kubernetes_config_loads_with_its_configmap(path: Path) -> None:
    """Each namespace's dr.yaml with that namespace's vault-dr-cluster values as the
    environment (envFrom); the base's REPLACE_ME placeholders are refused."""
    from dr.errors import ConfigError

    docs = _by_key(render(path))
    for namespace in ("vault-dr", "vault-dr-drill"):
        text = docs[("ConfigMap", namespace, "vault-dr-config")]["data"]["dr.yaml"]
        env = dict(docs[("ConfigMap", namespace, "vault-dr-cluster")]["data"])
        if path == BASE:
            with pytest.raises(ConfigError):
                _parse(text, f"{path.name}/{namespace}", env)
            continue
        env["DR_BREAK_GLASS_RECIPIENT"] = _public_keys()["recipient"]
        env["DR_WRITER_PUBLIC_KEY"] = _public_keys()["writer"]
        config = _parse(text, f"{path.name}/{namespace}", env)
        assert config.cluster == path.name
        assert config.metrics.pushgateway, "the CronJobs' metrics path is the Pushgateway"


# -- checkov --------------------------------------------------------------------------

# checkov failures of files in deploy/ that are not this test's to change (deploy/
# drill-image/ is the container drill runtime's image, kept as it is), each with why it
# is accepted. A listed failure that stops failing fails the test too (stale entry).
ACCEPTED = {
    ("CKV_DOCKER_2", "/drill-image/Dockerfile"): "a FROM scratch image holding one static "
    "server binary, started and stopped by the drill itself: there is no shell for a probe",
    ("CKV_DOCKER_3", "/drill-image/Dockerfile"): "the container runtime starts it as 0:0 "
    "with network none and no capability added (dr/runtime/container.py); scratch has no "
    "user database for a USER line",
}
FRAMEWORKS = ("kubernetes", "dockerfile", "secrets")
# Not this test's: the docker-compose stack's dev files (local SeaweedFS credentials
# that checkov's secrets scan flags) are checked with docker-compose.yml.
NOT_SCANNED = ("compose",)


def _skips() -> Iterator[tuple[str, str, str]]:
    """(check id, reason, file) of every inline skip in deploy/."""
    for path in sorted(DEPLOY.rglob("*")):
        if not path.is_file():
            continue
        text = path.read_text(errors="replace")
        for m in re.finditer(r"checkov:skip=(CKV2?_[A-Z0-9_]+)(?::([^\n]*))?", text):
            yield m.group(1), (m.group(2) or "").strip(), path.name
        for m in re.finditer(r"checkov\.io/skip\d+: *(CKV2?_[A-Z0-9_]+)(?:=([^\n]*))?", text):
            yield m.group(1), (m.group(2) or "").strip(), path.name


def test_every_checkov_skip_has_a_reason_and_is_listed_in_the_readme() -> None:
    readme = (DEPLOY / "README.md").read_text()
    for check, reason, name in _skips():
        assert len(reason) > 20, f"{name}: skip of {check} without a reason"
        assert f"`{check}`" in readme, f"deploy/README.md does not list the skip of {check}"
    for check, _ in ACCEPTED:
        assert f"`{check}`" in readme, f"deploy/README.md does not list {check}"


def _checkov_reports(text: str) -> list[dict[str, Any]]:
    """checkov -o json prints one report, or a list of them (one per framework)."""
    try:
        reports = json.loads(text)
    except ValueError:
        pytest.fail(f"checkov printed no JSON: {text[-2000:]}")
    return reports if isinstance(reports, list) else [reports]


def test_checkov_passes_on_deploy(tmp_path: Path) -> None:
    """kubernetes, dockerfile and secrets frameworks over a copy of deploy/ (less
    NOT_SCANNED) with the overlays as rendered beside it (their patches change no
    security setting today, but a patch could). One directory, so one report per
    framework: checkov prints a separate JSON document for each -d."""
    checkov = checkov_bin()
    scan = tmp_path / "deploy"
    shutil.copytree(DEPLOY, scan, ignore=shutil.ignore_patterns(*NOT_SCANNED))
    (scan / "rendered").mkdir()
    for path in OVERLAYS:
        (scan / "rendered" / f"{path.name}.yaml").write_text(yaml.safe_dump_all(render(path)))
    run = subprocess.run(
        [
            str(checkov),
            *("-d", str(scan)),
            *("--framework", *FRAMEWORKS),
            *("-o", "json", "--compact", "--skip-download"),
        ],
        cwd=tmp_path,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode in {0, 1}, f"checkov did not run ({run.returncode}): {run.stderr}"
    reports = _checkov_reports(run.stdout)
    by_type = {r["check_type"]: r for r in reports}
    failed = {
        (c["check_id"], c["file_path"]) for r in reports for c in r["results"]["failed_checks"]
    }
    assert failed - set(ACCEPTED) == set(), f"checkov failed: {sorted(failed - set(ACCEPTED))}"
    assert set(ACCEPTED) <= failed, f"accepted but no longer failing: {set(ACCEPTED) - failed}"
    for framework in ("kubernetes", "dockerfile"):
        assert framework in by_type, f"checkov scanned no {framework}: {sorted(by_type)}"
        summary = by_type[framework]["summary"]
        assert summary["parsing_errors"] == 0 and summary["passed"] > 0, summary
    skipped = {c["check_id"] for r in reports for c in r["results"]["skipped_checks"]}
    assert skipped == {check for check, _, _ in _skips()}, skipped
    # Every manifest was scanned: the base's files and both rendered overlays.
    results = by_type["kubernetes"]["results"]
    scanned = {c["file_path"] for c in [*results["passed_checks"], *results["skipped_checks"]]}
    expected = {f"/kubernetes/base/{p.name}" for p in BASE.glob("cronjob-*.yaml")}
    expected |= {f"/rendered/{p.name}.yaml" for p in OVERLAYS}
    assert expected <= scanned, sorted(expected - scanned)
    assert "/Dockerfile" in {
        c["file_path"] for c in by_type["dockerfile"]["results"]["passed_checks"]
    }
