"""Following the live stream (SSE) with automatic resume: the subscription's state and operation.

    state = StreamState(tenants=["acme"], kind="payment.*")
    for event in client.run_stream(state):          # what Client.subscribe does
        ...
    state.cursor                                      # resume point, e.g. Cursor("acme:121")

The state tracks the cursor from every event (the SSE id is the cursor after the event; span
envelopes also advance it), so after a disconnect, a `dropped` message or a server restart the
subscription reconnects from where it stopped: every entry after the last one received comes
again, none is skipped. Reconnects back off under `reconnect`; consecutive connections that end
before any message count as failures, and the subscription raises `ConnectionFailed` once the
policy gives up (the cursor is kept, to resume with another client or base URL).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from logline.client.core import Core
from logline.client.errors import ConnectionFailed, error_for
from logline.client.protocol import (
    Close,
    Emit,
    Operation,
    Read,
    Request,
    Sleep,
    expect_chunk,
    params,
)
from logline.client.retry import RetryPolicy
from logline.client.sse import (
    Cursor,
    DroppedEvent,
    LiveEvent,
    SpanEvent,
    SseParser,
    StreamEvent,
    envelope,
)

DEFAULT_RECONNECT = RetryPolicy(attempts=8, base_s=0.25, cap_s=5.0)
# Longer than the server's heartbeat (15 s by default): silence this long means a dead connection.
DEFAULT_READ_TIMEOUT_S = 45.0
# After `dropped: shutdown` the server is going away: coming back at once would only reach it
# while it still drains its connections.
SHUTDOWN_PAUSE_S = 1.0


class StreamState:
    """One subscription: what it asked for, where it is, and whether it has caught up."""

    def __init__(
        self,
        tenants: Sequence[str] = (),
        kind: str | None = None,
        cursor: Cursor | str | None = None,
        *,
        control: bool = False,
        on_live: Callable[[str], None] | None = None,
        reconnect: RetryPolicy = DEFAULT_RECONNECT,
        read_timeout_s: float = DEFAULT_READ_TIMEOUT_S,
    ) -> None:
        self.tenants = tuple(tenants)
        self.kind = kind
        if isinstance(cursor, str) and cursor.strip().isdigit() and len(self.tenants) == 1:
            cursor = Cursor({self.tenants[0]: int(cursor)})  # PROTOCOL §12: a bare n, one tenant
        self.cursor = Cursor.parse(cursor) if isinstance(cursor, str) else (cursor or Cursor())
        self.control = control  # emit live, heartbeat and dropped events too
        self.on_live = on_live
        self.reconnect = reconnect
        self.read_timeout_s = read_timeout_s
        self.live = False  # caught up on the current connection
        self.connections = 0
        self.received = False  # any message on the current connection
        self.shutdown = False  # the server said it is shutting down
        self._parser = SseParser()

    def request(self) -> Request:
        query = params(tenant=list(self.tenants) or None, kind=self.kind)
        if self.cursor:
            query += (("from", str(self.cursor)),)
        return Request(
            "GET",
            "/v1/stream",
            query,
            headers={"Accept": "text/event-stream"},
            idempotent=True,
            stream=True,
            timeout_s=self.read_timeout_s,
        )

    def opened(self) -> None:
        self._parser = SseParser()
        self.connections += 1
        self.live = self.received = self.shutdown = False

    def closed(self) -> None:
        self.live = False

    def feed(self, chunk: bytes) -> list[StreamEvent]:
        """The events in `chunk`, with the cursor and `live` updated for each."""
        events = []
        for sse in self._parser.feed(chunk):
            self.received = True
            event = envelope(sse.data)
            if sse.id:
                self.cursor.merge(Cursor.parse(sse.id))
            if isinstance(event, SpanEvent):
                self.cursor.advance(event.tenant, event.seq)
            elif isinstance(event, LiveEvent | DroppedEvent):
                self.cursor.merge(Cursor.parse(event.cursor))
                self.live = isinstance(event, LiveEvent)
                self.shutdown = isinstance(event, DroppedEvent) and event.reason == "shutdown"
                if self.live and self.on_live is not None:
                    self.on_live(str(self.cursor))
            if event is not None:
                events.append(event)
        return events


def follow(core: Core, state: StreamState) -> Operation[None]:
    """Connect, emit events, and reconnect from the cursor, until the caller stops iterating or
    the reconnect policy gives up."""
    failures = 0
    while True:
        response = yield from core.call(state.request(), state.reconnect)
        if not response.ok:
            raise error_for(response.status, response.headers, response.content)
        state.opened()
        try:
            while chunk := expect_chunk((yield Read())):
                for event in state.feed(chunk):
                    if state.control or isinstance(event, SpanEvent):
                        yield Emit(event)
        except ConnectionFailed:
            pass  # a broken stream is resumed like a closed one
        yield Close()
        state.closed()
        failures = 0 if state.received else failures + 1
        delay = state.reconnect.decide(attempt=max(failures - 1, 0), idempotent=True, rng=core.rng)
        if delay is None:
            raise ConnectionFailed(
                f"the stream closed {failures} times in a row without a message; resume from "
                f"cursor {state.cursor or '(none)'}",
                sent=True,
            )
        yield Sleep(max(delay, SHUTDOWN_PAUSE_S) if state.shutdown else delay)
