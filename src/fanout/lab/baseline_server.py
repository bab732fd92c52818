"""Run the article's server (or its binary twin) exactly as the article does.

The article starts its server with ``uvicorn main:app``: uvicorn's defaults, which are
part of what is measured. Among them: a 16 MiB limit on incoming messages (a larger
frame closes the connection with 1009), a ping every 20 s with a 20 s timeout, and
per-message-deflate offered to clients that ask. Only the host, the port and the log
level are set here; everything else stays uvicorn's default.
"""

from __future__ import annotations

from typing import Final

import uvicorn

BASELINE_APPS: Final[dict[str, str]] = {
    "article": "fanout.lab.baseline:app",
    "binary": "fanout.lab.baseline_binary:app",
}
"""uvicorn import strings: the article's text-only server, and its binary twin."""


def serve_baseline(host: str, port: int, *, binary: bool, log_level: str) -> None:
    """Serve the baseline on ``ws://host:port/ws`` with uvicorn's defaults; blocks.

    ``binary`` picks the twin that also broadcasts binary frames (images). Returns when
    uvicorn stops (SIGINT or SIGTERM).
    """
    app = BASELINE_APPS["binary" if binary else "article"]
    uvicorn.run(app, host=host, port=port, log_level=log_level)
