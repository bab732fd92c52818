"""Where a room lives in Redis, and how messages are encoded there.

Every key of a room shares the hash tag ``{room}``, so a room's keys and channel sit in
one Redis Cluster slot and one Lua script may touch them all:

- ``PREFIX:{room}:meta``   hash: ``epoch``, ``latest`` (offset counter), ``bytes`` retained
- ``PREFIX:{room}:log``    stream: entry ``<offset>-0`` with fields ``k`` (kind), ``d`` (data)
- ``PREFIX:{room}:ids``    hash: publish id -> offset (idempotency window)
- ``PREFIX:{room}:idt``    sorted set: publish id scored by first-seen time in ms
- ``PREFIX:{room}:ch``     pub/sub channel: ``epoch\\noffset\\nkind\\ndata`` per message;
                            an ephemeral one has neither: ``\\n\\nkind\\ndata``

Presence (``presence.py``) keeps four more keys per room, all expiring with the room's
last presence write:

- ``PREFIX:{room}:p:conns`` hash: connection id -> member JSON
- ``PREFIX:{room}:p:exp``   sorted set: connection id scored by its expiry (unix ms)
- ``PREFIX:{room}:p:users`` hash: user -> connections of that user in ``p:conns``
- ``PREFIX:{room}:p:uexp``  sorted set: user scored by its latest connection's expiry
"""

from __future__ import annotations

from dataclasses import dataclass

import orjson

from fanout.protocol.envelope import Message, Payload

KIND_JSON = b"j"
KIND_BYTES = b"b"


@dataclass(frozen=True, slots=True)
class RoomKeys:
    meta: str
    log: str
    ids: str
    idt: str
    channel: str

    @classmethod
    def of(cls, prefix: str, room: str) -> RoomKeys:
        base = f"{prefix}:{{{room}}}:"
        return cls(base + "meta", base + "log", base + "ids", base + "idt", base + "ch")

    def all(self) -> list[str]:
        """The keys, in the order the Lua scripts expect them."""
        return [self.meta, self.log, self.ids, self.idt]


@dataclass(frozen=True, slots=True)
class PresenceKeys:
    conns: str
    exp: str
    users: str
    uexp: str

    @classmethod
    def of(cls, prefix: str, room: str) -> PresenceKeys:
        base = f"{prefix}:{{{room}}}:p:"
        return cls(base + "conns", base + "exp", base + "users", base + "uexp")

    def all(self) -> list[str]:
        """The keys, in the order the presence scripts expect them."""
        return [self.conns, self.exp, self.users, self.uexp]


def channel_prefix_and_suffix(prefix: str) -> tuple[bytes, bytes]:
    """What surrounds the room name in a channel name (to find the room again)."""
    return f"{prefix}:{{".encode(), b"}:ch"


def encode_data(data: Payload) -> tuple[bytes, bytes]:
    """(kind, bytes): raw bytes for binary payloads, JSON text for everything else."""
    if isinstance(data, bytes | bytearray | memoryview):
        return KIND_BYTES, bytes(data)
    return KIND_JSON, orjson.dumps(data)


def decode_data(kind: bytes, raw: bytes) -> Payload:
    if kind == KIND_BYTES:
        return raw
    if kind == KIND_JSON:
        return orjson.loads(raw)
    raise ValueError(f"unknown payload kind {kind!r} in Redis")


def ephemeral_envelope(data: Payload) -> bytes:
    """A channel message with no epoch and no offset (``\n\nkind\ndata``): for the
    room's current subscribers only, never stored."""
    kind, raw = encode_data(data)
    return b"\n\n" + kind + b"\n" + raw


def parse_ephemeral(envelope: bytes) -> Payload | None:
    """The data of an ephemeral channel message, None if ``envelope`` is not one."""
    if not envelope.startswith(b"\n\n"):
        return None
    kind, raw = envelope[2:].split(b"\n", 1)
    return decode_data(kind, raw)


def parse_envelope(room: str, envelope: bytes) -> Message:
    """A channel message (``epoch\\noffset\\nkind\\ndata``) as a Message."""
    epoch, offset, kind, raw = envelope.split(b"\n", 3)
    return Message(room, epoch.decode(), int(offset), decode_data(kind, raw))


def parse_entry(room: str, epoch: str, entry: list[bytes]) -> Message:
    """A stream entry as returned by the history script: ``[offset, kind, data]``."""
    offset, kind, raw = entry
    return Message(room, epoch, int(offset), decode_data(kind, raw))
