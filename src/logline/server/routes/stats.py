"""The jobs read model (`engine.stats`): per tenant for its readers, instance-wide for admins."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request

from logline.engine.stats import DEFAULT_WINDOWS, MAX_SERIES_MINUTES
from logline.server.auth import Principal, authenticated, require, services_of
from logline.server.roles import Permission
from logline.server.routes.auth import instance_admin

router = APIRouter(tags=["stats"])

Windows = Annotated[list[str] | None, Query(max_length=6)]


@router.get("/v1/tenants/{tenant}/stats")
def tenant_stats(
    request: Request,
    tenant: str,
    window: Windows = None,
    type: str | None = None,
    queue: str | None = None,
    principal: Principal = require(Permission.READ, "read"),
) -> dict[str, Any]:
    """Jobs per type and queue, and in total: counts by state, queue depth, oldest ready job,
    and per window (`window`, repeatable; default 1m, 5m, 1h, 24h) throughput, failure rate,
    and wait and run time percentiles (docs/PROTOCOL.md §13)."""
    return services_of(request).jobs.stats.summary(
        tenant, windows=window or DEFAULT_WINDOWS, type_=type, queue=queue
    )


@router.get("/v1/tenants/{tenant}/stats/series")
def tenant_series(
    request: Request,
    tenant: str,
    minutes: Annotated[int, Query(ge=1, le=MAX_SERIES_MINUTES)] = 60,
    type: str | None = None,
    queue: str | None = None,
    principal: Principal = require(Permission.READ, "read"),
) -> list[dict[str, Any]]:
    """One point per minute of the last `minutes`, oldest first: event counts and times."""
    return services_of(request).jobs.stats.series(tenant, minutes=minutes, type_=type, queue=queue)


@router.get("/v1/stats")
def instance_stats(
    request: Request,
    tenant: str | None = None,
    window: Windows = None,
    type: str | None = None,
    queue: str | None = None,
    principal: Principal = authenticated("read"),
) -> dict[str, Any]:
    """What `/v1/tenants/{tenant}/stats` shows, over every tenant (or the one given): for
    instance administrators."""
    services = services_of(request)
    instance_admin(services, principal)
    return services.jobs.stats.summary(
        tenant, windows=window or DEFAULT_WINDOWS, type_=type, queue=queue
    )
