"""terraform/ as a module: checkov is clean, terraform validates the example, and the
policies give each role exactly its job (issues 8 and 11).

The backup writer (`dr backup`, `dr rewrap --identity`) may add objects but never turn
a stored version noncurrent, expire or delete it: data objects are write-once (every
object-creating PutObject needs `If-None-Match: *`), manifest.json is the one backup
key it may write again (rewrap, docs/manifest.md), lock.json only with `If-Match`, and
every delete, versioning, lifecycle, policy, Object Lock and retention action is denied;
it wraps data keys but never decrypts one. The pruner deletes versions and aborts
uploads but writes no backup and loosens no lock; the drill reader reads, unwraps and
leaves records. The KMS key policy, not IAM, says who uses the key, and only in
vault-dr's EncryptionContext (dr/crypto/wrapping.py's WrapContext, used here as is).

The .tf files are parsed with python-hcl2 and their aws_iam_policy_document blocks
rendered to statements (a small HCL expression evaluator fills in references); a small
evaluator of IAM's rules (an explicit Deny in any policy wins, else an Allow grants,
else denied; for KMS the key policy must allow the principal or delegate to the account)
then answers concrete requests. `terraform validate` runs on the example with the AWS
provider from the machine's plugin mirror; no AWS is contacted.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import subprocess
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from dr.crypto.wrapping import WrapContext
from tests.stack.ci import missing

REPO = Path(__file__).resolve().parents[2]
TF = REPO / "terraform"
CHECKOV_SH = REPO / ".ci" / "checkov.sh"

ACCOUNT = "123456789012"
ROOT_ARN = f"arn:aws:iam::{ACCOUNT}:root"
BUCKET_ARN = "arn:aws:s3:::acme-vault-backups"
REPLICA_BUCKET_ARN = "arn:aws:s3:::acme-vault-backups-replica"
WRITER_ARN = f"arn:aws:iam::{ACCOUNT}:role/vault-dr-backup-writer-prod"
PRUNER_ARN = f"arn:aws:iam::{ACCOUNT}:role/vault-dr-pruner-prod"
DRILL_ARN = f"arn:aws:iam::{ACCOUNT}:role/vault-dr-drill-reader-prod"
GITHUB_ROLE_ARN = f"arn:aws:iam::{ACCOUNT}:role/vault-dr-github-drill-prod"
REPLICATION_ARN = f"arn:aws:iam::{ACCOUNT}:role/vault-dr-replication-prod"
TERRAFORM_ARN = f"arn:aws:iam::{ACCOUNT}:role/terraform"
KMS_ADMIN_ARN = f"arn:aws:iam::{ACCOUNT}:role/security-admin"
OTHER_ARN = f"arn:aws:iam::{ACCOUNT}:role/some-admin"  # any other principal of the account
OIDC_ARN = f"arn:aws:iam::{ACCOUNT}:oidc-provider/token.actions.githubusercontent.com"
KEY_ARN = f"arn:aws:kms:eu-west-1:{ACCOUNT}:key/0b8a5c1e-0000-4000-8000-000000000000"
REPLICA_KEY_ARN = f"arn:aws:kms:eu-central-1:{ACCOUNT}:key/1c9b6d2f-0000-4000-8000-000000000000"
S3_VIA = "s3.eu-west-1.amazonaws.com"

# What the module references, given concrete values (a variable not named here takes
# its default). key_prefix stays "" (the whole bucket) here; PREFIXED tests a prefix.
REFS: dict[str, Any] = {
    "aws_s3_bucket.backups.arn": BUCKET_ARN,
    "aws_iam_role.backup.arn": WRITER_ARN,
    "aws_iam_role.pruner.arn": PRUNER_ARN,
    "aws_iam_role.drill_reader.arn": DRILL_ARN,
    "aws_iam_role.github_drill[*].arn": [GITHUB_ROLE_ARN],
    "aws_iam_role.replication[*].arn": [],
    "aws_iam_openid_connect_provider.github[*].arn": [OIDC_ARN],
    "aws_kms_key.backup.arn": KEY_ARN,
    "aws_s3_bucket.replica[0].arn": REPLICA_BUCKET_ARN,
    "aws_kms_key.replica[0].arn": REPLICA_KEY_ARN,
    "data.aws_caller_identity.current.account_id": ACCOUNT,
    "data.aws_partition.current.partition": "aws",
    "data.aws_region.current.name": "eu-west-1",
    "data.aws_region.replica[0].name": "eu-central-1",
    "data.aws_iam_session_context.current.issuer_arn": TERRAFORM_ARN,
    "var.bucket_name": "acme-vault-backups",
    "var.cluster": "prod",
    "var.backup_principal_arns": [f"arn:aws:iam::{ACCOUNT}:role/vault-backup-host"],
    "var.pruner_principal_arns": [f"arn:aws:iam::{ACCOUNT}:role/vault-dr-ops"],
    "var.drill_principal_arns": [f"arn:aws:iam::{ACCOUNT}:role/vault-dr-oncall"],
    "var.kms_admin_arns": [KMS_ADMIN_ARN],
    "var.github_repository": "acme/infra",
}
PREFIXED = {**REFS, "var.key_prefix": "backups/"}

BACKUP_ID = "20261126T060000Z-3f9a1c"
BACKUP = f"backups/prod/{BACKUP_ID}"
DATA_KEYS = [
    f"{BACKUP}/snapshot.enc",
    f"{BACKUP}/catalog.enc",
    f"prod/{BACKUP_ID}/snapshot.enc",  # empty prefix
]
MANIFEST_KEY = f"{BACKUP}/manifest.json"
LOCK_KEY = "backups/prod/lock.json"
RECORD_KEY = f"backups/prod/records/{BACKUP_ID}/drill-20261126T070000Z-a1b2c3.json"
STATE_KEY = "backups/prod/state/backup.json"

# vault-dr's own EncryptionContext for a backup of cluster prod (what awskms.py sends).
CONTEXT = WrapContext(cluster="prod", backup_id=BACKUP_ID).as_mapping()

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
# ... of which these loosen Object Lock or the bucket's rules: denied to every role.
PROTECTION_ACTIONS = [a for a in HISTORY_ACTIONS if "Delete" not in a or "Policy" in a]
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


class Unknown:
    """A reference the test was given no value for. Harmless in the branch of a
    conditional that is not taken; an assertion anywhere else."""

    def __init__(self, ref: str) -> None:
        self.ref = ref

    def __repr__(self) -> str:
        return f"Unknown({self.ref})"


_FUNCTIONS: dict[str, Any] = {
    "concat": lambda *lists: [v for lst in lists for v in lst],
    "distinct": lambda lst: list(dict.fromkeys(lst)),
    "one": lambda lst: (lst[0] if lst else None) if len(lst) <= 1 else Unknown("one(>1)"),
    "length": len,
    "floor": math.floor,
    "contains": lambda lst, v: v in lst,
}


class _Expr:
    """A small evaluator of the HCL expressions this module uses in what the tests
    evaluate: string templates (nested too), references, lists, function calls,
    comparisons, && || !, and the ?: conditional. python-hcl2 hands every expression
    over as "${...}" text; anything else it meets fails the test loudly."""

    def __init__(self, text: str, refs: Mapping[str, Any]) -> None:
        self.s, self.i, self.refs = text, 0, refs

    # -- scanning
    def ws(self) -> None:
        while self.i < len(self.s) and self.s[self.i] in " \t\r\n":
            self.i += 1

    def peek(self, token: str) -> bool:
        self.ws()
        return self.s.startswith(token, self.i)

    def take(self, token: str) -> bool:
        if self.peek(token):
            self.i += len(token)
            return True
        return False

    def expect(self, token: str) -> None:
        assert self.take(token), f"expected {token!r} at {self.i} in {self.s!r}"

    # -- templates: literal text and ${expr}
    def template(self, end: str | None) -> Any:
        parts: list[Any] = []
        text = ""
        while self.i < len(self.s):
            if end is not None and self.s[self.i] == end:
                self.i += 1
                break
            if self.s.startswith("$${", self.i):
                text += "${"
                self.i += 3
            elif self.s.startswith("${", self.i):
                self.i += 2
                if text:
                    parts.append(text)
                    text = ""
                parts.append(self.expr())
                self.expect("}")
            elif end is not None and self.s[self.i] == "\\":
                text += json.loads(f'"{self.s[self.i : self.i + 2]}"')
                self.i += 2
            else:
                text += self.s[self.i]
                self.i += 1
        else:
            assert end is None, f"unterminated string in {self.s!r}"
        if text:
            parts.append(text)
        if len(parts) == 1 and not isinstance(parts[0], str):
            return parts[0]  # "${expr}" alone keeps the expression's type
        if any(isinstance(p, Unknown) for p in parts):
            return next(p for p in parts if isinstance(p, Unknown))
        assert all(isinstance(p, str) for p in parts), f"non-string in template {self.s!r}"
        return "".join(parts)

    # -- expressions
    def expr(self) -> Any:
        cond = self.or_()
        if not self.take("?"):
            return cond
        yes = self.expr()
        self.expect(":")
        no = self.expr()
        if isinstance(cond, Unknown):
            return cond
        return yes if cond else no

    def or_(self) -> Any:
        left = self.and_()
        while self.take("||"):
            right = self.and_()
            left = bool(left) or bool(right)
        return left

    def and_(self) -> Any:
        left = self.cmp()
        while self.take("&&"):
            right = self.cmp()
            left = bool(left) and bool(right)
        return left

    def cmp(self) -> Any:
        left = self.unary()
        for op, fn in (
            ("==", lambda a, b: a == b),
            ("!=", lambda a, b: a != b),
            (">=", lambda a, b: a >= b),
            ("<=", lambda a, b: a <= b),
            (">", lambda a, b: a > b),
            ("<", lambda a, b: a < b),
        ):
            if self.take(op):
                right = self.unary()
                if isinstance(left, Unknown) or isinstance(right, Unknown):
                    return Unknown(op)
                return fn(left, right)
        return left

    def unary(self) -> Any:
        if self.peek("!") and not self.peek("!="):
            self.i += 1
            value = self.unary()
            return value if isinstance(value, Unknown) else not value
        if self.take("-"):
            return -self.unary()
        return self.primary()

    def primary(self) -> Any:
        self.ws()
        m = re.compile(r"\d+(\.\d+)?").match(self.s, self.i)
        if m:
            self.i = m.end()
            return float(m.group()) if m.group(1) else int(m.group())
        if self.take('"'):
            return self.template('"')
        if self.take("("):
            value = self.expr()
            self.expect(")")
            return value
        if self.take("["):
            items = []
            while not self.take("]"):
                items.append(self.expr())
                self.take(",")
            return items
        m = re.compile(r"[A-Za-z_][\w-]*").match(self.s, self.i)
        assert m, f"cannot read the expression at {self.i} in {self.s!r}"
        self.i = m.end()
        name = m.group()
        if name in ("true", "false", "null"):
            return {"true": True, "false": False, "null": None}[name]
        if self.take("("):
            assert name in _FUNCTIONS, f"the evaluator does not know {name}(): extend it"
            args = []
            while not self.take(")"):
                args.append(self.expr())
                self.take(",")
            unknown = [a for a in args if isinstance(a, Unknown)]
            return unknown[0] if unknown else _FUNCTIONS[name](*args)
        path = name
        while True:
            if self.take("."):
                m = re.compile(r"[A-Za-z_][\w-]*").match(self.s, self.i)
                assert m, f"bad attribute in {self.s!r}"
                self.i = m.end()
                path += "." + m.group()
            elif self.peek("[*]"):
                self.i += 3
                path += "[*]"
            elif self.peek("[") and not path.startswith(("var.", "local.")):
                self.expect("[")
                index = self.expr()
                self.expect("]")
                path += f"[{index}]"
            else:
                break
        return self.ref(path)

    def ref(self, path: str) -> Any:
        if path in self.refs:
            return self.refs[path]
        kind, _, name = path.partition(".")
        if kind == "local":
            assert name in _module().locals, f"unknown local {name}"
            return _resolve(_module().locals[name], self.refs)
        if kind == "var":
            variable = _module().variables.get(name)
            assert variable is not None, f"unknown variable {name}"
            if "default" in variable:
                return _resolve(variable["default"], self.refs)
        return Unknown(path)


def _evaluate(value: Any, refs: Mapping[str, Any]) -> Any:
    if isinstance(value, list):
        return [_evaluate(v, refs) for v in value]
    if not isinstance(value, str):
        return value
    return _Expr(value, refs).template(None)


def _known(value: Any, where: Any) -> Any:
    unknown = value if isinstance(value, Unknown) else None
    if isinstance(value, list):
        unknown = next((v for v in value if isinstance(v, Unknown)), None)
    assert unknown is None, (
        f"the test does not know the reference {unknown.ref!r} in {where!r}: add it to REFS"
    )
    return value


def _resolve(value: Any, refs: Mapping[str, Any] | None = None) -> Any:
    """The value with every expression evaluated (locals, REFS, variable defaults)."""
    return _known(_evaluate(value, REFS if refs is None else refs), value)


def _hcl_bool(expr: str, values: Mapping[str, Any]) -> bool:
    """Evaluates a validation or precondition with the given variable values."""
    refs = {**REFS, **{f"var.{k}": v for k, v in values.items()}}
    return bool(_resolve(expr, refs))


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


def _strings(value: Any, refs: Mapping[str, Any]) -> tuple[str, ...]:
    value = _resolve(value, refs)
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    assert all(isinstance(v, str) for v in value), value
    return tuple(value)


def policy(name: str, refs: Mapping[str, Any] | None = None) -> list[Statement]:
    refs = REFS if refs is None else refs
    body = _module().data.get(("aws_iam_policy_document", name))
    assert body is not None, f'no data "aws_iam_policy_document" "{name}"'
    statements = []
    for s in body.get("statement", []):
        statements.append(
            Statement(
                sid=_resolve(s.get("sid", ""), refs),
                effect=_resolve(s.get("effect", "Allow"), refs),
                actions=_strings(s.get("actions"), refs),
                not_actions=_strings(s.get("not_actions"), refs),
                resources=_strings(s.get("resources"), refs),
                not_resources=_strings(s.get("not_resources"), refs),
                principals=tuple(
                    (_resolve(p["type"], refs), _strings(p["identifiers"], refs))
                    for p in s.get("principals", [])
                ),
                conditions=tuple(
                    Condition(
                        _resolve(c["test"], refs),
                        _resolve(c["variable"], refs),
                        _strings(c["values"], refs),
                    )
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
    # A multi-valued key (kms:EncryptionContextKeys) holds a list.
    context: Mapping[str, str | Sequence[str]] = field(default_factory=dict)

    def value(self, key: str) -> str | Sequence[str] | None:
        # Condition key names are case-insensitive.
        for k, v in self.context.items():
            if k.lower() == key.lower():
                return v
        return None


_NEGATED = {"StringNotEquals", "StringNotLike", "ArnNotEquals", "ArnNotLike"}


def _matches(op: str, actual: str, values: tuple[str, ...]) -> bool:
    if op in {"StringEquals", "StringNotEquals"}:
        return actual in values
    if op in {"StringLike", "StringNotLike", "ArnEquals", "ArnLike", "ArnNotEquals", "ArnNotLike"}:
        return any(_wild(v, actual, ignore_case=False) for v in values)
    if op == "Bool":
        return any(actual.lower() == v.lower() for v in values)
    raise AssertionError(f"the evaluator does not know the operator {op}: extend it")


def _condition_holds(c: Condition, request: Request) -> bool:
    actual = request.value(c.variable)
    if c.test == "Null":
        (wanted,) = c.values
        return (actual is None) == (wanted.lower() == "true")
    qualifier, _, op = c.test.rpartition(":")
    if qualifier:
        # ForAllValues holds for a missing key (an empty set); ForAnyValue does not.
        items = [] if actual is None else [actual] if isinstance(actual, str) else list(actual)
        hits = [_matches(op, v, c.values) for v in items]
        return all(hits) if qualifier == "ForAllValues" else any(hits)
    if actual is None:
        # A negated operator holds when the key is absent (IAM's rule).
        return op in _NEGATED
    assert isinstance(actual, str), f"{c.variable} is multi-valued: use ForAllValues/ForAnyValue"
    hit = _matches(op, actual, c.values)
    return not hit if op in _NEGATED else hit


def _principal_named(s: Statement, principal: str) -> bool:
    return any(
        (ptype == "*" and "*" in ids) or (ptype != "*" and principal in ids)
        for ptype, ids in s.principals
    )


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
    if resource_policy and not _principal_named(s, request.principal):
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


def decide_kms(request: Request, key_policy: list[Statement], identity: list[Statement]) -> str:
    """KMS: the key policy is the root of access. An explicit Deny anywhere wins; else
    the key policy allows the principal itself, or it allows the account root (the
    account delegates to IAM) and the identity policy allows too."""
    by_key = [s for s in key_policy if _applies(s, request, resource_policy=True)]
    by_identity = [s for s in identity if _applies(s, request, resource_policy=False)]
    if any(s.effect == "Deny" for s in by_key + by_identity):
        return "deny"
    if any(s.effect == "Allow" for s in by_key):
        return "allow"
    as_account = replace(request, principal=ROOT_ARN)
    delegated = [
        s
        for s in key_policy
        if s.effect == "Allow" and _applies(s, as_account, resource_policy=True)
    ]
    if delegated and any(s.effect == "Allow" for s in by_identity):
        return "allow"
    return "implicit"


# An identity policy that grants everything: what the bucket or key policy alone still
# refuses holds whatever is attached to a role later.
ADMIN = [Statement("Admin", "Allow", ("*",), (), ("*",), (), (), ())]


def s3(action: str, key: str | None, principal: str) -> Request:
    """An S3 request over TLS by `principal`, on `key` (None: the bucket)."""
    resource = BUCKET_ARN if key is None else f"{BUCKET_ARN}/{key}"
    ctx = {"aws:PrincipalArn": principal, "aws:SecureTransport": "true"}
    return Request(action, resource, principal, ctx)


def put(
    key: str,
    *,
    if_none_match: bool,
    creates_object: bool = True,
    principal: str = WRITER_ARN,
    if_match: str | None = None,
) -> Request:
    """PutObject / CompleteMultipartUpload / CopyObject (creates_object) or
    CreateMultipartUpload / UploadPart (not creates_object) of `key`."""
    context = {
        "aws:PrincipalArn": principal,
        "aws:SecureTransport": "true",
        "s3:ObjectCreationOperation": "true" if creates_object else "false",
    }
    if if_none_match:
        context["s3:if-none-match"] = "*"
    if if_match is not None:
        context["s3:if-match"] = if_match
    return Request("s3:PutObject", f"{BUCKET_ARN}/{key}", principal, context)


def history(action: str, principal: str = WRITER_ARN) -> Request:
    resource = f"{BUCKET_ARN}/{DATA_KEYS[0]}" if action in OBJECT_ACTIONS else BUCKET_ARN
    context = {"aws:PrincipalArn": principal, "aws:SecureTransport": "true"}
    return Request(action, resource, principal, context)


def kms(
    action: str,
    principal: str,
    context: Mapping[str, str] | None = None,
    *,
    via: str | None = None,
    key: str = KEY_ARN,
) -> Request:
    """A KMS request with `context` as its EncryptionContext, made directly or (via)
    by S3 on the principal's behalf."""
    ctx: dict[str, str | Sequence[str]] = {"aws:PrincipalArn": principal}
    for k, v in (context or {}).items():
        ctx[f"kms:EncryptionContext:{k}"] = v
    if context:
        ctx["kms:EncryptionContextKeys"] = list(context)
    if via:
        ctx["kms:ViaService"] = via
    return Request(action, key, principal, ctx)


def sse(action: str, principal: str) -> Request:
    """S3's own call to KMS for the bucket's default encryption (with the bucket key
    S3 sends the bucket's ARN as the context)."""
    return kms(action, principal, {"aws:s3:arn": BUCKET_ARN}, via=S3_VIA)


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
    context = {**request.context, "aws:PrincipalArn": OTHER_ARN}
    other = Request(request.action, request.resource, OTHER_ARN, context)
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


# -- Object Lock ----------------------------------------------------------------------


def test_object_lock_is_on_by_default_in_compliance_mode() -> None:
    m = _module()
    bucket = m.resources[("aws_s3_bucket", "backups")]
    assert bucket.get("object_lock_enabled") is True, "object_lock_enabled must be true"
    assert "count" not in bucket and "for_each" not in bucket
    lock = m.resources.get(("aws_s3_bucket_object_lock_configuration", "backups"))
    assert lock is not None, "no aws_s3_bucket_object_lock_configuration"
    assert "count" not in lock and "for_each" not in lock, "Object Lock must not be optional"
    (rule,) = lock["rule"]
    (retention,) = rule["default_retention"]
    assert _resolve(retention["mode"]) == "COMPLIANCE", "the default mode must be COMPLIANCE"
    assert retention.get("days") == "${var.object_lock_days}" and "years" not in retention
    versioning = m.resources[("aws_s3_bucket_versioning", "backups")]
    assert versioning["versioning_configuration"][0]["status"] == "Enabled"

    rules = m.resources[("aws_s3_bucket_lifecycle_configuration", "backups")]["rule"]
    (expiry,) = [e for r in rules for e in r.get("noncurrent_version_expiration", [])]
    assert expiry["noncurrent_days"] == "${var.noncurrent_version_days}"
    assert not any("expiration" in r for r in rules), "current versions are dr prune's job"
    defaults = _defaults()
    assert defaults["object_lock_days"] >= defaults["noncurrent_version_days"] >= 1


@pytest.mark.parametrize(
    ("mode", "ok"), [("COMPLIANCE", True), ("GOVERNANCE", True), ("NONE", False), ("", False)]
)
def test_object_lock_mode_is_compliance_or_governance(mode: str, ok: bool) -> None:
    (validation,) = _module().variables["object_lock_mode"]["validation"]
    assert _hcl_bool(validation["condition"], {"object_lock_mode": mode}) is ok


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


# -- the writer: lock, state, prefix, KMS ---------------------------------------------


def test_writer_writes_lock_json_only_by_compare_and_swap_and_never_deletes_it() -> None:
    writer, bucket = policy("backup"), policy("bucket")
    assert decide(put(LOCK_KEY, if_none_match=True), writer, bucket) == "allow"
    assert decide(put(LOCK_KEY, if_none_match=False, if_match='"e1"'), writer, bucket) == "allow"
    assert decide(put(LOCK_KEY, if_none_match=False), writer, bucket) != "allow"
    for action in ("s3:DeleteObject", "s3:DeleteObjectVersion"):
        assert decide(s3(action, LOCK_KEY, WRITER_ARN), writer, bucket) == "deny", action
    # If-Match opens no data object.
    for key in DATA_KEYS:
        request = put(key, if_none_match=False, if_match='"e1"')
        assert decide(request, writer, bucket) != "allow", key


def test_writer_rewrites_its_alert_state_and_nothing_beside_it() -> None:
    writer, bucket = policy("backup"), policy("bucket")
    assert decide(put(STATE_KEY, if_none_match=False), writer, bucket) == "allow"
    for key in ("backups/prod/state/backup.bin", f"{BACKUP}/state.json", RECORD_KEY):
        assert decide(put(key, if_none_match=False), writer, bucket) != "allow", key


def test_key_prefix_confines_every_role() -> None:
    """With key_prefix set, no role reads, writes or deletes outside it."""
    inside, outside = f"{BACKUP}/snapshot.enc", f"other/prod/{BACKUP_ID}/snapshot.enc"
    writer = policy("backup", PREFIXED)
    assert decide(put(inside, if_none_match=True), writer) == "allow"
    assert decide(put(outside, if_none_match=True), writer) != "allow"
    assert decide(s3("s3:GetObject", outside, WRITER_ARN), writer) != "allow"
    pruner = policy("pruner", PREFIXED)
    assert decide(s3("s3:DeleteObjectVersion", inside, PRUNER_ARN), pruner) == "allow"
    assert decide(s3("s3:DeleteObjectVersion", outside, PRUNER_ARN), pruner) != "allow"
    reader = policy("drill_reader", PREFIXED)
    assert decide(s3("s3:GetObject", inside, DRILL_ARN), reader) == "allow"
    assert decide(s3("s3:GetObject", outside, DRILL_ARN), reader) != "allow"


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        ("", True),
        ("backups/", True),
        ("a/b/", True),
        ("backups", False),
        ("/x/", False),
        ("*/", False),
        ("a*/", False),
        ("b?/", False),
    ],
)
def test_key_prefix_takes_no_wildcard(value: str, ok: bool) -> None:
    (validation,) = _module().variables["key_prefix"]["validation"]
    condition = validation["condition"]
    # can(regex(...)) is not evaluated here: the test checks the regex itself.
    m = re.search(r'regex\("(.*)", var\.key_prefix\)', condition)
    assert m, condition
    pattern = json.loads(f'"{m.group(1)}"')
    assert (value == "" or re.fullmatch(pattern, value) is not None) is ok, value


def _key_and_identity(role: str) -> tuple[list[Statement], list[Statement]]:
    return policy("kms"), policy(
        {WRITER_ARN: "backup", PRUNER_ARN: "pruner"}.get(role, "drill_reader")
    )


def test_writer_wraps_data_keys_in_its_context_and_never_decrypts() -> None:
    key, identity = _key_and_identity(WRITER_ARN)
    for action in ("kms:GenerateDataKey", "kms:Encrypt"):
        assert decide_kms(kms(action, WRITER_ARN, CONTEXT), key, identity) == "allow"
    # Not for another cluster, not without the backup id, not with a key of its own.
    other = WrapContext(cluster="staging", backup_id=BACKUP_ID).as_mapping()
    for context in (other, {"vault-dr:cluster": "prod"}, {**CONTEXT, "extra": "x"}, {}):
        request = kms("kms:GenerateDataKey", WRITER_ARN, context)
        assert decide_kms(request, key, identity) != "allow", context
    # A leaked backup credential cannot open a backup: no Decrypt, even with ADMIN.
    assert decide_kms(kms("kms:Decrypt", WRITER_ARN, CONTEXT), key, identity) != "allow"
    assert decide_kms(kms("kms:Decrypt", WRITER_ARN, CONTEXT), key, ADMIN) != "allow"
    # S3's bucket encryption of what it writes and reads (lock.json) is S3's only.
    for action in ("kms:GenerateDataKey", "kms:Decrypt"):
        assert decide_kms(sse(action, WRITER_ARN), key, identity) == "allow", action
        direct = kms(action, WRITER_ARN, {"aws:s3:arn": BUCKET_ARN})
        assert decide_kms(direct, key, identity) != "allow", action


# -- the pruner -----------------------------------------------------------------------


def test_pruner_deletes_versions_and_aborts_uploads() -> None:
    pruner, bucket = policy("pruner"), policy("bucket")
    for action in (
        "s3:DeleteObject",
        "s3:DeleteObjectVersion",
        "s3:AbortMultipartUpload",
        "s3:GetObjectRetention",
        "s3:GetObjectLegalHold",
        "s3:GetObjectVersion",
    ):
        for key in (*DATA_KEYS, MANIFEST_KEY, RECORD_KEY):
            assert decide(s3(action, key, PRUNER_ARN), pruner, bucket) == "allow", (action, key)
    for action in ("s3:ListBucketVersions", "s3:ListBucketMultipartUploads", "s3:ListBucket"):
        assert decide(s3(action, None, PRUNER_ARN), pruner, bucket) == "allow", action
    # Its run lock and its alert state.
    assert decide(put(LOCK_KEY, if_none_match=True, principal=PRUNER_ARN), pruner, bucket) == (
        "allow"
    )
    cas = put(LOCK_KEY, if_none_match=False, principal=PRUNER_ARN, if_match='"e"')
    assert decide(cas, pruner, bucket) == "allow"
    blind = put(LOCK_KEY, if_none_match=False, principal=PRUNER_ARN)
    assert decide(blind, pruner, bucket) != "allow"
    assert decide(put(STATE_KEY, if_none_match=False, principal=PRUNER_ARN), pruner, bucket) == (
        "allow"
    )


@pytest.mark.parametrize("key", [*DATA_KEYS, MANIFEST_KEY])
def test_pruner_never_puts_a_backup_object(key: str) -> None:
    for if_none_match in (True, False):
        request = put(key, if_none_match=if_none_match, principal=PRUNER_ARN)
        assert decide(request, policy("pruner")) == "deny", key
        assert decide(request, ADMIN, policy("bucket")) == "deny", "the bucket lets it"


@pytest.mark.parametrize("action", PROTECTION_ACTIONS)
def test_pruner_never_loosens_object_lock_or_the_bucket(action: str) -> None:
    request = history(action, PRUNER_ARN)
    assert decide(request, policy("pruner")) == "deny", action
    assert decide(request, ADMIN, policy("bucket")) == "deny", f"the bucket lets {action}"


def test_pruner_uses_no_kms_key_directly() -> None:
    key, identity = _key_and_identity(PRUNER_ARN)
    for action in ("kms:Decrypt", "kms:GenerateDataKey", "kms:Encrypt"):
        assert decide_kms(kms(action, PRUNER_ARN, CONTEXT), key, identity) != "allow"
    assert decide_kms(sse("kms:Decrypt", PRUNER_ARN), key, identity) == "allow"


# -- the drill reader (and the GitHub drill role) -------------------------------------


@pytest.mark.parametrize("role", [DRILL_ARN, GITHUB_ROLE_ARN])
def test_drill_reader_gets_decrypts_and_leaves_records(role: str) -> None:
    reader, bucket = policy("drill_reader"), policy("bucket")
    for key in (*DATA_KEYS, MANIFEST_KEY, RECORD_KEY, LOCK_KEY):
        for action in ("s3:GetObject", "s3:GetObjectVersion"):
            assert decide(s3(action, key, role), reader, bucket) == "allow", (action, key)
    assert decide(put(RECORD_KEY, if_none_match=False, principal=role), reader, bucket) == "allow"
    state = "backups/prod/state/drill.json"
    assert decide(put(state, if_none_match=False, principal=role), reader, bucket) == "allow"
    key, _ = _key_and_identity(role)
    assert decide_kms(kms("kms:Decrypt", role, CONTEXT), key, reader) == "allow"
    other = WrapContext(cluster="staging", backup_id=BACKUP_ID).as_mapping()
    assert decide_kms(kms("kms:Decrypt", role, other), key, reader) != "allow"
    assert decide_kms(kms("kms:Decrypt", role, {}), key, reader) != "allow"
    assert decide_kms(kms("kms:GenerateDataKey", role, CONTEXT), key, reader) != "allow"


@pytest.mark.parametrize("role", [DRILL_ARN, GITHUB_ROLE_ARN])
def test_drill_reader_cannot_delete_or_put_a_manifest(role: str) -> None:
    reader, bucket = policy("drill_reader"), policy("bucket")
    for key in (*DATA_KEYS, MANIFEST_KEY):
        for if_none_match in (True, False):
            request = put(key, if_none_match=if_none_match, principal=role)
            assert decide(request, reader, bucket) == "deny", key
            assert decide(request, ADMIN, bucket) == "deny", f"the bucket lets it write {key}"
    # Records and state only: no other key, not even a new one.
    for key in (f"{BACKUP}/other.bin", "backups/prod/records.json", "backups/prod/x/state"):
        assert decide(put(key, if_none_match=True, principal=role), reader, bucket) != "allow"
    # No lock: drills take none (docs/locking.md).
    assert decide(put(LOCK_KEY, if_none_match=True, principal=role), reader, bucket) == "deny"
    for action in ("s3:DeleteObject", "s3:DeleteObjectVersion"):
        for key in (*DATA_KEYS, MANIFEST_KEY, RECORD_KEY):
            assert decide(s3(action, key, role), reader, bucket) == "deny", (action, key)
            assert decide(s3(action, key, role), ADMIN, bucket) == "deny", (action, key)
    for action in PROTECTION_ACTIONS:
        assert decide(history(action, role), ADMIN, bucket) == "deny", action


def test_github_role_has_the_drill_readers_policy() -> None:
    m = _module()
    attached = m.resources[("aws_iam_role_policy", "github_drill")]["policy"]
    assert attached == "${data.aws_iam_policy_document.drill_reader.json}"
    assert m.resources[("aws_iam_role", "github_drill")]["assume_role_policy"] == (
        "${data.aws_iam_policy_document.assume_github[0].json}"
    )


# -- GitHub OIDC ----------------------------------------------------------------------

AUD = "token.actions.githubusercontent.com:aud"
SUB = "token.actions.githubusercontent.com:sub"


def _web_identity(sub: str, aud: str = "sts.amazonaws.com", action: str = "") -> Request:
    return Request(
        action or "sts:AssumeRoleWithWebIdentity", GITHUB_ROLE_ARN, OIDC_ARN, {AUD: aud, SUB: sub}
    )


def test_oidc_provider_is_githubs_for_sts() -> None:
    provider = _module().resources[("aws_iam_openid_connect_provider", "github")]
    assert provider["url"] == "https://token.actions.githubusercontent.com"
    assert provider["client_id_list"] == ["sts.amazonaws.com"]


@pytest.mark.parametrize(
    ("refs", "allowed"),
    [
        ({}, "repo:acme/infra:ref:refs/heads/main"),
        ({"var.github_branch": "release"}, "repo:acme/infra:ref:refs/heads/release"),
        ({"var.github_environment": "dr-drill"}, "repo:acme/infra:environment:dr-drill"),
    ],
)
def test_oidc_trust_is_one_repository_and_branch_or_environment(
    refs: dict[str, str], allowed: str
) -> None:
    trust = policy("assume_github", {**REFS, **refs})
    assert decide(_web_identity(allowed), [], trust) == "allow"
    refused = [
        "repo:acme/infra:ref:refs/heads/feature",
        "repo:acme/infra:pull_request",
        "repo:acme/infra:environment:production",
        "repo:acme/infra-fork:ref:refs/heads/main",
        "repo:evil/infra:ref:refs/heads/main",
        allowed + "x",
        "repo:acme/infra:*",
    ]
    for sub in refused:
        if sub != allowed:
            assert decide(_web_identity(sub), [], trust) != "allow", sub
    assert decide(_web_identity(allowed, aud="vault-dr"), [], trust) != "allow"
    assert decide(_web_identity(allowed, action="sts:AssumeRole"), [], trust) != "allow"
    other_idp = replace(_web_identity(allowed), principal=OIDC_ARN.replace("token.", "x."))
    assert decide(other_idp, [], trust) != "allow"
    # Exact matches only: a StringLike here would let one wildcard open every branch.
    for s in trust:
        assert {c.test for c in s.conditions} == {"StringEquals"}, s.sid


# -- the KMS key ----------------------------------------------------------------------


def test_kms_key_rotates_and_only_admins_disable_or_delete_it() -> None:
    m = _module()
    key = m.resources[("aws_kms_key", "backup")]
    assert key["enable_key_rotation"] is True
    assert key["policy"] == "${data.aws_iam_policy_document.kms.json}"
    key_policy = policy("kms")
    for action in (
        "kms:ScheduleKeyDeletion",
        "kms:DisableKey",
        "kms:PutKeyPolicy",
        "kms:DisableKeyRotation",
        "kms:CreateGrant",
    ):
        for principal in (WRITER_ARN, PRUNER_ARN, DRILL_ARN, GITHUB_ROLE_ARN, OTHER_ARN):
            request = kms(action, principal)
            assert decide_kms(request, key_policy, ADMIN) == "deny", (action, principal)
        for admin in (KMS_ADMIN_ARN, TERRAFORM_ARN):
            assert decide_kms(kms(action, admin), key_policy, ADMIN) == "allow", (action, admin)


def test_kms_key_policy_limits_crypto_to_vault_drs_context() -> None:
    key_policy = policy("kms")
    # An account administrator with kms:* in IAM cannot use the key directly: the key
    # policy delegates only administration and S3's bucket encryption to the account.
    for action in ("kms:Decrypt", "kms:GenerateDataKey", "kms:Encrypt"):
        assert decide_kms(kms(action, OTHER_ARN, CONTEXT), key_policy, ADMIN) != "allow"
    # Whatever IAM or a grant allows: crypto outside vault-dr's context (and S3) is denied.
    for principal in (WRITER_ARN, DRILL_ARN, OTHER_ARN):
        for context in ({}, {"purpose": "other"}, {"vault-dr:cluster": "staging"}):
            request = kms("kms:Decrypt", principal, context)
            assert decide_kms(request, key_policy, ADMIN) == "deny", (principal, context)
    # Statement form: every Allow of direct GenerateDataKey/Decrypt carries the context.
    cluster = Condition("StringEquals", "kms:EncryptionContext:vault-dr:cluster", ("prod",))
    for s in key_policy:
        direct = all(c.variable != "kms:ViaService" for c in s.conditions)
        crypto = any(
            _wild(a, x, ignore_case=True)
            for a in s.actions
            for x in ("kms:Decrypt", "kms:GenerateDataKey")
        )
        if s.effect == "Allow" and crypto and direct:
            assert cluster in s.conditions, s.sid


def test_s3_may_use_the_key_for_this_bucket_only() -> None:
    key_policy = policy("kms")
    identity = policy("drill_reader")
    assert decide_kms(sse("kms:Decrypt", DRILL_ARN), key_policy, identity) == "allow"
    elsewhere = kms("kms:Decrypt", DRILL_ARN, {"aws:s3:arn": "arn:aws:s3:::other"}, via=S3_VIA)
    assert decide_kms(elsewhere, key_policy, identity) != "allow"


# -- the bucket -----------------------------------------------------------------------


def test_bucket_encryption_is_sse_kms_with_the_modules_key_and_a_bucket_key() -> None:
    sse_config = _module().resources[
        ("aws_s3_bucket_server_side_encryption_configuration", "backups")
    ]
    (rule,) = sse_config["rule"]
    (default,) = rule["apply_server_side_encryption_by_default"]
    assert default["sse_algorithm"] == "aws:kms"
    assert default["kms_master_key_id"] == "${aws_kms_key.backup.arn}"
    assert rule["bucket_key_enabled"] is True


def test_public_access_is_blocked() -> None:
    for name in ("backups", "replica"):
        block = _module().resources[("aws_s3_bucket_public_access_block", name)]
        for flag in (
            "block_public_acls",
            "block_public_policy",
            "ignore_public_acls",
            "restrict_public_buckets",
        ):
            assert block[flag] is True, (name, flag)


def test_lifecycle_aborts_incomplete_uploads() -> None:
    for name in ("backups", "replica"):
        rules = _module().resources[("aws_s3_bucket_lifecycle_configuration", name)]["rule"]
        aborts = [r for r in rules if r.get("abort_incomplete_multipart_upload")]
        assert aborts, f"{name}: no AbortIncompleteMultipartUpload rule"
        (rule,) = aborts
        assert rule["status"] == "Enabled" and rule["filter"] == [{}], "must cover every key"
        (abort,) = rule["abort_incomplete_multipart_upload"]
        assert abort["days_after_initiation"] == "${var.abort_incomplete_multipart_days}"
    assert _module().variables["abort_incomplete_multipart_days"]["default"] == 2


def test_tls_only_on_both_buckets() -> None:
    for name in ("bucket", "replica_bucket"):
        (deny,) = [s for s in policy(name) if s.sid == "DenyInsecureTransport"]
        assert deny.effect == "Deny" and deny.actions == ("s3:*",)
        assert deny.conditions == (Condition("Bool", "aws:SecureTransport", ("false",)),)
        plain = replace(
            s3("s3:GetObject", DATA_KEYS[0], OTHER_ARN),
            resource=f"{REPLICA_BUCKET_ARN if name != 'bucket' else BUCKET_ARN}/x",
            context={"aws:PrincipalArn": OTHER_ARN, "aws:SecureTransport": "false"},
        )
        assert decide(plain, ADMIN, policy(name)) == "deny", name


# -- replication ----------------------------------------------------------------------


def test_replication_is_off_by_default_and_complete_when_on() -> None:
    m = _module()
    assert m.variables["replication_enabled"]["default"] is False
    assert m.locals["replication"] == "${var.replication_enabled ? 1 : 0}"
    replica = m.resources[("aws_s3_bucket", "replica")]
    assert replica["object_lock_enabled"] is True and replica["provider"] == "${aws.replica}"
    for rtype in (
        "aws_s3_bucket",
        "aws_s3_bucket_versioning",
        "aws_kms_key",
        "aws_s3_bucket_object_lock_configuration",
        "aws_iam_role",
        "aws_s3_bucket_replication_configuration",
    ):
        name = (
            "backups"
            if rtype == "aws_s3_bucket_replication_configuration"
            else ("replication" if rtype == "aws_iam_role" else "replica")
        )
        assert m.resources[(rtype, name)]["count"] == "${local.replication}", rtype
    assert m.resources[("aws_kms_key", "replica")]["enable_key_rotation"] is True
    (lock_rule,) = m.resources[("aws_s3_bucket_object_lock_configuration", "replica")]["rule"]
    assert lock_rule["default_retention"][0]["mode"] == "${var.object_lock_mode}"
    (rule,) = m.resources[("aws_s3_bucket_replication_configuration", "backups")]["rule"]
    assert rule["delete_marker_replication"][0]["status"] == "Disabled"
    (dest,) = rule["destination"]
    assert dest["encryption_configuration"][0]["replica_kms_key_id"] == (
        "${aws_kms_key.replica[0].arn}"
    )


def test_replication_role_copies_and_never_deletes() -> None:
    refs = {**REFS, "aws_iam_role.replication[*].arn": [REPLICATION_ARN]}
    role = policy("replication", refs)
    for action in ("s3:ReplicateDelete", "s3:DeleteObjectVersion", "s3:PutObject"):
        request = Request(action, f"{REPLICA_BUCKET_ARN}/{DATA_KEYS[0]}", REPLICATION_ARN)
        assert decide(request, role) != "allow", action
    request = Request("s3:ReplicateObject", f"{REPLICA_BUCKET_ARN}/{DATA_KEYS[0]}", REPLICATION_ARN)
    assert decide(request, role) == "allow"
    trust = policy("assume_replication")
    assume = Request("sts:AssumeRole", "*", "s3.amazonaws.com", {"aws:SourceAccount": ACCOUNT})
    assert decide(assume, [], trust) == "allow"
    assert decide(replace(assume, context={"aws:SourceAccount": "999999999999"}), [], trust) != (
        "allow"
    )


# -- every .tf parses, is formatted, the example validates ----------------------------


def _all_tf() -> list[Path]:
    files = sorted(p for p in TF.rglob("*.tf") if ".terraform" not in p.parts)
    assert len(files) >= 8, files
    return files


@pytest.mark.parametrize("path", _all_tf(), ids=lambda p: str(p.relative_to(TF)))
def test_every_tf_file_parses(path: Path) -> None:
    try:
        import hcl2
    except ImportError:
        missing("python-hcl2", "pip install -e '.[test]' (the test extra has python-hcl2)")
    with path.open(encoding="utf-8") as f:
        doc = hcl2.load(f)
    assert doc, f"{path} parsed to nothing"


def _terraform() -> str:
    binary = shutil.which("terraform")
    if binary is None:
        missing("terraform", "the machine image ships /usr/local/bin/terraform")
    return binary


def test_terraform_files_are_formatted() -> None:
    run = subprocess.run(
        [_terraform(), "fmt", "-check", "-diff", "-recursive", str(TF)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "TF_CLI_CONFIG_FILE": os.devnull},
    )
    assert run.returncode == 0, f"terraform fmt would change:\n{run.stdout}{run.stderr}"


PLUGIN_MIRROR = Path("/opt/tf-plugins")


def test_the_example_validates_with_the_real_aws_provider(tmp_path: Path) -> None:
    """`terraform init` + `validate` of examples/basic (which calls the module with
    source ../..): every argument, block, reference and type is checked by terraform
    and the AWS provider's schema. The provider comes from the machine's plugin mirror
    (no registry is reachable here); the copy keeps .terraform out of the work tree."""
    terraform = _terraform()
    if not any(PLUGIN_MIRROR.glob("registry.terraform.io/hashicorp/aws/*/linux_amd64/*")):
        missing("the AWS provider", f"no terraform-provider-aws under {PLUGIN_MIRROR}")
    copy = tmp_path / "terraform"
    shutil.copytree(TF, copy, ignore=shutil.ignore_patterns(".terraform*"))
    rc = tmp_path / "terraformrc"
    rc.write_text(
        "provider_installation {\n  filesystem_mirror {\n"
        f'    path = "{PLUGIN_MIRROR}"\n  }}\n}}\n'
    )
    env = {
        **os.environ,
        "TF_CLI_CONFIG_FILE": str(rc),
        "TF_IN_AUTOMATION": "1",
        "TF_DATA_DIR": str(tmp_path / "data"),
        "CHECKPOINT_DISABLE": "1",
    }
    example = copy / "examples" / "basic"
    for args in (["init", "-backend=false", "-input=false"], ["validate"]):
        run = subprocess.run(
            [terraform, *args, "-no-color"],
            cwd=example,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert run.returncode == 0, f"terraform {args[0]}:\n{run.stdout}{run.stderr}"
    assert "The configuration is valid" in run.stdout


def test_the_example_calls_the_module_with_both_providers() -> None:
    import hcl2

    with (TF / "examples" / "basic" / "main.tf").open() as f:
        doc = _clean(hcl2.load(f))
    ((name, module),) = doc["module"][0].items()
    assert module["source"] == "../..", name
    required = {k for k, v in _module().variables.items() if "default" not in v}
    assert required <= set(module), f"the example misses {required - set(module)}"


def test_readme_lists_every_input_and_output() -> None:
    readme = (TF / "README.md").read_text()
    import hcl2

    with (TF / "outputs.tf").open() as f:
        outputs = {k for o in _clean(hcl2.load(f))["output"] for k in o}
    for name in [*_module().variables, *outputs]:
        assert re.search(rf"^\| `{name}` \|", readme, re.M), f"README.md does not list {name}"
    for name, body in _module().variables.items():
        assert len(body.get("description", "")) > 20, f"variable {name} has no description"


def test_github_role_reads_only_the_named_unseal_keys_secret() -> None:
    secret = f"arn:aws:secretsmanager:eu-west-1:{ACCOUNT}:secret:vault-dr/prod/unseal-AbCdEf"
    other = f"arn:aws:secretsmanager:eu-west-1:{ACCOUNT}:secret:payments/db-AbCdEf"
    statements = policy("github_unseal_keys", {**REFS, "var.unseal_keys_secret_arns": [secret]})

    def asks(action: str, resource: str) -> Request:
        return Request(action, resource, GITHUB_ROLE_ARN, {"aws:PrincipalArn": GITHUB_ROLE_ARN})

    assert decide(asks("secretsmanager:GetSecretValue", secret), statements) == "allow"
    assert decide(asks("secretsmanager:GetSecretValue", other), statements) == "implicit"
    for action in ("secretsmanager:PutSecretValue", "secretsmanager:DeleteSecret"):
        assert decide(asks(action, secret), statements) == "implicit"
    attached = _module().resources[("aws_iam_role_policy", "github_unseal_keys")]
    assert attached["role"] == "${aws_iam_role.github_drill[0].id}"
