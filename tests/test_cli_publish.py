"""``fanout publish`` as a real process: into rooms served by real ``fanout serve``
nodes, through a real Redis (``--broker``) or a hub's HTTP API (``--url``)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection

from tests.redis.nodes import parse_resp, redis_nodes
from tests.support.redis import RedisServer
from tests.support.servers import HubProcess, free_port, hub_process
from tests.support.wsclient import assert_silent, connect_v1, recv_json, subscribe

API_KEY = "test-api-key-0123456789"


@pytest.fixture(autouse=True)
def _no_fanout_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Child processes see only the FANOUT_* variables a test sets itself."""
    for name in list(os.environ):
        if name.startswith("FANOUT_"):
            monkeypatch.delenv(name)


@pytest.fixture
def redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A real redis-server of this test's own, on a free port."""
    with RedisServer(tmp_path / "redis") as server:
        yield server


def publish(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``fanout publish ARGS`` in its own process."""
    return subprocess.run(
        [sys.executable, "-m", "fanout.cli", "publish", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=30,
        check=False,
    )


async def publish_async(*args: str, env: dict[str, str] | None = None) -> Any:
    return await asyncio.to_thread(publish, *args, env=env)


async def _next_message(ws: ClientConnection) -> dict[str, Any]:
    frame = await recv_json(ws)
    assert frame["type"] == "message", frame
    return frame


def _keys(redis: RedisServer) -> list[str]:
    keys: list[str] = parse_resp(redis.command("KEYS", "*"))
    return keys


# -- through Redis ---------------------------------------------------------------------


async def test_a_publish_through_redis_reaches_subscribers_on_both_nodes_once(
    redis: RedisServer, tmp_path: Path
) -> None:
    room = "news"
    async with (
        redis_nodes(redis, tmp_path) as (node_a, node_b),
        await connect_v1(node_a.ws) as on_a,
        await connect_v1(node_b.ws) as on_b,
    ):
        epoch = (await subscribe(on_a, room))["epoch"]
        await subscribe(on_b, room)

        done = await publish_async(
            "--broker", redis.url, room, '{"title": "hello"}', "--id", "news-1"
        )

        assert (done.returncode, done.stdout, done.stderr) == (0, f"epoch={epoch} offset=1\n", "")
        for ws in (on_a, on_b):
            message = await _next_message(ws)
            assert (message["offset"], message["data"]) == (1, {"title": "hello"})

        again = await publish_async(
            "--broker", redis.url, room, '{"title": "hello"}', "--id", "news-1", "--json"
        )

        assert again.returncode == 0, again.stderr
        assert json.loads(again.stdout) == {"epoch": epoch, "offset": 1, "duplicate": True}
        await asyncio.gather(assert_silent(on_a, 0.3), assert_silent(on_b, 0.3))

        plain = await publish_async("--broker", redis.url, room, "second")

        assert plain.stdout == f"epoch={epoch} offset=2\n"
        for ws in (on_a, on_b):
            assert (await _next_message(ws))["offset"] == 2


async def test_data_is_json_if_it_parses_a_string_otherwise_or_the_bytes_of_a_file(
    redis: RedisServer, tmp_path: Path
) -> None:
    room = "kinds"
    image = tmp_path / "image.bin"
    image.write_bytes(bytes(range(256)) * 100)
    cases: list[tuple[list[str], Any]] = [
        (["42"], 42),
        (["[1, 2]"], [1, 2]),
        (["hello world"], "hello world"),
        (["{not json"], "{not json"),
        (["42", "--text"], "42"),
        (['"quoted"'], "quoted"),
        (["--binary", str(image)], image.read_bytes()),
    ]
    async with (
        redis_nodes(redis, tmp_path, count=1) as (node,),
        await connect_v1(node.ws) as client,
    ):
        await subscribe(client, room)
        for offset, (args, expected) in enumerate(cases, start=1):
            done = await publish_async("--broker", redis.url, room, *args)

            assert done.returncode == 0, (args, done.stderr)
            assert done.stdout.endswith(f" offset={offset}\n")
            message = await _next_message(client)
            assert (message["offset"], message["data"]) == (offset, expected), args


def test_a_redis_that_is_not_there_exits_1_with_the_reason_and_prints_no_offset() -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"

    done = publish("--broker", url, "news", "hello", "--id", "n1")

    assert (done.returncode, done.stdout) == (1, "")
    assert f"not published through {url}" in done.stderr
    assert "cannot connect" in done.stderr
    assert "a retry with the same --id is safe" in done.stderr


def test_a_paused_redis_exits_1_within_the_redis_timeout(redis: RedisServer) -> None:
    redis.pause()
    try:
        started = time.monotonic()
        done = publish("--broker", redis.url, "--redis-timeout-s", "0.5", "news", "x")
        elapsed = time.monotonic() - started
    finally:
        redis.resume()

    assert (done.returncode, done.stdout) == (1, "")
    assert "did not answer the publish within 0.5 s" in done.stderr
    assert elapsed < 10
    assert _keys(redis) == []


def test_a_wrong_password_exits_1_without_printing_the_password(
    redis: RedisServer,
) -> None:
    redis.command("CONFIG", "SET", "requirepass", "right-one")
    url = f"redis://:wrong-one@127.0.0.1:{redis.port}/0"

    done = publish("--broker", url, "news", "x")

    assert (done.returncode, done.stdout) == (1, "")
    assert "WRONGPASS" in done.stderr
    assert "wrong-one" not in done.stderr


@pytest.mark.parametrize(
    ("args", "env", "reason"),
    [
        (["bad room", "x"], {}, "refused (bad_room)"),
        (["r" * 129, "x"], {}, "refused (bad_room)"),
        (["news", "x", "--id", "i" * 129], {}, "refused (bad_frame): 'id' must be"),
        (["--max-message-bytes", "1024", "news", "x" * 1100], {}, "refused (too_big)"),
        (["news", "x" * 1100], {"FANOUT_MAX_MESSAGE_BYTES": "1024"}, "refused (too_big)"),
        (["other", "x"], {"FANOUT_ROOM_PATTERN": r"news\..+"}, "room pattern"),
    ],
)
def test_a_publish_the_hub_would_refuse_exits_1_with_the_reason_and_stores_nothing(
    redis: RedisServer, args: list[str], env: dict[str, str], reason: str
) -> None:
    done = publish("--broker", redis.url, *args, env=env)

    assert (done.returncode, done.stdout) == (1, "")
    assert reason in done.stderr
    assert _keys(redis) == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--broker", "redis://127.0.0.1:1/0", "news"], "DATA is missing"),
        (["--broker", "redis://127.0.0.1:1/0"], "the following arguments are required: ROOM"),
        (["--broker", "redis://127.0.0.1:1/0", "news", "x", "--binary", "f"], "not both"),
        (["--broker", "redis://127.0.0.1:1/0", "news", "--binary", "/no/such"], "cannot read"),
        (["--broker", "redis://127.0.0.1:1/0", "news", "--text", "--binary", "f"], "not allowed"),
        (["--broker", "mysql://127.0.0.1/0", "news", "x"], "expected redis://"),
        (["--broker", "redis://:pw@127.0.0.1:no/0", "news", "x"], "bad port 'no'"),
        (["news", "x"], "give --broker redis://"),
        (["--broker", "redis://h:1/0", "--url", "http://h:1", "news", "x"], "not allowed"),
        (["--url", "http://127.0.0.1:1", "news", "x"], "needs the hub's API key"),
        (["--url", "ftp://127.0.0.1:1", "--api-key", "k", "news", "x"], "expected http://"),
        (["--broker", "redis://h:1/0", "--redis-timeout-s", "soon", "news", "x"], "expected float"),
        (["--url", "http://127.0.0.1:1", "--timeout", "0", "news", "x"], "seconds > 0"),
    ],
)
def test_bad_arguments_exit_2_with_the_reason(args: list[str], message: str) -> None:
    done = publish(*args)

    assert (done.returncode, done.stdout) == (2, "")
    assert message in done.stderr
    assert ":pw@" not in done.stderr


def test_help_says_how_data_is_read_and_what_each_exit_status_means() -> None:
    done = publish("--help")

    assert done.returncode == 0
    assert "parsed as JSON if it parses" in done.stdout
    assert "--text always sends it as a string" in done.stdout
    for status in ("0  published", "1  refused or failed", "2  bad arguments"):
        assert status in done.stdout


# -- through a hub's HTTP API --------------------------------------------------------


@pytest.fixture
def memory_hub(tmp_path: Path) -> Iterator[HubProcess]:
    """``fanout serve`` on the in-memory broker, with the server API on."""
    args = ["--api-key", API_KEY, "--max-message-bytes", "2048", "--log-level", "warning"]
    with hub_process(args, tmp_path / "hub.log") as hub:
        yield hub


async def test_a_publish_through_the_http_api_reaches_subscribers_once(
    memory_hub: HubProcess, tmp_path: Path
) -> None:
    key = {"FANOUT_API_KEY": API_KEY}
    image = tmp_path / "image.bin"
    image.write_bytes(b"\x00\xff" * 500)
    async with await connect_v1(memory_hub.ws) as client:
        epoch = (await subscribe(client, "news"))["epoch"]

        done = await publish_async(
            "--url", memory_hub.url, "news", '{"n": 1}', "--id", "a", env=key
        )

        assert (done.returncode, done.stdout, done.stderr) == (0, f"epoch={epoch} offset=1\n", "")
        message = await _next_message(client)
        assert (message["offset"], message["data"]) == (1, {"n": 1})

        again = await publish_async(
            "--url", memory_hub.url + "/", "news", '{"n": 1}', "--id", "a", "--json", env=key
        )

        assert json.loads(again.stdout) == {"epoch": epoch, "offset": 1, "duplicate": True}
        await assert_silent(client, 0.3)

        binary = await publish_async(
            "--url", memory_hub.url, "--api-key", API_KEY, "news", "--binary", str(image)
        )

        assert binary.stdout == f"epoch={epoch} offset=2\n", binary.stderr
        message = await _next_message(client)
        assert (message["offset"], message["data"]) == (2, image.read_bytes())


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        (["--api-key", "wrong-key-0123456789", "news", "x"], "HTTP 401: unauthorized"),
        (["--api-key", API_KEY, "bad room", "x"], "HTTP 400: bad_room"),
        (["--api-key", API_KEY, "news", "x" * 3000], "HTTP 413: too_big"),
        (["--api-key", API_KEY, "news", "--binary", "BIG"], "HTTP 413: too_big"),
    ],
)
def test_a_publish_the_http_api_refuses_exits_1_with_its_reason_and_never_the_key(
    memory_hub: HubProcess, tmp_path: Path, args: list[str], reason: str
) -> None:
    big = tmp_path / "big.bin"
    big.write_bytes(b"\x01" * 5_000_000)  # far over the hub's 2048 bytes
    args = [str(big) if a == "BIG" else a for a in args]

    done = publish("--url", memory_hub.url, *args)

    assert (done.returncode, done.stdout) == (1, "")
    assert reason in done.stderr
    assert API_KEY not in done.stderr
    assert "wrong-key-0123456789" not in done.stderr


def test_a_hub_that_is_not_there_exits_1() -> None:
    url = f"http://127.0.0.1:{free_port()}"

    done = publish("--url", url, "--api-key", API_KEY, "news", "x", "--id", "x1")

    assert (done.returncode, done.stdout) == (1, "")
    assert f"no answer from {url}" in done.stderr
    assert "a retry with the same --id is safe" in done.stderr


EMBEDDING_APP = """
import fanout
from fastapi import FastAPI

hub = fanout.Hub(fanout.Settings(api_key={key!r}))
app = FastAPI()
app.include_router(hub.router, prefix="/rt")
"""


async def test_a_hub_embedded_under_a_path_prefix_takes_publishes_at_that_prefix(
    tmp_path: Path,
) -> None:
    (tmp_path / "embedding_app.py").write_text(EMBEDDING_APP.format(key=API_KEY))
    port = free_port()
    log = (tmp_path / "app.log").open("wb")
    command = [sys.executable, "-m", "uvicorn", "embedding_app:app", "--port", str(port)]
    proc = await asyncio.to_thread(
        subprocess.Popen,
        [*command, "--app-dir", str(tmp_path), "--log-level", "warning"],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}/rt"
    try:
        await _wait_for_health(base + "/healthz", proc)
        async with await connect_v1(f"ws://127.0.0.1:{port}/rt/ws") as client:
            await subscribe(client, "orders")

            done = await publish_async("--url", base, "--api-key", API_KEY, "orders", "42")

            assert done.returncode == 0, done.stderr
            message = await _next_message(client)
            assert (message["offset"], message["data"]) == (1, 42)
    finally:
        proc.terminate()
        proc.wait(timeout=20)
        log.close()


async def _wait_for_health(url: str, proc: subprocess.Popen[bytes]) -> None:
    import httpx

    async with httpx.AsyncClient(timeout=1) as http, asyncio.timeout(20):
        while True:
            assert proc.poll() is None, "the embedding app exited"
            try:
                if (await http.get(url)).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.05)
