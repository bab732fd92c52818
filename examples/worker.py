"""A worker with no fanout node in it (a Celery task, a cron job, another service):
publishes through Redis into the rooms the hub's nodes serve.

    FANOUT_BROKER=redis://127.0.0.1:6379/0 .venv/bin/python examples/worker.py 42
"""

from __future__ import annotations

import sys

import fanout


def ship(order: int) -> None:
    settings = fanout.Settings.from_env()
    with fanout.SyncEmitter(settings.broker, settings=settings) as emitter:
        published = emitter.publish("orders", {"shipped": order}, id=f"shipped-{order}")
    print(f"epoch={published.epoch} offset={published.offset}")


if __name__ == "__main__":
    ship(int(sys.argv[1]))
