"""Observability for the server: Prometheus metrics, JSON logs, OpenTelemetry traces.

    from logline.observe.logs import RequestContextMiddleware, configure_logging
    from logline.observe.metrics import Metrics, MetricsMiddleware
    from logline.observe.tracing import TracingMiddleware, configure_tracing

    configure_logging("info")
    metrics = Metrics(version="0.1.0")
    tracing = configure_tracing("logline", "http://otel-collector:4318")
    app.add_middleware(MetricsMiddleware, metrics=metrics)       # innermost
    app.add_middleware(RequestContextMiddleware)
    app.add_middleware(TracingMiddleware, tracer=tracing.tracer())  # outermost

Each middleware is plain ASGI (streaming responses and WebSockets pass through untouched) and
labels requests by route template, never by raw path (`logline.observe.asgi.route_template`).
Tracing outermost puts the trace id on every log line of the request, the access line included.
"""
