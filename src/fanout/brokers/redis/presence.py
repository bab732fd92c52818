"""Presence in Redis: who is in a room, the same answer from every node.

The layout follows Centrifuge's Redis presence (a hash of members, a sorted set of their
expiries, and per-user keys to count distinct users), with expired entries counted out
at once and swept in bounded batches. Every call is one Lua script on one room's four
keys (``layout.PresenceKeys``, hash tag ``{room}``: one Cluster slot), on this store's
own pipelined command connection; ``presence_scripts`` describes the scripts.

Cost per call, for a room of n entries: ``join`` and ``leave`` O(log n), ``stats`` two
``ZCOUNT``s (O(log n)), each after sweeping at most ``SWEEP_BATCH`` expired entries;
``members`` reads the roster (``HGETALL``, natively: no Lua table of 10,000 entries).
``refresh`` writes a node's members with one script call
per room (per ``REFRESH_BATCH`` members), all pipelined: one round trip in all.

Redis' clock decides expiry (``TIME`` in the scripts), so nodes' clocks may differ.
Failures are BrokerErrors (``publish.redis_errors``): ``BrokerUnavailable`` when Redis
cannot be reached, ``BrokerTimeout`` when it does not answer within ``timeout_s``,
``BrokerRefused`` for an error reply. Nothing is retried here; the next call reconnects.

A ``refresh`` writes the members it is given: one that left (``leave``) after the hub
took its snapshot and before the refresh reached Redis comes back until ``ttl_s``
passes. The hub takes the snapshot right before calling ``refresh``, so the window is
one event-loop turn.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import orjson

from fanout.brokers.redis import presence_scripts
from fanout.brokers.redis.commands import Script
from fanout.brokers.redis.layout import PresenceKeys
from fanout.brokers.redis.options import RedisBrokerOptions
from fanout.brokers.redis.publish import redis_errors
from fanout.brokers.redis.router import Router
from fanout.core.presence import Member, PresenceLimits, PresenceStats
from fanout.protocol.errors import StateError

# Expired connections one call removes at most (a dead node's thousands go over calls;
# counts exclude them at once).
SWEEP_BATCH = 100
# Members per refresh script call: one call holds Redis well under a millisecond.
REFRESH_BATCH = 200

_WRITE = Script(presence_scripts.WRITE)
_LEAVE = Script(presence_scripts.LEAVE)
_STATS = Script(presence_scripts.STATS)
_SWEEP = Script(presence_scripts.SWEEP)
SCRIPTS = (_WRITE, _LEAVE, _STATS, _SWEEP)


def _member_args(member: Member) -> list[str | bytes | int]:
    """(conn, user argument, member JSON) as the write script reads them."""
    user = b"" if member.user is None else b"u" + member.user.encode()
    return [member.conn, user, orjson.dumps(member.to_json())]


class RedisPresence:
    """The presence store of nodes sharing a Redis (the broker's ``url``, ``key_prefix``
    and ``timeout_s``)."""

    def __init__(self, options: RedisBrokerOptions, limits: PresenceLimits) -> None:
        self.options = options
        self.limits = limits
        self._target = options.target
        self._ttl_ms = max(1, round(limits.ttl_s * 1000))
        self._commands: Router | None = None

    async def start(self) -> None:
        # Connects on the first call; a Redis that is down at start is an error then.
        self._commands = Router(self._target, self.options.timeout_s, scripts=SCRIPTS)

    async def close(self) -> None:
        if self._commands is not None:
            await self._commands.close()
            self._commands = None

    async def join(self, room: str, member: Member) -> None:
        with self._calling("presence join") as commands:
            args = [self._ttl_ms, SWEEP_BATCH, *_member_args(member)]
            await commands.run(_WRITE, self._keys(room), args)

    async def leave(self, room: str, conn: str) -> None:
        with self._calling("presence leave") as commands:
            await commands.run(_LEAVE, self._keys(room), [SWEEP_BATCH, conn])

    async def members(self, room: str) -> list[Member]:
        """Sweep, then the roster (HGETALL) without the entries expired by the sweep's
        time that it left for later: two round trips, the roster read by Redis natively."""
        keys = self._keys(room)
        with self._calling("presence members") as commands:
            now, roster = await asyncio.gather(
                commands.run(_SWEEP, keys, [SWEEP_BATCH]),
                commands.call(keys[0], "HGETALL", keys[0]),
            )
            expired = set(await commands.call(keys[1], "ZRANGE", keys[1], "-inf", now, "BYSCORE"))
        return [
            Member.from_json(orjson.loads(roster[i + 1]))
            for i in range(0, len(roster), 2)
            if roster[i] not in expired
        ]

    async def stats(self, room: str) -> PresenceStats:
        with self._calling("presence stats") as commands:
            connections, users = await commands.run(_STATS, self._keys(room), [SWEEP_BATCH])
        return PresenceStats(int(connections), int(users))

    async def refresh(self, entries: Mapping[str, Sequence[Member]]) -> None:
        """One write script call per room (per ``REFRESH_BATCH`` members), all sent at
        once on the one connection; raises the first failure after all have answered."""
        with self._calling("presence refresh") as commands:
            calls = []
            for room, members in entries.items():
                keys = self._keys(room)
                unique = list({m.conn: m for m in members}.values())  # the script's rule
                for start in range(0, len(unique), REFRESH_BATCH):
                    args: list[str | bytes | int] = [self._ttl_ms, SWEEP_BATCH]
                    for member in unique[start : start + REFRESH_BATCH]:
                        args += _member_args(member)
                    calls.append(commands.run(_WRITE, keys, args))
            results: list[Any] = await asyncio.gather(*calls, return_exceptions=True)
            for result in results:
                if isinstance(result, BaseException):
                    raise result

    @contextlib.contextmanager
    def _calling(self, what: str) -> Iterator[Router]:
        if self._commands is None:
            raise StateError(f"RedisPresence: {what} before start() or after close()")
        with redis_errors(what, self._target, self.options.timeout_s):
            yield self._commands

    def _keys(self, room: str) -> list[str]:
        return PresenceKeys.of(self.options.key_prefix, room).all()
