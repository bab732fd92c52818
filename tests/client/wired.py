"""The client's receiver and what it feeds, wired as the client wires them, with no
connection: bookkeeping tests feed it frames as the hub sends them."""

from __future__ import annotations

import orjson

from fanout.backoff import Backoff
from fanout.client.auth import TokenKeeper
from fanout.client.buffer import EventBuffer
from fanout.client.ephemeral import EphemeralSends
from fanout.client.events import Event
from fanout.client.publishes import PendingPublishes
from fanout.client.receiver import Receiver
from fanout.client.requests import PendingRequests
from fanout.client.sender import Sender
from fanout.client.subscriptions import Subscriptions
from fanout.protocol.envelope import OutFrame


class Wired:
    def __init__(self) -> None:
        self.subs = Subscriptions()
        self.requests = PendingRequests()
        self.ephemeral = EphemeralSends()
        publishes = PendingPublishes()
        auth = TokenKeeper(None, None)
        sender = Sender(
            subs=self.subs,
            publishes=publishes,
            requests=self.requests,
            auth=auth,
            events=EventBuffer(10),
            backoff=Backoff(0.1, 1.0),
            publish_timeout_s=5.0,
        )
        self.receiver = Receiver(
            subs=self.subs,
            publishes=publishes,
            auth=auth,
            sender=sender,
            requests=self.requests,
            ephemeral=self.ephemeral,
        )

    def feed(self, *frames: dict[str, object]) -> list[Event]:
        events: list[Event] = []
        for frame in frames:
            events += self.receiver.received(orjson.dumps(frame).decode())
        return events

    def feed_frame(self, frame: OutFrame) -> list[Event]:
        """A frame the hub's own encoders made."""
        raw = frame.payload.decode() if frame.is_text else frame.payload
        return self.receiver.received(raw)
