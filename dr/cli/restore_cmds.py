"""`dr restore`, `dr decrypt`, `dr drill`."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import click

from dr.cli import output as cli_output
from dr.cli.reporting import metrics_file_option, reported
from dr.cli.state import State, jitter_option, open_backup, pass_state
from dr.cli.state import jitter as sleep_jitter
from dr.config import Config
from dr.crypto.recipients import KeyWrapper, select_wrappers
from dr.errors import UsageError
from dr.progress import Progress, human_bytes
from dr.vault.auth import AuthSettings, Credential

allow_unsigned_option = click.option(
    "--allow-unsigned",
    is_flag=True,
    help="Accept a backup that carries no writer signature (made before the writer key, "
    "or with encryption.allow_unsigned); it is named in a warning.",
)

skip_unauthentic_option = click.option(
    "--skip-unauthentic",
    is_flag=True,
    help="With --backup latest: when the newest backup cannot be authenticated, use the "
    "newest one that can (with a warning) instead of refusing.",
)

backup_option = click.option(
    "--backup",
    "which",
    default="latest",
    show_default=True,
    metavar="ID|latest",
    help="The backup: an id from dr list, or latest (the newest that authenticates).",
)

identity_option = click.option(
    "--identity",
    type=click.Path(dir_okay=False, path_type=Path),
    help="An offline identity file (dr keygen): tried first, e.g. when the KMS is gone.",
)


def wrappers_for(config: Config, identity: Path | None) -> list[KeyWrapper]:
    """The recipients to try: the --identity first when given, then the configured ones."""
    return select_wrappers(config.encryption, identity)


def _progress(state: State, label: str) -> Progress:
    return Progress(label, enabled=None if not state.quiet else False)


@click.command()
@backup_option
@click.option(
    "--to",
    "targets",
    required=True,
    multiple=True,
    metavar="ADDR",
    help="A node of the Vault cluster to restore into (repeatable). The cluster's other "
    "nodes are found through sys/ha-status; the snapshot goes to the active node and "
    "every node is unsealed.",
)
@click.option(
    "--token-env",
    default=None,
    metavar="VAR",
    help="Variable holding a token of the TARGET (used before the restore). "
    "Default: vault.auth (vault.token_env / vault.token_file, or the login).",
)
@click.option(
    "--token-file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="File holding a token of the TARGET (instead of --token-env).",
)
@click.option(
    "--verify-token-env",
    default=None,
    metavar="VAR",
    help="Variable holding a SOURCE-cluster token that can read every path, used after "
    "the restore to verify it. Default: vault.auth, the source cluster's credentials.",
)
@click.option(
    "--verify-token-file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="File holding that SOURCE-cluster token (instead of --verify-token-env).",
)
@click.option(
    "--unseal-keys-file",
    type=click.Path(dir_okay=False, path_type=Path),
    help='The source cluster\'s unseal keys (operator init JSON, or {"keys": [...]}). '
    "Default: drill.unseal_keys_file.",
)
@click.option(
    "--safety-snapshot",
    metavar="auto|DIR",
    default=None,
    help="First back up the TARGET (encrypted and signed like any backup, cluster "
    "'<cluster>-safety'): 'auto' into the configured store, or DIR as a file store; "
    "the restore can then be undone (docs/restore.md).",
)
@click.option("--no-verify", is_flag=True, help="Skip checking every cataloged path afterwards.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@identity_option
@skip_unauthentic_option
@allow_unsigned_option
@pass_state
def restore(
    state: State,
    which: str,
    targets: tuple[str, ...],
    token_env: str | None,
    token_file: Path | None,
    verify_token_env: str | None,
    verify_token_file: Path | None,
    unseal_keys_file: Path | None,
    safety_snapshot: str | None,
    no_verify: bool,
    yes: bool,
    as_json: bool,
    identity: Path | None,
    skip_unauthentic: bool,
    allow_unsigned: bool,
) -> None:
    """Restore a backup into the Vault cluster at ADDR, unseal every node with the source
    cluster's keys, and check that it serves every cataloged path.

    Every frame is authenticated before the first byte is sent to Vault. Every node must
    be initialized and unsealed beforehand; afterwards one is active and each other one
    a standby that serves reads. Exit codes: 0 restored and verified, 10 some cataloged
    path not served, 2 usage (e.g. no --unseal-keys-file for another cluster), 3 a node
    not ready, unreachable or not settling, 6 the backup failed authentication.
    """
    from dr.ops.restore import RestoreRequest, run_restore

    for addr in targets:
        if not addr.strip().lower().startswith(("http://", "https://")):
            raise UsageError(
                f"--to {addr!r} is not a Vault address; give a URL such as https://vault-1:8200"
            )

    config, store, manifest = open_backup(
        state, which, skip_unauthentic=skip_unauthentic, allow_unsigned=allow_unsigned
    )
    configured = config.vault.auth
    target_auth = _token_auth(token_env, token_file, "--token") or configured
    verify_auth = None
    if not no_verify:
        # After a forced restore the target holds the SOURCE cluster's auth data (its own
        # token died with its old data): verify with the source's credentials.
        verify_auth = _token_auth(verify_token_env, verify_token_file, "--verify-token")
        verify_auth = verify_auth or configured
    # Read now, so a missing variable or file fails before anything is downloaded.
    if target_auth.method == "token":
        target_auth.token.read()
    if verify_auth is not None and verify_auth.method == "token":
        try:
            verify_auth.token.read()
        except UsageError as exc:
            raise UsageError(
                f"{exc} (the SOURCE cluster's token verifies the restored Vault; or pass "
                "--verify-token-env/--verify-token-file, or --no-verify)"
            ) from None

    def confirm(question: str) -> None:
        if yes:
            return
        if not sys.stdin.isatty():
            raise UsageError(f"{question} Refusing without confirmation: pass --yes")
        click.confirm(question, abort=True, err=True)

    result = run_restore(
        RestoreRequest(
            config=config,
            store=store,
            manifest=manifest,
            wrappers=wrappers_for(config, identity),
            target=targets,
            target_auth=target_auth,
            verify_auth=verify_auth,
            unseal_keys_file=unseal_keys_file or config.drill.unseal_keys_file,
            confirm=confirm,
            seal=config.drill.seal,
            safety_snapshot=safety_snapshot,
            progress=_progress(state, "fetch"),
        )
    )
    if as_json:
        click.echo(json.dumps(result.to_json(), indent=2, sort_keys=True))
    else:
        click.echo(result.summary())
    result.raise_if_failed()


def _token_auth(env: str | None, file: Path | None, option: str) -> AuthSettings | None:
    """`--token-env`/`--token-file` style options as a token login, or None."""
    if env and file:
        raise UsageError(f"pass {option}-env or {option}-file, not both")
    if not env and not file:
        return None
    return AuthSettings(method="token", token=Credential(env=env, file=file, where=option))


@click.command()
@backup_option
@click.option(
    "-o",
    "--output",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Where to write the decrypted raft snapshot (created 0600).",
)
@identity_option
@skip_unauthentic_option
@allow_unsigned_option
@pass_state
def decrypt(
    state: State,
    which: str,
    output: Path,
    identity: Path | None,
    skip_unauthentic: bool,
    allow_unsigned: bool,
) -> None:
    """Write a backup's decrypted raft snapshot to a file, for a manual restore with
    `bao|vault operator raft snapshot restore -force FILE`.

    The file is as secret as Vault itself: it is written 0600 and only after every
    frame authenticated; delete it after use.
    """
    from dr.ops.fetch import fetch_backup

    config, store, manifest = open_backup(
        state, which, skip_unauthentic=skip_unauthentic, allow_unsigned=allow_unsigned
    )
    if output.exists():
        raise UsageError(f"{output} exists; refusing to overwrite it")
    with fetch_backup(
        store, manifest, wrappers_for(config, identity), progress=_progress(state, "fetch")
    ) as fetched:
        partial = output.with_name(f".{output.name}.partial")
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "wb") as out:
                for frame in fetched.plaintext():
                    out.write(frame)
                out.flush()
                os.fsync(out.fileno())
            os.replace(partial, output)
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
    cli_output.note(
        f"warning: {output} holds the decrypted snapshot of {manifest.backup_id}: it is as "
        "secret as Vault itself; delete it after the restore",
        level="warning",
        backup_id=manifest.backup_id,
        path=str(output),
    )
    click.echo(
        f"{output}: {human_bytes(manifest.snapshot.plaintext_size)} raft snapshot at index "
        f"{fetched.info.index}; restore with: bao operator raft snapshot restore -force {output}"
    )


def _duration(ctx: click.Context, param: click.Parameter, value: str | None) -> float | None:
    from dr.configschema import parse_duration
    from dr.errors import ConfigError

    if value is None:
        return None
    try:
        return parse_duration(value, "command line", f"--{param.name}".replace("_", "-"))
    except ConfigError as exc:
        raise click.BadParameter(exc.problem) from None


@click.command()
@click.option(
    "--backup",
    "which",
    default="latest",
    show_default=True,
    metavar="ID|latest|random",
    help="The backup to drill: an id from dr list, latest (the newest that "
    "authenticates), or random (any complete one: old backups get drilled too).",
)
@click.option(
    "--runtime",
    type=click.Choice(["auto", "process", "container"]),
    default=None,
    help="Where the throwaway Vault runs (default: drill.runtime, else auto).",
)
@click.option(
    "--report-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Write the JSON and Markdown reports here.",
)
@click.option(
    "--junit",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write a JUnit XML report here.",
)
@click.option(
    "--unseal-keys-file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="The source cluster's unseal keys (default: drill.unseal_keys_file).",
)
@click.option(
    "--recovery-keys-file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Auto-unseal sources: the source cluster's recovery keys, for generate-root "
    "(default: drill.recovery_keys_file, else recovery_keys_b64 in the unseal keys file).",
)
@click.option(
    "--rto-objective",
    callback=_duration,
    metavar="DURATION",
    help="Fail (exit 11) when the RTO is above this (default: drill.rto_objective).",
)
@click.option(
    "--max-backup-age",
    callback=_duration,
    metavar="DURATION",
    help="Fail (exit 12) when the backup is older (default: drill.max_backup_age, 26h; "
    "0 turns it off).",
)
@click.option(
    "--allow-version-mismatch",
    is_flag=True,
    help="Warn instead of refusing when the runtime's product/version differs.",
)
@click.option(
    "--allow-unisolated",
    is_flag=True,
    help="Run even where the throwaway cannot be network-isolated (the report says "
    "NOT ISOLATED); without it such a drill refuses to start (exit 2).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the JSON report on stdout.")
@jitter_option
@metrics_file_option
@identity_option
@allow_unsigned_option
@skip_unauthentic_option
@pass_state
def drill(
    state: State,
    which: str,
    runtime: str | None,
    report_dir: Path | None,
    junit: Path | None,
    unseal_keys_file: Path | None,
    recovery_keys_file: Path | None,
    rto_objective: float | None,
    max_backup_age: float | None,
    allow_version_mismatch: bool,
    allow_unisolated: bool,
    as_json: bool,
    jitter: float,
    metrics_file: Path | None,
    identity: Path | None,
    skip_unauthentic: bool,
    allow_unsigned: bool,
) -> None:
    """Restore a backup into a throwaway Vault, check every cataloged path, time the RTO.

    Exit codes: 0 passed, 10 items failed, 11 RTO above objective, 12 backup too old,
    6 backup failed authentication (no Vault is started then) or the pinned drill
    binary/image differs, 13 the seal preflight failed (seal key unusable, too few
    unseal/recovery keys), 2 the runtime cannot isolate the server (see
    --allow-unisolated).
    """
    from dr.ops.drill import DrillOptions, run_drill
    from dr.ops.report import failure, to_json, to_markdown, write_reports

    # Metrics and alerts of every outcome (docs/metrics.md, docs/alerts.md); the config
    # loads on entering, so a broken one fails now, not after the jitter.
    with reported(state, "drill", metrics_file) as run:
        sleep_jitter(jitter)
        config, store, manifest = open_backup(
            state, which, skip_unauthentic=skip_unauthentic, allow_unsigned=allow_unsigned
        )
        if rto_objective is None:
            rto_objective = config.drill.rto_objective
        if max_backup_age is None:
            max_backup_age = config.drill.max_backup_age
        elif max_backup_age == 0:  # --max-backup-age 0: off for this run
            max_backup_age = None
        options = DrillOptions(
            runtime=runtime or config.drill.runtime,
            allow_version_mismatch=allow_version_mismatch,
            unseal_keys_file=unseal_keys_file or config.drill.unseal_keys_file,
            recovery_keys_file=recovery_keys_file or config.drill.recovery_keys_file,
            seal=config.drill.seal,
            nodes=config.drill.nodes,
            rto_objective=rto_objective,
            max_backup_age=max_backup_age,
            allow_unisolated=allow_unisolated,
            binary_sha256=config.drill.binary_sha256,
            image_digest=config.drill.image_digest,
        )
        result = run_drill(config, store, manifest, wrappers_for(config, identity), options)
        run.drill(result)  # before its failure is raised: a failed drill measured things too
        for path in write_reports(result, report_dir, junit):
            cli_output.note(f"report: {path}", report=str(path))
        if as_json:
            click.echo(json.dumps(to_json(result), indent=2))
        else:
            click.echo(to_markdown(result), nl=False)
        error = failure(result)
        if error is not None:
            raise error


COMMANDS: tuple[click.Command, ...] = (restore, decrypt, drill)
