"""Jobs as the SDK sends and receives them: `JobSpec` to submit, `Job` with its attempts, pages of
jobs, and the jobs read model (`JobStats`, `StatsPoint`).

    >>> spec = JobSpec("report.render", {"month": "2026-10"}, priority="high")
    >>> spec.to_json()
    {'type': 'report.render', 'payload': {'month': '2026-10'}, 'priority': 'high'}
    >>> JobSpec.of({"type": "report.render", "tags": ["monthly"]}).tags
    ('monthly',)

A spec sends only the options it sets; the others take the server's defaults (queue `default`,
priority `normal`, now, 3 attempts, backoff from 1 s capped at 300 s, a 60 s timeout). The parsers
raise only `ParseError`, like those of `models`. Formats: docs/PROTOCOL.md §13.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, TypedDict

from logline.client.models import field, number, optional, optional_number, strings
from logline.errors import InvalidInput, ParseError

Priority = Literal["critical", "high", "normal", "low"]
# What the stats count per job type, queue and minute (see `logline.engine.stats`).
EVENTS = ("submitted", "started", "succeeded", "failed", "dead", "cancelled")


class JobOptions(TypedDict, total=False):
    """The options of `submit_job`; each one left out takes the server's default. `run_at` must
    carry a time zone; `dedupe_key`: a second job with the key returns the first instead."""

    queue: str
    priority: Priority
    run_at: datetime
    max_attempts: int
    backoff_base_s: float
    backoff_cap_s: float
    timeout_s: float
    dedupe_key: str
    tags: Sequence[str]


@dataclass(frozen=True, slots=True)
class JobSpec:
    """A job to submit (one of a batch); None: the server's default."""

    type: str
    payload: Any = None
    queue: str | None = None
    priority: Priority | None = None
    run_at: datetime | None = None
    max_attempts: int | None = None
    backoff_base_s: float | None = None
    backoff_cap_s: float | None = None
    timeout_s: float | None = None
    dedupe_key: str | None = None
    tags: Sequence[str] = ()

    def __post_init__(self) -> None:
        if self.run_at is not None and self.run_at.utcoffset() is None:
            raise InvalidInput("run_at must carry a time zone")
        if isinstance(self.tags, str):
            raise InvalidInput("tags must be a list of strings, not one string")
        object.__setattr__(self, "tags", tuple(self.tags))

    @classmethod
    def of(cls, spec: JobSpec | Mapping[str, Any]) -> JobSpec:
        """`spec` itself, or the spec a mapping of its fields makes."""
        if isinstance(spec, JobSpec):
            return spec
        try:
            return cls(**spec)
        except TypeError as exc:  # a missing type, an unknown option
            raise InvalidInput(f"not a job spec: {exc}") from None

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {"type": self.type, "payload": self.payload}
        for name in ("queue", "priority", "max_attempts", "backoff_base_s", "backoff_cap_s",
                     "timeout_s", "dedupe_key"):  # fmt: skip
            value = getattr(self, name)
            if value is not None:
                body[name] = value
        if self.run_at is not None:
            body["run_at"] = self.run_at.isoformat()
        if self.tags:
            body["tags"] = list(self.tags)
        return body


@dataclass(frozen=True, slots=True)
class JobAttempt:
    attempt: int  # 1 for the first
    node: str  # the worker node that ran it
    started_at: str
    ended_at: str | None  # None while it runs
    outcome: str | None  # succeeded, failed, cancelled, lease_expired...
    error: str | None

    @classmethod
    def from_json(cls, data: Any) -> JobAttempt:
        what = "job attempt"
        return cls(
            field(data, "attempt", int, what),
            field(data, "node", str, what),
            field(data, "started_at", str, what),
            optional(data, "ended_at", str, what),
            optional(data, "outcome", str, what),
            optional(data, "error", str, what),
        )


@dataclass(frozen=True, slots=True)
class Job:
    """A job as the server holds it. `state`: queued, running, succeeded, failed, retrying, dead
    or cancelled. `span_id`: its latest transition's span (`flow_id` = the job id links them
    all). `history` is filled by `get_job` only. `deduplicated`: a submission returned this
    earlier job, which had used its dedupe key, instead of queueing a new one."""

    id: str
    tenant: str
    type: str
    queue: str
    state: str
    priority: str
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
    attempt_budget: int  # the attempts each run gets: a requeue adds as many
    history: tuple[JobAttempt, ...] = ()
    deduplicated: bool = False

    @classmethod
    def from_json(cls, data: Any) -> Job:
        what = "job"
        history = optional(data, "history", list, what) or []
        return cls(
            field(data, "id", str, what),
            field(data, "tenant", str, what),
            field(data, "type", str, what),
            field(data, "queue", str, what),
            field(data, "state", str, what),
            field(data, "priority", str, what),
            field(data, "run_at", str, what),
            data.get("payload"),
            strings(data, "tags", what),
            optional(data, "dedupe_key", str, what),
            field(data, "max_attempts", int, what),
            field(data, "attempts", int, what),
            number(data, "backoff_base_s", what),
            number(data, "backoff_cap_s", what),
            number(data, "timeout_s", what),
            optional(data, "node", str, what),
            optional(data, "lease_expires", str, what),
            field(data, "cancel_requested", bool, what),
            data.get("result"),
            optional(data, "error", str, what),
            field(data, "created_at", str, what),
            field(data, "updated_at", str, what),
            optional(data, "finished_at", str, what),
            field(data, "span_id", str, what),
            field(data, "attempt_budget", int, what),
            tuple(JobAttempt.from_json(item) for item in history),
            optional(data, "deduplicated", bool, what) or False,
        )


def jobs_of(data: Any, what: str = "jobs") -> list[Job]:
    if not isinstance(data, list):
        raise ParseError(f"{what}: expected a list")
    return [Job.from_json(item) for item in data]


@dataclass(frozen=True, slots=True)
class JobPage:
    """Jobs newest first; pass `next_before` back as `before` for the next page (None: the
    last page)."""

    jobs: tuple[Job, ...]
    next_before: str | None

    @classmethod
    def from_json(cls, data: Any) -> JobPage:
        return cls(
            tuple(jobs_of(field(data, "jobs", list, "job page"))),
            optional(data, "next_before", str, "job page"),
        )


# --- stats ----------------------------------------------------------------------------------------


def counts_of(data: Any, name: str, what: str) -> dict[str, int]:
    found = field(data, name, dict, what)
    if not all(type(n) is int for n in found.values()):
        raise ParseError(f"{what}: {name!r} must map names to counts")
    return found


@dataclass(frozen=True, slots=True)
class Timing:
    """Milliseconds: the mean, and percentiles within 9% (bucket bounds); None with no data."""

    mean: float | None
    p50: float | None
    p90: float | None
    p99: float | None

    @classmethod
    def from_json(cls, data: Any, what: str = "timing") -> Timing:
        return cls(*(optional_number(data, name, what) for name in ("mean", "p50", "p90", "p99")))


@dataclass(frozen=True, slots=True)
class WindowStats:
    """What happened in a window: `counts` of each of `EVENTS`, `throughput_per_s` (succeeded
    per second of the `seconds` covered), `failure_rate` (failed / ended attempts; None with
    none), and the times jobs waited to start and ran."""

    counts: dict[str, int]
    seconds: float
    throughput_per_s: float
    failure_rate: float | None
    wait_ms: Timing
    run_ms: Timing

    @classmethod
    def from_json(cls, data: Any, what: str = "stats window") -> WindowStats:
        return cls(
            {event: field(data, event, int, what) for event in EVENTS},
            number(data, "seconds", what),
            number(data, "throughput_per_s", what),
            optional_number(data, "failure_rate", what),
            Timing.from_json(field(data, "wait_ms", dict, what), f"{what} wait_ms"),
            Timing.from_json(field(data, "run_ms", dict, what), f"{what} run_ms"),
        )


@dataclass(frozen=True, slots=True)
class JobStatsGroup:
    """Jobs of one type and queue (both None for the total). `states`: the jobs in each state
    now, and all-time counts for succeeded and cancelled; `queue_depth`: jobs ready to run;
    `totals`: all-time counts of `EVENTS`; `windows`: by window name (1m, 5m, 1h...)."""

    type: str | None
    queue: str | None
    states: dict[str, int]
    queue_depth: int
    oldest_ready_age_s: float | None
    totals: dict[str, int]
    windows: dict[str, WindowStats]

    @classmethod
    def from_json(cls, data: Any, what: str = "stats group") -> JobStatsGroup:
        windows = field(data, "windows", dict, what)
        return cls(
            optional(data, "type", str, what),
            optional(data, "queue", str, what),
            counts_of(data, "states", what),
            field(data, "queue_depth", int, what),
            optional_number(data, "oldest_ready_age_s", what),
            counts_of(data, "totals", what),
            {name: WindowStats.from_json(w, f"stats window {name}") for name, w in windows.items()},
        )


@dataclass(frozen=True, slots=True)
class JobStats:
    """The jobs of a tenant `at` a moment: in `total`, and per type and queue in `groups`."""

    tenant: str | None
    at: str
    windows: tuple[str, ...]
    total: JobStatsGroup
    groups: tuple[JobStatsGroup, ...]

    @classmethod
    def from_json(cls, data: Any) -> JobStats:
        what = "job stats"
        groups = field(data, "groups", list, what)
        return cls(
            optional(data, "tenant", str, what),
            field(data, "at", str, what),
            strings(data, "windows", what),
            JobStatsGroup.from_json(field(data, "total", dict, what), "stats total"),
            tuple(JobStatsGroup.from_json(group) for group in groups),
        )

    def group(self, type: str, queue: str) -> JobStatsGroup | None:
        return next((g for g in self.groups if (g.type, g.queue) == (type, queue)), None)


@dataclass(frozen=True, slots=True)
class StatsPoint:
    """One minute of a series (`minute`: YYYY-MM-DDTHH:MM, UTC)."""

    minute: str
    stats: WindowStats

    @classmethod
    def from_json(cls, data: Any) -> StatsPoint:
        minute = field(data, "minute", str, "stats point")
        return cls(minute, WindowStats.from_json(data, f"stats point {minute}"))


def series_of(data: Any) -> list[StatsPoint]:
    if not isinstance(data, list):
        raise ParseError("stats series: expected a list")
    return [StatsPoint.from_json(item) for item in data]
