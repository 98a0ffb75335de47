"""A small HTTP/1.1 keep-alive client on asyncio streams, for generating load.

    conn = await Connection.open("http://127.0.0.1:8470", token)
    status, body = await conn.request("GET", "/v1/tenants/default/spans?limit=50")
    await conn.close()

    elapsed, latencies = run(drive(url, token, requests, clients=8))    # a whole load phase

On a 2-core machine the load generator shares the cores with the server it measures, so its own
cost per request is part of every figure. httpx's async client spends several hundred
microseconds of CPU per request; this one spends a few tens: one write, one read of the head,
one read of the body. It speaks only what the benchmarks send and receive: requests with a JSON
body or none, responses with a Content-Length or chunked.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar
from urllib.parse import urlsplit

T = TypeVar("T")

HEAD_END = b"\r\n\r\n"


class HttpError(Exception):
    """The server answered with an unexpected status, or broke the connection."""


class Connection:
    """One keep-alive connection; one request at a time."""

    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, head: bytes
    ) -> None:
        self.reader = reader
        self.writer = writer
        self._head = head  # the Host and Authorization lines, sent with every request

    @classmethod
    async def open(cls, url: str, token: str | None = None) -> Connection:
        parts = urlsplit(url)
        host, port = parts.hostname or "127.0.0.1", parts.port or 80
        reader, writer = await asyncio.open_connection(host, port, limit=1 << 22)
        head = f"Host: {host}:{port}\r\n"
        if token is not None:
            head += f"Authorization: Bearer {token}\r\n"
        return cls(reader, writer, head.encode("latin-1"))

    async def request(
        self, method: str, target: str, body: bytes | None = None
    ) -> tuple[int, bytes]:
        """Send one request and read the whole response: (status, body)."""
        lines = f"{method} {target} HTTP/1.1\r\n".encode("latin-1") + self._head
        if body is not None:
            lines += b"Content-Type: application/json\r\nContent-Length: %d\r\n" % len(body)
        self.writer.write(lines + b"\r\n" + (body or b""))
        try:
            head = await self.reader.readuntil(HEAD_END)
        except (asyncio.IncompleteReadError, ConnectionError) as exc:
            raise HttpError(f"{method} {target}: the connection broke: {exc!r}") from exc
        status = int(head[9:12])
        length = -1
        chunked = False
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"transfer-encoding" and b"chunked" in value.lower():
                chunked = True
        if chunked:
            return status, await self._chunks()
        if length < 0:
            raise HttpError(f"{method} {target}: a response without Content-Length")
        return status, await self.reader.readexactly(length)

    async def _chunks(self) -> bytes:
        parts: list[bytes] = []
        while True:
            size = int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16)
            if size == 0:
                await self.reader.readuntil(b"\r\n")
                return b"".join(parts)
            parts.append(await self.reader.readexactly(size))
            await self.reader.readexactly(2)

    async def close(self) -> None:
        self.writer.close()
        try:
            await self.writer.wait_closed()
        except ConnectionError:
            pass


@dataclass(frozen=True, slots=True)
class Request:
    method: str
    target: str
    body: bytes | None = None
    expect: int = 200


async def drive(
    url: str,
    token: str | None,
    requests: Sequence[Request],
    *,
    clients: int,
    rate: float | None = None,
    marks: list[tuple[float, float]] | None = None,
) -> tuple[float, list[float]]:
    """Send `requests` over `clients` connections; (wall-clock seconds, each request's latency).

    Closed loop (`rate` None): each connection sends its next request as soon as the last one
    is answered. Open loop (`rate` requests/s): request i is due at start + i / rate, and its
    latency counts from when it was due, so time spent waiting for a free connection counts too
    (no coordinated omission). `marks`, if given, gets each request's `time.monotonic()` when it
    was sent and when its answer was read (CLOCK_MONOTONIC: comparable across processes).
    """
    conns = [await Connection.open(url, token) for _ in range(clients)]
    latencies = [0.0] * len(requests)
    if marks is not None:
        marks[:] = [(0.0, 0.0)] * len(requests)
    position = iter(range(len(requests)))
    loop = asyncio.get_running_loop()
    start = loop.time()

    async def worker(conn: Connection) -> None:
        for i in position:  # shared: each index goes to exactly one connection
            request = requests[i]
            due = time.perf_counter()
            if rate is not None:
                delay = start + i / rate - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
                due += delay
            sent = time.monotonic()
            status, body = await conn.request(request.method, request.target, request.body)
            latencies[i] = time.perf_counter() - due
            if marks is not None:
                marks[i] = (sent, time.monotonic())
            if status != request.expect:
                raise HttpError(f"{request.method} {request.target}: {status} {body[:500]!r}")

    began = time.perf_counter()
    try:
        await asyncio.gather(*(worker(conn) for conn in conns))
    finally:
        elapsed = time.perf_counter() - began
        for conn in conns:
            await conn.close()
    return elapsed, latencies


def run(coroutine: Awaitable[T]) -> T:
    """Run `coroutine` on uvloop when it is installed (it is, with uvicorn[standard])."""
    factory: Callable[[], asyncio.AbstractEventLoop] | None = None
    try:
        import uvloop

        factory = uvloop.new_event_loop
    except ImportError:  # pragma: no cover
        pass

    async def main() -> T:
        return await coroutine

    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(main())
