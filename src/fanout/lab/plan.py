"""Who is who in a run: receivers, senders and churners, their rooms and processes."""

from __future__ import annotations

from dataclasses import dataclass, field

from fanout.lab.config import BenchConfig


@dataclass(frozen=True)
class Receiver:
    id: int
    kind: str  # "stable" | "slow" | "churn"
    room: str


@dataclass(frozen=True)
class Sender:
    id: int
    room: str


@dataclass(frozen=True)
class Assignment:
    """What one generator process drives."""

    process: int
    receivers: tuple[Receiver, ...]
    senders: tuple[Sender, ...]
    # Every sender of the run by room: a receiver expects all of its room's senders.
    senders_by_room: dict[str, tuple[int, ...]] = field(default_factory=dict)


def slow_ids(receivers: int, slow: int) -> set[int]:
    """Spread slow receivers evenly over the ids (hence over rooms and processes)."""
    if slow <= 0:
        return set()
    return {i * receivers // slow for i in range(slow)}


def plan(config: BenchConfig) -> list[Assignment]:
    slow = slow_ids(config.receivers, config.slow)
    receivers = [
        Receiver(i, "slow" if i in slow else "stable", config.room_name(i))
        for i in range(config.receivers)
    ]
    receivers += [
        Receiver(config.receivers + k, "churn", config.room_name(k)) for k in range(config.churn)
    ]
    senders = [Sender(j, config.room_name(j)) for j in range(config.senders)]
    by_room: dict[str, list[int]] = {}
    for s in senders:
        by_room.setdefault(s.room, []).append(s.id)
    frozen = {room: tuple(ids) for room, ids in by_room.items()}
    p = config.processes
    return [
        Assignment(
            process=k,
            receivers=tuple(r for r in receivers if r.id % p == k),
            senders=tuple(s for s in senders if s.id % p == k),
            senders_by_room=frozen,
        )
        for k in range(p)
    ]
