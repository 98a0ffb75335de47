"""The live stream's fan-out over a real store: catch-up, live delivery, filters, cursors, drops.

Writers append through `Log` in threads (as the server's request threads do); the feed runs on the
test's event loop.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from helpers import OTHER_TENANT, TENANT, make_identity, make_span
from logline.errors import InvalidInput
from logline.ledger.log import Log
from logline.server.feed import Dropped, Feed, Subscription, kind_matcher, parse_cursor

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def feed(log: Log) -> AsyncIterator[Feed]:
    feed = Feed(log.store, poll_s=0.05)
    log.listeners.append(feed.committed)
    await feed.start()
    try:
        yield feed
    finally:
        await feed.stop()
        log.listeners.remove(feed.committed)


async def _collect(sub: Subscription, count: int, timeout: float = 10.0) -> list[dict[str, Any]]:
    """The next `count` span envelopes (skipping live and heartbeat messages)."""
    found: list[dict[str, Any]] = []

    async def run() -> None:
        async for batch in sub.messages(heartbeat_s=0.05):
            for message in batch:
                sub.sending(message)
                envelope = json.loads(message.text)
                if envelope["type"] == "span":
                    found.append(envelope)
            if len(found) >= count:
                return

    await asyncio.wait_for(run(), timeout)
    return found


async def _append(log: Log, spans: list[Any]) -> None:
    await asyncio.to_thread(log.append_batch, spans, wait="sequenced")


async def test_catch_up_then_live_in_order(log: Log, feed: Feed) -> None:
    author, key = make_identity(log, TENANT, "alice")  # seq 0
    await _append(log, [make_span(key, author, title=f"before {i}") for i in range(3)])
    sub = await feed.subscribe({TENANT: 0})
    early = await _collect(sub, 4)
    assert [e["seq"] for e in early] == [0, 1, 2, 3]
    await _append(log, [make_span(key, author, title=f"after {i}") for i in range(3)])
    late = await _collect(sub, 3)
    assert [e["seq"] for e in late] == [4, 5, 6]
    assert [e["span"]["body"]["title"] for e in late] == ["after 0", "after 1", "after 2"]
    assert all(e["v"] == 1 and e["tenant"] == TENANT for e in early + late)
    assert sub.cursor == f"{TENANT}:7"
    sub.close()
    assert feed.subscribers == 0


async def test_from_now_skips_history_and_filters_kinds(log: Log, feed: Feed) -> None:
    author, key = make_identity(log, TENANT, "alice")
    await _append(log, [make_span(key, author, kind="payment.approved")])
    sub = await feed.subscribe({TENANT: None}, kind="payment.*")
    ready = sub.messages(heartbeat_s=0.05)
    first = await anext(ready)
    assert json.loads(first[0].text)["type"] == "live"
    await _append(
        log,
        [
            make_span(key, author, kind="order.created"),
            make_span(key, author, kind="payment.refunded"),
        ],
    )
    batch = await asyncio.wait_for(anext(ready), 10)
    kinds = [json.loads(m.text)["span"]["body"]["kind"] for m in batch if m.seq >= 0]
    assert kinds == ["payment.refunded"]
    sub.close()


async def test_several_tenants_and_a_resumable_cursor(log: Log, feed: Feed) -> None:
    a_author, a_key = make_identity(log, TENANT, "alice")
    b_author, b_key = make_identity(log, OTHER_TENANT, "bob")
    sub = await feed.subscribe({TENANT: 0, OTHER_TENANT: 0})
    got = await _collect(sub, 2)
    assert {(e["tenant"], e["seq"]) for e in got} == {(TENANT, 0), (OTHER_TENANT, 0)}
    await _append(log, [make_span(a_key, a_author)])
    await _append(log, [make_span(b_key, b_author, tenant=OTHER_TENANT)])
    got = await _collect(sub, 2)
    assert {(e["tenant"], e["seq"]) for e in got} == {(TENANT, 1), (OTHER_TENANT, 1)}
    cursor = sub.cursor
    sub.close()
    assert parse_cursor(cursor, [TENANT, OTHER_TENANT]) == {TENANT: 2, OTHER_TENANT: 2}
    # Resuming from the cursor gives exactly what came after it.
    await _append(log, [make_span(a_key, a_author, title="missed")])
    resumed = await feed.subscribe(dict(parse_cursor(cursor, [TENANT, OTHER_TENANT])))
    [missed] = await _collect(resumed, 1)
    assert (missed["tenant"], missed["seq"], missed["span"]["body"]["title"]) == (
        TENANT,
        2,
        "missed",
    )
    resumed.close()


async def test_a_slow_subscriber_is_dropped_and_writers_do_not_wait(log: Log, feed: Feed) -> None:
    author, key = make_identity(log, TENANT, "alice")
    slow = await feed.subscribe({TENANT: None}, buffer=3)
    fast = await feed.subscribe({TENANT: None}, buffer=1000)
    slow_messages = slow.messages(heartbeat_s=0.05)
    await anext(slow_messages)  # live; then never read again
    fast_task = asyncio.create_task(_collect(fast, 10))
    for i in range(10):
        await _append(log, [make_span(key, author, title=f"span {i}")])  # never blocks
    assert [e["seq"] for e in await fast_task] == list(range(1, 11))
    with pytest.raises(Dropped) as dropped:
        async for _ in slow_messages:
            pass
    assert dropped.value.reason == "slow_consumer"
    assert feed.subscribers == 1
    fast.close()


async def test_shutdown_drops_everyone_with_a_reason(log: Log, feed: Feed) -> None:
    make_identity(log, TENANT, "alice")
    sub = await feed.subscribe({TENANT: None})
    messages = sub.messages(heartbeat_s=0.05)
    await anext(messages)
    feed.drop_all("shutdown", "bye")
    with pytest.raises(Dropped) as dropped:
        async for _ in messages:
            pass
    assert dropped.value.reason == "shutdown"


async def test_polling_notices_writes_from_elsewhere(log: Log, feed: Feed) -> None:
    author, key = make_identity(log, TENANT, "alice")
    sub = await feed.subscribe({TENANT: None})
    log.listeners.remove(feed.committed)  # as if another process wrote: no local wake-up
    try:
        await _append(log, [make_span(key, author, title="from elsewhere")])
        [got] = await _collect(sub, 1)
        assert got["span"]["body"]["title"] == "from elsewhere"
    finally:
        log.listeners.append(feed.committed)
        sub.close()


def test_cursor_and_kind_parsing() -> None:
    assert parse_cursor("12", ["acme"]) == {"acme": 12}
    assert parse_cursor("acme:3,beta:4", ["acme", "beta"]) == {"acme": 3, "beta": 4}
    for bad in ("acme", "acme:-1", "acme:x", "other:1", "12,13", "Bad Tenant:1"):
        with pytest.raises(InvalidInput):
            parse_cursor(bad, ["acme", "beta"])
    match = kind_matcher("payment.*")
    assert match is not None and match("payment.approved") and not match("order.created")
    one = kind_matcher("order.c?eated")
    assert one is not None and one("order.created") and not one("order.cxxeated")
    assert kind_matcher(None) is None and kind_matcher("*") is None
    for bad in ("Payment.*", "a b", "x" * 200, "(.*)"):
        with pytest.raises(InvalidInput):
            kind_matcher(bad)


async def test_polling_continues_while_local_commits_keep_waking(log: Log) -> None:
    """Writes to B by "another process" (no wake-up) arrive although A's local commits never
    leave the feed idle for a whole poll interval."""
    a_author, a_key = make_identity(log, TENANT, "alice")
    b_author, b_key = make_identity(log, OTHER_TENANT, "bob")
    feed = Feed(log.store, poll_s=0.2)

    def only_tenant_a(tenant: str, size: int) -> None:
        if tenant == TENANT:
            feed.committed(tenant, size)

    log.listeners.append(only_tenant_a)
    await feed.start()
    stop = asyncio.Event()

    async def keep_a_busy() -> None:
        while not stop.is_set():
            await _append(log, [make_span(a_key, a_author)])
            await asyncio.sleep(0.05)

    busy = asyncio.create_task(keep_a_busy())
    try:
        sub = await feed.subscribe({OTHER_TENANT: None})
        await _append(log, [make_span(b_key, b_author, tenant=OTHER_TENANT, title="from B")])
        [got] = await _collect(sub, 1, timeout=5)
        assert got["span"]["body"]["title"] == "from B"
        sub.close()
    finally:
        stop.set()
        await busy
        await feed.stop()
        log.listeners.remove(only_tenant_a)
