"""Minting a development token from command-line options (``fanout token``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa

from fanout.auth.grants import GrantError, RoomGrants
from fanout.auth.tokens import (
    HMAC_ALGORITHMS,
    KEY_ALGORITHMS,
    MIN_RSA_BITS,
    KeyConfigError,
    check_secret,
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
    key, family = _signing_key(secret, secret_file, private_key_file)
    algorithm = algorithm or _default_algorithm(key)
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


def _default_algorithm(key: Any) -> str:
    if isinstance(key, rsa.RSAPrivateKey):
        return "RS256"
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return {"secp384r1": "ES384", "secp521r1": "ES512"}.get(key.curve.name, "ES256")
    if isinstance(key, ed25519.Ed25519PrivateKey | ed448.Ed448PrivateKey):
        return "EdDSA"
    return "HS256"


def _signing_key(
    secret: str, secret_file: str | None, private_key_file: str | None
) -> tuple[Any, str]:
    """The key, and its family: ``hmac``, ``rsa``, ``ec`` or ``okp``."""
    if private_key_file:
        pem = _read(private_key_file)
        try:
            key = serialization.load_pem_private_key(pem, password=None)
        except (ValueError, TypeError) as exc:
            raise MintError(f"{private_key_file}: not an unencrypted PEM private key") from exc
        if isinstance(key, rsa.RSAPrivateKey):
            if key.key_size < MIN_RSA_BITS:
                raise MintError(
                    f"{private_key_file}: the RSA key has {key.key_size} bits; at least"
                    f" {MIN_RSA_BITS} are needed"
                )
            return key, "rsa"
        if isinstance(key, ec.EllipticCurvePrivateKey):
            return key, "ec"
        if isinstance(key, ed25519.Ed25519PrivateKey | ed448.Ed448PrivateKey):
            return key, "okp"
        raise MintError(f"{private_key_file}: unsupported key type {type(key).__name__}")
    if secret_file:
        secret = _read(secret_file).decode(errors="replace").strip()
    if not secret:
        raise MintError(
            "no key: set FANOUT_AUTH_SECRET (the same secret `fanout serve` uses), or pass"
            " --secret-file or --private-key-file"
        )
    return secret.encode(), "hmac"


def _read(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as exc:
        raise MintError(f"cannot read {path}: {exc.strerror}") from exc
