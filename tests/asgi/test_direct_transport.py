"""The direct transport's close, when the peer's close frame came first: websockets has
answered it, uvicorn is closing the socket, and fanout's own close (a slow consumer's
4008, found in the middle of a flush) must neither raise nor hang on a peer that does
not read."""

from __future__ import annotations

import asyncio
import os
from types import SimpleNamespace
from typing import Any, cast

from websockets.frames import Close
from websockets.protocol import Protocol, Side, State

from fanout.asgi.direct import DirectTransport, FanoutWebSocketProtocol
from fanout.protocol.envelope import OutFrame
from tests.support.protocols import uvicorn_protocol


class _Socket:
    def __init__(self) -> None:
        self.written: list[bytes] = []
        self.aborted = False
        self.closing = False

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        self.closing = True

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def abort(self) -> None:
        self.aborted = True


def _after_the_peers_close(loop: asyncio.AbstractEventLoop) -> Any:
    ws = Protocol(Side.SERVER, state=State.OPEN)
    payload = Close(1000, "bye").serialize()
    mask = os.urandom(4)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    ws.receive_data(bytes([0x88, 0x80 | len(payload)]) + mask + masked)
    assert ws.state is State.CLOSING
    return SimpleNamespace(
        conn=ws,
        transport=_Socket(),
        loop=loop,
        close_sent=False,
        disconnected=False,
        read_paused=False,
        close_timer=None,
    )


async def test_closing_after_the_peers_close_frame_does_not_raise_and_aborts_a_silent_peer() -> (
    None
):
    proto = _after_the_peers_close(asyncio.get_running_loop())
    transport = DirectTransport(cast(FanoutWebSocketProtocol, proto))
    transport.close(4008, "slow consumer: outbox full", timeout_s=0.05)
    assert proto.transport.written == []  # websockets already answered the peer's close
    await asyncio.sleep(0.1)
    assert proto.transport.aborted


def _open_protocol() -> tuple[FanoutWebSocketProtocol, DirectTransport, _Socket]:
    """fanout's protocol as uvicorn builds it, on a recording socket, past the handshake."""

    proto = uvicorn_protocol(FanoutWebSocketProtocol)
    socket = _Socket()
    proto.transport = cast(Any, socket)
    proto.direct = DirectTransport(proto)
    proto._sync_write_through()
    return proto, proto.direct, socket


def test_frames_are_written_through_only_while_the_socket_takes_them() -> None:
    proto, direct, socket = _open_protocol()
    assert direct.write_through == socket.write
    proto.pause_writing()  # the peer stopped reading: the socket buffer is full
    assert direct.write_through is None
    proto.resume_writing()
    assert direct.write_through == socket.write
    proto.close_sent = True  # the close frame is out: nothing may follow it
    assert direct.write_through is None
    proto.resume_writing()
    assert direct.write_through is None


def test_a_disconnected_socket_is_not_written_through() -> None:
    proto, direct, _ = _open_protocol()
    proto.disconnected = True
    assert direct.write_through is None


def test_nothing_is_written_through_after_the_answer_to_the_peers_close() -> None:
    proto, direct, socket = _open_protocol()
    loop = asyncio.new_event_loop()
    try:
        proto.conn = _after_the_peers_close(loop).conn
    finally:
        loop.close()
    proto.queue = cast(Any, asyncio.Queue())
    proto.handle_close(cast(Any, None))
    assert socket.closing
    assert direct.write_through is None


async def test_frames_queued_for_the_writer_are_not_sent_after_the_answer_to_the_peers_close() -> (
    None
):
    proto, direct, socket = _open_protocol()
    loop = asyncio.get_running_loop()
    proto.loop = loop
    proto.conn = _after_the_peers_close(loop).conn
    proto.queue = cast(Any, asyncio.Queue())
    proto.handle_close(cast(Any, None))  # uvicorn answers the close and closes the socket
    answered = len(socket.written)
    # The endpoint has not seen the disconnect yet: a frame still goes to the writer task.
    await direct.send([OutFrame.text("after the close")])
    assert socket.written[answered:] == []
