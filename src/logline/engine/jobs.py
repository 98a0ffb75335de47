"""Jobs: what is asked (`JobRequest`), what the queue holds (`Job`), and their states.

    request = JobRequest(type="report.render", payload={"month": "2026-10"}, priority="high")
    job = queue.submit("acme", request)              # → Job(state="queued", ...)

States and who moves a job between them:

    queued ──claim──▶ running ──complete──▶ succeeded
      ▲                 │ fail (retryable, attempts left) ──▶ retrying ──(run_at)──▶ claimable
      │                 │ fail (attempts used up)        ──▶ dead      (the dead-letter queue)
      │                 │ fail (not retryable)           ──▶ failed    (also a dead letter)
      │                 │ lease expired (node gone)      ──▶ retrying or dead, as a failure
      │                 └ cancel (cooperative: the handler is told, then reports) ──▶ cancelled
      └── requeue (dead or failed), retry now (retrying) ; cancel when queued or retrying
"""

from __future__ import annotations

import json
import random
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from logline.canonical import canonicalize
from logline.errors import InvalidInput
from logline.identity.ids import check_kind, check_tag

STATES = ("queued", "running", "succeeded", "failed", "retrying", "dead", "cancelled")
CLAIMABLE = ("queued", "retrying")
DEAD_LETTERS = ("dead", "failed")
PRIORITIES = {"critical": 0, "high": 1, "normal": 2, "low": 3}
PRIORITY_NAMES = {value: name for name, value in PRIORITIES.items()}
MAX_PAYLOAD_BYTES = 64 * 1024
MAX_RESULT_BYTES = 64 * 1024
MAX_ERROR_CHARS = 2000
MAX_ATTEMPTS = 100
DEFAULT_QUEUE = "default"
_QUEUE = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
# The columns of a job row, in `Job` field order (the named SELECTs in store/sql list the same).
JOB_COLUMNS = (
    "id, tenant, type, queue, state, priority, run_at, payload, tags, dedupe_key, max_attempts, "
    "attempts, backoff_base_s, backoff_cap_s, timeout_s, node, lease_expires, cancel_requested, "
    "result, error, created_at, updated_at, finished_at, span_id, attempt_budget"
)


def check_queue(queue: str) -> str:
    if not isinstance(queue, str) or not _QUEUE.fullmatch(queue):
        raise InvalidInput(f"queue must be 1-64 of a-z, 0-9, '.', '_', '-', got {queue!r}")
    return queue


@dataclass(frozen=True, slots=True)
class JobRequest:
    """A job to submit; validated by `check()`."""

    type: str
    payload: Any = None
    queue: str = DEFAULT_QUEUE
    priority: str = "normal"
    run_at: datetime | None = None
    max_attempts: int = 3
    backoff_base_s: float = 1.0
    backoff_cap_s: float = 300.0
    timeout_s: float = 60.0
    dedupe_key: str | None = None
    tags: tuple[str, ...] = ()

    def check(self) -> bytes:
        """Validate everything but the type's payload schema; the canonical payload bytes."""
        check_kind(self.type)
        check_queue(self.queue)
        if self.priority not in PRIORITIES:
            raise InvalidInput(f"priority must be one of {', '.join(PRIORITIES)}")
        if not 1 <= self.max_attempts <= MAX_ATTEMPTS:
            raise InvalidInput(f"max_attempts must be between 1 and {MAX_ATTEMPTS}")
        if not (0 < self.backoff_base_s <= self.backoff_cap_s <= 86_400):
            raise InvalidInput("need 0 < backoff_base_s <= backoff_cap_s <= 86400")
        if not 0 < self.timeout_s <= 86_400:
            raise InvalidInput("timeout_s must be in (0, 86400]")
        if self.dedupe_key is not None and not 1 <= len(self.dedupe_key) <= 200:
            raise InvalidInput("dedupe_key must be 1-200 characters")
        for tag in self.tags:
            check_tag(tag)
        payload = canonicalize(self.payload)
        if len(payload) > MAX_PAYLOAD_BYTES:
            raise InvalidInput(f"payload is {len(payload)} bytes; at most {MAX_PAYLOAD_BYTES}")
        return payload


@dataclass(frozen=True, slots=True)
class Attempt:
    job_id: str
    attempt: int
    node: str
    started_at: str
    ended_at: str | None
    outcome: str | None
    error: str | None


@dataclass(frozen=True, slots=True)
class Job:
    id: str
    tenant: str
    type: str
    queue: str
    state: str
    priority: int
    run_at: str
    payload: Any
    tags: tuple[str, ...]
    dedupe_key: str | None
    max_attempts: int
    attempts: int
    backoff_base_s: float
    backoff_cap_s: float
    timeout_s: float
    node: str | None
    lease_expires: str | None
    cancel_requested: bool
    result: Any
    error: str | None
    created_at: str
    updated_at: str
    finished_at: str | None
    span_id: str
    attempt_budget: int  # attempts each run gets: `max_attempts` grows by it on a requeue
    history: tuple[Attempt, ...] = field(default=())

    @classmethod
    def from_row(cls, row: tuple[Any, ...]) -> Job:
        values = list(row)
        values[7] = json.loads(values[7])  # payload
        values[8] = tuple(json.loads(values[8]))  # tags
        values[17] = bool(values[17])  # cancel_requested
        values[18] = None if values[18] is None else json.loads(values[18])  # result
        return cls(*values)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id, "tenant": self.tenant, "type": self.type, "queue": self.queue,
            "state": self.state, "priority": PRIORITY_NAMES[self.priority],
            "run_at": self.run_at, "payload": self.payload, "tags": list(self.tags),
            "dedupe_key": self.dedupe_key, "max_attempts": self.max_attempts,
            "attempts": self.attempts, "backoff_base_s": self.backoff_base_s,
            "backoff_cap_s": self.backoff_cap_s, "timeout_s": self.timeout_s, "node": self.node,
            "lease_expires": self.lease_expires, "cancel_requested": self.cancel_requested,
            "result": self.result, "error": self.error, "created_at": self.created_at,
            "updated_at": self.updated_at, "finished_at": self.finished_at,
            "span_id": self.span_id, "attempt_budget": self.attempt_budget,
            "history": [
                {"attempt": a.attempt, "node": a.node, "started_at": a.started_at,
                 "ended_at": a.ended_at, "outcome": a.outcome, "error": a.error}
                for a in self.history
            ],
        }  # fmt: skip


OUTCOMES = ("succeeded", "failed", "cancelled")


@dataclass(frozen=True, slots=True)
class Report:
    """The end of an attempt, as the node that ran it reports it: `succeeded` with a result,
    `failed` with an error (retried if `retryable` and attempts are left, else a dead letter),
    or `cancelled` (it stopped on a cancellation request)."""

    tenant: str
    job_id: str
    attempt: int
    outcome: str
    result: Any = None
    error: str | None = None
    retryable: bool = True

    def check(self) -> None:
        if self.outcome not in OUTCOMES:
            raise InvalidInput(f"outcome must be one of {', '.join(OUTCOMES)}")
        if self.outcome == "succeeded":
            size = len(canonicalize(self.result))
            if size > MAX_RESULT_BYTES:
                raise InvalidInput(f"result is {size} bytes; at most {MAX_RESULT_BYTES}")
        elif not self.error:
            raise InvalidInput(f"a {self.outcome} attempt needs an error")


def backoff(job: Job, now: datetime, rng: random.Random) -> datetime:
    """When a failed attempt is retried: exponential in the attempts made, capped, with jitter
    (a uniform draw from half to all of it) so that failures at one moment spread out."""
    delay = min(job.backoff_cap_s, job.backoff_base_s * 2 ** max(0, job.attempts - 1))
    return now + timedelta(seconds=delay * rng.uniform(0.5, 1.0))


def utc(moment: datetime | None) -> datetime:
    if moment is None:
        return datetime.now(UTC)
    if moment.tzinfo is None:
        raise InvalidInput("times must carry a time zone")
    return moment.astimezone(UTC)
