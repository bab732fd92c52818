"""One WebSocket: a bounded outbox drained by direct writes, or by a writer task made
the first time the socket pushes back (an idle connection has none: memory per
connection decides how many a node holds)."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections.abc import Callable, Mapping
from enum import Enum
from typing import Any

from fanout.core.flush import FlushScheduler
from fanout.core.lazy_event import LazyEvent
from fanout.core.outbox import Outbox, OutboxLimits
from fanout.core.subscription import Subscription
from fanout.core.transport import Transport
from fanout.protocol.codes import CloseCode
from fanout.protocol.envelope import OutFrame

log = logging.getLogger("fanout.connection")
_ids = itertools.count(1)


class Mode(Enum):
    V1 = "fanout.v1"
    PLAIN = "plain"


class ConnState(Enum):
    OPEN = "open"
    CLOSING = "closing"
    CLOSED = "closed"


# The hot path compares against these: ``ConnState.OPEN`` costs ~50 ns per lookup on
# Python 3.11 (Enum class attribute access), a module global ~7 ns.
_OPEN = ConnState.OPEN
_CLOSED = ConnState.CLOSED


class Connection:
    """A client connection as the hub sees it.

    Fan-out calls ``enqueue`` and never waits: frames go to a bounded outbox; a full
    outbox closes this connection alone with 4008 (slow consumer).
    """

    __slots__ = (
        "_before_own",
        "_dirty",
        "_flusher",
        "_on_closed",
        "_on_closing",
        "_outbox",
        "_socket_write",
        "_transport",
        "_wake",
        "_writer",
        "_writing",
        "client",
        "close_code",
        "close_reason",
        "close_timeout_s",
        "closed",
        "dropped",
        "fast_write",
        "id",
        "info",
        "jti",
        "mode",
        "state",
        "subscriptions",
        "user",
    )

    def __init__(
        self,
        transport: Transport,
        *,
        mode: Mode,
        outbox_limits: OutboxLimits,
        flusher: FlushScheduler,
        close_timeout_s: float = 5.0,
        client: str = "",
        user: str | None = None,
        jti: str | None = None,
        info: Mapping[str, Any] | None = None,
        on_closing: Callable[[Connection], None] | None = None,
        on_closed: Callable[[Connection], None] | None = None,
        before_own: Callable[[Connection], None] | None = None,
    ) -> None:
        self.id = next(_ids)
        self.mode = mode
        self.client = client
        # Who this is (a token's sub, an app hook's id) and which token: for per-user
        # delivery, limits, kicks and revocations.
        self.user = user
        self.jti = jti
        # The public part of who this is, shown in presence.
        self.info: Mapping[str, Any] = info or {}
        self.state = ConnState.OPEN
        self.close_code: int | None = None
        self.close_reason = ""
        self.close_timeout_s = close_timeout_s
        self.dropped = 0  # frames queued and never written: the socket closed first
        self.subscriptions: dict[str, Subscription] = {}
        self.closed = LazyEvent()  # set once the socket is gone
        self._transport = transport
        self._outbox = Outbox(outbox_limits)
        self._flusher = flusher
        # Set by enqueue until the next flush. _writing: from the moment the flush hands
        # the outbox to the writer task until that task has emptied it. Frames wait in
        # the outbox only while one of the two is set, so deliver() need not look there.
        self._dirty = False
        self._writing = False
        self._wake: asyncio.Event | None = None
        self._writer: asyncio.Task[None] | None = None
        # Closing starts with our close frame (or the peer's disconnect); closed is when
        # the socket is gone, as the transport reports it.
        self._on_closing = on_closing
        self._on_closed = on_closed
        # The socket's own write while it takes data, else None: the transport keeps it
        # current (Transport.watch, through the write_through property).
        self._socket_write: Callable[[bytes], None] | None = None
        # That write while nothing of this connection's waits either (open, no frames
        # queued, no writer task at work), else None: what fan-out reads, once per
        # recipient, to write a shared frame straight through (LocalRoom.flush). Kept
        # current at every change of what it depends on (_sync_fast_write).
        self.fast_write: Callable[[bytes], None] | None = None
        transport.watch(self)
        # Hands this connection the room messages still waiting for the flush, before a
        # frame of its own: a publisher's message comes before its ack.
        self._before_own = before_own

    def __repr__(self) -> str:
        return f"<Connection #{self.id} {self.mode.value} {self.client} {self.state.value}>"

    @property
    def write_through(self) -> Callable[[bytes], None] | None:
        return self._socket_write

    @write_through.setter
    def write_through(self, write: Callable[[bytes], None] | None) -> None:
        self._socket_write = write
        self._sync_fast_write()

    def _sync_fast_write(self) -> None:
        clear = self.state is _OPEN and not (self._dirty or self._writing)
        self.fast_write = self._socket_write if clear else None

    @property
    def queued_frames(self) -> int:
        return len(self._outbox)

    @property
    def queued_bytes(self) -> int:
        return self._outbox.bytes

    def enqueue(self, frame: OutFrame) -> bool:
        """Queue a frame without waiting. False if the connection is closing or overflowed."""
        if self.state is not _OPEN:
            return False
        if not self._outbox.put(frame):
            self._overflow()
            return False
        if not self._dirty:
            self._dirty = True
            self.fast_write = None
            self._flusher.mark(self)
        return True

    def answer(self, frame: OutFrame) -> bool:
        """Queue a frame of this connection's own (an answer to the client, an
        application's ``send``): after every room message handed over before it."""
        if self._before_own is not None:
            self._before_own(self)
        return self.enqueue(frame)

    def deliver(self, frames: list[OutFrame], wire: bytes | None) -> None:
        """Frames shared with other recipients (the list is not kept or changed): written
        at once when nothing of this connection's waits before them and the socket takes
        data, else queued behind what waits, as ``enqueue`` does (also, under a write
        delay, for a connection in several rooms: one write per flush). ``wire``: the
        frames' bytes in one piece (``joined_wire``), or None to write them as a list."""
        if self.state is not _OPEN:
            return
        write = self.fast_write
        if (
            write is None
            # Under a write delay, one write per flush: what several rooms hand this
            # connection joins its outbox and leaves together.
            or (self._flusher.delay_s and len(self.subscriptions) > 1)
        ):
            self.enqueue_all(frames)
        elif wire is not None:
            write(wire)
        else:
            self._transport.write_now(frames)

    def enqueue_all(self, frames: list[OutFrame]) -> None:
        """``enqueue`` each frame, in order, until one is refused."""
        for frame in frames:
            if not self.enqueue(frame):
                return

    def flush(self) -> None:
        self._dirty = False
        if self.state is _CLOSED:
            return
        if not self._writing and self._socket_write is not None:
            # take_all() then a check for empty: one Python call fewer than len() first.
            frames = self._outbox.take_all()
            if frames:
                self._transport.write_now(frames)
        elif self._outbox:
            # The socket applies backpressure: the writer task waits for it to drain.
            self._wake_writer()
        # _sync_fast_write(), inlined: this runs for every connection a flush wrote to.
        clear = self.state is _OPEN and not self._writing
        self.fast_write = self._socket_write if clear else None

    def _wake_writer(self) -> None:
        self._writing = True  # the writer task has the outbox now
        self.fast_write = None
        wake = self._wake
        if wake is None:
            wake = self._wake = asyncio.Event()
            self._writer = asyncio.get_running_loop().create_task(
                self._write_loop(wake), name=f"fanout-writer-{self.id}"
            )
        wake.set()

    async def _write_loop(self, wake: asyncio.Event) -> None:
        try:
            while self.state is not ConnState.CLOSED:
                await wake.wait()
                wake.clear()
                while self._outbox and self._is_live():
                    try:
                        await self._transport.send(self._outbox.take_all())
                    except Exception as exc:  # the peer vanished mid-write
                        log.debug("write to %r failed: %r", self, exc)
                        self.mark_closed(CloseCode.INTERNAL, "write failed")
                        return
                self._writing = False  # the outbox is empty (or the socket gone)
                self._sync_fast_write()
        finally:
            self._writing = False  # cancelled mid-write: nobody holds frames any more
            self._sync_fast_write()

    def _is_live(self) -> bool:
        # A method, not an inline check: the state changes while the writer awaits.
        return self.state is not ConnState.CLOSED

    async def drain(self, timeout_s: float) -> bool:
        """Wait until everything queued was handed to the socket, at most ``timeout_s``."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while (self._outbox or self._writing) and self.state is ConnState.OPEN:
            if loop.time() >= deadline:
                return False
            self.flush()
            # Polling at 10 ms is fine here: this runs once per connection at shutdown.
            await asyncio.sleep(0.01)
        return not self._outbox

    def close(self, code: int, reason: str = "") -> None:
        """Close now: queued frames are dropped, the close frame goes out at once.
        ``reason`` is cut to what a close frame holds (123 UTF-8 bytes)."""
        if self.state is not ConnState.OPEN:
            return
        reason = close_reason(reason)
        self.state = ConnState.CLOSING
        self.fast_write = None
        self.close_code = code
        self.close_reason = reason
        self.dropped += self._outbox.clear()
        self._transport.close(code, reason, timeout_s=self.close_timeout_s)
        if self._on_closing is not None:
            self._on_closing(self)

    def mark_closed(self, code: int | None = None, reason: str = "") -> None:
        """The socket is gone (called once the endpoint saw the disconnect)."""
        if self.state is ConnState.CLOSED:
            return
        was_open = self.state is ConnState.OPEN
        if self.close_code is None:
            self.close_code = code
            self.close_reason = reason
        self.state = ConnState.CLOSED
        self.fast_write = None
        self.dropped += self._outbox.clear()
        if self._wake is not None:
            self._wake.set()
        if self._writer is not None and not self._writer.done():
            self._writer.cancel()
        self.closed.set()
        if was_open and self._on_closing is not None:
            self._on_closing(self)
        if self._on_closed is not None:
            self._on_closed(self)

    async def wait_writer_stopped(self) -> None:
        if self._writer is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._writer

    def _overflow(self) -> None:
        log.warning(
            "slow consumer %r: outbox full (%d frames, %d bytes); closing with 4008",
            self,
            len(self._outbox),
            self._outbox.bytes,
        )
        self.close(CloseCode.SLOW_CONSUMER, "slow consumer: outbox full")


# RFC 6455: a close frame's payload is at most 125 bytes, two of which are the code.
MAX_CLOSE_REASON_BYTES = 123


def close_reason(reason: str) -> str:
    """``reason`` cut to ``MAX_CLOSE_REASON_BYTES`` of UTF-8, on a character boundary."""
    raw = reason.encode()
    if len(raw) <= MAX_CLOSE_REASON_BYTES:
        return reason
    return raw[:MAX_CLOSE_REASON_BYTES].decode(errors="ignore")
