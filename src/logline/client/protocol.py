"""The sans-IO contract between the SDK's logic and its two transports.

    def whoami(core) -> Operation[WhoAmI]:
        response = yield Request("GET", "/v1/auth/whoami")   # the transport sends it...
        return WhoAmI.from_json(ok_json(response))           # ...and sends back the Response

An *operation* is a generator. It yields *actions* — send a `Request`, `Sleep`, `Read` the next
chunk of the open stream, `Close` it, `Emit` a stream event to the caller — and receives each
action's result: a `Response` for a `Request`, the chunk's bytes for `Read` (b"" at the end of the
stream), None otherwise. A transport that fails to get a response throws `ConnectionFailed` into
the operation instead. Its return value is the operation's result.

All decisions (retries, refresh, reconnects, parsing) are made by operations, so `Client`
(httpx.Client, time.sleep) and `AsyncClient` (httpx.AsyncClient, anyio.sleep) only carry actions
out, and unit tests drive operations with scripted responses and no network.
"""

from __future__ import annotations

from collections.abc import Generator, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from logline.canonical import loads
from logline.client.errors import error_for
from logline.client.sse import StreamEvent

T = TypeVar("T")
Params = tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class Request:
    """One HTTP request, relative to the client's base URL.

    `idempotent` allows retrying after a 503 or a lost response; `auth` attaches the client's
    credentials; `stream` keeps a 2xx response open for `Read` (its `Response` has no content).
    """

    method: str
    path: str
    params: Params = ()
    json: Any = None
    headers: Mapping[str, str] = field(default_factory=dict)
    idempotent: bool = False
    auth: bool = True
    stream: bool = False
    timeout_s: float | None = None  # None: the client's default; for streams, the read timeout


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    headers: Mapping[str, str]  # lowercase names
    content: bytes = b""
    attempts: int = 1  # how many tries it took (set by `Core.call`)

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


@dataclass(frozen=True, slots=True)
class Sleep:
    seconds: float


@dataclass(frozen=True, slots=True)
class Read:
    """The next chunk of the open stream; b"" once it has ended."""


@dataclass(frozen=True, slots=True)
class Close:
    """Close the open stream, if any."""


@dataclass(frozen=True, slots=True)
class Emit:
    """Hand `event` to whoever iterates the subscription; the result is None."""

    event: StreamEvent


Action = Request | Sleep | Read | Close | Emit
Reply = Response | bytes | None
Operation = Generator[Action, Reply, T]


def expect_response(reply: Reply) -> Response:
    if not isinstance(reply, Response):
        raise TypeError(f"the transport answered a Request with {type(reply).__name__}")
    return reply


def expect_chunk(reply: Reply) -> bytes:
    if not isinstance(reply, bytes):
        raise TypeError(f"the transport answered a Read with {type(reply).__name__}")
    return reply


def ok_json(response: Response) -> Any:
    """The JSON body of a 2xx response; an `ApiError` for anything else."""
    if not response.ok:
        raise error_for(response.status, response.headers, response.content)
    return loads(response.content) if response.content else None


def params(**values: str | int | list[str] | tuple[str, ...] | None) -> Params:
    """Query parameters without the unset ones; lists repeat the name (tag=a&tag=b)."""
    out: list[tuple[str, str]] = []
    for name, value in values.items():
        if value is None:
            continue
        items = value if isinstance(value, list | tuple) else (value,)
        out.extend((name, str(item)) for item in items)
    return tuple(out)


def capture(op: Operation[T], result: list[T]) -> Operation[None]:
    """Run `op`, appending its return value to `result`: transports run every operation as an
    iterator of emitted events, and an async generator cannot return a value."""
    result.append((yield from op))
