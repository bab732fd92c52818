"""Brokers store each room's history and deliver its live stream with offsets.

Optional backends are imported lazily, so the default install stays light.
"""

from fanout.brokers.base import Broker, BrokerListener, History, Published
from fanout.brokers.memory import MemoryBroker

__all__ = ["Broker", "BrokerListener", "History", "MemoryBroker", "Published"]
