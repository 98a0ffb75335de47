"""The live stream's fan-out: committed entries to every subscriber that asked for them.

    subscription = await feed.subscribe({"acme": 120}, kind="payment.*", transport="sse")
    async for batch in subscription.messages(heartbeat_s=15):
        ...                                         # envelopes as JSON text (docs/PROTOCOL.md §11)

One mechanism, whatever wrote the entry: a *wake-up* says a tenant's log grew — from this
process's own commits (`Log.listeners`), from other processes through PostgreSQL `LISTEN/NOTIFY`,
or, where nothing pushes (SQLite shared by several processes), from polling the log heads. The
feed then reads the new entries from the database once, encodes each envelope once, and hands it
to every subscriber that is *live* on that tenant.

A subscriber that starts behind (resuming from a sequence number) first catches up by reading the
database itself, at its own pace, and turns live when it reaches what the feed has published.
Live subscribers get messages through a bounded buffer: one that falls `buffer` messages behind
is dropped with a reason, and writers never wait for anybody.

The feed owns the process's one listening connection, so other processes' other announcements
arrive here too: "jobs" notices (jobs became claimable) go to `jobs_listeners`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import threading
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import Any

from logline.errors import InvalidInput
from logline.identity.ids import check_tenant
from logline.ledger.timefmt import now_ts
from logline.observe.metrics import DropReason, Transport
from logline.store.interface import Notice, Store, StoredSpan
from logline.store.sql import check_kind_glob

ENVELOPE_VERSION = 1
PAGE = 500
LISTEN_RETRY_S = 0.5  # after a lost listening connection; doubles up to the maximum
LISTEN_RETRY_MAX_S = 10.0
log = logging.getLogger("logline.server.feed")


def envelope(kind: str, **fields: Any) -> str:
    return json.dumps({"v": ENVELOPE_VERSION, "type": kind, **fields}, separators=(",", ":"))


def span_envelope(stored: StoredSpan) -> str:
    head = envelope("span", tenant=stored.tenant)
    return head[:-1] + "," + stored.json_text()[1:]


@dataclass(frozen=True, slots=True)
class Message:
    tenant: str
    seq: int  # -1 for messages that are not entries
    kind: str
    text: str


def kind_matcher(pattern: str | None) -> Callable[[str], bool] | None:
    """A kind glob (`payment.*`, `*.failed`, `order.c?eated`) as a predicate."""
    if pattern is None or pattern == "*":
        return None
    check_kind_glob(pattern)
    regex = re.compile(
        "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    )
    return lambda kind: regex.fullmatch(kind) is not None


def parse_cursor(text: str, tenants: list[str]) -> dict[str, int]:
    """`acme:12,beta:40` (or a bare `12` for one tenant) → the next sequence number per tenant."""
    positions: dict[str, int] = {}
    text = text.strip()
    if text.isdigit() and len(tenants) == 1:
        return {tenants[0]: int(text)}
    for part in text.split(","):
        tenant, sep, seq = part.strip().rpartition(":")
        if not sep or not seq.isdigit():
            raise InvalidInput(f"stream position {part!r} is not tenant:seq")
        positions[check_tenant(tenant)] = int(seq)
    unknown = set(positions) - set(tenants)
    if unknown:
        raise InvalidInput(f"stream position names tenants not subscribed: {sorted(unknown)}")
    return positions


def format_cursor(positions: dict[str, int]) -> str:
    return ",".join(f"{tenant}:{seq}" for tenant, seq in sorted(positions.items()))


class Dropped(Exception):
    """The subscriber was dropped, for `reason`."""

    def __init__(self, reason: DropReason, detail: str) -> None:
        self.reason = reason
        self.detail = detail
        super().__init__(f"{reason}: {detail}")


class Subscription:
    """One client's subscription. `next` holds, per tenant, the next sequence number it wants."""

    def __init__(
        self,
        feed: Feed,
        positions: dict[str, int],
        matches: Callable[[str], bool] | None,
        buffer: int,
        transport: Transport,
    ) -> None:
        self.feed = feed
        self.next = dict(positions)  # what has been queued or read for this subscriber
        self.sent = dict(positions)  # what the transport has written: the resume cursor
        self.matches = matches
        self.buffer = buffer
        self.transport = transport
        self.live: set[str] = set()
        self._live_from: dict[str, int] = {}  # per tenant, `next` when it turned live
        self.dropped: Dropped | None = None
        self._items: deque[Message] = deque()
        self._ready = asyncio.Event()

    @property
    def cursor(self) -> str:
        """Where to resume after what was sent (`sent`): every later entry comes again."""
        return format_cursor(self.sent)

    def sending(self, message: Message) -> None:
        """Record that `message` is being written (`cursor` then points after it)."""
        if message.seq >= 0 and message.seq >= self.sent[message.tenant]:
            self.sent[message.tenant] = message.seq + 1

    def _deliver(self, tenant: str, messages: list[Message], end: int) -> None:
        start = self.next[tenant]
        for message in messages:
            if message.seq < start or (self.matches is not None and not self.matches(message.kind)):
                continue
            if len(self._items) >= self.buffer:
                self.drop("slow_consumer", f"{self.buffer} messages unread; resume from the cursor")
                return
            self._items.append(message)
        self.next[tenant] = max(start, end)
        self._ready.set()

    def drop(self, reason: DropReason, detail: str) -> None:
        if self.dropped is None:
            self.dropped = Dropped(reason, detail)
            self.feed._unsubscribe(self)
            self._ready.set()

    def close(self) -> None:
        self.feed._unsubscribe(self)

    async def messages(self, heartbeat_s: float) -> AsyncIterator[list[Message]]:
        """Batches of messages: catch-up first, then live; heartbeats when idle.

        Raises `Dropped` when the feed drops this subscriber.
        """
        async for batch in self._catch_up():
            yield batch
        # Everything a tenant's catch-up read was sent (filtered entries need no second look);
        # what came live since may still wait in the buffer, so not `next`.
        for tenant, seq in self._live_from.items():
            self.sent[tenant] = max(self.sent[tenant], seq)
        yield [Message("", -1, "live", envelope("live", cursor=self.cursor))]
        loop = asyncio.get_running_loop()
        while True:
            if self.dropped is not None:
                raise self.dropped
            if not self._items:
                # A timer handle, not `wait_for`: no task per wake-up per subscriber.
                self._ready.clear()
                timer = loop.call_later(heartbeat_s, self._ready.set)
                try:
                    await self._ready.wait()
                finally:
                    timer.cancel()
                if self.dropped is not None:
                    raise self.dropped
                if not self._items:  # woken by the timer
                    yield [Message("", -1, "heartbeat", envelope("heartbeat", time=now_ts()))]
                    continue
            batch = list(self._items)
            self._items.clear()
            yield batch

    async def _catch_up(self) -> AsyncIterator[list[Message]]:
        for tenant in sorted(self.next):
            while tenant not in self.live:
                if self.dropped is not None:
                    raise self.dropped
                end = self.feed.published.get(tenant, 0)
                start = self.next[tenant]
                if start >= end:
                    # Checked and set with no await in between: the feed publishes nothing
                    # for this tenant that we could miss.
                    self.live.add(tenant)
                    self._live_from[tenant] = start
                    break
                stop = min(end, start + PAGE)
                rows = await asyncio.to_thread(_read, self.feed.store, tenant, start, stop)
                messages = [m for m in rows if self.matches is None or self.matches(m.kind)]
                self.next[tenant] = stop
                if messages:
                    yield messages


def _read(store: Store, tenant: str, start: int, end: int) -> list[Message]:
    return [
        Message(tenant, stored.seq, stored.span.kind, span_envelope(stored))
        for stored in store.spans(tenant, start, end, batch=PAGE)
    ]


class Feed:
    """Per process: wake-ups in, one database read per new entry, fan-out to subscribers."""

    def __init__(self, store: Store, *, poll_s: float = 1.0) -> None:
        self.store = store
        self.poll_s = poll_s
        self.published: dict[str, int] = {}  # per tenant: entries below this were fanned out
        self._subs: dict[str, set[Subscription]] = {}
        self._grown: dict[str, int] = {}
        self._wake = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = threading.Event()
        self._listener: threading.Thread | None = None
        self.closing = False  # shutting down: new subscribers are dropped at once
        # Called from the listening thread when another process made jobs claimable; must be
        # quick and must not raise.
        self.jobs_listeners: list[Callable[[], None]] = []

    # --- lifecycle --------------------------------------------------------------------------------

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._tasks.append(asyncio.create_task(self._run(), name="logline-feed"))
        notifications = self.store.listen(self._stopping.is_set)
        if notifications is not None:
            self._listener = threading.Thread(
                target=self._listen, args=(notifications,), name="logline-listen", daemon=True
            )
            self._listener.start()

    async def stop(self) -> None:
        self.close()
        self._stopping.set()
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        if self._listener is not None:
            await asyncio.to_thread(self._listener.join, 5.0)
            self._listener = None

    def close(self) -> None:
        """Shutdown has begun: drop everyone now, and anyone who subscribes from here on."""
        self.closing = True
        self.drop_all("shutdown", "the server is shutting down; resume from the cursor")

    def drop_all(self, reason: DropReason, detail: str) -> None:
        for subs in list(self._subs.values()):
            for sub in list(subs):
                sub.drop(reason, detail)

    @property
    def subscribers(self) -> int:
        return len({sub for subs in self._subs.values() for sub in subs})

    # --- wake-ups ---------------------------------------------------------------------------------

    def committed(self, tenant: str, size: int) -> None:
        """`Log.listeners` hook: called from writer threads after a commit."""
        loop = self._loop
        if loop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                loop.call_soon_threadsafe(self._grew, tenant, size)

    def _grew(self, tenant: str, size: int) -> None:
        if size > self._grown.get(tenant, -1):
            self._grown[tenant] = size
            self._wake.set()

    def _listen(self, notifications: Iterator[Notice]) -> None:
        """Until the feed stops. A lost connection (the database restarted) is opened again
        after a pause; meanwhile the poll keeps streams going and waiting claims look again on
        their own, so nothing waits for a notice that was missed."""
        pause = LISTEN_RETRY_S
        while True:
            try:
                for notice in notifications:
                    pause = LISTEN_RETRY_S
                    if notice.topic == "log":
                        self.committed(notice.tenant, notice.size)
                    elif notice.topic == "jobs":
                        for listener in self.jobs_listeners:
                            listener()
                return  # stopping
            except Exception as exc:
                log.warning("listening for other processes' commits failed (%s); again in %s s",
                            exc, pause)  # fmt: skip
            if self._stopping.wait(pause):
                return
            pause = min(2 * pause, LISTEN_RETRY_MAX_S)
            notifications = self.store.listen(self._stopping.is_set) or iter(())

    # --- subscribing ------------------------------------------------------------------------------

    async def subscribe(
        self,
        positions: dict[str, int | None],
        *,
        kind: str | None = None,
        buffer: int = 1000,
        transport: Transport = "websocket",
    ) -> Subscription:
        """Subscribe from the given next sequence numbers (None: from now on)."""
        matches = kind_matcher(kind)
        start: dict[str, int] = {}
        for tenant, seq in positions.items():
            if tenant not in self.published:
                head = await asyncio.to_thread(self.store.log_head, tenant)
                # Another subscribe may have set it while this one read.
                self.published.setdefault(tenant, 0 if head is None else head.size)
            start[tenant] = self.published[tenant] if seq is None else seq
        sub = Subscription(self, start, matches, buffer, transport)
        for tenant in start:
            self._subs.setdefault(tenant, set()).add(sub)
        if self.closing:
            sub.drop("shutdown", "the server is shutting down; resume from the cursor elsewhere")
        return sub

    def _unsubscribe(self, sub: Subscription) -> None:
        for tenant in sub.next:
            subs = self._subs.get(tenant)
            if subs is not None:
                subs.discard(sub)
                if not subs:
                    # Nobody follows the tenant now: forget how far it was published, or a later
                    # subscriber "from now" would start from this stale point.
                    del self._subs[tenant]
                    self.published.pop(tenant, None)

    # --- fan-out ----------------------------------------------------------------------------------

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        polled = loop.time()
        while True:
            timer = loop.call_later(self.poll_s, self._wake.set)
            try:
                await self._wake.wait()
            finally:
                timer.cancel()
            self._wake.clear()
            # Poll every poll_s however busy local commits keep us: other processes' writes to
            # other tenants arrive no other way on SQLite.
            if loop.time() - polled >= self.poll_s:
                polled = loop.time()
                await self._poll()
            grown, self._grown = self._grown, {}
            for tenant, size in grown.items():
                if tenant in self._subs:
                    try:
                        await self._publish(tenant, size)
                    except Exception as exc:
                        log.warning("stream fan-out for %s failed, will retry: %s", tenant, exc)
                        self._grown[tenant] = max(size, self._grown.get(tenant, 0))

    async def _poll(self) -> None:
        """Where nothing pushes wake-ups (SQLite shared by processes), look at the log heads."""
        if not self._subs:
            return
        try:
            heads = await asyncio.to_thread(self.store.logs)
        except Exception as exc:
            log.warning("stream poll failed: %s", exc)
            return
        for head in heads:
            if head.tenant in self._subs and head.size > self.published.get(head.tenant, 0):
                self._grew(head.tenant, head.size)

    async def _publish(self, tenant: str, size: int) -> None:
        while self.published.get(tenant, 0) < size and tenant in self._subs:
            start = self.published[tenant]
            end = min(size, start + PAGE)
            messages = await asyncio.to_thread(_read, self.store, tenant, start, end)
            if not messages:
                return
            end = messages[-1].seq + 1
            # Between the read and here nothing else published this tenant: one task publishes.
            for sub in list(self._subs.get(tenant, ())):
                if tenant in sub.live:
                    sub._deliver(tenant, messages, end)
            self.published[tenant] = end
