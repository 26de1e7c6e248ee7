"""Logging to stderr as text or JSON lines; results go to stdout, never logs.

Tracebacks are logged only at debug level (--debug). Third-party loggers (botocore,
urllib3, hvac) stay at WARNING unless --debug, because at DEBUG botocore logs request
bodies: an Encrypt call's body holds the plaintext data key.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

_NOISY = (
    "botocore",
    "boto3",
    "urllib3",
    "s3transfer",
    "hvac",
    "requests",
    "docker",
    "testcontainers",
)


# What every LogRecord has; anything else on a record came from `extra=` (ids, sizes).
_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}
_format = "text"


def json_logging() -> bool:
    """Whether --log-format json is on (the CLI's own lines follow it too)."""
    return _format == "json"


def json_line(
    level: str, logger: str, msg: str, created: float | None = None, **fields: Any
) -> str:
    """One JSON object per line: ts, level, logger, msg, then the structured fields."""
    created = time.time() if created is None else created
    entry: dict[str, Any] = {
        "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(created))
        + f".{int(created * 1000) % 1000:03d}Z",
        "level": level,
        "logger": logger,
        "msg": msg,
    }
    entry.update(fields)
    return json.dumps(entry, default=str)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        fields = {k: v for k, v in vars(record).items() if k not in _STANDARD}
        if record.exc_info and record.levelno <= logging.DEBUG:
            fields["traceback"] = self.formatException(record.exc_info)
        return json_line(
            record.levelname.lower(), record.name, record.getMessage(), record.created, **fields
        )


def setup_logging(*, verbosity: int = 0, fmt: str = "text", debug: bool = False) -> None:
    global _format
    _format = fmt
    level = logging.DEBUG if debug else (logging.INFO if verbosity >= 1 else logging.WARNING)
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%Y-%m-%dT%H:%M:%S")
        )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # Third-party debug output can carry request bodies (a KMS Encrypt body holds the
    # plaintext data key): keep it quiet unless the operator asked for --debug, and
    # even then never below INFO for botocore.
    for name in _NOISY:
        logging.getLogger(name).setLevel(logging.INFO if debug else logging.WARNING)
    # urllib3 warns on every retry it makes; the retry is expected and its outcome is
    # reported by us, in one line, if it finally fails.
    logging.getLogger("urllib3").setLevel(logging.INFO if debug else logging.ERROR)
