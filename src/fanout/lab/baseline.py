"""The article's server, verbatim: the baseline fanout is measured against.

From the article in ``seed/`` (itself taken from the FastAPI documentation): one
process, a module-level set of sockets, and a broadcast loop that awaits each
``send_text`` in turn. Kept exactly as written, prints included (they are part of its
cost); only ``type: ignore`` comments (for ``mypy --strict``) and the blank lines of
``ruff format`` were added. Run it with uvicorn's defaults::

    python -m uvicorn fanout.lab.baseline:app --port 8001

Known faults, kept on purpose because the lab measures them: a slow reader stalls the
broadcast for everyone (each ``send_text`` is awaited in turn), and a connect or
disconnect while a broadcast awaits changes the set during its iteration.
"""

from fastapi import FastAPI, WebSocket
from fastapi.websockets import WebSocketDisconnect

app = FastAPI()

# TIPS: 接続中の WebSocket クライアントを管理
connected_clients = set()  # type: ignore[var-annotated]


@app.websocket("/ws")
async def websocket_endpoint(websocket: WebSocket):  # type: ignore[no-untyped-def]
    await websocket.accept()
    connected_clients.add(websocket)
    print("Client connected")

    try:
        while True:
            # TIPS: メッセージを受取
            data = await websocket.receive_text()
            print(f"Received: {data}")

            # TIPS: 受け取ったメッセージを全クライアントにブロードキャスト
            for client in connected_clients:
                await client.send_text(f"Server received: {data}")

    except WebSocketDisconnect:
        # TIPS: 切断する
        print("Client disconnected")
        connected_clients.remove(websocket)
