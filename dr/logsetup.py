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


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if record.exc_info and record.levelno <= logging.DEBUG:
            entry["traceback"] = self.formatException(record.exc_info)
        return json.dumps(entry)


def setup_logging(*, verbosity: int = 0, fmt: str = "text", debug: bool = False) -> None:
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
