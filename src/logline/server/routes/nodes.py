"""Worker nodes: register and heartbeat, claim jobs (long-polling), renew leases, report results;
and the node registry, for people to read.

A node authenticates with an API key of role `node`. A key on the reserved `system` tenant makes
an instance-wide node that serves every tenant (fairly: `JobQueue.claim`); a key on another
tenant serves that tenant only. Nodes never touch the database: everything goes through here.
Readers of a tenant list the nodes serving it (its own and the instance-wide ones); instance
administrators list them all.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from logline.engine.jobs import DEFAULT_QUEUE, Job, Report
from logline.engine.nodes import MAX_CONCURRENCY, MAX_PID, MAX_RUNNING, NodeInfo
from logline.engine.queue import MAX_CLAIM
from logline.server.auth import (
    Principal,
    authenticate,
    authenticated,
    deny,
    limit,
    require,
    services_of,
)
from logline.server.problems import problem_for
from logline.server.roles import NODE, Permission
from logline.server.routes.auth import instance_admin
from logline.server.services import SYSTEM_TENANT

router = APIRouter(tags=["nodes"])
N = "/v1/nodes"
POLL_S = 0.25  # how often a waiting claim looks again, for jobs other processes queued
MAX_HEARTBEAT_S = 5.0
SESSION = r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"


class RegisterIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    labels: dict[str, Any] = Field(default_factory=dict)
    queues: list[str] = Field(default_factory=lambda: [DEFAULT_QUEUE], min_length=1, max_length=32)
    types: list[str] | None = Field(None, min_length=1, max_length=500)
    concurrency: int = Field(1, ge=1, le=MAX_CONCURRENCY)
    version: str = Field("", max_length=64)
    host: str = Field("", max_length=255)
    pid: int = Field(0, ge=0, le=MAX_PID)

    def info(self) -> NodeInfo:
        types = None if self.types is None else tuple(self.types)
        return NodeInfo(
            labels=self.labels, queues=tuple(self.queues), types=types,
            concurrency=self.concurrency, version=self.version, host=self.host, pid=self.pid,
        )  # fmt: skip


class NodeBeat(BaseModel):
    model_config = ConfigDict(extra="forbid")
    session: str = Field(pattern=SESSION)
    running: int = Field(0, ge=0, le=MAX_RUNNING)
    draining: bool = False


class SessionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    session: str = Field(pattern=SESSION)


class NodeOut(BaseModel):
    """A node of the registry (docs/PROTOCOL.md §13); on registration also `heartbeat_s`, how
    often to heartbeat, and `lost_after_s`, after how long without one it counts as lost."""

    model_config = ConfigDict(extra="allow")
    identity: str
    tenant: str
    session: str
    state: str


class NodeList(BaseModel):
    nodes: list[dict[str, Any]]


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


# --- the registry -----------------------------------------------------------------------------


def heartbeat_every(lost_after_s: float) -> float:
    """How often nodes are asked to heartbeat: three chances before they count as lost."""
    return min(MAX_HEARTBEAT_S, lost_after_s / 3)


@router.post(f"{N}/register", response_model=NodeOut)
def register(request: Request, body: RegisterIn, principal: Principal = Node) -> JSONResponse:
    """Register this node (online, in a new session) with what it serves; the answer says how
    often to heartbeat."""
    services = services_of(request)
    node = services.nodes.register(principal.identity, principal.tenants[0], body.info())
    lost_after_s = services.settings.node_lost_after_s
    return JSONResponse(
        {**node.to_json(), "heartbeat_s": heartbeat_every(lost_after_s),
         "lost_after_s": lost_after_s}
    )  # fmt: skip


@router.post(f"{N}/heartbeat", response_model=NodeOut)
def node_heartbeat(request: Request, body: NodeBeat, principal: Principal = Node) -> JSONResponse:
    """This node is alive, runs `running` jobs, and is draining (or not). 409 if `session` is no
    longer the node's (it registered again, or deregistered): register again, or stop."""
    node = services_of(request).nodes.heartbeat(
        principal.identity, body.session, running=body.running, draining=body.draining
    )
    return JSONResponse(node.to_json())


@router.post(f"{N}/deregister", response_model=NodeOut)
def deregister(request: Request, body: SessionIn, principal: Principal = Node) -> JSONResponse:
    """This node stopped on purpose (offline)."""
    node = services_of(request).nodes.stopped(principal.identity, body.session)
    return JSONResponse(node.to_json())


StateFilter = Annotated[list[str] | None, Query(description="Only nodes in this state.")]


@router.get("/v1/tenants/{tenant}/nodes", response_model=NodeList)
def tenant_nodes(
    request: Request,
    tenant: str,
    state: StateFilter = None,
    principal: Principal = require(Permission.READ, "read"),
) -> NodeList:
    """The nodes serving the tenant: its own and the instance-wide ones (of `system`)."""
    found = services_of(request).nodes.nodes([tenant, SYSTEM_TENANT], states=tuple(state or ()))
    return NodeList(nodes=[node.to_json() for node in found])


@router.get(N, response_model=NodeList)
def all_nodes(
    request: Request, state: StateFilter = None, principal: Principal = authenticated("read")
) -> NodeList:
    """Every node of the instance (instance administrators)."""
    services = services_of(request)
    instance_admin(services, principal)
    found = services.nodes.nodes(None, states=tuple(state or ()))
    return NodeList(nodes=[node.to_json() for node in found])


# --- jobs -----------------------------------------------------------------------------------------


@router.post(f"{N}/claim", response_model=Claimed)
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


@router.post(N + "/jobs/{job_id}/heartbeat", response_model=Heartbeat)
def heartbeat(request: Request, job_id: str, body: Lease, principal: Principal = Node) -> Heartbeat:
    """Renew the lease; tells the node whether the job's cancellation was asked for."""
    _check_tenant(request, principal, body.tenant)
    cancel = services_of(request).jobs.renew(
        body.tenant, job_id, principal.identity, body.attempt, body.lease_s
    )
    return Heartbeat(cancel_requested=cancel)


@router.post(N + "/jobs/{job_id}/complete")
def complete(
    request: Request, job_id: str, body: Done, principal: Principal = Node
) -> JSONResponse:
    _check_tenant(request, principal, body.tenant)
    job = services_of(request).jobs.complete(
        body.tenant, job_id, principal.identity, body.attempt, body.result
    )
    return JSONResponse(job.to_json())


@router.post(N + "/jobs/{job_id}/fail")
def fail(request: Request, job_id: str, body: Failed, principal: Principal = Node) -> JSONResponse:
    """The attempt failed (or stopped on a cancellation request, with `cancelled`)."""
    _check_tenant(request, principal, body.tenant)
    job = services_of(request).jobs.fail(
        body.tenant, job_id, principal.identity, body.attempt, body.error,
        retryable=body.retryable, cancelled=body.cancelled,
    )  # fmt: skip
    return JSONResponse(job.to_json())


class ReportIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    job_id: str = Field(min_length=1, max_length=36)
    tenant: str
    attempt: int = Field(ge=1)
    outcome: Literal["succeeded", "failed", "cancelled"]
    result: Any = None
    error: str | None = Field(None, min_length=1, max_length=10_000)
    retryable: bool = True


class ReportsIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reports: list[ReportIn] = Field(min_length=1, max_length=MAX_CLAIM)


class ReportResult(BaseModel):
    job_id: str
    state: str | None = None  # the job's state after the report, if it was recorded
    problem: dict[str, Any] | None = None  # why it was refused, if it was


class ReportsOut(BaseModel):
    results: list[ReportResult]


@router.post(N + "/reports", response_model=ReportsOut)
def reports(request: Request, body: ReportsIn, principal: Principal = Node) -> ReportsOut:
    """The ends of several attempts at once (one commit per tenant): each is recorded or refused
    on its own, in order; a refusal (the lease was lost, say) is that item's `problem`."""
    for item in body.reports:
        _check_tenant(request, principal, item.tenant)
    outcomes = services_of(request).jobs.report(
        principal.identity,
        [
            Report(
                item.tenant,
                item.job_id,
                item.attempt,
                item.outcome,
                result=item.result,
                error=item.error,
                retryable=item.retryable,
            )
            for item in body.reports
        ],
    )
    return ReportsOut(
        results=[
            ReportResult(job_id=item.job_id, state=outcome.state)
            if isinstance(outcome, Job)
            else ReportResult(job_id=item.job_id, problem=problem_for(outcome).body())
            for item, outcome in zip(body.reports, outcomes, strict=True)
        ]
    )
