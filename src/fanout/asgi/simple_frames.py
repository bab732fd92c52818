"""Reading the frames nearly every client sends, without websockets' parser.

A client's message is almost always one frame: FIN set, text or binary, masked, no
extension bits, shorter than 64 KiB. websockets parses each frame with a chain of
generators (about 4 us in Python, more once the kernel's writes to a hundred sockets
have cooled the caches); these frames need a header check, an unmask (websockets' own
C function) and, for text, a UTF-8 decode. Anything else (control frames, fragments,
unmasked or oversized frames, invalid UTF-8, a frame cut off by the end of a read) is
left to websockets, which answers it as it always has.
"""

from __future__ import annotations

try:
    from websockets.speedups import apply_mask
except ImportError:  # websockets built without its C extension
    from websockets.utils import apply_mask

_FIN_TEXT = 0x81
_FIN_BINARY = 0x82
_MASKED = 0x80


def take_simple_frames(data: bytes, max_size: int | None) -> tuple[list[str | bytes], int]:
    """The messages of the simple frames that start ``data`` (text decoded, binary as
    bytes), and how many bytes of ``data`` they took: the rest starts at the first
    frame that is not simple or not complete in ``data``."""
    messages: list[str | bytes] = []
    at = 0
    size = len(data)
    while size - at >= 6:  # two header bytes and the mask at least
        first = data[at]
        second = data[at + 1]
        if (first != _FIN_TEXT and first != _FIN_BINARY) or not second & _MASKED:
            break
        length = second & 0x7F
        mask_at = at + 2
        if length == 126:
            length = int.from_bytes(data[mask_at : mask_at + 2], "big")
            mask_at += 2
        elif length == 127:  # 64 KiB or more: rare, websockets reads those
            break
        end = mask_at + 4 + length
        if end > size or (max_size is not None and length > max_size):
            break
        payload = apply_mask(data[mask_at + 4 : end], data[mask_at : mask_at + 4])
        if first == _FIN_TEXT:
            try:
                messages.append(payload.decode())
            except UnicodeDecodeError:  # websockets' path answers it with 1007
                break
        else:
            messages.append(payload)
        at = end
    return messages, at


def frame_length(data: bytes, at: int) -> int | None:
    """The bytes of the frame whose header starts at ``data[at]`` (header, mask and
    payload), or None while its header is not complete in ``data``."""
    if len(data) - at < 2:
        return None
    second = data[at + 1]
    length = second & 0x7F
    header = 2 + (4 if second & _MASKED else 0)
    if length == 126:
        if len(data) - at < 4:
            return None
        length = int.from_bytes(data[at + 2 : at + 4], "big")
        header += 2
    elif length == 127:
        if len(data) - at < 10:
            return None
        length = int.from_bytes(data[at + 2 : at + 10], "big")
        header += 8
    return header + length
