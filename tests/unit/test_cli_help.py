"""Every option of every command says what it does (`dr X --help` is the first manual)."""

from __future__ import annotations

import click

from dr.cli.main import _register_commands, cli


def test_every_option_has_help_text() -> None:
    _register_commands()
    ctx = click.Context(cli)
    missing = [
        f"{name} {'/'.join(param.opts)}"
        for name in cli.list_commands(ctx)
        for param in (cli.get_command(ctx, name) or cli).params
        if isinstance(param, click.Option) and not param.help
    ]
    missing += [
        "dr " + "/".join(p.opts) for p in cli.params if isinstance(p, click.Option) and not p.help
    ]
    assert missing == []
