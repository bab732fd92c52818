"""Publishers and subscribers on real fanout nodes while Redis is disrupted, and the
check that every acked message was delivered once, in order, or announced as lost."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

import httpx

from tests.support.servers import HubProcess
from tests.support.wsclient import connect_v1, recv_json, send_json

API_KEY = "cluster-test-api-key-0123456789"
# Fast fault detection, and the server API for publishers that retry by id.
FAST_ARGS = ("--api-key", API_KEY, "--redis-timeout-s", "1", "--redis-health-interval-s", "0.2")
PUBLISH_TIMEOUT_S = 5.0  # the hub's default publish timeout


@dataclass
class Seen:
    """What one subscriber connection received, per room."""

    messages: dict[str, list[tuple[str, int, Any]]] = field(default_factory=dict)
    announced: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # gap, reset


async def subscribe_all(node: HubProcess, rooms: list[str], seen: Seen) -> asyncio.Task[None]:
    """A fanout.v1 connection to ``node`` subscribed to ``rooms``, recording into ``seen``."""
    ws = await connect_v1(node.ws, max_size=None)
    for room in rooms:
        await send_json(ws, {"type": "subscribe", "room": room})
        reply = await recv_json(ws)
        assert reply["type"] == "subscribed", reply
        seen.messages[room] = []
        seen.announced[room] = []

    async def read() -> None:
        async with ws:
            while True:
                frame = await recv_json(ws, timeout=3600)
                if frame["type"] == "message":
                    seen.messages[frame["room"]].append(
                        (frame["epoch"], frame["offset"], frame["data"])
                    )
                elif frame["type"] in ("gap", "reset"):
                    seen.announced[frame["room"]].append(frame)

    return asyncio.get_running_loop().create_task(read())


@dataclass
class Acked:
    room: str
    epoch: str
    offset: int
    data: Any


@dataclass
class Publishing:
    acked: list[Acked] = field(default_factory=list)
    retries: int = 0
    slowest_s: float = 0.0
    errors: dict[str, int] = field(default_factory=dict)


async def publish_retrying(
    http: httpx.AsyncClient, node: HubProcess, room: str, data: Any, msg_id: str, out: Publishing
) -> None:
    """POST until acked, retrying by id on 503 (as a client would); a 4xx/500 fails."""
    body = {"room": room, "data": data, "id": msg_id}
    headers = {"Authorization": f"apikey {API_KEY}"}
    deadline = time.monotonic() + 60
    while True:
        started = time.monotonic()
        try:
            answer = await http.post(node.url + "/api/publish", json=body, headers=headers)
        except httpx.TimeoutException:
            out.errors["client timeout"] = out.errors.get("client timeout", 0) + 1
            continue
        finally:
            out.slowest_s = max(out.slowest_s, time.monotonic() - started)
        if answer.status_code == 200:
            reply = answer.json()
            out.acked.append(Acked(room, reply["epoch"], reply["offset"], data))
            return
        assert answer.status_code == 503, answer.text
        code = answer.json()["code"]
        out.errors[code] = out.errors.get(code, 0) + 1
        out.retries += 1
        assert time.monotonic() < deadline, f"{room} {msg_id}: still refused after 60 s"
        await asyncio.sleep(0.05)


async def run_load(
    nodes: list[HubProcess],
    rooms: list[str],
    *,
    rounds: int,
    disrupt: Callable[[], Coroutine[Any, Any, None]] | None = None,
    disrupt_after: int = 0,
) -> tuple[Publishing, list[Seen]]:
    """Subscribers on every node; each round publishes one message to every room,
    alternating nodes, with ids; ``disrupt`` runs (in the background) after
    ``disrupt_after`` rounds while publishing goes on."""
    seen = [Seen() for _ in nodes]
    readers = [await subscribe_all(n, rooms, s) for n, s in zip(nodes, seen, strict=True)]
    out = Publishing()
    disruption: asyncio.Task[None] | None = None
    try:
        async with httpx.AsyncClient(timeout=PUBLISH_TIMEOUT_S + 5) as http:
            for n in range(1, rounds + 1):
                if disrupt is not None and n == disrupt_after + 1:
                    disruption = asyncio.get_running_loop().create_task(disrupt())
                await asyncio.gather(
                    *(
                        publish_retrying(
                            http, nodes[(n + i) % len(nodes)], room, {"n": n}, f"{room}-{n}", out
                        )
                        for i, room in enumerate(rooms)
                    )
                )
                await asyncio.sleep(0.02)
            if disruption is not None:
                await disruption
            await _until_delivered(out, seen)
    finally:
        for reader in readers:
            reader.cancel()
        for reader in readers:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await reader
    return out, seen


async def _until_delivered(out: Publishing, seen: list[Seen], timeout_s: float = 15) -> None:
    last: dict[str, int] = {}
    for ack in out.acked:
        last[ack.room] = max(last.get(ack.room, 0), ack.offset)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if all(
            max((o for _, o, _ in s.messages[r]), default=0) >= offset or s.announced[r]
            for s in seen
            for r, offset in last.items()
        ):
            return
        await asyncio.sleep(0.05)


def delivery_problems(out: Publishing, seen: list[Seen]) -> list[str]:
    """Every acked message delivered once with its data, in order, or announced."""
    problems = []
    for i, s in enumerate(seen):
        for room, got in s.messages.items():
            offsets = [(e, o) for e, o, _ in got]
            if offsets != sorted(set(offsets)):
                problems.append(f"subscriber {i} {room}: out of order or repeated {offsets}")
            by_offset = {(e, o): d for e, o, d in got}
            for ack in (a for a in out.acked if a.room == room):
                if by_offset.get((ack.epoch, ack.offset), "missing") == ack.data:
                    continue
                if s.announced[room]:
                    continue  # a gap or reset told the client
                problems.append(
                    f"subscriber {i} {room}: acked {ack.epoch}:{ack.offset} {json.dumps(ack.data)}"
                    f" arrived as {by_offset.get((ack.epoch, ack.offset), 'nothing')}"
                )
    return problems


async def watch_health(nodes: list[HubProcess], statuses: list[int], stop: asyncio.Event) -> None:
    """Record every /healthz status of every node until ``stop``."""
    async with httpx.AsyncClient(timeout=2) as http:
        while not stop.is_set():
            for node in nodes:
                with contextlib.suppress(httpx.HTTPError):
                    statuses.append((await http.get(node.url + "/healthz")).status_code)
            await asyncio.sleep(0.05)
