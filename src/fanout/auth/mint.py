"""Minting a development token from command-line options (``fanout token``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization

from fanout.auth.grants import GrantError, RoomGrants
from fanout.auth.tokens import (
    HMAC_ALGORITHMS,
    KEY_ALGORITHMS,
    KeyConfigError,
    check_secret,
    key_family,
    mint_token,
)


class MintError(ValueError):
    """Options that cannot make a token; the message says what to change."""


def mint_from_options(
    *,
    subject: str | None,
    rooms: Sequence[str],
    subscribe: Sequence[str],
    publish: Sequence[str],
    ttl_s: float,
    secret: str,
    secret_file: str | None,
    private_key_file: str | None,
    algorithm: str | None,
    audience: str | None,
    issuer: str | None,
) -> str:
    if not (rooms or subscribe or publish):
        raise MintError("grant at least one room: --rooms, --subscribe or --publish")
    try:
        grants = RoomGrants(
            subscribe=dict.fromkeys([*rooms, *subscribe]), publish=dict.fromkeys([*rooms, *publish])
        )
    except GrantError as exc:
        raise MintError(str(exc)) from exc
    key, family, default = _signing_key(secret, secret_file, private_key_file)
    algorithm = algorithm or default
    allowed = HMAC_ALGORITHMS if family == "hmac" else KEY_ALGORITHMS[family]
    if algorithm not in allowed:
        what = "an HMAC secret" if family == "hmac" else f"this private key ({family.upper()})"
        raise MintError(f"{what} signs with {', '.join(sorted(allowed))}, not {algorithm!r}")
    if isinstance(key, bytes):
        try:
            check_secret(key.decode(errors="replace"), (algorithm,))
        except KeyConfigError as exc:
            raise MintError(str(exc)) from exc
    try:
        return mint_token(
            key,
            algorithm=algorithm,
            subject=subject,
            grants=grants,
            ttl_s=ttl_s,
            audience=audience,
            issuer=issuer,
        )
    except (ValueError, TypeError, NotImplementedError, jwt.PyJWTError) as exc:
        raise MintError(f"cannot sign with {algorithm}: {exc}") from exc


def _signing_key(
    secret: str, secret_file: str | None, private_key_file: str | None
) -> tuple[Any, str, str]:
    """The key, its family (``hmac``, ``rsa``, ``ec`` or ``okp``) and default algorithm."""
    if private_key_file:
        pem = _read(private_key_file)
        try:
            key = serialization.load_pem_private_key(pem, password=None)
        except (ValueError, TypeError) as exc:
            raise MintError(f"{private_key_file}: not an unencrypted PEM private key") from exc
        try:
            family, default = key_family(key.public_key())
        except KeyConfigError as exc:
            raise MintError(f"{private_key_file}: {exc}") from exc
        return key, family, default
    if secret_file:
        secret = _read(secret_file).decode(errors="replace").strip()
    if not secret:
        raise MintError(
            "no key: set FANOUT_AUTH_SECRET (the same secret `fanout serve` uses), or pass"
            " --secret-file or --private-key-file"
        )
    return secret.encode(), "hmac", "HS256"


def _read(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as exc:
        raise MintError(f"cannot read {path}: {exc.strerror}") from exc
