"""What every command gets from the `dr` group: the config (loaded on first use) and -q."""

from __future__ import annotations

from dataclasses import dataclass

import click

from dr.config import Config, load_config


@dataclass
class State:
    config_path: str | None
    quiet: bool
    _config: Config | None = None

    def config(self) -> Config:
        if self._config is None:
            self._config = load_config(self.config_path)
        return self._config


pass_state = click.make_pass_decorator(State)
