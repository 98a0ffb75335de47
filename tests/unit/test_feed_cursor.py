"""The stream cursor never runs ahead of what was sent, whatever the interleaving of catch-up and
live delivery across tenants (a stand-in store makes one tenant's catch-up slow on purpose)."""

from __future__ import annotations

import asyncio
import json
import time
from types import SimpleNamespace
from typing import Any

import pytest

from logline.server import feed as feed_module
from logline.server.feed import Feed, Message, parse_cursor

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class SlowStore:
    """Just what the feed reads: log heads, and entries (tenant `b` slowly)."""

    def __init__(self) -> None:
        self.sizes = {"a": 5, "b": 5}

    def log_head(self, tenant: str) -> Any:
        return SimpleNamespace(size=self.sizes[tenant])

    def listen(self, stop: Any) -> None:
        return None


def _read(store: SlowStore, tenant: str, start: int, end: int) -> list[Message]:
    if tenant == "b":
        time.sleep(0.3)
    stop = min(end, store.sizes[tenant])
    return [Message(tenant, s, "k.k", json.dumps({"type": "span"})) for s in range(start, stop)]


async def test_live_cursor_does_not_skip_queued_entries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(feed_module, "_read", _read)
    store = SlowStore()
    feed = Feed(store, poll_s=100)  # type: ignore[arg-type]
    await feed.start()
    try:
        sub = await feed.subscribe({"a": 5, "b": 0})

        async def commit_a() -> None:  # `a` turns live at once, then grows during b's catch-up
            await asyncio.sleep(0.1)
            store.sizes["a"] = 8
            feed._grew("a", 8)

        grower = asyncio.create_task(commit_a())
        messages = sub.messages(heartbeat_s=10)
        sent: list[tuple[str, int]] = []
        while True:
            batch = await anext(messages)
            for message in batch:
                sub.sending(message)
                if message.seq >= 0:
                    sent.append((message.tenant, message.seq))
                    assert parse_cursor(sub.cursor, ["a", "b"])[message.tenant] == message.seq + 1
            if any(m.kind == "live" for m in batch):
                break
        await grower
        # At `live`, the cursor covers exactly what was sent: a resume from it loses nothing.
        at_live = parse_cursor(sub.cursor, ["a", "b"])
        assert at_live["a"] == 1 + max([s for t, s in sent if t == "a"], default=4)
        assert at_live["b"] == 5
        rest = await anext(messages)
        assert [(m.tenant, m.seq) for m in rest] == [("a", s) for s in range(at_live["a"], 8)]
        for message in rest:
            sub.sending(message)
        assert parse_cursor(sub.cursor, ["a", "b"]) == {"a": 8, "b": 5}
    finally:
        await feed.stop()
