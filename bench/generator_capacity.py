"""How many deliveries per second one lab generator process absorbs, fully accounted.

The lab must measure the server, not itself. Here the server is a *firehose*: a tiny
raw-socket server (its own process) that writes pre-built frames in large batches, so
it costs next to nothing per frame. One generator process holds N receivers (the lab's
own ``LabConnection`` and ``ReceiverTally``: frame parsing, sequence accounting and
latency, exactly the code a run uses) and we time how fast it takes everything in.

    .venv/bin/python bench/generator_capacity.py [--shapes 50:20000,1000:1000]
        [--results bench/RESULTS.md]

Prints deliveries/s, the generator's CPU share, and deliveries per CPU-second;
``--json`` writes them to a file, ``--results`` rewrites its section of RESULTS.md.
Checks that every message was accounted (no loss, no duplicate) so the figure is for
full accounting, not for skipping work.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import hashlib
import json
import multiprocessing as mp
import os
import sys
import time
from pathlib import Path
from typing import Any

from fanout.lab.accounting import ReceiverTally
from fanout.lab.histogram import Histogram
from fanout.lab.interrupt import run_interruptible
from fanout.lab.net import ProcessGone, free_port, wait_for_port
from fanout.lab.payloads import header
from fanout.lab.wsclient import LabConnection, ProcessTally
from results_md import replace_section

HOST = "127.0.0.1"
BATCH = 512
_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


# -- the firehose server ----------------------------------------------------------------


def _frame(seq: int, size: int) -> bytes:
    payload = header(0, seq, time.monotonic_ns())
    payload += b"x" * (size - len(payload))
    return (
        bytes((0x81, len(payload))) + payload
        if len(payload) < 126
        else (bytes((0x81, 126)) + len(payload).to_bytes(2, "big") + payload)
    )


async def _firehose(port: int, receivers: int, messages: int, size: int) -> None:
    writers: list[asyncio.StreamWriter] = []
    all_in = asyncio.Event()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = await reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, ConnectionError):
            return
        key = b""
        for line in request.split(b"\r\n"):
            if line.lower().startswith(b"sec-websocket-key:"):
                key = line.split(b":", 1)[1].strip()
        accept = base64.b64encode(hashlib.sha1(key + _GUID).digest())
        writer.write(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept + b"\r\n\r\n"
        )
        writers.append(writer)
        if len(writers) == receivers:
            all_in.set()
        with contextlib.suppress(ConnectionError):
            await reader.read()  # until the client goes

    server = await asyncio.start_server(handle, HOST, port)
    async with server:
        await all_in.wait()
        seq = 0
        while seq < messages:
            n = min(BATCH, messages - seq)
            batch = b"".join(_frame(seq + i + 1, size) for i in range(n))
            seq += n
            for w in writers:
                w.write(batch)
            for w in writers:
                await w.drain()
        await asyncio.sleep(30)  # the measuring side closes us long before


def firehose_main(port: int, receivers: int, messages: int, size: int) -> None:
    with contextlib.suppress(ImportError):
        import uvloop

        uvloop.install()
    asyncio.run(_firehose(port, receivers, messages, size))


# -- the measuring side ------------------------------------------------------------------


async def measure(port: int, receivers: int, messages: int) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    process = ProcessTally()
    tallies = [ReceiverTally(i, "stable", "firehose") for i in range(receivers)]
    conns = []
    for tally in tallies:
        conn = LabConnection(
            host=HOST,
            port=port,
            path="/",
            v1=False,
            room="firehose",
            process=process,
            receiver=tally,
        )
        await loop.create_connection(lambda c=conn: c, HOST, port)  # type: ignore[misc]
        await conn.ready
        conns.append(conn)
    cpu0, wall0 = time.process_time(), time.monotonic()
    histogram = Histogram()
    total = receivers * messages
    while sum(t.delivered + t.duplicated for t in tallies) < total:
        await asyncio.sleep(0.01)
        if time.monotonic() - wall0 > 120:
            break
        # As a run does every tick: latencies into the histogram.
        histogram.record_ns(process.latencies_ns)
        del process.latencies_ns[:]
    histogram.record_ns(process.latencies_ns)
    cpu1, wall1 = time.process_time(), time.monotonic()
    for conn in conns:
        conn.abort()
    sent = {0: messages}
    lost = sum(sum(t.lost(sent, [0])) for t in tallies)
    delivered = sum(t.delivered for t in tallies)
    wall, cpu = wall1 - wall0, cpu1 - cpu0
    return {
        "receivers": receivers,
        "messages_per_receiver": messages,
        "delivered": delivered,
        "lost": lost,
        "duplicated": sum(t.duplicated for t in tallies),
        "wall_s": round(wall, 3),
        "cpu_s": round(cpu, 3),
        "deliveries_per_s": round(delivered / wall),
        "generator_cpu_percent": round(100 * cpu / wall, 1),
        "deliveries_per_cpu_s": round(delivered / cpu),
        "latency_count": histogram.total,
    }


def capacity(receivers: int, messages: int, size: int) -> dict[str, Any]:
    port = free_port()
    ctx = mp.get_context("spawn")
    server = ctx.Process(target=firehose_main, args=(port, receivers, messages, size), daemon=True)
    server.start()
    try:
        try:
            wait_for_port(HOST, port, 20, running=server.is_alive)
        except (ProcessGone, TimeoutError) as exc:
            raise SystemExit(f"the firehose did not start: {exc}") from None
        # The probe above never sent a handshake: the firehose still waits for N receivers.
        factory = None
        with contextlib.suppress(ImportError):
            import uvloop

            factory = uvloop.new_event_loop
        with asyncio.Runner(loop_factory=factory) as runner:
            figures = runner.run(measure(port, receivers, messages))
    finally:
        server.kill()
        server.join()
    figures["size"] = size
    return figures


def section(rows: list[dict[str, Any]]) -> str:
    lines = [
        "## The lab's own capacity",
        "",
        "Generated by `bench/generator_capacity.py`: one generator process (the lab's own"
        " receive path: frame parsing, per-stream accounting, latency histogram) against a"
        " firehose server that writes pre-built frames in batches of 512, so the figure is"
        " the generator's. Median of the repeats; every message accounted (no loss, no"
        " duplicate).",
        "",
        f"- Machine: {os.cpu_count()} cores, Python {sys.version.split()[0]}",
        "",
        "| receivers | messages each | payload | deliveries/s | generator CPU |"
        " deliveries per CPU-second |",
        "| ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        lines.append(
            f"| {r['receivers']} | {r['messages_per_receiver']:,} | {r['size']} B |"
            f" **{r['deliveries_per_s']:,}** | {r['generator_cpu_percent']:.0f}% |"
            f" {r['deliveries_per_cpu_s']:,} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--shapes",
        default="50:20000,1000:1000",
        help="receivers:messages each, comma-separated (default: %(default)s)",
    )
    parser.add_argument("--size", type=int, default=64, help="payload bytes (>= 41)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", type=Path, help="write the figures here")
    parser.add_argument("--results", type=Path, help="rewrite this file's capacity section")
    args = parser.parse_args(argv)
    rows = []
    for shape in args.shapes.split(","):
        receivers, messages = (int(x) for x in shape.split(":"))
        runs = [capacity(receivers, messages, args.size) for _ in range(args.repeat)]
        runs.sort(key=lambda r: r["deliveries_per_s"])
        median = runs[len(runs) // 2]
        print(json.dumps(median), flush=True)
        if any(r["lost"] or r["duplicated"] for r in runs):
            print("accounting error: messages lost or duplicated", file=sys.stderr)
            return 1
        rows.append(median)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1) + "\n")
    if args.results:
        replace_section(args.results, "generator_capacity", section(rows))
    return 0


if __name__ == "__main__":
    # Ctrl-C or a kill (SIGTERM) stops the servers and processes the run started.
    sys.exit(run_interruptible(main))
