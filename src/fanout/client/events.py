"""What the client hands to the application: events from ``Client.events()`` and acks.

Every event is a frozen dataclass; match on the type::

    async for event in client.events():
        match event:
            case Message(room=room, offset=offset, data=data): ...
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
    Message | Gap | Subscribed | SubscribeFailed | Direct | Connected | Disconnected | ConnectFailed
)


@dataclass(frozen=True, slots=True)
class Ack:
    """The hub stored publish ``id`` at ``offset`` of ``room`` in ``epoch``."""

    id: str
    room: str
    epoch: str
    offset: int
