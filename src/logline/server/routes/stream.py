"""The live stream over Server-Sent Events and WebSocket (envelopes: docs/PROTOCOL.md §12).

    GET /v1/stream?tenant=acme&kind=payment.*          (SSE; resume with Last-Event-ID)
    WS  /v1/stream/ws?tenant=acme&from=acme:120        (WebSocket; resume with `from`)

Both subscribe to the same `Feed`. An SSE event's id is the subscription's cursor after that
event, so a browser's EventSource resumes exactly where it stopped.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Query, Request, WebSocket
from fastapi.responses import StreamingResponse
from starlette.requests import HTTPConnection
from starlette.websockets import WebSocketDisconnect

from logline.errors import InvalidInput, LogLineError
from logline.identity.ids import check_tenant
from logline.observe.metrics import DropReason, Transport
from logline.server.auth import authenticate, authorize, limit, services_of
from logline.server.feed import Dropped, Message, Subscription, envelope, parse_cursor
from logline.server.problems import problem_for
from logline.server.roles import Permission

router = APIRouter(tags=["stream"])
MAX_TENANTS = 16
WS_DROPPED = 4008  # application close code: dropped (reason in the close frame and last message)
WS_POLICY = 1008


def _may_read(conn: HTTPConnection, tenants: list[str]) -> None:
    services = services_of(conn)
    for tenant in tenants:
        authorize(services, authenticate(services, conn, tenant), Permission.READ)


async def _subscribe(
    conn: HTTPConnection,
    tenants: list[str] | None,
    kind: str | None,
    position: str | None,
    transport: Transport,
) -> Subscription:
    services = services_of(conn)

    def check() -> list[str]:
        principal = authenticate(services, conn, None)
        limit(services, "stream", principal.rate_key)
        wanted = sorted(set(tenants or principal.tenants))
        if not wanted or len(wanted) > MAX_TENANTS:
            raise InvalidInput(f"subscribe to 1 to {MAX_TENANTS} tenants")
        for tenant in wanted:
            check_tenant(tenant)
        _may_read(conn, wanted)
        return wanted

    wanted = await asyncio.to_thread(check)
    positions: dict[str, int | None] = dict.fromkeys(wanted)
    if position:
        positions.update(parse_cursor(position, wanted))
    sub = await services.feed.subscribe(
        positions, kind=kind, buffer=services.settings.stream_buffer, transport=transport
    )
    services.metrics.stream_subscribed(transport)
    return sub


async def _still_allowed(conn: HTTPConnection, sub: Subscription, last: float) -> float:
    """Check the credential and memberships again once per heartbeat interval: a revoked
    session, key or membership ends the stream (dropped, reason `revoked`)."""
    now = time.monotonic()
    if now - last < services_of(conn).settings.stream_heartbeat_s:
        return last
    try:
        await asyncio.to_thread(_may_read, conn, sorted(sub.next))
    except LogLineError as exc:
        sub.drop("revoked", f"reading is no longer allowed: {exc}")
        raise sub.dropped or Dropped("revoked", str(exc)) from None
    return now


def _finish(conn: HTTPConnection, sub: Subscription, reason: DropReason | None) -> None:
    services = services_of(conn)
    sub.close()
    services.metrics.stream_unsubscribed(sub.transport)
    if reason is not None:
        services.metrics.stream_dropped(reason)


def _sse(message: Message, sub: Subscription) -> str:
    sub.sending(message)
    event = "span" if message.seq >= 0 else message.kind
    return f"id: {sub.cursor}\nevent: {event}\ndata: {message.text}\n\n"


@router.get(
    "/v1/stream",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}}},
)
async def sse(
    request: Request,
    tenant: Annotated[list[str] | None, Query()] = None,
    kind: str | None = None,
    position: Annotated[str | None, Query(alias="from")] = None,
) -> StreamingResponse:
    """Server-Sent Events: catch-up from `from` (or Last-Event-ID), then live, with heartbeats."""
    position = request.headers.get("last-event-id") or position
    sub = await _subscribe(request, tenant, kind, position, "sse")
    services = services_of(request)
    heartbeat = services.settings.stream_heartbeat_s

    async def events() -> AsyncIterator[str]:
        reason: DropReason | None = None
        checked = time.monotonic()
        try:
            async for batch in sub.messages(heartbeat):
                checked = await _still_allowed(request, sub, checked)
                text = "".join(_sse(m, sub) for m in batch)
                yield text
                services.metrics.stream_sent("sse", len(batch))
        except Dropped as dropped:
            reason = dropped.reason
            data = envelope(
                "dropped", reason=dropped.reason, detail=dropped.detail, cursor=sub.cursor
            )
            yield f"id: {sub.cursor}\nevent: dropped\ndata: {data}\n\n"
        finally:
            _finish(request, sub, reason)

    return StreamingResponse(
        events(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


@router.websocket("/v1/stream/ws")
async def websocket(
    ws: WebSocket,
    tenant: Annotated[list[str] | None, Query()] = None,
    kind: str | None = None,
    position: Annotated[str | None, Query(alias="from")] = None,
) -> None:
    """WebSocket: the same messages as SSE, one envelope per text frame."""
    try:
        sub = await _subscribe(ws, tenant, kind, position, "websocket")
    except LogLineError as exc:
        problem = problem_for(exc)
        await ws.close(code=WS_POLICY, reason=f"{problem.status} {problem.detail}"[:120])
        return
    await ws.accept()
    reason: DropReason | None = None
    # Reading is how a WebSocket server learns the client left; nothing else is expected.
    reader = asyncio.create_task(_drain(ws))
    sender = asyncio.create_task(_send(ws, sub))
    try:
        await asyncio.wait({reader, sender}, return_when=asyncio.FIRST_COMPLETED)
        if sender.done() and isinstance(sender.exception(), Dropped):
            dropped = sender.exception()
            assert isinstance(dropped, Dropped)
            reason = dropped.reason
            with contextlib.suppress(Exception):
                await ws.send_text(
                    envelope(
                        "dropped", reason=dropped.reason, detail=dropped.detail, cursor=sub.cursor
                    )
                )
                await ws.close(code=WS_DROPPED, reason=dropped.reason)
    finally:
        for task in (reader, sender):
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
        _finish(ws, sub, reason)


async def _send(ws: WebSocket, sub: Subscription) -> None:
    services = services_of(ws)
    checked = time.monotonic()
    with contextlib.suppress(WebSocketDisconnect):
        async for batch in sub.messages(services.settings.stream_heartbeat_s):
            checked = await _still_allowed(ws, sub, checked)
            for message in batch:
                await ws.send_text(message.text)
                sub.sending(message)
            services.metrics.stream_sent("websocket", len(batch))


async def _drain(ws: WebSocket) -> None:
    with contextlib.suppress(WebSocketDisconnect, RuntimeError):
        while True:
            await ws.receive_text()
