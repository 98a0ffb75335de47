"""Jobs: submit (one or a batch), read, list, cancel, retry; dead letters; payload schemas.

Who may: members submit and read; operators cancel, retry and requeue; admins register payload
schemas and purge dead letters. Nodes use `routes.nodes`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from logline.engine.jobs import DEAD_LETTERS, DEFAULT_QUEUE, MAX_ATTEMPTS, Job, JobRequest
from logline.identity.ids import check_kind
from logline.server.auth import Principal, require, services_of
from logline.server.roles import Permission

router = APIRouter(prefix="/v1/tenants/{tenant}", tags=["jobs"])


class JobIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: str
    payload: Any = None
    queue: str = DEFAULT_QUEUE
    priority: str = "normal"
    run_at: datetime | None = None
    max_attempts: int = Field(3, ge=1, le=MAX_ATTEMPTS)
    backoff_base_s: float = Field(1.0, gt=0, le=86_400)
    backoff_cap_s: float = Field(300.0, gt=0, le=86_400)
    timeout_s: float = Field(60.0, gt=0, le=86_400)
    dedupe_key: str | None = Field(None, min_length=1, max_length=200)
    tags: list[str] = Field(default_factory=list, max_length=32)

    def request(self) -> JobRequest:
        return JobRequest(**{**self.model_dump(), "tags": tuple(self.tags)})


class JobBatch(BaseModel):
    model_config = ConfigDict(extra="forbid")
    jobs: list[JobIn] = Field(min_length=1, max_length=1000)


class JobOut(BaseModel):
    """A job (docs/PROTOCOL.md §13) with its attempts; `deduplicated` when an earlier job with the
    same dedupe key was returned instead of a new one."""

    model_config = ConfigDict(extra="allow")
    id: str
    tenant: str
    type: str
    state: str
    deduplicated: bool = False


class JobList(BaseModel):
    jobs: list[dict[str, Any]]
    next_before: str | None


class DeadLetterFilter(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: str | None = None
    queue: str | None = None
    ids: list[str] = Field(default_factory=list, max_length=1000)


class SchemaIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    json_schema: dict[str, Any] = Field(alias="schema")


def _page(jobs: list[Job], limit: int) -> JobList:
    """A page of jobs; a full page may have a next one, which starts before its last job."""
    return JobList(
        jobs=[job.to_json() for job in jobs],
        next_before=jobs[-1].id if len(jobs) == limit else None,
    )


@router.post("/jobs", status_code=201, response_model=JobOut)
def submit(
    request: Request,
    tenant: str,
    body: JobIn,
    principal: Principal = require(Permission.WRITE, "write"),
) -> JSONResponse:
    """Queue a job. 201 for a new job; 200 with the earlier job when its dedupe key was used."""
    [(job, new)] = services_of(request).jobs.submit_many(tenant, [body.request()])
    return JSONResponse({**job.to_json(), "deduplicated": not new}, 201 if new else 200)


@router.post("/jobs/batch", status_code=201, response_model=list[JobOut])
def submit_batch(
    request: Request,
    tenant: str,
    body: JobBatch,
    principal: Principal = require(Permission.WRITE, "write"),
) -> JSONResponse:
    """Queue jobs atomically: all are queued (or deduplicated), or none."""
    results = services_of(request).jobs.submit_many(tenant, [j.request() for j in body.jobs])
    return JSONResponse([{**job.to_json(), "deduplicated": not new} for job, new in results], 201)


@router.get("/jobs", response_model=JobList)
def list_jobs(
    request: Request,
    tenant: str,
    state: Annotated[list[str] | None, Query()] = None,
    type: str | None = None,
    queue: str | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    before: str | None = None,
    principal: Principal = require(Permission.READ, "read"),
) -> JobList:
    """Jobs newest first; pass `before` = the previous page's `next_before` for the next page."""
    jobs = services_of(request).jobs.jobs(
        tenant, states=tuple(state or ()), type_=type, queue=queue, limit=limit, before=before
    )
    return _page(jobs, limit)


@router.get("/jobs/{job_id}", response_model=JobOut)
def get_job(
    request: Request,
    tenant: str,
    job_id: str,
    principal: Principal = require(Permission.READ, "read"),
) -> JSONResponse:
    return JSONResponse(services_of(request).jobs.get(tenant, job_id).to_json())


@router.post("/jobs/{job_id}/cancel", response_model=JobOut)
def cancel(
    request: Request,
    tenant: str,
    job_id: str,
    principal: Principal = require(Permission.OPERATE, "write"),
) -> JSONResponse:
    """Cancel a queued or retrying job now; ask a running one's handler to stop."""
    return JSONResponse(
        services_of(request).jobs.cancel(tenant, job_id, principal.identity).to_json()
    )


@router.post("/jobs/{job_id}/retry", response_model=JobOut)
def retry(
    request: Request,
    tenant: str,
    job_id: str,
    principal: Principal = require(Permission.OPERATE, "write"),
) -> JSONResponse:
    """Run a retrying job now, or requeue a dead letter."""
    job = services_of(request).jobs.retry_now(tenant, job_id, principal.identity)
    return JSONResponse(job.to_json())


@router.get("/dead-letters", response_model=JobList)
def dead_letters(
    request: Request,
    tenant: str,
    type: str | None = None,
    queue: str | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    before: str | None = None,
    principal: Principal = require(Permission.READ, "read"),
) -> JobList:
    """Jobs that are dead (attempts used up) or failed (not retryable), newest first."""
    jobs = services_of(request).jobs.jobs(
        tenant, states=DEAD_LETTERS, type_=type, queue=queue, limit=limit, before=before
    )
    return _page(jobs, limit)


@router.post("/dead-letters/requeue", response_model=JobList)
def requeue(
    request: Request,
    tenant: str,
    body: DeadLetterFilter,
    principal: Principal = require(Permission.OPERATE, "write"),
) -> JobList:
    """Requeue the dead letters matching every given filter (none given: all, up to 1000)."""
    jobs = services_of(request).jobs.requeue_dead(
        tenant, principal.identity, type_=body.type, queue=body.queue, ids=body.ids
    )
    return JobList(jobs=[job.to_json() for job in jobs], next_before=None)


@router.post("/dead-letters/purge", response_model=list[str])
def purge(
    request: Request,
    tenant: str,
    body: DeadLetterFilter,
    principal: Principal = require(Permission.ADMIN, "write"),
) -> list[str]:
    """Forget the matching dead letters' rows (their history stays on the log); their ids."""
    return services_of(request).jobs.purge_dead(
        tenant, principal.identity, type_=body.type, queue=body.queue, ids=body.ids
    )


@router.put("/job-types/{job_type}", status_code=204)
def register_type(
    request: Request,
    tenant: str,
    job_type: str,
    body: SchemaIn,
    principal: Principal = require(Permission.ADMIN, "write"),
) -> None:
    """Register the JSON Schema (2020-12) that payloads of `job_type` must satisfy."""
    check_kind(job_type)
    services_of(request).jobs.register_type(tenant, job_type, body.json_schema, principal.identity)
