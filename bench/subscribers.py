"""Many stream subscribers in one process, for `bench fanout`: raw WebSocket and SSE clients.

    python -m bench.subscribers       # not run by hand: `bench fanout` starts it through
                                      # multiprocessing, talking over a pipe (see `serve`)

A subscriber only needs to know *which* benchmark span arrived and *when*. So instead of a full
client library (whose per-frame cost would take CPU from the server on a 2-core machine), each
connection reads the raw byte stream and finds the `"bench_i":N` marker of every span's payload
with one regular expression per read; WebSocket frames are walked only to answer pings and to
see a close. Receive times are `time.monotonic()`, the clock the writer stamps its requests with
(CLOCK_MONOTONIC is system-wide on Linux, so the times compare across processes).
"""

from __future__ import annotations

import asyncio
import base64
import os
import re
import time
from array import array
from collections import Counter
from collections.abc import Sequence
from multiprocessing.connection import Connection as Pipe
from typing import Any
from urllib.parse import urlsplit

MARK = re.compile(rb'"bench_i":(\d+)')
LIVE = (b'"type":"live"', b"event: live")
DROPPED = (b'"type":"dropped"', b"event: dropped")
CONNECT_AT_ONCE = 50
READ = 1 << 16


class Subscriber:
    """One connection: the benchmark spans it received, with times; whether it was dropped."""

    def __init__(self) -> None:
        self.index = array("q")
        self.times = array("d")
        self.live = asyncio.Event()
        self.dropped: str | None = None
        self.writer: asyncio.StreamWriter | None = None

    def _found(self, data: bytes, now: float) -> None:
        for match in MARK.finditer(data):
            self.index.append(int(match.group(1)))
            self.times.append(now)
        if not self.live.is_set() and any(mark in data for mark in LIVE):
            self.live.set()
        if any(mark in data for mark in DROPPED):
            self.dropped = self.dropped or "dropped message"

    async def run(self, url: str, path: str, token: str | None, transport: str) -> None:
        parts = urlsplit(url)
        host, port = parts.hostname or "127.0.0.1", parts.port or 80
        reader, writer = await asyncio.open_connection(host, port, limit=1 << 22)
        self.writer = writer
        head = f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\n"
        if token is not None:
            head += f"Authorization: Bearer {token}\r\n"
        if transport == "ws":
            key = base64.b64encode(os.urandom(16)).decode()
            head += (
                "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
            )
        else:
            head += "Accept: text/event-stream\r\n"
        writer.write(head.encode() + b"\r\n")
        response = await reader.readuntil(b"\r\n\r\n")
        status = int(response[9:12])
        if status != (101 if transport == "ws" else 200):
            self.dropped = f"status {status}"
            self.live.set()
            return
        if transport == "ws":
            await self._websocket(reader, writer)
        else:
            await self._sse(reader)
        self.dropped = self.dropped or "connection closed"
        self.live.set()

    async def _sse(self, reader: asyncio.StreamReader) -> None:
        tail = b""
        while True:
            data = await reader.read(READ)
            if not data:
                return
            now = time.monotonic()
            data = tail + data
            end = data.rfind(b"\n\n") + 2
            if end <= 1:
                tail = data
                continue
            self._found(data[:end], now)
            tail = data[end:]

    async def _websocket(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        buf = b""
        while True:
            data = await reader.read(READ)
            if not data:
                return
            now = time.monotonic()
            buf += data
            pos, size = 0, len(buf)
            texts = []
            while size - pos >= 2:
                opcode, length, hdr = buf[pos] & 0x0F, buf[pos + 1] & 0x7F, 2
                if length == 126:
                    if size - pos < 4:
                        break
                    length, hdr = int.from_bytes(buf[pos + 2 : pos + 4], "big"), 4
                elif length == 127:
                    if size - pos < 10:
                        break
                    length, hdr = int.from_bytes(buf[pos + 2 : pos + 10], "big"), 10
                if size - pos < hdr + length:
                    break
                payload = buf[pos + hdr : pos + hdr + length]
                pos += hdr + length
                if opcode in (0x0, 0x1):
                    texts.append(payload)
                elif opcode == 0x9:  # ping: answer with a (masked) pong
                    writer.write(_client_frame(0xA, payload))
                elif opcode == 0x8:
                    code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else 0
                    self.dropped = self.dropped or f"closed {code}"
                    self._found(b"\n".join(texts), now)
                    return
            buf = buf[pos:]
            if texts:
                self._found(b"\n".join(texts), now)

    def close(self) -> None:
        if self.writer is not None and not self.writer.is_closing():
            if self.dropped is None:
                self.dropped = "closed by the benchmark"
            self.writer.close()


def _client_frame(opcode: int, payload: bytes) -> bytes:
    mask = os.urandom(4)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return bytes([0x80 | opcode, 0x80 | len(payload)]) + mask + masked


def _round(ms: float) -> float:
    return float(f"{ms:.3g}")


def summarize(
    subs: Sequence[Subscriber], lo: int, sent: Sequence[float], acked: Sequence[float]
) -> dict[str, Any]:
    """Latencies (ms, 3 significant digits, as counts) of the spans lo..lo+len(sent) received."""
    delivery: Counter[float] = Counter()
    end_to_end: Counter[float] = Counter()
    received = 0
    last = 0.0
    hi = lo + len(sent)
    for sub in subs:
        for i, t in zip(sub.index, sub.times, strict=True):
            if lo <= i < hi:
                received += 1
                delivery[_round((t - acked[i - lo]) * 1000)] += 1
                end_to_end[_round((t - sent[i - lo]) * 1000)] += 1
                last = max(last, t)
    return {"delivery": delivery, "end_to_end": end_to_end, "received": received, "last": last}


async def _main(
    pipe: Pipe, url: str, path: str, token: str | None, transport: str, count: int
) -> None:
    subs = [Subscriber() for _ in range(count)]
    gate = asyncio.Semaphore(CONNECT_AT_ONCE)
    tasks = []

    async def start(sub: Subscriber) -> None:
        async with gate:
            tasks.append(asyncio.create_task(sub.run(url, path, token, transport)))
            await asyncio.wait_for(sub.live.wait(), 60)

    try:
        await asyncio.gather(*(start(sub) for sub in subs))
    except TimeoutError:
        pass
    pipe.send(("ready", sum(s.live.is_set() and s.dropped is None for s in subs)))
    while True:
        command, *args = await asyncio.to_thread(pipe.recv)
        if command == "progress":
            alive = [len(s.index) for s in subs if s.dropped is None]
            pipe.send((min(alive, default=-1), len(subs) - len(alive)))
        elif command == "summary":
            lo, sent, acked = args
            result = summarize(subs, lo, sent, acked)
            result["dropped"] = sum(s.dropped is not None for s in subs)
            result["reasons"] = dict(Counter(s.dropped for s in subs if s.dropped))
            result["cpu_s"] = sum(os.times()[:2])
            pipe.send(result)
        elif command == "stop":
            for sub in subs:
                sub.close()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            pipe.send("stopped")
            return


def serve(pipe: Pipe, url: str, path: str, token: str | None, transport: str, count: int) -> None:
    """A subscriber process: `count` connections to `url` + `path`, answering the pipe's commands
    `progress` (fewest spans any subscriber still connected received, or -1 if none is; how many
    were dropped), `summary` and `stop`."""
    from bench.wire import run

    run(_main(pipe, url, path, token, transport, count))
