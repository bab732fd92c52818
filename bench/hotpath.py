"""Python cost of fanout's fan-out path per delivery, without sockets.

The real ``Hub``, ``Connection``, ``FlushScheduler`` and ``DirectTransport`` run on the
event loop, but each socket's ``write``/``writelines`` is ``list.append``/``list.extend``
(C calls that cost next to nothing): what is left is the Python above the write. The
``floor`` line is the least such a loop can do, one C call per recipient; fanout's
overhead is the difference. ``bench/fanout_vs_article.py`` measures the real thing,
kernel included; this one is steady to a few nanoseconds, for comparing code changes.

    .venv/bin/python bench/hotpath.py [--subscribers 100] [--messages 20000]
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any, cast

from fanout.asgi.direct import DirectTransport, FanoutWebSocketProtocol
from fanout.asgi.wiring import wire
from fanout.core.connection import Mode
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


async def fanout_ns(mode: Mode, subscribers: int, messages: int, batch: int) -> float:
    """Nanoseconds per delivery: ``batch`` publishes per loop iteration, then a flush."""
    hub = wire(Settings()).hub
    await hub.start()
    out: list[bytes] = []
    for _ in range(subscribers):
        transport = DirectTransport(cast(FanoutWebSocketProtocol, _Proto(out)))
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


if __name__ == "__main__":
    main()
