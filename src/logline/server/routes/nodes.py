"""Worker nodes: claim jobs (long-polling), renew leases, report results.

A node authenticates with an API key of role `node`. A key on the reserved `system` tenant makes
an instance-wide node that serves every tenant (fairly: `JobQueue.claim`); a key on another
tenant serves that tenant only. Nodes never touch the database: everything goes through here.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from logline.engine.queue import MAX_CLAIM
from logline.server.auth import Principal, authenticate, deny, limit, services_of
from logline.server.roles import NODE
from logline.server.services import SYSTEM_TENANT

router = APIRouter(prefix="/v1/nodes", tags=["nodes"])
POLL_S = 0.25  # how often a waiting claim looks again, for jobs other processes queued


class ClaimIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    queues: list[str] = Field(default_factory=lambda: ["default"], min_length=1, max_length=32)
    limit: int = Field(1, ge=1, le=MAX_CLAIM)
    lease_s: float = Field(30.0, ge=1, le=3600)
    wait_s: float = Field(0.0, ge=0, le=60)
    # The job types this node has handlers for (default: any); others are left to other nodes.
    types: list[str] | None = Field(None, min_length=1, max_length=500)


class Claimed(BaseModel):
    jobs: list[dict[str, Any]]


class Lease(BaseModel):
    model_config = ConfigDict(extra="forbid")
    tenant: str
    attempt: int = Field(ge=1)
    lease_s: float = Field(30.0, ge=1, le=3600)


class Heartbeat(BaseModel):
    cancel_requested: bool


class Done(BaseModel):
    model_config = ConfigDict(extra="forbid")
    tenant: str
    attempt: int = Field(ge=1)
    result: Any = None


class Failed(BaseModel):
    model_config = ConfigDict(extra="forbid")
    tenant: str
    attempt: int = Field(ge=1)
    error: str = Field(min_length=1, max_length=10_000)
    retryable: bool = True
    cancelled: bool = False


def _node(request: Request) -> Principal:
    services = services_of(request)
    principal = authenticate(services, request, None)
    limit(services, "write", principal.rate_key)  # refusals are logged: they need a budget too
    if principal.method != "api_key":
        deny(services, principal, "nodes authenticate with an API key of role node")
    principal = authenticate(services, request, principal.tenants[0])
    if principal.role != NODE:
        deny(services, principal, f"{principal.identity} is not a node (role {principal.role})")
    return principal


Node = Depends(_node)


def _tenants(principal: Principal) -> list[str] | None:
    """The tenants a node serves: all for an instance-wide node, else its own."""
    return None if principal.tenants == (SYSTEM_TENANT,) else list(principal.tenants)


def _check_tenant(request: Request, principal: Principal, tenant: str) -> None:
    served = _tenants(principal)
    if served is not None and tenant not in served:
        asked = replace(principal, tenant=tenant, role=None)
        deny(services_of(request), asked, f"{principal.identity} does not serve tenant {tenant}")


@router.post("/claim", response_model=Claimed)
async def claim(request: Request, body: ClaimIn, principal: Principal = Node) -> Claimed:
    """Up to `limit` jobs, leased to this node for `lease_s`; waits up to `wait_s` for one."""
    services = services_of(request)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + body.wait_s
    tenants = _tenants(principal)
    while True:
        ready = services.jobs_ready
        ready.clear()
        jobs = await asyncio.to_thread(
            services.jobs.claim, principal.identity, body.queues, limit=body.limit,
            lease_s=body.lease_s, tenants=tenants, types=body.types,
        )  # fmt: skip
        left = deadline - loop.time()
        if jobs or left <= 0 or await request.is_disconnected():
            return Claimed(jobs=[job.to_json() for job in jobs])
        try:
            await asyncio.wait_for(ready.wait(), min(left, POLL_S))
        except TimeoutError:
            pass


@router.post("/jobs/{job_id}/heartbeat", response_model=Heartbeat)
def heartbeat(request: Request, job_id: str, body: Lease, principal: Principal = Node) -> Heartbeat:
    """Renew the lease; tells the node whether the job's cancellation was asked for."""
    _check_tenant(request, principal, body.tenant)
    cancel = services_of(request).jobs.renew(
        body.tenant, job_id, principal.identity, body.attempt, body.lease_s
    )
    return Heartbeat(cancel_requested=cancel)


@router.post("/jobs/{job_id}/complete")
def complete(
    request: Request, job_id: str, body: Done, principal: Principal = Node
) -> JSONResponse:
    _check_tenant(request, principal, body.tenant)
    job = services_of(request).jobs.complete(
        body.tenant, job_id, principal.identity, body.attempt, body.result
    )
    return JSONResponse(job.to_json())


@router.post("/jobs/{job_id}/fail")
def fail(request: Request, job_id: str, body: Failed, principal: Principal = Node) -> JSONResponse:
    """The attempt failed (or stopped on a cancellation request, with `cancelled`)."""
    _check_tenant(request, principal, body.tenant)
    job = services_of(request).jobs.fail(
        body.tenant, job_id, principal.identity, body.attempt, body.error,
        retryable=body.retryable, cancelled=body.cancelled,
    )  # fmt: skip
    return JSONResponse(job.to_json())
