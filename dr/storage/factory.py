"""Build the configured store through the registry in dr.storage (no type ladder here)."""

from __future__ import annotations

from dr.storage import open_store as _open_registered
from dr.storage.base import BackupStore
from dr.storage.settings import StorageConfig


def open_store(config: StorageConfig) -> BackupStore:
    return _open_registered(config.type, **config.store_options())
