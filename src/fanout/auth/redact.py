"""Keep tokens passed in URLs (``?token=...``) out of the server's logs."""

from __future__ import annotations

import logging
import re


class TokenRedactor(logging.Filter):
    """Replaces the value of the token query parameter in log records' arguments."""

    def __init__(self, query_param: str) -> None:
        super().__init__()
        self.query_param = query_param
        self._pattern = re.compile(rf"([?&]{re.escape(query_param)}=)[^&\s\"']*")

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(
                self._pattern.sub(r"\1[redacted]", a) if isinstance(a, str) else a
                for a in record.args
            )
        elif isinstance(record.msg, str):
            record.msg = self._pattern.sub(r"\1[redacted]", record.msg)
        return True


def install(
    query_param: str, loggers: tuple[str, ...] = ("uvicorn.error", "uvicorn.access")
) -> None:
    """Add the redactor to uvicorn's loggers (once per query parameter name)."""
    for name in loggers:
        logger = logging.getLogger(name)
        if not any(
            isinstance(f, TokenRedactor) and f.query_param == query_param for f in logger.filters
        ):
            logger.addFilter(TokenRedactor(query_param))
