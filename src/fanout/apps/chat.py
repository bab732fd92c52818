"""The chat behind the page at ``/``, written with the Consumer API.

Chat frames are ordinary ``fanout.v1`` publishes; this consumer checks their shape and
stamps the server time on them. Anything else passes through unchanged, so the same
endpoint also serves plain clients and any other ``fanout.v1`` application.

- text: ``data = {"kind": "chat", "name": str, "text": str}``
- image: a binary publish whose payload is ``IMAGE_MAGIC``, a 4-byte big-endian meta
  length, the meta JSON ``{"kind": "image", "name", "mime", "filename"}``, the image bytes.
"""

from __future__ import annotations

import struct
import time
from typing import Any

import orjson

from fanout.core.consumer import Consumer
from fanout.protocol.envelope import Payload

IMAGE_MAGIC = b"FCHATIMG"
MAX_NAME_CHARS = 64
MAX_TEXT_CHARS = 10_000
MAX_META_BYTES = 4096


class ChatConsumer(Consumer):
    async def on_publish(self, room: str, data: Payload) -> Payload:
        if isinstance(data, dict) and data.get("kind") == "chat":
            return self._text(data)
        if isinstance(data, bytes) and data.startswith(IMAGE_MAGIC):
            return self._image(data)
        return data

    def _text(self, data: dict[str, Any]) -> dict[str, Any]:
        name, text = data.get("name"), data.get("text")
        if not isinstance(name, str) or not 0 < len(name) <= MAX_NAME_CHARS:
            self.deny(f"chat 'name' must be 1-{MAX_NAME_CHARS} characters")
        if not isinstance(text, str) or len(text) > MAX_TEXT_CHARS:
            self.deny(f"chat 'text' must be a string of at most {MAX_TEXT_CHARS} characters")
        return {"kind": "chat", "name": name, "text": text, "ts": _now_ms()}

    def _image(self, data: bytes) -> bytes:
        start = len(IMAGE_MAGIC)
        if len(data) < start + 4:
            self.deny("chat image: truncated header")
        (meta_len,) = struct.unpack_from("!I", data, start)
        if meta_len > MAX_META_BYTES or start + 4 + meta_len > len(data):
            self.deny("chat image: meta length is wrong")
        try:
            meta = orjson.loads(data[start + 4 : start + 4 + meta_len])
        except orjson.JSONDecodeError:
            self.deny("chat image: meta is not JSON")
        name = meta.get("name") if isinstance(meta, dict) else None
        if not isinstance(name, str) or not 0 < len(name) <= MAX_NAME_CHARS:
            self.deny(f"chat image: 'name' must be 1-{MAX_NAME_CHARS} characters")
        mime = meta.get("mime")
        if not isinstance(mime, str) or not mime.startswith("image/"):
            self.deny("chat image: 'mime' must be an image type")
        filename = meta.get("filename")
        stamped = orjson.dumps(
            {
                "kind": "image",
                "name": name,
                "mime": mime,
                "filename": filename if isinstance(filename, str) else "",
                "ts": _now_ms(),
            }
        )
        image = memoryview(data)[start + 4 + meta_len :]
        return b"".join((IMAGE_MAGIC, struct.pack("!I", len(stamped)), stamped, image))


def _now_ms() -> int:
    return int(time.time() * 1000)
