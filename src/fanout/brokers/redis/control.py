"""Control events through Redis: one channel every node listens to, and the kept
revocations (a hash of ``user:<id>`` / ``jti:<id>`` -> until, pruned as read).

- ``PREFIX:control``    pub/sub channel (a shard channel on a cluster): a control
                        event's JSON per message
- ``PREFIX:revoked``    hash: revocation key -> unix seconds it lasts until
"""

from __future__ import annotations

import time

from fanout.brokers.redis.router import Router
from fanout.core.control import ControlEvent, ControlKind


def control_channel(prefix: str) -> bytes:
    return f"{prefix}:control".encode()


def _revoked(prefix: str) -> str:
    return f"{prefix}:revoked"


async def send(router: Router, prefix: str, event: ControlEvent) -> None:
    """Keep a revocation, then tell every node (raises what the link raises)."""
    if event.kind is ControlKind.REVOKE and event.until is not None:
        await router.call(_revoked(prefix), "HSET", _revoked(prefix), event.key, repr(event.until))
    await router.publish(control_channel(prefix), event.to_json())


async def kept_revocations(router: Router, prefix: str) -> list[ControlEvent]:
    """The revocations still in force; expired ones are removed from Redis."""
    revoked = _revoked(prefix)
    flat: list[bytes] = await router.call(revoked, "HGETALL", revoked)
    now = time.time()
    events: list[ControlEvent] = []
    expired: list[bytes] = []
    for raw_key, raw_until in zip(flat[::2], flat[1::2], strict=True):
        key, until = raw_key.decode(), float(raw_until)
        if until <= now:
            expired.append(raw_key)
            continue
        kind, _, name = key.partition(":")
        user, jti = (name, None) if kind == "user" else (None, name)
        events.append(ControlEvent(ControlKind.REVOKE, user=user, jti=jti, until=until))
    if expired:
        await router.call(revoked, "HDEL", revoked, *expired)
    return events
