"""Backup stores behind one protocol (`BackupStore`), chosen by type name.

    store = open_store("s3", bucket="backups", region="eu-west-1")
    store = open_store("file", root="/var/lib/vault-dr")

`STORE_TYPES` maps each type name to its class; the options are the class's keyword
arguments. Add a store by adding a class and one entry here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from dr.errors import UsageError
from dr.storage.base import BackupStore, ObjectInfo, ObjectRef, validate_key
from dr.storage.file import FileStore
from dr.storage.s3 import S3Store

STORE_TYPES: dict[str, type[BackupStore]] = {
    S3Store.type_name: S3Store,
    FileStore.type_name: FileStore,
}


def open_store(type_name: str, **options: Any) -> BackupStore:
    """Build the store `type_name` from its options (as the config names them)."""
    try:
        factory: Callable[..., BackupStore] = STORE_TYPES[type_name]
    except KeyError:
        known = ", ".join(sorted(STORE_TYPES))
        raise UsageError(f"unknown storage type {type_name!r}; known types: {known}") from None
    try:
        return factory(**options)
    except TypeError as exc:
        raise UsageError(f"storage type {type_name!r}: {exc}") from exc


__all__ = [
    "STORE_TYPES",
    "BackupStore",
    "FileStore",
    "ObjectInfo",
    "ObjectRef",
    "S3Store",
    "open_store",
    "validate_key",
]
