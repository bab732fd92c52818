"""The direct transport: frames encoded once, written as bytes to each socket.

``FanoutWebSocketProtocol`` is uvicorn's sans-I/O WebSocket protocol plus one ASGI
scope extension, ``fanout.direct``: a writer that puts pre-encoded frames straight on
the asyncio transport. Server frames are unmasked, so the same bytes serve every
recipient, and consecutive frames go out in one write. Handshake, reading, pings and
close replies stay uvicorn's. Without per-message compression only: compressed frames
would have to be encoded per connection.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from types import GeneratorType
from typing import Any, cast

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.protocol import Protocol, State
from websockets.streams import StreamReader

from fanout.asgi.simple_frames import frame_length, take_simple_frames
from fanout.core.lazy_event import LazyEvent
from fanout.core.transport import WriteThroughWatcher
from fanout.protocol.envelope import OutFrame

EXTENSION = "fanout.direct"
# A read can hold thousands of small frames (the loop reads up to 256 KiB at a time) and
# websockets parses them in Python, about 8 us each: in one go, a flooding client's read
# would hold the event loop for tens of milliseconds, and every other connection's
# latency with it. Reads are parsed a slice at a time; once a slice gave the app
# messages, the rest waits until the app has read them, and goes on at a later turn.
PARSE_SLICE = 4 * 1024
# Once our close frame is sent, reading goes on only to see the peer's close reply. A
# peer with more than this in front of it (a flooder's socket buffers hold megabytes,
# each frame of which would have to be parsed) is not read any more: the close timer
# drops it.
CLOSING_READ_LIMIT = 64 * 1024


_PARSE = Protocol.parse.__code__
_AT_EOF = StreamReader.at_eof.__code__


def at_frame_start(conn: Protocol) -> bool:
    """websockets' parser waits for the first byte of a frame: not within a frame or a
    fragmented message, not discarding after a close. It then waits in the reader's
    ``at_eof`` (with nothing buffered); anywhere else, or in a websockets whose parser
    is built differently, this is False and every byte goes through websockets."""
    # The server's parser reads the handshake, then delegates to Protocol.parse: follow
    # the chain of ``yield from`` down to the generator that waits.
    waiting = cast("GeneratorType[None, None, None]", conn.parser)
    caller = None
    while isinstance(waiting.gi_yieldfrom, GeneratorType):
        caller, waiting = waiting, waiting.gi_yieldfrom
    return (
        waiting.gi_code is _AT_EOF
        and caller is not None
        and caller.gi_code is _PARSE
        and conn.current_size is None
    )


def frame_size_limit(conn: Protocol) -> int | None:
    """The largest frame websockets accepts at the start of a message."""
    limit, fragment = conn.max_message_size, conn.max_fragment_size
    if fragment is None:
        return limit
    return fragment if limit is None else min(limit, fragment)


class DirectTransport:
    __slots__ = ("_proto", "_watcher", "on_shutdown", "write_through")

    def __init__(self, proto: FanoutWebSocketProtocol) -> None:
        self._proto = proto
        self.on_shutdown: Callable[[], None] | None = None
        # The asyncio transport's write while the socket takes data (not paused, no
        # close sent, not disconnected): the protocol sets it at each of those changes
        # (set_write_through), and the watcher (the connection) gets a copy.
        self.write_through: Callable[[bytes], None] | None = None
        self._watcher: WriteThroughWatcher | None = None

    def watch(self, watcher: WriteThroughWatcher) -> None:
        self._watcher = watcher
        watcher.write_through = self.write_through

    def set_write_through(self, write: Callable[[bytes], None] | None) -> None:
        self.write_through = write
        if self._watcher is not None:
            self._watcher.write_through = write

    def write_now(self, frames: list[OutFrame]) -> None:
        transport = self._proto.transport
        if len(frames) == 1:
            transport.write(frames[0].wire)
        else:
            transport.writelines([f.wire for f in frames])

    async def send(self, frames: list[OutFrame]) -> None:
        p = self._proto
        # pause_writing/resume_writing drive this event: the socket buffer is past its
        # high-water mark until the peer reads.
        await p.writable.wait()
        # Not after a close frame: ours (close_sent), or uvicorn's answer to the peer's,
        # after which it closes the socket without setting close_sent.
        if not (p.close_sent or p.disconnected or p.transport.is_closing()):
            self.write_now(frames)

    def close(self, code: int, reason: str, *, timeout_s: float) -> None:
        p = self._proto
        if p.close_sent or p.disconnected:
            return
        if p.conn.state is not State.OPEN:
            # The peer's close frame came first: websockets answered it and uvicorn is
            # closing the socket (the endpoint sees the disconnect). A peer that does not
            # read could hold that close open: abort it after the close timeout.
            if p.close_timer is None:
                p.close_timer = p.loop.call_later(timeout_s, p.transport.abort)
            return
        p.conn.send_close(code, reason)
        p.transport.write(b"".join(p.conn.data_to_send()))
        # From now on uvicorn discards received frames; its disconnect event, when the
        # peer's close reply arrives or the timer below aborts, ends the endpoint's pump.
        p.close_sent = True
        if p.read_paused:
            # Keep reading so the peer's close reply is seen and ends the handshake.
            p.read_paused = False
            p.transport.resume_reading()
        # abort(), not close(): close() waits for the buffer to drain, which a stalled
        # peer never does. uvicorn cancels this timer when the close reply arrives.
        p.close_timer = p.loop.call_later(timeout_s, p.transport.abort)


class _QuietClientErrors(logging.Filter):
    """uvicorn logs a full traceback at ERROR for every text frame that is not UTF-8: a
    client's mistake (answered with 1007), which any client could repeat to fill the log."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.msg == "Invalid UTF-8 sequence received from client.":
            record.exc_info = None
            record.exc_text = None
            record.levelno, record.levelname = logging.INFO, "INFO"
            record.msg = "Invalid UTF-8 in a text frame from a client: closed with 1007."
        return True


def quiet_client_errors() -> None:
    """Install the filter on uvicorn's error log (once; called by ``uvicorn_config``)."""
    logger = logging.getLogger("uvicorn.error")
    if not any(isinstance(f, _QuietClientErrors) for f in logger.filters):
        logger.addFilter(_QuietClientErrors())


class _Inbox:
    """The part of ``asyncio.Queue`` uvicorn uses for received messages (``put_nowait``,
    ``get``, ``empty``), in a list and one future: a Queue holds three deques and an
    Event, about 3 KB per idle connection (a deque alone is 760 bytes; the list holds
    one message or none most of the time, so ``pop(0)`` costs nothing)."""

    __slots__ = ("_items", "_loop", "_waiter")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        # Kept: asyncio.get_running_loop() costs a getpid() system call on Python 3.11,
        # and get() runs once per message.
        self._loop = loop
        self._items: list[Any] = []
        self._waiter: asyncio.Future[None] | None = None

    def put_nowait(self, item: Any) -> None:
        self._items.append(item)
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def empty(self) -> bool:
        return not self._items

    def qsize(self) -> int:
        return len(self._items)

    async def get(self) -> Any:
        while not self._items:
            self._waiter = self._loop.create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        return self._items.pop(0)


class FanoutWebSocketProtocol(WebSocketsSansIOProtocol):
    """Pass as ``ws=`` to uvicorn to give fanout its direct transport."""

    # Slots for some of the attributes uvicorn's __init__ sets: it sets 34, and past 30
    # an instance dict stops sharing its keys with the class (about 1.2 KB each).
    __slots__ = (
        "_close_sent", "_disconnected", "close_timeout", "close_timer", "curr_msg_data_type",
        "frames", "initial_response", "last_ping_rtt", "pending_ping_payload", "ping_interval",
        "ping_sent_at", "ping_timeout", "ping_timer", "pong_timer",
    )  # fmt: skip

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.queue = _Inbox(self.loop)  # type: ignore[assignment]
        self.writable = LazyEvent()  # type: ignore[assignment]
        self.writable.set()

    direct: DirectTransport | None = None
    write_paused = False
    # The answer to the latest ping, held while the peer is not reading.
    _held_pong: bytes | None = None

    # uvicorn sets close_sent and disconnected in many places; as properties, each change
    # also updates the direct transport's write_through (read once per recipient).
    @property
    def close_sent(self) -> bool:
        return self._close_sent

    @close_sent.setter
    def close_sent(self, value: bool) -> None:
        self._close_sent = value
        self._sync_write_through()

    @property
    def disconnected(self) -> bool:
        return self._disconnected

    @disconnected.setter
    def disconnected(self, value: bool) -> None:
        self._disconnected = value
        self._sync_write_through()

    def _sync_write_through(self) -> None:
        direct = self.direct
        if direct is not None:
            blocked = self.write_paused or self._close_sent or self._disconnected
            if blocked or self.transport.is_closing():
                direct.set_write_through(None)
            else:
                direct.set_write_through(self.transport.write)

    def eof_received(self) -> None:
        # The peer shut its side down: the transport closes itself once this returns.
        super().eof_received()
        self.loop.call_soon(self._sync_write_through)

    def handle_close(self, event: Any) -> None:
        # The peer's close frame came first: uvicorn answers it and closes the socket
        # without setting close_sent; nothing may be written after that answer.
        super().handle_close(event)
        self._sync_write_through()

    def pause_writing(self) -> None:
        self.write_paused = True
        self._sync_write_through()
        super().pause_writing()

    def resume_writing(self) -> None:
        self.write_paused = False
        self._sync_write_through()
        super().resume_writing()
        pong, self._held_pong = self._held_pong, None
        if pong and not (self.close_sent or self.disconnected or self.transport.is_closing()):
            self.transport.write(pong)

    # Received bytes not parsed yet (from _unparsed_at on); reading is paused meanwhile.
    _unparsed = b""
    _unparsed_at = 0
    # Bytes of a large frame still to come, after the part handed to websockets.
    _frame_left = 0
    _parse_later: asyncio.Handle | None = None
    _read_while_closing = 0
    _deaf = False
    # websockets' parser was seen at a frame start (at_frame_start) and has been given
    # no byte since: the check, a walk down its generators, is skipped until it has.
    _parser_idle = False

    def data_received(self, data: bytes) -> None:
        if self._deaf:
            return
        if not self._unparsed and len(data) <= PARSE_SLICE:
            self._frame_left = max(0, self._frame_left - len(data))
            self._parse(data)
            return
        self._unparsed = self._unparsed[self._unparsed_at :] + data
        self._unparsed_at = 0
        if not self.read_paused and self._parse_later is None:
            self._parse_unparsed()

    def _parse(self, data: bytes) -> None:
        if self.close_sent:
            self._read_while_closing += len(data)
            if self._read_while_closing > CLOSING_READ_LIMIT:
                self._deaf = True
                self._unparsed, self._unparsed_at = b"", 0
                self.transport.pause_reading()
                return
        elif self.direct is not None and self.conn.state is State.OPEN:
            conn = self.conn
            if self._parser_idle or at_frame_start(conn):
                # Still true at the next read if every byte of this one is ours.
                self._parser_idle = True
                messages, used = take_simple_frames(data, frame_size_limit(conn))
                if messages:
                    self._hand_over(messages)
                    if used == len(data):
                        return
                    data = data[used:]
        self._parser_idle = False  # websockets' parser state changes now: ask again
        super().data_received(data)

    def _hand_over(self, messages: list[str | bytes]) -> None:
        """Messages read without websockets' parser, to the app as uvicorn hands them."""
        put = self.queue.put_nowait
        for message in messages:
            if isinstance(message, str):
                put({"type": "websocket.receive", "text": message})
            else:
                put({"type": "websocket.receive", "bytes": message})
        if not self.read_paused:
            self.read_paused = True
            self.transport.pause_reading()

    def _parse_unparsed(self) -> None:
        self._parse_later = None
        while self._unparsed and not (self._deaf or self.transport.is_closing()):
            at = self._unparsed_at
            size = self._piece_size(at)
            piece = self._unparsed[at : at + size]
            if at + size >= len(self._unparsed):
                self._unparsed, self._unparsed_at = b"", 0
            else:
                self._unparsed_at = at + size
            self._frame_left = max(
                0, (size if size > PARSE_SLICE else self._frame_left) - len(piece)
            )
            self._parse(piece)
            if self.read_paused:  # the app has messages to read first
                break
            if self.close_sent and self._unparsed:  # others get a turn between slices
                self._parse_later = self.loop.call_soon(self._parse_unparsed)
                break
        if self._deaf or self.transport.is_closing():
            self._unparsed, self._unparsed_at = b"", 0
        elif self._unparsed:
            self.transport.pause_reading()
        elif not self.read_paused:
            self.transport.resume_reading()

    def _piece_size(self, at: int) -> int:
        """How much of the unparsed bytes from ``at`` on to hand websockets at once: a
        slice, or a large frame's bytes whole. Within one frame websockets has nothing
        to hand the app before its end, and slicing would only add a pass of its
        parser per slice (256 for 1 MiB); past the frame's end, slices again."""
        if self.close_sent or self.direct is None:
            return PARSE_SLICE
        if self._frame_left > PARSE_SLICE:
            return self._frame_left  # the rest of a large frame begun earlier
        if self._frame_left:
            return PARSE_SLICE
        conn = self.conn
        if conn.state is not State.OPEN or not at_frame_start(conn):
            return PARSE_SLICE
        length = frame_length(self._unparsed, at)
        limit = frame_size_limit(conn)
        if length is None or length <= PARSE_SLICE or (limit is not None and length > limit):
            return PARSE_SLICE  # websockets refuses one too large from its header alone
        return length

    async def receive(self) -> Any:
        message = await super().receive()
        if self._deaf or (self._unparsed and not self.transport.is_closing()):
            # uvicorn resumes reading once the app has read everything: not yet.
            self.transport.pause_reading()
            if self._unparsed and self.queue.empty() and self._parse_later is None:
                self._parse_later = self.loop.call_soon(self._parse_unparsed)
        return message

    def connection_lost(self, exc: Exception | None) -> None:
        self._unparsed, self._unparsed_at, self._frame_left = b"", 0, 0
        if self._parse_later is not None:
            self._parse_later.cancel()
            self._parse_later = None
        super().connection_lost(exc)

    def handle_ping(self) -> None:
        # uvicorn writes every pong at once, paused or not: a client that sends pings and
        # never reads would grow the server's write buffer without bound. RFC 6455 lets
        # an endpoint answer only the most recent ping, so keep just that one meanwhile.
        if self.write_paused:
            self._held_pong = b"".join(self.conn.data_to_send())
            return
        super().handle_ping()

    async def send(self, message: Any) -> None:
        await super().send(message)
        if message["type"] == "websocket.accept":
            # The handshake's request and response are not needed any more (about 2 KB).
            self.request = self.response = None  # type: ignore[assignment]
        if message["type"] == "websocket.http.response.body" and not message.get("more_body"):
            # A handshake refused with an HTTP response (403) is complete; uvicorn does
            # not note it, and would log "returned without completing handshake".
            self.handshake_complete = True

    async def run_asgi(self) -> None:
        await asyncio.sleep(0)  # one turn of the loop: it reads what followed the request
        if self.transport.is_closing():
            # The client left before its request was even read: a client of a reconnect
            # storm that gave up waiting for its 101 sends the request and then closes.
            # No one is there to answer; running the app would accept, register and
            # tear down a connection for nothing, at the cost of a whole handshake.
            self.handshake_complete = True
            return
        await super().run_asgi()

    def handle_connect(self, event: Any) -> None:
        super().handle_connect(event)
        scope = getattr(self, "scope", None)
        if scope is not None and not self.close_sent and not self.conn.extensions:
            self.direct = DirectTransport(self)
            self._sync_write_through()
            scope["extensions"][EXTENSION] = self.direct

    def shutdown(self) -> None:
        # uvicorn's default closes at once with 1012; fanout flushes, then closes 1001.
        direct = self.direct
        if (
            direct is not None
            and direct.on_shutdown is not None
            and self.handshake_complete
            and not self.close_sent
            and not self.disconnected
        ):
            self.stop_keepalive()
            direct.on_shutdown()
            return
        super().shutdown()
        self._sync_write_through()  # uvicorn's shutdown closes without close_sent
