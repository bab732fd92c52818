"""What the client hands to the application: events from ``Client.events()``, acks and
the answers to requests (presence, history).

Every event is a frozen dataclass; match on the type::

    async for event in client.events():
        match event:
            case Message(room=room, offset=offset, data=data): ...
            case Ephemeral(room=room, data=data): ...  # typing..., never replayed
            case Gap() | Subscribed(recovered=False): ...  # history is incomplete
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# Any JSON value, or ``bytes`` for a binary payload.
Data = Any


@dataclass(frozen=True, slots=True)
class Message:
    """A room's message, delivered once, in offset order."""

    room: str
    epoch: str
    offset: int
    data: Data


@dataclass(frozen=True, slots=True)
class Ephemeral:
    """An ephemeral message of ``room`` (typing indicators, cursors): not stored, no
    epoch nor offset. Only the room's subscribers of that moment get it; it is never
    replayed, and it counts in no position, gap or duplicate."""

    room: str
    data: Data


@dataclass(frozen=True, slots=True)
class Gap:
    """Offsets ``first``..``last`` (inclusive) of ``room`` cannot be delivered."""

    room: str
    epoch: str
    first: int
    last: int


@dataclass(frozen=True, slots=True)
class Subscribed:
    """The server confirmed a subscription; ``offset`` is the room's latest at that moment.

    ``recovered=False`` means earlier history is unknown to this client: a new epoch (the
    broker lost its data, e.g. a restarted memory broker) or a first subscribe. A ``Gap``
    follows when the epoch is the same but history no longer reaches back far enough.
    """

    room: str
    epoch: str
    offset: int
    recovered: bool


@dataclass(frozen=True, slots=True)
class SubscribeFailed:
    """The server refused to (re)subscribe ``room`` for good; the client forgot the room."""

    room: str
    code: str
    reason: str


@dataclass(frozen=True, slots=True)
class Unsubscribed:
    """The server ended this client's subscription to ``room`` (``reason`` says why); the
    client forgot the room and its position and does not resubscribe it."""

    room: str
    reason: str


@dataclass(frozen=True, slots=True)
class Member:
    """One connection present in a room: its user (None when anonymous), the
    connection's id (unique across nodes) and its node's, when it joined (Unix time in
    seconds; the hub sends milliseconds), and what the application shows about it."""

    user: str | None
    conn: str
    node: str
    joined_at: float
    info: Data = None


@dataclass(frozen=True, slots=True)
class Joined:
    """``member`` joined ``room`` (rooms whose presence events are on). Not a message:
    no offset, not replayed after a reconnect."""

    room: str
    member: Member


@dataclass(frozen=True, slots=True)
class Left:
    """``member`` left ``room`` (rooms whose presence events are on)."""

    room: str
    member: Member


@dataclass(frozen=True, slots=True)
class Direct:
    """A frame the server application sent to this connection only (``Consumer.send``)."""

    data: Data


@dataclass(frozen=True, slots=True)
class Connected:
    """A connection is open; ``count`` is how many this client has opened so far."""

    url: str
    count: int


@dataclass(frozen=True, slots=True)
class Disconnected:
    """An open connection ended with close ``code`` (1006: no close frame, e.g. cut).

    ``retry_in`` is the delay before the next attempt, or None when the client stops.
    """

    code: int | None
    reason: str
    retry_in: float | None


@dataclass(frozen=True, slots=True)
class ConnectFailed:
    """Connection attempt ``attempt`` (counted since the last success) failed."""

    attempt: int
    error: str
    retry_in: float | None


Event = (
    Message
    | Ephemeral
    | Gap
    | Subscribed
    | SubscribeFailed
    | Unsubscribed
    | Joined
    | Left
    | Direct
    | Connected
    | Disconnected
    | ConnectFailed
)


@dataclass(frozen=True, slots=True)
class Ack:
    """The hub stored publish ``id`` at ``offset`` of ``room`` in ``epoch``."""

    id: str
    room: str
    epoch: str
    offset: int


@dataclass(frozen=True, slots=True)
class EphemeralAck:
    """The hub passed ephemeral publish ``id`` on to ``room``'s current subscribers
    (nothing stored, so no epoch nor offset)."""

    id: str
    room: str


@dataclass(frozen=True, slots=True)
class Presence:
    """Who is in ``room`` now: one ``Member`` per connection (a user may have several)."""

    room: str
    members: tuple[Member, ...]


@dataclass(frozen=True, slots=True)
class PresenceStats:
    """How many connections and distinct users are in ``room`` now."""

    room: str
    connections: int
    users: int


@dataclass(frozen=True, slots=True)
class History:
    """Messages of ``room`` read on demand (``Client.history``), in offset order, with
    binary data as bytes. ``latest`` is the room's latest offset, ``first_kept`` the
    oldest it still keeps; offsets are only comparable within ``epoch``."""

    room: str
    epoch: str
    latest: int
    first_kept: int
    messages: tuple[Message, ...]
