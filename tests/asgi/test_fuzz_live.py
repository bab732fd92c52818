"""Fuzzing a live `fanout serve`: random frames over real sockets, each answered as the
protocol documents, the hub still serving afterwards, and no memory growth.

Three streams: ``fanout.v1`` frames (JSON objects with random types and fields, random
strings, random and well-formed binary envelopes), plain frames (echoed to their room,
sender included), and raw WebSocket frames with random flags, opcodes and masking.
The decoder is the oracle for what a ``fanout.v1`` frame must get: a frame it refuses
gets exactly that ``error``; a frame it accepts gets its ack, subscribed or error.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import struct
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import urlparse

import httpx
import psutil
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.client import ClientProtocol
from websockets.exceptions import ConnectionClosed
from websockets.frames import Close, Frame, Opcode
from websockets.http11 import Response
from websockets.sync.client import ClientConnection, connect
from websockets.uri import parse_uri
from websockets.utils import apply_mask

from fanout.protocol.codes import SUBPROTOCOL, ErrorCode
from fanout.protocol.errors import FrameError
from fanout.protocol.frames import (
    Auth,
    ClientFrame,
    Publish,
    Subscribe,
    decode_binary,
    decode_text,
)
from tests.support.servers import HubProcess, hub_process

MAX_MESSAGE_BYTES = 16 * 1024
DOCUMENTED_CLOSES = {1002, 1007, 1008, 1009, 4029}
ERROR_CODES = {code.value for code in ErrorCode}
SYNC_ROOM = "fuzz-sync"
PLAIN_ROOM = "fuzz-plain"
MiB = 1024 * 1024

FUZZ = settings(
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubProcess]:
    log = tmp_path_factory.mktemp("fuzz") / "hub.log"
    # Small, bounded broker state, so that memory growth can only be a leak.
    args = [
        "--log-level",
        "error",
        "--max-message-bytes",
        str(MAX_MESSAGE_BYTES),
        "--max-rooms",
        "300",
        "--history-max-messages",
        "20",
        "--history-total-max-bytes",
        str(2 * MiB),
        "--idempotency-max-ids",
        "100",
        "--rate-frames-per-s",
        "20000",
    ]
    with hub_process(args, log) as running:
        yield running


# -- strategies ------------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63) | st.floats() | st.text(max_size=30),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=15,
)
rooms = (
    st.sampled_from(["fuzz-a", "fuzz-b", "chat.1", "x", "a" * 128])
    | st.from_regex(r"[A-Za-z0-9_.:@\-]{1,20}", fullmatch=True)
    | st.text(max_size=12)
    | json_values
)
field_values: dict[str, st.SearchStrategy[Any]] = {
    "type": st.sampled_from(["publish", "subscribe", "unsubscribe", "auth"])
    | st.sampled_from(["authorized", "message", "ack", "PUBLISH", ""])
    | json_values,
    "room": rooms,
    "data": json_values
    | st.fixed_dictionaries(
        {"kind": st.just("chat"), "name": json_values | st.text(max_size=70), "text": json_values}
    ),
    "id": st.text(min_size=1, max_size=12) | st.sampled_from(["", "i" * 129]) | json_values,
    "since": st.fixed_dictionaries({"epoch": json_values, "offset": json_values}) | json_values,
    "token": st.text(max_size=40) | json_values,
}
frame_objects = st.fixed_dictionaries(
    {},
    optional={**field_values, "extra": json_values},
)


good_rooms = st.sampled_from(["fuzz-a", "fuzz-b", "chat.1", PLAIN_ROOM]) | st.from_regex(
    r"[a-z0-9.]{1,8}", fullmatch=True
)
good_ids = st.from_regex(r"[a-z0-9-]{1,12}", fullmatch=True)
valid_objects = st.one_of(
    st.fixed_dictionaries(
        {"type": st.just("publish"), "room": good_rooms, "data": json_values},
        optional={"id": good_ids},
    ),
    st.fixed_dictionaries(
        {"type": st.just("subscribe"), "room": good_rooms},
        optional={
            "since": st.fixed_dictionaries(
                {"epoch": st.text(max_size=10), "offset": st.integers(0, 50)}
            )
        },
    ),
    st.fixed_dictionaries({"type": st.just("unsubscribe"), "room": good_rooms}),
    st.fixed_dictionaries(
        {"type": st.just("auth"), "token": st.text(min_size=1, max_size=40)},
        optional={"id": good_ids},
    ),
)


def _mutate(obj: dict[str, Any], name: str, value: Any) -> dict[str, Any]:
    return {**obj, name: value}


mutated_objects = st.builds(
    _mutate, valid_objects, st.sampled_from([*field_values, "extra"]), json_values | rooms
)


def _envelope(header: Any, payload: bytes) -> bytes:
    head = json.dumps(header).encode()
    return struct.pack("!I", len(head)) + head + payload


v1_text = st.one_of(
    valid_objects.map(json.dumps),
    valid_objects.map(json.dumps),
    mutated_objects.map(json.dumps),
    frame_objects.map(json.dumps),
    json_values.map(json.dumps),
    st.text(max_size=200),
)
v1_binary = st.one_of(
    st.builds(
        _envelope,
        valid_objects.map(lambda o: {k: v for k, v in o.items() if k != "data"}),
        st.binary(max_size=100),
    ),
    st.builds(_envelope, mutated_objects, st.binary(max_size=100)),
    st.builds(_envelope, frame_objects, st.binary(max_size=100)),
    st.builds(_envelope, json_values, st.binary(max_size=20)),
    st.binary(max_size=200),
)
v1_frames = st.lists(st.one_of(v1_text, v1_binary), min_size=1, max_size=4)
plain_frames = st.lists(
    st.one_of(st.text(max_size=300), st.binary(max_size=300)), min_size=1, max_size=4
)


@dataclass(frozen=True)
class RawFrame:
    fin: bool
    rsv: int
    opcode: int
    masked: bool
    payload: bytes

    def wire(self) -> bytes:
        first = (0x80 if self.fin else 0) | (self.rsv << 4) | self.opcode
        n = len(self.payload)
        mask_bit = 0x80 if self.masked else 0
        if n < 126:
            header = struct.pack("!BB", first, mask_bit | n)
        elif n < 1 << 16:
            header = struct.pack("!BBH", first, mask_bit | 126, n)
        else:
            header = struct.pack("!BBQ", first, mask_bit | 127, n)
        if not self.masked:
            return header + self.payload
        mask = os.urandom(4)
        return header + mask + apply_mask(self.payload, mask)


raw_payloads = st.one_of(
    st.binary(max_size=150),
    v1_text.map(lambda t: t.encode()),
    st.binary(min_size=1, max_size=4).map(lambda b: b'{"type":"' + b + b'"}'),  # bad UTF-8
    st.integers(0, 5000).map(lambda code: struct.pack("!H", code)),  # close payloads
    st.just(b"x" * (MAX_MESSAGE_BYTES + 1)),
)
# Mostly well-formed, so that some connections survive a few frames and state builds up.
raw_frames = st.builds(
    RawFrame,
    fin=st.sampled_from([True] * 5 + [False]),
    rsv=st.sampled_from([0] * 12 + [1, 2, 4, 7]),
    opcode=st.sampled_from([0x1] * 4 + [0x2] * 4 + [0x0, 0x8, 0x9, 0xA]) | st.integers(0, 15),
    masked=st.sampled_from([True] * 8 + [False]),
    payload=raw_payloads,
)


# -- fanout.v1 ------------------------------------------------------------------------------


@dataclass
class Tally:
    frames: int = 0
    answers: dict[str, int] = field(default_factory=dict)
    closes: list[int] = field(default_factory=list)

    def saw(self, kind: str) -> None:
        self.answers[kind] = self.answers.get(kind, 0) + 1


class V1Session:
    """One ``fanout.v1`` connection kept across examples (reopened if the hub closes it);
    after each fuzzed frame a publish with a fresh id to SYNC_ROOM, whose answer marks
    the end of the answers to that frame (answers come in order)."""

    def __init__(self, hub: HubProcess) -> None:
        self.hub = hub
        self.tally = Tally()
        self.ws: ClientConnection | None = None
        self.connections = contextlib.ExitStack()

    def __enter__(self) -> V1Session:
        return self

    def __exit__(self, *exc: object) -> None:
        self.connections.close()

    def _conn(self) -> ClientConnection:
        if self.ws is None:
            self.ws = self.connections.enter_context(
                connect(self.hub.ws, subprotocols=[SUBPROTOCOL], max_size=None, open_timeout=10)  # type: ignore[list-item]
            )
        return self.ws

    def send(self, frame: str | bytes) -> None:
        ws = self._conn()
        marker = f"sync-{uuid.uuid4().hex}"
        sync = json.dumps({"type": "publish", "room": SYNC_ROOM, "data": 0, "id": marker})
        self.tally.frames += 1
        try:
            ws.send(frame)
            ws.send(sync)
            answers = self._until(ws, marker)
        except ConnectionClosed as closed:
            code = None if closed.rcvd is None else closed.rcvd.code
            assert code in DOCUMENTED_CLOSES, (code, frame)
            self.tally.closes.append(code)
            self.ws = None
            return
        _check_v1_answers(frame, answers)
        for answer in answers:
            self.tally.saw(answer.get("code", answer["type"]))

    def _until(self, ws: ClientConnection, marker: str) -> list[dict[str, Any]]:
        answers: list[dict[str, Any]] = []
        while True:
            raw = ws.recv(timeout=10)
            answer = _parse_server_frame(raw)
            if answer.get("id") == marker and answer["type"] in ("ack", "error"):
                assert answer["type"] == "ack" or answer["code"] == "rate_limited", answer
                return answers
            if answer["type"] == "message":
                assert {"room", "epoch", "offset", "data"} <= answer.keys(), answer
                continue
            answers.append(answer)


def _parse_server_frame(raw: str | bytes) -> dict[str, Any]:
    if isinstance(raw, bytes):
        (length,) = struct.unpack_from("!I", raw)
        header: dict[str, Any] = json.loads(raw[4 : 4 + length])
        assert header["type"] == "message", header
        header["data"] = raw[4 + length :]
        return header
    answer: dict[str, Any] = json.loads(raw)
    assert isinstance(answer, dict), raw
    assert isinstance(answer.get("type"), str), raw
    if answer["type"] == "error":
        assert answer["code"] in ERROR_CODES, answer
        assert isinstance(answer["reason"], str), answer
        assert answer["reason"], answer
    return answer


def _check_v1_answers(frame: str | bytes, answers: list[dict[str, Any]]) -> None:
    """What the decoder says ``frame`` is decides what it must have got."""
    assert all(a["type"] in ("error", "ack", "subscribed", "gap") for a in answers), answers
    refusal: FrameError | None = None
    decoded: ClientFrame | None = None
    try:
        decoded = decode_text(frame) if isinstance(frame, str) else decode_binary(frame)
    except FrameError as exc:
        refusal = exc
    if refusal is not None:
        assert len(answers) == 1, (frame, answers)
        (error,) = answers
        assert error["type"] == "error", (frame, error)
        if error["code"] != "rate_limited":
            assert error["code"] == refusal.code.value, (frame, error, refusal)
        assert error.get("id") == refusal.frame_id, (frame, error, refusal)
        return
    assert decoded is not None
    # A subscribe: subscribed (and perhaps a gap after it), or one error.
    if isinstance(decoded, Subscribe) and answers and answers[0]["type"] == "subscribed":
        assert answers[0]["room"] == decoded.room
        assert all(a["type"] == "gap" for a in answers[1:]), answers
        return
    assert len(answers) <= 1, (frame, answers)
    if not answers:
        # Only a publish without id and an unsubscribe may go unanswered.
        assert not isinstance(decoded, Subscribe | Auth), (frame, decoded)
        assert not (isinstance(decoded, Publish) and decoded.id is not None), (frame, decoded)
        return
    (answer,) = answers
    frame_id = getattr(decoded, "id", None)
    assert answer.get("id") == frame_id, (frame, answer)
    if answer["type"] == "ack":
        assert isinstance(decoded, Publish), (frame, answer)
        assert answer["room"] == decoded.room, (frame, answer)
    else:
        assert answer["type"] == "error", (frame, answer)


class Session(Protocol):
    def send(self, frame: str | bytes) -> None: ...


def _fuzz(session: Session, frames: st.SearchStrategy[list[str | bytes]], examples: int) -> None:
    """Send ``examples`` hypothesis-drawn lists of frames over ``session``."""

    @settings(FUZZ, max_examples=examples)
    @given(frames=frames)
    def run(frames: list[str | bytes]) -> None:
        for frame in frames:
            session.send(frame)

    run()


# -- plain ----------------------------------------------------------------------------------


class PlainSession:
    """One plain connection in PLAIN_ROOM: every frame comes back to it as sent."""

    def __init__(self, hub: HubProcess) -> None:
        self.hub = hub
        self.tally = Tally()
        self.ws: ClientConnection | None = None
        self.connections = contextlib.ExitStack()

    def __enter__(self) -> PlainSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.connections.close()

    def send(self, frame: str | bytes) -> None:
        if self.ws is None:
            self.ws = self.connections.enter_context(
                connect(f"{self.hub.ws}/{PLAIN_ROOM}", max_size=None, open_timeout=10)
            )
        self.tally.frames += 1
        try:
            self.ws.send(frame)
            echo = self.ws.recv(timeout=10)
        except ConnectionClosed as closed:
            code = None if closed.rcvd is None else closed.rcvd.code
            assert code in DOCUMENTED_CLOSES, (code, frame)
            self.tally.closes.append(code)
            self.ws = None
            return
        assert echo == frame, (frame, echo)
        self.tally.saw("echo")


# -- raw frames -----------------------------------------------------------------------------


class RawSync:
    """A blocking WebSocket client that writes frames as given, flags and all."""

    def __init__(self, url: str) -> None:
        parsed = urlparse(url)
        self.sock = socket.create_connection((parsed.hostname, parsed.port), timeout=10)
        self.protocol = ClientProtocol(
            parse_uri(url),
            subprotocols=[SUBPROTOCOL],  # type: ignore[list-item]
            max_size=None,
        )
        self.protocol.send_request(self.protocol.connect())
        self.sock.sendall(b"".join(self.protocol.data_to_send()))
        self.backlog: list[object] = []
        while True:
            self.protocol.receive_data(self._recv())
            for event in self.protocol.events_received():
                if isinstance(event, Response):
                    assert event.status_code == 101, event
                    return
                self.backlog.append(event)

    def _recv(self) -> bytes:
        data = self.sock.recv(1 << 16)
        if not data:
            raise ConnectionError("closed by the server")
        return data

    def send(self, data: bytes) -> None:
        with contextlib.suppress(OSError):  # the server may have closed already
            self.sock.sendall(data)

    def alive_or_close(self, probe: bytes) -> tuple[bool, Close | None]:
        """Read until the pong answering ``probe`` (alive) or a close frame."""
        events, self.backlog = self.backlog, []
        deadline = time.monotonic() + 10
        while True:
            for event in [*events, *self.protocol.events_received()]:
                if isinstance(event, Frame) and event.opcode is Opcode.PONG:
                    if event.data == probe:
                        return True, None
                elif isinstance(event, Frame) and event.opcode is Opcode.CLOSE:
                    return False, self.protocol.close_rcvd
            events = []
            assert time.monotonic() < deadline, "neither a pong nor a close"
            try:
                data = self.sock.recv(1 << 16)
            except ConnectionResetError:
                return False, self.protocol.close_rcvd
            if not data:
                self.protocol.receive_eof()
                return False, self.protocol.close_rcvd
            self.protocol.receive_data(data)

    def close(self) -> None:
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.sock.close()


@dataclass
class RawTally:
    alive: int = 0
    closes: dict[int | None, int] = field(default_factory=dict)


def _raw_round(hub: HubProcess, frames: list[RawFrame], tally: RawTally) -> None:
    client = RawSync(hub.ws)
    try:
        probe = os.urandom(8)
        wire = b"".join(f.wire() for f in frames)
        client.send(wire + RawFrame(True, 0, 0x9, True, probe).wire())
        alive, close = client.alive_or_close(probe)
        if alive:
            tally.alive += 1
            return
        code = None if close is None else close.code
        tally.closes[code] = tally.closes.get(code, 0) + 1
        sent_close = any(f.opcode == 0x8 for f in frames)
        # Our own close frame is echoed with our code (any code then); else only the
        # documented ones. None: the server dropped the socket without a close frame,
        # which it may do only after answering a close of ours.
        assert sent_close or code in DOCUMENTED_CLOSES, (code, frames)
    finally:
        client.close()


def _fuzz_raw(hub: HubProcess, tally: RawTally, examples: int) -> None:
    @settings(FUZZ, max_examples=examples)
    @given(frames=st.lists(raw_frames, min_size=1, max_size=3))
    def run(frames: list[RawFrame]) -> None:
        _raw_round(hub, frames, tally)

    run()


# -- the tests -------------------------------------------------------------------------------


def _still_serves(hub: HubProcess) -> None:
    with connect(hub.ws, subprotocols=[SUBPROTOCOL], open_timeout=10) as ws:  # type: ignore[list-item]
        ws.send(json.dumps({"type": "subscribe", "room": "after-fuzz"}))
        assert json.loads(ws.recv(timeout=10))["type"] == "subscribed"
        msg_id = uuid.uuid4().hex
        ws.send(json.dumps({"type": "publish", "room": "after-fuzz", "data": 1, "id": msg_id}))
        answers = [json.loads(ws.recv(timeout=10)) for _ in range(2)]
        assert sorted(a["type"] for a in answers) == ["ack", "message"]


def _gauges(hub: HubProcess) -> dict[str, float]:
    text = httpx.get(hub.url + "/metrics", timeout=5).text
    values: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.split()
            values[name] = float(value)
    return values


def _wait_for_no_clients(hub: HubProcess) -> dict[str, float]:
    deadline = time.monotonic() + 10
    while True:
        gauges = _gauges(hub)
        if gauges["fanout_connections"] == 0 and gauges["fanout_rooms"] == 0:
            return gauges
        assert time.monotonic() < deadline, gauges
        time.sleep(0.05)


def test_every_fuzzed_v1_frame_gets_the_answer_the_decoder_promises(hub: HubProcess) -> None:
    with V1Session(hub) as session:
        _fuzz(session, v1_frames, 200)
    tally = session.tally
    print(f"\nv1 fuzz: {tally.frames} frames, answers {tally.answers}, closes {tally.closes}")
    # The fuzz reached past the decoder: real acks and subscriptions, and refusals.
    assert tally.answers.get("ack", 0) > 0
    assert tally.answers.get("subscribed", 0) > 0
    assert tally.answers.get("bad_frame", 0) > 0
    _still_serves(hub)
    _wait_for_no_clients(hub)


def test_every_fuzzed_plain_frame_is_echoed_to_its_room_as_sent(hub: HubProcess) -> None:
    with PlainSession(hub) as session:
        _fuzz(session, plain_frames, 100)
    print(f"\nplain fuzz: {session.tally.frames} frames, closes {session.tally.closes}")
    assert session.tally.answers.get("echo", 0) > 0
    _still_serves(hub)
    _wait_for_no_clients(hub)


def test_every_fuzzed_raw_frame_is_handled_or_closed_with_a_documented_code(
    hub: HubProcess,
) -> None:
    tally = RawTally()
    _fuzz_raw(hub, tally, 200)
    print(f"\nraw fuzz: {tally.alive} alive, closes {tally.closes}")
    assert tally.alive > 0
    assert 1002 in tally.closes
    _still_serves(hub)
    _wait_for_no_clients(hub)


def _bulk(hub: HubProcess, clients: int = 100) -> None:
    """Volume, so that a leak per connection or per frame would show: each client
    subscribes, publishes 5 x 15 KiB, and vanishes in the middle of a sixth frame
    (about 7.5 MiB through the hub per call)."""
    payload = b"b" * (15 * 1024)
    for i in range(clients):
        client = RawSync(hub.ws)
        try:
            room = f"bulk-{i % 50}"
            frames = [
                RawFrame(
                    True, 0, 0x1, True, json.dumps({"type": "subscribe", "room": room}).encode()
                )
            ]
            for n in range(5):
                header = json.dumps(
                    {"type": "publish", "room": room, "id": f"{i}-{n}-{uuid.uuid4().hex}"}
                )
                frames.append(RawFrame(True, 0, 0x2, True, _envelope(json.loads(header), payload)))
            wire = b"".join(f.wire() for f in frames)
            last = RawFrame(True, 0, 0x2, True, payload).wire()
            client.send(wire + last[: len(last) // 2])
            # Wait until the server has handled the five publishes (their acks), then go.
            acks = 0
            while acks < 5:
                client.protocol.receive_data(client._recv())
                for event in client.protocol.events_received():
                    if isinstance(event, Frame) and event.opcode is Opcode.TEXT:
                        acks += json.loads(bytes(event.data))["type"] == "ack"
        finally:
            client.close()


def test_rounds_of_fuzzing_leave_no_memory_behind_and_the_gauges_at_zero(
    hub: HubProcess,
) -> None:
    process = psutil.Process(hub.pid)

    def one_round() -> None:
        with V1Session(hub) as v1:
            _fuzz(v1, v1_frames, 60)
        with PlainSession(hub) as plain:
            _fuzz(plain, plain_frames, 30)
        _fuzz_raw(hub, RawTally(), 60)
        _bulk(hub)
        _wait_for_no_clients(hub)

    one_round()  # warm-up: rooms, histories and caches fill to their bounds
    before = process.memory_info().rss
    for _ in range(4):
        one_round()
    after = process.memory_info().rss
    print(f"\nhub RSS after warm-up {before / MiB:.1f} MiB, after 4 more rounds {after / MiB:.1f}")
    assert after - before < 20 * MiB, (before, after)
    gauges = _wait_for_no_clients(hub)
    assert gauges["fanout_outbox_bytes"] == 0
    _still_serves(hub)
