"""The lab's sequence header and the payloads that carry it (text, binary, PNG, JPEG)."""

from __future__ import annotations

import io
import struct
import zlib

import pytest
from PIL import Image

from fanout.lab import images
from fanout.lab.payloads import (
    HEADER_LEN,
    KINDS,
    MAGIC,
    PayloadMaker,
    header,
    min_size,
    parse_header,
)

KIB = 1024
MIB = 1024 * KIB
NOW = 1_234_567_890_123_456_789


def _decode(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def _png_chunks(data: bytes) -> list[tuple[bytes, bytes, int]]:
    """(type, data, stored CRC) of every chunk, checking that the file ends at IEND."""
    assert data.startswith(images.PNG_SIGNATURE)
    chunks = []
    at = len(images.PNG_SIGNATURE)
    while at < len(data):
        (length,) = struct.unpack_from(">I", data, at)
        kind = data[at + 4 : at + 8]
        body = data[at + 8 : at + 8 + length]
        (crc,) = struct.unpack_from(">I", data, at + 8 + length)
        chunks.append((kind, body, crc))
        at += 12 + length
    assert at == len(data)
    return chunks


def _padding(data: bytes) -> int:
    """Bytes of the fnPd chunk (PNG) or of the COM segments after SOI (JPEG)."""
    if data.startswith(images.PNG_SIGNATURE):
        return sum(12 + len(body) for kind, body, _ in _png_chunks(data) if kind == b"fnPd")
    at = 2
    while data[at : at + 2] == b"\xff\xfe":
        at += 2 + struct.unpack_from(">H", data, at + 2)[0]
    return at - 2


def test_a_header_is_magic_36_digits_and_a_tilde() -> None:
    h = header(12, 345, NOW)
    assert h == b"~fo~000012" + b"0000000345" + b"01234567890123456789" + b"~"
    assert len(h) == HEADER_LEN == 41
    assert h.startswith(MAGIC)


def test_a_header_round_trips_through_parse_header() -> None:
    for sender, seq, sent_ns in [(0, 0, 0), (7, 42, NOW), (999_999, 9_999_999_999, 10**20 - 1)]:
        assert parse_header(header(sender, seq, sent_ns)) == (sender, seq, sent_ns)


@pytest.mark.parametrize(
    ("sender", "seq", "sent_ns"),
    [(-1, 0, 0), (10**6, 0, 0), (0, 10**10, 0), (0, -5, 0), (0, 0, 10**20)],
)
def test_a_header_refuses_numbers_that_do_not_fit_its_digits(
    sender: int, seq: int, sent_ns: int
) -> None:
    with pytest.raises(ValueError, match="out of range"):
        header(sender, seq, sent_ns)


def test_parse_header_finds_the_header_behind_what_a_server_prepends() -> None:
    reply = b"Server received: " + header(3, 9, NOW) + b"padding"
    assert parse_header(reply) == (3, 9, NOW)


def test_parse_header_only_looks_between_start_and_end() -> None:
    data = b"xx" + header(1, 2, 3) + b"yy" + header(4, 5, 6)
    assert parse_header(data, 3) == (4, 5, 6)
    assert parse_header(data, 0, 2 + HEADER_LEN) == (1, 2, 3)
    assert parse_header(data, 0, 2 + HEADER_LEN - 1) is None


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"no header in here at all, just text" * 3,
        header(1, 2, 3)[:-1],  # cut short
        header(1, 2, 3)[:-1] + b"!",  # closing tilde missing
        header(1, 2, 3).replace(b"0000000002", b"00000000x2"),  # a digit corrupted
        header(1, 2, 3).replace(b"0000000002", b"+000000002"),  # int() would accept it
        header(1, 2, 3).replace(b"0000000002", b"0_00000002"),  # int() would accept it
        header(1, 2, 3).replace(b"0000000002", b" 000000002"),  # int() would accept it
        b"~fx~" + header(1, 2, 3)[4:],  # magic damaged
    ],
    ids=["empty", "no-magic", "cut", "no-tilde", "letter", "plus", "underscore", "space", "magic"],
)
def test_parse_header_returns_none_for_a_missing_or_corrupt_header(data: bytes) -> None:
    assert parse_header(data) is None


def test_parse_header_skips_a_corrupt_magic_and_finds_the_real_header_after_it() -> None:
    assert parse_header(b"~fo~garbage " + header(5, 6, 7)) == (5, 6, 7)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("size", [0, 1000, 4 * KIB, 65_537, 300_001])
def test_every_kind_makes_messages_of_exactly_the_size_asked(kind: str, size: int) -> None:
    size = size or min_size(kind)
    maker = PayloadMaker(kind, size)
    for seq in (0, 1, 99):
        message = maker.make(2, seq, NOW + seq)
        assert len(message) == size
        assert parse_header(message) == (2, seq, NOW + seq)


def test_text_and_binary_opcodes_are_1_and_2_and_images_are_binary() -> None:
    assert {k: PayloadMaker(k, 2000).opcode for k in KINDS} == {
        "text": 1,
        "binary": 2,
        "jpeg": 2,
        "png": 2,
    }


def test_a_text_payload_is_printable_ascii_with_one_magic() -> None:
    message = PayloadMaker("text", 10_000).make(1, 2, 3)
    text = message.decode("ascii")
    assert text.isprintable()
    assert message.count(MAGIC) == 1


def test_messages_differ_only_in_the_header() -> None:
    maker = PayloadMaker("binary", 5000)
    first, second = maker.make(1, 1, 10), maker.make(1, 2, 20)
    assert first[HEADER_LEN:] == second[HEADER_LEN:]
    assert first[:HEADER_LEN] != second[:HEADER_LEN]


@pytest.mark.parametrize("kind", ["png", "jpeg"])
@pytest.mark.parametrize("size", [1000, 64 * KIB, MIB + 7])
def test_image_payloads_decode_with_pillow_at_every_seq(kind: str, size: int) -> None:
    maker = PayloadMaker(kind, size)
    for seq in (0, 1, 2, 1000, 9_999_999_999):
        message = maker.make(123, seq, NOW)
        image = _decode(message)
        assert image.format == kind.upper()
        assert image.size == (maker.width, maker.height)
        assert parse_header(message) == (123, seq, NOW)


def test_a_png_payload_keeps_its_header_in_a_text_chunk_right_after_ihdr() -> None:
    message = PayloadMaker("png", 50_000).make(4, 5, 6)
    chunks = _png_chunks(message)
    assert [kind for kind, _, _ in chunks[:2]] == [b"IHDR", b"tEXt"]
    assert chunks[1][1] == b"fanout\x00" + header(4, 5, 6)
    assert _decode(message).info["fanout"] == header(4, 5, 6).decode()


@pytest.mark.parametrize("seq", [0, 1, 77])
def test_every_png_chunk_has_a_valid_crc_at_every_seq(seq: int) -> None:
    message = PayloadMaker("png", 100_000).make(1, seq, NOW)
    chunks = _png_chunks(message)
    for kind, body, crc in chunks:
        assert zlib.crc32(body, zlib.crc32(kind)) == crc, kind
    kinds = [kind for kind, _, _ in chunks]
    assert kinds[-2:] == [images.PNG_PAD_TYPE, b"IEND"]


def test_a_jpeg_payload_keeps_its_header_in_a_comment_right_after_soi() -> None:
    message = PayloadMaker("jpeg", 50_000).make(4, 5, 6)
    assert message[:4] == b"\xff\xd8\xff\xfe"
    assert struct.unpack_from(">H", message, 4)[0] == 2 + HEADER_LEN
    assert message[images.JPEG_HEADER_AT : images.JPEG_HEADER_AT + HEADER_LEN] == header(4, 5, 6)


@pytest.mark.parametrize("size", [KIB, MIB, 16 * MIB], ids=["1KiB", "1MiB", "16MiB"])
@pytest.mark.parametrize("fmt", ["png", "jpeg"])
def test_images_are_real_and_exactly_the_size_asked(fmt: str, size: int) -> None:
    encoded = images.encode_png(size) if fmt == "png" else images.encode_jpeg(size)
    assert len(encoded.data) == size
    image = _decode(encoded.data)
    assert image.format == fmt.upper()
    assert image.mode == "RGB"
    assert image.size == (encoded.width, encoded.height)
    assert parse_header(encoded.data) == (0, 0, 0)
    if size >= MIB:  # the noise lands just below the size: the padding is small
        assert _padding(encoded.data) <= size // 100


def test_make_png_and_make_jpeg_are_deterministic() -> None:
    assert images.make_png(5000) == images.make_png(5000)
    assert images.make_jpeg(5000) == images.make_jpeg(5000)


def test_a_long_jpeg_pad_is_split_into_comment_segments_that_fit() -> None:
    pad = images._jpeg_pad(3 * 65_537 + 2)  # a remainder too short for a segment
    at, lengths = 0, []
    while at < len(pad):
        assert pad[at : at + 2] == b"\xff\xfe"
        (length,) = struct.unpack_from(">H", pad, at + 2)
        lengths.append(length)
        at += 2 + length
    assert at == len(pad) == 3 * 65_537 + 2
    assert all(2 <= n <= 0xFFFF for n in lengths)


@pytest.mark.parametrize("kind", KINDS)
def test_a_size_below_the_minimum_raises_a_clear_value_error(kind: str) -> None:
    minimum = min_size(kind)
    assert minimum == HEADER_LEN if kind in ("text", "binary") else 100 < minimum < 1000
    with pytest.raises(ValueError, match=rf"too small for a {kind} payload.*{minimum} bytes"):
        PayloadMaker(kind, minimum - 1)
    assert len(PayloadMaker(kind, minimum).make(0, 0, 0)) == minimum


def test_an_unknown_kind_raises_a_value_error_listing_the_kinds() -> None:
    with pytest.raises(ValueError, match="text, binary, jpeg, png"):
        PayloadMaker("gif", 1000)


def test_a_64_mib_binary_payload_is_exact() -> None:
    maker = PayloadMaker("binary", 64 * MIB)
    assert len(maker.make(1, 1, 1)) == 64 * MIB
