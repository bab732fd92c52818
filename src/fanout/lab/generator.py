"""One generator process: its connections, sending, ticks, drain, final counts.

The coordinator (``runner``) talks to each process over a pipe:

    child  -> ("connected", {...})            every connection opened (or failed)
    parent -> ("start", t0_ns)                 sending starts at t0 (CLOCK_MONOTONIC)
    child  -> ("tick", index, {...})           every TICK_S: counters, latencies, CPU
    child  -> ("sent", {sender: count})        sending is over
    parent -> ("drain", {sender: count}, deadline_ns)
    child  -> ("final", {...})                 the accounting of every connection
    parent -> ("exit",)
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Callable
from multiprocessing.connection import Connection as Pipe
from typing import Any

from fanout.lab.accounting import ReceiverTally, SenderTally
from fanout.lab.config import BenchConfig
from fanout.lab.histogram import Histogram
from fanout.lab.payloads import PayloadMaker
from fanout.lab.plan import Assignment, Receiver
from fanout.lab.wsclient import LabConnection, ProcessTally

TICK_S = 0.5
_CONNECT_AT_ONCE = 64
_SEND_SLICE_S = 0.002
_SLOW_SETTLE_S = 2.0


def main(pipe: Pipe, config: BenchConfig, assignment: Assignment) -> None:
    """Entry point of a generator process: an event loop (uvloop when present)."""
    factory: Callable[[], asyncio.AbstractEventLoop] | None = None
    with contextlib.suppress(ImportError):
        import uvloop

        factory = uvloop.new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        runner.run(Generator(pipe, config, assignment).run())


def connect_error_kind(exc: BaseException) -> str:
    if isinstance(exc, ConnectionRefusedError):
        return "refused"
    if isinstance(exc, TimeoutError):
        return "timeout"
    if isinstance(exc, ConnectionResetError):
        return "reset"
    text = str(exc)
    if text.startswith("http "):
        return text
    if text.startswith("closed with "):
        return text
    return type(exc).__name__ if not text else text[:80]


class Generator:
    def __init__(self, pipe: Pipe, config: BenchConfig, assignment: Assignment) -> None:
        self.pipe = pipe
        self.config = config
        self.assignment = assignment
        self.tally = ProcessTally()
        self.receivers: dict[int, ReceiverTally] = {}
        self.senders: dict[int, SenderTally] = {}
        self.conns: dict[int, LabConnection] = {}  # receiver id -> connection
        self.sender_conns: dict[int, LabConnection] = {}
        self.connect_errors: dict[str, int] = {}
        self.histogram = Histogram()
        self.maker = PayloadMaker(config.kind, config.size)
        self.inbox: asyncio.Queue[tuple[Any, ...]] = asyncio.Queue()
        self.sending_over = False
        self.churn_connects = 0
        self._ticks_task: asyncio.Task[None] | None = None
        self._tick_index = 0
        self._t0_ns = 0
        self._cpu_mark = (0.0, 0.0)

    # -- plumbing -----------------------------------------------------------------------

    def send(self, *message: Any) -> None:
        self.pipe.send(message)

    async def receive(self, kind: str) -> tuple[Any, ...]:
        while True:
            message = await self.inbox.get()
            if message[0] == kind or message[0] == "exit":
                return message

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        loop.add_reader(self.pipe.fileno(), self._on_pipe)
        try:
            await self._connect_all()
            self.send("connected", self._connected_report())
            start = await self.receive("start")
            if start[0] == "exit":
                return
            await self._run_phase(int(start[1]))
            drain = await self.receive("drain")
            if drain[0] == "exit":
                return
            sent = {int(k): int(v) for k, v in drain[1].items()}
            await self._drain(sent, int(drain[2]))
            final = await self._final(sent)
            # The final report is larger than a pipe buffer: send it blocking.
            loop.remove_reader(self.pipe.fileno())
            os.set_blocking(self.pipe.fileno(), True)
            self.send("final", final)
            with contextlib.suppress(EOFError, OSError):
                self.pipe.recv()
        finally:
            for conn in [*self.conns.values(), *self.sender_conns.values()]:
                conn.closing_by_us = True
                if conn.transport is not None:
                    conn.transport.abort()

    def _on_pipe(self) -> None:
        try:
            self.inbox.put_nowait(self.pipe.recv())
        except (EOFError, OSError):
            asyncio.get_running_loop().remove_reader(self.pipe.fileno())
            self.inbox.put_nowait(("exit",))

    # -- connecting ---------------------------------------------------------------------

    async def _open(
        self,
        room: str,
        receiver: ReceiverTally | None = None,
        sender: SenderTally | None = None,
        since: tuple[str, int] | None = None,
    ) -> LabConnection:
        loop = asyncio.get_running_loop()
        c = self.config
        host, port = c.endpoint(sender=sender is not None)
        conn = LabConnection(
            host=host,
            port=port,
            path=c.path_for(room, sender=sender is not None),
            v1=c.mode == "v1",
            room=room,
            process=self.tally,
            receiver=receiver,
            sender=sender,
            since=since,
        )
        async with asyncio.timeout(c.connect_timeout_s):
            await loop.create_connection(lambda: conn, host, port)
            await conn.ready
        return conn

    async def _connect_all(self) -> None:
        gate = asyncio.Semaphore(_CONNECT_AT_ONCE)
        c = self.config

        async def receiver(r: Receiver) -> None:
            tally = self.receivers[r.id] = ReceiverTally(r.id, r.kind, r.room)
            tally.resumes = r.kind != "churn" or c.mode == "v1"
            async with gate:
                try:
                    conn = await self._open(r.room, receiver=tally)
                except (OSError, TimeoutError, ConnectionError) as exc:
                    self._failed(exc, tally)
                    return
            tally.connects += 1
            conn.track_offsets = r.kind == "churn"
            self.conns[r.id] = conn

        async def sender(sid: int, room: str) -> None:
            tally = self.senders[sid] = SenderTally(sid, room, c.size)
            async with gate:
                try:
                    conn = await self._open(room, sender=tally)
                except (OSError, TimeoutError, ConnectionError) as exc:
                    self._failed(exc, tally)
                    return
            self.sender_conns[sid] = conn

        await asyncio.gather(
            *(receiver(r) for r in self.assignment.receivers),
            *(sender(s.id, s.room) for s in self.assignment.senders),
        )

    def _failed(self, exc: BaseException, tally: ReceiverTally | SenderTally) -> None:
        kind = connect_error_kind(exc)
        tally.connect_error = kind
        self.connect_errors[kind] = self.connect_errors.get(kind, 0) + 1

    def _connected_report(self) -> dict[str, Any]:
        ports: dict[int, str] = {}
        for rid, conn in self.conns.items():
            ports[conn.local_port] = self.receivers[rid].kind
        for conn in self.sender_conns.values():
            ports[conn.local_port] = "sender"
        return {
            "receivers": len(self.conns),
            "senders": len(self.sender_conns),
            "connect_errors": dict(self.connect_errors),
            "ports": ports,
        }

    # -- the run ------------------------------------------------------------------------

    async def _run_phase(self, t0_ns: int) -> None:
        c = self.config
        await asyncio.sleep(max(0.0, (t0_ns - time.monotonic_ns()) / 1e9))
        end_ns = t0_ns + int(c.duration_s * 1e9)
        tasks = [asyncio.create_task(self._ticks(t0_ns))]
        if c.slow:
            tasks.append(asyncio.create_task(self._stall_slow(t0_ns)))
        for rid, r in self.receivers.items():
            if r.kind == "churn":
                tasks.append(asyncio.create_task(self._churn(rid, end_ns)))
        await self._send_all(t0_ns, end_ns)
        self.sending_over = True
        self.send("sent", {sid: t.sent for sid, t in self.senders.items()})
        self._ticks_task = tasks[0]
        if c.slow:
            tasks[1].cancel()  # sending ended before the slow receivers were to stall
        for task in tasks[1:]:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _stall_slow(self, t0_ns: int) -> None:
        at = t0_ns + int(self.config.slow_after_s * 1e9)
        await asyncio.sleep(max(0.0, (at - time.monotonic_ns()) / 1e9))
        for rid, conn in self.conns.items():
            if self.receivers[rid].kind == "slow":
                conn.stop_reading()

    async def _churn(self, rid: int, end_ns: int) -> None:
        c = self.config
        tally = self.receivers[rid]
        while time.monotonic_ns() < end_ns and not self.sending_over:
            await asyncio.sleep(c.churn_every_s)
            conn = self.conns.get(rid)
            since: tuple[str, int] | None = None
            if conn is not None:
                if c.mode == "v1" and conn.epoch:
                    since = (conn.epoch, conn.offset)
                if c.churn_abort:
                    conn.abort()
                else:
                    conn.close()
            tally.close_code = None
            try:
                new = await self._open(tally.room, receiver=tally, since=since)
            except (OSError, TimeoutError, ConnectionError) as exc:
                self._failed(exc, tally)
                self.conns.pop(rid, None)
                continue
            if conn is not None and since is None:
                new.epoch, new.offset = conn.epoch, conn.offset
            new.track_offsets = True
            self.conns[rid] = new
            tally.connects += 1
            self.churn_connects += 1

    def _frame(self, tally: SenderTally, seq: int) -> tuple[int, bytes]:
        payload = self.maker.make(tally.id, seq, time.monotonic_ns())
        if self.config.mode == "plain":
            return self.maker.opcode, payload
        room = tally.room.encode()
        msg_id = b"%d-%d" % (tally.id, seq)
        if self.maker.opcode == 0x1:
            return 0x1, b'{"type":"publish","room":"%s","id":"%s","data":"%s"}' % (
                room,
                msg_id,
                payload,
            )
        head = b'{"type":"publish","room":"%s","id":"%s"}' % (room, msg_id)
        return 0x2, len(head).to_bytes(4, "big") + head + payload

    def _in_flight(self, tally: SenderTally) -> int:
        answered = tally.acked + tally.send_errors if self.config.mode == "v1" else tally.echoed
        return tally.sent - answered

    async def _send_all(self, t0_ns: int, end_ns: int) -> None:
        c = self.config
        limit = c.messages_per_sender()
        buffer_cap = max(8 * 1024 * 1024, 2 * c.size)
        pairs = [(self.senders[sid], conn) for sid, conn in self.sender_conns.items()]
        progress = self.tally.progress
        while True:
            now = time.monotonic_ns()
            if now >= end_ns:
                return
            elapsed = (now - t0_ns) / 1e9
            busy = False
            for tally, conn in pairs:
                if conn.closed or tally.sent + tally.skipped >= limit:
                    continue
                busy = True
                if c.rate is None:
                    due = min(limit, tally.sent + tally.skipped + c.window - self._in_flight(tally))
                else:
                    due = min(limit, int(_due(c.rate, c.ramp_s, elapsed)))
                n = due - tally.sent - tally.skipped
                while n > 0:
                    if conn.write_buffered() > buffer_cap:
                        # The server is not reading this socket: do not pile up here.
                        tally.skipped += n
                        break
                    opcode, frame = self._frame(tally, tally.sent + 1)
                    if conn.write(opcode, frame):
                        tally.sent += 1
                    else:
                        tally.send_errors += 1
                        break
                    n -= 1
            if not busy:
                return  # every sender has sent its count (or is closed)
            if c.rate is None:
                progress.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(_SEND_SLICE_S):
                        await progress.wait()
            else:
                await asyncio.sleep(_SEND_SLICE_S)

    async def _ticks(self, t0_ns: int) -> None:
        self._t0_ns = t0_ns
        self._cpu_mark = (time.process_time(), time.monotonic())
        while True:
            self._tick_index += 1
            at = t0_ns + int(self._tick_index * TICK_S * 1e9)
            await asyncio.sleep(max(0.0, (at - time.monotonic_ns()) / 1e9))
            self._tick()

    def _tick(self) -> None:
        cpu0, wall0 = self._cpu_mark
        cpu1, wall1 = time.process_time(), time.monotonic()
        cpu = 100.0 * (cpu1 - cpu0) / max(1e-6, wall1 - wall0)
        self._cpu_mark = (cpu1, wall1)
        report = self._tick_report(cpu)
        report["t"] = (time.monotonic_ns() - self._t0_ns) / 1e9
        self.send("tick", self._tick_index, report)

    def _tick_report(self, cpu: float) -> dict[str, Any]:
        interval = Histogram()
        lat = self.tally.latencies_ns
        interval.record_ns(lat)
        del lat[:]
        self.histogram.merge(interval)
        return {
            "sent": sum(t.sent for t in self.senders.values()),
            "skipped": sum(t.skipped for t in self.senders.values()),
            "acked": sum(t.acked for t in self.senders.values()),
            "delivered": sum(r.delivered for r in self.receivers.values()),
            "lost_holes": sum(r.holes() for r in self.receivers.values() if r.resumes),
            "latency": interval.to_json(),
            "cpu": cpu,
        }

    # -- the end ------------------------------------------------------------------------

    def _waiting_for(self, sent: dict[int, int]) -> list[int]:
        """Receivers (and v1 senders) that may still get something during the drain."""
        waiting = []
        by_room = self.assignment.senders_by_room
        for rid, r in self.receivers.items():
            conn = self.conns.get(rid)
            if r.kind == "slow" or not r.resumes or conn is None or conn.closed:
                continue
            if not r.complete(sent, list(by_room.get(r.room, ()))):
                waiting.append(rid)
        return waiting

    def _acks_pending(self) -> bool:
        if self.config.mode != "v1":
            return False
        return any(
            self._in_flight(t) > 0 and not conn.closed
            for t, conn in ((self.senders[s], c) for s, c in self.sender_conns.items())
        )

    async def _drain(self, sent: dict[int, int], deadline_ns: int) -> None:
        while time.monotonic_ns() < deadline_ns:
            if not self._waiting_for(sent) and not self._acks_pending():
                break
            await asyncio.sleep(0.01)
        task = self._ticks_task
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        # A last, shorter tick: what arrived since the previous one.
        self._tick_index += 1
        self._tick()

    async def _wake_slow(self) -> None:
        slow = [
            conn
            for rid, conn in self.conns.items()
            if self.receivers[rid].kind == "slow" and not conn.closed
        ]
        for conn in slow:
            conn.resume_reading()
        await _settle(slow, _SLOW_SETTLE_S)

    async def _final(self, sent: dict[int, int]) -> dict[str, Any]:
        by_room = self.assignment.senders_by_room
        k = self.assignment.process
        receivers = [
            r.summary(sent, list(by_room.get(r.room, ())), k)
            for r in self.receivers.values()
            if r.kind != "slow"
        ]
        # Only now, with everyone else counted, do slow receivers read again: what the
        # server left for them, and how it ended (a 4008 close frame waits behind the
        # data it could not send; a naive server simply carries on).
        await self._wake_slow()
        receivers += [
            r.summary(sent, list(by_room.get(r.room, ())), k)
            for r in self.receivers.values()
            if r.kind == "slow"
        ]
        return {
            "receivers": receivers,
            "senders": [t.summary(k) for t in self.senders.values()],
            "histogram": self.histogram.to_json(),
            "close_codes": dict(self.tally.close_codes),
            "connect_errors": dict(self.connect_errors),
            "churn_connects": self.churn_connects,
        }


async def _settle(conns: list[LabConnection], wait_s: float) -> None:
    """Wait until these connections are closed or quiet, at most ``wait_s``."""
    deadline = time.monotonic() + wait_s
    last = -1
    while time.monotonic() < deadline:
        moved = sum(c.bytes_in for c in conns)
        if all(c.closed for c in conns) or moved == last:
            return
        last = moved
        await asyncio.sleep(0.1)


def _due(rate: float, ramp_s: float, elapsed: float) -> float:
    """Messages due by ``elapsed`` seconds: a linear ramp to ``rate``, then steady."""
    if elapsed <= 0:
        return 0.0
    if ramp_s > 0 and elapsed < ramp_s:
        return rate * elapsed * elapsed / (2 * ramp_s)
    return rate * (elapsed - ramp_s / 2) + (1.0 if ramp_s == 0 else 0.0)
