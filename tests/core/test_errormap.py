"""One place decides what an exception becomes: an error frame, or a close code."""

from __future__ import annotations

import asyncio
import logging

import orjson
import pytest

from fanout.auth.tokens import TokenError
from fanout.brokers.redis.resp import CommandError, LinkError, reply_error
from fanout.core.errormap import close_for, error_frame, http_error
from fanout.protocol.codes import CloseCode, ErrorCode
from fanout.protocol.errors import (
    BrokerTimeout,
    BrokerUnavailable,
    FanoutError,
    FrameError,
    HandshakeDenied,
    ProtocolViolation,
)


def _frame(exc: Exception, frame_id: str | None = None) -> dict[str, object]:
    loaded: dict[str, object] = orjson.loads(error_frame(exc, frame_id).as_text)
    return loaded


def test_a_refused_frame_keeps_its_code_reason_and_id() -> None:
    shown = _frame(FrameError(ErrorCode.BAD_ROOM, "no such room", frame_id="a"), "b")
    assert shown == {"type": "error", "code": "bad_room", "reason": "no such room", "id": "a"}
    assert _frame(FrameError(ErrorCode.FORBIDDEN, "no"), "b")["id"] == "b"


def test_broker_failures_that_pass_are_retryable_and_the_others_are_broker_errors() -> None:
    assert _frame(BrokerTimeout("slow"), "p1")["code"] == "timeout"
    assert _frame(BrokerUnavailable("down"))["code"] == "unavailable"
    assert isinstance(LinkError("lost"), BrokerUnavailable)
    for passing in ("OOM command not allowed", "CLUSTERDOWN The cluster is down", "TRYAGAIN x",
                    "LOADING Redis is loading", "READONLY You can't write against a replica",
                    "MOVED 3999 127.0.0.1:6381", "ASK 3999 127.0.0.1:6381"):  # fmt: skip
        assert _frame(reply_error(passing))["code"] == "unavailable", passing
    for final in ("WRONGTYPE Operation against a key", "ERR Error running script", "NOPERM x"):
        assert isinstance(reply_error(final), CommandError)
        assert _frame(reply_error(final))["code"] == "broker_error", final
    assert http_error(reply_error("WRONGTYPE x"))[0] == 500
    assert http_error(reply_error("CLUSTERDOWN x"))[0] == 503


def test_auth_errors_are_in_the_tree_and_answered_unauthorized() -> None:
    assert isinstance(TokenError("bad"), FanoutError)
    assert isinstance(HandshakeDenied("no", kind="token"), FanoutError)
    assert _frame(TokenError("token expired"))["code"] == "unauthorized"


def test_an_application_failure_is_logged_and_the_client_told_only_its_type(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.ERROR, logger="fanout.errors"):
        shown = _frame(KeyError("secret detail"), "x")
    assert shown == {
        "type": "error",
        "code": "internal",
        "reason": "handler error: KeyError",
        "id": "x",
    }
    assert "KeyError" in caplog.text


def test_what_ends_a_connection_maps_to_its_close_code() -> None:
    assert close_for(ProtocolViolation(CloseCode.TOO_BIG, "big")) == (CloseCode.TOO_BIG, "big")
    assert close_for(asyncio.CancelledError())[0] == CloseCode.GOING_AWAY
    assert close_for(BrokerUnavailable("down")) == (CloseCode.INTERNAL, "broker: down")
    assert close_for(RuntimeError("bug")) == (CloseCode.INTERNAL, "internal error")
