"""Room grants: which rooms a token's ``fanout`` claim lets a connection use."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fanout.auth.grants import GrantError, RoomGrants

# Room names as the hub accepts them (1-128 of these characters).
ROOM = st.text(
    alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.:@-",
    min_size=1,
    max_size=20,
)


def test_exact_names_grant_those_rooms_and_no_other() -> None:
    grants = RoomGrants(subscribe=["news", "chat.lobby"], publish=["chat.lobby"])
    assert grants.may_subscribe("news")
    assert grants.may_subscribe("chat.lobby")
    assert not grants.may_subscribe("news2")
    assert not grants.may_subscribe("new")
    assert not grants.may_subscribe("chat.lobby.x")
    assert not grants.may_subscribe("NEWS")  # room names are case-sensitive
    assert grants.may_publish("chat.lobby")
    assert not grants.may_publish("news")  # subscribe does not imply publish


def test_a_trailing_star_grants_every_room_under_the_prefix() -> None:
    grants = RoomGrants.both(["chat.*"])
    assert grants.may_subscribe("chat.lobby")
    assert grants.may_subscribe("chat.eu.paris")
    assert grants.may_publish("chat.x")
    assert not grants.may_subscribe("chat")
    assert not grants.may_subscribe("chatx")
    assert not grants.may_subscribe("news.chat.x")


def test_a_star_in_the_middle_or_at_the_start_matches_any_run_there() -> None:
    grants = RoomGrants.both(["team.*.admin", "*.public"])
    assert grants.may_subscribe("team.red.admin")
    assert grants.may_subscribe("team.red.blue.admin")
    assert not grants.may_subscribe("team.red.admins")
    assert not grants.may_subscribe("team.red")
    assert grants.may_subscribe("news.public")
    assert not grants.may_subscribe("news.public.not")


def test_a_lone_star_grants_every_room() -> None:
    grants = RoomGrants.both(["*"])
    for room in ["a", "lobby", "chat.eu.paris", "x" * 128, "user@example:room-1_2"]:
        assert grants.may_subscribe(room)
        assert grants.may_publish(room)


def test_no_grants_allow_nothing() -> None:
    grants = RoomGrants()
    assert not grants.may_subscribe("lobby")
    assert not grants.may_publish("lobby")
    assert not grants.may_subscribe("*")
    assert RoomGrants.from_claims({"sub": "alice"}) == grants
    assert RoomGrants.from_claims({"fanout": {}}) == grants


def test_a_missing_publish_list_grants_subscribe_only() -> None:
    grants = RoomGrants.from_claims({"fanout": {"subscribe": ["news"]}})
    assert grants.may_subscribe("news")
    assert not grants.may_publish("news")


@pytest.mark.parametrize(
    ("pattern", "room"),
    [
        ("a.b", "axb"),  # '.' is a dot, not "any character"
        ("a.*", "axb"),
        ("a-z", "a-y"),
        ("a@b", "a@@b"),
        ("chat.x", "chat.xy"),
        ("chat.x", "chat.x\n"),
    ],
)
def test_regular_expression_characters_in_a_pattern_are_literal(pattern: str, room: str) -> None:
    grants = RoomGrants.both([pattern])
    assert not grants.may_subscribe(room)
    assert not grants.may_publish(room)
    if "*" not in pattern:
        assert grants.may_subscribe(pattern)


@pytest.mark.parametrize(
    "pattern", ["", "a b", "chat/x", "(a|b)", "a+", "[a]", "a\\d", "é", "x" * 129, "a\n"]
)
def test_a_pattern_outside_the_room_alphabet_is_refused_with_the_reason(pattern: str) -> None:
    with pytest.raises(GrantError, match="is not 1-128 characters of"):
        RoomGrants(subscribe=[pattern])
    with pytest.raises(GrantError):
        RoomGrants(publish=[pattern])


def test_the_claim_round_trips_through_to_claim() -> None:
    grants = RoomGrants(subscribe=["a", "b.*"], publish=["b.*"])
    assert RoomGrants.from_claims({"fanout": grants.to_claim()}) == grants


@settings(max_examples=200, deadline=None)
@given(ROOM, ROOM)
def test_a_pattern_without_a_star_matches_exactly_itself(name: str, other: str) -> None:
    grants = RoomGrants.both([name])
    assert grants.may_subscribe(name)
    assert grants.may_subscribe(other) == (other == name)
    assert grants.may_publish(other) == (other == name)


@settings(max_examples=200, deadline=None)
@given(ROOM, ROOM, st.text(alphabet="abc.:", max_size=10))
def test_a_prefix_star_matches_exactly_the_rooms_that_start_with_the_prefix(
    prefix: str, room: str, rest: str
) -> None:
    grants = RoomGrants.both([prefix + "*"])
    assert grants.may_subscribe(prefix + rest)
    assert grants.may_subscribe(room) == room.startswith(prefix)
