"""The sequence header the lab puts in every message, and payloads that carry it.

Any WebSocket server can be measured because the lab never trusts it to add anything:
each message carries its own accounting in a fixed 41-byte ASCII header::

    ~fo~SSSSSSQQQQQQQQQQTTTTTTTTTTTTTTTTTTTT~
    |   |     |         |                   '- closing "~"
    |   |     |         '- send time, time.monotonic_ns(), 20 digits
    |   |     '- sequence number, 10 digits
    |   '- sender id, 6 digits
    '- MAGIC

A server may wrap the message (the article's answers ``"Server received: " + data``),
so the receiver looks for ``MAGIC`` rather than assuming offset 0. The format is
fixed: the lab's hot receive loop depends on it.

:class:`PayloadMaker` builds messages of an exact size: text, binary, or a real PNG or
JPEG image whose header sits inside the image (a PNG ``tEXt`` chunk, a JPEG ``COM``
segment) so the message stays a valid image. Everything but the header is built once;
:meth:`PayloadMaker.make` only splices.
"""

from __future__ import annotations

import random
import zlib
from typing import Final, Literal, get_args

PayloadKind = Literal["text", "binary", "jpeg", "png"]
KINDS: Final[tuple[str, ...]] = get_args(PayloadKind)

MAGIC: Final = b"~fo~"
HEADER_LEN: Final = 41
_MAX_SENDER: Final = 10**6
_MAX_SEQ: Final = 10**10
_MAX_NS: Final = 10**20
_TILDE: Final = 0x7E

_SEED: Final = 0x0F0A0118
# Text padding: 64 printable ASCII characters (no "~", so no stray MAGIC), indexed by
# the low 6 bits of random bytes: as incompressible as printable text gets.
_TEXT_ALPHABET: Final = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_"
_TEXT_TABLE: Final = bytes(_TEXT_ALPHABET[i % 64] for i in range(256))


def header(sender: int, seq: int, sent_ns: int) -> bytes:
    """The 41-byte header: ``MAGIC``, sender (6 digits), seq (10), send time (20), ``~``.

    Raises ``ValueError`` when a number does not fit its digits (or is negative).
    """
    if not (0 <= sender < _MAX_SENDER and 0 <= seq < _MAX_SEQ and 0 <= sent_ns < _MAX_NS):
        raise ValueError(
            f"header fields out of range: sender={sender} (0..999999), seq={seq} "
            f"(0..9999999999), sent_ns={sent_ns} (0..10**20-1)"
        )
    return b"~fo~%06d%010d%020d~" % (sender, seq, sent_ns)


def parse_header(
    data: bytes | bytearray, start: int = 0, end: int | None = None
) -> tuple[int, int, int] | None:
    """``(sender, seq, sent_ns)`` of the first well-formed header in ``data[start:end]``.

    ``None`` when there is none: no ``MAGIC``, or every ``MAGIC`` found is followed by
    something that is not 36 ASCII digits and a ``~`` (corrupted or cut short).
    """
    if end is None:
        end = len(data)
    at = data.find(MAGIC, start, end)
    while at >= 0:
        stop = at + HEADER_LEN
        if stop <= end and data[stop - 1] == _TILDE and data[at + 4 : stop - 1].isdigit():
            return (
                int(data[at + 4 : at + 10]),
                int(data[at + 10 : at + 20]),
                int(data[at + 20 : at + 40]),
            )
        at = data.find(MAGIC, at + 1, end)
    return None


def min_size(kind: str) -> int:
    """The smallest payload of ``kind`` (the header alone, or a 1x1 pixel image)."""
    _check_kind(kind)
    if kind in ("text", "binary"):
        return HEADER_LEN
    from fanout.lab import images  # Pillow is only needed for images

    return images.min_png_size() if kind == "png" else images.min_jpeg_size()


class PayloadMaker:
    """Messages of ``kind`` and exactly ``size`` bytes, each with its own header.

    * ``text``: the header, then printable ASCII (sent as a text frame, opcode 1);
    * ``binary``: the header, then pseudo-random bytes (opcode 2);
    * ``png`` / ``jpeg``: a real image of noise (see :mod:`fanout.lab.images`) with the
      header in a ``tEXt`` chunk right after IHDR / a ``COM`` segment right after SOI
      (opcode 2). Each message decodes as an image.

    All the bytes but the header are made once, here; :meth:`make` joins a prefix, the
    header (and for PNG the 4-byte CRC of the small tEXt chunk) and a suffix.
    """

    __slots__ = ("_crc_seed", "_prefix", "_suffix", "height", "kind", "opcode", "size", "width")

    def __init__(self, kind: str, size: int) -> None:
        _check_kind(kind)
        minimum = min_size(kind)
        if size < minimum:
            raise ValueError(
                f"size {size} is too small for a {kind} payload: the smallest is "
                f"{minimum} bytes"
                + (" (the 41-byte header)" if minimum == HEADER_LEN else " (a 1x1 image)")
            )
        self.kind: Final = kind
        self.size: Final = size
        self.opcode: Final = 1 if kind == "text" else 2
        self.width: int | None = None
        self.height: int | None = None
        self._crc_seed: int | None = None
        if kind == "text":
            self._prefix = b""
            self._suffix = _random_bytes(size - HEADER_LEN).translate(_TEXT_TABLE)
        elif kind == "binary":
            self._prefix = b""
            self._suffix = _random_bytes(size - HEADER_LEN)
        else:
            from fanout.lab import images

            image = images.encode_png(size) if kind == "png" else images.encode_jpeg(size)
            self.width, self.height = image.width, image.height
            at = image.header_at
            self._prefix = image.data[:at]
            if kind == "png":
                # The tEXt chunk's CRC covers its type and data: b"tEXt" b"fanout\0" <hdr>.
                type_and_keyword = 4 + len(images.PNG_TEXT_KEYWORD) + 1
                self._crc_seed = zlib.crc32(image.data[at - type_and_keyword : at])
                self._suffix = image.data[at + HEADER_LEN + 4 :]
            else:
                self._suffix = image.data[at + HEADER_LEN :]

    def __repr__(self) -> str:
        return f"PayloadMaker({self.kind!r}, {self.size})"

    def make(self, sender: int, seq: int, sent_ns: int) -> bytes:
        """One message of exactly ``size`` bytes carrying ``header(sender, seq, sent_ns)``."""
        hdr = header(sender, seq, sent_ns)
        if self._crc_seed is None:
            return b"".join((self._prefix, hdr, self._suffix))
        crc = zlib.crc32(hdr, self._crc_seed).to_bytes(4, "big")
        return b"".join((self._prefix, hdr, crc, self._suffix))


def _check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise ValueError(f"unknown payload kind {kind!r}: expected one of {', '.join(KINDS)}")


def _random_bytes(n: int) -> bytes:
    return random.Random(_SEED).randbytes(n)
