"""The publish step: one Lua script call, the same for a node and for an emitter.

``RedisBroker.publish`` (a client's publish on any node) and ``Emitter.publish`` (an
application or task with no node) both call ``publish``, so a message gets its offset,
its place in the room's stream, its idempotency by ``id`` and its delivery to every
node in exactly one way. ``redis_errors`` turns what the command connection raises into
fanout's BrokerErrors, for both.
"""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Callable, Iterator

from fanout.brokers.redis import scripts
from fanout.brokers.redis.commands import Script
from fanout.brokers.redis.layout import RoomKeys, encode_data
from fanout.brokers.redis.options import RedisBrokerOptions, RedisTarget
from fanout.brokers.redis.resp import CommandError, LinkError
from fanout.brokers.redis.router import Router
from fanout.core.broker import Published, Retention
from fanout.protocol.envelope import Payload
from fanout.protocol.errors import BrokerRefused, BrokerTimeout, BrokerUnavailable

PUBLISH = Script(scripts.PUBLISH)


def new_epoch() -> str:
    """An epoch to propose for a room Redis does not know (scripts cannot make one)."""
    return secrets.token_hex(6)


async def publish(
    router: Router,
    options: RedisBrokerOptions,
    room: str,
    data: Payload,
    msg_id: str | None,
    retention: Retention | None = None,
) -> Published:
    """Store ``data`` in ``room``'s stream and publish it on the room's channel, in one
    atomic script; a ``msg_id`` the room still remembers returns its first offset
    (``duplicate``) and stores nothing. Raises what ``commands`` raises (see
    ``redis_errors``). Acked once a replica has it (``Router.run(replicated=True)``)."""
    keys = RoomKeys.of(options.key_prefix, room)
    kind, raw = encode_data(data)
    topology = router.topology or await router.current()
    args: list[str | bytes | int] = [
        new_epoch(),
        int(options.room_ttl_s * 1000),
        raw,
        kind,
        msg_id or "",
        _most(options.history_max_messages, retention),
        options.history_max_bytes,
        options.idempotency_max_ids if msg_id else 0,
        int(options.idempotency_ttl_s * 1000),
        keys.channel,
        age_ms(retention),
        "SPUBLISH" if topology.cluster else "PUBLISH",
    ]
    epoch, offset, duplicate = await router.run(PUBLISH, keys.all(), args, replicated=True)
    return Published(epoch.decode(), int(offset), duplicate=bool(duplicate))


def _most(limit: int, retention: Retention | None) -> int:
    if retention is None or retention.messages is None:
        return limit
    return min(retention.messages, limit)


def age_ms(retention: Retention | None) -> int:
    """A room's history age as the scripts take it (0: no age limit)."""
    if retention is None or retention.age_s is None:
        return 0
    return max(1, int(retention.age_s * 1000))


@contextlib.contextmanager
def redis_errors(
    what: str,
    target: RedisTarget,
    timeout_s: float,
    *,
    down: Callable[[str], None] | None = None,
) -> Iterator[None]:
    """Redis' failures inside the block raised as BrokerErrors, never a false success.

    A command unanswered in ``timeout_s`` is ``BrokerTimeout`` (it may still have run:
    retry by id), no connection is ``BrokerUnavailable``, an error reply (a wrong
    password, OOM) is ``BrokerRefused``. ``down`` is told why, when the failure means
    Redis is unusable (not for an error reply).
    """
    try:
        yield
    except TimeoutError as exc:
        if down is not None:
            down(f"redis {target} did not answer a {what} within {timeout_s} s")
        raise BrokerTimeout(f"redis did not answer the {what} within {timeout_s} s") from exc
    except (LinkError, OSError) as exc:
        if down is not None:
            down(f"redis {target} unreachable: {exc}")
        raise BrokerUnavailable(f"redis unavailable: {exc}") from exc
    except CommandError as exc:
        raise BrokerRefused(f"redis refused the {what}: {exc}") from exc
