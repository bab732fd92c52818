"""Reading the common client frame without websockets' parser: what is taken, and
everything that is left to websockets (which answers it as before)."""

from __future__ import annotations

import random
import struct

import pytest

from fanout.asgi.simple_frames import frame_length, take_simple_frames
from tests.support.rawclient import masked_frame

TEXT, BINARY, CONT, PING, CLOSE = 0x1, 0x2, 0x0, 0x9, 0x8


def test_text_and_binary_frames_are_read_with_the_bytes_they_took() -> None:
    data = masked_frame(TEXT, "héllo".encode()) + masked_frame(BINARY, b"\x00\xff")
    assert take_simple_frames(data, None) == (["héllo", b"\x00\xff"], len(data))


def test_an_empty_frame_and_a_frame_with_a_two_byte_length_are_read() -> None:
    big = "x" * 40_000
    data = masked_frame(TEXT, b"") + masked_frame(TEXT, big.encode())
    assert take_simple_frames(data, None) == (["", big], len(data))


def test_a_frame_cut_off_anywhere_is_left_for_later_and_those_before_it_are_taken() -> None:
    first = masked_frame(TEXT, b"first")
    second = masked_frame(TEXT, b"x" * 300)
    for cut in range(len(second)):
        messages, used = take_simple_frames(first + second[:cut], None)
        assert (messages, used) == (["first"], len(first))


@pytest.mark.parametrize(
    "frame",
    [
        pytest.param(masked_frame(PING, b"p"), id="ping"),
        pytest.param(masked_frame(CLOSE, struct.pack("!H", 1000)), id="close"),
        pytest.param(bytes([TEXT, 0x80 | 1]) + b"mask" + b"a", id="first fragment (no FIN)"),
        pytest.param(masked_frame(CONT, b"a"), id="continuation"),
        pytest.param(bytes([0x80 | TEXT, 5]) + b"hello", id="unmasked"),
        pytest.param(bytes([0xC0 | TEXT, 0x81]) + b"mask" + b"a", id="RSV1 set"),
        pytest.param(masked_frame(BINARY, b"z" * 70_000), id="64-bit length"),
        pytest.param(masked_frame(TEXT, b'{"a":"\xff\xfe"}'), id="invalid UTF-8"),
        pytest.param(masked_frame(0x3, b"?"), id="reserved opcode"),
    ],
)
def test_a_frame_that_is_not_simple_is_left_to_websockets_with_all_after_it(frame: bytes) -> None:
    before = masked_frame(TEXT, b"before")
    after = masked_frame(TEXT, b"after")
    messages, used = take_simple_frames(before + frame + after, None)
    assert (messages, used) == (["before"], len(before))


def test_a_frame_over_the_size_limit_is_left_to_websockets_which_refuses_it() -> None:
    data = masked_frame(TEXT, b"x" * 101)
    assert take_simple_frames(data, 100) == ([], 0)
    assert take_simple_frames(data, 101) == (["x" * 101], len(data))


def test_random_bytes_never_raise_and_never_take_more_than_they_hold() -> None:
    rng = random.Random(15)
    for _ in range(3000):
        data = rng.randbytes(rng.randrange(0, 64))
        if rng.random() < 0.5:  # a plausible header in front, often lying about its length
            data = bytes([rng.choice((0x81, 0x82)), 0x80 | rng.randrange(128)]) + data
        messages, used = take_simple_frames(data, rng.choice((None, 10)))
        assert 0 <= used <= len(data)
        assert (used == 0) == (not messages)


@pytest.mark.parametrize("size", [0, 125, 126, 65_535, 65_536, 300_000])
def test_a_frames_length_is_known_from_its_header_alone(size: int) -> None:
    frame = masked_frame(TEXT, b"x" * size)
    assert frame_length(b"junk" + frame, 4) == len(frame)
    header = len(frame) - size
    assert frame_length(frame[: header - 4], 0) == len(frame)  # the mask not read yet
    unmasked = bytes([frame[0], frame[1] & 0x7F]) + frame[2 : header - 4]
    assert frame_length(unmasked, 0) == len(frame) - 4


@pytest.mark.parametrize("cut", [0, 1, 3, 9])
def test_a_header_cut_off_gives_no_length_yet(cut: int) -> None:
    frame = masked_frame(TEXT, b"x" * 70_000)  # a 10-byte header before the mask
    assert frame_length(frame[:cut], 0) is None


def test_a_length_a_header_lies_about_is_reported_as_it_says() -> None:
    frame = masked_frame(BINARY, b"abc", declared_length=1 << 40)
    assert frame_length(frame, 0) == 2 + 8 + 4 + (1 << 40)
