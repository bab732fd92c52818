"""An asyncio client for the fanout hub: reconnects with backoff and jitter, resumes
every room (the personal room ``@<user>`` included) from its last offset, retries
publishes by ``id`` until acked, sends ephemeral messages, asks for presence and history."""

from fanout.backoff import Backoff
from fanout.client.client import Client
from fanout.client.errors import (
    ClientClosed,
    ClientError,
    Dropped,
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
    Ephemeral,
    EphemeralAck,
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
from fanout.client.state import ClientState, ClientStats

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
    "Dropped",
    "Ephemeral",
    "EphemeralAck",
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
