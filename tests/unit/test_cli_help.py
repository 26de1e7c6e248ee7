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


def test_the_lazy_command_map_names_exactly_the_commands_the_modules_define() -> None:
    import importlib

    from dr.cli.main import COMMAND_MODULES

    defined = {
        command.name: module_name
        for module_name in set(COMMAND_MODULES.values())
        for command in importlib.import_module(module_name).COMMANDS
    }
    assert defined == COMMAND_MODULES


def test_dr_help_lists_every_command_and_one_runs_without_the_others() -> None:
    import subprocess
    import sys

    from dr.cli.main import COMMAND_MODULES

    listed = subprocess.run(
        [sys.executable, "-m", "dr", "--help"], capture_output=True, text=True, check=True
    ).stdout
    for name in COMMAND_MODULES:
        assert f"\n  {name} " in listed, name
    # `dr list --help` imports its own module only: not the drill's, not the demo's.
    probe = (
        "import sys; from dr.cli.main import main\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "print(sorted(m for m in sys.modules if m.startswith('dr.cli.')))"
    )
    loaded = (
        subprocess.run(
            [sys.executable, "-c", probe, "list", "--help"],
            capture_output=True,
            text=True,
            check=False,
        )
        .stdout.strip()
        .splitlines()[-1]
    )
    assert "dr.cli.backup_cmds" in loaded
    assert "dr.cli.restore_cmds" not in loaded and "dr.cli.demo_cmd" not in loaded
