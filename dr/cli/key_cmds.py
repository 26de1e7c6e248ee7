"""Key management commands: `dr keygen` and `dr rewrap` (docs/keys.md)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from dr.cli import output
from dr.cli.state import State, pass_state
from dr.crypto.writer import generate_writer_key
from dr.crypto.x25519 import (
    SECRET_CHARS,
    SECRET_PREFIX,
    X25519Identity,
    write_identity,
)
from dr.errors import UsageError

_KEY_LENGTH = len(SECRET_PREFIX.replace("-", "")) + SECRET_CHARS


def _read_typed_key() -> str:
    """The key as typed on stdin: on a terminal, prompt and stop at the end of the key
    or at an empty line; otherwise read everything (a pipe, a here-document)."""
    stdin = sys.stdin
    if not stdin.isatty():
        return stdin.read()
    click.echo(
        f"Type the key as printed, {SECRET_PREFIX} and its groups (spaces and line breaks "
        "do not matter); an empty line ends it:",
        err=True,
    )
    lines: list[str] = []
    typed = 0
    while typed < _KEY_LENGTH:
        line = stdin.readline()
        if not line.strip():
            break
        lines.append(line)
        typed += len("".join(line.split()).replace("-", ""))
    return "".join(lines)


def _config_snippet(name: str, recipient: str) -> str:
    return (
        "encryption:\n  recipients:\n"
        f"    - type: x25519\n      name: {name}\n      recipient: {recipient}"
    )


@click.command()
@click.option(
    "-o",
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Identity file to create (mode 0600; an existing file is never overwritten).",
)
@click.option(
    "--from-printed",
    is_flag=True,
    help="Read the printed private key from stdin (typed or piped, never from argv), "
    "check its checksum, and write it to --out (or, without --out, only print its "
    "public key: a check of the paper copy).",
)
@click.option(
    "--name",
    default="break-glass",
    show_default=True,
    help="Recipient name used in the config snippet that is printed.",
)
@click.option(
    "--print-private",
    is_flag=True,
    help="Print the private key even when stdout is not a terminal (a pipe or a log file "
    "would keep it).",
)
@click.option(
    "--writer",
    is_flag=True,
    help="Make the backup job's writer key (Ed25519) instead: the private half signs "
    "every backup, the printed public key is pinned wherever backups are opened.",
)
def keygen(
    out: Path | None, from_printed: bool, name: str, print_private: bool, writer: bool
) -> None:
    """Make an offline x25519 identity (the break-glass key), or type one back; or, with
    --writer, the key that signs backups.

    Prints the public recipient for dr.yaml and the private key in a printable form
    with a checksum: print it or write it down and keep it in a safe. Needs no config.
    """
    if writer:
        if out is None or from_printed:
            raise UsageError("dr keygen --writer needs --out FILE (and no --from-printed)")
        if out.exists():
            raise UsageError(f"{out} exists; refusing to overwrite it")
        public = generate_writer_key(out)
        click.echo(
            f"Wrote {out} (mode 0600): the writer key. Keep it on the backup host only: "
            "whoever holds it can sign backups.\n\nPin its public key on every host that "
            "opens backups, and print it in the break-glass kit (not secret):\n\n"
            + _indent(
                "encryption:\n  writer:\n"
                f"    public_key: {public}\n    key_file: {out}   # backup host only"
            )
        )
        return
    if from_printed:
        identity = X25519Identity.from_text(_read_typed_key())
        if out is not None:
            write_identity(out, identity)
            click.echo(f"wrote {out} (mode 0600)")
        click.echo(f"the checksum is right; public key: {identity.recipient}")
        click.echo(
            "compare it with the recipient in the config, or with the key_id of the x25519 "
            "stanza in a backup's manifest.json"
        )
        return
    if out is None:
        raise UsageError("dr keygen needs --out FILE: where to write the new identity")
    identity = X25519Identity.generate()
    write_identity(out, identity)
    public = (
        f"Wrote {out} (mode 0600). Keep it offline: it opens every backup wrapped for it.\n\n"
        "Public recipient, for the config (not secret):\n\n"
        + _indent(_config_snippet(name, identity.recipient))
    )
    if not (print_private or sys.stdout.isatty()):
        # A private key must not end up in a pipe, a CI log or a file by accident.
        click.echo(public + f"\n\n  public key: {identity.recipient}")
        output.note(
            f"note: the private key was not printed (stdout is not a terminal); it is in "
            f"{out}: run dr keygen on a terminal to print it for the safe, or pass "
            "--print-private",
            identity_file=str(out),
        )
        return
    click.echo(
        public + "\n\nPrivate key, to print or write down and keep in a safe, with the public key\n"
        "below it. Type it back with `dr keygen --from-printed --out FILE`: its checksum\n"
        "catches a mistyped character.\n\n"
        + _indent(identity.printed())
        + f"\n\n  public key: {identity.recipient}"
    )


def _indent(text: str) -> str:
    return "\n".join("  " + line for line in text.splitlines())


@click.command()
@click.option(
    "--backup",
    "which",
    metavar="ID|latest",
    help="The backup to rewrap: an id from dr list, or latest (or --all).",
)
@click.option("--all", "all_backups", is_flag=True, help="Rewrap every backup of the cluster.")
@click.option(
    "--add",
    multiple=True,
    metavar="NAME|KEY",
    help="Wrap the data key for a configured recipient, named by its name, its label "
    "(type:name, as dr list shows) or its key (KMS alias/ARN/key id, vdr1... public key, "
    "key file path, transit key). Repeatable.",
)
@click.option(
    "--remove",
    multiple=True,
    metavar="NAME|KEY",
    help="Drop the stanza of a recipient, named as for --add or by the stored key id "
    "(repeatable). With --add of the same recipient: replace it (rotation).",
)
@click.option(
    "--identity",
    type=click.Path(dir_okay=False, path_type=Path),
    help="An offline identity (dr keygen) or key file to open the backups with, tried first.",
)
@click.option("--dry-run", is_flag=True, help="Open and plan everything, write nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.option(
    "--allow-unsigned",
    is_flag=True,
    help="Also rewrap backups that carry no writer signature.",
)
@pass_state
def rewrap(
    state: State,
    which: str | None,
    all_backups: bool,
    add: tuple[str, ...],
    remove: tuple[str, ...],
    identity: Path | None,
    dry_run: bool,
    as_json: bool,
    allow_unsigned: bool,
) -> None:
    """Add, rotate or remove recipients of stored backups by writing a new manifest
    version; the snapshot and catalog objects are not touched.

    A backup is never left without a recipient. Removing a recipient does not revoke it:
    the old manifest version keeps its stanza (docs/keys.md).
    """
    from dr.ops.rewrap import run_rewrap

    result = run_rewrap(
        state.config(),
        which=which,
        all_backups=all_backups,
        add=add,
        remove=remove,
        identity=identity,
        dry_run=dry_run,
        allow_unsigned=allow_unsigned,
    )
    if as_json:
        click.echo(json.dumps(result.to_json(), indent=2, sort_keys=True))
        return
    for change in result.changes:
        click.echo(change.describe())
    for bad in result.skipped:
        output.note(f"warning: skipped unreadable manifest {bad}", level="warning", key=bad)
    changed = sum(c.changed for c in result.changes)
    verb = "would rewrap" if dry_run else "rewrapped"
    click.echo(f"{verb} {changed} of {len(result.changes)} backup(s) in {result.store}")
    if changed and not dry_run and not any(c.manifest_version_id for c in result.changes):
        output.note(
            "note: this store keeps no object versions; the previous manifests were replaced",
            level="warning",
        )


COMMANDS: tuple[click.Command, ...] = (keygen, rewrap)
