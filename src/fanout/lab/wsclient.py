"""The lab's WebSocket client: a small raw protocol, lighter than a client library.

One generator process holds thousands of these, and must absorb hundreds of thousands
of deliveries per second with full accounting, so the receive path is one loop over the
bytes ``data_received`` hands over: frame boundaries, the sequence header, accounting and
latency, without building an object per frame. Large frames (images) are gathered in a
list and joined once, never re-concatenated per chunk.

Client frames are masked with the all-zero key. RFC 6455 asks clients to mask, and a
server unmasks by XOR with the key, which it cannot tell from any other key: sending a
16 MiB image costs a ``write``, not a Python loop over 16 MiB.
"""

from __future__ import annotations

import array
import asyncio
import base64
import contextlib
import os
import socket
import struct
import time
from typing import Any, cast

import orjson

from fanout.lab.accounting import ReceiverTally, SenderTally, Stream
from fanout.lab.payloads import MAGIC

_ZERO_KEY = b"\x00\x00\x00\x00"
_SEARCH = 4096  # the header sits near the start of every payload the lab sends
_CLOSE_NORMAL = 1000
_CLOSE_ABNORMAL = 1006
_monotonic_ns = time.monotonic_ns


def client_frame_header(opcode: int, length: int) -> bytes:
    """Header of a final, masked (zero key) client frame of ``length`` bytes."""
    if length < 126:
        return bytes((0x80 | opcode, 0x80 | length)) + _ZERO_KEY
    if length < 1 << 16:
        return bytes((0x80 | opcode, 0x80 | 126)) + length.to_bytes(2, "big") + _ZERO_KEY
    return bytes((0x80 | opcode, 0x80 | 127)) + length.to_bytes(8, "big") + _ZERO_KEY


class ProcessTally:
    """What all connections of one generator process share: latencies, closes."""

    def __init__(self) -> None:
        self.latencies_ns = array.array("q")
        self.close_codes: dict[int, int] = {}
        # Set when a sender's in-flight window opens (an ack or an echo arrived).
        self.progress = asyncio.Event()

    def wake(self) -> None:
        self.progress.set()

    def closed(self, code: int) -> None:
        self.close_codes[code] = self.close_codes.get(code, 0) + 1


class LabConnection(asyncio.Protocol):
    """One WebSocket connection of the lab: a receiver (``receiver`` tally) or a sender."""

    def __init__(
        self,
        *,
        host: str,
        port: int,
        path: str,
        v1: bool,
        room: str,
        process: ProcessTally,
        receiver: ReceiverTally | None = None,
        sender: SenderTally | None = None,
        since: tuple[str, int] | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.path = path
        self.v1 = v1
        self.room = room
        self.process = process
        self.receiver = receiver
        self.sender = sender
        self.since = since
        self.transport: asyncio.Transport | None = None
        self.ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.open = False
        self.closed = False
        self.closing_by_us = False
        self.lost = asyncio.get_running_loop().create_future()
        self.local_port = 0
        self.bytes_in = 0
        self._buf = b""
        self._parts: list[bytes] = []
        self._parts_len = 0
        self._need = 0
        self._fragments: list[bytes] | None = None
        self._fragment_opcode = 0
        self._key = base64.b64encode(os.urandom(16)).decode()
        # fanout.v1 resume point (churning receivers reconnect from here).
        self.epoch = ""
        self.offset = 0
        self.track_offsets = False

    # -- connection -------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = t = cast(asyncio.Transport, transport)
        sockname = t.get_extra_info("sockname")
        if sockname:
            self.local_port = int(sockname[1])
        lines = [
            f"GET {self.path} HTTP/1.1",
            f"Host: {self.host}:{self.port}",
            "Upgrade: websocket",
            "Connection: Upgrade",
            f"Sec-WebSocket-Key: {self._key}",
            "Sec-WebSocket-Version: 13",
            "User-Agent: fanout-lab",
        ]
        if self.v1:
            lines.append("Sec-WebSocket-Protocol: fanout.v1")
        t.write(("\r\n".join(lines) + "\r\n\r\n").encode())

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if not self.ready.done():
            self.ready.set_exception(ConnectionError(f"closed during the handshake ({exc!r})"))
        if not self.closing_by_us:
            self._record_close(_CLOSE_ABNORMAL)
        if not self.lost.done():
            self.lost.set_result(None)

    def _record_close(self, code: int) -> None:
        tally: ReceiverTally | SenderTally | None = self.receiver or self.sender
        if tally is not None and tally.close_code is None:
            tally.close_code = code
            self.process.closed(code)

    def write(self, opcode: int, payload: bytes) -> bool:
        t = self.transport
        if t is None or self.closed or t.is_closing():
            return False
        t.write(client_frame_header(opcode, len(payload)))
        if payload:
            t.write(payload)
        return True

    def write_buffered(self) -> int:
        t = self.transport
        return t.get_write_buffer_size() if t is not None else 0

    def close(self, code: int = _CLOSE_NORMAL) -> None:
        """A clean close: close frame, then the TCP connection."""
        self.closing_by_us = True
        if self.transport is not None and not self.closed:
            self.write(0x8, code.to_bytes(2, "big"))
            self.transport.close()

    def abort(self) -> None:
        """Vanish: reset the TCP connection without a close frame."""
        self.closing_by_us = True
        t = self.transport
        if t is None or self.closed:
            return
        sock = t.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError, AttributeError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        t.abort()

    def stop_reading(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.resume_reading()

    # -- receiving ----------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        self.bytes_in += len(data)
        if self._need:
            self._parts.append(data)
            self._parts_len += len(data)
            if self._parts_len < self._need:
                return
            data = b"".join(self._parts)
            self._parts.clear()
            self._parts_len = self._need = 0
        elif self._buf:
            data = self._buf + data
            self._buf = b""
        if not self.open:
            end = data.find(b"\r\n\r\n")
            if end < 0:
                if len(data) > 65536:
                    self._fail_handshake("handshake response too long")
                    return
                self._buf = data
                return
            status = data[: data.find(b"\r\n")]
            if b" 101 " not in status + b" ":
                self._fail_handshake(_status_text(status))
                return
            self.open = True
            data = data[end + 4 :]
            if self.receiver is not None and self.v1:
                self._subscribe()
            elif not self.ready.done():
                self.ready.set_result(None)
        rest = self._frames(data)
        if rest:
            self._keep(rest)

    def _fail_handshake(self, reason: str) -> None:
        if not self.ready.done():
            self.ready.set_exception(ConnectionError(reason))
        self.closing_by_us = True
        if self.transport is not None:
            self.transport.abort()

    def _keep(self, rest: bytes) -> None:
        """Hold an incomplete frame; a large one is gathered, not re-concatenated."""
        need = _frame_length(rest)
        if need > 65536:
            self._parts = [rest]
            self._parts_len = len(rest)
            self._need = need
        else:
            self._buf = rest

    def _subscribe(self) -> None:
        frame: dict[str, Any] = {"type": "subscribe", "room": self.room}
        if self.since is not None:
            frame["since"] = {"epoch": self.since[0], "offset": self.since[1]}
        self.write(0x1, orjson.dumps(frame))

    def _frames(self, buf: bytes) -> bytes:
        """Consume the whole frames in ``buf``; return the incomplete rest."""
        now = _monotonic_ns()
        n = len(buf)
        pos = 0
        rx = self.receiver
        latencies = self.process.latencies_ns
        while n - pos >= 2:
            b1 = buf[pos + 1]
            length = b1 & 0x7F
            start = pos + 2
            if length == 126:
                if n - pos < 4:
                    break
                length = (buf[pos + 2] << 8) | buf[pos + 3]
                start = pos + 4
            elif length == 127:
                if n - pos < 10:
                    break
                length = int.from_bytes(buf[pos + 2 : pos + 10], "big")
                start = pos + 10
            end = start + length
            if end > n:
                break
            b0 = buf[pos]
            pos = end
            opcode = b0 & 0x0F
            if opcode == 0x1 or opcode == 0x2:
                if not b0 & 0x80:  # first fragment of a fragmented message
                    self._fragments = [buf[start:end]]
                    self._fragment_opcode = opcode
                    continue
                data = buf
            elif opcode == 0x0:
                if self._fragments is None:
                    continue
                self._fragments.append(buf[start:end])
                if not b0 & 0x80:
                    continue
                data = b"".join(self._fragments)
                self._fragments = None
                start, end = 0, len(data)
            else:
                self._control(opcode, buf[start:end])
                continue
            i = data.find(MAGIC, start, min(end, start + _SEARCH))
            if i < 0:
                self._message(data[start:end])
                continue
            try:
                sender = int(data[i + 4 : i + 10])
                seq = int(data[i + 10 : i + 20])
                sent_ns = int(data[i + 20 : i + 40])
            except ValueError:
                continue
            if rx is None:
                self._echo(sender)
                continue
            # ReceiverTally.note, inlined: this runs for every delivery.
            st = rx.streams.get(sender)
            if st is None:
                st = rx.streams[sender] = Stream(0 if rx.resumes else seq - 1)
            high = st.high
            if seq == high + 1:
                st.high = seq
                rx.delivered += 1
            else:
                rx.note(sender, seq)
            lat = now - sent_ns
            latencies.append(lat)
            rx.latency_count += 1
            rx.latency_sum_ns += lat
            if lat > rx.latency_max_ns:
                rx.latency_max_ns = lat
            if self.track_offsets:
                self._note_offset(data[start:end])
        return buf[pos:] if pos < n else b""

    def _echo(self, sender: int) -> None:
        tx = self.sender
        if tx is not None and sender == tx.id:
            tx.echoed += 1
            self.process.wake()

    def _note_offset(self, frame: bytes) -> None:
        with contextlib.suppress(orjson.JSONDecodeError, ValueError, TypeError):
            head = _json_head(frame)
            if head.get("type") == "message":
                self.epoch = str(head.get("epoch", self.epoch))
                self.offset = int(head.get("offset", self.offset))

    def _message(self, frame: bytes) -> None:
        """A data frame without a lab header: fanout.v1 control traffic, or foreign."""
        if not self.v1:
            return
        try:
            msg = _json_head(frame)
        except (orjson.JSONDecodeError, ValueError):
            return
        kind = msg.get("type")
        if kind == "ack" and self.sender is not None:
            self.sender.acked += 1
            self.process.wake()
        elif kind == "error":
            code = str(msg.get("code", "unknown"))
            if self.sender is not None:
                self.sender.send_errors += 1
                self.sender.errors[code] = self.sender.errors.get(code, 0) + 1
                self.process.wake()
            elif not self.ready.done():
                self.ready.set_exception(ConnectionError(f"subscribe refused: {code}"))
        elif kind == "subscribed":
            epoch, offset = str(msg.get("epoch", "")), int(msg.get("offset", 0))
            if self.since is None or epoch != self.since[0]:
                self.epoch, self.offset = epoch, offset
            if not self.ready.done():
                self.ready.set_result(None)
        elif kind == "gap" and self.receiver is not None:
            with contextlib.suppress(TypeError, ValueError):
                self.receiver.gap_announced += int(msg["to"]) - int(msg["from"]) + 1

    def _control(self, opcode: int, payload: bytes) -> None:
        if opcode == 0x9:  # ping
            self.write(0xA, payload)
        elif opcode == 0x8:  # close
            code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else 1005
            self._record_close(code)
            self.closing_by_us = True
            if not self.ready.done():
                self.ready.set_exception(ConnectionError(f"closed with {code}"))
            self.write(0x8, payload[:2])
            if self.transport is not None:
                self.transport.close()


def _json_head(frame: bytes) -> dict[str, Any]:
    """The JSON of a text frame, or of a binary envelope's header."""
    if frame[:1] == b"{":
        value = orjson.loads(frame)
    else:
        size = int.from_bytes(frame[:4], "big")
        value = orjson.loads(frame[4 : 4 + size])
    if not isinstance(value, dict):
        raise ValueError("not an object")
    return value


def _frame_length(rest: bytes) -> int:
    """Total bytes of the frame ``rest`` starts (0 if its header is incomplete)."""
    if len(rest) < 2:
        return 0
    length = rest[1] & 0x7F
    if length == 126:
        return 4 + int.from_bytes(rest[2:4], "big") if len(rest) >= 4 else 0
    if length == 127:
        return 10 + int.from_bytes(rest[2:10], "big") if len(rest) >= 10 else 0
    return 2 + length


def _status_text(status: bytes) -> str:
    parts = status.split(b" ", 2)
    if len(parts) >= 2 and parts[1].isdigit():
        return f"http {int(parts[1])}"
    return "bad handshake response"
