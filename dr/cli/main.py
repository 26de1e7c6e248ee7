"""The `dr` command: global options, the one top-level error handler, and the commands.

Commands parse, call one orchestrator, and render; business logic lives below. Errors
end in one line `error: ...` on stderr and the documented exit code
(docs/exit-codes.md); tracebacks only with --debug.
"""

from __future__ import annotations

import gc
import importlib
import logging
import signal
import sys
from types import FrameType
from typing import Any, NoReturn

import click

import dr
from dr.cli import output
from dr.cli.state import State
from dr.errors import DRError, ExitCode, Interrupted
from dr.hygiene import harden_process, limit_malloc_arenas
from dr.logsetup import setup_logging

log = logging.getLogger("dr")

# Each command's module, imported only when that command runs (or `dr --help` lists
# them all): importing every command module cost ~75 ms of every `dr backup` from cron
# (restore, drill, demo, prometheus-client...; bench/). click documents this pattern
# ("lazily loading subcommands"). tests/unit/test_cli_help.py checks that this map
# names exactly the commands the modules define.
COMMAND_MODULES: dict[str, str] = {
    "backup": "dr.cli.backup_cmds",
    "list": "dr.cli.backup_cmds",
    "verify": "dr.cli.backup_cmds",
    "restore": "dr.cli.restore_cmds",
    "decrypt": "dr.cli.restore_cmds",
    "drill": "dr.cli.restore_cmds",
    "keygen": "dr.cli.key_cmds",
    "rewrap": "dr.cli.key_cmds",
    "report": "dr.cli.report_cmds",
    "status": "dr.cli.status_cmd",
    "prune": "dr.cli.prune_cmd",
    "demo": "dr.cli.demo_cmd",
}


class _LazyGroup(click.Group):
    """A group whose commands are imported on first use (COMMAND_MODULES)."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(super().list_commands(ctx)) | set(COMMAND_MODULES))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in COMMAND_MODULES:
            _add_module_commands(self, COMMAND_MODULES[cmd_name])
        return super().get_command(ctx, cmd_name)


def _add_module_commands(group: click.Group, module_name: str) -> None:
    module = importlib.import_module(module_name)
    commands: tuple[click.Command, ...] = getattr(module, "COMMANDS", ())
    for command in commands:
        group.add_command(command)


@click.group(
    cls=_LazyGroup,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
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
    """Import and add every command now (tests and tools that walk `cli.commands`);
    `dr` itself loads only the one it runs (_LazyGroup)."""
    for module_name in dict.fromkeys(COMMAND_MODULES.values()):
        _add_module_commands(cli, module_name)


def _on_sigterm(signum: int, frame: FrameType | None) -> NoReturn:
    # Raised inside the main thread so every `finally` and context manager runs:
    # uploads abort, throwaway servers stop.
    raise Interrupted("terminated by SIGTERM; partial work was cleaned up")


def main(argv: list[str] | None = None) -> NoReturn:
    harden_process()  # before any key material is read
    limit_malloc_arenas()  # before any thread starts
    signal.signal(signal.SIGTERM, _on_sigterm)
    code: int
    args = sys.argv[1:] if argv is None else argv
    try:
        result: Any = cli.main(args=argv, prog_name="dr", standalone_mode=False)
        code = int(result) if isinstance(result, int) else ExitCode.OK
    except DRError as exc:
        log.debug("failed", exc_info=True)
        code = exc.exit_code
        output.error(exc.message, code, type(exc).__name__, json_mode=output.json_requested(args))
    except click.exceptions.Exit as exc:
        code = exc.exit_code
    except click.exceptions.Abort:
        # click raises Abort at a prompt (declined, or Ctrl-C/EOF there): before any change.
        code = ExitCode.INTERRUPTED
        output.error(
            "aborted at the prompt, nothing was changed; run the command again and answer "
            "y, or pass --yes",
            code,
            "Aborted",
            json_mode=output.json_requested(args),
        )
    except click.ClickException as exc:
        code = ExitCode.USAGE
        if output.json_requested(args):
            output.error(exc.format_message(), code, type(exc).__name__, json_mode=True)
        else:
            exc.show()
    except KeyboardInterrupt:
        code = ExitCode.INTERRUPTED
        output.error(
            "interrupted; partial work was cleaned up",
            code,
            "Interrupted",
            json_mode=output.json_requested(args),
        )
    except Exception as exc:
        log.debug("internal error", exc_info=True)
        code = ExitCode.INTERNAL
        output.error(
            f"internal error: {type(exc).__name__}: {str(exc)[:200]} "
            "(run with --debug for the traceback, and please report it)",
            code,
            "InternalError",
            json_mode=output.json_requested(args),
        )
    if argv is None:
        # The process ends here: let the interpreter's teardown skip its last garbage
        # collections over every object still alive (botocore's service models, mostly),
        # ~0.1 s of CPU per command measured (bench/). Nothing is garbage that matters:
        # atexit handlers, weakref finalizers and stream flushes still run as usual.
        gc.freeze()
    sys.exit(code)
