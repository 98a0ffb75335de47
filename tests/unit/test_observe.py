"""Metrics, logs and traces, through a small app wearing the three middlewares."""

from __future__ import annotations

import doctest
import importlib
import json
import logging
import re
import threading
from collections.abc import AsyncIterator, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
import structlog
from fastapi import FastAPI, Request, WebSocket
from fastapi.responses import JSONResponse, PlainTextResponse, StreamingResponse
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from starlette.applications import Starlette
from starlette.routing import Route
from starlette.types import Scope

import logline.observe.metrics as metrics_module
from logline.errors import ConfigError
from logline.observe.asgi import UNMATCHED
from logline.observe.logs import RequestContextMiddleware, configure_logging
from logline.observe.metrics import Metrics, MetricsMiddleware
from logline.observe.tracing import (
    Tracing,
    TracingMiddleware,
    configure_tracing,
    current_trace_id,
)

SPANS = "/v1/tenants/{tenant}/spans"
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE_ID}-{PARENT_ID}-01"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def make_app() -> FastAPI:
    app = FastAPI()
    log = structlog.get_logger("logline.test")

    @app.get(SPANS)
    async def list_spans(tenant: str, request: Request) -> dict[str, Any]:
        log.info("listing", tenant=tenant)
        return {
            "tenant": tenant,
            "trace_id": current_trace_id(),
            "request_id": getattr(request.state, "request_id", None),
        }

    @app.post(SPANS)
    async def add_span(tenant: str) -> dict[str, str]:
        return {"tenant": tenant}

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("kaboom")

    @app.get("/unavailable")
    async def unavailable() -> JSONResponse:
        return JSONResponse({"detail": "later"}, status_code=503)

    @app.get("/stream")
    async def stream() -> StreamingResponse:
        async def chunks() -> AsyncIterator[bytes]:
            for n in range(3):
                yield f"data: {n}\n\n".encode()

        return StreamingResponse(chunks(), media_type="text/event-stream")

    @app.websocket("/ws")
    async def echo(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.send_text(await websocket.receive_text())
        await websocket.close()

    mounted = Starlette(routes=[Route("/items/{item}", lambda _: PlainTextResponse("item"))])
    app.mount("/sub/{tenant}", mounted)
    return app


def client(app: FastAPI) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    return httpx.AsyncClient(transport=transport, base_url="http://logline.test")


@pytest.mark.parametrize(
    "module_name",
    ["logline.observe.asgi", "logline.observe.metrics", "logline.observe.logs"],
)
def test_module_examples_run(module_name: str) -> None:
    result = doctest.testmod(importlib.import_module(module_name), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0


# Metrics


def test_every_documented_metric_is_exposed() -> None:
    metrics = Metrics(version="1.2.3")
    payload, content_type = metrics.render()
    text = payload.decode()
    assert content_type == "text/plain; version=0.0.4; charset=utf-8"
    documented = re.findall(r"^    (logline_\w+)", metrics_module.__doc__ or "", re.M)
    assert len(documented) == 13
    for name in documented:
        assert f"# TYPE {name} " in text, name
    assert 'logline_build_info{version="1.2.3"} 1.0' in text
    payload, content_type = metrics.render("application/openmetrics-text; version=1.0.0")
    assert content_type.startswith("application/openmetrics-text; version=1.0.0")
    assert payload.endswith(b"# EOF\n")


def test_domain_metrics_are_recorded() -> None:
    m = Metrics()
    m.observe_append("sequenced", count=5, seconds=0.002)
    m.observe_append("checkpointed", count=1, seconds=1.5)
    m.checkpoint_published()
    m.set_checkpoint_lag(42)
    m.stream_subscribed("sse")
    m.stream_subscribed("sse")
    m.stream_unsubscribed("sse")
    m.stream_sent("websocket", 3)
    m.stream_dropped("slow_consumer")
    m.auth_failed("api_key")
    m.rate_limited("write")
    assert m.value("logline_spans_appended_total", wait="sequenced") == 5
    assert m.value("logline_append_duration_seconds_count", wait="checkpointed") == 1
    assert m.value("logline_append_batch_size_sum") == 6
    assert m.value("logline_checkpoints_published_total") == 1
    assert m.value("logline_checkpoint_lag_entries_max") == 42
    assert m.value("logline_stream_subscribers", transport="sse") == 1
    assert m.value("logline_stream_messages_total", transport="websocket") == 3
    assert m.value("logline_stream_dropped_total", reason="slow_consumer") == 1
    assert m.value("logline_auth_failures_total", method="api_key") == 1
    assert m.value("logline_rate_limited_total", route_class="write") == 1
    # Fixed label sets are present from the start, at zero.
    assert m.value("logline_stream_dropped_total", reason="shutdown") == 0
    assert m.value("logline_auth_failures_total", method="password") == 0


def test_label_values_outside_the_fixed_sets_are_refused() -> None:
    m: Any = Metrics()  # Any: the type checker would refuse these calls already
    with pytest.raises(ValueError, match="unknown wait 'soon'"):
        m.observe_append("soon", 1, 0.1)
    with pytest.raises(ValueError, match="unknown transport"):
        m.stream_subscribed("carrier-pigeon")
    with pytest.raises(ValueError, match="unknown reason"):
        m.stream_dropped("bored")
    with pytest.raises(ValueError, match="unknown auth method"):
        m.auth_failed("guess")


def test_each_instance_has_its_own_registry() -> None:
    one, two = Metrics(), Metrics()
    one.auth_failed("password")
    assert one.value("logline_auth_failures_total", method="password") == 1
    assert two.value("logline_auth_failures_total", method="password") == 0


@pytest.mark.anyio
async def test_middleware_labels_requests_by_route_template() -> None:
    app = make_app()
    metrics = Metrics()
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    async with client(app) as c:
        for tenant in ("acme", "globex", "initech"):
            assert (await c.get(f"/v1/tenants/{tenant}/spans?token=s3cret")).status_code == 200
        assert (await c.post("/v1/tenants/acme/spans")).status_code == 200
        assert (await c.delete("/v1/tenants/acme/spans")).status_code == 405
        assert (await c.get("/no/such/path/1")).status_code == 404
        assert (await c.get("/no/such/path/2")).status_code == 404
        assert (await c.get("/sub/acme/items/7")).status_code == 200
        assert (await c.get("/boom")).status_code == 500
        assert (await c.get("/unavailable")).status_code == 503
        assert (await c.request("BREW", "/v1/tenants/acme/spans")).status_code == 405

    def count(method: str, route: str, status: int) -> float | None:
        return metrics.value(
            "logline_http_requests_total", method=method, route=route, status=str(status)
        )

    assert count("GET", SPANS, 200) == 3
    assert count("POST", SPANS, 200) == 1
    assert count("DELETE", SPANS, 405) == 1
    assert count("GET", UNMATCHED, 404) == 2
    assert count("GET", "/sub/{tenant}/items/{item}", 200) == 1
    assert count("GET", "/boom", 500) == 1
    assert count("GET", "/unavailable", 503) == 1
    assert count("_OTHER", SPANS, 405) == 1
    histogram_count = metrics.value(
        "logline_http_request_duration_seconds_count", method="GET", route=SPANS
    )
    assert histogram_count == 3
    text = metrics.render()[0].decode()
    assert "acme" not in text and "s3cret" not in text and "/no/such" not in text


@pytest.mark.anyio
async def test_a_root_path_does_not_change_the_template() -> None:
    app = make_app()
    metrics = Metrics()
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    transport = httpx.ASGITransport(app=app, root_path="/api")
    async with httpx.AsyncClient(transport=transport, base_url="http://logline.test") as c:
        assert (await c.get("/api/v1/tenants/acme/spans")).status_code == 200
        assert (await c.get("/api/sub/acme/items/7")).status_code == 200
    assert (
        metrics.value("logline_http_requests_total", method="GET", route=SPANS, status="200") == 1
    )
    assert (
        metrics.value(
            "logline_http_requests_total",
            method="GET",
            route="/sub/{tenant}/items/{item}",
            status="200",
        )
        == 1
    )


@pytest.mark.anyio
async def test_middleware_passes_streams_through() -> None:
    app = make_app()
    metrics = Metrics()
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    async with client(app) as c, c.stream("GET", "/stream") as response:
        chunks = [chunk async for chunk in response.aiter_text()]
    assert "".join(chunks) == "data: 0\n\ndata: 1\n\ndata: 2\n\n"
    assert (
        metrics.value("logline_http_requests_total", method="GET", route="/stream", status="200")
        == 1
    )


@pytest.mark.anyio
async def test_websockets_pass_through_all_middlewares() -> None:
    app = make_app()
    metrics = Metrics()
    exporter = InMemorySpanExporter()
    tracing = Tracing("test", exporter=exporter)
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    app.add_middleware(RequestContextMiddleware)
    app.add_middleware(TracingMiddleware, tracer=tracing.tracer())
    # Starlette's TestClient warns (as an error here) when used with httpx: speak ASGI directly.
    incoming: list[dict[str, Any]] = [
        {"type": "websocket.connect"},
        {"type": "websocket.receive", "text": "ping"},
        {"type": "websocket.disconnect", "code": 1000},
    ]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return incoming.pop(0)

    async def send(message: Any) -> None:
        sent.append(message)

    scope = _scope("websocket", "/ws", [(b"x-request-id", b"ws-1")])
    await app(scope, receive, send)
    assert [m["type"] for m in sent] == ["websocket.accept", "websocket.send", "websocket.close"]
    assert sent[1]["text"] == "ping"
    assert scope["state"]["request_id"] == "ws-1"
    assert "/ws" not in metrics.render()[0].decode()
    assert finished(exporter) == []
    tracing.shutdown()


# Logs


@pytest.fixture
def restore_logging() -> Iterator[None]:
    saved = structlog.get_config()
    root, httpx_logger = logging.getLogger(), logging.getLogger("httpx")
    handlers, level, httpx_level = list(root.handlers), root.level, httpx_logger.level
    yield
    structlog.configure(**saved)
    root.handlers[:] = handlers
    root.setLevel(level)
    httpx_logger.setLevel(httpx_level)


def json_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def test_log_lines_are_json_objects_on_stderr(
    restore_logging: None, capsys: pytest.CaptureFixture[str]
) -> None:
    configure_logging("info")
    structlog.get_logger("logline.test").info("hello", answer=42)
    structlog.get_logger("logline.test").debug("hidden")
    logging.getLogger("uvicorn.error").warning("from %s", "stdlib")
    try:
        raise ValueError("bad\nvalue")
    except ValueError:
        structlog.get_logger("logline.test").exception("failed")
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.splitlines()
    assert len(lines) == 3
    hello, stdlib, failed = (json.loads(line) for line in lines)
    assert hello["event"] == "hello" and hello["answer"] == 42
    assert hello["level"] == "info" and hello["logger"] == "logline.test"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+Z", hello["timestamp"])
    assert stdlib["event"] == "from stdlib" and stdlib["logger"] == "uvicorn.error"
    assert stdlib["level"] == "warning"
    assert failed["level"] == "error" and "ValueError: bad\nvalue" in failed["exception"]


def test_reconfiguring_replaces_the_handler(
    restore_logging: None, capsys: pytest.CaptureFixture[str]
) -> None:
    configure_logging("info")
    configure_logging("debug", json=False)
    structlog.get_logger("logline.test").debug("plain", answer=42)
    err = capsys.readouterr().err
    assert err.count("plain") == 1 and "answer=42" in err
    with pytest.raises(json.JSONDecodeError):
        json.loads(err)


def test_an_unknown_level_is_a_config_error(restore_logging: None) -> None:
    with pytest.raises(ConfigError, match="log level 'loud'"):
        configure_logging("loud")


@pytest.mark.anyio
async def test_access_line_per_request_with_a_request_id(
    restore_logging: None, capsys: pytest.CaptureFixture[str]
) -> None:
    configure_logging("info")
    app = make_app()
    app.add_middleware(RequestContextMiddleware)
    async with client(app) as c:
        response = await c.get(
            "/v1/tenants/acme/spans?api_key=s3cret",
            headers={"Authorization": "Bearer t0ken", "X-Request-ID": "req-42"},
        )
        missing = await c.get("/nope/deeper?token=s3cret")
        boom = await c.get("/boom")
    assert response.headers["x-request-id"] == "req-42"
    assert response.json()["request_id"] == "req-42"
    assert re.fullmatch(r"[0-9a-f]{32}", missing.headers["x-request-id"])
    err = capsys.readouterr().err
    assert "s3cret" not in err and "t0ken" not in err
    lines = json_lines(err)
    listing = next(line for line in lines if line["event"] == "listing")
    assert listing["request_id"] == "req-42" and listing["tenant"] == "acme"
    access = [line for line in lines if line["logger"] == "logline.access"]
    assert [line["route"] for line in access] == [SPANS, "/nope/deeper", "/boom"]
    first = access[0]
    assert first["event"] == "request" and first["level"] == "info"
    assert first["method"] == "GET" and first["status"] == 200
    assert first["request_id"] == "req-42" and first["client"] == "127.0.0.1"
    assert isinstance(first["duration_ms"], float)
    assert access[1]["status"] == 404
    assert access[1]["request_id"] == missing.headers["x-request-id"]
    assert access[2]["status"] == 500 and access[2]["level"] == "error"
    assert boom.status_code == 500


@pytest.mark.parametrize(
    "given", ["", "a" * 65, "has space", "semi;colon", 'quote"d', "ünïcode", "x\r\ny"]
)
@pytest.mark.anyio
async def test_unsafe_request_ids_are_replaced(
    given: str, restore_logging: None, capsys: pytest.CaptureFixture[str]
) -> None:
    configure_logging("info")
    app = make_app()
    app.add_middleware(RequestContextMiddleware)
    scope_headers = [(b"x-request-id", given.encode())]
    response = await _raw_get(app, "/v1/tenants/acme/spans", scope_headers)
    assert re.fullmatch(rb"[0-9a-f]{32}", response[b"x-request-id"])
    (access,) = (line for line in json_lines(capsys.readouterr().err) if line["event"] == "request")
    assert access["request_id"] == response[b"x-request-id"].decode()


def _scope(kind: str, path: str, headers: list[tuple[bytes, bytes]]) -> Scope:
    return {
        "type": kind,
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http" if kind == "http" else "ws",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": headers,
        "client": ("127.0.0.1", 5000),
        "server": ("logline.test", 80),
        "subprotocols": [],
    }


async def _raw_get(app: Any, path: str, headers: list[tuple[bytes, bytes]]) -> dict[bytes, bytes]:
    """Call `app` with raw ASGI headers (httpx would refuse some of the values tested)."""
    scope = _scope("http", path, headers)
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Any) -> None:
        sent.append(message)

    await app(scope, receive, send)
    start = next(m for m in sent if m["type"] == "http.response.start")
    return dict(start["headers"])


@pytest.mark.anyio
async def test_the_logged_client_can_come_from_a_hook(
    restore_logging: None, capsys: pytest.CaptureFixture[str]
) -> None:
    configure_logging("info")
    app = make_app()
    app.add_middleware(RequestContextMiddleware, client_of=lambda scope: "203.0.113.7")
    async with client(app) as c:
        await c.get("/v1/tenants/acme/spans")
    (access,) = (line for line in json_lines(capsys.readouterr().err) if line["event"] == "request")
    assert access["client"] == "203.0.113.7"


# Traces


@pytest.fixture
def traced() -> Iterator[tuple[FastAPI, InMemorySpanExporter]]:
    exporter = InMemorySpanExporter()
    tracing = Tracing("logline-test", exporter=exporter)
    app = make_app()
    app.add_middleware(TracingMiddleware, tracer=tracing.tracer())
    yield app, exporter
    tracing.shutdown()


def finished(exporter: InMemorySpanExporter) -> list[ReadableSpan]:
    return list(exporter.get_finished_spans())


@pytest.mark.anyio
async def test_one_server_span_per_request_named_by_route(
    traced: tuple[FastAPI, InMemorySpanExporter],
) -> None:
    app, exporter = traced
    async with client(app) as c:
        body = (await c.get("/v1/tenants/acme/spans?token=s3cret")).json()
        await c.get("/sub/acme/items/7")
        await c.get("/nope")
    spans = finished(exporter)
    assert [s.name for s in spans] == [f"GET {SPANS}", "GET /sub/{tenant}/items/{item}", "GET"]
    first = spans[0]
    assert first.kind is SpanKind.SERVER
    assert dict(first.attributes or {}) == {
        "http.request.method": "GET",
        "http.route": SPANS,
        "http.response.status_code": 200,
    }
    assert first.resource.attributes["service.name"] == "logline-test"
    assert body["trace_id"] == format(first.context.trace_id, "032x")
    assert first.parent is None
    assert "http.route" not in (spans[2].attributes or {})
    assert spans[2].attributes and spans[2].attributes["http.response.status_code"] == 404


@pytest.mark.anyio
async def test_an_incoming_traceparent_is_continued(
    traced: tuple[FastAPI, InMemorySpanExporter],
) -> None:
    app, exporter = traced
    async with client(app) as c:
        body = (await c.get("/v1/tenants/acme/spans", headers={"traceparent": TRACEPARENT})).json()
        await c.get("/v1/tenants/acme/spans", headers={"traceparent": "00-garbage-01"})
    continued, fresh = finished(exporter)
    assert body["trace_id"] == TRACE_ID
    assert format(continued.context.trace_id, "032x") == TRACE_ID
    assert continued.parent is not None and continued.parent.is_remote
    assert format(continued.parent.span_id, "016x") == PARENT_ID
    assert format(fresh.context.trace_id, "032x") != TRACE_ID and fresh.parent is None


@pytest.mark.anyio
async def test_server_errors_mark_the_span(traced: tuple[FastAPI, InMemorySpanExporter]) -> None:
    app, exporter = traced
    async with client(app) as c:
        await c.get("/boom")
        await c.get("/unavailable")
        await c.post("/v1/tenants/acme/spans", content=b"")
    boom, unavailable, ok = finished(exporter)
    assert boom.name == "GET /boom" and boom.status.status_code is StatusCode.ERROR
    assert boom.attributes and boom.attributes["error.type"] == "RuntimeError"
    assert [event.name for event in boom.events] == ["exception"]
    assert unavailable.status.status_code is StatusCode.ERROR
    assert unavailable.attributes and unavailable.attributes["error.type"] == "503"
    assert ok.name == f"POST {SPANS}" and ok.status.status_code is StatusCode.UNSET


@pytest.mark.anyio
async def test_disabled_tracing_still_carries_the_callers_trace() -> None:
    tracing = configure_tracing("logline-test", None)
    assert not tracing.enabled
    app = make_app()
    app.add_middleware(TracingMiddleware, tracer=tracing.tracer())
    async with client(app) as c:
        body = (await c.get("/v1/tenants/acme/spans", headers={"traceparent": TRACEPARENT})).json()
        untraced = (await c.get("/v1/tenants/acme/spans")).json()
    assert body["trace_id"] == TRACE_ID
    assert untraced["trace_id"] is None
    tracing.shutdown()


@pytest.mark.anyio
async def test_log_lines_carry_the_trace_id(
    restore_logging: None, capsys: pytest.CaptureFixture[str]
) -> None:
    configure_logging("info")
    tracing = Tracing("logline-test", exporter=InMemorySpanExporter())
    app = make_app()
    app.add_middleware(RequestContextMiddleware)
    app.add_middleware(TracingMiddleware, tracer=tracing.tracer())  # added last: outermost
    async with client(app) as c:
        await c.get("/v1/tenants/acme/spans", headers={"traceparent": TRACEPARENT})
    lines = json_lines(capsys.readouterr().err)
    assert {line["event"] for line in lines} == {"listing", "request"}
    assert all(line["trace_id"] == TRACE_ID for line in lines)
    tracing.shutdown()


@pytest.mark.parametrize(
    ("endpoint", "message"),
    [("collector:4318", "must be an http"), ("ftp://collector", "must be an http")],
)
def test_bad_otlp_endpoints_are_config_errors(endpoint: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        configure_tracing("logline", endpoint)


class _Collector(BaseHTTPRequestHandler):
    received: list[tuple[str, str, bytes]]

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.received.append((self.path, self.headers.get("Content-Type", ""), body))
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass  # keep the test output clean


@pytest.fixture
def collector() -> Iterator[tuple[str, list[tuple[str, str, bytes]]]]:
    received: list[tuple[str, str, bytes]] = []
    handler = type("Collector", (_Collector,), {"received": received})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", received
    server.shutdown()
    server.server_close()
    thread.join()


@pytest.mark.anyio
async def test_spans_reach_an_otlp_http_collector(
    collector: tuple[str, list[tuple[str, str, bytes]]],
) -> None:
    base_url, received = collector
    tracing = configure_tracing("logline-otlp-test", base_url)
    app = make_app()
    app.add_middleware(TracingMiddleware, tracer=tracing.tracer())
    async with client(app) as c:
        await c.get("/v1/tenants/acme/spans", headers={"traceparent": TRACEPARENT})
    tracing.shutdown()
    assert received, "the collector received nothing"
    path, content_type, body = received[0]
    assert path == "/v1/traces" and content_type == "application/x-protobuf"
    request = ExportTraceServiceRequest()
    request.ParseFromString(body)
    (resource_spans,) = request.resource_spans
    services = [a.value.string_value for a in resource_spans.resource.attributes]
    assert "logline-otlp-test" in services
    (span,) = [s for scope in resource_spans.scope_spans for s in scope.spans]
    assert span.name == f"GET {SPANS}" and span.trace_id.hex() == TRACE_ID


def test_a_full_traces_url_is_kept(collector: tuple[str, list[tuple[str, str, bytes]]]) -> None:
    base_url, received = collector
    tracing = configure_tracing("logline-otlp-test", f"{base_url}/custom/v1/traces")
    with tracing.tracer().start_as_current_span("manual"):
        pass
    assert tracing.force_flush(timeout_s=10)
    assert [path for path, _, _ in received] == ["/custom/v1/traces"]
    tracing.shutdown()
