"""``create_app(settings)``: a FastAPI app serving one hub alone (what ``fanout serve`` runs).

To add fanout to an application of your own, use ``fanout.Hub`` (``fanout.asgi.embed``).
"""

from __future__ import annotations

from fastapi import FastAPI

from fanout.asgi.embed import Authenticate, Hub
from fanout.asgi.endpoint import ConsumerFactory
from fanout.core.broker import Broker
from fanout.settings import Settings


def create_app(
    settings: Settings | None = None,
    *,
    consumer: ConsumerFactory | None = None,
    authenticate: Authenticate | None = None,
    broker: Broker | None = None,
) -> FastAPI:
    """A FastAPI app serving one hub; ConfigError if the settings cannot work.

    ``consumer`` builds each connection's handlers (default: the base ``Consumer``,
    which broadcasts plain frames and allows every ``fanout.v1`` request);
    ``authenticate`` is your application's own authentication (see ``fanout.Hub``)."""
    hub = Hub(settings, consumer=consumer, authenticate=authenticate, broker=broker)
    # The app is the whole process: freeze the start-up heap (docs/decisions.md).
    hub.freeze_heap = True
    return hub.app
