"""Schedules: a job submitted every period, by cron or interval, exactly once per period.

    schedules = Schedules(queue)
    nightly = schedules.create("acme", "nightly-report", cron="0 2 * * *",
                               timezone="Europe/Berlin", job={"type": "report.render"}, by=who)
    schedules.update("acme", "nightly-report", enabled=False, by=who)      # paused
    schedules.fire_due()            # every second, in every server process: the due periods' jobs

A schedule's `job` is a template of the job it submits: the fields of a `JobRequest` but `run_at`
(each period's job is ready when queued) and `dedupe_key` (set to `schedule:<id>:<period>`).
Periods start as `periods.Timing` says; periods missed while no scheduler ran coalesce into one
run of the latest, which records how many it stands for.

Exactly once: `fire_due` runs each due schedule in one `Log.transact` on its tenant, which locks
the schedule's row, checks it is still due, queues the job and moves `next_run_at` past now. A
scheduler that comes second (a thread, or another process on the same database) finds the
schedule no longer due; the period's dedupe key guards as well.

Every change is a span on the tenant's log, `flow_id` the schedule's id, `caused_by` its previous
change: `schedule.created`, `schedule.updated`, `schedule.paused`, `schedule.resumed`,
`schedule.deleted`. A period's job is `caused_by` the schedule's latest change and its
`job.queued` span names the schedule, the period and how many periods were missed.
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from typing import Any

from logline.canonical import canonicalize
from logline.engine.jobs import Job, JobRequest
from logline.engine.periods import Timing, check_cron, check_interval, zone
from logline.engine.queue import MAX_LIST, JobQueue, _conn
from logline.engine.stats import Tally
from logline.errors import Conflict, InvalidInput, LogLineError, NotFound
from logline.identity.ids import uuid7
from logline.ledger.admission import Prepared
from logline.ledger.span import new_span
from logline.ledger.timefmt import format_ts, parse_ts
from logline.store.interface import Tx
from logline.store.sql import Connection

_NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
# The fields of a job template and what each must be; the rest of `JobRequest` the schedule sets.
TEMPLATE_FIELDS: dict[str, tuple[type[Any] | tuple[type[Any], ...] | None, str]] = {
    "type": (str, "a job type like report.render"),
    "payload": (None, "any JSON value"),
    "queue": (str, "a queue name"),
    "priority": (str, "a priority name"),
    "max_attempts": (int, "an integer"),
    "backoff_base_s": ((int, float), "a number of seconds"),
    "backoff_cap_s": ((int, float), "a number of seconds"),
    "timeout_s": ((int, float), "a number of seconds"),
    "tags": (list, "a list of tags"),
}
DEFAULT_FIRE_LIMIT = 100
log = logging.getLogger("logline.engine.schedules")


@dataclass(frozen=True, slots=True)
class Schedule:
    id: str
    tenant: str
    name: str
    cron: str | None
    interval_s: float | None
    timezone: str
    job: dict[str, Any]  # the template: `JobRequest` fields but run_at and dedupe_key
    enabled: bool
    next_run_at: str
    last_run_at: str | None
    last_job_id: str | None
    created_at: str
    created_by: str
    updated_at: str
    span_id: str  # the latest change's span

    @classmethod
    def from_row(cls, row: tuple[Any, ...]) -> Schedule:
        values = list(row)
        values[4] = None if values[4] is None else float(values[4])  # interval_s
        values[6] = json.loads(values[6])  # job
        values[7] = bool(values[7])  # enabled
        return cls(*values)

    @property
    def timing(self) -> Timing:
        return Timing(self.cron, self.interval_s, self.timezone)

    def request(self, dedupe_key: str) -> JobRequest:
        return JobRequest(**{**self.job, "tags": tuple(self.job["tags"]), "dedupe_key": dedupe_key})

    def definition(self) -> dict[str, Any]:
        """What its change spans record: the schedule as defined."""
        return {
            "name": self.name, "cron": self.cron, "interval_s": self.interval_s,
            "timezone": self.timezone, "job": self.job, "enabled": self.enabled,
            "next_run_at": self.next_run_at,
        }  # fmt: skip

    def to_json(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


def check_name(name: object) -> str:
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise InvalidInput(
            f"a schedule name is 1-64 of a-z, 0-9, '.', '_', '-', starting with a letter or "
            f"digit, got {str(name)[:80]!r}"
        )
    if _UUID.fullmatch(name):
        raise InvalidInput(f"a schedule name must not look like a schedule id, got {name!r}")
    return name


def job_template(job: object) -> tuple[dict[str, Any], JobRequest]:
    """The template with every field filled in, and a request made from it; or InvalidInput."""
    if not isinstance(job, Mapping):
        raise InvalidInput("job must be an object: the fields of the job to submit each period")
    for name in ("run_at", "dedupe_key"):
        if name in job:
            raise InvalidInput(
                f"job: {name} is the schedule's to set (each period's job is ready when queued, "
                "with the dedupe key schedule:<id>:<period>)"
            )
    unknown = sorted(set(job) - set(TEMPLATE_FIELDS))
    if unknown:
        raise InvalidInput(
            f"job: unknown field(s) {', '.join(map(str, unknown))}; "
            f"allowed: {', '.join(TEMPLATE_FIELDS)}"
        )
    if "type" not in job:
        raise InvalidInput("job: type is required")
    for name, (kind, what) in TEMPLATE_FIELDS.items():
        value = job.get(name)
        if name not in job or kind is None:
            continue
        if isinstance(value, bool) or not isinstance(value, kind):
            raise InvalidInput(f"job: {name} must be {what}, got {value!r:.80}")
        if isinstance(value, float) and not math.isfinite(value):
            raise InvalidInput(f"job: {name} must be a finite number")
    request = JobRequest(**{**job, "tags": tuple(job.get("tags", ()))})
    try:
        payload = request.check()
    except InvalidInput as exc:
        raise InvalidInput(f"job: {exc}") from None
    template = {
        "type": request.type, "payload": json.loads(payload), "queue": request.queue,
        "priority": request.priority, "max_attempts": request.max_attempts,
        "backoff_base_s": request.backoff_base_s, "backoff_cap_s": request.backoff_cap_s,
        "timeout_s": request.timeout_s, "tags": sorted(set(request.tags)),
    }  # fmt: skip
    return template, request


class Schedules:
    """The schedules of all tenants of the queue's store; changes signed like the queue's."""

    def __init__(self, queue: JobQueue) -> None:
        self.queue = queue
        self.log = queue.log
        self.store = queue.store
        self.clock = queue.clock

    # --- recording --------------------------------------------------------------------------------

    def _span(self, schedule: Schedule, kind: str, title: str, **details: Any) -> Prepared:
        span = new_span(
            self.queue.key,
            tenant=schedule.tenant,
            author=self.queue.author,
            kind=kind,
            title=title,
            payload={"schedule": schedule.id, **details},
            caused_by=schedule.span_id or None,
            flow_id=schedule.id,
            tags=["schedule"],
        )
        return Prepared(span, self.queue.public_key)

    def _locked(self, c: Connection, tenant: str, ref: str) -> Schedule:
        """The schedule with id or name `ref`, its row locked."""
        schedule_id = ref
        if not _UUID.fullmatch(ref):
            row = c.one("select_schedule_by_name", {"tenant": tenant, "name": ref})
            schedule_id = "" if row is None else str(row[0])
        row = c.one("lock_schedule", {"id": schedule_id, "tenant": tenant}) if schedule_id else None
        if row is None:
            raise NotFound(f"no schedule {ref} in {tenant}")
        return Schedule.from_row(row)

    def _template(self, tenant: str, job: object) -> dict[str, Any]:
        template, request = job_template(job)
        self.queue._check_schema(tenant, request)
        return template

    # --- changing ---------------------------------------------------------------------------------

    def create(
        self,
        tenant: str,
        name: str,
        *,
        job: Mapping[str, Any],
        by: str,
        cron: str | None = None,
        interval_s: float | None = None,
        timezone: str = "UTC",
        enabled: bool = True,
    ) -> Schedule:
        """A new schedule; its first period starts at the next cron time, or one interval on."""
        check_name(name)
        timing = Timing.of(cron=cron, interval_s=interval_s, timezone=timezone)
        template = self._template(tenant, job)

        def work(tx: Tx, received: str) -> tuple[list[Prepared], Schedule]:
            c = _conn(tx)
            if c.one("select_schedule_by_name", {"tenant": tenant, "name": name}) is not None:
                raise Conflict(f"{tenant} already has a schedule named {name}")
            moment = self.clock()
            now = format_ts(moment)
            schedule = Schedule(
                id=uuid7(), tenant=tenant, name=name, cron=timing.cron,
                interval_s=timing.interval_s, timezone=timing.timezone, job=template,
                enabled=bool(enabled), next_run_at=format_ts(timing.next_after(moment, moment)),
                last_run_at=None, last_job_id=None, created_at=now, created_by=by,
                updated_at=now, span_id="",
            )  # fmt: skip
            record = self._span(
                schedule,
                "schedule.created",
                f"schedule {name} created ({timing.describe()})",
                **schedule.definition(),
                by=by,
            )
            schedule = replace(schedule, span_id=record.span.id)
            c.run(
                "insert_schedule",
                {
                    **_row(schedule),
                    "name": name,
                    "created_at": now,
                    "created_by": by,
                },
            )
            return [record], schedule

        _, schedule = self.log.transact(tenant, work)
        assert isinstance(schedule, Schedule)
        return schedule

    def update(
        self,
        tenant: str,
        ref: str,
        *,
        by: str,
        enabled: bool | None = None,
        cron: str | None = None,
        interval_s: float | None = None,
        timezone: str | None = None,
        job: Mapping[str, Any] | None = None,
    ) -> Schedule:
        """Change what is given: pause or resume (`enabled`), the timing (a cron expression or an
        interval replaces the other), the time zone, the job template. A resumed schedule, or one
        with a new timing, next runs at its first period after now: none is made up for."""
        if cron is not None and interval_s is not None:
            raise InvalidInput("give a cron expression or an interval, not both")
        if timezone is not None:
            zone(timezone)
        if cron is not None:
            Timing.of(cron=cron, timezone=timezone or "UTC")
        if interval_s is not None:
            check_interval(interval_s)
        template = None if job is None else self._template(tenant, job)

        def work(tx: Tx, received: str) -> tuple[list[Prepared], Schedule]:
            c = _conn(tx)
            old = self._locked(c, tenant, ref)
            timing = old.timing
            if cron is not None:
                timing = Timing(check_cron(cron), None, timing.timezone)
            elif interval_s is not None:
                timing = Timing(None, check_interval(interval_s), timing.timezone)
            if timezone is not None:
                timing = replace(timing, timezone=timezone)
            new = replace(
                old,
                cron=timing.cron,
                interval_s=timing.interval_s,
                timezone=timing.timezone,
                job=old.job if template is None else template,
                enabled=old.enabled if enabled is None else bool(enabled),
            )
            changed = [
                name
                for name in ("cron", "interval_s", "timezone", "job", "enabled")
                if getattr(new, name) != getattr(old, name)
            ]
            if not changed:
                return [], old
            moment = self.clock()
            if new.enabled and (new.timing != old.timing or not old.enabled):
                next_run = timing.next_after(moment, parse_ts(old.created_at))
                new = replace(new, next_run_at=format_ts(next_run))
            new = replace(new, updated_at=format_ts(moment))
            if changed == ["enabled"]:
                kind = "schedule.resumed" if new.enabled else "schedule.paused"
                title = f"schedule {old.name} {kind.split('.')[1]}"
                record = self._span(
                    old, kind, title, enabled=new.enabled, next_run_at=new.next_run_at, by=by
                )
            else:
                title = f"schedule {old.name} updated ({', '.join(changed)})"
                record = self._span(
                    old, "schedule.updated", title, **new.definition(), changed=changed, by=by
                )
            new = replace(new, span_id=record.span.id)
            c.run("update_schedule", {**_row(new), "updated_at": new.updated_at})
            return [record], new

        _, schedule = self.log.transact(tenant, work)
        assert isinstance(schedule, Schedule)
        return schedule

    def delete(self, tenant: str, ref: str, *, by: str) -> Schedule:
        """Delete a schedule (its jobs stay as they are); the schedule as it was."""

        def work(tx: Tx, received: str) -> tuple[list[Prepared], Schedule]:
            c = _conn(tx)
            schedule = self._locked(c, tenant, ref)
            title = f"schedule {schedule.name} deleted"
            record = self._span(schedule, "schedule.deleted", title, name=schedule.name, by=by)
            c.run("delete_schedule", {"id": schedule.id, "tenant": tenant})
            return [record], schedule

        _, schedule = self.log.transact(tenant, work)
        assert isinstance(schedule, Schedule)
        return schedule

    # --- firing -----------------------------------------------------------------------------------

    def fire_due(self, limit: int = DEFAULT_FIRE_LIMIT) -> list[Job]:
        """Queue the job of every due period (at most `limit` schedules); the jobs queued. Safe to
        call from any number of threads and processes at once: each period is queued once."""
        now = format_ts(self.clock())
        with self.store._read() as c:
            due = [
                (str(t), str(i)) for t, i in c.all("due_schedules", {"now": now, "limit": limit})
            ]
        fired = []
        for tenant, schedule_id in due:

            def work(
                tx: Tx, received: str, tenant: str = tenant, schedule_id: str = schedule_id
            ) -> tuple[list[Prepared], Job | None]:
                return self._fire(tx, tenant, schedule_id)

            try:
                _, job = self.log.transact(tenant, work)
            except LogLineError as exc:  # one schedule's trouble must not stop the others
                log.warning("schedule %s of %s not fired: %s", schedule_id, tenant, exc)
                continue
            if job is not None:
                fired.append(job)
        if fired:
            self.queue._ready()
        return fired

    def _fire(self, tx: Tx, tenant: str, schedule_id: str) -> tuple[list[Prepared], Job | None]:
        c = _conn(tx)
        row = c.one("lock_schedule", {"id": schedule_id, "tenant": tenant})
        moment = self.clock()
        if row is None:
            return [], None  # deleted meanwhile
        schedule = Schedule.from_row(row)
        first = parse_ts(schedule.next_run_at)
        if not schedule.enabled or first > moment:
            return [], None  # paused meanwhile, or another scheduler ran this period
        due = schedule.timing.due(first, moment, parse_ts(schedule.created_at))
        period, now = format_ts(due.period), format_ts(moment)
        key = f"schedule:{schedule.id}:{period}"
        records, job = [], None
        found = c.one("job_by_dedupe_key", {"tenant": tenant, "dedupe_key": key})
        if found is not None:  # queued already, though the row did not say so
            last_job = str(found[0])
        else:
            request = schedule.request(key)
            job, record = self.queue._insert(
                c,
                tenant,
                request,
                request.check(),
                now,
                cause=schedule.span_id,
                schedule=schedule.id,
                period=period,
                missed=due.missed,
            )
            records.append(record)
            tally = Tally(moment)
            tally.count(job, "submitted")
            tally.flush(c)
            tx.announce_jobs(tenant)
            last_job = job.id
        c.run(
            "advance_schedule",
            {
                "id": schedule.id,
                "tenant": tenant,
                "next_run_at": format_ts(due.next),
                "last_run_at": now,
                "last_job_id": last_job,
            },
        )
        return records, job

    # --- reading ----------------------------------------------------------------------------------

    def get(self, tenant: str, ref: str) -> Schedule:
        """The schedule with id or name `ref`."""
        with self.store._read() as c:
            if _UUID.fullmatch(ref):
                row = c.one("select_schedule", {"id": ref, "tenant": tenant})
            else:
                row = c.one("select_schedule_by_name", {"tenant": tenant, "name": ref})
        if row is None:
            raise NotFound(f"no schedule {ref} in {tenant}")
        return Schedule.from_row(row)

    def list(self, tenant: str, *, limit: int = 100, after: str = "") -> list[Schedule]:
        """Schedules in name order; `after` is the last name of the previous page."""
        if not 1 <= limit <= MAX_LIST:
            raise InvalidInput(f"limit must be between 1 and {MAX_LIST}")
        with self.store._read() as c:
            rows = c.all("select_schedules", {"tenant": tenant, "after": after, "limit": limit})
        return [Schedule.from_row(row) for row in rows]


def _row(schedule: Schedule) -> dict[str, Any]:
    """The values `insert_schedule` and `update_schedule` share."""
    return {
        "id": schedule.id, "tenant": schedule.tenant, "cron": schedule.cron,
        "interval_s": schedule.interval_s, "timezone": schedule.timezone,
        "job": canonicalize(schedule.job).decode(), "enabled": int(schedule.enabled),
        "next_run_at": schedule.next_run_at, "span_id": schedule.span_id,
    }  # fmt: skip
