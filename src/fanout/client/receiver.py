"""What each frame from the hub does: it goes to the bookkeeping it concerns (rooms,
subscribes, publishes, token refreshes, requests), and what the application should see
comes back as events. No I/O here; a retryable error is handed to the sender to try
again later.
"""

from __future__ import annotations

import logging

from fanout.client import wire
from fanout.client.auth import TokenKeeper
from fanout.client.ephemeral import EphemeralSends
from fanout.client.errors import RETRYABLE_CODES, Rejected
from fanout.client.events import (
    Ack,
    Ephemeral,
    EphemeralAck,
    Event,
    Gap,
    Joined,
    Left,
    Message,
    Subscribed,
    SubscribeFailed,
    Unsubscribed,
)
from fanout.client.publishes import PendingPublishes
from fanout.client.requests import PendingRequests
from fanout.client.sender import Sender
from fanout.client.subscriptions import Subscriptions
from fanout.protocol.codes import ErrorCode

log = logging.getLogger("fanout.client")


class Receiver:
    def __init__(
        self,
        *,
        subs: Subscriptions,
        publishes: PendingPublishes,
        auth: TokenKeeper,
        sender: Sender,
        requests: PendingRequests,
        ephemeral: EphemeralSends | None = None,
    ) -> None:
        self._subs = subs
        self._ephemeral = EphemeralSends() if ephemeral is None else ephemeral
        self._rooms = subs.tracker
        self._publishes = publishes
        self._requests = requests
        self._auth = auth
        self._sender = sender

    def received(self, raw: str | bytes) -> list[Event]:
        """The events for the application from one received frame, in order."""
        try:
            frame = wire.decode(raw)
        except wire.MalformedFrame as exc:
            # Dropped, not fatal: if it was a message, the next one reveals the hole; if
            # it answered a request, that request fails now rather than at its timeout.
            log.warning("ignoring a malformed frame from the hub: %s", exc)
            self._requests.malformed(exc.id, str(exc))
            return []
        if isinstance(frame, Message):
            return self._rooms.message(frame)
        if isinstance(frame, Ephemeral):
            # Outside the offsets: no position, gap or duplicate to check.
            return [frame] if frame.room in self._subs else []
        if isinstance(frame, Subscribed):
            self._subs.personal(frame)
            events = self._rooms.subscribed(frame)
            self._subs.answered(frame)
            return events
        if isinstance(frame, Joined | Left):
            return [frame] if frame.room in self._subs else []
        if isinstance(frame, Unsubscribed):
            return self._unsubscribed(frame)
        if isinstance(frame, wire.Reply):
            self._requests.answered(frame)
            return []
        if isinstance(frame, Gap):
            return self._rooms.gap(frame)
        if isinstance(frame, Ack):
            self._publishes.resolve(frame)
            return []
        if isinstance(frame, EphemeralAck):
            self._ephemeral.acked(frame)
            return []
        if isinstance(frame, wire.Authorized):
            self._auth.authorized(frame)
            return []
        if isinstance(frame, wire.ErrorReply):
            return self._error(frame)
        return [frame]

    def _unsubscribed(self, frame: Unsubscribed) -> list[Event]:
        room = frame.room
        if room not in self._subs or self._subs.awaiting_answer(room):
            # Unknown; or about the subscription before the subscribe still out, which
            # the hub handled after this: that subscribe's answer decides.
            return []
        error = Rejected("unsubscribed", frame.reason or "unsubscribed by the hub", room=room)
        self._subs.forget(room, error)
        return [frame]

    def _error(self, frame: wire.ErrorReply) -> list[Event]:
        if (
            self._auth.refused(frame)
            or self._requests.refused(frame)
            or self._ephemeral.refused(frame)
        ):
            return []
        if frame.id is not None:
            pending = self._publishes.get(frame.id)
            if pending is None:
                return []  # a late answer to a publish already settled
            if frame.code in RETRYABLE_CODES:
                self._sender.retry_publish_later(pending)
            else:
                error = Rejected(frame.code, frame.reason, room=pending.room, id=pending.id)
                self._publishes.fail(pending, error)
            return []
        if frame.code == ErrorCode.NOT_SUBSCRIBED:
            return []  # an unsubscribe that crossed a subscribe the hub had refused
        room = self._subs.refused()
        if room is None:
            log.warning("error from the hub: %s: %s", frame.code, frame.reason)
            return []
        if room not in self._subs:
            return []  # unsubscribed meanwhile
        if frame.code in RETRYABLE_CODES:
            self._sender.retry_subscribe_later(room)
            return []
        self._subs.forget(room, Rejected(frame.code, frame.reason, room=room))
        return [SubscribeFailed(room, frame.code, frame.reason)]
