"""Every `dr` command shown to an operator parses with the real CLI; every runbook has
the sections an operator looks for.

Parsing only: nothing runs. A renamed or removed option, a misspelt subcommand or a bad
value fails here before an operator meets it in an incident or a scheduler meets it at
3 a.m.

Where commands are taken from:

- Markdown: README.md, docs/*.md, runbooks/*.md and any *.md under deploy/, .github/,
  terraform/. Fenced blocks tagged sh, bash, shell, console, cron or crontab are read
  as shell lines; yaml/yml blocks are walked like the YAML files below; ini/systemd
  blocks like unit files. Inline code spans that start with `dr ` are read too.
  Other fenced blocks (output, JSON, text, HCL) are not commands and are not read.
- deploy/: crontab files (`*.cron`, `*.crontab`, `crontab*`): the five
  schedule fields (or `@daily`...) and a cron.d user column are dropped; systemd units
  (`*.service`): every `Exec*=` line, its `-@:+!` prefixes dropped; YAML (Kubernetes,
  kustomize, compose): a `command:` list whose first word is dr (with `args:` appended),
  `command: [sh, -c, SCRIPT]`, a compose `entrypoint: [dr]` with its `command:`, a
  container with only `args:` of the image deploy/Dockerfile builds (rule 7), and any
  `run:` script; `*.sh` scripts; a Dockerfile's exec-form `ENTRYPOINT ["dr"]` + `CMD`.
- .github/: every YAML file's `run:` scripts (and `command:`/`args:` as above).
- docker-compose*.yml at the top: as YAML above.

Rules, each one deliberate:

1. Shell lines: `\\` continuations are joined; a line is cut at `;`, `&&`, `||` and
   ` | ` (a pipe has spaces around it: `ID|latest` without spaces is a synopsis's
   alternative, one word); redirections (`> f`, `2>&1`, `>> "$GITHUB_STEP_SUMMARY"`)
   are dropped; leading `VAR=value` words and wrappers (`env`, `exec`, `sudo -u U`,
   `time`, `timeout 1h`, `nice`, `if`, `then`, `do`, `!`, ...) are skipped. The
   program is dr when its basename is `dr` (`/usr/local/bin/dr`) or it is
   `python -m dr`. Comments (`# ...`) are dropped, and comment lines are prose: in
   YAML, unit and cron files too.
2. Placeholders are values: `$VAR`, `"${VAR}"`, `${{ inputs.backup }}`, `$(cat f)`,
   `<token of the TARGET>`, `ID`, `ADDR`. Where an option takes a typed value (a
   choice, a number, a duration checked at parse time), a placeholder is replaced by a
   valid sample; a literal value is checked as written (`--jitter 10x` fails).
3. Synopsis notation: `[` `]` around options and a trailing `...` are dropped, so
   `dr rewrap --backup ID|latest [--add NAME...] [--dry-run]` checks `--add` and
   `--dry-run`; `--a/--b` in a code span names two options and checks both.
4. Prose is not a command line. A bare mention in a code span, `dr CMD` or
   `dr report rotation`, only has to name a command; a code span with options has
   every option checked (and its value, when given: "`dr verify --identity`" names the
   option without one) but need not give required options ("`dr restore
   --unseal-keys-file`" without `--to`). Code blocks and deployment files are command
   lines: checked whole, required options included.
5. Error examples: a command line whose comment says `# error example` documents a
   mistake and must FAIL to parse (so the marker cannot hide a real command). No other
   exclusion exists.
6. Bash arrays in a script: `"${args[@]}"` stands for every word the script adds with
   `args=( ... )` and `args+=( ... )`, every branch taken at once (each optional option
   is checked).
7. A container with `args:` and no `command:` runs its image's ENTRYPOINT. When the
   image's repository name is `vault-dr` (the image deploy/Dockerfile builds) and that
   Dockerfile's ENTRYPOINT is `["dr"]`, the args are dr's; other images are not read.
"""

from __future__ import annotations

import contextlib
import json
import re
import shlex
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
import pytest
import yaml

from dr.cli.main import _register_commands, cli

ROOT = Path(__file__).resolve().parents[2]
RUNBOOKS = ROOT / "runbooks"

# Every runbook but the index has these level-2 headings, in this order (issue 11:
# preconditions, the exact commands, what success looks like, what to do on failure).
SECTIONS = ("Preconditions", "Steps", "Success", "When a step fails")

SHELL_TAGS = {"sh", "bash", "shell", "console", "cron", "crontab"}
YAML_TAGS = {"yaml", "yml"}
UNIT_TAGS = {"ini", "systemd"}
WRAPPERS = {"exec", "time", "nice", "nohup", "command", "if", "then", "else",
            "elif", "do", "while", "until", "!", "{", "(", "-", "run:"}  # fmt: skip
WRAPPERS_WITH_ARG = {"env", "timeout", "sudo", "runuser", "setpriv", "chronic"}
ERROR_MARKER = re.compile(r"#.*\berror example\b", re.I)


@dataclass(frozen=True)
class Found:
    where: str  # file:line
    argv: tuple[str, ...]  # after the program name
    kind: str  # "command", "mention" (rule 4) or "error" (rule 5)


# --- extraction --------------------------------------------------------------------


def _rel(path: Path) -> str:
    return str(path.relative_to(ROOT))


def _placeholders(line: str) -> str:
    """Rule 2 (the forms shlex would split) and rule 3 (`a|b`): one word each."""
    line = re.sub(r"\$\{\{.*?\}\}", "GH_EXPR", line)
    line = re.sub(r"\$\([^()]*\)", "SUBST", line)
    line = re.sub(r"<[A-Za-z][^<>\n]*?[^\s<>]>|<[A-Za-z]>", "PLACEHOLDER", line)
    return re.sub(r"(?<=\S)\|(?=\S)", "_OR_", line)


def _is_dr(words: list[str], i: int) -> int:
    """How many words name the program dr at position i (0: it is not dr)."""
    if i < len(words) and Path(words[i]).name == "dr":
        return 1
    if (
        i + 2 < len(words)
        and Path(words[i]).name.startswith("python")
        and words[i + 1 : i + 3] == ["-m", "dr"]
    ):
        return 3
    return 0


def _segment_argv(words: list[str]) -> list[str] | None:
    """The dr arguments of one simple command, or None when it does not run dr."""
    i = 0
    while i < len(words):
        w = words[i]
        if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*=.*", w) or w in WRAPPERS:
            i += 1
        elif w in WRAPPERS_WITH_ARG:
            i += 1
            while i < len(words) and words[i].startswith("-"):  # sudo -u USER, timeout -k 5
                i += 2 if words[i] in ("-u", "-g", "-k", "-s", "-C") else 1
            if w == "timeout" and i < len(words) and re.fullmatch(r"[\d.]+[smhd]?", words[i]):
                i += 1
        else:
            break
    n = _is_dr(words, i)
    return words[i + n :] if n else None


REDIRECT = re.compile(r"^\d*(>>?|<|>&|&>>?|<&|<<<?)$")


ARRAY = re.compile(r"\b([A-Za-z_]\w*)\+?=\(([^()]*)\)", re.S)


def _arrays(script: str) -> dict[str, list[str]]:
    """Rule 6: every word a script puts in a bash array, whichever branch adds it."""
    arrays: dict[str, list[str]] = {}
    for name, words in ARRAY.findall(_placeholders(script)):
        arrays.setdefault(name, []).extend(shlex.split(words, comments=True))
    return arrays


def _shell_commands(
    line: str, arrays: dict[str, list[str]] | None = None
) -> Iterator[tuple[list[str], bool]]:
    """(dr argv, is an error example) for every dr command in one logical shell line."""
    error = bool(ERROR_MARKER.search(line))
    lexer = shlex.shlex(_placeholders(line), posix=True, punctuation_chars=";&|<>")
    lexer.whitespace_split = True
    lexer.commenters = "#"
    try:
        tokens = list(lexer)
    except ValueError:  # an unbalanced quote: not shell (a sentence in a code span)
        return
    segment: list[str] = []
    k = 0
    while k <= len(tokens):
        tok = tokens[k] if k < len(tokens) else ";"
        if tok in (";", "&&", "||", "|", "&", ";;", "|&"):
            argv = _segment_argv(segment)
            if argv is not None:
                yield argv, error
            segment = []
        elif REDIRECT.match(tok) or tok in (">", ">>", "<", ">&", "&>"):
            if segment and segment[-1].isdigit():  # the 2 of 2>&1
                segment.pop()
            k += 1  # and its target
        elif m := re.fullmatch(r"\$\{(\w+)\[[@*]\]\}", tok):
            segment += (arrays or {}).get(m.group(1), [tok])
        else:
            segment.append(tok)
        k += 1


def _logical_lines(text: str, start: int = 1) -> Iterator[tuple[int, str]]:
    """Lines with `\\` continuations joined, with the number of their first line."""
    buf, first = "", start
    for n, raw in enumerate(text.splitlines(), start):
        if not buf:
            first = n
        if raw.rstrip().endswith("\\"):
            buf += raw.rstrip()[:-1] + " "
            continue
        yield first, buf + raw
        buf = ""
    if buf:
        yield first, buf


def _from_shell(text: str, where: str, start: int = 1, cron: bool = False) -> Iterator[Found]:
    arrays = _arrays(text)
    for n, line in _logical_lines(text, start):
        line = line.strip()
        if line.startswith("$ "):
            line = line[2:]
        if not line or line.startswith("#"):
            continue
        if cron:
            line = _cron_command(line)
            if line is None:
                continue
        for argv, error in _shell_commands(line, arrays):
            yield Found(f"{where}:{n}", tuple(argv), "error" if error else "command")


def _cron_command(line: str) -> str | None:
    """The command of a crontab line: schedule fields and a cron.d user dropped."""
    words = line.split()
    if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*=.*", line.split(None, 1)[0]):
        return None  # MAILTO=..., PATH=...
    fields = 1 if words[0].startswith("@") else 5
    rest = words[fields:]
    if len(rest) > 1 and not _is_dr(rest, 0) and _is_dr(rest, 1):
        rest = rest[1:]  # /etc/cron.d: the user column
    return " ".join(rest)


def _from_unit(text: str, where: str, start: int = 1) -> Iterator[Found]:
    for n, line in _logical_lines(text, start):
        m = re.match(r"\s*Exec\w*=\s*([-@:+!]*)(.*)", line)
        if m:
            yield from _from_shell(m.group(2), where, n)


def _yaml_argvs(node: Any) -> Iterator[list[str] | str]:
    """dr argv lists (list[str]) and shell scripts (str) in a parsed YAML document."""
    if isinstance(node, list):
        for item in node:
            yield from _yaml_argvs(item)
        return
    if not isinstance(node, dict):
        return
    command, args, entrypoint = node.get("command"), node.get("args"), node.get("entrypoint")
    extra = [str(a) for a in args] if isinstance(args, list) else []
    if isinstance(entrypoint, str):
        entrypoint = shlex.split(entrypoint)
    if isinstance(entrypoint, list) and entrypoint and _is_dr([str(e) for e in entrypoint], 0):
        rest = command if isinstance(command, list) else shlex.split(command or "")
        yield [str(w) for w in [*entrypoint, *rest]]
    elif isinstance(command, list) and command:
        words = [str(w) for w in command]
        if _is_dr(words, 0):
            yield [*words, *extra]
        elif Path(words[0]).name in ("sh", "bash", "ash", "dash") and "-c" in words:
            script = [*words, *extra][[*words, *extra].index("-c") + 1 :]
            if script:
                yield script[0]
    elif isinstance(command, str):
        yield command
    elif command is None and extra and _runs_dr_image(node.get("image")):
        yield ["dr", *extra]  # rule 7: the image's ENTRYPOINT is dr
    if isinstance(node.get("run"), str):
        yield node["run"]
    for key, value in node.items():
        if key not in ("command", "args", "entrypoint", "run"):
            yield from _yaml_argvs(value)


def _runs_dr_image(image: object) -> bool:
    """A Kubernetes container or compose service of the image deploy/Dockerfile builds
    (repository name `vault-dr`), when that Dockerfile's ENTRYPOINT is dr."""
    if not isinstance(image, str):
        return False
    repo = image.split("@")[0].rsplit("/", 1)[-1].split(":")[0]
    return repo == "vault-dr" and _dockerfile_entrypoint_is_dr()


def _dockerfile_entrypoint_is_dr() -> bool:
    dockerfile = ROOT / "deploy" / "Dockerfile"
    if not dockerfile.is_file():
        return False
    entry = re.findall(r"^\s*ENTRYPOINT\s+(\[.*\])\s*$", dockerfile.read_text(), re.M)
    return bool(entry) and _is_dr([str(w) for w in json.loads(entry[-1])], 0) > 0


def _from_yaml(text: str, where: str, start: int = 1) -> Iterator[Found]:
    for doc in yaml.safe_load_all(text):
        for item in _yaml_argvs(doc):
            if isinstance(item, str):
                # A script keeps its own line numbers; point at the file and the line.
                for found in _from_shell(item, where, start):
                    line = _line_of(text, found.argv, start)
                    yield Found(f"{where}:{line}", found.argv, found.kind)
            else:
                n = _is_dr(item, 0)
                yield Found(
                    f"{where}:{_line_of(text, tuple(item[n:]), start)}", tuple(item[n:]), "command"
                )


def _line_of(text: str, argv: tuple[str, ...], start: int) -> int:
    """Best effort: the first line that holds the command's first words."""
    needles = [a for a in argv if a.startswith("-")][:1] + list(argv[:1])
    for n, line in enumerate(text.splitlines(), start):
        if all(x in line for x in needles):
            return n
    return start


def _from_dockerfile(text: str, where: str) -> Iterator[Found]:
    entry: list[str] | None = None
    for n, line in enumerate(text.splitlines(), 1):
        m = re.match(r"\s*(ENTRYPOINT|CMD)\s+(\[.*\])\s*$", line)
        if not m:
            if re.match(r"\s*RUN\s", line):
                yield from _from_shell(line.split(None, 1)[1], where, n)
            continue
        words = [str(w) for w in json.loads(m.group(2))]
        if m.group(1) == "ENTRYPOINT":
            entry = words if _is_dr(words, 0) else None
        elif entry is not None:
            yield Found(f"{where}:{n}", tuple(entry[_is_dr(entry, 0) :] + words), "command")
        elif _is_dr(words, 0):
            yield Found(f"{where}:{n}", tuple(words[_is_dr(words, 0) :]), "command")


FENCE = re.compile(r"^(\s*)```\s*([\w+-]*)")
SPAN = re.compile(r"(?<!`)`(dr(?: [^`]*)?)`(?!`)")


def _from_markdown(path: Path) -> Iterator[Found]:
    where = _rel(path)
    lines = path.read_text().splitlines()
    prose: list[tuple[int, str]] = []
    i = 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            prose.append((i + 1, lines[i]))
            i += 1
            continue
        indent, tag = len(m.group(1)), m.group(2).lower()
        body: list[str] = []
        j = i + 1
        while j < len(lines) and not re.match(r"^\s*```\s*$", lines[j]):
            body.append(lines[j][indent:] if lines[j][:indent].isspace() else lines[j].lstrip())
            j += 1
        text, first = "\n".join(body), i + 2
        if tag in SHELL_TAGS:
            yield from _from_shell(text, where, first, cron=tag in ("cron", "crontab"))
        elif tag in YAML_TAGS:
            # A fragment (`- type: x25519` under a key shown above) holds no command.
            with contextlib.suppress(yaml.YAMLError):
                yield from _from_yaml(text, where, first)
        elif tag in UNIT_TAGS:
            yield from _from_unit(text, where, first)
        i = j + 1
    # Inline code spans, which may wrap across a line break inside a paragraph.
    paragraph: list[tuple[int, str]] = []
    for n, line in [*prose, (0, "")]:
        if line.strip():
            paragraph.append((n, line))
            continue
        joined = " ".join(text for _, text in paragraph)
        for m in SPAN.finditer(joined):
            line = _span_line(paragraph, m.group(1))
            yield from _from_span(m.group(1), f"{where}:{line}")
        paragraph = []


def _span_line(paragraph: list[tuple[int, str]], span: str) -> int:
    head = span[:20].split("\n")[0]
    return next((n for n, text in paragraph if head in text), paragraph[0][0])


def _from_span(span: str, where: str) -> Iterator[Found]:
    span = re.sub(r"\s+", " ", span)
    # Rule 3: `--add/--remove` names two options.
    span = re.sub(r"(--[\w-]+)/(--[\w-]+)", r"\1 X \2", span)
    for argv, error in _shell_commands(span):
        yield Found(where, tuple(argv), "error" if error else "prose")


def _sources() -> Iterator[tuple[Path, str]]:
    """(file, how to read it) for every file that may show a dr command."""
    yield ROOT / "README.md", "md"
    for folder in ("docs", "runbooks"):
        for path in sorted((ROOT / folder).glob("*.md")):
            yield path, "md"
    for path in sorted(ROOT.glob("docker-compose*.y*ml")):
        yield path, "yaml"
    for folder in ("deploy", ".github", "terraform"):
        for path in sorted((ROOT / folder).rglob("*")):
            if not path.is_file() or ".terraform" in path.parts:
                continue
            name = path.name
            if name.endswith(".md"):
                yield path, "md"
            elif folder == "terraform":
                continue
            elif name.endswith((".yaml", ".yml")):
                yield path, "yaml"
            elif name.endswith((".cron", ".crontab")) or name.startswith("crontab"):
                yield path, "cron"
            elif name.endswith(".service"):
                yield path, "unit"
            elif name.endswith(".sh"):
                yield path, "sh"
            elif name == "Dockerfile" or name.startswith("Dockerfile."):
                yield path, "dockerfile"


def _found() -> list[Found]:
    out: list[Found] = []
    for path, kind in _sources():
        where, text = _rel(path), path.read_text()
        if kind == "md":
            out += _from_markdown(path)
        elif kind == "yaml":
            out += _from_yaml(text, where)
        elif kind == "cron":
            out += _from_shell(text, where, cron=True)
        elif kind == "unit":
            out += _from_unit(text, where)
        elif kind == "sh":
            out += _from_shell(text, where)
        elif kind == "dockerfile":
            out += _from_dockerfile(text, where)
    return [_classify(f) for f in out]


def _classify(found: Found) -> Found:
    """Rule 3 (synopsis brackets and ellipses) and rule 4 (bare mentions)."""
    argv: list[str] = []
    for word in found.argv:
        if word.startswith("[-"):
            word = word[1:]
        word = re.sub(r"(\.\.\.)?\]+$", "", word) if word.endswith("]") else word
        if word.endswith("...") and word != "...":
            word = word[:-3]
        if word and word != "...":
            argv.append(word)
    bare = all(re.fullmatch(r"[a-z][a-z-]*", a) for a in argv)
    if found.kind == "prose" and bare and len(argv) <= 2:
        return Found(found.where, tuple(argv), "mention")
    return Found(found.where, tuple(argv), found.kind)


FOUND = _found()


# --- checking ------------------------------------------------------------------------


def _is_placeholder(word: str) -> bool:
    return bool(
        word.startswith("$")
        or word in ("GH_EXPR", "SUBST", "PLACEHOLDER")
        or re.fullmatch(r"[A-Z][A-Z0-9_]*", word)
        or "_OR_" in word
    )


def _sample(param: click.Parameter) -> str | None:
    """A valid value for a typed option (rule 2), or None for a plain string."""
    t = param.type
    if isinstance(t, click.Choice):
        return str(t.choices[0])
    if isinstance(t, click.IntRange | click.FloatRange):
        return str(t.min if t.min is not None else 1)
    if isinstance(t, click.types.IntParamType | click.types.FloatParamType):
        return "1"
    if getattr(param, "metavar", None) == "DURATION":
        return "10m"
    return None


def _fill(command: click.Command, args: list[str], prose: bool) -> list[str]:
    """Placeholders of typed options replaced by samples (rule 2); in prose, an option
    named without its value gets one (rule 4)."""
    by_name = {o: p for p in command.params for o in getattr(p, "opts", [])}
    out: list[str] = []
    k = 0
    while k < len(args):
        word = args[k]
        out.append(word)
        k += 1
        param = by_name.get(word)
        if param is None or getattr(param, "is_flag", False) or not isinstance(param, click.Option):
            continue
        sample = _sample(param)
        if k < len(args) and not (prose and args[k].startswith("-")):
            out.append(sample if sample is not None and _is_placeholder(args[k]) else args[k])
            k += 1
        elif prose:
            out.append(sample or "VALUE")
    return out


def parse(argv: tuple[str, ...], mention: bool = False, prose: bool = False) -> None:
    """Parse `dr ARGV` as click would, down to the last (sub)command; nothing runs.
    Raises click.UsageError (or a subclass) when it does not parse."""
    _register_commands()  # every command, as `dr --help` lists them
    command: click.Command = cli
    ctx: click.Context | None = None
    args = list(argv)
    name = "dr"
    while True:
        if mention and isinstance(command, click.Group) and args:
            sub = command.get_command(click.Context(command), args[0])
            if sub is None:
                raise click.UsageError(f"no command {args[0]!r}")
            command, name, args = sub, args[0], args[1:]
            continue
        if mention:
            return
        try:
            ctx = command.make_context(name, _fill(command, args, prose), parent=ctx)
        except click.exceptions.Exit:  # --help, --version
            return
        except click.MissingParameter:
            if prose:  # rule 4: prose names options; code blocks give every required one
                return
            raise
        if not isinstance(command, click.Group):
            return
        rest = [*ctx._protected_args, *ctx.args]
        if not rest:
            assert argv and set(argv) <= {"--version", "--help", "-h"}, argv
            return
        name, sub, args = command.resolve_command(ctx, rest)
        assert sub is not None and name is not None
        command = sub


def _ids(found: list[Found]) -> list[str]:
    return [f"{f.where} dr {' '.join(f.argv)}"[:150] for f in found]


COMMANDS = [f for f in FOUND if f.kind != "error"]
ERRORS = [f for f in FOUND if f.kind == "error"]


def test_the_commands_are_found() -> None:
    where = [f.where.split(":")[0] for f in FOUND]
    runbooks = [f for f in COMMANDS if f.where.startswith("runbooks/")]
    assert len(runbooks) > 80, _ids(runbooks)
    for name in ("restore", "drill", "verify", "list", "status", "rewrap", "keygen", "prune"):
        assert any(f.argv[:1] == (name,) or name in f.argv for f in runbooks), name
    assert any(f.argv.count("--to") > 1 for f in runbooks), "the multi-node restore"
    assert any(w == "README.md" for w in where)
    assert any(w.startswith("docs/") for w in where)
    # Each deployment form present in the tree yields its commands (an extractor that
    # silently misses a form would pass every parse test).
    for folder, suffixes in {
        "deploy/cron": (".crontab", ".cron"),
        "deploy/systemd": (".service",),
        "deploy/kubernetes": (".yaml", ".yml"),
        ".github/workflows": (".yaml", ".yml"),
    }.items():
        files = [p for p in (ROOT / folder).rglob("*") if p.name.endswith(suffixes)]
        if files:
            assert any(w.startswith(folder + "/") for w in where), f"no dr command in {folder}"


@pytest.mark.parametrize("found", COMMANDS, ids=_ids(COMMANDS))
def test_command_parses(found: Found) -> None:
    try:
        parse(found.argv, mention=found.kind == "mention", prose=found.kind == "prose")
    except click.UsageError as exc:
        pytest.fail(f"{found.where}: `dr {' '.join(found.argv)}` does not parse: {exc}")


def test_error_examples_fail() -> None:
    """Rule 5 (there may be none): each marked example really is a mistake."""
    for found in ERRORS:
        with pytest.raises(click.UsageError):
            parse(found.argv)
            pytest.fail(
                f"{found.where}: `dr {' '.join(found.argv)}` is marked as an error example "
                "but parses"
            )


def test_the_checker_catches_mistakes() -> None:
    """The rules are not so lenient that a wrong command passes."""
    for bad in (
        "restore --backup ID",  # --to is required
        "restore --to ADDR --unseal-key-file k.json",  # a typo
        "backup --jitter 10x",  # a literal duration is checked
        "drill --runtime docker",
        "nosuch --json",
        "report rotate",
        "--no-such-flag list",
    ):
        with pytest.raises(click.UsageError):
            parse(tuple(shlex.split(bad)))
    with pytest.raises(click.UsageError):
        parse(("nosuch",), mention=True)
    parse(("restore",), mention=True)
    parse(("backup", "--jitter", "$JITTER"))
    parse(("report", "rotation", "--days", "90", "--json"))


@pytest.mark.parametrize(
    ("line", "argv"),
    [
        ('VAULT_TOKEN=x dr -c a.yaml backup >> "$LOG" 2>&1', ["-c", "a.yaml", "backup"]),
        ("env -i X=1 /usr/local/bin/dr list --json | jq .", ["list", "--json"]),
        (
            "dr drill --backup ${{ inputs.backup }} >> $GITHUB_STEP_SUMMARY",
            ["drill", "--backup", "GH_EXPR"],
        ),
        ("if ! dr status --nagios; then exit 2; fi", ["status", "--nagios"]),
        (
            "dr rewrap --backup ID|latest --add NAME",
            ["rewrap", "--backup", "ID_OR_latest", "--add", "NAME"],
        ),
        ("sudo -u vault-dr dr verify  # the cron user", ["verify"]),
        ("python -m dr prune --dry-run", ["prune", "--dry-run"]),
    ],
)  # fmt: skip
def test_shell_forms(line: str, argv: list[str]) -> None:
    assert [a for a, _ in _shell_commands(line)] == [argv]


def test_deployment_forms() -> None:
    k8s = (
        "containers:\n- name: dr\n  command: [dr]\n"
        "  args: [-c, /etc/dr/dr.yaml, backup, --jitter, 10m]\n"
    )
    assert [f.argv for f in _from_yaml(k8s, "x")] == [
        ("-c", "/etc/dr/dr.yaml", "backup", "--jitter", "10m")
    ]
    assert [f.argv for f in _from_yaml('command: ["dr", "prune"]\n', "x")] == [("prune",)]
    assert [f.argv for f in _from_yaml("command: [sh, -c, 'dr list && dr status']\n", "x")] == [
        ("list",),
        ("status",),
    ]
    gh = (
        "jobs:\n  d:\n    steps:\n    - run: |\n"
        '        set -e\n        dr -c "$CFG" drill --json > r.json\n'
    )
    assert [f.argv for f in _from_yaml(gh, "x")] == [("-c", "$CFG", "drill", "--json")]
    assert [f.argv for f in _from_unit("ExecStart=-/usr/bin/dr -c %d/dr.yaml backup\n", "x")] == [
        ("-c", "%d/dr.yaml", "backup")
    ]
    cron = "MAILTO=ops\n# comment\n0 */6 * * * vault-dr dr backup --jitter 10m\n@daily dr prune\n"
    assert [f.argv for f in _from_shell(cron, "x", cron=True)] == [
        ("backup", "--jitter", "10m"),
        ("prune",),
    ]
    if _dockerfile_entrypoint_is_dr():
        job = "image: registry.example.com/vault-dr:0.1.0@sha256:00\nargs: [prune, --json]\n"
        assert [f.argv for f in _from_yaml(job, "x")] == [("prune", "--json")]
    assert [f.argv for f in _from_yaml("image: busybox\nargs: [prune]\n", "x")] == []
    docker = 'ENTRYPOINT ["dr"]\nCMD ["backup"]\n'
    assert [f.argv for f in _from_dockerfile(docker, "x")] == [("backup",)]


# --- the runbooks themselves -----------------------------------------------------------


def _runbooks() -> list[Path]:
    return [p for p in sorted(RUNBOOKS.glob("*.md")) if p.name != "README.md"]


@pytest.mark.parametrize("path", _runbooks(), ids=lambda p: p.name)
def test_runbook_sections(path: Path) -> None:
    headings = re.findall(r"^## (.+?)\s*$", path.read_text(), re.M)
    wanted = [h for h in headings if h in SECTIONS]
    assert wanted == list(SECTIONS), (
        f"{_rel(path)}: needs the level-2 headings {SECTIONS} in this order; has {headings}"
    )


def test_index_lists_every_runbook() -> None:
    index = (RUNBOOKS / "README.md").read_text()
    linked = set(re.findall(r"\]\(([\w.-]+\.md)\)", index))
    assert linked == {p.name for p in _runbooks()}


def test_runbook_references_exist() -> None:
    """`runbooks/x.md` named anywhere we scan (and in the code) is a file that exists."""
    texts = [p for p, _ in _sources()] + sorted((ROOT / "dr").rglob("*.py"))
    missing = []
    for path in texts:
        for name in re.findall(r"runbooks/([\w.-]+\.md)", path.read_text()):
            if not (RUNBOOKS / name).is_file():
                missing.append(f"{_rel(path)}: runbooks/{name}")
    for path in [*_runbooks(), RUNBOOKS / "README.md"]:
        for name in re.findall(r"\]\(([\w.-]+\.md)\)", path.read_text()):
            if not (RUNBOOKS / name).is_file():
                missing.append(f"{_rel(path)}: ({name})")
    assert not missing, missing
