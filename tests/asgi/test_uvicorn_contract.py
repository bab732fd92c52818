"""What fanout's transport edge uses of uvicorn's private protocol classes.

``FanoutWebSocketProtocol`` and ``FanoutHttpProtocol`` subclass uvicorn's sans-I/O
WebSocket protocol and its httptools HTTP protocol, which are not public API; uvicorn
is pinned to the tested minor version in pyproject.toml. When it is upgraded, this test
names whatever the subclasses rely on that changed, before any behaviour test fails
for a reason that is hard to see.
"""

from __future__ import annotations

import inspect
import re
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.server import ServerProtocol

from fanout.asgi.direct import FanoutWebSocketProtocol, at_frame_start, frame_size_limit
from fanout.asgi.http import FanoutHttpProtocol
from tests.support.protocols import uvicorn_protocol
from tests.support.rawclient import masked_frame

ROOT = Path(__file__).parents[2]

# Methods overridden or called, with their parameters (self excluded).
WEBSOCKET_METHODS: dict[str, list[str]] = {
    "pause_writing": [],
    "resume_writing": [],
    "data_received": ["data"],
    "receive": [],
    "send": ["message"],
    "connection_lost": ["exc"],
    "handle_ping": [],
    "handle_connect": ["event"],
    "handle_close": ["event"],
    "shutdown": [],
    "stop_keepalive": [],
    "send_receive_event_to_app": [],
}
# Attributes read or written, set by uvicorn's __init__.
WEBSOCKET_ATTRIBUTES = [
    "transport",
    "conn",
    "queue",
    "loop",
    "close_sent",
    "close_timer",
    "disconnected",
    "handshake_complete",
    "read_paused",
    "writable",
]
HTTP_METHODS: dict[str, list[str]] = {
    "connection_made": ["transport"],
    "connection_lost": ["exc"],
    "data_received": ["data"],
    "on_message_begin": [],
    "on_headers_complete": [],
    "on_message_complete": [],
    "send_400_response": ["msg"],
    "on_url": ["url"],
}
# ``url`` is set by the parser callback ``on_url`` (checked below), not by __init__.
HTTP_ATTRIBUTES = ["transport", "loop", "headers", "config"]


def _parameters(method: Callable[..., Any]) -> list[str]:
    return [p for p in inspect.signature(method).parameters if p != "self"]


def test_uvicorn_is_pinned_to_the_tested_minor_version() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pins = [d for d in project["dependencies"] if d.startswith("uvicorn")]
    minor = ".".join(uvicorn.__version__.split(".")[:2])
    assert pins == [f"uvicorn>={minor},<0.{int(minor.split('.')[1]) + 1}"]


def test_the_websocket_protocol_still_has_every_method_fanout_overrides_or_calls() -> None:
    changed = {
        name: _parameters(getattr(WebSocketsSansIOProtocol, name, lambda: None))
        for name in WEBSOCKET_METHODS
    }
    assert changed == WEBSOCKET_METHODS
    assert inspect.iscoroutinefunction(WebSocketsSansIOProtocol.receive)
    assert inspect.iscoroutinefunction(WebSocketsSansIOProtocol.send)


def test_the_websocket_protocol_still_sets_every_attribute_fanout_uses() -> None:
    proto: Any = uvicorn_protocol(FanoutWebSocketProtocol)
    assert [a for a in WEBSOCKET_ATTRIBUTES if not hasattr(proto, a)] == []
    assert isinstance(proto.conn, ServerProtocol)
    # fanout replaces uvicorn's queue and writable Event with lighter objects
    # (direct._Inbox, LazyEvent): uvicorn must use only what those have.
    source = inspect.getsource(WebSocketsSansIOProtocol)
    assert set(re.findall(r"self\.queue\.(\w+)", source)) <= {"put_nowait", "get", "empty", "qsize"}
    assert set(re.findall(r"self\.writable\.(\w+)", source)) <= {"set", "clear", "wait", "is_set"}
    # The slots fanout declares are attributes uvicorn's __init__ sets, or hold the
    # value of one that fanout watches through a property (_close_sent: close_sent).
    init = inspect.getsource(WebSocketsSansIOProtocol.__init__)
    for name in FanoutWebSocketProtocol.__slots__:
        assert f"self.{name.removeprefix('_')}" in init, name
    for name in ("close_sent", "disconnected"):
        assert isinstance(getattr(FanoutWebSocketProtocol, name), property), name
    assert proto.close_sent is False
    assert proto.read_paused is False
    for name in ("send_close", "data_to_send", "extensions"):
        assert hasattr(proto.conn, name), f"websockets' ServerProtocol lost {name}"


def test_the_http_protocol_still_has_every_hook_fanout_overrides() -> None:
    changed = {
        name: _parameters(getattr(HttpToolsProtocol, name, lambda: None)) for name in HTTP_METHODS
    }
    assert changed == HTTP_METHODS
    proto: Any = uvicorn_protocol(FanoutHttpProtocol)
    assert [a for a in HTTP_ATTRIBUTES if not hasattr(proto, a)] == []


def test_websockets_parser_is_seen_waiting_for_a_frame_and_not_within_one() -> None:
    # The direct transport reads simple frames itself only while websockets' parser
    # waits for the first byte of a frame; this names a websockets whose parser moved.
    protocol = ServerProtocol(max_size=1 << 20)  # its handshake, then frames
    assert not at_frame_start(protocol)
    protocol.receive_data(
        b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    [request] = protocol.events_received()
    protocol.send_response(protocol.accept(request))  # type: ignore[arg-type]
    assert at_frame_start(protocol)
    frame = masked_frame(0x1, b"hello")
    for cut in range(1, len(frame)):
        protocol.receive_data(frame[:cut])
        assert not at_frame_start(protocol), cut
        protocol.receive_data(frame[cut:])
        assert at_frame_start(protocol)
    protocol.receive_data(bytes([0x01, 0x81]) + b"mask" + b"a")  # a first fragment
    assert not at_frame_start(protocol)
    protocol.receive_data(masked_frame(0x0, b"b"))  # its last one
    assert at_frame_start(protocol)
    protocol.receive_data(masked_frame(0x8, b"\x03\xe8"))  # a close: parsing stops
    assert not at_frame_start(protocol)
    assert frame_size_limit(protocol) == 1 << 20
