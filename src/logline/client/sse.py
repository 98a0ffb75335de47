"""The live stream's wire formats: Server-Sent Events, envelopes, and the resume cursor.

    >>> parser = SseParser()
    >>> parser.feed(b'id: acme:13\\nevent: live\\ndata: {"v":1,"type":"live",')
    []
    >>> [event] = parser.feed(b'"cursor":"acme:13"}\\n\\n')
    >>> event.id, event.event
    ('acme:13', 'live')
    >>> envelope(event.data)
    LiveEvent(cursor='acme:13')
    >>> cursor = Cursor.parse("acme:13,beta:2")
    >>> cursor.advance("acme", 20)
    >>> str(cursor)
    'acme:21,beta:2'

`SseParser` follows the WHATWG event-stream rules: lines end in CRLF, LF or CR (a CR at the end of
one chunk and an LF at the start of the next are one line end), `field: value` with one optional
space, `data` lines joined with newlines, comments start with `:`, an event is dispatched at a
blank line and only if it has data. Bytes are decoded as UTF-8 incrementally, so a character split
across chunks is not mangled.

An envelope (one per SSE `data`, or per WebSocket text frame) is `{"v": 1, "type": ...}`:
`span` (tenant, seq, entry, span), `live` (caught up; cursor), `heartbeat` (time) or `dropped`
(reason, detail, cursor). The cursor is the next sequence number per tenant, `acme:21,beta:2`.
"""

from __future__ import annotations

import codecs
import re
from dataclasses import dataclass, field
from typing import Any

from logline.canonical import loads
from logline.client.models import field as get
from logline.client.models import optional, server_span
from logline.errors import ParseError
from logline.ledger.entry import Entry
from logline.ledger.span import Span

ENVELOPE_VERSION = 1
_POSITION = re.compile(r"([a-z0-9](?:[a-z0-9-]{0,46}[a-z0-9])?):(\d{1,20})")


@dataclass(frozen=True, slots=True)
class SseEvent:
    event: str
    data: str
    id: str | None = None  # None when the event set no id (the last id still holds)
    retry_ms: int | None = None


class SseParser:
    """Bytes in, complete events out; keeps partial lines and events between `feed` calls."""

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")("replace")
        self._buffer = ""
        self._skip_lf = False  # the previous chunk ended in CR: a leading LF ends nothing
        self._event = ""
        self._data: list[str] = []
        self._id: str | None = None
        self._retry: int | None = None
        self._started = False  # a byte-order mark is dropped only at the very start

    def feed(self, chunk: bytes) -> list[SseEvent]:
        text = self._decoder.decode(chunk)
        if not self._started and text:
            self._started = True
            text = text.removeprefix("\ufeff")
        if self._skip_lf and text:
            text = text.removeprefix("\n")
            self._skip_lf = False
        self._buffer += text
        events: list[SseEvent] = []
        while True:
            match = re.search(r"\r\n|\r|\n", self._buffer)
            if match is None:
                break
            line = self._buffer[: match.start()]
            self._buffer = self._buffer[match.end() :]
            if match.group() == "\r" and not self._buffer:
                self._skip_lf = True  # the LF of this CRLF may be in the next chunk
            event = self._line(line)
            if event is not None:
                events.append(event)
        return events

    def _line(self, line: str) -> SseEvent | None:
        if not line:
            return self._dispatch()
        if line.startswith(":"):
            return None
        name, sep, value = line.partition(":")
        if sep and value.startswith(" "):
            value = value[1:]
        if name == "event":
            self._event = value
        elif name == "data":
            self._data.append(value)
        elif name == "id" and "\x00" not in value:
            self._id = value
        elif name == "retry" and value.isascii() and value.isdigit():
            self._retry = int(value)
        return None

    def _dispatch(self) -> SseEvent | None:
        data, event, event_id, retry = self._data, self._event, self._id, self._retry
        self._data, self._event, self._id, self._retry = [], "", None, None
        if not data:
            return None
        return SseEvent(event or "message", "\n".join(data), event_id, retry)


@dataclass
class Cursor:
    """Where a subscription resumes: per tenant, the next sequence number it wants."""

    positions: dict[str, int] = field(default_factory=dict)

    @classmethod
    def parse(cls, text: str) -> Cursor:
        positions: dict[str, int] = {}
        for part in filter(None, (p.strip() for p in text.split(","))):
            match = _POSITION.fullmatch(part)
            if match is None:
                raise ParseError(f"stream cursor part {part[:60]!r} is not tenant:seq")
            positions[match.group(1)] = int(match.group(2))
        return cls(positions)

    def advance(self, tenant: str, seq: int) -> None:
        """Entry `seq` of `tenant` was received: resume after it."""
        self.positions[tenant] = max(self.positions.get(tenant, 0), seq + 1)

    def merge(self, other: Cursor) -> None:
        """Take the server's word for every tenant it names, never moving backwards."""
        for tenant, seq in other.positions.items():
            self.positions[tenant] = max(self.positions.get(tenant, 0), seq)

    def __str__(self) -> str:
        return ",".join(f"{tenant}:{seq}" for tenant, seq in sorted(self.positions.items()))

    def __bool__(self) -> bool:
        return bool(self.positions)


@dataclass(frozen=True, slots=True)
class SpanEvent:
    tenant: str
    seq: int
    entry: Entry
    span: Span
    reverted_by: str | None = None
    redacted_by: str | None = None


@dataclass(frozen=True, slots=True)
class LiveEvent:
    """The subscription caught up: what follows was written after it connected."""

    cursor: str


@dataclass(frozen=True, slots=True)
class HeartbeatEvent:
    time: str


@dataclass(frozen=True, slots=True)
class DroppedEvent:
    """The server let go of the subscription (shutdown, slow consumer); it resumes by itself."""

    reason: str
    detail: str
    cursor: str


StreamEvent = SpanEvent | LiveEvent | HeartbeatEvent | DroppedEvent


def envelope(text: str) -> StreamEvent | None:
    """Parse one envelope; None for a type this SDK does not know (newer servers may add some)."""
    data: Any = loads(text)
    what = "stream message"
    if get(data, "v", int, what) != ENVELOPE_VERSION:
        raise ParseError(f"{what}: unsupported envelope version {data.get('v')!r}")
    kind = get(data, "type", str, what)
    if kind == "span":
        entry = Entry.from_json(get(data, "entry", dict, what))
        span = server_span(get(data, "span", dict, what), what)
        seq = get(data, "seq", int, what)
        if entry.seq != seq or entry.span_id != span.id or entry.span_hash != span.hash:
            raise ParseError(f"{what}: entry {seq} does not match its span")
        return SpanEvent(
            get(data, "tenant", str, what),
            seq,
            entry,
            span,
            optional(data, "reverted_by", str, what),
            optional(data, "redacted_by", str, what),
        )
    if kind == "live":
        return LiveEvent(get(data, "cursor", str, what))
    if kind == "heartbeat":
        return HeartbeatEvent(get(data, "time", str, what))
    if kind == "dropped":
        return DroppedEvent(
            get(data, "reason", str, what),
            optional(data, "detail", str, what) or "",
            get(data, "cursor", str, what),
        )
    return None
