"""Plain typed settings of the storage layer (the `storage:` section of dr.yaml).

`dr.config` parses YAML into these; nothing in `dr.storage` reads the application config.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class S3StorageConfig:
    bucket: str
    prefix: str = ""
    region: str | None = None
    endpoint_url: str | None = None
    chunk_size: int = 8 << 20
    max_concurrency: int = 2
    type: str = "s3"

    def store_options(self) -> dict[str, Any]:
        """Keyword arguments of the store class registered under `type`."""
        return {
            "bucket": self.bucket,
            "region": self.region,
            "endpoint_url": self.endpoint_url,
            "chunk_size": self.chunk_size,
            "max_concurrency": self.max_concurrency,
        }


@dataclass(frozen=True)
class FileStorageConfig:
    path: Path
    prefix: str = ""
    type: str = "file"

    def store_options(self) -> dict[str, Any]:
        return {"root": self.path}


StorageConfig = S3StorageConfig | FileStorageConfig
