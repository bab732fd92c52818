"""``fanout token`` and the auth side of ``fanout serve``, as real processes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from websockets.exceptions import InvalidStatus

from fanout.settings import Settings
from tests.auth import SECRET
from tests.support.servers import free_port, hub_process, running_hub
from tests.support.wsclient import (
    connect_plain,
    connect_user,
    connect_v1,
    recv_json,
    send_json,
    subscribe,
)


@pytest.fixture(autouse=True)
def _no_fanout_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Child processes see only the FANOUT_* variables a test sets itself."""
    for name in list(os.environ):
        if name.startswith("FANOUT_"):
            monkeypatch.delenv(name)


def _fanout(*args: str, secret: str | None = SECRET) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    if secret is not None:
        env["FANOUT_AUTH_SECRET"] = secret
    return subprocess.run(
        [sys.executable, "-m", "fanout.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=30,
        check=False,
    )


def _token(*args: str, secret: str | None = SECRET) -> str:
    done = _fanout("token", *args, secret=secret)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    lines = done.stdout.splitlines()
    assert len(lines) == 1, done.stdout  # the token alone, ready for $(fanout token ...)
    return lines[0]


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


# -- fanout token ----------------------------------------------------------------------


async def test_fanout_token_mints_a_token_the_hub_with_that_secret_accepts_for_its_rooms() -> None:
    token = _token("--sub", "alice", "--rooms", "chat.*")
    claims = jwt.decode(token, SECRET, algorithms=["HS256"])
    assert claims["sub"] == "alice"
    assert claims["fanout"] == {"subscribe": ["chat.*"], "publish": ["chat.*"]}
    assert claims["exp"] - claims["iat"] == 3600
    async with running_hub(Settings(auth_secret=SECRET)) as server:
        async with await connect_user(server.ws, additional_headers=_bearer(token)) as ws:
            await subscribe(ws, "chat.x")
            await send_json(ws, {"type": "publish", "room": "chat.x", "data": "hi", "id": "p1"})
            assert (await recv_json(ws))["data"] == "hi"
            assert (await recv_json(ws))["type"] == "ack"
            await send_json(ws, {"type": "subscribe", "room": "news"})
            assert (await recv_json(ws))["code"] == "forbidden"
        with pytest.raises(InvalidStatus) as info:
            await connect_plain(server.ws + "/news", additional_headers=_bearer(token))
        assert info.value.response.status_code == 403


def test_fanout_token_grants_subscribe_and_publish_separately_with_the_ttl_asked() -> None:
    token = _token("--subscribe", "news", "--publish", "chat.*", "--rooms", "a", "--ttl", "90")
    claims = jwt.decode(token, SECRET, algorithms=["HS256"])
    assert claims["fanout"] == {"subscribe": ["a", "news"], "publish": ["a", "chat.*"]}
    assert claims["exp"] - claims["iat"] == 90
    assert "sub" not in claims


def test_a_token_from_a_secret_file_is_signed_with_that_secret(tmp_path: Path) -> None:
    other = "file-secret-" + "z" * 40
    (tmp_path / "secret").write_text(other + "\n")
    token = _token("--rooms", "r", "--secret-file", str(tmp_path / "secret"))
    assert jwt.decode(token, other, algorithms=["HS256"])["fanout"]["publish"] == ["r"]


@pytest.mark.parametrize(
    ("args", "secret", "reason"),
    [
        (["--sub", "alice", "--rooms", "chat.*"], None, "no key: set FANOUT_AUTH_SECRET"),
        (["--sub", "alice"], SECRET, "grant at least one room: --rooms, --subscribe or --publish"),
        (["--rooms", "chat/*"], SECRET, "room pattern 'chat/*' is not 1-128 characters"),
        (["--rooms", "a b"], SECRET, "room pattern 'a b'"),
        (["--rooms", "chat.*"], "x" * 31, "must be at least 32 bytes"),
        (["--rooms", "chat.*", "--algorithm", "HS512"], SECRET, "at least 64 bytes for HS512"),
        (["--rooms", "r", "--algorithm", "RS256"], SECRET, "an HMAC secret signs with HS256"),
        (["--rooms", "r", "--secret-file", "/nonexistent/secret"], SECRET, "cannot read"),
        (["--rooms", "r", "--private-key-file", "/dev/null"], SECRET, "not an unencrypted PEM"),
    ],
)
def test_fanout_token_refuses_what_cannot_make_a_good_token_with_exit_2_and_one_line(
    args: list[str], secret: str | None, reason: str
) -> None:
    done = _fanout("token", *args, secret=secret)
    assert done.returncode == 2
    assert done.stdout == ""
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("fanout token: ")
    assert reason in lines[0]


@pytest.mark.parametrize("ttl", ["0", "-5", "inf", "nan", "soon"])
def test_fanout_token_refuses_a_ttl_that_is_not_a_positive_number_of_seconds(ttl: str) -> None:
    done = _fanout("token", "--rooms", "r", "--ttl", ttl)
    assert done.returncode == 2
    assert done.stdout == ""
    assert f"argument --ttl: expected a number of seconds > 0, got '{ttl}'" in done.stderr
    assert "Traceback" not in done.stderr


async def test_an_ed25519_token_is_accepted_by_a_hub_started_with_the_public_key(
    tmp_path: Path,
) -> None:
    key = ed25519.Ed25519PrivateKey.generate()
    private, public = tmp_path / "key.pem", tmp_path / "pub.pem"
    private.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    public.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    token = _token("--sub", "bob", "--rooms", "r.*", "--private-key-file", str(private))
    assert jwt.get_unverified_header(token)["alg"] == "EdDSA"
    hmac_token = _token("--sub", "bob", "--rooms", "r.*")
    with hub_process(["--auth-public-key-file", str(public)], tmp_path / "hub.log") as hub:
        async with await connect_plain(hub.ws + "/r.1", additional_headers=_bearer(token)) as ws:
            await ws.send("signed by bob's key")
            assert await ws.recv() == "signed by bob's key"
        for refused in [hmac_token, ""]:
            with pytest.raises(InvalidStatus) as info:
                await connect_plain(hub.ws + "/r.1", additional_headers=_bearer(refused))
            assert info.value.response.status_code == 403


# -- fanout serve: who may listen where ------------------------------------------------


def test_serve_on_0_0_0_0_without_auth_exits_2_with_the_reason_before_listening() -> None:
    port = free_port()
    done = _fanout("serve", "--host", "0.0.0.0", "--port", str(port), secret=None)
    assert done.returncode == 2
    assert "Uvicorn running" not in done.stdout + done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("fanout serve: refusing to serve on 0.0.0.0 without auth")
    assert "--allow-anonymous" in lines[0]
    assert "FANOUT_AUTH_SECRET" in lines[0]
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2)


@pytest.mark.parametrize("mistake", ["short secret", "public key as secret", "HS512 for 40 bytes"])
def test_serve_with_auth_settings_that_cannot_work_exits_2_saying_why(
    mistake: str, tmp_path: Path
) -> None:
    args: list[str] = ["serve", "--port", str(free_port())]
    secret: str | None = SECRET
    if mistake == "short secret":
        secret, reason = "only-20-bytes-long!!", "must be at least 32 bytes for HS256"
    elif mistake == "public key as secret":
        pem = (
            ed25519.Ed25519PrivateKey.generate()
            .public_key()
            .public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )
        (tmp_path / "pub.pem").write_bytes(pem)
        args += ["--auth-secret-file", str(tmp_path / "pub.pem")]
        secret, reason = None, "the auth secret cannot be used with HS256"
    else:
        args += ["--auth-algorithms", "HS256,HS512"]
        reason = "must be at least 64 bytes for HS512"
    done = _fanout(*args, secret=secret)
    assert done.returncode == 2
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("fanout serve: ")
    assert reason in lines[0]


async def test_serve_on_0_0_0_0_with_allow_anonymous_starts_and_serves_anyone(
    tmp_path: Path,
) -> None:
    with hub_process(["--host", "0.0.0.0", "--allow-anonymous"], tmp_path / "hub.log") as hub:
        async with await connect_v1(hub.ws) as ws:
            await subscribe(ws, "open")


async def test_serve_on_0_0_0_0_with_fanout_auth_secret_starts_and_wants_tokens(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FANOUT_AUTH_SECRET", SECRET)
    with hub_process(["--host", "0.0.0.0"], tmp_path / "hub.log") as hub:
        with pytest.raises(InvalidStatus) as info:
            await connect_v1(hub.ws)
        assert info.value.response.status_code == 403
        token = _token("--sub", "carol", "--rooms", "*")
        async with await connect_user(hub.ws, additional_headers=_bearer(token)) as ws:
            await subscribe(ws, "anything")


async def test_a_token_in_the_query_string_does_not_reach_the_servers_log(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FANOUT_AUTH_SECRET", SECRET)
    token = _token("--sub", "dave", "--rooms", "lobby")
    log = tmp_path / "hub.log"
    with hub_process(["--log-level", "info"], log) as hub:
        # Accepted (plain client on /ws = lobby), then refused: both are logged.
        async with await connect_plain(f"{hub.ws}?token={token}&x=1") as ws:
            await ws.send("hi")
            assert await ws.recv() == "hi"
        # The server reads percent-encoded names too ('%74' is 't'): so must the redactor.
        async with await connect_plain(f"{hub.ws}?%74oken={token}") as ws:
            await ws.send("encoded")
            assert await ws.recv() == "encoded"
        with pytest.raises(InvalidStatus):
            await connect_plain(f"{hub.ws}/lobby?a=b&token=SECRETVALUE")
        async with httpx.AsyncClient() as http:
            await http.get(f"{hub.url}/healthz?token=SECRETVALUE")
    text = log.read_text()
    assert "SECRETVALUE" not in text
    assert token not in text
    assert token.split(".")[2] not in text  # not even the signature
    assert '"WebSocket /ws?token=[redacted]&x=1" [accepted]' in text
    assert '"WebSocket /ws/lobby?a=b&token=[redacted]" 403' in text
    assert '"WebSocket /ws?%74oken=[redacted]" [accepted]' in text
    assert '"GET /healthz?token=[redacted] HTTP/1.1" 200' in text
