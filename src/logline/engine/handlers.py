"""Job handlers: the code a worker node runs for each job type, and how it finds it.

    >>> handlers = HandlerRegistry()
    >>> @handlers.handler("report.render")
    ... def render(ctx: JobContext, payload: Any) -> Any:
    ...     ctx.logger.info("rendering %s", payload["month"])
    ...     return {"pages": 12}
    >>> ctx = JobContext(job_id="j1", tenant="acme", type="report.render", attempt=1, timeout_s=5)
    >>> asyncio.run(invoke(handlers.get("report.render"), ctx, {"month": "2026-10"}))
    {'pages': 12}

A handler takes a `JobContext` and the job's payload and returns a JSON value (the job's
result). Plain functions run in the worker's thread pool; `async def` handlers run on its event
loop and must not block it. To fail for good (no retry), raise `PermanentError`; any other
exception is a retryable failure. Cancellation is cooperative: check `ctx.cancelled` (or wait
with `ctx.sleep` / `await ctx.sleep_async`, which return early) and stop; a handler that ignores
it runs on until its timeout.

Handlers live in modules that a worker loads by dotted path (`logline worker --handlers
mypkg.tasks`). Such a module defines a module-level `handlers = HandlerRegistry()` and decorates
its functions with `@handlers.handler("type.name")`; `mypkg.tasks:other` names another attribute.
No global registry: what a worker runs is exactly what it was told to load, plus the built-ins
(`builtin_handlers`): `logline.noop`, `logline.sleep`, `logline.fail`, `logline.http`.

Execution is at least once (see `logline.engine.worker`): a handler may run again for a job
whose earlier attempt's outcome was lost, so handlers with effects should be idempotent.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

import httpx

from logline.errors import ConfigError
from logline.identity.ids import check_kind

DEFAULT_ATTRIBUTE = "handlers"
HTTP_TIMEOUT_S = 30.0
HTTP_BODY_CHARS = 4096
HTTP_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")
# Percent-encoded dots, slashes and backslashes: a server may decode them into `..` or `/` after
# the allow-list looked at the path, so they are refused rather than interpreted.
_ENCODED_PATH_TRICKS = ("%2e", "%2f", "%5c")

log = logging.getLogger("logline.engine.handlers")


class PermanentError(Exception):
    """Raised by a handler for a failure that retrying cannot fix (bad payload, refused
    request): the job fails at once instead of using its remaining attempts. Not a
    `LogLineError`: it is a signal from handler code to the worker, not an error LogLine raises."""


class JobCancelled(Exception):
    """Raised by a handler (or `JobContext.check_cancelled`) to stop when asked to."""


class Handler(Protocol):
    """`handler(ctx, payload) -> result`; an `async def` handler returns an awaitable of it."""

    def __call__(self, ctx: JobContext, payload: Any, /) -> Any: ...


H = TypeVar("H", bound=Handler)


@dataclass
class JobContext:
    """What a handler knows about the attempt it runs: the job, a deadline, a cancellation flag.

    The worker calls `cancel()` (from any thread) when the server reports a cancellation request,
    when the attempt times out, or when the worker shuts down and the grace period is over.
    """

    job_id: str
    tenant: str
    type: str
    attempt: int
    timeout_s: float
    deadline: float = 0.0  # time.monotonic() when the attempt times out; 0: timeout_s from now
    logger: logging.LoggerAdapter[logging.Logger] = field(init=False)
    _cancelled: threading.Event = field(default_factory=threading.Event, init=False)
    _returned: threading.Event = field(default_factory=threading.Event, init=False)
    _wakers: list[Callable[[], None]] = field(default_factory=list, init=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False)

    def __post_init__(self) -> None:
        if self.deadline == 0.0:
            self.deadline = time.monotonic() + self.timeout_s
        extra = {"job": self.job_id, "tenant": self.tenant, "type": self.type,
                 "attempt": self.attempt}  # fmt: skip
        self.logger = logging.LoggerAdapter(logging.getLogger(f"logline.job.{self.type}"), extra)

    @property
    def cancelled(self) -> bool:
        return self._cancelled.is_set()

    @property
    def returned(self) -> bool:
        """The handler has returned or raised (set by `invoke`, on the handler's own thread)."""
        return self._returned.is_set()

    @property
    def remaining_s(self) -> float:
        """Seconds left before the attempt times out (never negative)."""
        return max(0.0, self.deadline - time.monotonic())

    def cancel(self) -> None:
        """Ask the handler to stop; wakes `sleep` and `sleep_async` at once. Thread-safe."""
        with self._lock:
            self._cancelled.set()
            wakers, self._wakers = self._wakers, []
        for wake in wakers:
            wake()

    def check_cancelled(self) -> None:
        """Raise `JobCancelled` if cancellation was asked for: a one-line checkpoint for loops."""
        if self.cancelled:
            raise JobCancelled(f"job {self.job_id} cancelled")

    def sleep(self, seconds: float) -> bool:
        """Block up to `seconds` (sync handlers); True if woken by a cancellation."""
        return self._cancelled.wait(max(0.0, seconds))

    async def sleep_async(self, seconds: float) -> bool:
        """Wait up to `seconds` without blocking the loop; True if woken by a cancellation."""
        loop = asyncio.get_running_loop()
        woken: asyncio.Future[None] = loop.create_future()

        def settle() -> None:
            if not woken.done():
                woken.set_result(None)

        def wake() -> None:
            # cancel() may run on another thread: hand the wake-up to this loop's thread.
            loop.call_soon_threadsafe(settle)

        with self._lock:
            if self._cancelled.is_set():
                return True
            self._wakers.append(wake)
        try:
            await asyncio.wait({woken}, timeout=max(0.0, seconds))
        finally:
            with self._lock:
                if wake in self._wakers:
                    self._wakers.remove(wake)
            woken.cancel()
        return self.cancelled


@dataclass(frozen=True, slots=True)
class Registered:
    name: str
    function: Handler
    is_async: bool


def _is_async(function: Callable[..., Any]) -> bool:
    # Callable objects with an `async def __call__` count too; `partial` is unwrapped by inspect.
    call = getattr(function, "__call__", None)  # noqa: B004 - the attribute itself is inspected
    return inspect.iscoroutinefunction(function) or inspect.iscoroutinefunction(call)


class HandlerRegistry:
    """Job type → handler. Names are job types: dotted lowercase, like span kinds."""

    def __init__(self) -> None:
        self._handlers: dict[str, Registered] = {}

    def handler(self, name: str) -> Callable[[H], H]:
        """Decorator: `@registry.handler("report.render")` registers the function unchanged."""

        def register(function: H) -> H:
            self.add(name, function)
            return function

        return register

    def add(self, name: str, function: Handler) -> None:
        check_kind(name)
        if name in self._handlers:
            raise ConfigError(f"two handlers for job type {name}")
        self._handlers[name] = Registered(name, function, _is_async(function))

    def include(self, other: HandlerRegistry) -> None:
        """Add every handler of `other`; a job type both handle is a `ConfigError`."""
        for registered in other._handlers.values():
            self.add(registered.name, registered.function)

    def get(self, name: str) -> Registered | None:
        return self._handlers.get(name)

    def names(self) -> list[str]:
        return sorted(self._handlers)

    def __contains__(self, name: object) -> bool:
        return name in self._handlers

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._handlers)


def load_registry(target: str) -> HandlerRegistry:
    """The registry a user module defines: `pkg.module` (attribute `handlers`) or
    `pkg.module:attribute`. Import errors and missing registries are `ConfigError`s."""
    module_name, _, attribute = target.partition(":")
    attribute = attribute or DEFAULT_ATTRIBUTE
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # the user's module may raise anything while it is imported
        raise ConfigError(f"cannot import handlers module {module_name}: {exc}") from exc
    found = getattr(module, attribute, None)
    if not isinstance(found, HandlerRegistry):
        raise ConfigError(
            f"{module_name} has no HandlerRegistry named {attribute!r}; define "
            f"`{attribute} = HandlerRegistry()` there and decorate handlers with it"
        )
    return found


def load_handlers(targets: Iterable[str], into: HandlerRegistry) -> HandlerRegistry:
    """Load each module's registry into `into` (the built-ins, typically); returns `into`."""
    for target in targets:
        into.include(load_registry(target))
    return into


async def invoke(
    registered: Registered | None, ctx: JobContext, payload: Any, executor: Executor | None = None
) -> Any:
    """Run a handler: an async one on this loop, a sync one in `executor` (default: the loop's).

    A sync handler cannot be interrupted: if this coroutine is cancelled (a timeout), its thread
    runs on until the handler returns; `ctx.cancel()` is how to ask it to stop sooner.
    """
    if registered is None:
        ctx._returned.set()
        raise PermanentError(f"no handler for {ctx.type}")
    if registered.is_async:
        try:
            return await registered.function(ctx, payload)
        finally:
            ctx._returned.set()

    def call() -> Any:
        try:
            return registered.function(ctx, payload)
        finally:
            ctx._returned.set()

    return await asyncio.get_running_loop().run_in_executor(executor, call)


# --- built-ins ------------------------------------------------------------------------------------


def _object(payload: Any, ctx: JobContext) -> dict[str, Any]:
    if payload is None:
        return {}
    if not isinstance(payload, dict):
        raise PermanentError(f"{ctx.type} takes a JSON object as payload")
    return payload


def noop(ctx: JobContext, payload: Any) -> None:
    """Does nothing: for smoke tests and measuring the engine's own overhead."""
    return None


async def sleep(ctx: JobContext, payload: Any) -> dict[str, float]:
    """`{"seconds": 2.5}`: waits, stopping early (`JobCancelled`) when cancelled."""
    seconds = _object(payload, ctx).get("seconds", 1.0)
    if isinstance(seconds, bool) or not isinstance(seconds, int | float) or seconds < 0:
        raise PermanentError('sleep needs a payload like {"seconds": 2.5}')
    if await ctx.sleep_async(float(seconds)):
        raise JobCancelled(f"sleep cancelled after {ctx.type} was asked to stop")
    return {"slept": float(seconds)}


def fail(ctx: JobContext, payload: Any) -> None:
    """`{"message": "...", "retryable": true}`: always fails, for tests and demos."""
    body = _object(payload, ctx)
    message = str(body.get("message") or "failed on purpose")
    if body.get("retryable", True) is False:
        raise PermanentError(message)
    raise RuntimeError(message)


@dataclass(frozen=True, slots=True)
class UrlPrefix:
    """One allow-list entry: scheme, host and port must be equal, the path must start with it."""

    scheme: str
    host: str
    port: int | None
    path: str

    @classmethod
    def parse(cls, text: str) -> UrlPrefix:
        try:
            url = httpx.URL(text)
        except httpx.InvalidURL as exc:
            raise ConfigError(f"--http-allow {text!r} is not a URL: {exc}") from exc
        if url.scheme not in ("http", "https") or not url.host or url.userinfo:
            raise ConfigError(
                f"--http-allow takes http(s)://host[:port]/path prefixes, got {text!r}"
            )
        return cls(url.scheme, url.host, _port(url), url.path or "/")

    def allows(self, url: httpx.URL) -> bool:
        if (url.scheme, url.host, _port(url)) != (self.scheme, self.host, self.port):
            return False
        path = url.path or "/"
        if self.path.endswith("/"):
            return path.startswith(self.path)
        # Without a trailing slash, `/v1` allows `/v1` and `/v1/...`, never `/v1admin`.
        return path == self.path or path.startswith(self.path + "/")


def _port(url: httpx.URL) -> int | None:
    default = {"http": 80, "https": 443}.get(url.scheme)
    return url.port if url.port is not None else default


class HttpAllowList:
    """The URLs the `logline.http` built-in may call; empty allows none."""

    def __init__(self, prefixes: Sequence[str] = ()) -> None:
        self.prefixes = [UrlPrefix.parse(prefix) for prefix in prefixes]

    def check(self, text: str) -> httpx.URL:
        """The URL, normalized (dot segments resolved), or `PermanentError` if not allowed."""
        try:
            url = httpx.URL(text)
        except (httpx.InvalidURL, TypeError) as exc:
            raise PermanentError(f"not a URL: {text!r}") from exc
        lowered = url.raw_path.decode("ascii", "replace").lower()
        if url.userinfo or any(trick in lowered for trick in _ENCODED_PATH_TRICKS):
            raise PermanentError(f"URL {text!r} is not allowed (credentials or encoded path)")
        if not any(prefix.allows(url) for prefix in self.prefixes):
            raise PermanentError(f"URL {text!r} is not on this worker's --http-allow list")
        return url


def http_handler(
    allow: HttpAllowList, transport: httpx.AsyncBaseTransport | None = None
) -> Handler:
    """`{"url", "method"?, "body"?}` → `{"status", "body"}` (body truncated). Only allow-listed
    URLs; redirects are not followed, since they could lead off the list. 5xx and connection
    failures are retryable; other statuses are results, for the caller to judge."""

    async def call(ctx: JobContext, payload: Any) -> dict[str, Any]:
        body = _object(payload, ctx)
        url = allow.check(body.get("url", ""))
        method = str(body.get("method", "GET")).upper()
        if method not in HTTP_METHODS:
            raise PermanentError(f"method must be one of {', '.join(HTTP_METHODS)}")
        timeout = max(0.1, min(HTTP_TIMEOUT_S, ctx.remaining_s))
        async with httpx.AsyncClient(
            timeout=timeout, follow_redirects=False, transport=transport
        ) as client:
            response = await client.request(
                method, url, json=body["body"] if "body" in body else None
            )
        if response.status_code >= 500:
            raise RuntimeError(f"{method} {url} answered {response.status_code}")
        return {"status": response.status_code, "body": response.text[:HTTP_BODY_CHARS]}

    return call


def builtin_handlers(
    http_allow: Sequence[str] = (), *, http_transport: httpx.AsyncBaseTransport | None = None
) -> HandlerRegistry:
    """A registry with the built-ins; `http_allow` is the `logline.http` allow-list."""
    registry = HandlerRegistry()
    registry.add("logline.noop", noop)
    registry.add("logline.sleep", sleep)
    registry.add("logline.fail", fail)
    registry.add("logline.http", http_handler(HttpAllowList(http_allow), http_transport))
    return registry
