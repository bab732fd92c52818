"""An asyncio client for the fanout hub: reconnects with backoff and jitter, resumes
every room (the personal room ``@<user>`` included) from its last offset, retries
publishes by ``id`` until acked, asks for presence and history."""

from fanout.backoff import Backoff
from fanout.client.client import Client, ClientState, ClientStats
from fanout.client.errors import (
    ClientClosed,
    ClientError,
    Kicked,
    MalformedAnswer,
    Refused,
    Rejected,
    Unreachable,
)
from fanout.client.events import (
    Ack,
    Connected,
    ConnectFailed,
    Direct,
    Disconnected,
    Event,
    Gap,
    History,
    Joined,
    Left,
    Member,
    Message,
    Presence,
    PresenceStats,
    Subscribed,
    SubscribeFailed,
    Unsubscribed,
)

__all__ = [
    "Ack",
    "Backoff",
    "Client",
    "ClientClosed",
    "ClientError",
    "ClientState",
    "ClientStats",
    "ConnectFailed",
    "Connected",
    "Direct",
    "Disconnected",
    "Event",
    "Gap",
    "History",
    "Joined",
    "Kicked",
    "Left",
    "MalformedAnswer",
    "Member",
    "Message",
    "Presence",
    "PresenceStats",
    "Refused",
    "Rejected",
    "SubscribeFailed",
    "Subscribed",
    "Unreachable",
    "Unsubscribed",
]
