"""Real PNG and JPEG images of an exact encoded size, with a slot for the lab's header.

The lab sends images because the article asks about them: a payload has to be a file
a browser or Pillow would open, not random bytes with an image's name. Each image here
is deterministic noise (the worst case for any compression on the way) at dimensions
chosen so the encoded file lands just below the requested size, then padded to the
exact byte with data every decoder skips:

* PNG: ``signature, IHDR, tEXt "fanout" <header slot>, IDAT..., fnPd <pad>, IEND``.
  ``fnPd`` is a private ancillary chunk (lower-case first two letters: decoders that do
  not know it skip it), with a valid CRC.
* JPEG: ``SOI, COM <header slot>, COM <pad>..., <the rest as encoded>``. A COM segment
  holds at most 65533 data bytes, so the pad is split over as many as needed.

The header slot holds ``header(0, 0, 0)``; :class:`fanout.lab.payloads.PayloadMaker`
rewrites those 41 bytes (and, for PNG, the tEXt chunk's CRC) per message, so every
message is still a valid image.
"""

from __future__ import annotations

import functools
import io
import math
import random
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from PIL import Image

from fanout.lab.payloads import HEADER_LEN, header

ImageFormat = Literal["png", "jpeg"]

SEED = 0x0F0A0117
"""Seed of the noise: the same size always gives the same bytes."""

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PNG_TEXT_KEYWORD = b"fanout"
PNG_PAD_TYPE = b"fnPd"
_PNG_IHDR_END = len(PNG_SIGNATURE) + 8 + 13 + 4  # signature + IHDR chunk
_PNG_CHUNK_OVERHEAD = 12  # length, type, CRC
_PNG_SLOT_CHUNK = _PNG_CHUNK_OVERHEAD + len(PNG_TEXT_KEYWORD) + 1 + HEADER_LEN
PNG_HEADER_AT = _PNG_IHDR_END + 8 + len(PNG_TEXT_KEYWORD) + 1
"""Offset of the header slot in every PNG made here (the tEXt text after the keyword)."""

_JPEG_SOI = b"\xff\xd8"
_JPEG_COM = b"\xff\xfe"
_JPEG_SEGMENT_MAX = 2 + 0xFFFF  # marker + length field + at most 65533 data bytes
_JPEG_SEGMENT_MIN = 4  # marker + length field, no data
_JPEG_SLOT_SEGMENT = 4 + HEADER_LEN
JPEG_HEADER_AT = len(_JPEG_SOI) + 4
"""Offset of the header slot in every JPEG made here (the first COM segment's data)."""

JPEG_QUALITY = 95


@dataclass(frozen=True, slots=True)
class EncodedImage:
    """One image: its bytes, its pixel dimensions and where its header slot is."""

    format: ImageFormat
    data: bytes
    width: int
    height: int
    header_at: int


def make_png(size: int) -> bytes:
    """A real PNG of exactly ``size`` bytes (noise, a header slot, a pad chunk)."""
    return encode_png(size).data


def make_jpeg(size: int) -> bytes:
    """A real JPEG of exactly ``size`` bytes (noise, a header slot, pad comments)."""
    return encode_jpeg(size).data


@functools.cache
def min_png_size() -> int:
    """The smallest PNG :func:`make_png` can make: 1x1 pixel, slot and empty pad."""
    return len(_png_bare(1, 1, _noise(3))) + _PNG_SLOT_CHUNK + _PNG_CHUNK_OVERHEAD


@functools.cache
def min_jpeg_size() -> int:
    """The smallest JPEG :func:`make_jpeg` can make: 1x1 pixel, slot and empty pad."""
    return len(_jpeg_bare(1, 1, _noise(3))) + _JPEG_SLOT_SEGMENT + _JPEG_SEGMENT_MIN


def encode_png(size: int) -> EncodedImage:
    """Noise PNG whose file is exactly ``size`` bytes, header slot at ``PNG_HEADER_AT``."""
    _check_size("png", size, min_png_size())
    budget = size - _PNG_SLOT_CHUNK - _PNG_CHUNK_OVERHEAD
    bare, (width, height) = _fit(_png_bare, budget)
    if bare[8:16] != b"\x00\x00\x00\x0dIHDR" or bare[-12:-8] != b"\x00\x00\x00\x00":
        raise AssertionError("Pillow wrote a PNG that does not start with IHDR or end with IEND")
    slot = _png_chunk(b"tEXt", PNG_TEXT_KEYWORD + b"\x00" + header(0, 0, 0))
    pad_len = budget - len(bare)
    pad = _png_chunk(PNG_PAD_TYPE, random.Random(SEED + 1).randbytes(pad_len))
    data = b"".join((bare[:_PNG_IHDR_END], slot, bare[_PNG_IHDR_END:-12], pad, bare[-12:]))
    assert len(data) == size, (len(data), size)
    return EncodedImage("png", data, width, height, PNG_HEADER_AT)


def encode_jpeg(size: int) -> EncodedImage:
    """Noise JPEG whose file is exactly ``size`` bytes, header slot at ``JPEG_HEADER_AT``."""
    _check_size("jpeg", size, min_jpeg_size())
    budget = size - _JPEG_SLOT_SEGMENT - _JPEG_SEGMENT_MIN
    bare, (width, height) = _fit(_jpeg_bare, budget)
    if not bare.startswith(_JPEG_SOI):
        raise AssertionError("Pillow wrote a JPEG that does not start with SOI")
    slot = _jpeg_com(header(0, 0, 0))
    pad = _jpeg_pad(size - len(bare) - len(slot))
    data = b"".join((_JPEG_SOI, slot, pad, bare[len(_JPEG_SOI) :]))
    assert len(data) == size, (len(data), size)
    return EncodedImage("jpeg", data, width, height, JPEG_HEADER_AT)


def _check_size(fmt: str, size: int, minimum: int) -> None:
    if size < minimum:
        raise ValueError(
            f"a {fmt} image of {size} bytes is too small: the smallest is {minimum} bytes "
            f"(a 1x1 pixel {fmt} with the lab's header and padding)"
        )


@functools.cache
def _noise(length: int) -> bytes:
    return random.Random(SEED).randbytes(length)


def _png_bare(width: int, height: int, noise: bytes | memoryview) -> bytes:
    image = Image.frombytes("RGB", (width, height), noise[: width * height * 3])
    out = io.BytesIO()
    # Level 0 stores the noise uncompressed (it would not compress anyway): fast.
    image.save(out, "PNG", compress_level=0)
    return out.getvalue()


def _jpeg_bare(width: int, height: int, noise: bytes | memoryview) -> bytes:
    image = Image.frombytes("RGB", (width, height), noise[: width * height * 3])
    out = io.BytesIO()
    # 4:4:4 at quality 95, like a photo saved for quality: about 2.4 bytes per pixel.
    image.save(out, "JPEG", quality=JPEG_QUALITY, subsampling=0)
    return out.getvalue()


def _dims(pixels: int) -> tuple[int, int]:
    width = max(1, math.isqrt(pixels))
    return width, max(1, pixels // width)


def _fit(
    encode: Callable[[int, int, bytes | memoryview], bytes], budget: int
) -> tuple[bytes, tuple[int, int]]:
    """The largest-found encoding of noise that is at most ``budget`` bytes long.

    The encoded size of noise is close to ``base + pixels * bytes_per_pixel``: estimate
    both from a 1x1 and a small probe, then correct with the measured size (a few
    encodes in all).
    """
    noise = b""

    def run(pixels: int) -> tuple[bytes, tuple[int, int]]:
        nonlocal noise
        width, height = _dims(pixels)
        need = width * height * 3
        if need > len(noise):
            noise = random.Random(SEED).randbytes(need + need // 16)
        return encode(width, height, memoryview(noise)[:need]), (width, height)

    best, best_dims = run(1)
    base = len(best)
    if len(best) > budget:  # _check_size keeps this from happening
        raise ValueError(f"no image fits in {budget} bytes")
    probe_pixels = min(64 * 64, max(1, (budget - base) // 8))
    probe, probe_dims = run(probe_pixels)
    fits, over = 1, None  # pixel counts known to fit / known to be too many
    if len(probe) <= budget:
        best, best_dims = probe, probe_dims
        fits = probe_dims[0] * probe_dims[1]
    per_pixel = max(0.01, (len(probe) - base) / max(1, probe_dims[0] * probe_dims[1] - 1))
    pixels = max(1, int((budget - base) / per_pixel * 0.998))
    tried: set[tuple[int, int]] = {(1, 1), probe_dims}
    for _ in range(8):
        if _dims(pixels) in tried:
            break
        data, dims = run(pixels)
        tried.add(dims)
        count = dims[0] * dims[1]
        if len(data) <= budget:
            fits = max(fits, count)
            if len(data) > len(best):
                best, best_dims = data, dims
        else:
            over = count if over is None else min(over, count)
        if budget - len(best) <= max(64, budget // 1000):  # within 0.1 %: pad the rest
            break
        per_pixel = max(0.01, (len(data) - base) / max(1, count - 1))
        pixels = int((budget - base) / per_pixel)
        if over is not None and pixels >= over:
            pixels = (fits + over) // 2
        pixels = max(pixels, fits + 1)
    return best, best_dims


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    crc = zlib.crc32(data, zlib.crc32(kind))
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)


def _jpeg_com(data: bytes) -> bytes:
    if len(data) > _JPEG_SEGMENT_MAX - 4:
        raise ValueError(f"a COM segment holds at most 65533 bytes, not {len(data)}")
    return _JPEG_COM + struct.pack(">H", len(data) + 2) + data


def _jpeg_pad(total: int) -> bytes:
    """COM segments of exactly ``total`` bytes in all (``total`` >= 4)."""
    if total < _JPEG_SEGMENT_MIN:
        raise ValueError(f"cannot pad a JPEG by {total} bytes (a COM segment is 4 at least)")
    sizes: list[int] = []
    left = total
    while left > _JPEG_SEGMENT_MAX:
        sizes.append(_JPEG_SEGMENT_MAX)
        left -= _JPEG_SEGMENT_MAX
    if left < _JPEG_SEGMENT_MIN:  # borrow from the previous (full) segment
        sizes[-1] -= _JPEG_SEGMENT_MIN - left
        left = _JPEG_SEGMENT_MIN
    sizes.append(left)
    fill = random.Random(SEED + 2).randbytes(sum(sizes) - 4 * len(sizes))
    parts: list[bytes] = []
    at = 0
    for segment in sizes:
        n = segment - 4
        parts.append(_jpeg_com(fill[at : at + n]))
        at += n
    return b"".join(parts)
