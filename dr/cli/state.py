"""What every command gets from the `dr` group: the config (loaded on first use), -q,
and `open_backup`, the one way a command finds the backup it opens."""

from __future__ import annotations

from dataclasses import dataclass

import click

from dr.config import Config, load_config
from dr.manifest import Layout, Manifest
from dr.ops.find import resolve_backup, trust_of, warn_if_unsigned
from dr.storage.base import BackupStore
from dr.storage.factory import open_store


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


def open_backup(
    state: State, which: str, *, skip_unauthentic: bool = False, allow_unsigned: bool = False
) -> tuple[Config, BackupStore, Manifest]:
    """The backup to open: placed where it belongs and signed by a pinned writer key
    (unsigned only when allowed, with a warning); `latest` never falls back silently."""
    config = state.config()
    trust = trust_of(config.encryption, allow_unsigned=allow_unsigned)
    store = open_store(config.storage)
    store.preflight(write=False)
    manifest = resolve_backup(
        store,
        Layout(config.storage.prefix, config.cluster),
        which,
        writer=trust.writer,
        skip_unauthentic=skip_unauthentic,
        allow_unsigned=trust.allow_unsigned,
    )
    warn_if_unsigned(manifest)
    return config, store, manifest


def _jitter_seconds(ctx: click.Context, param: click.Parameter, value: str | None) -> float:
    from dr.configschema import parse_duration
    from dr.errors import ConfigError

    if value is None:
        return 0.0
    try:
        return parse_duration(value, "command line", "--jitter") or 0.0
    except ConfigError as exc:
        raise click.BadParameter(exc.problem) from None


jitter_option = click.option(
    "--jitter",
    "jitter",
    callback=_jitter_seconds,
    metavar="DURATION",
    help="Sleep a random time up to DURATION first (e.g. 10m), so a fleet of hosts on "
    "the same cron schedule does not hit Vault and S3 in the same second.",
)


def jitter(seconds: float) -> None:
    """Sleep uniformly in [0, seconds); logged so a slow start is explained."""
    if seconds <= 0:
        return
    import logging
    import secrets
    import time

    pause = secrets.randbelow(max(1, int(seconds * 1000))) / 1000
    logging.getLogger("dr.cli").info(
        "jitter: sleeping %.3f s of at most %g s first",  # exact: 0.96 is not "1.0"
        pause,
        seconds,
        extra={"jitter_seconds": pause},
    )
    time.sleep(pause)
