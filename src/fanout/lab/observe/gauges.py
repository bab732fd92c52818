"""Follow the server's own gauges through a run: ``/metrics`` scraped once a second.

A server that publishes what it holds (fanout's ``fanout_outbox_bytes``: bytes queued
for its connections) lets the diagnosis tell memory held in bounded buffers from a
leak. The gauges are scraped in their own thread, with a short timeout, so a server
slow to answer its metrics never delays the CPU and memory samples.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from fanout.lab.observe.metrics import check_local_url, parse_gauges, scrape

GaugeSample = dict[str, Any]


class GaugeSampler:
    """Scrapes ``url`` every ``interval_s`` and keeps each page's unlabelled gauges."""

    def __init__(self, url: str, *, interval_s: float = 1.0, timeout_s: float = 1.0) -> None:
        if interval_s <= 0:
            raise ValueError("interval_s must be > 0")
        check_local_url(url)
        self._url = url
        self._interval = interval_s
        self._timeout = timeout_s
        self._lock = threading.Lock()
        self._taken: list[tuple[float, dict[str, float]]] = []  # (monotonic time, gauges)
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError("the gauge sampler was already started")
        self._thread = threading.Thread(target=self._run, name="observe-gauges", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        thread = self._thread
        if thread is None or self._stopping.is_set():
            return
        self._stopping.set()
        thread.join()

    def samples(self, t0: float) -> list[GaugeSample]:
        """``{"t": seconds since t0, "values": {name: value}}`` for each page read."""
        with self._lock:
            taken = list(self._taken)
        return [{"t": round(at - t0, 3), "values": dict(values)} for at, values in taken]

    def _run(self) -> None:
        next_at = time.monotonic()
        while not self._stopping.is_set():
            at = time.monotonic()
            page = scrape(self._url, self._timeout)
            values = parse_gauges(page) if page is not None else {}
            if values:
                with self._lock:
                    self._taken.append((at, values))
            next_at = max(next_at + self._interval, time.monotonic())
            if self._stopping.wait(next_at - time.monotonic()):
                return
