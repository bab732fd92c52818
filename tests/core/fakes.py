"""Stand-ins for the sockets side, kept beside the tests that drive the core without I/O."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import cast

from fanout.core.broker import History
from fanout.core.connection import Connection
from fanout.core.transport import WriteThroughWatcher
from fanout.protocol.envelope import Message, OutFrame


class FakeTransport:
    """A transport that records what the core writes and how it closes."""

    def __init__(self, *, ready: bool = True) -> None:
        # False: a peer that does not read; send() waits as a full socket would.
        self.writable = ready
        self._drained = asyncio.Event()
        self.written: list[OutFrame] = []
        self.writes = 0  # write_now calls: how many writes the socket would have seen
        self.closed_with: tuple[int, str] | None = None
        self.failure: Exception | None = None  # what each write raises, if set

    def watch(self, watcher: WriteThroughWatcher) -> None:
        # Never changes: tests make a fake either ready or stalled for good (a close
        # makes the connection stop delivering first).
        watcher.write_through = self._write_wire if self.writable else None

    def _write_wire(self, data: bytes) -> None:
        if self.failure is not None:
            raise self.failure
        self.writes += 1
        self.written.extend(server_frames(data))

    def write_now(self, frames: list[OutFrame]) -> None:
        if self.failure is not None:
            raise self.failure
        self.writes += 1
        self.written.extend(frames)

    def release(self) -> Callable[[bytes], None]:
        """The stalled peer reads again: a send() waiting for it goes on. The write a
        watcher would be given now."""
        self.writable = True
        self._drained.set()
        return self._write_wire

    async def send(self, frames: list[OutFrame]) -> None:
        if not self.writable:
            await self._drained.wait()
        self.written.extend(frames)

    def close(self, code: int, reason: str, *, timeout_s: float) -> None:
        self.closed_with = (code, reason)


def server_frames(data: bytes) -> list[OutFrame]:
    """The frames in a server's (unmasked) WebSocket bytes."""
    frames = []
    at = 0
    while at < len(data):
        opcode, length = data[at] & 0x0F, data[at + 1] & 0x7F
        at += 2
        if length >= 126:
            size = 2 if length == 126 else 8
            length = int.from_bytes(data[at : at + size], "big")
            at += size
        frames.append(OutFrame(data[at : at + length], is_text=opcode == 1))
        at += length
    return frames


def nobody() -> Connection:
    """A subscription's connection in tests that only look at the frames returned."""
    return cast(Connection, None)


def messages(room: str, epoch: str, offsets: range) -> list[Message]:
    return [Message(room, epoch, n, f"m{n}") for n in offsets]


def history(room: str, epoch: str, latest: int, first_kept: int, after: int = 0) -> History:
    kept = range(max(first_kept, after + 1), latest + 1)
    return History(epoch, latest, first_kept, messages(room, epoch, kept))
