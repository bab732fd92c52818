"""Signed tokens (JWT): verification with pinned algorithms, and minting for development.

Keys: an HMAC secret (``HS256`` by default), or a PEM public key (RSA, EC or Ed25519)
whose algorithm is inferred from the key unless given. The algorithms accepted are
fixed here, never taken from the token's header, so a token cannot pick ``none`` or
present an HMAC signature made with the public key. ``exp`` is required.

Keys too weak for their algorithm are refused when the hub is configured, not warned
about at each handshake: an HMAC secret needs at least the hash's size (32 bytes for
HS256, 48 for HS384, 64 for HS512), an RSA key at least 2048 bits.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa

from fanout.auth.grants import GrantError, RoomGrants
from fanout.core.access import Access
from fanout.protocol.codes import ErrorCode
from fanout.protocol.errors import AuthError, ConfigError, FrameError
from fanout.protocol.frames import MAX_TOKEN_CHARS

MIN_SECRET_BYTES = 32
MIN_RSA_BITS = 2048
_MAX_EXP = 2**53  # exact as a float, and ~285 million years from now
# RFC 7518 3.2: an HMAC key at least as long as the hash output.
_HMAC_MIN_BYTES = {"HS256": 32, "HS384": 48, "HS512": 64}
HMAC_ALGORITHMS = frozenset(_HMAC_MIN_BYTES)
KEY_ALGORITHMS: dict[str, frozenset[str]] = {
    "rsa": frozenset({"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"}),
    "ec": frozenset({"ES256", "ES384", "ES512"}),
    "okp": frozenset({"EdDSA"}),
}
_EC_DEFAULT = {"secp256r1": "ES256", "secp384r1": "ES384", "secp521r1": "ES512"}


class TokenError(AuthError, ValueError):
    """A token that does not verify; the message says why, without echoing the token."""


class KeyConfigError(ConfigError):
    """Auth settings that cannot work (short secret, algorithm not for this key)."""


@dataclass(frozen=True, slots=True)
class TokenVerifier:
    key: Any = field(repr=False)
    algorithms: tuple[str, ...]
    audience: str | None = None
    issuer: str | None = None
    leeway_s: float = 0.0

    @classmethod
    def for_secret(cls, secret: str, algorithms: tuple[str, ...] = (), **kw: Any) -> TokenVerifier:
        algorithms = algorithms or ("HS256",)
        wrong = set(algorithms) - HMAC_ALGORITHMS
        if wrong:
            raise KeyConfigError(
                f"an HMAC secret verifies {sorted(HMAC_ALGORITHMS)}, not {sorted(wrong)}"
            )
        key = check_secret(secret, algorithms)
        return cls(key, algorithms, **kw)

    @classmethod
    def for_public_key(
        cls, pem: bytes, algorithms: tuple[str, ...] = (), **kw: Any
    ) -> TokenVerifier:
        try:
            key = serialization.load_pem_public_key(pem)
        except ValueError as exc:
            raise KeyConfigError(f"not a PEM public key: {exc}") from exc
        family, default = key_family(key)
        algorithms = algorithms or (default,)
        wrong = set(algorithms) - KEY_ALGORITHMS[family]
        if wrong:
            raise KeyConfigError(
                f"a {family.upper()} key verifies {sorted(KEY_ALGORITHMS[family])},"
                f" not {sorted(wrong)}"
            )
        return cls(key, algorithms, **kw)

    def verify(self, token: str) -> TokenAccess:
        """The access ``token`` grants; TokenError with the reason when it does not verify."""
        if not token:
            raise TokenError("no token")
        if len(token) > MAX_TOKEN_CHARS:
            raise TokenError(f"token longer than {MAX_TOKEN_CHARS} characters")
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                self.key,
                algorithms=list(self.algorithms),
                audience=self.audience,
                issuer=self.issuer,
                leeway=self.leeway_s,
                options={"require": ["exp"]},
            )
        except jwt.ExpiredSignatureError as exc:
            raise TokenError("token expired") from exc
        except jwt.InvalidAlgorithmError as exc:
            raise TokenError(f"token algorithm not allowed (allowed: {self.algorithms})") from exc
        except jwt.InvalidSignatureError as exc:
            raise TokenError("token signature does not verify") from exc
        except jwt.MissingRequiredClaimError as exc:
            raise TokenError(f"token has no '{exc.claim}' claim") from exc
        except jwt.InvalidAudienceError as exc:
            raise TokenError("token audience is not this hub's") from exc
        except jwt.InvalidIssuerError as exc:
            raise TokenError("token issuer is not the expected one") from exc
        except jwt.ImmatureSignatureError as exc:
            raise TokenError("token not yet valid ('nbf' or 'iat' in the future)") from exc
        except jwt.InvalidTokenError as exc:
            raise TokenError(f"malformed token: {exc}") from exc
        except jwt.PyJWTError as exc:  # e.g. InvalidKeyError: never a crash at the handshake
            raise TokenError(f"token refused: {exc}") from exc
        exp = claims["exp"]
        if isinstance(exp, bool) or not isinstance(exp, int | float):
            # jwt.decode lets int("1767225600") through; a NumericDate is a JSON number.
            raise TokenError("token 'exp' must be a number (seconds since the epoch)")
        if not exp < _MAX_EXP:  # float(10**400) would raise
            raise TokenError("token 'exp' is out of range")
        subject = claims.get("sub")
        if subject is not None and not isinstance(subject, str):
            raise TokenError("token 'sub' must be a string")
        try:
            grants = RoomGrants.from_claims(claims)
        except GrantError as exc:
            raise TokenError(f"token grants: {exc}") from exc
        # Valid until exp plus the leeway, as jwt.decode judged it: the watchdog closes
        # the connection at expires_at, which must not be before the token was accepted.
        expires_at = float(exp) + self.leeway_s
        return TokenAccess(self, subject, expires_at, grants, claims)


def check_secret(secret: str, algorithms: tuple[str, ...]) -> bytes:
    """``secret`` as the key for ``algorithms``; KeyConfigError if it is too short for
    one of them, or is not a secret at all (a PEM key given as the secret)."""
    key = secret.encode()
    need = max([MIN_SECRET_BYTES, *(_HMAC_MIN_BYTES.get(a, 0) for a in algorithms)])
    if len(key) < need:
        strongest = max(algorithms, key=lambda a: _HMAC_MIN_BYTES.get(a, 0))
        raise KeyConfigError(
            f"the auth secret must be at least {need} bytes for {strongest} (an HMAC is only"
            " as strong as its key); make one with: python -c 'import secrets;"
            f" print(secrets.token_urlsafe({need}))'"
        )
    for algorithm in algorithms:
        try:
            jwt.get_algorithm_by_name(algorithm).prepare_key(key)
        except jwt.PyJWTError as exc:
            raise KeyConfigError(f"the auth secret cannot be used with {algorithm}: {exc}") from exc
    return key


def key_family(key: Any) -> tuple[str, str]:
    """A public key's family (``rsa``, ``ec``, ``okp``) and the algorithm it uses by
    default; KeyConfigError for a key JWT cannot use, or a weak one."""
    if isinstance(key, rsa.RSAPublicKey):
        if key.key_size < MIN_RSA_BITS:
            raise KeyConfigError(
                f"the RSA key has {key.key_size} bits; at least {MIN_RSA_BITS} are needed"
            )
        return "rsa", "RS256"
    if isinstance(key, ec.EllipticCurvePublicKey):
        default = _EC_DEFAULT.get(key.curve.name)
        if default is None:
            raise KeyConfigError(f"EC curve {key.curve.name} is not supported for JWT")
        return "ec", default
    if isinstance(key, ed25519.Ed25519PublicKey | ed448.Ed448PublicKey):
        return "okp", "EdDSA"
    raise KeyConfigError(f"unsupported key type {type(key).__name__}")


@dataclass(frozen=True, slots=True)
class TokenAccess:
    """``Access`` from a verified token."""

    verifier: TokenVerifier = field(repr=False)
    subject: str | None
    expires_at: float | None
    grants: RoomGrants
    claims: Mapping[str, Any] = field(repr=False)
    identity: Any = None

    @property
    def info(self) -> Mapping[str, Any]:
        info = self.claims.get("info")
        return info if isinstance(info, dict) else {}

    def may_subscribe(self, room: str) -> bool:
        return self.grants.may_subscribe(room)

    def may_publish(self, room: str) -> bool:
        return self.grants.may_publish(room)

    def refreshed(self, token: str) -> Access:
        try:
            new = self.verifier.verify(token)
        except TokenError as exc:
            raise FrameError(ErrorCode.UNAUTHORIZED, str(exc)) from exc
        if new.subject != self.subject:
            raise FrameError(
                ErrorCode.FORBIDDEN, "a refreshed token must be for the same 'sub' as the first"
            )
        return new


def mint_token(
    key: Any,
    *,
    algorithm: str = "HS256",
    subject: str | None,
    grants: RoomGrants,
    ttl_s: float,
    audience: str | None = None,
    issuer: str | None = None,
    now: float | None = None,
) -> str:
    """A signed token (for development and tests; production tokens come from your
    login service, in the same shape)."""
    issued = int(time.time() if now is None else now)
    claims: dict[str, Any] = {
        "iat": issued,
        "exp": issued + max(1, round(ttl_s)),
        "fanout": grants.to_claim(),
    }
    if subject is not None:
        claims["sub"] = subject
    if audience:
        claims["aud"] = audience
    if issuer:
        claims["iss"] = issuer
    return jwt.encode(claims, key, algorithm=algorithm)
