"""Python cost of fanout's fan-out path per delivery, without sockets.

The real ``Hub``, ``Connection``, ``FlushScheduler`` and ``DirectTransport`` run on the
event loop, but each socket's ``write``/``writelines`` is ``list.append``/``list.extend``
(C calls that cost next to nothing): what is left is the Python above the write. The
``floor`` line is the least such a loop can do, one C call per recipient; fanout's
overhead is the difference. The last lines are the other half: one publish as a client
frame takes it, from the session's ``receive`` to the ack (or, plain, the publish),
with the publisher the room's only member; and before that, reading the client's frame
(websockets' parser, as uvicorn drives it, against ``take_simple_frames``). Last, how
many of fanout's Python frames that publish enters, and in which functions.
``bench/fanout_vs_article.py`` measures the real thing, kernel included; this one is
steady to a few nanoseconds, for comparing code changes.

    .venv/bin/python bench/hotpath.py [--subscribers 100] [--messages 20000]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator
from types import FrameType
from typing import Any, cast

import orjson
from websockets.protocol import State
from websockets.server import ServerProtocol

from fanout.asgi.direct import DirectTransport, FanoutWebSocketProtocol
from fanout.asgi.simple_frames import take_simple_frames
from fanout.asgi.wiring import wire
from fanout.core.connection import Mode
from fanout.core.consumer import ConnectionInfo, Consumer
from fanout.core.session import Session
from fanout.settings import Settings


class _Sink:
    """Stands in for an asyncio transport: writes land in a list, C calls only."""

    def __init__(self, out: list[bytes]) -> None:
        self.write = out.append
        self.writelines = out.extend


class _Proto:
    """The attributes of FanoutWebSocketProtocol that DirectTransport reads."""

    def __init__(self, out: list[bytes]) -> None:
        self.writable = asyncio.Event()  # what older DirectTransports read
        self.writable.set()
        self.write_paused = False
        self.close_sent = False
        self.disconnected = False
        self.transport = _Sink(out)


def _direct(out: list[bytes]) -> DirectTransport:
    """A direct transport whose socket writes land in ``out``."""
    transport = DirectTransport(cast(FanoutWebSocketProtocol, _Proto(out)))
    # Each version's way to say the socket takes data (older ones asked ready()).
    if hasattr(transport, "set_write_through"):
        transport.set_write_through(out.append)
    elif hasattr(DirectTransport, "write_through"):
        transport.write_through = out.append
    return transport


async def fanout_ns(mode: Mode, subscribers: int, messages: int, batch: int) -> float:
    """Nanoseconds per delivery: ``batch`` publishes per loop iteration, then a flush."""
    hub = wire(Settings()).hub
    await hub.start()
    out: list[bytes] = []
    for _ in range(subscribers):
        transport = _direct(out)
        conn = hub.connect(transport, mode=mode)
        await hub.subscribe(conn, "bench")
    data: Any = "x" * 200
    await asyncio.sleep(0)
    start = time.perf_counter_ns()
    for _ in range(messages // batch):
        for _ in range(batch):
            await hub.publish("bench", data)
        await asyncio.sleep(0)  # the flush runs here, as at the end of a loop iteration
        out.clear()
    elapsed = time.perf_counter_ns() - start
    for conn in list(hub.connections):
        conn.mark_closed()
    await hub.close()
    return elapsed / ((messages // batch) * batch * subscribers)


async def floor_ns(subscribers: int, messages: int) -> float:
    """One C-level write per recipient per message, nothing else."""
    out: list[bytes] = []
    sinks = [_Sink(out) for _ in range(subscribers)]
    frame = b"\x81\x7e\x00\xc8" + b"x" * 200
    await asyncio.sleep(0)
    start = time.perf_counter_ns()
    for _ in range(messages):
        for sink in sinks:
            sink.write(frame)
        await asyncio.sleep(0)
        out.clear()
    return (time.perf_counter_ns() - start) / (messages * subscribers)


@contextlib.asynccontextmanager
async def _publisher(
    mode: Mode, messages: int
) -> AsyncIterator[tuple[Session, list[str], list[bytes]]]:
    """A session on the memory broker whose connection is the room's only member, the
    frames of ``messages`` publishes, and the list its socket writes land in."""
    wiring = wire(Settings(rate_frames_per_s=0, rate_bytes_per_s=0))
    hub = wiring.hub
    await hub.start()
    out: list[bytes] = []
    transport = _direct(out)
    conn = hub.connect(transport, mode=mode)
    consumer = Consumer(hub, conn, ConnectionInfo(room="bench"))
    session = Session(consumer, wiring.session, hub.counters)
    await hub.subscribe(conn, "bench")
    if mode is Mode.V1:
        frames = [
            orjson.dumps(
                {"type": "publish", "room": "bench", "data": "x" * 200, "id": str(i)}
            ).decode()
            for i in range(messages)
        ]
    else:
        frames = ["x" * 200] * messages
    await asyncio.sleep(0)
    try:
        yield session, frames, out
    finally:
        session.end()
        conn.mark_closed()
        await hub.close()


async def _publish_all(session: Session, frames: list[str], out: list[bytes]) -> None:
    for frame in frames:
        await session.receive(frame, None)
        await asyncio.sleep(0)  # the pipeline's task and the flush, as in a loop turn
        out.clear()


async def publish_ns(mode: Mode, messages: int) -> float:
    """Nanoseconds per publish through ``Session.receive``, to the memory broker."""
    async with _publisher(mode, messages) as (session, frames, out):
        start = time.perf_counter_ns()
        await _publish_all(session, frames, out)
        return (time.perf_counter_ns() - start) / messages


async def frames_per_publish(mode: Mode, messages: int) -> Counter[str]:
    """fanout's own Python frames entered (calls and coroutine resumptions) per
    publish, by function, as a profile hook counts them after a warm-up: how much of
    fanout's code a publish runs. In the server each publish usually comes alone, to
    caches other work has cooled, so what it costs there grows with this
    (bench/RESULTS.md). asyncio's and this script's frames are not counted."""
    package = f"{os.sep}fanout{os.sep}"
    async with _publisher(mode, 2 * messages) as (session, frames, out):
        await _publish_all(session, frames[:messages], out)
        counts: Counter[str] = Counter()

        def count(frame: FrameType, event: str, _arg: object) -> None:
            code = frame.f_code
            if event == "call" and package in code.co_filename:
                counts[f"{code.co_filename.rpartition(package)[2]}:{code.co_name}"] += 1

        sys.setprofile(count)
        try:
            await _publish_all(session, frames[messages:], out)
        finally:
            sys.setprofile(None)
    return counts


def _client_frame(payload: bytes) -> bytes:
    """A masked text frame as a client sends it (a zero mask: the unmask still runs)."""
    return bytes((0x81, 0x80 | 126)) + len(payload).to_bytes(2, "big") + bytes(4) + payload


def read_ns(simple: bool, messages: int) -> float:
    """Nanoseconds per received frame of a 200-byte v1 publish, to the message uvicorn
    hands the app: through websockets' parser and events, or ``take_simple_frames``."""
    publish = orjson.dumps({"type": "publish", "room": "bench", "data": "x" * 200, "id": "1"})
    frame = _client_frame(publish)
    handed: list[dict[str, Any]] = []
    if simple:
        start = time.perf_counter_ns()
        for _ in range(messages):
            taken, _used = take_simple_frames(frame, 1 << 20)
            for message in taken:
                handed.append({"type": "websocket.receive", "text": message})
        return (time.perf_counter_ns() - start) / messages
    conn = ServerProtocol(state=State.OPEN, max_size=1 << 20)  # past the handshake
    start = time.perf_counter_ns()
    for _ in range(messages):
        conn.receive_data(frame)
        for event in conn.events_received():
            handed.append({"type": "websocket.receive", "text": event.data.decode()})  # type: ignore[union-attr]
    return (time.perf_counter_ns() - start) / messages


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else "")
    parser.add_argument("--subscribers", type=int, default=100)
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=5, help="best of this many")
    args = parser.parse_args()
    n, m = args.subscribers, args.messages

    def best(make: Any) -> float:
        return min(float(asyncio.run(make())) for _ in range(args.rounds))

    floor = best(lambda: floor_ns(n, m))
    print(f"{n} subscribers, ns per delivery (best of {args.rounds}):")
    print(f"  floor (one write call)          {floor:7.1f}")
    for label, mode, batch in (
        ("fanout.v1, 1 message per flush", Mode.V1, 1),
        ("plain,     1 message per flush", Mode.PLAIN, 1),
        ("fanout.v1, 4 messages per flush", Mode.V1, 4),
    ):
        ns = best(lambda mode=mode, batch=batch: fanout_ns(mode, n, m, batch))
        print(f"  {label}  {ns:7.1f}  (+{ns - floor:.1f} over the floor)")
    print(f"ns per received 200-byte publish frame (best of {args.rounds}):")
    for label, simple in (("websockets' parser", False), ("take_simple_frames", True)):
        ns = min(read_ns(simple, m) for _ in range(args.rounds))
        print(f"  {label:<31}  {ns:7.1f}")
    print(f"ns per publish through the session, 1 member (best of {args.rounds}):")
    for label, mode in (("fanout.v1, with id (acked)", Mode.V1), ("plain", Mode.PLAIN)):
        ns = best(lambda mode=mode: publish_ns(mode, m // 4))
        print(f"  {label:<31}  {ns:7.1f}")
    print("fanout's Python frames entered per publish, same path (deterministic):")
    for label, mode in (("fanout.v1, with id (acked)", Mode.V1), ("plain", Mode.PLAIN)):
        counts = asyncio.run(frames_per_publish(mode, 1000))
        top = ", ".join(f"{name} {n / 1000:g}" for name, n in counts.most_common(4))
        print(f"  {label:<31}  {counts.total() / 1000:7.1f}  (most: {top})")


if __name__ == "__main__":
    main()
