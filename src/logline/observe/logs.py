"""JSON logs on stderr, one object per line, and one access line per HTTP request.

    configure_logging("info")                   # once, at start-up; again to reconfigure
    app.add_middleware(RequestContextMiddleware)
    log = structlog.get_logger("logline.feed")
    log.info("subscribed", tenant="acme")
    # {"tenant": "acme", "event": "subscribed", "level": "info", "logger": "logline.feed",
    #  "timestamp": "2025-01-01T12:00:00.000000Z", "request_id": "4f0c...", "trace_id": "..."}

structlog renders through the standard library's logging, so uvicorn's and other libraries' lines
come out as the same JSON (run uvicorn with `log_config=None, access_log=False`: the access line
here replaces its own). Every line logged while a request is handled carries its `request_id`,
and, inside a traced request, its `trace_id` and `span_id`.

The access line holds the method, the route template (or the path when no route matched), the
status, `duration_ms`, `request_id` and `client`: never a query string, a header value or a body,
since query strings and headers may carry credentials.
"""

from __future__ import annotations

import logging
import re
import sys
import time
import uuid
from collections.abc import Callable
from typing import Any, Final

import structlog
from opentelemetry import trace
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from structlog.typing import EventDict, Processor, WrappedLogger

from logline.errors import ConfigError
from logline.observe.asgi import UNMATCHED, header, request_method, route_template

LEVELS: Final = ("debug", "info", "warning", "error", "critical")
REQUEST_ID_HEADER: Final = b"x-request-id"
_SANE_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")
_MAX_LOGGED_PATH = 200  # an unmatched path is the client's text: keep a bound on it
_HANDLER_MARK = "_logline_handler"


def configure_logging(level: str = "info", json: bool = True) -> None:
    """Send every log line (structlog's and the standard library's) to stderr at `level`."""
    if level.lower() not in LEVELS:
        raise ConfigError(f"log level {level!r} is not one of {', '.join(LEVELS)}")
    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True, key="timestamp"),
        add_trace_context,
    ]
    renderer: Processor = (
        structlog.processors.JSONRenderer()
        if json
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[structlog.stdlib.ExtraAdder(), *shared],
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info if json else _keep,
            renderer,
        ],
    )
    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *shared,
            structlog.stdlib.PositionalArgumentsFormatter(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        # Not cached: reconfiguring (tests, a reload) must reach loggers created earlier.
        cache_logger_on_first_use=False,
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    setattr(handler, _HANDLER_MARK, True)
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, _HANDLER_MARK, False)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    # httpx logs every URL it fetches, query string included, at INFO.
    logging.getLogger("httpx").setLevel(max(logging.WARNING, root.level))


def add_trace_context(_: WrappedLogger, __: str, event: EventDict) -> EventDict:
    """structlog processor: the current OpenTelemetry trace and span ids, if a span is recording."""
    context = trace.get_current_span().get_span_context()
    if context.is_valid:
        event.setdefault("trace_id", format(context.trace_id, "032x"))
        event.setdefault("span_id", format(context.span_id, "016x"))
    return event


def request_id_from(value: str | None) -> str:
    """The caller's request id if it is a sane token, else a fresh one.

    >>> request_id_from("req-42.a_b")
    'req-42.a_b'
    >>> len(request_id_from("has spaces, and is long")) == 32
    True
    """
    if value is not None and _SANE_REQUEST_ID.fullmatch(value):
        return value
    return uuid.uuid4().hex


def _keep(_: WrappedLogger, __: str, event: EventDict) -> EventDict:
    return event


class RequestContextMiddleware:
    """Pure ASGI middleware: a request id per request, echoed back, and one access log line.

    The id is bound in structlog's context variables for the request (also for WebSocket
    sessions, which get no access line) and stored as `request.state.request_id`. `client_of`
    turns the scope into the client address to log (e.g. honouring trusted proxies); by default
    it is the TCP peer.
    """

    def __init__(
        self,
        app: ASGIApp,
        logger_name: str = "logline.access",
        client_of: Callable[[Scope], str] | None = None,
    ) -> None:
        self.app = app
        self.log = structlog.get_logger(logger_name)
        self.client_of = client_of or _peer

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        request_id = request_id_from(header(scope, REQUEST_ID_HEADER))
        scope.setdefault("state", {})["request_id"] = request_id
        with structlog.contextvars.bound_contextvars(request_id=request_id):
            if scope["type"] == "websocket":
                await self.app(scope, receive, send)
                return
            await self._http(scope, receive, send, request_id)

    async def _http(self, scope: Scope, receive: Receive, send: Send, request_id: str) -> None:
        top: Any = scope.get("app", self.app)
        status = 500  # what the client gets if the app raises before answering
        start = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                headers = [
                    (k, v) for k, v in message.get("headers", []) if k.lower() != REQUEST_ID_HEADER
                ]
                headers.append((REQUEST_ID_HEADER, request_id.encode("ascii")))
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            route = route_template(scope, top)
            if route == UNMATCHED:
                route = str(scope.get("path", ""))[:_MAX_LOGGED_PATH]
            log = self.log.error if status >= 500 else self.log.info
            log(
                "request",
                method=request_method(scope),
                route=route,
                status=status,
                duration_ms=round((time.perf_counter() - start) * 1000, 3),
                client=self.client_of(scope),
            )


def _peer(scope: Scope) -> str:
    client = scope.get("client")
    return str(client[0]) if client else "-"
