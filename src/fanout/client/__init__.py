"""An asyncio client for the fanout hub: reconnects with backoff and jitter, resumes
every room from its last offset, retries publishes by ``id`` until acked."""

from fanout.backoff import Backoff
from fanout.client.client import Client, ClientState, ClientStats
from fanout.client.errors import (
    ClientClosed,
    ClientError,
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
    Message,
    Subscribed,
    SubscribeFailed,
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
    "Message",
    "Refused",
    "Rejected",
    "SubscribeFailed",
    "Subscribed",
    "Unreachable",
]
