"""The observatory's read model of jobs: per-minute rollups written with each transition.

    tally = Tally(moment)                 # inside a transition's transaction
    tally.started(job, wait_ms=12.5)
    tally.flush(connection)               # upserts: counters add up, never overwrite

    stats = JobStats(store)
    stats.summary("acme", windows=("5m", "1h"))    # counts, throughput, wait/run percentiles...

Each (tenant, type, queue, minute) has one `job_stats` row of counters and sums, and
`job_stats_buckets` rows counting wait and run times in log-scale buckets (8 per doubling, so a
percentile read from them is within 9% of the exact value). The rows are written in the same
transaction as the transitions they count, so the read model never disagrees with the jobs, and
it lives in the database: a restart keeps its history, and purging a job does not rewrite it.

Counted, per minute of the moment they happened:

    submitted   jobs queued (not deduplicated ones)
    started     attempts started; wait = start - the moment the job became claimable (run_at)
    succeeded   attempts that succeeded; run = end - start of the attempt
    failed      attempts that failed (an error, a timeout, a lost lease), retried or not
    dead        jobs that became dead letters (states dead and failed)
    cancelled   jobs that were cancelled (queued ones at once, running ones when they stop)

Live state (counts by state, queue depth, oldest ready job) comes from the jobs table itself.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from logline.engine.jobs import STATES, Job
from logline.errors import InvalidInput
from logline.ledger.timefmt import format_ts, parse_ts
from logline.store.sql import Connection, SqlStore

EVENTS: Final = ("submitted", "started", "succeeded", "failed", "dead", "cancelled")
METRICS: Final = ("wait", "run")
PER_DOUBLING: Final = 8
MAX_BUCKET: Final = 30 * PER_DOUBLING  # 2**30 ms, about 12 days: longer times count there
WINDOWS: Final = {"1m": 60, "5m": 300, "15m": 900, "1h": 3600, "6h": 21_600, "24h": 86_400}
DEFAULT_WINDOWS: Final = ("1m", "5m", "1h", "24h")
QUANTILES: Final = (0.5, 0.9, 0.99)
LIVE_STATES: Final = tuple(s for s in STATES if s not in ("succeeded", "cancelled"))
MAX_SERIES_MINUTES: Final = 24 * 60
Key = tuple[str, str, str, str]  # tenant, type, queue, minute


def bucket_of(ms: float) -> int:
    """The bucket counting a time of `ms` milliseconds: the smallest b with ms <= 2**(b/8)."""
    if ms <= 1.0:
        return 0
    return min(MAX_BUCKET, math.ceil(math.log2(ms) * PER_DOUBLING))


def bucket_upper_ms(bucket: int) -> float:
    """The largest time bucket `bucket` counts."""
    return float(2 ** (bucket / PER_DOUBLING))


def minute_of(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M")


def ms_between(start: str, end: str) -> float:
    return max(0.0, (parse_ts(end) - parse_ts(start)).total_seconds() * 1000)


@dataclass
class _Row:
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(EVENTS, 0))
    wait_ms: float = 0.0
    run_ms: float = 0.0
    buckets: dict[tuple[str, int], int] = field(default_factory=lambda: defaultdict(int))


class Tally:
    """What one transaction's transitions add to the rollups; `flush` writes it."""

    def __init__(self, moment: datetime) -> None:
        self.minute = minute_of(moment)
        self._rows: dict[Key, _Row] = {}

    def _row(self, job: Job) -> _Row:
        key = (job.tenant, job.type, job.queue, self.minute)
        row = self._rows.get(key)
        if row is None:
            row = self._rows[key] = _Row()
        return row

    def count(self, job: Job, event: str) -> None:
        self._row(job).counts[event] += 1

    def started(self, job: Job, wait_ms: float) -> None:
        row = self._row(job)
        row.counts["started"] += 1
        row.wait_ms += wait_ms
        row.buckets["wait", bucket_of(wait_ms)] += 1

    def ended(self, job: Job, event: str, run_ms: float) -> None:
        """An attempt ended after `run_ms`: `event` is succeeded, failed or cancelled."""
        row = self._row(job)
        row.counts[event] += 1
        row.run_ms += run_ms
        row.buckets["run", bucket_of(run_ms)] += 1

    def flush(self, c: Connection) -> None:
        stats, buckets = [], []
        for (tenant, type_, queue, minute), row in self._rows.items():
            key = {"tenant": tenant, "type": type_, "queue": queue, "minute": minute}
            stats.append({**key, **row.counts, "wait_ms": row.wait_ms, "run_ms": row.run_ms})
            buckets += [
                {**key, "metric": metric, "bucket": bucket, "count": n}
                for (metric, bucket), n in row.buckets.items()
            ]
        c.many("stats_add", stats)
        c.many("stats_bucket_add", buckets)
        self._rows.clear()


# --- reading ----------------------------------------------------------------------------------


def percentiles(buckets: dict[int, int]) -> dict[str, float | None]:
    """p50, p90 and p99 (milliseconds, bucket upper bounds) of bucketed counts."""
    total = sum(buckets.values())
    out: dict[str, float | None] = {}
    for q in QUANTILES:
        name = f"p{round(q * 100)}"
        if total == 0:
            out[name] = None
            continue
        rank, seen = math.ceil(q * total), 0
        for bucket in sorted(buckets):
            seen += buckets[bucket]
            if seen >= rank:
                out[name] = round(bucket_upper_ms(bucket), 3)
                break
    return out


@dataclass
class _Window:
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(EVENTS, 0))
    wait_ms: float = 0.0
    run_ms: float = 0.0
    wait: dict[int, int] = field(default_factory=lambda: defaultdict(int))
    run: dict[int, int] = field(default_factory=lambda: defaultdict(int))

    def add(self, other: _Window) -> None:
        for event in EVENTS:
            self.counts[event] += other.counts[event]
        self.wait_ms += other.wait_ms
        self.run_ms += other.run_ms
        for bucket, n in other.wait.items():
            self.wait[bucket] += n
        for bucket, n in other.run.items():
            self.run[bucket] += n

    def to_json(self, seconds: float) -> dict[str, Any]:
        attempts = self.counts["succeeded"] + self.counts["failed"]
        waits, runs = sum(self.wait.values()), sum(self.run.values())
        return {
            **self.counts,
            "seconds": round(seconds, 3),
            "throughput_per_s": round(self.counts["succeeded"] / seconds, 6) if seconds else 0.0,
            "failure_rate": round(self.counts["failed"] / attempts, 4) if attempts else None,
            "wait_ms": {
                "mean": round(self.wait_ms / waits, 3) if waits else None,
                **percentiles(self.wait),
            },
            "run_ms": {
                "mean": round(self.run_ms / runs, 3) if runs else None,
                **percentiles(self.run),
            },
        }


@dataclass
class _Group:
    live: dict[str, int] = field(default_factory=lambda: dict.fromkeys(LIVE_STATES, 0))
    ready: int = 0
    oldest_ready: str | None = None
    totals: dict[str, int] = field(default_factory=lambda: dict.fromkeys(EVENTS, 0))
    windows: dict[str, _Window] = field(default_factory=dict)

    def add(self, other: _Group) -> None:
        for state, n in other.live.items():
            self.live[state] += n
        self.ready += other.ready
        if other.oldest_ready is not None and (
            self.oldest_ready is None or other.oldest_ready < self.oldest_ready
        ):
            self.oldest_ready = other.oldest_ready
        for event, n in other.totals.items():
            self.totals[event] += n
        for name, window in other.windows.items():
            self.windows.setdefault(name, _Window()).add(window)

    def to_json(self, now: datetime, covered: dict[str, float]) -> dict[str, Any]:
        oldest = None
        if self.oldest_ready is not None:
            oldest = round(max(0.0, (now - parse_ts(self.oldest_ready)).total_seconds()), 3)
        return {
            "states": {
                **self.live,
                "succeeded": self.totals["succeeded"],
                "cancelled": self.totals["cancelled"],
            },
            "queue_depth": self.ready,
            "oldest_ready_age_s": oldest,
            "totals": self.totals,
            "windows": {
                name: self.windows.get(name, _Window()).to_json(covered[name]) for name in covered
            },
        }


def check_windows(names: Sequence[str]) -> tuple[str, ...]:
    for name in names:
        if name not in WINDOWS:
            raise InvalidInput(f"window must be one of {', '.join(WINDOWS)}, got {name!r}")
    return tuple(dict.fromkeys(names)) or DEFAULT_WINDOWS


class JobStats:
    """Reads of the rollups and the live jobs table, for the API, the CLI and metrics."""

    def __init__(self, store: SqlStore) -> None:
        self.store = store

    def summary(
        self,
        tenant: str | None,
        *,
        windows: Sequence[str] = DEFAULT_WINDOWS,
        type_: str | None = None,
        queue: str | None = None,
        now: datetime | None = None,
    ) -> dict[str, Any]:
        """Per (type, queue) and in total: counts by state (succeeded and cancelled are all-time
        totals from the rollups; the others are the jobs in that state now), queue depth (ready
        jobs), the age of the oldest ready job, and per window: event counts, throughput
        (succeeded per second), failure rate (failed / ended attempts) and wait and run time
        mean and percentiles. A window covers the minutes that overlap it, the current one
        included, and reports the seconds it covered."""
        names = check_windows(windows)
        moment = (now or datetime.now(UTC)).astimezone(UTC)
        starts = {name: _window_start(moment, WINDOWS[name]) for name in names}
        covered = {name: (moment - start).total_seconds() for name, start in starts.items()}
        earliest = minute_of(min(starts.values()))
        groups: dict[tuple[str, str], _Group] = defaultdict(_Group)
        where, params = _filters(tenant, type_, queue)
        params |= {"now": format_ts(moment), "since": earliest}
        with self.store._read() as c:
            for type_name, queue_name, state, n in c.sql(
                self.store._prepare(_LIVE.format(where=where)), params
            ):
                group = groups[type_name, queue_name]
                group.live[state] = int(n)
            for type_name, queue_name, n, oldest in c.sql(
                self.store._prepare(_READY.format(where=where)), params
            ):
                group = groups[type_name, queue_name]
                group.ready, group.oldest_ready = int(n), oldest
            for type_name, queue_name, *totals in c.sql(
                self.store._prepare(_TOTALS.format(where=where)), params
            ):
                group = groups[type_name, queue_name]
                group.totals = {e: int(v) for e, v in zip(EVENTS, totals, strict=True)}
            minutes: dict[tuple[str, str, str], _Window] = defaultdict(_Window)
            for type_name, queue_name, minute, *rest in c.sql(
                self.store._prepare(_MINUTES.format(where=where)), params
            ):
                window = minutes[type_name, queue_name, minute]
                window.counts = {e: int(v) for e, v in zip(EVENTS, rest[:6], strict=True)}
                window.wait_ms, window.run_ms = float(rest[6]), float(rest[7])
            for type_name, queue_name, minute, metric, bucket, n in c.sql(
                self.store._prepare(_BUCKETS.format(where=where)), params
            ):
                window = minutes[type_name, queue_name, minute]
                (window.wait if metric == "wait" else window.run)[int(bucket)] += int(n)
        for (type_name, queue_name, minute), window in minutes.items():
            group = groups[type_name, queue_name]
            for name, start in starts.items():
                if minute >= minute_of(start):
                    group.windows.setdefault(name, _Window()).add(window)
        total = _Group()
        out = []
        for (type_name, queue_name), group in sorted(groups.items()):
            total.add(group)
            out.append({"type": type_name, "queue": queue_name, **group.to_json(moment, covered)})
        return {
            "tenant": tenant,
            "at": format_ts(moment),
            "windows": list(names),
            "total": total.to_json(moment, covered),
            "groups": out,
        }

    def series(
        self,
        tenant: str | None,
        *,
        minutes: int = 60,
        type_: str | None = None,
        queue: str | None = None,
        now: datetime | None = None,
    ) -> list[dict[str, Any]]:
        """One point per minute, oldest first, of the last `minutes` (for charts): event counts
        and wait and run time percentiles, over the filtered types and queues."""
        if not 1 <= minutes <= MAX_SERIES_MINUTES:
            raise InvalidInput(f"minutes must be between 1 and {MAX_SERIES_MINUTES}")
        moment = (now or datetime.now(UTC)).astimezone(UTC)
        first = moment.replace(second=0, microsecond=0) - timedelta(minutes=minutes - 1)
        points = {minute_of(first + timedelta(minutes=i)): _Window() for i in range(minutes)}
        where, params = _filters(tenant, type_, queue)
        params["since"] = minute_of(first)
        with self.store._read() as c:
            for _, _, minute, *rest in c.sql(
                self.store._prepare(_MINUTES.format(where=where)), params
            ):
                if minute in points:
                    window = _Window()
                    window.counts = {e: int(v) for e, v in zip(EVENTS, rest[:6], strict=True)}
                    window.wait_ms, window.run_ms = float(rest[6]), float(rest[7])
                    points[minute].add(window)
            for _, _, minute, metric, bucket, n in c.sql(
                self.store._prepare(_BUCKETS.format(where=where)), params
            ):
                if minute in points:
                    window = points[minute]
                    (window.wait if metric == "wait" else window.run)[int(bucket)] += int(n)
        return [{"minute": minute, **window.to_json(60.0)} for minute, window in points.items()]

    def by_queue(self, limit: int) -> dict[str, Any]:
        """Instance-wide figures per queue for Prometheus: live counts by state, ready jobs and
        the oldest one's run_at, all-time event totals and sums, and time buckets. The `limit`
        queues with the most jobs keep their name; the rest are summed under "other"."""
        with self.store._read() as c:
            live = c.sql(self.store._prepare(_LIVE_BY_QUEUE), {})
            ready = c.sql(
                self.store._prepare(_READY_BY_QUEUE), {"now": format_ts(datetime.now(UTC))}
            )
            totals = c.sql(self.store._prepare(_TOTALS_BY_QUEUE), {})
            buckets = c.sql(self.store._prepare(_BUCKETS_BY_QUEUE), {})
        sizes: dict[str, int] = defaultdict(int)
        for queue, _, n in live:
            sizes[str(queue)] += int(n)
        for queue, *counts in totals:
            sizes[str(queue)] += int(counts[0])
        named = {q for q, _ in sorted(sizes.items(), key=lambda kv: (-kv[1], kv[0]))[:limit]}

        def label(queue: Any) -> str:
            return str(queue) if str(queue) in named else "other"

        out: dict[str, Any] = {"live": defaultdict(int), "ready": {}, "totals": {}}
        for queue, state, n in live:
            out["live"][label(queue), str(state)] += int(n)
        for queue, n, oldest in ready:
            name = label(queue)
            count, first = out["ready"].get(name, (0, str(oldest)))
            out["ready"][name] = (count + int(n), min(first, str(oldest)))
        for queue, *counts in totals:
            row = out["totals"].setdefault(
                label(queue), dict.fromkeys((*EVENTS, "wait_ms", "run_ms"), 0.0)
            )
            for name, value in zip((*EVENTS, "wait_ms", "run_ms"), counts, strict=True):
                row[name] += float(value)
        out["buckets"] = defaultdict(lambda: defaultdict(int))
        for queue, metric, bucket, n in buckets:
            out["buckets"][label(queue), str(metric)][int(bucket)] += int(n)
        return out


def _window_start(moment: datetime, seconds: int) -> datetime:
    """The start of the first minute that overlaps (moment - seconds, moment]."""
    return (moment - timedelta(seconds=seconds)).replace(second=0, microsecond=0)


def _filters(
    tenant: str | None, type_: str | None, queue: str | None
) -> tuple[str, dict[str, Any]]:
    where, params = ["1 = 1"], {}
    for column, value in (("tenant", tenant), ("type", type_), ("queue", queue)):
        if value is not None:
            where.append(f"{column} = :{column}")
            params[column] = value
    return " AND ".join(where), params


# Fixed SQL with a WHERE built only from the fixed fragments of `_filters`.
_LIVE = (
    "SELECT type, queue, state, COUNT(*) FROM jobs "
    "WHERE {where} AND state IN ('queued', 'running', 'retrying', 'dead', 'failed') "
    "GROUP BY type, queue, state"
)
_READY = (
    "SELECT type, queue, COUNT(*), MIN(run_at) FROM jobs "
    "WHERE {where} AND state IN ('queued', 'retrying') AND run_at <= :now GROUP BY type, queue"
)
_TOTALS = (
    "SELECT type, queue, SUM(submitted), SUM(started), SUM(succeeded), SUM(failed), SUM(dead), "
    "SUM(cancelled) FROM job_stats WHERE {where} GROUP BY type, queue"
)
_MINUTES = (
    "SELECT type, queue, minute, submitted, started, succeeded, failed, dead, cancelled, "
    "wait_ms, run_ms FROM job_stats WHERE {where} AND minute >= :since"
)
_BUCKETS = (
    "SELECT type, queue, minute, metric, bucket, count FROM job_stats_buckets "
    "WHERE {where} AND minute >= :since"
)
_LIVE_BY_QUEUE = (
    "SELECT queue, state, COUNT(*) FROM jobs "
    "WHERE state IN ('queued', 'running', 'retrying', 'dead', 'failed') GROUP BY queue, state"
)
_READY_BY_QUEUE = (
    "SELECT queue, COUNT(*), MIN(run_at) FROM jobs "
    "WHERE state IN ('queued', 'retrying') AND run_at <= :now GROUP BY queue"
)
_TOTALS_BY_QUEUE = (
    "SELECT queue, SUM(submitted), SUM(started), SUM(succeeded), SUM(failed), SUM(dead), "
    "SUM(cancelled), SUM(wait_ms), SUM(run_ms) FROM job_stats GROUP BY queue"
)
_BUCKETS_BY_QUEUE = (
    "SELECT queue, metric, bucket, SUM(count) FROM job_stats_buckets GROUP BY queue, metric, bucket"
)
