"""The article's server with a binary path: the baseline for image payloads.

The article asks how to broadcast images, but its own loop (``baseline.py``, kept
verbatim) only does text: ``receive_text`` fails on a binary frame. This twin is what
its reader would write next, and nothing more: the same module-level set, the same
sequential broadcast that awaits each send in turn, the same prints and the same
disconnect handling. What differs:

* it receives with ``websocket.receive()`` (the raw ASGI message) instead of
  ``receive_text()``, so it raises ``WebSocketDisconnect`` itself on a disconnect
  message, as ``receive_text()`` does;
* a text frame is answered exactly like the article (``send_text(f"Server received:
  {data}")``); a binary frame is broadcast unchanged with ``send_bytes`` (an image
  must arrive byte-identical to stay an image);
* for a binary frame it prints the length, not the bytes (printing the repr of an
  image is a cost the article never had, since it has no binary path).

Known faults, kept on purpose: a slow reader stalls the broadcast for everyone, and a
connect or disconnect while a broadcast awaits changes the set during its iteration.
Run it with uvicorn's defaults (see ``baseline_server.py``)::

    python -m uvicorn fanout.lab.baseline_binary:app --port 8001
"""

from fastapi import FastAPI, WebSocket
from fastapi.websockets import WebSocketDisconnect

app = FastAPI()

# TIPS: 接続中の WebSocket クライアントを管理
connected_clients: set[WebSocket] = set()


@app.websocket("/ws")
async def websocket_endpoint(websocket: WebSocket) -> None:
    await websocket.accept()
    connected_clients.add(websocket)
    print("Client connected")

    try:
        while True:
            # TIPS: メッセージを受取 (text or bytes)
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                raise WebSocketDisconnect(message.get("code", 1000), message.get("reason"))
            text: str | None = message.get("text")
            data: bytes | None = message.get("bytes")

            if text is not None:
                print(f"Received: {text}")

                # TIPS: 受け取ったメッセージを全クライアントにブロードキャスト
                for client in connected_clients:
                    await client.send_text(f"Server received: {text}")
            elif data is not None:
                print(f"Received: {len(data)} bytes")

                # TIPS: 受け取ったバイナリ (画像など) をそのまま全クライアントに
                for client in connected_clients:
                    await client.send_bytes(data)

    except WebSocketDisconnect:
        # TIPS: 切断する
        print("Client disconnected")
        connected_clients.remove(websocket)
