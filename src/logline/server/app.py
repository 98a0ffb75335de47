"""The ASGI application: routes, errors as problems, limits, metrics, logs and traces.

    app = create_app(services)             # then serve it with uvicorn (`server.run`)

The lifespan starts what runs beside the requests — the live stream's fan-out, the
checkpointer, the lease and node reapers, the scheduler, the rules' follow-up dispatcher and
approval expiry — and on shutdown drops stream subscribers (with a reason and a cursor to resume
from) and publishes a last checkpoint. Uvicorn finishes in-flight requests first, so writes
that were accepted are acknowledged.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, HTTPException
from fastapi.openapi.utils import get_openapi
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from logline import __version__
from logline.errors import LogLineError, PayloadTooLarge
from logline.observe.logs import RequestContextMiddleware
from logline.observe.metrics import MetricsMiddleware
from logline.observe.tracing import TracingMiddleware, configure_tracing
from logline.rules.gate import RulesGate
from logline.server import problems
from logline.server.checkpointer import Checkpointer
from logline.server.clientaddr import client_address
from logline.server.models import ProblemOut
from logline.server.routes import (
    accounts,
    approvals,
    auth,
    health,
    identities,
    jobs,
    log,
    nodes,
    rules,
    schedules,
    spans,
    stats,
    stream,
)
from logline.server.services import Services

API_DESCRIPTION = """A verifiable timeline: signed spans on per-tenant Merkle logs.

Errors are `application/problem+json` (RFC 9457) with a stable `type`; see docs/PROTOCOL.md."""


logger = logging.getLogger("logline.server")
ROUTES = (
    auth, accounts, spans, identities, log, jobs, schedules, nodes, rules, approvals, stats,
    stream, health,
)  # fmt: skip
REAP_EVERY_S = 1.0
SCHEDULE_EVERY_S = 1.0
OUTBOX_EVERY_S = 0.5


async def _reap_leases(services: Services) -> None:
    """Jobs whose node stopped renewing its lease fail their attempt (and are retried)."""
    while True:
        await asyncio.sleep(REAP_EVERY_S)
        try:
            expired = await asyncio.to_thread(services.jobs.expire_leases)
        except LogLineError as exc:
            logger.warning("lease reaper: %s", exc)
            continue
        if expired:
            services.jobs_ready.set()


async def _reap_nodes(services: Services) -> None:
    """Nodes not heard from for `node_lost_after_s` are marked lost."""
    while True:
        await asyncio.sleep(REAP_EVERY_S)
        try:
            lost = await asyncio.to_thread(
                services.nodes.mark_lost, services.settings.node_lost_after_s
            )
        except LogLineError as exc:
            logger.warning("node reaper: %s", exc)
            continue
        for node in lost:
            logger.warning(
                "node %s lost: no heartbeat since %s", node.identity, node.last_seen,
                extra={"node": node.identity, "tenant": node.tenant},
            )  # fmt: skip


async def _dispatch_follow_ups(services: Services, ready: asyncio.Event) -> None:
    """Run the follow-ups the rules queued: every OUTBOX_EVERY_S, and at once when a commit
    queued some (`ready`); every process does, each follow-up runs once (rules/outbox.py)."""
    while True:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(ready.wait(), OUTBOX_EVERY_S)
        ready.clear()
        try:
            ran = await asyncio.to_thread(services.outbox.run_due)
        except LogLineError as exc:
            logger.warning("follow-ups: %s", exc)
            continue
        except Exception:  # one bad row must not stop every tenant's follow-ups for good
            logger.exception("follow-ups: dispatcher failed")
            continue
        if len(ran) >= services.outbox.batch:
            ready.set()  # more may be due


async def _expire_approvals(services: Services) -> None:
    """Held spans whose approval ran out of time are expired (`approval.expired`)."""
    while True:
        await asyncio.sleep(REAP_EVERY_S)
        try:
            await asyncio.to_thread(services.approvals.expire_due)
        except LogLineError as exc:
            logger.warning("approval expiry: %s", exc)


async def _fire_schedules(services: Services) -> None:
    """Queue the jobs of due schedule periods; every process does, each period is queued once."""
    while True:
        await asyncio.sleep(SCHEDULE_EVERY_S)
        try:
            fired = await asyncio.to_thread(services.schedules.fire_due)
        except LogLineError as exc:
            logger.warning("scheduler: %s", exc)
            continue
        if fired:
            services.jobs_ready.set()


def openapi_document(app: FastAPI) -> dict[str, Any]:
    """The app's OpenAPI document, with the problem responses and credentials described."""
    schema = get_openapi(
        title=app.title, version=app.version, description=app.description, routes=app.routes
    )
    return problems.document(schema, ProblemOut.model_json_schema())


class BodyLimit:
    """Refuse request bodies over `max_bytes` (413), by header or by counting what arrives."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope["headers"]:
            if name == b"content-length" and value.isdigit() and int(value) > self.max_bytes:
                response = problems.problem_for(self._error()).response(scope.get("path"))
                await response(scope, receive, send)
                return
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    # FastAPI turns other errors raised while reading a body into a 400.
                    raise HTTPException(413, str(self._error()))
            return message

        await self.app(scope, counted, send)

    def _error(self) -> PayloadTooLarge:
        return PayloadTooLarge(f"request bodies are limited to {self.max_bytes} bytes")


def create_app(services: Services) -> FastAPI:
    settings = services.settings
    checkpointer = Checkpointer(
        services.log,
        interval_s=settings.checkpoint_interval_s,
        on_publish=services.metrics.checkpoint_published,
    )
    tracing = configure_tracing(f"logline/{services.name}", settings.otlp_endpoint)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await asyncio.to_thread(services.start)
        services.log.listeners.append(checkpointer.committed)
        await services.feed.start()
        loop = asyncio.get_running_loop()

        def wake_claimers() -> None:
            loop.call_soon_threadsafe(services.jobs_ready.set)

        services.jobs.listeners.append(wake_claimers)
        services.feed.jobs_listeners.append(wake_claimers)
        follow_ups_ready = asyncio.Event()
        gate = services.log.gate

        def follow_ups_committed(tenant: str, size: int) -> None:
            # The gate flags follow-ups it queued; after their commit, wake the dispatcher.
            if isinstance(gate, RulesGate) and gate.queued:
                gate.queued = False
                loop.call_soon_threadsafe(follow_ups_ready.set)

        services.log.listeners.append(follow_ups_committed)
        tasks = [
            asyncio.create_task(checkpointer.run(), name="logline-checkpointer"),
            asyncio.create_task(_reap_leases(services), name="logline-lease-reaper"),
            asyncio.create_task(_fire_schedules(services), name="logline-scheduler"),
            asyncio.create_task(_reap_nodes(services), name="logline-node-reaper"),
            asyncio.create_task(
                _dispatch_follow_ups(services, follow_ups_ready), name="logline-follow-ups"
            ),
            asyncio.create_task(_expire_approvals(services), name="logline-approval-expiry"),
        ]
        try:
            yield
        finally:
            await services.feed.stop()
            for task in tasks:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await asyncio.to_thread(checkpointer.flush)
            services.log.listeners.remove(checkpointer.committed)
            services.log.listeners.remove(follow_ups_committed)
            services.limiter.close()
            tracing.shutdown()

    app = FastAPI(
        title="LogLine",
        version=__version__,
        description=API_DESCRIPTION,
        lifespan=lifespan,
    )
    app.state.services = services
    problems.install(app)
    for module in ROUTES:
        app.include_router(module.router)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = openapi_document(app)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]

    def client_of(scope: Scope) -> str:
        client = scope.get("client")
        headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in scope["headers"]]
        return client_address(client[0] if client else None, headers, settings.trusted_proxies)

    # Outermost last: the trace and the request id cover everything, including refusals, and
    # every log line of a request carries its trace id.
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    app.add_middleware(MetricsMiddleware, metrics=services.metrics)
    app.add_middleware(RequestContextMiddleware, client_of=client_of)
    if tracing.enabled:  # with nothing to export, skip the per-request work entirely
        app.add_middleware(TracingMiddleware, tracer=tracing.tracer())
    return app
