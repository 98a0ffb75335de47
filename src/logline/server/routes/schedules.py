"""Schedules: jobs submitted every period, by cron or interval (docs/PROTOCOL.md §13).

Who may: readers list and read; operators create, change (pause, resume, retime, a new job
template) and delete. `{ref}` is a schedule's id or its name.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from logline.engine.jobs import DEFAULT_QUEUE, MAX_ATTEMPTS
from logline.engine.periods import (
    MAX_CRON_CHARS,
    MAX_INTERVAL_S,
    MAX_TIMEZONE_CHARS,
    MIN_INTERVAL_S,
)
from logline.engine.schedules import Schedule
from logline.server.auth import Principal, require, services_of
from logline.server.roles import Permission

router = APIRouter(prefix="/v1/tenants/{tenant}/schedules", tags=["schedules"])

Cron = Annotated[
    str,
    Field(
        min_length=1,
        max_length=MAX_CRON_CHARS,
        description="Five fields (minute hour day-of-month month day-of-week), or @hourly, "
        "@daily, ...; read on the wall clock of `timezone`.",
    ),
]
Interval = Annotated[float, Field(ge=MIN_INTERVAL_S, le=MAX_INTERVAL_S)]
TimeZone = Annotated[
    str, Field(min_length=1, max_length=MAX_TIMEZONE_CHARS, description="An IANA time zone.")
]


class JobTemplate(BaseModel):
    """The job each period submits: a job's fields but `run_at` and `dedupe_key`, which the
    schedule sets (docs/PROTOCOL.md §13)."""

    model_config = ConfigDict(extra="forbid")

    type: str
    payload: Any = None
    queue: str = DEFAULT_QUEUE
    priority: str = "normal"
    max_attempts: int = Field(3, ge=1, le=MAX_ATTEMPTS)
    backoff_base_s: float = Field(1.0, gt=0, le=86_400)
    backoff_cap_s: float = Field(300.0, gt=0, le=86_400)
    timeout_s: float = Field(60.0, gt=0, le=86_400)
    tags: list[str] = Field(default_factory=list, max_length=32)


class ScheduleIn(BaseModel):
    """A new schedule: a `cron` expression or an `interval_s`, not both."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=64, pattern=r"^[a-z0-9][a-z0-9._-]*$")
    cron: Cron | None = None
    interval_s: Interval | None = None
    timezone: TimeZone = "UTC"
    job: JobTemplate
    enabled: bool = True


class ScheduleChange(BaseModel):
    """What to change; what is left out stays. A cron expression replaces an interval and the
    other way round."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool | None = None
    cron: Cron | None = None
    interval_s: Interval | None = None
    timezone: TimeZone | None = None
    job: JobTemplate | None = None


class ScheduleOut(BaseModel):
    id: str
    tenant: str
    name: str
    cron: str | None
    interval_s: float | None
    timezone: str
    job: dict[str, Any]
    enabled: bool
    next_run_at: str
    last_run_at: str | None
    last_job_id: str | None
    created_at: str
    created_by: str
    updated_at: str
    span_id: str


class ScheduleList(BaseModel):
    schedules: list[ScheduleOut]
    next_after: str | None


def _out(schedule: Schedule) -> ScheduleOut:
    return ScheduleOut(**schedule.to_json())


@router.post("", status_code=201, response_model=ScheduleOut)
def create(
    request: Request,
    tenant: str,
    body: ScheduleIn,
    principal: Principal = require(Permission.OPERATE, "write"),
) -> ScheduleOut:
    """Create a schedule; its first period starts at the next cron time, or one interval on."""
    schedule = services_of(request).schedules.create(
        tenant,
        body.name,
        job=body.job.model_dump(),
        by=principal.identity,
        cron=body.cron,
        interval_s=body.interval_s,
        timezone=body.timezone,
        enabled=body.enabled,
    )
    return _out(schedule)


@router.get("", response_model=ScheduleList)
def list_schedules(
    request: Request,
    tenant: str,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    after: Annotated[str, Query(max_length=64)] = "",
    principal: Principal = require(Permission.READ, "read"),
) -> ScheduleList:
    """Schedules in name order; pass `after` = the previous page's `next_after` for the next."""
    found = services_of(request).schedules.list(tenant, limit=limit, after=after)
    return ScheduleList(
        schedules=[_out(s) for s in found],
        next_after=found[-1].name if len(found) == limit else None,
    )


@router.get("/{ref}", response_model=ScheduleOut)
def get_schedule(
    request: Request,
    tenant: str,
    ref: str,
    principal: Principal = require(Permission.READ, "read"),
) -> ScheduleOut:
    """A schedule, by id or name."""
    return _out(services_of(request).schedules.get(tenant, ref))


@router.patch("/{ref}", response_model=ScheduleOut)
def change(
    request: Request,
    tenant: str,
    ref: str,
    body: ScheduleChange,
    principal: Principal = require(Permission.OPERATE, "write"),
) -> ScheduleOut:
    """Pause or resume (`enabled`), retime, or give a new job template. A resumed or retimed
    schedule next runs at its first period after now; missed periods are not made up for."""
    schedule = services_of(request).schedules.update(
        tenant,
        ref,
        by=principal.identity,
        enabled=body.enabled,
        cron=body.cron,
        interval_s=body.interval_s,
        timezone=body.timezone,
        job=None if body.job is None else body.job.model_dump(),
    )
    return _out(schedule)


@router.delete("/{ref}", status_code=204)
def delete(
    request: Request,
    tenant: str,
    ref: str,
    principal: Principal = require(Permission.OPERATE, "write"),
) -> None:
    """Delete a schedule; the jobs it queued stay."""
    services_of(request).schedules.delete(tenant, ref, by=principal.identity)
