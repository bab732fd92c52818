"""The presence port: who is in a room, the same answer from every node.

It lives here, next to the broker port, with the hub that uses it; ``fanout.brokers``
holds the implementations (``memory_presence`` for one process, ``redis.presence`` for
many nodes).

Every entry expires ``ttl_s`` after it was last written. Each node calls ``refresh``
every ``refresh_s`` with all its local members, which writes them again; the members of
a node that died are not refreshed and drop out of ``members`` and ``stats`` by
themselves within ``ttl_s`` (the hub uses ``ttl_s = 2 * refresh_s``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol


@dataclass(frozen=True, slots=True, kw_only=True)
class PresenceLimits:
    """How long an entry lives without being refreshed. Defaults are in ``fanout.settings``
    (``presence_refresh_s``; ``ttl_s`` is twice that)."""

    ttl_s: float

    def __post_init__(self) -> None:
        if not self.ttl_s > 0:
            raise ValueError("presence ttl_s must be > 0")


@dataclass(frozen=True, slots=True)
class Member:
    """One connection in a room.

    ``conn`` is unique across nodes (``"<node>-<n>"``); ``user`` is None for an anonymous
    connection; ``info`` is the public part the application chose to show, JSON-serialisable.
    """

    conn: str
    user: str | None
    node: str
    joined_at_ms: int
    info: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """The member as clients see it (``joined_at`` in unix milliseconds)."""
        return {
            "user": self.user,
            "conn": self.conn,
            "node": self.node,
            "joined_at": self.joined_at_ms,
            "info": dict(self.info),
        }

    @classmethod
    def from_json(cls, value: Mapping[str, Any]) -> Member:
        """The inverse of ``to_json``; ValueError for anything else."""
        try:
            user = value["user"]
            member = cls(
                conn=str(value["conn"]),
                user=None if user is None else str(user),
                node=str(value["node"]),
                joined_at_ms=int(value["joined_at"]),
                info=dict(value["info"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"not a presence member: {exc!r}") from exc
        return member


class PresenceStats(NamedTuple):
    """Live connections in a room, and distinct users among them (anonymous connections
    count as connections only)."""

    connections: int
    users: int


class Presence(Protocol):
    """Stores who is in which room, for every node.

    Contract (tests/brokers/test_presence_contract.py holds every implementation to it):
    - ``join`` adds or replaces the entry of ``member.conn`` in ``room``; ``leave``
      removes it (an unknown ``conn`` is no error).
    - ``members`` and ``stats`` answer from live entries only: an entry not written by
      ``join`` or ``refresh`` for ``ttl_s`` is gone from both.
    - ``stats`` counts a user once however many connections it has.
    - ``join``, ``leave`` and ``stats`` cost does not grow with the room's size; only
      ``members`` reads the whole roster.
    - Failures are ``BrokerError``s (``BrokerUnavailable``, ``BrokerTimeout``), never a
      wrong answer.
    """

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def join(self, room: str, member: Member) -> None: ...

    async def leave(self, room: str, conn: str) -> None: ...

    async def members(self, room: str) -> list[Member]:
        """The room's live members, in no particular order."""

    async def stats(self, room: str) -> PresenceStats: ...

    async def refresh(self, entries: Mapping[str, Sequence[Member]]) -> None:
        """Write again every member this node has, by room, so they live ``ttl_s`` more.

        Called every ``refresh_s`` with all the node's local members; members missing
        from ``entries`` are not removed (``leave`` does that) but expire unless another
        call writes them.
        """
