"""Tests of ``fanout.auth``, and the token helpers the handshake and expiry tests share.

Tokens here are made with PyJWT directly, not with ``fanout.auth.tokens.mint_token``,
so that a bug in fanout's own minting cannot hide a bug in its verification.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Sequence
from typing import Any

import jwt

# 40 bytes: above the 32-byte minimum the hub enforces.
SECRET = "fanout-test-secret-0123456789-abcdefghij"
OTHER_SECRET = "another-secret-nobody-gave-the-hub-012345"


def claims(
    *,
    sub: str | None = "alice",
    subscribe: Sequence[str] = ("*",),
    publish: Sequence[str] = ("*",),
    ttl_s: float = 60.0,
    exp: float | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """A token's claims: ``exp`` defaults to ``ttl_s`` from now (whole seconds)."""
    body: dict[str, Any] = {
        "exp": int(time.time() + ttl_s) if exp is None else exp,
        "fanout": {"subscribe": list(subscribe), "publish": list(publish)},
        **extra,
    }
    if sub is not None:
        body["sub"] = sub
    return body


def make_token(*, key: Any = SECRET, algorithm: str = "HS256", **kwargs: Any) -> str:
    """A signed token with ``claims(**kwargs)``."""
    return jwt.encode(claims(**kwargs), key, algorithm=algorithm)


def b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def hand_made_token(header: dict[str, Any], body: dict[str, Any], signature: bytes) -> str:
    """A JWT put together by hand, for what PyJWT refuses to make (``alg: none``...)."""
    head = b64url(json.dumps(header).encode())
    payload = b64url(json.dumps(body).encode())
    return f"{head}.{payload}.{b64url(signature)}"


def signing_input(header: dict[str, Any], body: dict[str, Any]) -> bytes:
    head = b64url(json.dumps(header).encode())
    payload = b64url(json.dumps(body).encode())
    return f"{head}.{payload}".encode()
