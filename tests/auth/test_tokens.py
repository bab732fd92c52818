"""Token verification without sockets: what ``TokenVerifier`` accepts, and why it refuses."""

from __future__ import annotations

import hashlib
import hmac
import time
from functools import cache
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from hypothesis import given, settings
from hypothesis import strategies as st

from fanout.asgi.wiring import wire
from fanout.auth.grants import RoomGrants
from fanout.auth.tokens import KeyConfigError, TokenError, TokenVerifier, mint_token
from fanout.protocol.codes import ErrorCode
from fanout.protocol.errors import FrameError
from fanout.settings import Settings
from tests.auth import (
    OTHER_SECRET,
    SECRET,
    claims,
    hand_made_token,
    make_token,
    signing_input,
)

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey


@cache
def _private_key(kind: str) -> PrivateKey:
    """One key per kind for the whole module (RSA generation is slow)."""
    if kind == "rsa":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    if kind == "rsa-other":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    if kind == "p256":
        return ec.generate_private_key(ec.SECP256R1())
    if kind == "p384":
        return ec.generate_private_key(ec.SECP384R1())
    if kind in ("ed25519", "ed25519-other"):
        return ed25519.Ed25519PrivateKey.generate()
    raise AssertionError(kind)


def _public_pem(kind: str) -> bytes:
    return (
        _private_key(kind)
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )


def _refusal(verifier: TokenVerifier, token: str) -> str:
    with pytest.raises(TokenError) as info:
        verifier.verify(token)
    return str(info.value)


HS = TokenVerifier.for_secret(SECRET)


# -- HMAC ------------------------------------------------------------------------------


def test_a_valid_hs256_token_gives_its_subject_expiry_grants_and_claims() -> None:
    exp = int(time.time()) + 60
    token = make_token(sub="alice", subscribe=["chat.*"], publish=["chat.lobby"], exp=exp, role="x")
    access = HS.verify(token)
    assert access.subject == "alice"
    assert access.expires_at == exp
    assert access.claims["role"] == "x"
    assert access.may_subscribe("chat.eu")
    assert not access.may_subscribe("news")
    assert access.may_publish("chat.lobby")
    assert not access.may_publish("chat.eu")


def test_a_token_without_a_subject_is_accepted_with_no_subject() -> None:
    assert HS.verify(make_token(sub=None)).subject is None


def test_an_expired_token_is_refused_as_expired() -> None:
    token = make_token(exp=int(time.time()) - 5)
    assert _refusal(HS, token) == "token expired"


def test_a_token_without_exp_is_refused_because_exp_is_required() -> None:
    body = claims()
    del body["exp"]
    assert _refusal(HS, jwt.encode(body, SECRET, algorithm="HS256")) == "token has no 'exp' claim"


def test_a_token_signed_with_another_secret_is_refused() -> None:
    token = make_token(key=OTHER_SECRET)
    assert _refusal(HS, token) == "token signature does not verify"


def test_a_token_whose_payload_was_altered_after_signing_is_refused() -> None:
    head, _, sig = make_token(subscribe=["chat.*"]).split(".")
    forged = signing_input({"alg": "HS256", "typ": "JWT"}, claims(subscribe=["*"]))
    token = f"{head}.{forged.decode().split('.')[1]}.{sig}"
    assert _refusal(HS, token) == "token signature does not verify"


@pytest.mark.parametrize("alg", ["none", "None", "NONE"])
def test_an_unsigned_token_with_alg_none_is_refused(alg: str) -> None:
    token = hand_made_token({"alg": alg, "typ": "JWT"}, claims(), b"")
    assert "algorithm not allowed" in _refusal(HS, token)
    rsa_hub = TokenVerifier.for_public_key(_public_pem("rsa"))
    assert "algorithm not allowed" in _refusal(rsa_hub, token)


def test_an_hmac_algorithm_outside_the_pinned_list_is_refused_even_with_the_right_secret() -> None:
    long_secret = SECRET * 2  # HS512 needs 64 bytes
    token = make_token(key=long_secret, algorithm="HS512")
    assert "algorithm not allowed" in _refusal(TokenVerifier.for_secret(long_secret), token)
    both = TokenVerifier.for_secret(long_secret, ("HS256", "HS512"))
    assert both.verify(token).subject == "alice"


@pytest.mark.parametrize(("alg", "need"), [("HS384", 48), ("HS512", 64)])
def test_a_secret_shorter_than_its_hash_is_refused_at_configuration(alg: str, need: int) -> None:
    with pytest.raises(KeyConfigError) as info:
        TokenVerifier.for_secret("s" * (need - 1), ("HS256", alg))
    assert f"at least {need} bytes for {alg}" in str(info.value)
    TokenVerifier.for_secret("s" * need, ("HS256", alg))


def test_a_pem_key_given_as_the_secret_is_refused_at_configuration_not_at_each_handshake() -> None:
    """An operator mixing up --auth-secret-file and --auth-public-key-file is told at start."""
    with pytest.raises(KeyConfigError, match="cannot be used with HS256"):
        TokenVerifier.for_secret(_public_pem("rsa").decode())


def test_a_secret_shorter_than_32_bytes_is_refused_at_configuration_with_a_clear_message() -> None:
    with pytest.raises(KeyConfigError) as info:
        TokenVerifier.for_secret("x" * 31)
    assert "at least 32 bytes" in str(info.value)
    assert "secrets.token_urlsafe" in str(info.value)  # and how to make a good one
    TokenVerifier.for_secret("x" * 32)  # exactly 32 is enough
    with pytest.raises(ValueError, match="at least 32 bytes"):
        wire(Settings(auth_secret="too short"))


def test_32_bytes_means_bytes_not_characters() -> None:
    TokenVerifier.for_secret("é" * 16)  # 16 characters, 32 bytes in UTF-8
    with pytest.raises(KeyConfigError):
        TokenVerifier.for_secret("é" * 15)


def test_a_secret_with_an_asymmetric_algorithm_is_refused_at_configuration() -> None:
    with pytest.raises(KeyConfigError, match="RS256"):
        TokenVerifier.for_secret(SECRET, ("RS256",))


# -- public keys -----------------------------------------------------------------------

ALGORITHMS = [("rsa", "RS256"), ("p256", "ES256"), ("p384", "ES384"), ("ed25519", "EdDSA")]


@pytest.mark.parametrize(("kind", "alg"), ALGORITHMS)
def test_a_token_signed_with_a_private_key_verifies_with_its_public_key(
    kind: str, alg: str
) -> None:
    verifier = TokenVerifier.for_public_key(_public_pem(kind))
    assert verifier.algorithms == (alg,)  # inferred from the key, not from any token
    token = make_token(key=_private_key(kind), algorithm=alg, sub="bob")
    assert verifier.verify(token).subject == "bob"


@pytest.mark.parametrize(("kind", "alg"), [("rsa", "RS256"), ("ed25519", "EdDSA")])
def test_a_token_signed_with_another_private_key_of_the_same_type_is_refused(
    kind: str, alg: str
) -> None:
    verifier = TokenVerifier.for_public_key(_public_pem(kind))
    token = make_token(key=_private_key(f"{kind}-other"), algorithm=alg)
    assert _refusal(verifier, token) == "token signature does not verify"


def test_an_hs256_token_signed_with_the_public_key_pem_is_refused_by_a_public_key_hub() -> None:
    """Algorithm confusion: the public key is public, so an HMAC made with it proves nothing."""
    pem = _public_pem("rsa")
    header = {"alg": "HS256", "typ": "JWT"}
    body = claims(sub="mallory")
    signature = hmac.new(pem, signing_input(header, body), hashlib.sha256).digest()
    token = hand_made_token(header, body, signature)
    verifier = TokenVerifier.for_public_key(pem)
    assert "algorithm not allowed" in _refusal(verifier, token)


def test_a_public_key_cannot_be_configured_with_an_hmac_algorithm() -> None:
    with pytest.raises(KeyConfigError, match="HS256"):
        TokenVerifier.for_public_key(_public_pem("rsa"), ("RS256", "HS256"))


@pytest.mark.parametrize(
    ("kind", "algorithms"),
    [("rsa", ("ES256",)), ("p256", ("RS256",)), ("ed25519", ("RS256",)), ("rsa", ("EdDSA",))],
)
def test_a_public_key_of_one_family_with_an_algorithm_of_another_is_refused(
    kind: str, algorithms: tuple[str, ...]
) -> None:
    with pytest.raises(KeyConfigError) as info:
        TokenVerifier.for_public_key(_public_pem(kind), algorithms)
    assert algorithms[0] in str(info.value)


def test_an_rsa_algorithm_outside_the_pinned_list_is_refused() -> None:
    verifier = TokenVerifier.for_public_key(_public_pem("rsa"))  # RS256 only
    token = make_token(key=_private_key("rsa"), algorithm="PS256")
    assert "algorithm not allowed" in _refusal(verifier, token)
    both = TokenVerifier.for_public_key(_public_pem("rsa"), ("RS256", "PS256"))
    assert both.verify(token).subject == "alice"


def test_an_rsa_key_under_2048_bits_is_refused_at_configuration() -> None:
    weak = rsa.generate_private_key(public_exponent=65537, key_size=1024).public_key()
    pem = weak.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    with pytest.raises(KeyConfigError, match="1024 bits; at least 2048"):
        TokenVerifier.for_public_key(pem)


def test_something_that_is_not_a_pem_public_key_is_refused_at_configuration() -> None:
    with pytest.raises(KeyConfigError, match="not a PEM public key"):
        TokenVerifier.for_public_key(b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----")


# -- audience and issuer ---------------------------------------------------------------


def test_audience_and_issuer_are_checked_when_configured() -> None:
    verifier = TokenVerifier.for_secret(SECRET, audience="fanout", issuer="https://login.test")
    good = make_token(aud="fanout", iss="https://login.test")
    assert verifier.verify(good).subject == "alice"
    assert _refusal(verifier, make_token(aud="billing", iss="https://login.test")) == (
        "token audience is not this hub's"
    )
    assert _refusal(verifier, make_token(aud="fanout", iss="https://evil.test")) == (
        "token issuer is not the expected one"
    )
    assert _refusal(verifier, make_token(iss="https://login.test")) == "token has no 'aud' claim"
    assert _refusal(verifier, make_token(aud="fanout")) == "token has no 'iss' claim"


def test_an_audience_list_that_names_this_hub_is_accepted() -> None:
    verifier = TokenVerifier.for_secret(SECRET, audience="fanout")
    assert verifier.verify(make_token(aud=["billing", "fanout"])).subject == "alice"


def test_a_token_meant_for_a_named_audience_is_refused_by_a_hub_with_none_configured() -> None:
    # RFC 7519 4.1.3: a recipient not named in 'aud' must reject the token.
    assert _refusal(HS, make_token(aud="billing")) == "token audience is not this hub's"


def test_a_token_not_yet_valid_is_refused() -> None:
    assert "not yet valid" in _refusal(HS, make_token(nbf=int(time.time()) + 600))


# -- malformed tokens ------------------------------------------------------------------


@pytest.mark.parametrize(
    "token",
    [
        "",
        "garbage",
        "a.b",
        "a.b.c",
        "...",
        "eyJhbGciOiJIUzI1NiJ9.not-base64!.sig",
        "é.é.é",
        "\x00\x01\x02",
        " " * 20,
    ],
)
def test_a_malformed_token_is_refused_with_a_token_error(token: str) -> None:
    assert _refusal(HS, token)


def test_an_over_long_token_is_refused_before_it_is_parsed() -> None:
    huge = make_token(padding="x" * 9000)
    assert len(huge) > 8192
    assert _refusal(HS, huge) == "token longer than 8192 characters"


def test_a_refusal_never_echoes_the_token() -> None:
    secret_looking = "abc.SECRETPART.def"
    assert "SECRETPART" not in _refusal(HS, secret_looking)


@pytest.mark.parametrize("exp", ["99999999999", True, " 99999999999 "])
def test_an_exp_that_is_not_a_json_number_is_refused(exp: object) -> None:
    token = jwt.encode({**claims(), "exp": exp}, SECRET, algorithm="HS256")
    refusal = _refusal(HS, token)
    assert refusal in ("token 'exp' must be a number (seconds since the epoch)", "token expired")


def test_an_exp_too_large_for_a_float_is_refused_not_a_crash() -> None:
    token = jwt.encode({**claims(), "exp": 10**400}, SECRET, algorithm="HS256")
    assert _refusal(HS, token) == "token 'exp' is out of range"


def test_a_non_string_subject_is_refused() -> None:
    token = jwt.encode({**claims(), "sub": 42}, SECRET, algorithm="HS256")
    assert "ubject" in _refusal(HS, token)


# -- the fanout claim ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("claim", "reason"),
    [
        ("chat.*", "must be an object"),
        (["chat.*"], "must be an object"),
        ({"subscribe": "chat.*"}, "'fanout.subscribe' must be a list"),
        ({"subscribe": [1, 2]}, "'fanout.subscribe' must be a list"),
        ({"publish": [["chat"]]}, "'fanout.publish' must be a list"),
        ({"subscribe": None}, "'fanout.subscribe' must be a list"),
        ({"subscribe": ["chat/x"]}, "room pattern 'chat/x'"),
        ({"subscribe": ["chat x"]}, "room pattern 'chat x'"),
        ({"publish": [""]}, "room pattern ''"),
        ({"publish": ["a" * 129]}, "is not 1-128 characters"),
        ({"subscribe": ["(a|b)"]}, "room pattern '(a|b)'"),
        ({"subscribe": ["x"] * 257}, "more than 256 patterns"),
    ],
)
def test_a_malformed_fanout_claim_is_refused_with_the_reason(claim: object, reason: str) -> None:
    body = {**claims(), "fanout": claim}
    refusal = _refusal(HS, jwt.encode(body, SECRET, algorithm="HS256"))
    assert refusal.startswith("token grants: ")
    assert reason in refusal


def test_a_token_without_a_fanout_claim_grants_no_room() -> None:
    body = claims()
    del body["fanout"]
    access = HS.verify(jwt.encode(body, SECRET, algorithm="HS256"))
    assert access.grants == RoomGrants()
    assert not access.may_subscribe("lobby")
    assert not access.may_publish("lobby")


# -- refresh ---------------------------------------------------------------------------


def test_a_refresh_with_a_token_for_another_subject_is_forbidden() -> None:
    access = HS.verify(make_token(sub="alice"))
    with pytest.raises(FrameError) as info:
        access.refreshed(make_token(sub="bob"))
    assert info.value.code is ErrorCode.FORBIDDEN


def test_a_refresh_with_a_bad_token_is_unauthorized_with_the_reason() -> None:
    access = HS.verify(make_token())
    with pytest.raises(FrameError) as info:
        access.refreshed(make_token(exp=int(time.time()) - 1))
    assert info.value.code is ErrorCode.UNAUTHORIZED
    assert info.value.reason == "token expired"


def test_a_refresh_with_a_good_token_gives_the_new_expiry_and_grants() -> None:
    access = HS.verify(make_token(subscribe=["a"], ttl_s=10))
    new = access.refreshed(make_token(subscribe=["a", "b"], ttl_s=1000))
    assert new.expires_at is not None
    assert access.expires_at is not None
    assert new.expires_at > access.expires_at + 900
    assert new.may_subscribe("b")


# -- clock skew ------------------------------------------------------------------------


def test_the_leeway_accepts_a_recently_expired_token_and_moves_its_deadline_with_it() -> None:
    """A token the leeway lets in must not be treated as already expired afterwards
    (the watchdog closes connections at ``expires_at``)."""
    verifier = TokenVerifier.for_secret(SECRET, leeway_s=30)
    exp = int(time.time()) - 10
    access = verifier.verify(make_token(exp=exp))
    assert access.expires_at == exp + 30
    assert access.claims["exp"] == exp
    assert _refusal(verifier, make_token(exp=int(time.time()) - 40)) == "token expired"


# -- minting ---------------------------------------------------------------------------


def test_mint_token_makes_what_the_verifier_accepts() -> None:
    token = mint_token(
        SECRET.encode(), subject="carol", grants=RoomGrants.both(["chat.*"]), ttl_s=120
    )
    access = HS.verify(token)
    assert access.subject == "carol"
    assert access.may_publish("chat.x")
    assert not access.may_publish("news")
    assert access.expires_at is not None
    assert 110 < access.expires_at - time.time() <= 121


# -- properties ------------------------------------------------------------------------

_json = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=12,
)

_claim_values: dict[str, st.SearchStrategy[Any]] = {
    "exp": st.integers(min_value=int(time.time()) - 100, max_value=2**40) | _json,
    "sub": st.text(max_size=10) | _json,
    "fanout": st.fixed_dictionaries(
        {},
        optional={
            "subscribe": st.lists(st.text(max_size=12), max_size=4) | _json,
            "publish": st.lists(st.from_regex(r"[a-z.*]{1,6}", fullmatch=True), max_size=4) | _json,
        },
    )
    | _json,
    "aud": _json,
    "nbf": _json,
    "iat": _json,
}


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300) | st.binary(max_size=300).map(lambda b: b.decode("latin-1")))
def test_any_string_is_either_a_valid_token_or_refused_with_a_token_error(text: str) -> None:
    with pytest.raises(TokenError):
        HS.verify(text)


@settings(max_examples=300, deadline=None)
@given(st.fixed_dictionaries({}, optional=_claim_values))
def test_any_correctly_signed_claims_are_either_accepted_or_refused_with_a_token_error(
    body: dict[str, Any],
) -> None:
    token = jwt.encode(body, SECRET, algorithm="HS256")
    try:
        access = HS.verify(token)
    except TokenError:
        return
    exp = access.claims["exp"]
    assert isinstance(exp, int | float)
    assert not isinstance(exp, bool)
    assert access.expires_at == exp
    assert exp > time.time() - 1
    assert access.subject is None or isinstance(access.subject, str)
    # Grants answer for any room without raising.
    access.may_subscribe("chat.x")
    access.may_publish("chat.x")
