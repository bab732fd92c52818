"""The broker port: what the hub needs from any storage and delivery backend.

It lives here, with the hub that uses it; ``fanout.brokers`` holds the implementations.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from fanout.core.control import ControlEvent
from fanout.protocol.envelope import Message, Payload


@dataclass(frozen=True, slots=True)
class Retention:
    """A room's own history limits (room options), within the broker's: at most
    ``messages`` kept, none older than ``age_s`` seconds. None: the broker's limit."""

    messages: int | None = None
    age_s: float | None = None


@dataclass(frozen=True, slots=True)
class Published:
    """Where a publish landed. ``duplicate`` is true for a retry of a known ``id``."""

    epoch: str
    offset: int
    duplicate: bool = False


@dataclass(frozen=True, slots=True)
class History:
    """A room's retained messages after some offset.

    ``first_kept`` is the lowest offset history still holds (``latest + 1`` when it holds
    none); ``messages`` are the retained ones after the requested offset, in order.
    """

    epoch: str
    latest: int
    first_kept: int
    messages: list[Message]


class BrokerListener(Protocol):
    """Receives a room's live stream. Per room, calls come in offset order."""

    def on_message(self, message: Message) -> None:
        """The next message of a room the listener attached to."""

    def on_reset(self, room: str, epoch: str, latest: int) -> None:
        """The room's history was lost: a new epoch begins after ``latest``."""

    def on_gap(self, room: str, epoch: str, first: int, last: int) -> None:
        """Offsets ``first..last`` of the room cannot be delivered (no longer retained);
        the stream goes on after ``last``."""

    def on_control(self, event: ControlEvent) -> None:
        """A control event some node sent (this one included)."""

    def on_ephemeral(self, room: str, data: Payload) -> None:
        """A message for the room's current subscribers only: no offset, not stored."""


class Broker(Protocol):
    """Stores rooms' messages with offsets and streams them to one listener per node.

    Contract (the shared suite in tests/brokers holds every implementation to it):
    - ``publish`` returns the message's offset, 1, 2, 3, ... per room and epoch;
      a retried ``msg_id`` returns the first offset with ``duplicate=True``.
    - After ``attach(room)``, the listener gets every later message of that room,
      in offset order, each once, or is told what it cannot get: ``on_gap`` for a
      range no longer retained, ``on_reset`` for a new epoch.
    - ``history(room, after)`` returns what is retained after ``after``; a room that
      never had a message is at offset 0.
    """

    @property
    def errors(self) -> Mapping[str, int]:
        """Failed calls by kind (``unavailable``, ``timeout``, ``refused``), for /metrics."""

    @property
    def history_bytes(self) -> int:
        """Bytes of room history (messages as sent) this process holds (0 where history lives in the
        broker's own servers), for /metrics: a bounded buffer a lab tells from a leak."""

    async def start(self, listener: BrokerListener) -> None: ...

    async def close(self) -> None: ...

    async def publish(
        self,
        room: str,
        data: Payload,
        *,
        msg_id: str | None = None,
        retention: Retention | None = None,
    ) -> Published:
        """Store and deliver; ``retention``: the room's own history limits."""

    async def publish_ephemeral(self, room: str, data: Payload) -> None:
        """Deliver to the room's current subscribers on every node, without an offset
        and without storing it (``on_ephemeral``); BrokerError if not sent."""

    async def history(
        self,
        room: str,
        after: int | None,
        *,
        limit: int | None = None,
        retention: Retention | None = None,
    ) -> History:
        """Epoch, latest offset, and the retained messages after ``after`` (none if None),
        at most ``limit`` of them (the first ones); none older than the room's
        ``retention`` allows."""

    async def attach(self, room: str) -> None:
        """Start streaming ``room`` to the listener (a local member joined)."""

    async def detach(self, room: str) -> None:
        """Stop streaming ``room`` (its last local member left)."""

    async def health(self) -> str | None:
        """None when usable, else the reason it is not."""

    async def control(self, event: ControlEvent) -> None:
        """Deliver ``event`` to every node's listener (this one's included), and keep a
        revocation until it expires: a broker shared by nodes hands its listener every
        kept revocation again whenever it (re)links. BrokerError if not sent."""
