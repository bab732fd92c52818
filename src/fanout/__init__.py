"""fanout: a real-time WebSocket hub on FastAPI, and a lab that proves what breaks.

What an application uses is importable from here::

    import fanout

    hub = fanout.Hub(fanout.Settings(), consumer=MyConsumer, authenticate=current_user)
    app.include_router(hub.router, prefix="/rt")
    await hub.publish("room", {"hello": "world"}, id="greeting-1")

Names are imported on first use, so ``import fanout`` stays light (the Redis emitter's
code, the web framework and the lab load only when asked for).
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from fanout.asgi.app import create_app as create_app
    from fanout.asgi.embed import Hub as Hub
    from fanout.asgi.emitters import Emitter as Emitter
    from fanout.asgi.emitters import SyncEmitter as SyncEmitter
    from fanout.auth.identity import Identity as Identity
    from fanout.core.broker import Published as Published
    from fanout.core.consumer import ConnectionInfo as ConnectionInfo
    from fanout.core.consumer import Consumer as Consumer
    from fanout.protocol.envelope import Payload as Payload
    from fanout.protocol.errors import BrokerError as BrokerError
    from fanout.protocol.errors import ConfigError as ConfigError
    from fanout.protocol.errors import FanoutError as FanoutError
    from fanout.protocol.errors import InvalidPublish as InvalidPublish
    from fanout.settings import Settings as Settings

_EXPORTS = {
    "create_app": "fanout.asgi.app",
    "Hub": "fanout.asgi.embed",
    "Identity": "fanout.auth.identity",
    "Emitter": "fanout.asgi.emitters",
    "SyncEmitter": "fanout.asgi.emitters",
    "Published": "fanout.core.broker",
    "ConnectionInfo": "fanout.core.consumer",
    "Consumer": "fanout.core.consumer",
    "Payload": "fanout.protocol.envelope",
    "BrokerError": "fanout.protocol.errors",
    "ConfigError": "fanout.protocol.errors",
    "FanoutError": "fanout.protocol.errors",
    "InvalidPublish": "fanout.protocol.errors",
    "Settings": "fanout.settings",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'fanout' has no attribute {name!r}")
    return getattr(import_module(module), name)
