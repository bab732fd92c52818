"""Decoding client frames, without sockets: every input gets a frame or a FrameError."""

from __future__ import annotations

import contextlib
import json
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fanout.protocol import ErrorCode, FrameError, Publish, Since, Subscribe, Unsubscribe
from fanout.protocol.frames import decode_binary, decode_text


def _error(raw: str | bytes, binary: bool = False) -> FrameError:
    with pytest.raises(FrameError) as info:
        decode_binary(raw) if binary else decode_text(raw)  # type: ignore[arg-type]
    return info.value


def test_a_publish_with_id_decodes_to_publish() -> None:
    frame = decode_text('{"type":"publish","room":"r","data":{"a":[1,2]},"id":"x"}')
    assert frame == Publish("r", {"a": [1, 2]}, "x")


def test_a_publish_with_explicit_null_data_is_a_null_message() -> None:
    assert decode_text('{"type":"publish","room":"r","data":null}') == Publish("r", None)


def test_a_publish_without_data_is_an_error_not_a_null_message() -> None:
    err = _error('{"type":"publish","room":"r","id":"7"}')
    assert err.code is ErrorCode.BAD_FRAME
    assert err.frame_id == "7"
    assert "data" in err.reason


def test_subscribe_with_since_and_unsubscribe_decode() -> None:
    frame = decode_text('{"type":"subscribe","room":"r","since":{"epoch":"e","offset":4}}')
    assert frame == Subscribe("r", Since("e", 4))
    assert decode_text('{"type":"unsubscribe","room":"r"}') == Unsubscribe("r")


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        ("{not json", ErrorCode.BAD_JSON),
        ("", ErrorCode.BAD_JSON),
        ("[1,2]", ErrorCode.BAD_FRAME),
        ('"just a string"', ErrorCode.BAD_FRAME),
        ("{}", ErrorCode.BAD_FRAME),
        ('{"type":7}', ErrorCode.BAD_FRAME),
        ('{"type":"dance","room":"r"}', ErrorCode.UNKNOWN_TYPE),
        ('{"type":"subscribe"}', ErrorCode.BAD_ROOM),
        ('{"type":"subscribe","room":5}', ErrorCode.BAD_ROOM),
        ('{"type":"subscribe","room":""}', ErrorCode.BAD_ROOM),
        ('{"type":"subscribe","room":"has space"}', ErrorCode.BAD_ROOM),
        ('{"type":"subscribe","room":"' + "x" * 129 + '"}', ErrorCode.BAD_ROOM),
        ('{"type":"subscribe","room":"r","since":3}', ErrorCode.BAD_FRAME),
        ('{"type":"subscribe","room":"r","since":{"epoch":1,"offset":1}}', ErrorCode.BAD_FRAME),
        ('{"type":"subscribe","room":"r","since":{"epoch":"e","offset":-1}}', ErrorCode.BAD_FRAME),
        (
            '{"type":"subscribe","room":"r","since":{"epoch":"e","offset":true}}',
            ErrorCode.BAD_FRAME,
        ),
        ('{"type":"subscribe","room":"r","since":{"epoch":"e","offset":"1"}}', ErrorCode.BAD_FRAME),
        ('{"type":"publish","room":"r","data":1,"id":5}', ErrorCode.BAD_FRAME),
        ('{"type":"publish","room":"r","data":1,"id":""}', ErrorCode.BAD_FRAME),
        ('{"type":"publish","room":"r","data":1,"id":"' + "i" * 129 + '"}', ErrorCode.BAD_FRAME),
        ("NaN", ErrorCode.BAD_JSON),
    ],
)
def test_malformed_text_frames_get_their_error_code(raw: str, code: ErrorCode) -> None:
    assert _error(raw).code is code


def _binary(header: object, payload: bytes = b"img", *, length: int | None = None) -> bytes:
    head = json.dumps(header).encode()
    return struct.pack("!I", len(head) if length is None else length) + head + payload


def test_a_binary_publish_carries_its_payload_as_bytes() -> None:
    frame = decode_binary(_binary({"type": "publish", "room": "r", "id": "b"}, b"\x00\xff"))
    assert frame == Publish("r", b"\x00\xff", "b")


def test_a_binary_publish_with_an_empty_payload_is_empty_bytes() -> None:
    assert decode_binary(_binary({"type": "publish", "room": "r"}, b"")) == Publish("r", b"")


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        (b"", ErrorCode.BAD_FRAME),
        (b"\x00\x00", ErrorCode.BAD_FRAME),
        (_binary({"type": "publish", "room": "r"}, length=10_000), ErrorCode.BAD_FRAME),
        (_binary({"type": "publish", "room": "r"}, length=0xFFFFFFFF), ErrorCode.BAD_FRAME),
        (struct.pack("!I", 3) + b"{x}" + b"data", ErrorCode.BAD_JSON),
        (struct.pack("!I", 2) + b"\xff\xfe", ErrorCode.BAD_JSON),
        (_binary([1]), ErrorCode.BAD_FRAME),
        (_binary({"type": "publish", "room": "r", "data": 1}), ErrorCode.BAD_FRAME),
        (_binary({"type": "publish"}), ErrorCode.BAD_ROOM),
    ],
)
def test_binary_frames_whose_header_lies_or_is_garbage_get_an_error(
    raw: bytes, code: ErrorCode
) -> None:
    assert _error(raw, binary=True).code is code


@given(st.binary(max_size=300))
def test_no_binary_input_raises_anything_but_a_frame_error(raw: bytes) -> None:
    with contextlib.suppress(FrameError):
        decode_binary(raw)


@given(st.text(max_size=300))
def test_no_text_input_raises_anything_but_a_frame_error(raw: str) -> None:
    with contextlib.suppress(FrameError):
        decode_text(raw)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)


@given(
    st.dictionaries(
        st.sampled_from(["type", "room", "data", "id", "since"]),
        json_values | st.sampled_from(["publish", "subscribe", "unsubscribe", "r"]),
    )
)
def test_no_json_object_raises_anything_but_a_frame_error(obj: dict[str, object]) -> None:
    with contextlib.suppress(FrameError):
        decode_text(json.dumps(obj))


# -- fuzzing with the auth frame and well-formed binary envelopes ---------------------------

FIELDS = ["type", "room", "data", "id", "since", "token", "epoch", "offset"]
TYPES = ["publish", "subscribe", "unsubscribe", "auth", "authorized", "PUBLISH", ""]
field_values = (
    json_values
    | st.sampled_from(TYPES)
    | st.sampled_from(["r", "chat.1", "a" * 128, "a" * 129, "bad room", "x.y*"])
    | st.sampled_from(["t" * 8192, "t" * 8193])
    | st.fixed_dictionaries({"epoch": json_values, "offset": json_values})
    | st.floats(allow_nan=False)
    | st.integers()
)
frame_objects = st.dictionaries(st.sampled_from(FIELDS), field_values, max_size=6)


def _decodes_or_frame_error(decode: object, raw: object) -> None:
    """Either a frame, or a FrameError with a documented code and a reason."""
    refusal: FrameError | None = None
    try:
        decode(raw)  # type: ignore[operator]
    except FrameError as exc:
        refusal = exc
    if refusal is not None:
        assert isinstance(refusal.code, ErrorCode)
        assert refusal.reason
        assert refusal.frame_id is None or isinstance(refusal.frame_id, str)


@given(frame_objects)
def test_no_frame_object_with_any_field_including_auth_raises_anything_but_a_frame_error(
    obj: dict[str, object],
) -> None:
    text = json.dumps(obj)
    _decodes_or_frame_error(decode_text, text)
    _decodes_or_frame_error(decode_text, text.encode())


@given(frame_objects, st.binary(max_size=64))
def test_no_well_formed_binary_envelope_raises_anything_but_a_frame_error(
    header: dict[str, object], payload: bytes
) -> None:
    _decodes_or_frame_error(decode_binary, _binary(header, payload))


@given(st.binary(max_size=300))
def test_no_bytes_given_as_text_raise_anything_but_a_frame_error(raw: bytes) -> None:
    _decodes_or_frame_error(decode_text, raw)


@given(st.integers(min_value=1, max_value=3000))
def test_nesting_too_deep_for_the_parser_is_a_frame_error(depth: int) -> None:
    data = "[" * depth + "]" * depth
    _decodes_or_frame_error(decode_text, '{"type":"publish","room":"r","data":' + data + "}")


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        ('{"type":"auth"}', ErrorCode.BAD_FRAME),
        ('{"type":"auth","token":""}', ErrorCode.BAD_FRAME),
        ('{"type":"auth","token":5}', ErrorCode.BAD_FRAME),
        ('{"type":"auth","token":"' + "t" * 8193 + '"}', ErrorCode.BAD_FRAME),
        ('{"type":"auth","token":"t","id":7}', ErrorCode.BAD_FRAME),
        ('{"type":"authorized","token":"t"}', ErrorCode.UNKNOWN_TYPE),
        ('{"type":"publish","room":"r","data":1,"id":"x","extra":[1]}', None),
        ('{"type":"publish","room":"r","data":' + "1" * 30 + "}", None),
        ('{"type":"publish","room":"r","data":1e400}', ErrorCode.BAD_JSON),
    ],
)
def test_auth_frames_and_odd_values_decode_or_get_their_error_code(
    raw: str, code: ErrorCode | None
) -> None:
    if code is None:
        decode_text(raw)
    else:
        assert _error(raw).code is code
