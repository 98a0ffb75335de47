"""The feed's listening thread: notices reach their hooks, and a lost connection is reopened."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from logline.server import feed as feed_module
from logline.server.feed import Feed
from logline.store.interface import IDLE, Notice


class FlakyStore:
    """`listen` fails once mid-stream (as a database restart does), then works."""

    def __init__(self) -> None:
        self.opened = 0

    def listen(self, stop: Callable[[], bool]) -> Iterator[Notice]:
        self.opened += 1
        return self._notices(self.opened, stop)

    def _notices(self, n: int, stop: Callable[[], bool]) -> Iterator[Notice]:
        if n == 1:
            yield Notice("jobs", "acme")
            raise ConnectionError("the connection is closed")
        yield Notice("jobs", "acme")
        while not stop():
            yield IDLE


def test_a_lost_listening_connection_is_reopened(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(feed_module, "LISTEN_RETRY_S", 0.01)
    store = FlakyStore()
    feed = Feed(store)  # type: ignore[arg-type]
    woken = threading.Semaphore(0)
    feed.jobs_listeners.append(woken.release)
    thread = threading.Thread(target=feed._listen, args=(store.listen(feed._stopping.is_set),))
    thread.start()
    try:
        assert woken.acquire(timeout=5) and woken.acquire(timeout=5)
        assert store.opened == 2
    finally:
        feed._stopping.set()
        thread.join(5)
    assert not thread.is_alive()


def test_log_notices_wake_the_fan_out(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[Any] = []
    feed = Feed(FlakyStore())  # type: ignore[arg-type]
    monkeypatch.setattr(feed, "committed", lambda tenant, size: seen.append((tenant, size)))
    feed._listen(iter([Notice("log", "acme", 7), IDLE, Notice("log", "beta", 2)]))
    assert seen == [("acme", 7), ("beta", 2)]
