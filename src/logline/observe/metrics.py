"""Prometheus metrics for one server instance, in a registry of its own.

    >>> metrics = Metrics(version="0.1.0")
    >>> metrics.observe_append("sequenced", count=3, seconds=0.004)
    >>> metrics.auth_failed("password")
    >>> payload, content_type = metrics.render()
    >>> b'logline_spans_appended_total{wait="sequenced"} 3.0' in payload
    True
    >>> content_type.startswith("text/plain")
    True

The metrics (every label takes values from a fixed set, or from configuration, or from the route
table: never from a request, so the number of series is bounded):

    logline_http_requests_total{method,route,status}      counter
    logline_http_request_duration_seconds{method,route}   histogram
    logline_spans_appended_total{wait}                    counter    wait: sequenced|checkpointed
    logline_append_duration_seconds{wait}                 histogram
    logline_append_batch_size                             histogram  spans per append call
    logline_checkpoints_published_total                   counter
    logline_checkpoint_lag_entries_max                    gauge      largest lag over tenants
    logline_stream_subscribers{transport}                 gauge      transport: websocket|sse
    logline_stream_messages_total{transport}              counter
    logline_stream_dropped_total{reason}                  counter    DROP_REASONS below
    logline_auth_failures_total{method}                   counter    password|key|token|api_key
    logline_rate_limited_total{route_class}               counter    classes from configuration
    logline_build_info{version}                           gauge      always 1

`route` is the route template (`/v1/tenants/{tenant}/spans`) or `<unmatched>`; `method` is one of
the standard methods or `_OTHER`. Checkpoint lag is a maximum, not a gauge per tenant: tenants are
unbounded. The registry is not the global one, so several apps can live in one process (tests).
HTTP durations run to the end of the response body, so a stream's series measures its lifetime.
"""

from __future__ import annotations

import time
from typing import Any, Final, Literal

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import choose_encoder
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from logline.observe.asgi import request_method, route_template

Wait = Literal["sequenced", "checkpointed"]
Transport = Literal["websocket", "sse"]
DropReason = Literal["slow_consumer", "revoked", "shutdown", "error"]
AuthMethod = Literal["password", "key", "token", "api_key"]

WAITS: Final = ("sequenced", "checkpointed")
TRANSPORTS: Final = ("websocket", "sse")
DROP_REASONS: Final = ("slow_consumer", "revoked", "shutdown", "error")
AUTH_METHODS: Final = ("password", "key", "token", "api_key")

# A sequenced append is a durable commit (milliseconds); a checkpointed one waits for the next
# signed checkpoint (up to the checkpoint interval), hence the long tail.
APPEND_BUCKETS: Final = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
)  # fmt: skip
BATCH_BUCKETS: Final = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000)


class Metrics:
    """The server's metrics and the verbs that update them."""

    def __init__(self, version: str = "unknown") -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self._http_requests = Counter(
            "logline_http_requests_total",
            "HTTP requests answered, by method, route template and status.",
            ["method", "route", "status"],
            registry=r,
        )
        self._http_duration = Histogram(
            "logline_http_request_duration_seconds",
            "Time from request to the end of the response body.",
            ["method", "route"],
            registry=r,
        )
        self._appended = Counter(
            "logline_spans_appended_total",
            "Spans appended, by the acknowledgement waited for.",
            ["wait"],
            registry=r,
        )
        self._append_duration = Histogram(
            "logline_append_duration_seconds",
            "Time an append call took until its acknowledgement.",
            ["wait"],
            buckets=APPEND_BUCKETS,
            registry=r,
        )
        self._batch_size = Histogram(
            "logline_append_batch_size",
            "Spans per append call.",
            buckets=BATCH_BUCKETS,
            registry=r,
        )
        self._checkpoints = Counter(
            "logline_checkpoints_published_total", "Signed checkpoints published.", registry=r
        )
        self._checkpoint_lag = Gauge(
            "logline_checkpoint_lag_entries_max",
            "Largest number of sequenced entries not yet under a checkpoint, over all tenants.",
            registry=r,
        )
        self._subscribers = Gauge(
            "logline_stream_subscribers",
            "Open stream subscriptions, by transport.",
            ["transport"],
            registry=r,
        )
        self._stream_messages = Counter(
            "logline_stream_messages_total",
            "Messages sent to stream subscribers, by transport.",
            ["transport"],
            registry=r,
        )
        self._stream_dropped = Counter(
            "logline_stream_dropped_total",
            "Stream subscriptions ended by the server, by reason.",
            ["reason"],
            registry=r,
        )
        self._auth_failures = Counter(
            "logline_auth_failures_total",
            "Failed authentications, by credential type.",
            ["method"],
            registry=r,
        )
        self._rate_limited = Counter(
            "logline_rate_limited_total",
            "Requests refused by the rate limiter, by route class.",
            ["route_class"],
            registry=r,
        )
        build_info = Gauge(
            "logline_build_info",
            "Always 1; the label carries the version.",
            ["version"],
            registry=r,
        )
        build_info.labels(version=version).set(1)
        # Series with fixed label sets exist from the start, so a rate() over them sees the first
        # increment instead of a series appearing out of nothing.
        for wait in WAITS:
            self._appended.labels(wait=wait)
            self._append_duration.labels(wait=wait)
        for transport in TRANSPORTS:
            self._subscribers.labels(transport=transport)
            self._stream_messages.labels(transport=transport)
        for reason in DROP_REASONS:
            self._stream_dropped.labels(reason=reason)
        for method in AUTH_METHODS:
            self._auth_failures.labels(method=method)

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        """Count one answered HTTP request; `route` must be a template, never a raw path."""
        self._http_requests.labels(method=method, route=route, status=str(status)).inc()
        self._http_duration.labels(method=method, route=route).observe(seconds)

    def observe_append(self, wait: Wait, count: int, seconds: float) -> None:
        """Count one append call of `count` spans that took `seconds` to be acknowledged."""
        _check(wait, WAITS, "wait")
        self._appended.labels(wait=wait).inc(count)
        self._append_duration.labels(wait=wait).observe(seconds)
        self._batch_size.observe(count)

    def checkpoint_published(self) -> None:
        self._checkpoints.inc()

    def set_checkpoint_lag(self, max_lag: int) -> None:
        """Set the largest checkpoint lag, in entries, over all tenants."""
        self._checkpoint_lag.set(max_lag)

    def stream_subscribed(self, transport: Transport) -> None:
        _check(transport, TRANSPORTS, "transport")
        self._subscribers.labels(transport=transport).inc()

    def stream_unsubscribed(self, transport: Transport) -> None:
        _check(transport, TRANSPORTS, "transport")
        self._subscribers.labels(transport=transport).dec()

    def stream_sent(self, transport: Transport, n: int = 1) -> None:
        _check(transport, TRANSPORTS, "transport")
        self._stream_messages.labels(transport=transport).inc(n)

    def stream_dropped(self, reason: DropReason) -> None:
        _check(reason, DROP_REASONS, "reason")
        self._stream_dropped.labels(reason=reason).inc()

    def auth_failed(self, method: AuthMethod) -> None:
        _check(method, AUTH_METHODS, "auth method")
        self._auth_failures.labels(method=method).inc()

    def rate_limited(self, route_class: str) -> None:
        self._rate_limited.labels(route_class=route_class).inc()

    def render(self, accept: str | None = None) -> tuple[bytes, str]:
        """The exposition payload and its content type, for a `/metrics` response.

        Pass the scraper's Accept header to offer OpenMetrics to those that ask for it; the
        default is the classic text format 0.0.4, which every Prometheus version reads.
        """
        encode, content_type = choose_encoder(accept or "")
        return encode(self.registry), content_type

    def value(self, name: str, **labels: str) -> float | None:
        """One sample's current value (for tests and health checks), None if absent."""
        return self.registry.get_sample_value(name, labels)


class MetricsMiddleware:
    """Pure ASGI middleware counting and timing HTTP requests; other scopes pass through.

    WebSocket sessions are left to the stream metrics: a session's "duration" and "status" say
    little, and counting them here would mix hours-long sessions into request latencies.
    """

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        top: Any = scope.get("app", self.app)
        status = 500  # what the client gets if the app raises before answering
        start = time.perf_counter()

        async def send_observed(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_observed)
        finally:
            self.metrics.observe_request(
                request_method(scope),
                route_template(scope, top),
                status,
                time.perf_counter() - start,
            )


def _check(value: str, allowed: tuple[str, ...], what: str) -> None:
    if value not in allowed:
        raise ValueError(f"unknown {what} {value!r}: expected one of {', '.join(allowed)}")
