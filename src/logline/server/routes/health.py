"""Liveness, readiness and Prometheus metrics (unauthenticated; bind or firewall accordingly)."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from logline.errors import LogLineError
from logline.server.auth import services_of
from logline.server.models import Health
from logline.server.services import Services

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=Health)
async def healthz() -> Health:
    """The process is up and serving."""
    return Health(status="ok")


def _readiness(services: Services) -> dict[str, str]:
    checks: dict[str, str] = {}
    try:
        services.store.logs()
        checks["database"] = "ok"
    except LogLineError as exc:
        checks["database"] = f"failed: {exc}"
    try:
        services.limiter.check_storage()
        checks["rate_limit_storage"] = "ok"
    except LogLineError as exc:
        checks["rate_limit_storage"] = f"failed: {exc}"
    return checks


@router.get("/readyz", response_model=Health, responses={503: {"model": Health}})
async def readyz(request: Request) -> JSONResponse:
    """Ready for traffic: the database and the rate-limit storage answer."""
    checks = await asyncio.to_thread(_readiness, services_of(request))
    ok = all(value == "ok" for value in checks.values())
    body = Health(status="ok" if ok else "unavailable", checks=checks)
    return JSONResponse(body.model_dump(), 200 if ok else 503)


def _checkpoint_lag(services: Services) -> int:
    lag = 0
    for head in services.store.logs():
        latest = services.store.latest_checkpoint(head.log_id)
        lag = max(lag, head.size - (0 if latest is None else latest.size))
    return lag


@router.get("/metrics", response_class=Response)
async def metrics(request: Request) -> Response:
    """Prometheus text exposition."""
    services = services_of(request)
    try:
        services.metrics.set_checkpoint_lag(await asyncio.to_thread(_checkpoint_lag, services))
    except LogLineError:
        pass  # the scrape still answers; readiness reports the database
    # Job metrics are read from the database while rendering.
    payload, content_type = await asyncio.to_thread(services.metrics.render)
    return Response(payload, media_type=content_type)
