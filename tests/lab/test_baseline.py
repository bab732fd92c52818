"""The article's server and its binary twin under uvicorn, and the lab's faulty server.

Each server runs as a real child process, driven by real ``websockets`` clients.
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosedError

from fanout.lab.baseline_server import BASELINE_APPS
from fanout.lab.net import ProcessGone, wait_for_port
from fanout.lab.payloads import PayloadMaker, parse_header
from tests.support.servers import free_port, stop_process

FAULTY = Path(__file__).parent / "servers" / "faulty.py"
TIMEOUT = 10


@contextlib.contextmanager
def _baseline(binary: bool, log: Path) -> Iterator[str]:
    port = free_port()
    code = (
        "from fanout.lab.baseline_server import serve_baseline; "
        f"serve_baseline('127.0.0.1', {port}, binary={binary}, log_level='warning')"
    )
    with log.open("ab") as out:
        proc = subprocess.Popen([sys.executable, "-c", code], stdout=out, stderr=subprocess.STDOUT)
    try:
        try:
            wait_for_port("127.0.0.1", port, 20, running=lambda: proc.poll() is None)
        except (ProcessGone, TimeoutError) as exc:
            raise RuntimeError(f"{exc}:\n{log.read_text()}") from None
        yield f"ws://127.0.0.1:{port}/ws"
    finally:
        stop_process(proc)


@contextlib.contextmanager
def _faulty(*flags: str, log: Path) -> Iterator[str]:
    with log.open("ab") as err:
        proc = subprocess.Popen(
            [sys.executable, str(FAULTY), "--port", "0", *flags],
            stdout=subprocess.PIPE,
            stderr=err,
        )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().decode()
        if not line.startswith("listening on "):
            raise RuntimeError(f"faulty.py said {line!r}:\n{log.read_text()}")
        yield f"ws://127.0.0.1:{int(line.split()[-1])}/any/path"
    finally:
        assert stop_process(proc) == 0, log.read_text()
        if proc.stdout is not None:
            proc.stdout.close()


@pytest.fixture(scope="module")
def article_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with _baseline(False, tmp_path_factory.mktemp("article") / "server.log") as url:
        yield url


@pytest.fixture(scope="module")
def binary_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with _baseline(True, tmp_path_factory.mktemp("binary") / "server.log") as url:
        yield url


async def _join(url: str, clients: list[ClientConnection]) -> ClientConnection:
    """Connect one more client, and wait until the server counts it in its broadcast."""
    ws = await connect(url, max_size=None)
    await ws.send("join")
    assert await ws.recv() == "Server received: join"
    for other in clients:
        assert await other.recv() == "Server received: join"
    clients.append(ws)
    return ws


def test_the_baseline_apps_are_the_article_and_its_binary_twin() -> None:
    assert BASELINE_APPS == {
        "article": "fanout.lab.baseline:app",
        "binary": "fanout.lab.baseline_binary:app",
    }


async def test_the_article_server_answers_a_text_frame_to_every_client(article_url: str) -> None:
    clients: list[ClientConnection] = []
    try:
        async with asyncio.timeout(TIMEOUT):
            sender = await _join(article_url, clients)
            await _join(article_url, clients)
            message = PayloadMaker("text", 300).make(1, 7, 42).decode()
            await sender.send(message)
            for ws in clients:
                reply = await ws.recv()
                assert reply == f"Server received: {message}"
                assert isinstance(reply, str)
                assert parse_header(reply.encode()) == (1, 7, 42)
    finally:
        for ws in clients:
            await ws.close()


async def test_the_article_server_drops_the_connection_on_a_binary_frame(
    article_url: str,
) -> None:
    async with asyncio.timeout(TIMEOUT), connect(article_url) as ws:
        await ws.send(b"\x89PNG")
        with pytest.raises(ConnectionClosedError) as closed:
            await ws.recv()
        # receive_text() raised KeyError('text'): uvicorn logs it and closes the TCP
        # connection without a close frame (1006 for the client).
        assert closed.value.rcvd is None


async def test_the_binary_twin_returns_a_1_mib_png_byte_identical_to_both_clients(
    binary_url: str,
) -> None:
    png = PayloadMaker("png", 1024 * 1024).make(3, 1, 99)
    clients: list[ClientConnection] = []
    try:
        async with asyncio.timeout(TIMEOUT):
            sender = await _join(binary_url, clients)
            await _join(binary_url, clients)
            await sender.send(png)
            for ws in clients:
                assert await ws.recv() == png
            await sender.send("still text")
            for ws in clients:
                assert await ws.recv() == "Server received: still text"
    finally:
        for ws in clients:
            await ws.close()


async def test_the_faulty_server_with_drop_every_3_drops_messages_3_6_and_9_of_10(
    tmp_path: Path,
) -> None:
    with _faulty("--drop-every", "3", log=tmp_path / "faulty.log") as url:
        async with (
            asyncio.timeout(TIMEOUT),
            connect(url) as receiver,
            connect(url) as sender,
        ):
            for n in range(1, 11):
                await sender.send(f"m{n}")
            await sender.send(b"\x00end")  # message 11, binary, not dropped
            for ws in (sender, receiver):
                got = [await ws.recv() for _ in range(8)]
                assert got == ["m1", "m2", "m4", "m5", "m7", "m8", "m10", b"\x00end"]


async def test_the_faulty_server_with_close_after_2_closes_everyone_with_4000(
    tmp_path: Path,
) -> None:
    with _faulty("--close-after", "2", "--close-code", "4000", log=tmp_path / "faulty.log") as url:
        async with asyncio.timeout(TIMEOUT), connect(url) as receiver, connect(url) as sender:
            await sender.send("one")
            await sender.send("two")
            for ws in (sender, receiver):
                assert [await ws.recv(), await ws.recv()] == ["one", "two"]
                with pytest.raises(ConnectionClosedError) as closed:
                    await ws.recv()
                assert closed.value.rcvd is not None
                assert closed.value.rcvd.code == 4000
