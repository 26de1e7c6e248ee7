"""The `dr` command: global options, the one top-level error handler, and the commands.

Commands parse, call one orchestrator, and render; business logic lives below. Errors
end in one line `error: ...` on stderr and the documented exit code
(docs/exit-codes.md); tracebacks only with --debug.
"""

from __future__ import annotations

import logging
import signal
import sys
from types import FrameType
from typing import Any, NoReturn

import click

import dr
from dr.cli.state import State
from dr.errors import DRError, ExitCode, Interrupted
from dr.hygiene import harden_process
from dr.logsetup import setup_logging

log = logging.getLogger("dr")


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option(
    "-c",
    "--config",
    "config_path",
    envvar="DR_CONFIG",
    metavar="FILE",
    help="Config file (default: $DR_CONFIG, else ./dr.yaml).",
)
@click.option("-v", "--verbose", count=True, help="Log progress at INFO level on stderr.")
@click.option("-q", "--quiet", is_flag=True, help="No progress display, warnings and errors only.")
@click.option("--debug", is_flag=True, help="Debug logging, with tracebacks.")
@click.option(
    "--log-format",
    type=click.Choice(["text", "json"]),
    default="text",
    envvar="DR_LOG_FORMAT",
    show_default=True,
    help="Format of log lines on stderr.",
)
@click.version_option(dr.__version__, prog_name="vault-dr")
@click.pass_context
def cli(
    ctx: click.Context,
    config_path: str | None,
    verbose: int,
    quiet: bool,
    debug: bool,
    log_format: str,
) -> None:
    """vault-dr: backups, restores and restore drills for Vault and OpenBao (raft).

    Exit codes are documented in docs/exit-codes.md; results go to stdout, logs to stderr.
    """
    setup_logging(verbosity=0 if quiet else verbose, fmt=log_format, debug=debug)
    ctx.obj = State(config_path=config_path, quiet=quiet)


def _register_commands() -> None:
    from dr.cli import backup_cmds, demo_cmd, key_cmds, restore_cmds

    for command in (
        *backup_cmds.COMMANDS,
        *restore_cmds.COMMANDS,
        *key_cmds.COMMANDS,
        demo_cmd.demo,
    ):
        cli.add_command(command)


def _on_sigterm(signum: int, frame: FrameType | None) -> NoReturn:
    # Raised inside the main thread so every `finally` and context manager runs:
    # uploads abort, throwaway servers stop.
    raise Interrupted("terminated by SIGTERM; partial work was cleaned up")


def main(argv: list[str] | None = None) -> NoReturn:
    harden_process()  # before any key material is read
    _register_commands()
    signal.signal(signal.SIGTERM, _on_sigterm)
    code: int
    try:
        result: Any = cli.main(args=argv, prog_name="dr", standalone_mode=False)
        code = int(result) if isinstance(result, int) else ExitCode.OK
    except DRError as exc:
        log.debug("failed", exc_info=True)
        # One line, whatever a server put in the message.
        click.echo("error: " + " ".join(exc.message.split()), err=True)
        code = exc.exit_code
    except click.exceptions.Exit as exc:
        code = exc.exit_code
    except click.exceptions.Abort:
        click.echo("error: aborted", err=True)
        code = ExitCode.INTERRUPTED
    except click.ClickException as exc:
        exc.show()
        code = ExitCode.USAGE
    except KeyboardInterrupt:
        click.echo("error: interrupted; partial work was cleaned up", err=True)
        code = ExitCode.INTERRUPTED
    except Exception as exc:
        log.debug("internal error", exc_info=True)
        click.echo(
            f"error: internal error: {type(exc).__name__}: {str(exc)[:200]} "
            "(run with --debug for the traceback, and please report it)",
            err=True,
        )
        code = ExitCode.INTERNAL
    sys.exit(code)
