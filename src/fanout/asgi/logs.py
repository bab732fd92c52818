"""How ``fanout serve`` logs: the standard ``logging`` module, each line with its time,
level and logger, as text (default) or one JSON object per line (``--log-format json``)
for log shippers. uvicorn's own loggers get the same format; tokens in URLs are
redacted (``fanout.auth.redact``), and broker URLs are logged without their password.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

FORMATS = ("text", "json")
TEXT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time (ISO 8601, UTC), level, logger, message, and
    the exception's text if there is one."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False)


class _UtcText(logging.Formatter):
    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:  # noqa: N802
        return super().formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}Z"


JsonFormatter.converter = time.gmtime
_UtcText.converter = time.gmtime


def log_config(level: str, fmt: str) -> dict[str, Any]:
    """A ``logging.config.dictConfig`` for fanout's and uvicorn's loggers (uvicorn
    applies it in every worker process)."""
    if fmt not in FORMATS:
        raise ValueError(f"log format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    formatter: dict[str, Any] = (
        {"()": JsonFormatter} if fmt == "json" else {"()": _UtcText, "fmt": TEXT}
    )
    handler = {
        "class": "logging.StreamHandler",
        "formatter": "fanout",
        "stream": "ext://sys.stderr",
    }
    level = level.upper()
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"fanout": formatter},
        "handlers": {"stderr": handler},
        "loggers": {
            name: {"handlers": ["stderr"], "level": level, "propagate": False}
            for name in ("fanout", "uvicorn", "uvicorn.error", "uvicorn.access")
        },
    }
