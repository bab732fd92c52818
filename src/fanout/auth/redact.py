"""Keep tokens passed in URLs (``?token=...``) out of the server's logs."""

from __future__ import annotations

import logging
import re
from urllib.parse import unquote_plus


class TokenRedactor(logging.Filter):
    """Replaces the value of the token query parameter in log records' arguments.

    Names are compared percent-decoded, as the server reads them: ``?%74oken=...`` is
    the token too.
    """

    def __init__(self, query_param: str) -> None:
        super().__init__()
        self.query_param = query_param
        self._pair = re.compile(r"([?&])([^=&#\s\"']*)=([^&#\s\"']*)")

    def _hide(self, match: re.Match[str]) -> str:
        start, name, value = match.groups()
        if unquote_plus(name) != self.query_param or not value:
            return match.group(0)
        return f"{start}{name}=[redacted]"

    def redact(self, text: str) -> str:
        return self._pair.sub(self._hide, text) if "=" in text else text

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(self.redact(a) if isinstance(a, str) else a for a in record.args)
        elif isinstance(record.msg, str):
            record.msg = self.redact(record.msg)
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
