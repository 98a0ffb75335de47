"""OpenTelemetry traces: one server span per HTTP request, exported over OTLP/HTTP.

    >>> from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    >>> exporter = InMemorySpanExporter()
    >>> tracing = Tracing("logline", exporter=exporter)
    >>> with tracing.tracer().start_as_current_span("GET /healthz"):
    ...     len(current_trace_id() or "")
    32
    >>> [span.name for span in exporter.get_finished_spans()]
    ['GET /healthz']
    >>> tracing.shutdown()

In the server: `tracing = configure_tracing("logline", settings.otlp_endpoint)` and
`app.add_middleware(TracingMiddleware, tracer=tracing.tracer())`, then `tracing.shutdown()` at
exit to flush what is still queued. With no endpoint the tracer records nothing and costs little,
but an incoming `traceparent` is still carried through, so logs keep the caller's trace id.

The provider is our own, not OpenTelemetry's global one: several apps live in one test process,
and the global provider can be set only once. Spans follow the HTTP semantic conventions: named
`"<METHOD> <route template>"` (only `"<METHOD>"` when no route matched: a raw path would make
names unbounded), with `http.request.method`, `http.route`, `http.response.status_code`, and an
error status for 5xx answers and exceptions. A W3C `traceparent` header from the caller makes our
span its child.
"""

from __future__ import annotations

from typing import Any, Final
from urllib.parse import urlsplit

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor, SpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from logline import __version__
from logline.errors import ConfigError
from logline.observe.asgi import UNMATCHED, request_method, route_template

TRACER_NAME: Final = "logline.server"
OTLP_TRACES_PATH: Final = "/v1/traces"
_PROPAGATOR: Final = TraceContextTextMapPropagator()
_PROPAGATED: Final = frozenset({b"traceparent", b"tracestate"})


class Tracing:
    """A tracer provider of our own and its exporters; `shutdown()` flushes and stops them.

    `exporter` spans go through a batch processor, or a synchronous one with `batch=False`
    (tests). With no exporter nothing is recorded: the tracer only carries incoming context.
    """

    def __init__(
        self,
        service_name: str,
        *,
        exporter: SpanExporter | None = None,
        batch: bool = False,
        service_version: str = __version__,
    ) -> None:
        self.enabled = exporter is not None
        self.provider = TracerProvider(
            resource=Resource.create(
                {"service.name": service_name, "service.version": service_version}
            )
        )
        if exporter is not None:
            processor: SpanProcessor = (
                BatchSpanProcessor(exporter) if batch else SimpleSpanProcessor(exporter)
            )
            self.provider.add_span_processor(processor)

    def tracer(self, name: str = TRACER_NAME) -> trace.Tracer:
        if not self.enabled:
            return trace.NoOpTracer()
        return self.provider.get_tracer(name, __version__)

    def force_flush(self, timeout_s: float = 30.0) -> bool:
        """Export everything queued; False if that did not finish within `timeout_s`."""
        return self.provider.force_flush(int(timeout_s * 1000))

    def shutdown(self) -> None:
        """Flush and stop the exporters; spans ended afterwards are dropped."""
        self.provider.shutdown()


def configure_tracing(
    service_name: str,
    otlp_endpoint: str | None,
    *,
    headers: dict[str, str] | None = None,
    timeout_s: float = 10.0,
) -> Tracing:
    """Tracing exporting to the OTLP/HTTP collector at `otlp_endpoint`, or disabled if None.

    The endpoint may be the collector's base URL (`http://collector:4318`, to which `/v1/traces`
    is added) or the full traces URL.
    """
    if not otlp_endpoint:
        return Tracing(service_name)
    url = _traces_url(otlp_endpoint)
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    except ImportError:  # pragma: no cover - the exporter is the optional "otlp" extra
        raise ConfigError(
            "an OTLP endpoint is configured but the exporter is not installed: "
            "install logline[otlp]"
        ) from None
    exporter = OTLPSpanExporter(endpoint=url, headers=headers, timeout=timeout_s)
    return Tracing(service_name, exporter=exporter, batch=True)


def current_trace_id() -> str | None:
    """The current span's trace id as 32 hex digits, or None outside any trace."""
    context = trace.get_current_span().get_span_context()
    return format(context.trace_id, "032x") if context.is_valid else None


class TracingMiddleware:
    """Pure ASGI middleware: one server span per HTTP request; other scopes pass through."""

    def __init__(self, app: ASGIApp, tracer: trace.Tracer) -> None:
        self.app = app
        self.tracer = tracer

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        top: Any = scope.get("app", self.app)
        method = request_method(scope)
        status: int | None = None
        parent = _PROPAGATOR.extract(_propagated_headers(scope))
        with self.tracer.start_as_current_span(
            method,
            context=parent,
            kind=SpanKind.SERVER,
            attributes={"http.request.method": method},
            # Recorded below, with the route the exception happened on.
            record_exception=False,
            set_status_on_exception=False,
        ) as span:

            async def send_traced(message: Message) -> None:
                nonlocal status
                if message["type"] == "http.response.start":
                    status = int(message["status"])
                    span.set_attribute("http.response.status_code", status)
                await send(message)

            try:
                await self.app(scope, receive, send_traced)
            except Exception as exc:
                span.record_exception(exc)
                span.set_attribute("error.type", type(exc).__qualname__)
                span.set_status(StatusCode.ERROR, type(exc).__name__)
                raise
            else:
                if status is not None and status >= 500:
                    span.set_attribute("error.type", str(status))
                    span.set_status(StatusCode.ERROR)
            finally:
                route = route_template(scope, top)
                if route != UNMATCHED:
                    span.set_attribute("http.route", route)
                    span.update_name(f"{method} {route}")


def _propagated_headers(scope: Scope) -> dict[str, str]:
    return {
        key.decode("latin-1").lower(): bytes(value).decode("latin-1")
        for key, value in scope.get("headers", [])
        if key.lower() in _PROPAGATED
    }


def _traces_url(endpoint: str) -> str:
    parts = urlsplit(endpoint)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(f"OTLP endpoint {endpoint!r} must be an http:// or https:// URL")
    if parts.path in ("", "/"):
        return parts._replace(path=OTLP_TRACES_PATH).geturl()
    return endpoint
