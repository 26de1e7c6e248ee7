"""The one way a command takes its cluster's run lock (docs/locking.md).

    with cluster_lock(config, store, "backup", now=now) as lock:
        ...
        lock.check()  # right before the commit

`dr backup`, `dr prune` and `dr rewrap` take it, so one of them runs per cluster at a
time; a second exits at once with LOCKED (9), naming the holder. The lock is released
on every way out of the block (an error, Ctrl-C, SIGTERM: the CLI turns it into an
exception); a SIGKILLed holder's lock ends with its lease (S3) or its process (file).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

from dr.config import Config
from dr.manifest import Layout
from dr.storage.base import BackupStore
from dr.storage.lock import RunLock
from dr.timesource import Now, utcnow

log = logging.getLogger(__name__)


@contextmanager
def cluster_lock(
    config: Config, store: BackupStore, command: str, *, now: Now = utcnow
) -> Iterator[RunLock]:
    """Hold the run lock of `config.cluster` in `store` for the block; LockedError
    (exit 9) when another run holds it."""
    key = Layout(config.storage.prefix, config.cluster).lock_key
    lock = RunLock(store, key, command, lease=config.lock.lease, now=now)
    holder = lock.acquire()
    try:
        log.info(
            "run lock %s/%s taken for dr %s (lease %.0f s)",
            store.describe(),
            key,
            command,
            config.lock.lease,
            extra={"cluster": config.cluster, "lock_holder": holder.to_json()},
        )
        yield lock
    finally:
        lock.release()
        log.debug("run lock %s/%s released", store.describe(), key)
