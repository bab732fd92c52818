"""Self-tests of the process helpers: a real redis-server and the TCP balancer."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import httpx
import pytest

from tests.support.balancer import Balancer
from tests.support.redis import RedisServer, encode_command
from tests.support.redis_fixtures import redis_server  # noqa: F401
from tests.support.servers import free_port


def _refused(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return False
    except ConnectionRefusedError:
        return True


def test_redis_server_answers_ping_on_its_own_port(redis_server: RedisServer) -> None:  # noqa: F811
    assert redis_server.port != 6379
    assert redis_server.url == f"redis://127.0.0.1:{redis_server.port}/0"
    assert redis_server.ping()
    assert redis_server.command("PING") == b"+PONG\r\n"
    assert redis_server.command("SET", "k", b"v\r\n2") == b"+OK\r\n"
    assert redis_server.command("GET", "k") == b"$4\r\nv\r\n2\r\n"
    assert redis_server.command("GET", "missing") == b"$-1\r\n"
    assert redis_server.command("RPUSH", "l", "a", "bc") == b":2\r\n"
    assert redis_server.command("LRANGE", "l", 0, -1) == b"*2\r\n$1\r\na\r\n$2\r\nbc\r\n"
    assert redis_server.command("NOSUCHCOMMAND").startswith(b"-ERR")
    assert redis_server.command("CONFIG", "GET", "save") == b"*2\r\n$4\r\nsave\r\n$0\r\n\r\n"
    assert redis_server.command("CONFIG", "GET", "bind").endswith(b"$9\r\n127.0.0.1\r\n")
    assert "Ready to accept connections" in redis_server.log()


def test_encode_command() -> None:
    assert encode_command("SET", b"k", 12) == b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$2\r\n12\r\n"


def test_kill_then_restart_on_the_same_port_loses_the_data(redis_server: RedisServer) -> None:  # noqa: F811
    port, pid = redis_server.port, redis_server.pid
    assert redis_server.command("SET", "k", "v") == b"+OK\r\n"
    assert redis_server.command("DBSIZE") == b":1\r\n"
    redis_server.kill()
    assert not redis_server.running
    assert _refused(port)
    redis_server.restart()
    assert (redis_server.port, redis_server.url) == (port, f"redis://127.0.0.1:{port}/0")
    assert redis_server.pid != pid
    assert redis_server.command("DBSIZE") == b":0\r\n"


def test_pause_makes_ping_time_out_and_resume_answers(redis_server: RedisServer) -> None:  # noqa: F811
    redis_server.pause()
    with pytest.raises(TimeoutError):
        redis_server.command("PING", timeout=0.5)
    assert not redis_server.ping(timeout=0.2)
    redis_server.resume()
    assert redis_server.command("PING") == b"+PONG\r\n"


def test_stop_works_on_a_paused_server_and_context_manager(tmp_path: Path) -> None:
    with RedisServer(tmp_path) as redis:
        redis.pause()
    assert not redis.running
    assert _refused(redis.port)
    redis.stop()  # idempotent


async def _http_backend(name: str) -> asyncio.Server:
    """A tiny HTTP server answering with its name and the request line it saw."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        body = name.encode() + b" " + head.split(b"\r\n", 1)[0]
        writer.write(b"HTTP/1.1 200 OK\r\nConnection: close\r\n")
        writer.write(b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
        await writer.drain()
        writer.close()
        await writer.wait_closed()

    return await asyncio.start_server(handle, "127.0.0.1", 0)


def _addr(server: asyncio.Server) -> tuple[str, int]:
    port: int = server.sockets[0].getsockname()[1]
    return ("127.0.0.1", port)


async def test_balancer_round_robin_skips_refusing_backends() -> None:
    a, b = await _http_backend("a"), await _http_backend("b")
    down = ("127.0.0.1", free_port())
    try:
        async with (
            Balancer([down, _addr(a), down, _addr(b)]) as balancer,
            httpx.AsyncClient(base_url=balancer.url) as client,
        ):
            bodies = [(await client.get(f"/x/{i}")).text for i in range(4)]
            assert bodies == [f"{name} GET /x/{i} HTTP/1.1" for i, name in enumerate("abab")]
            assert balancer.chosen == [_addr(a), _addr(b)] * 2

            balancer.set_backends([_addr(b)])
            assert (await client.get("/y")).text == "b GET /y HTTP/1.1"

            balancer.set_backends([down])
            with pytest.raises(httpx.TransportError):
                await client.get("/z")
    finally:
        for server in (a, b):
            server.close()
            await server.wait_closed()


async def test_balancer_close_closes_piped_connections() -> None:
    held: list[asyncio.StreamWriter] = []

    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)
        await reader.read()  # until the balancer closes its side
        writer.close()

    backend = await asyncio.start_server(hold, "127.0.0.1", 0)
    balancer = Balancer([_addr(backend)])
    await balancer.start()
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", balancer.port)
        writer.write(b"ping")
        await writer.drain()
        while balancer.active_connections == 0 or not held:
            await asyncio.sleep(0.01)
        await balancer.close()
        assert await asyncio.wait_for(reader.read(), timeout=2) == b""
        assert balancer.active_connections == 0
        writer.close()
        await writer.wait_closed()
        assert _refused(balancer.port)
    finally:
        await balancer.close()
        backend.close()
        await backend.wait_closed()
