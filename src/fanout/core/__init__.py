"""The hub's core: bounded outboxes, connections, rooms, fan-out. asyncio only."""
