"""The job queue: every transition changes the job and logs its span in one transaction.

    queue = JobQueue(log, author="logline-id://service/logline.local", key=instance_key)
    job = queue.submit("acme", JobRequest(type="report.render", payload={"month": "2026-10"}))
    [claimed] = queue.claim("logline-id://node/worker-1", ["default"], limit=1, lease_s=30)
    queue.complete(claimed.tenant, claimed.id, "logline-id://node/worker-1", 1, {"pages": 12})

Each transition runs as `Log.transact` work on the job's tenant: it holds the tenant's log lock,
changes the job's row, and returns the span that records the change (`job.queued`,
`job.started`, `job.succeeded`, `job.retrying`, `job.dead`, `job.failed`, `job.cancelled`,
`job.cancel_requested`, `job.requeued`, `job.purged`), authored by the engine's identity,
`caused_by` the job's previous transition and with the job id as `flow_id`, so a job's history
is one query. The tenant's log lock serializes a tenant's transitions, which makes dedupe keys
and claims race-free in every process; PostgreSQL claims also skip rows locked by others.

Execution is at least once: a node that stops renewing its lease loses the job when the lease
expires (`expire_leases`), and the job is retried as if the attempt had failed.
"""

from __future__ import annotations

import json
import random
import threading
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from logline.canonical import canonicalize
from logline.engine.jobs import (
    CLAIMABLE,
    DEAD_LETTERS,
    JOB_COLUMNS,
    MAX_ERROR_CHARS,
    PRIORITIES,
    STATES,
    Attempt,
    Job,
    JobRequest,
    Report,
    backoff,
    utc,
)
from logline.engine.stats import JobStats, Tally, ms_between
from logline.errors import Conflict, InvalidInput, LogLineError, NotFound
from logline.identity.ids import uuid7
from logline.identity.keys import PrivateKey
from logline.ledger.admission import Prepared
from logline.ledger.log import Log
from logline.ledger.span import new_span
from logline.ledger.timefmt import format_ts
from logline.store.interface import Tx
from logline.store.sql import Connection, SqlStore, SqlTx

MAX_CLAIM = 100
MAX_TENANTS_PER_CLAIM = 1000
MAX_BATCH = 1000
MAX_LIST = 1000


def _conn(tx: Tx) -> Connection:
    assert isinstance(tx, SqlTx), "the job engine needs a SQL store"
    return tx.c


class JobQueue:
    """Jobs of all tenants of one store, transitions signed by `author` with `key`."""

    def __init__(
        self,
        log: Log,
        *,
        author: str,
        key: PrivateKey,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        rng: random.Random | None = None,
    ) -> None:
        if not isinstance(log.store, SqlStore):
            raise TypeError("the job engine needs a SQL store")
        self.log = log
        self.store: SqlStore = log.store
        self.author = author
        self.key = key
        self.public_key = str(key.public_key)
        self.clock = clock
        self.rng = rng or random.Random()
        self._last_tenant = ""  # the tenant a claim served last: the next starts after it
        self._turn_lock = threading.Lock()
        self.stats = JobStats(self.store)
        # Called after jobs became claimable (submitted, requeued, retried now): wakes waiting
        # claimers in this process; must be quick and must not raise.
        self.listeners: list[Callable[[], None]] = []

    # --- recording --------------------------------------------------------------------------------

    def _span(
        self, job: Job, kind: str, title: str, cause: str | None = None, **details: Any
    ) -> Prepared:
        payload = {
            "job": job.id,
            "type": job.type,
            "queue": job.queue,
            "state": job.state,
            "attempt": job.attempts,
            **details,
        }
        span = new_span(
            self.key,
            tenant=job.tenant,
            author=self.author,
            kind=kind,
            title=title,
            payload=payload,
            caused_by=job.span_id if kind != "job.queued" else cause,
            flow_id=job.id,
            tags=["job"],
        )
        return Prepared(span, self.public_key)

    def _save(self, c: Connection, job: Job, record: Prepared) -> Job:
        job = _replace(job, span_id=record.span.id)
        c.run("update_job", _row(job))
        return job

    def _locked(self, c: Connection, tenant: str, job_id: str) -> Job:
        row = c.one("lock_job", {"id": job_id, "tenant": tenant})
        if row is None:
            raise NotFound(f"no job {job_id} in {tenant}")
        return Job.from_row(row)

    # --- submitting -------------------------------------------------------------------------------

    def submit(self, tenant: str, request: JobRequest) -> Job:
        """Queue a job; with a dedupe key already used in the tenant, the job that used it."""
        [(job, _)] = self.submit_many(tenant, [request])
        return job

    def submit_many(self, tenant: str, requests: Sequence[JobRequest]) -> list[tuple[Job, bool]]:
        """Queue jobs atomically (all or none); each with whether it is new (False: the job
        that already used its dedupe key, or an earlier one in this batch)."""
        if not 1 <= len(requests) <= MAX_BATCH:
            raise InvalidInput(f"submit 1 to {MAX_BATCH} jobs at a time")
        payloads = [request.check() for request in requests]
        for request in requests:
            self._check_schema(tenant, request)

        def work(tx: Tx, received: str) -> tuple[list[Prepared], list[tuple[Job, bool]]]:
            c = _conn(tx)
            moment = self.clock()
            now = format_ts(moment)
            tally = Tally(moment)
            records: list[Prepared] = []
            out: list[tuple[Job, bool]] = []
            batch_keys: dict[str, Job] = {}
            for request, payload in zip(requests, payloads, strict=True):
                key = request.dedupe_key
                if key is not None:
                    if key in batch_keys:
                        out.append((batch_keys[key], False))
                        continue
                    row = c.one("job_by_dedupe_key", {"tenant": tenant, "dedupe_key": key})
                    if row is not None:
                        out.append((Job.from_row(row), False))
                        continue
                job, record = self._insert(c, tenant, request, payload, now)
                if key is not None:
                    batch_keys[key] = job
                tally.count(job, "submitted")
                records.append(record)
                out.append((job, True))
            if records:
                tally.flush(c)
                tx.announce_jobs(tenant)
            return records, out

        _, out = self.log.transact(tenant, work)
        if any(new for _, new in out):
            self._ready()
        return list(out)

    def _insert(
        self,
        c: Connection,
        tenant: str,
        request: JobRequest,
        payload: bytes,
        now: str,
        cause: str | None = None,
        **details: Any,
    ) -> tuple[Job, Prepared]:
        """Insert a queued job; `cause` (the span it was queued for, if any) and `details` go
        into its `job.queued` span."""
        job = Job(
            id=uuid7(),
            tenant=tenant,
            type=request.type,
            queue=request.queue,
            state="queued",
            priority=PRIORITIES[request.priority],
            run_at=format_ts(utc(request.run_at)) if request.run_at else now,
            payload=json.loads(payload),
            tags=tuple(sorted(set(request.tags))),
            dedupe_key=request.dedupe_key,
            max_attempts=request.max_attempts,
            attempts=0,
            backoff_base_s=request.backoff_base_s,
            backoff_cap_s=request.backoff_cap_s,
            timeout_s=request.timeout_s,
            node=None,
            lease_expires=None,
            cancel_requested=False,
            result=None,
            error=None,
            created_at=now,
            updated_at=now,
            finished_at=None,
            span_id="",
            attempt_budget=request.max_attempts,
        )
        record = self._span(
            job,
            "job.queued",
            f"{job.type} queued",
            payload=job.payload,
            priority=request.priority,
            run_at=job.run_at,
            dedupe_key=job.dedupe_key,
            cause=cause,
            **details,
        )
        job = _replace(job, span_id=record.span.id)
        c.run(
            "insert_job",
            {
                "id": job.id,
                "tenant": tenant,
                "type": job.type,
                "queue": job.queue,
                "state": job.state,
                "priority": job.priority,
                "run_at": job.run_at,
                "payload": payload.decode(),
                "tags": json.dumps(list(job.tags)),
                "dedupe_key": job.dedupe_key,
                "max_attempts": job.max_attempts,
                "backoff_base_s": job.backoff_base_s,
                "backoff_cap_s": job.backoff_cap_s,
                "timeout_s": job.timeout_s,
                "created_at": now,
                "span_id": job.span_id,
            },
        )
        return job, record

    def _ready(self) -> None:
        for listener in self.listeners:
            listener()

    def register_type(self, tenant: str, type_: str, schema: dict[str, Any], by: str) -> None:
        """Register (or replace) the JSON Schema that a type's payloads must satisfy."""
        from jsonschema import Draft202012Validator
        from jsonschema.exceptions import SchemaError

        try:
            Draft202012Validator.check_schema(schema)
        except SchemaError as exc:
            raise InvalidInput(f"not a valid JSON Schema: {exc.message}") from None
        conn = self.store._conn()
        with self.store.wrap_exceptions(), self.store._transaction(conn):
            conn.run(
                "insert_job_type",
                {
                    "tenant": tenant,
                    "type": type_,
                    "schema": json.dumps(schema),
                    "created_at": format_ts(self.clock()),
                    "created_by": by,
                },
            )

    def _check_schema(self, tenant: str, request: JobRequest) -> None:
        with self.store._read() as c:
            row = c.one("select_job_type", {"tenant": tenant, "type": request.type})
        if row is None:
            return
        from jsonschema import Draft202012Validator

        errors = sorted(
            Draft202012Validator(json.loads(row[2])).iter_errors(request.payload),
            key=lambda e: list(e.absolute_path),
        )
        if errors:
            first = errors[0]
            where = "/".join(str(p) for p in first.absolute_path) or "(root)"
            raise InvalidInput(
                f"payload does not match the schema of {request.type} at {where}: {first.message}"
            )

    # --- claiming and running ---------------------------------------------------------------------

    def claim(
        self,
        node: str,
        queues: Sequence[str],
        *,
        limit: int = 1,
        lease_s: float = 30.0,
        tenants: Sequence[str] | None = None,
        types: Sequence[str] | None = None,
    ) -> list[Job]:
        """Up to `limit` ready jobs for `node` (of `tenants` and `types` only, if given), fairly
        across tenants: each tenant with ready jobs gets a share in turn, and within a tenant by
        priority, then run_at."""
        if not 1 <= limit <= MAX_CLAIM:
            raise InvalidInput(f"claim 1 to {MAX_CLAIM} jobs at a time")
        order = self._ready_tenants(format_ts(self.clock()), tenants)
        claimed: list[Job] = []
        # Rounds over the tenants, each taking a share, until `limit` or nothing is left.
        while order and len(claimed) < limit:
            served = []
            share = max(1, (limit - len(claimed)) // len(order))
            for tenant in order:
                if len(claimed) >= limit:
                    break
                got = self._claim_in(
                    tenant, node, queues, min(share, limit - len(claimed)), lease_s, types
                )
                if got:
                    claimed += got
                    served.append(tenant)
                    with self._turn_lock:
                        self._last_tenant = tenant
            order = served
        return claimed

    def _ready_tenants(self, now: str, tenants: Sequence[str] | None) -> list[str]:
        with self.store._read() as c:
            if tenants is not None:
                rows = c.all(
                    "ready_tenants_among", {"now": now, "tenants": c.listify(list(tenants))}
                )
                return [str(r[0]) for r in rows]
            with self._turn_lock:
                after = self._last_tenant
            params = {"now": now, "after": after, "limit": MAX_TENANTS_PER_CLAIM}
            ready = [str(r[0]) for r in c.all("ready_tenants_after", params)]
            if len(ready) < MAX_TENANTS_PER_CLAIM:
                params["limit"] = MAX_TENANTS_PER_CLAIM - len(ready)
                ready += [str(r[0]) for r in c.all("ready_tenants_upto", params)]
        return ready

    def _claim_in(
        self,
        tenant: str,
        node: str,
        queues: Sequence[str],
        limit: int,
        lease_s: float,
        types: Sequence[str] | None,
    ) -> list[Job]:
        def work(tx: Tx, received: str) -> tuple[list[Prepared], list[Job]]:
            c = _conn(tx)
            moment = self.clock()
            now, lease = format_ts(moment), format_ts(moment + timedelta(seconds=lease_s))
            rows = c.all(
                "claim_candidates",
                {
                    "tenant": tenant,
                    "now": now,
                    "queues": c.listify(list(queues)),
                    "any_type": int(types is None),
                    "types": c.listify(list(types or ())),
                    "limit": limit,
                },
            )
            records, jobs, attempts = [], [], []
            tally = Tally(moment)
            for row in rows:
                job = Job.from_row(row)
                tally.started(job, ms_between(job.run_at, now))
                job = _replace(
                    job,
                    state="running",
                    attempts=job.attempts + 1,
                    node=node,
                    lease_expires=lease,
                    updated_at=now,
                    error=None,
                )
                record = self._span(job, "job.started", f"{job.type} started", node=node)
                jobs.append(_replace(job, span_id=record.span.id))
                records.append(record)
                attempts.append(
                    {"job_id": job.id, "attempt": job.attempts, "node": node, "started_at": now}
                )
            c.many("update_job", [_row(job) for job in jobs])
            c.many("insert_attempt", attempts)
            tally.flush(c)
            return records, jobs

        _, jobs = self.log.transact(tenant, work)
        return list(jobs)

    def renew(self, tenant: str, job_id: str, node: str, attempt: int, lease_s: float) -> bool:
        """Extend the lease; whether cancellation was asked for. Conflict if the lease is lost."""
        moment = self.clock()
        conn = self.store._conn()
        with self.store.wrap_exceptions(), self.store._transaction(conn):
            changed = conn.run(
                "renew_lease",
                {
                    "id": job_id,
                    "tenant": tenant,
                    "node": node,
                    "attempt": attempt,
                    "lease_expires": format_ts(moment + timedelta(seconds=lease_s)),
                    "now": format_ts(moment),
                },
            )
            row = conn.one("select_job", {"id": job_id, "tenant": tenant})
        if not changed or row is None:
            raise Conflict(f"{node} no longer holds job {job_id} (attempt {attempt})")
        return bool(Job.from_row(row).cancel_requested)

    def report(self, node: str, reports: Sequence[Report]) -> list[Job | LogLineError]:
        """Record the ends of attempts `node` ran: per report, the job after it, or the error
        that refused that report alone (Conflict: the node no longer holds the job; NotFound).
        One transaction per tenant, so a batch costs one commit however many jobs it ends."""
        if not 1 <= len(reports) <= MAX_CLAIM:
            raise InvalidInput(f"report 1 to {MAX_CLAIM} attempts at a time")
        for report in reports:
            report.check()
        results: list[Job | LogLineError | None] = [None] * len(reports)
        by_tenant: dict[str, list[int]] = {}
        for i, report in enumerate(reports):
            by_tenant.setdefault(report.tenant, []).append(i)
        for tenant, indexes in by_tenant.items():

            def work(
                tx: Tx, received: str, indexes: list[int] = indexes
            ) -> tuple[list[Prepared], None]:
                c = _conn(tx)
                moment = self.clock()
                tally = Tally(moment)
                records = []
                for i in indexes:
                    try:
                        record, results[i] = self._end(c, node, reports[i], moment, tally)
                    except (Conflict, NotFound) as exc:
                        results[i] = exc
                        continue
                    records.append(record)
                tally.flush(c)
                return records, None

            self.log.transact(tenant, work)
        return [r for r in results if r is not None]

    def _end(
        self, c: Connection, node: str, report: Report, moment: datetime, tally: Tally
    ) -> tuple[Prepared, Job]:
        job = self._locked(c, report.tenant, report.job_id)
        if job.state != "running" or job.node != node or job.attempts != report.attempt:
            raise Conflict(
                f"{node} no longer holds job {job.id} (attempt {report.attempt}); it is {job.state}"
            )
        now = format_ts(moment)
        error = None if report.error is None else report.error[:MAX_ERROR_CHARS]
        if report.outcome == "succeeded":
            job = _replace(
                job,
                state="succeeded",
                result=report.result,
                finished_at=now,
                updated_at=now,
                lease_expires=None,
            )
            kind, title, details = (
                "job.succeeded",
                f"{job.type} succeeded",
                {"result": report.result},
            )
        else:
            cancelled = report.outcome == "cancelled"
            job, kind, title, details = self._after_failure(
                job, now, error or "", report.retryable, cancelled
            )
        record = self._span(job, kind, title, node=node, **details)
        self._tally_end(c, job, report.attempt, moment, tally)
        c.run(
            "end_attempt",
            {
                "job_id": job.id,
                "attempt": report.attempt,
                "ended_at": now,
                "outcome": report.outcome,
                "error": error,
            },
        )
        return record, self._save(c, job, record)

    def _tally_end(
        self, c: Connection, job: Job, attempt: int, moment: datetime, tally: Tally
    ) -> None:
        """Count the end of `job`'s attempt (the job as it is after it) in the rollups."""
        row = c.one("attempt_started_at", {"job_id": job.id, "attempt": attempt})
        run_ms = ms_between(str(row[0]), format_ts(moment)) if row else 0.0
        event = job.state if job.state in ("succeeded", "cancelled") else "failed"
        tally.ended(job, event, run_ms)
        if job.state in DEAD_LETTERS:
            tally.count(job, "dead")

    def _report_one(self, node: str, report: Report) -> Job:
        [result] = self.report(node, [report])
        if isinstance(result, LogLineError):
            raise result
        return result

    def complete(self, tenant: str, job_id: str, node: str, attempt: int, result: Any) -> Job:
        return self._report_one(node, Report(tenant, job_id, attempt, "succeeded", result=result))

    def fail(
        self,
        tenant: str,
        job_id: str,
        node: str,
        attempt: int,
        error: str,
        *,
        retryable: bool = True,
        cancelled: bool = False,
    ) -> Job:
        """An attempt failed (or, with `cancelled`, stopped on request): retry, or dead letter."""
        outcome = "cancelled" if cancelled else "failed"
        return self._report_one(
            node, Report(tenant, job_id, attempt, outcome, error=error, retryable=retryable)
        )

    def _after_failure(
        self, job: Job, now: str, error: str, retryable: bool, cancelled: bool
    ) -> tuple[Job, str, str, dict[str, Any]]:
        done = {"error": error, "updated_at": now, "lease_expires": None}
        if cancelled or job.cancel_requested:
            job = _replace(job, state="cancelled", finished_at=now, **done)
            return job, "job.cancelled", f"{job.type} cancelled", {"error": error}
        if not retryable:
            job = _replace(job, state="failed", finished_at=now, **done)
            return job, "job.failed", f"{job.type} failed", {"error": error}
        if job.attempts >= job.max_attempts:
            job = _replace(job, state="dead", finished_at=now, **done)
            return (
                job,
                "job.dead",
                f"{job.type} dead after {job.attempts} attempts",
                {"error": error},
            )
        run_at = format_ts(backoff(job, self.clock(), self.rng))
        job = _replace(job, state="retrying", run_at=run_at, node=None, **done)
        return job, "job.retrying", f"{job.type} will retry", {"error": error, "run_at": run_at}

    def expire_leases(self, limit: int = 100) -> list[Job]:
        """Jobs whose node stopped renewing: each counts as a failed attempt."""
        now = format_ts(self.clock())
        with self.store._read() as c:
            expired = [
                (str(t), str(i)) for t, i in c.all("expired_leases", {"now": now, "limit": limit})
            ]
        out = []
        for tenant, job_id in expired:

            def work(
                tx: Tx, received: str, tenant: str = tenant, job_id: str = job_id
            ) -> tuple[list[Prepared], Job | None]:
                c = _conn(tx)
                job = self._locked(c, tenant, job_id)
                now = format_ts(self.clock())
                if job.state != "running" or job.lease_expires is None or job.lease_expires >= now:
                    return [], None  # renewed or finished meanwhile
                error = f"lease expired: {job.node} stopped renewing it"
                job, kind, title, details = self._after_failure(job, now, error, True, False)
                record = self._span(job, kind, title, **details)
                tally = Tally(self.clock())
                self._tally_end(c, job, job.attempts, self.clock(), tally)
                tally.flush(c)
                c.run(
                    "end_attempt",
                    {
                        "job_id": job_id,
                        "attempt": job.attempts,
                        "ended_at": now,
                        "outcome": "lease_expired",
                        "error": error,
                    },
                )
                return [record], self._save(c, job, record)

            _, job = self.log.transact(tenant, work)
            if job is not None:
                out.append(job)
        return out

    # --- operator actions -------------------------------------------------------------------------

    def _act(
        self, tenant: str, job_id: str, act: Callable[[Job, str], tuple[Job, str, str]], by: str
    ) -> Job:
        def work(tx: Tx, received: str) -> tuple[list[Prepared], Job]:
            c = _conn(tx)
            before = self._locked(c, tenant, job_id)
            moment = self.clock()
            job, kind, title = act(before, format_ts(moment))
            record = self._span(job, kind, title, by=by)
            if job.state == "cancelled" and before.state != "cancelled":
                tally = Tally(moment)
                tally.count(job, "cancelled")
                tally.flush(c)
            if job.state in CLAIMABLE:
                tx.announce_jobs(tenant)
            return [record], self._save(c, job, record)

        _, job = self.log.transact(tenant, work)
        assert isinstance(job, Job)
        return job

    def cancel(self, tenant: str, job_id: str, by: str) -> Job:
        """Queued or retrying: cancelled now. Running: the handler is asked to stop."""

        def act(job: Job, now: str) -> tuple[Job, str, str]:
            if job.state in CLAIMABLE:
                job = _replace(job, state="cancelled", finished_at=now, updated_at=now)
                return job, "job.cancelled", f"{job.type} cancelled"
            if job.state == "running" and not job.cancel_requested:
                job = _replace(job, cancel_requested=True, updated_at=now)
                return job, "job.cancel_requested", f"{job.type} asked to stop"
            raise Conflict(f"job {job.id} is {job.state}; it cannot be cancelled")

        return self._act(tenant, job_id, act, by)

    def retry_now(self, tenant: str, job_id: str, by: str) -> Job:
        """A retrying job runs now; a dead or failed one is queued again with as many attempts
        as it was first given (attempt numbers go on counting, so its history stays whole)."""

        def act(job: Job, now: str) -> tuple[Job, str, str]:
            if job.state == "retrying":
                return (
                    _replace(job, run_at=now, updated_at=now),
                    "job.retry_now",
                    (f"{job.type} retried now"),
                )
            if job.state in DEAD_LETTERS:
                job = _replace(
                    job,
                    state="queued",
                    run_at=now,
                    max_attempts=job.attempts + job.attempt_budget,
                    error=None,
                    finished_at=None,
                    updated_at=now,
                )
                return job, "job.requeued", f"{job.type} requeued"
            raise Conflict(f"job {job.id} is {job.state}; only retrying, dead or failed jobs")

        job = self._act(tenant, job_id, act, by)
        self._ready()
        return job

    def purge(self, tenant: str, job_id: str, by: str) -> None:
        """Forget a dead letter's row; its history stays on the log."""

        def work(tx: Tx, received: str) -> tuple[list[Prepared], None]:
            c = _conn(tx)
            job = self._locked(c, tenant, job_id)
            if job.state not in DEAD_LETTERS:
                raise Conflict(f"job {job.id} is {job.state}; only dead letters are purged")
            record = self._span(job, "job.purged", f"{job.type} purged", by=by)
            c.run("delete_attempts", {"job_id": job_id})
            c.run("delete_job", {"id": job_id, "tenant": tenant})
            return [record], None

        self.log.transact(tenant, work)

    # --- reading ----------------------------------------------------------------------------------

    def jobs(
        self,
        tenant: str,
        *,
        states: Sequence[str] = (),
        type_: str | None = None,
        queue: str | None = None,
        limit: int = 100,
        before: str | None = None,
    ) -> list[Job]:
        """Jobs newest first, filtered; `before` is the id of the last job of the previous page."""
        if not 1 <= limit <= MAX_LIST:
            raise InvalidInput(f"limit must be between 1 and {MAX_LIST}")
        for state in states:
            if state not in STATES:
                raise InvalidInput(f"state must be one of {', '.join(STATES)}")
        where = ["tenant = :tenant"]
        params: dict[str, Any] = {"tenant": tenant, "limit": limit}
        if states:
            names = [f"state{i}" for i in range(len(states))]
            where.append(f"state IN ({', '.join(':' + n for n in names)})")
            params.update(zip(names, states, strict=True))
        if type_ is not None:
            where.append("type = :type")
            params["type"] = type_
        if queue is not None:
            where.append("queue = :queue")
            params["queue"] = queue
        if before is not None:
            where.append("id < :before")  # ids are UUIDv7: they sort by creation time
            params["before"] = before
        sql = (
            f"SELECT {JOB_COLUMNS} FROM jobs WHERE {' AND '.join(where)} "
            "ORDER BY id DESC LIMIT :limit"
        )
        with self.store._read() as c:
            rows = c.sql(self.store._prepare(sql), params)
        return [Job.from_row(row) for row in rows]

    def requeue_dead(
        self,
        tenant: str,
        by: str,
        *,
        type_: str | None = None,
        queue: str | None = None,
        ids: Sequence[str] = (),
    ) -> list[Job]:
        """Requeue the dead letters that match (all given filters), at most MAX_LIST."""
        return [self.retry_now(tenant, job.id, by) for job in self._dead(tenant, type_, queue, ids)]

    def purge_dead(
        self,
        tenant: str,
        by: str,
        *,
        type_: str | None = None,
        queue: str | None = None,
        ids: Sequence[str] = (),
    ) -> list[str]:
        """Purge the dead letters that match (all given filters), at most MAX_LIST."""
        purged = []
        for job in self._dead(tenant, type_, queue, ids):
            self.purge(tenant, job.id, by)
            purged.append(job.id)
        return purged

    def _dead(
        self, tenant: str, type_: str | None, queue: str | None, ids: Sequence[str]
    ) -> list[Job]:
        found = self.jobs(tenant, states=DEAD_LETTERS, type_=type_, queue=queue, limit=MAX_LIST)
        return [job for job in found if not ids or job.id in ids]

    def get(self, tenant: str, job_id: str) -> Job:
        with self.store._read() as c:
            row = c.one("select_job", {"id": job_id, "tenant": tenant})
            if row is None:
                raise NotFound(f"no job {job_id} in {tenant}")
            attempts = [Attempt(*r) for r in c.all("select_attempts", {"job_id": job_id})]
        return _replace(Job.from_row(row), history=tuple(attempts))


def _replace(job: Job, **changes: Any) -> Job:
    return replace(job, **changes)


def _row(job: Job) -> dict[str, Any]:
    """The parameters of `update_job`: what transitions change."""
    return {
        "id": job.id,
        "state": job.state,
        "run_at": job.run_at,
        "attempts": job.attempts,
        "max_attempts": job.max_attempts,
        "node": job.node,
        "lease_expires": job.lease_expires,
        "cancel_requested": int(job.cancel_requested),
        "result": None if job.result is None else canonicalize(job.result).decode(),
        "error": job.error,
        "updated_at": job.updated_at,
        "finished_at": job.finished_at,
        "span_id": job.span_id,
    }
