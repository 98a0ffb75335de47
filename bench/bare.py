"""The bare framework the server benchmarks compare against: FastAPI on uvicorn, doing nothing.

    python -m bench.bare            # prints `Bare app serving at http://127.0.0.1:<port>`

The same stack and uvicorn settings as `logline serve` (uvloop, httptools, no access log), with
routes shaped like LogLine's but without its work:

* `POST /v1/tenants/{tenant}/spans`: a sync endpoint (run in the thread pool, as LogLine's are)
  that parses the JSON body and answers 201 with a small JSON object;
* `GET /v1/tenants/{tenant}/spans`: a sync endpoint answering a fixed JSON page;
* `WS /v1/stream/ws` and `GET /v1/stream` (SSE): subscribers, each with its own queue and sender
  task, as LogLine's stream has; `POST /publish` puts its body, as is, on every queue.

Whatever LogLine adds to the bare figures is its own cost: auth, validation, signatures, storage.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from typing import Any

import uvicorn
from fastapi import FastAPI, Request, WebSocket
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.websockets import WebSocketDisconnect

BANNER = "Bare app serving at"
PAGE: dict[str, Any] = {"items": [], "next_cursor": None}


def create_app() -> FastAPI:
    app = FastAPI()
    queues: set[asyncio.Queue[str]] = set()

    @app.post("/v1/tenants/{tenant}/spans", status_code=201)
    def append(tenant: str, span: dict[str, Any]) -> JSONResponse:
        body = span.get("body", {})
        return JSONResponse({"span_id": body.get("id"), "seq": 0, "status": "sequenced"}, 201)

    @app.get("/v1/tenants/{tenant}/spans")
    def query(tenant: str, limit: int = 100) -> JSONResponse:
        return JSONResponse(PAGE)

    @app.post("/publish", status_code=201)
    async def publish(request: Request) -> Response:
        text = (await request.body()).decode()
        for queue in queues:
            queue.put_nowait(text)
        return Response(status_code=201)

    @app.websocket("/v1/stream/ws")
    async def websocket(ws: WebSocket) -> None:
        await ws.accept()
        queue: asyncio.Queue[str] = asyncio.Queue()
        queues.add(queue)
        await ws.send_text('{"v":1,"type":"live"}')

        async def send() -> None:
            while True:
                await ws.send_text(await queue.get())

        async def drain() -> None:
            with contextlib.suppress(WebSocketDisconnect, RuntimeError):
                while True:
                    await ws.receive_text()

        tasks = {asyncio.create_task(send()), asyncio.create_task(drain())}
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            queues.discard(queue)
            for task in tasks:
                task.cancel()
                with contextlib.suppress(BaseException):
                    await task

    @app.get("/v1/stream")
    async def sse() -> StreamingResponse:
        queue: asyncio.Queue[str] = asyncio.Queue()
        queues.add(queue)

        async def events() -> AsyncIterator[str]:
            try:
                yield "event: live\ndata: {}\n\n"
                while True:
                    texts = [await queue.get()]
                    while not queue.empty():
                        texts.append(queue.get_nowait())
                    yield "".join(f"event: span\ndata: {text}\n\n" for text in texts)
            finally:
                queues.discard(queue)

        return StreamingResponse(events(), media_type="text/event-stream")

    return app


class _Server(uvicorn.Server):
    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started and sockets:
            print(f"{BANNER} http://127.0.0.1:{sockets[0].getsockname()[1]}", flush=True)


def main() -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(2048)
    config = uvicorn.Config(
        create_app(), log_config=None, access_log=False, ws_ping_interval=20.0, lifespan="off"
    )
    try:
        _Server(config).run(sockets=[sock])
    finally:
        sock.close()


if __name__ == "__main__":
    main()
