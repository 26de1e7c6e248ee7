"""terraform/: checkov is clean, and the policies keep every stored version (issue 8).

The backup writer (the role `dr backup` and `dr rewrap` use) may add objects but never
turn a stored version noncurrent, expire or delete it: data objects are write-once
(every object-creating PutObject needs `If-None-Match: *`), manifest.json is the one
key it may write again (rewrap, docs/manifest.md), and every delete, versioning,
lifecycle, policy, Object Lock and retention action is denied. Object Lock is always on,
COMPLIANCE, with a retention >= the noncurrent-version expiry.

The .tf files are parsed with python-hcl2 and their aws_iam_policy_document blocks
rendered to statements; a small evaluator of IAM's rules (an explicit Deny in any
policy wins, else an Allow grants, else denied) then answers concrete requests. No
terraform provider and no AWS are needed (`terraform init` cannot run in CI).
"""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from tests.stack.ci import missing

REPO = Path(__file__).resolve().parents[2]
TF = REPO / "terraform"
CHECKOV_SH = REPO / ".ci" / "checkov.sh"

ACCOUNT = "123456789012"
BUCKET_ARN = "arn:aws:s3:::acme-vault-backups"
WRITER_ARN = f"arn:aws:iam::{ACCOUNT}:role/vault-dr-backup-prod"
RESTORE_ARN = f"arn:aws:iam::{ACCOUNT}:role/vault-dr-restore-prod"
KEY_ARN = f"arn:aws:kms:eu-west-1:{ACCOUNT}:key/0b8a5c1e-0000-4000-8000-000000000000"

# What the policy documents reference, given concrete values.
REFS: dict[str, Any] = {
    "aws_s3_bucket.backups.arn": BUCKET_ARN,
    "aws_iam_role.backup.arn": WRITER_ARN,
    "aws_iam_role.restore.arn": RESTORE_ARN,
    "aws_kms_key.backup.arn": KEY_ARN,
    "data.aws_caller_identity.current.account_id": ACCOUNT,
    "var.cluster": "prod",
    "var.backup_principal_arns": [f"arn:aws:iam::{ACCOUNT}:role/vault-backup-host"],
    "var.restore_principal_arns": [f"arn:aws:iam::{ACCOUNT}:role/vault-dr-ci"],
}

BACKUP = "backups/prod/20261126T060000Z-3f9a1c"
DATA_KEYS = [
    f"{BACKUP}/snapshot.enc",
    f"{BACKUP}/catalog.enc",
    "prod/20261126T060000Z-3f9a1c/snapshot.enc",  # empty prefix
]
MANIFEST_KEY = f"{BACKUP}/manifest.json"

# The brief's list, each of which must be explicitly denied to the writer.
HISTORY_ACTIONS = [
    "s3:DeleteObject",
    "s3:DeleteObjectVersion",
    "s3:PutBucketVersioning",
    "s3:PutLifecycleConfiguration",
    "s3:PutBucketPolicy",
    "s3:DeleteBucketPolicy",
    "s3:PutBucketObjectLockConfiguration",
    "s3:PutObjectRetention",
    "s3:PutObjectLegalHold",
    "s3:BypassGovernanceRetention",
]
OBJECT_ACTIONS = {
    "s3:DeleteObject",
    "s3:DeleteObjectVersion",
    "s3:PutObjectRetention",
    "s3:PutObjectLegalHold",
    "s3:BypassGovernanceRetention",
}


# -- HCL ------------------------------------------------------------------------------


def _unquote(value: str) -> str:
    # python-hcl2 >= 7 keeps the quotes of string literals, older versions drop them.
    if len(value) >= 2 and value[0] == value[-1] == '"':
        try:
            return str(json.loads(value))
        except ValueError:
            return value[1:-1]
    return value


def _clean(node: Any) -> Any:
    if isinstance(node, dict):
        return {_unquote(k): _clean(v) for k, v in node.items() if not k.startswith("__")}
    if isinstance(node, list):
        return [_clean(v) for v in node]
    if isinstance(node, str):
        return _unquote(node)
    return node


@dataclass
class Module:
    resources: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    data: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    variables: dict[str, dict[str, Any]] = field(default_factory=dict)
    locals: dict[str, Any] = field(default_factory=dict)


@cache
def _module() -> Module:
    try:
        import hcl2
    except ImportError:
        missing("python-hcl2", "pip install -e '.[test]' (the test extra has python-hcl2)")
    module = Module()
    for path in sorted(TF.glob("*.tf")):
        with path.open(encoding="utf-8") as f:
            doc = _clean(hcl2.load(f))
        for kind, into in (("resource", module.resources), ("data", module.data)):
            for entry in doc.get(kind, []):
                for rtype, named in entry.items():
                    for name, body in named.items():
                        into[(rtype, name)] = body
        for entry in doc.get("variable", []):
            module.variables.update(entry)
        for entry in doc.get("locals", []):
            module.locals.update(entry)
    assert module.resources, f"no resources parsed from {TF}"
    return module


_REF = re.compile(r"\$\{([^}]*)\}")


def _resolve(value: Any) -> Any:
    """The value with every ${reference} replaced (locals, REFS); unknown ones fail."""
    if isinstance(value, list):
        return [_resolve(v) for v in value]
    if not isinstance(value, str):
        return value
    whole = _REF.fullmatch(value)
    if whole:
        return _ref(whole.group(1).strip())

    def text(m: re.Match[str]) -> str:
        resolved = _ref(m.group(1).strip())
        assert isinstance(resolved, str), f"{m.group(0)} in {value!r} is not a string"
        return resolved

    return _REF.sub(text, value)


def _ref(expr: str) -> Any:
    if expr.startswith("local."):
        name = expr.removeprefix("local.")
        assert name in _module().locals, f"unknown local {name}"
        return _resolve(_module().locals[name])
    assert expr in REFS, f"the test does not know the reference {expr!r}: add it to REFS"
    return REFS[expr]


def _hcl_bool(expr: str, values: Mapping[str, float]) -> bool:
    """Evaluates a simple HCL condition (var.x, numbers, comparisons, &&, ||, floor)."""
    inner = _REF.fullmatch(expr)
    text = inner.group(1) if inner else expr
    assert re.fullmatch(r"[\w\s.<>=!&|()]+", text), f"condition too complex: {text!r}"
    text = text.replace("&&", " and ").replace("||", " or ")
    text = re.sub(r"!(?!=)", " not ", text)
    text = re.sub(r"\bvar\.(\w+)", r"v_\1", text)
    names: dict[str, Any] = {f"v_{k}": v for k, v in values.items()}
    names["floor"] = math.floor
    return bool(eval(text, {"__builtins__": {}}, names))


# -- IAM policy documents and a small evaluator ---------------------------------------


@dataclass(frozen=True)
class Condition:
    test: str
    variable: str
    values: tuple[str, ...]


@dataclass(frozen=True)
class Statement:
    sid: str
    effect: str
    actions: tuple[str, ...]
    not_actions: tuple[str, ...]
    resources: tuple[str, ...]
    not_resources: tuple[str, ...]
    principals: tuple[tuple[str, tuple[str, ...]], ...]
    conditions: tuple[Condition, ...]


def _strings(value: Any) -> tuple[str, ...]:
    value = _resolve(value)
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    assert all(isinstance(v, str) for v in value), value
    return tuple(value)


def policy(name: str) -> list[Statement]:
    body = _module().data.get(("aws_iam_policy_document", name))
    assert body is not None, f'no data "aws_iam_policy_document" "{name}"'
    statements = []
    for s in body.get("statement", []):
        statements.append(
            Statement(
                sid=_resolve(s.get("sid", "")),
                effect=_resolve(s.get("effect", "Allow")),
                actions=_strings(s.get("actions")),
                not_actions=_strings(s.get("not_actions")),
                resources=_strings(s.get("resources")),
                not_resources=_strings(s.get("not_resources")),
                principals=tuple(
                    (_resolve(p["type"]), _strings(p["identifiers"]))
                    for p in s.get("principals", [])
                ),
                conditions=tuple(
                    Condition(_resolve(c["test"]), _resolve(c["variable"]), _strings(c["values"]))
                    for c in s.get("condition", [])
                ),
            )
        )
    assert statements, f"policy document {name} has no statements"
    return statements


def _wild(pattern: str, value: str, *, ignore_case: bool) -> bool:
    rx = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.fullmatch(rx, value, re.IGNORECASE if ignore_case else 0) is not None


@dataclass(frozen=True)
class Request:
    action: str
    resource: str
    principal: str = WRITER_ARN
    context: Mapping[str, str] = field(default_factory=dict)

    def value(self, key: str) -> str | None:
        # Condition key names are case-insensitive.
        for k, v in self.context.items():
            if k.lower() == key.lower():
                return v
        return None


def _condition_holds(c: Condition, request: Request) -> bool:
    actual = request.value(c.variable)
    if c.test == "Null":
        (wanted,) = c.values
        return (actual is None) == (wanted.lower() == "true")
    if actual is None:
        return False
    if c.test == "Bool":
        return any(actual.lower() == v.lower() for v in c.values)
    if c.test == "StringEquals":
        return actual in c.values
    if c.test in {"ArnEquals", "ArnLike"}:
        return any(_wild(v, actual, ignore_case=False) for v in c.values)
    raise AssertionError(f"the evaluator does not know the operator {c.test}: extend it")


def _applies(s: Statement, request: Request, *, resource_policy: bool) -> bool:
    def any_action(patterns: Iterable[str]) -> bool:
        return any(_wild(p, request.action, ignore_case=True) for p in patterns)

    def any_resource(patterns: Iterable[str]) -> bool:
        return any(_wild(p, request.resource, ignore_case=False) for p in patterns)

    if s.actions and not any_action(s.actions):
        return False
    if s.not_actions and any_action(s.not_actions):
        return False
    if s.resources and not any_resource(s.resources):
        return False
    if s.not_resources and any_resource(s.not_resources):
        return False
    if resource_policy and not any(
        (ptype == "*" and "*" in ids) or (ptype == "AWS" and request.principal in ids)
        for ptype, ids in s.principals
    ):
        return False
    return all(_condition_holds(c, request) for c in s.conditions)


def decide(
    request: Request, identity: list[Statement], bucket: list[Statement] | None = None
) -> str:
    """'deny' (an explicit Deny applies), 'allow' (an Allow applies), else 'implicit'.
    Same account: an Allow in either the identity or the bucket policy grants."""
    applying = [s for s in identity if _applies(s, request, resource_policy=False)]
    applying += [s for s in bucket or [] if _applies(s, request, resource_policy=True)]
    if any(s.effect == "Deny" for s in applying):
        return "deny"
    if any(s.effect == "Allow" for s in applying):
        return "allow"
    return "implicit"


# An identity policy that grants the writer everything: what the bucket policy alone
# still refuses holds whatever is attached to the role later.
ADMIN = [Statement("Admin", "Allow", ("*",), (), ("*",), (), (), ())]


def put(key: str, *, if_none_match: bool, creates_object: bool = True) -> Request:
    """PutObject / CompleteMultipartUpload / CopyObject (creates_object) or
    CreateMultipartUpload / UploadPart (not creates_object) of `key`, by the writer."""
    context = {
        "aws:PrincipalArn": WRITER_ARN,
        "aws:SecureTransport": "true",
        "s3:ObjectCreationOperation": "true" if creates_object else "false",
    }
    if if_none_match:
        context["s3:if-none-match"] = "*"
    return Request("s3:PutObject", f"{BUCKET_ARN}/{key}", WRITER_ARN, context)


def history(action: str, principal: str = WRITER_ARN) -> Request:
    resource = f"{BUCKET_ARN}/{DATA_KEYS[0]}" if action in OBJECT_ACTIONS else BUCKET_ARN
    context = {"aws:PrincipalArn": principal, "aws:SecureTransport": "true"}
    return Request(action, resource, principal, context)


# -- checkov --------------------------------------------------------------------------


def test_checkov_passes_on_terraform() -> None:
    # checkov runs from its own venv: nothing of this interpreter's may leak into it.
    env = {k: v for k, v in os.environ.items() if k not in {"PYTHONPATH", "PYTHONHOME"}}
    try:
        run = subprocess.run(
            ["bash", str(CHECKOV_SH), "-o", "json"],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
    except FileNotFoundError:
        missing("bash", "checkov runs through .ci/checkov.sh")
    if run.returncode == 70:
        missing("checkov", f"bash .ci/checkov.sh could not install it: {run.stderr[-800:]}")
    assert run.returncode in {0, 1}, f"checkov failed to run ({run.returncode}): {run.stderr}"
    try:
        reports = json.loads(run.stdout)
    except ValueError:
        pytest.fail(f"checkov printed no JSON: {run.stdout[-1000:]}{run.stderr[-1000:]}")
    reports = reports if isinstance(reports, list) else [reports]
    failed = [
        (c["check_id"], c["resource"], c["file_path"])
        for report in reports
        for c in report["results"].get("failed_checks", [])
    ]
    assert failed == [], f"checkov failed checks: {failed}"
    assert run.returncode == 0, run.stdout[-2000:]
    terraform = [r for r in reports if r["check_type"] == "terraform"]
    assert terraform, f"checkov scanned no terraform: {[r['check_type'] for r in reports]}"
    assert terraform[0]["summary"]["parsing_errors"] == 0
    assert terraform[0]["summary"]["passed"] > 0


def test_every_checkov_skip_has_a_reason_and_is_listed_in_the_readme() -> None:
    inline = {}
    for path in TF.glob("*.tf"):
        for m in re.finditer(r"#\s*checkov:skip=([A-Z0-9_]+)(?::(.*))?", path.read_text()):
            reason = (m.group(2) or "").strip()
            assert len(reason) > 20, f"{path.name}: skip of {m.group(1)} without a reason"
            inline[m.group(1)] = reason
    readme = (TF / "README.md").read_text()
    listed = set(re.findall(r"`(CKV2?_[A-Z0-9_]+)`", readme))
    assert listed == set(inline), (
        f"terraform/README.md lists {sorted(listed)}, the .tf files skip {sorted(inline)}"
    )
    assert "--skip-check" not in CHECKOV_SH.read_text().split("set -euo pipefail")[1], (
        ".ci/checkov.sh must not skip checks: skip inline, next to the resource"
    )


# -- the writer -----------------------------------------------------------------------


@pytest.mark.parametrize("key", [*DATA_KEYS, MANIFEST_KEY])
def test_writer_writes_new_objects_with_if_none_match(key: str) -> None:
    writer, bucket = policy("backup"), policy("bucket")
    assert decide(put(key, if_none_match=True), writer, bucket) == "allow"
    # CreateMultipartUpload and UploadPart carry no condition header and create nothing.
    assert decide(put(key, if_none_match=False, creates_object=False), writer, bucket) == "allow"


@pytest.mark.parametrize("key", DATA_KEYS)
def test_writer_cannot_overwrite_a_data_object(key: str) -> None:
    """Without If-None-Match a PutObject / CompleteMultipartUpload / CopyObject could
    write over a stored snapshot.enc or catalog.enc, making its version noncurrent."""
    request = put(key, if_none_match=False)
    assert decide(request, policy("backup")) != "allow", "the writer's role policy allows it"
    assert decide(request, policy("backup"), policy("bucket")) != "allow"
    # The bucket policy refuses it by itself, whatever policy the role is given later.
    assert decide(request, ADMIN, policy("bucket")) == "deny", (
        "the bucket policy does not deny the writer an overwrite of a data object"
    )
    # Other principals are not bound by the writer's rule (the bucket owner's tools).
    context = {**request.context, "aws:PrincipalArn": RESTORE_ARN}
    other = Request(request.action, request.resource, RESTORE_ARN, context)
    assert decide(other, ADMIN, policy("bucket")) == "allow"


def test_writer_allows_putobject_of_data_objects_only_with_the_condition() -> None:
    """Statement form: every Allow of s3:PutObject that covers a data object carries
    s3:if-none-match (present) or s3:ObjectCreationOperation = false."""
    write_once = Condition("Null", "s3:if-none-match", ("false",))
    parts_only = Condition("Bool", "s3:ObjectCreationOperation", ("false",))
    covering = [
        s
        for s in policy("backup")
        if s.effect == "Allow"
        and any(_wild(a, "s3:PutObject", ignore_case=True) for a in s.actions)
        and any(
            _wild(r, f"{BUCKET_ARN}/{key}", ignore_case=False)
            for r in s.resources
            for key in DATA_KEYS
        )
    ]
    assert covering, "the writer cannot write data objects at all"
    for s in covering:
        assert write_once in s.conditions or parts_only in s.conditions, (
            f"statement {s.sid or '?'} allows PutObject of data objects unconditionally"
        )


def test_writer_may_write_manifest_json_again_and_nothing_else() -> None:
    """The one documented exception: `dr rewrap` writes a new manifest.json version.
    It makes only the old manifest noncurrent, which Object Lock then keeps."""
    writer, bucket = policy("backup"), policy("bucket")
    assert decide(put(MANIFEST_KEY, if_none_match=False), writer, bucket) == "allow"
    for key in (f"{BACKUP}/other.bin", f"{BACKUP}/manifest.json.tmp", f"{BACKUP}/snapshot"):
        assert decide(put(key, if_none_match=False), writer, bucket) != "allow", key


@pytest.mark.parametrize("action", HISTORY_ACTIONS)
def test_writer_cannot_delete_expire_or_unlock(action: str) -> None:
    request = history(action)
    assert decide(request, policy("backup")) == "deny", (
        f"the writer's role policy does not explicitly deny {action}"
    )
    assert decide(request, ADMIN, policy("bucket")) == "deny", (
        f"the bucket policy does not deny {action} to the writer"
    )


def test_restore_role_only_reads() -> None:
    restore, bucket = policy("restore"), policy("bucket")

    def as_restore(request: Request) -> Request:
        context = {**request.context, "aws:PrincipalArn": RESTORE_ARN}
        return Request(request.action, request.resource, RESTORE_ARN, context)

    read = Request("s3:GetObjectVersion", f"{BUCKET_ARN}/{DATA_KEYS[0]}", RESTORE_ARN)
    assert decide(as_restore(read), restore, bucket) == "allow"
    assert decide(as_restore(put(DATA_KEYS[0], if_none_match=True)), restore, bucket) != "allow"
    for action in HISTORY_ACTIONS:
        assert decide(history(action, RESTORE_ARN), restore, bucket) != "allow", action


def test_bucket_refuses_plain_http() -> None:
    request = Request(
        "s3:GetObject",
        f"{BUCKET_ARN}/{DATA_KEYS[0]}",
        RESTORE_ARN,
        {"aws:PrincipalArn": RESTORE_ARN, "aws:SecureTransport": "false"},
    )
    assert decide(request, ADMIN, policy("bucket")) == "deny"


# -- Object Lock ----------------------------------------------------------------------


def test_object_lock_is_on_in_compliance_mode() -> None:
    m = _module()
    bucket = m.resources[("aws_s3_bucket", "backups")]
    assert bucket.get("object_lock_enabled") is True, "object_lock_enabled must be true"
    lock = m.resources.get(("aws_s3_bucket_object_lock_configuration", "backups"))
    assert lock is not None, "no aws_s3_bucket_object_lock_configuration"
    assert "count" not in lock and "for_each" not in lock, "Object Lock must not be optional"
    (rule,) = lock["rule"]
    (retention,) = rule["default_retention"]
    assert retention["mode"] == "COMPLIANCE"
    assert retention.get("days") == "${var.object_lock_days}" and "years" not in retention
    versioning = m.resources[("aws_s3_bucket_versioning", "backups")]
    assert versioning["versioning_configuration"][0]["status"] == "Enabled"

    (lifecycle_rule,) = m.resources[("aws_s3_bucket_lifecycle_configuration", "backups")]["rule"]
    (expiry,) = lifecycle_rule["noncurrent_version_expiration"]
    assert expiry["noncurrent_days"] == "${var.noncurrent_version_days}"
    defaults = _defaults()
    assert defaults["object_lock_days"] >= defaults["noncurrent_version_days"] >= 1


def _defaults() -> dict[str, float]:
    variables = _module().variables
    return {
        name: variables[name]["default"] for name in ("object_lock_days", "noncurrent_version_days")
    }


def _accepted(values: Mapping[str, float]) -> bool:
    """Whether the variable validations and the resource preconditions accept values."""
    m = _module()
    checks = []
    for name in values:
        checks += [v["condition"] for v in m.variables[name].get("validation", [])]
    for body in m.resources.values():
        for lifecycle in body.get("lifecycle", []):
            checks += [p["condition"] for p in lifecycle.get("precondition", [])]
    relevant = [c for c in checks if any(f"var.{name}" in c for name in values)]
    assert relevant, "no validation or precondition on the Object Lock variables"
    return all(_hcl_bool(c, values) for c in relevant)


@pytest.mark.parametrize(
    ("lock_days", "noncurrent_days", "ok"),
    [
        (90, 90, True),
        (365, 90, True),
        (30, 90, False),  # a noncurrent version could expire while still meant locked
        (89, 90, False),
        (0, 0, False),  # Object Lock cannot be turned off
        (90.5, 90, False),
    ],
)
def test_retention_at_least_the_noncurrent_expiry(
    lock_days: float, noncurrent_days: float, ok: bool
) -> None:
    values = {"object_lock_days": lock_days, "noncurrent_version_days": noncurrent_days}
    assert _accepted(values) is ok, values
    assert _accepted(_defaults())
