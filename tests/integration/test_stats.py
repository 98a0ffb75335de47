"""The jobs read model (engine/stats.py), the same on SQLite and PostgreSQL: rollups written with
each transition, live counts, windows, percentiles, filters, and history that outlives the
process and the jobs."""

from __future__ import annotations

import math
import random
from datetime import timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from helpers import OTHER_TENANT, TENANT, Clock, make_identity
from logline.engine.jobs import JobRequest
from logline.engine.queue import JobQueue
from logline.engine.stats import JobStats, bucket_of, bucket_upper_ms, percentiles
from logline.errors import InvalidInput
from logline.ledger.log import Log
from logline.observe.job_metrics import JobMetrics
from logline.store.interface import Store
from logline.store.sql import SqlStore

NODE = "logline-id://node/worker-1"


@pytest.fixture
def queue(clocked_log: Log, clock: Clock) -> JobQueue:
    author, key = make_identity(clocked_log, TENANT, "engine", kind="service")
    return JobQueue(clocked_log, author=author, key=key, clock=clock, rng=random.Random(7))


def _close(value: float | None, expected: float) -> bool:
    """Within the buckets' resolution: at most 2**(1/8) (about 9%) above the exact value."""
    return value is not None and expected <= value <= expected * 2 ** (1 / 8) + 1e-9


def test_every_transition_is_counted(queue: JobQueue, clock: Clock) -> None:
    ok, bad, idle = (
        queue.submit(TENANT, JobRequest(type="report.render", payload=i)) for i in range(3)
    )
    queue.submit(TENANT, JobRequest(type="report.render", dedupe_key="k"))
    queue.submit(TENANT, JobRequest(type="report.render", dedupe_key="k"))  # deduplicated
    clock.advance(2.0)
    claimed = queue.claim(NODE, ["default"], limit=2)
    assert {j.id for j in claimed} == {ok.id, bad.id}
    clock.advance(0.5)
    queue.complete(TENANT, ok.id, NODE, 1, None)
    queue.fail(TENANT, bad.id, NODE, 1, "no such month", retryable=False)
    queue.cancel(TENANT, idle.id, "logline-id://person/op")

    summary = queue.stats.summary(TENANT, now=clock())
    total = summary["total"]
    assert total["totals"] == {
        "submitted": 4, "started": 2, "succeeded": 1, "failed": 1, "dead": 1, "cancelled": 1,
    }  # fmt: skip
    assert total["states"] == {
        "queued": 1, "running": 0, "retrying": 0, "dead": 0, "failed": 1,
        "succeeded": 1, "cancelled": 1,
    }  # fmt: skip
    minute = total["windows"]["1m"]
    assert (minute["succeeded"], minute["failed"], minute["failure_rate"]) == (1, 1, 0.5)
    assert _close(minute["wait_ms"]["p50"], 2000) and _close(minute["wait_ms"]["p99"], 2000)
    assert _close(minute["run_ms"]["p99"], 500)
    assert minute["wait_ms"]["mean"] == pytest.approx(2000, abs=1)
    assert minute["throughput_per_s"] == pytest.approx(1 / minute["seconds"], rel=1e-2)
    [group] = summary["groups"]
    assert (group["type"], group["queue"]) == ("report.render", "default")


def test_retries_and_lost_leases_count_as_failed_attempts(queue: JobQueue, clock: Clock) -> None:
    job = queue.submit(
        TENANT, JobRequest(type="job.flaky", max_attempts=2, backoff_base_s=1, backoff_cap_s=1)
    )
    queue.claim(NODE, ["default"], lease_s=5)
    clock.advance(1.0)
    queue.fail(TENANT, job.id, NODE, 1, "boom")  # retrying
    clock.advance(2.0)
    queue.claim(NODE, ["default"], lease_s=5)
    clock.advance(6.0)
    [expired] = queue.expire_leases()
    assert expired.state == "dead"
    totals = queue.stats.summary(TENANT, now=clock())["total"]["totals"]
    assert (totals["started"], totals["failed"], totals["dead"], totals["succeeded"]) == (
        2,
        2,
        1,
        0,
    )
    run = queue.stats.summary(TENANT, now=clock())["total"]["windows"]["1m"]["run_ms"]
    assert _close(run["p50"], 1000) and _close(run["p99"], 6000)


def test_queue_depth_and_the_oldest_ready_job(queue: JobQueue, clock: Clock) -> None:
    queue.submit(TENANT, JobRequest(type="job.a"))
    queue.submit(TENANT, JobRequest(type="job.a", queue="bulk"))
    queue.submit(TENANT, JobRequest(type="job.a", run_at=clock() + timedelta(hours=1)))  # not ready
    clock.advance(30)
    summary = queue.stats.summary(TENANT, now=clock())
    assert summary["total"]["queue_depth"] == 2
    assert summary["total"]["states"]["queued"] == 3
    assert summary["total"]["oldest_ready_age_s"] == pytest.approx(30, abs=0.01)
    bulk = queue.stats.summary(TENANT, queue="bulk", now=clock())
    assert [(g["queue"], g["queue_depth"]) for g in bulk["groups"]] == [("bulk", 1)]


def test_windows_filters_and_tenants(queue: JobQueue, clock: Clock) -> None:
    queue.submit(TENANT, JobRequest(type="job.a"))
    queue.submit(TENANT, JobRequest(type="job.b"))
    queue.submit(OTHER_TENANT, JobRequest(type="job.a"))
    later = clock() + timedelta(hours=2)
    windows = queue.stats.summary(TENANT, windows=["1h", "24h"], now=later)["total"]["windows"]
    assert (windows["1h"]["submitted"], windows["24h"]["submitted"]) == (0, 2)
    assert 3600 <= windows["1h"]["seconds"] <= 3660
    only_a = queue.stats.summary(TENANT, type_="job.a", now=clock())
    assert only_a["total"]["totals"]["submitted"] == 1
    assert queue.stats.summary(OTHER_TENANT, now=clock())["total"]["totals"]["submitted"] == 1
    assert queue.stats.summary(None, now=clock())["total"]["totals"]["submitted"] == 3
    assert queue.stats.summary("nobody", now=clock())["groups"] == []
    with pytest.raises(InvalidInput, match="window must be one of"):
        queue.stats.summary(TENANT, windows=["2m"])


def test_history_outlives_the_process_and_purged_jobs(
    queue: JobQueue, clock: Clock, store: Store
) -> None:
    job = queue.submit(TENANT, JobRequest(type="job.a", max_attempts=1))
    queue.claim(NODE, ["default"])
    queue.fail(TENANT, job.id, NODE, 1, "boom")
    queue.purge(TENANT, job.id, "logline-id://person/op")
    assert isinstance(store, SqlStore)
    fresh = JobStats(store)  # what a restarted server reads
    totals = fresh.summary(TENANT, now=clock())["total"]["totals"]
    assert (totals["submitted"], totals["failed"], totals["dead"]) == (1, 1, 1)


def test_series_has_a_point_per_minute(queue: JobQueue, clock: Clock) -> None:
    queue.submit(TENANT, JobRequest(type="job.a"))
    points = queue.stats.series(TENANT, minutes=5, now=clock())
    assert len(points) == 5
    assert [p["submitted"] for p in points] == [0, 0, 0, 0, 1]
    assert points[-1]["minute"] == clock().strftime("%Y-%m-%dT%H:%M")
    with pytest.raises(InvalidInput):
        queue.stats.series(TENANT, minutes=0)


def test_by_queue_bounds_the_labels(queue: JobQueue) -> None:
    for name in ("q1", "q2", "q3"):
        queue.submit(TENANT, JobRequest(type="job.a", queue=name))
    queue.submit(TENANT, JobRequest(type="job.a", queue="q1"))
    figures = queue.stats.by_queue(limit=1)
    assert figures["live"] == {("q1", "queued"): 2, ("other", "queued"): 2}
    assert set(figures["totals"]) == {"q1", "other"}


@given(st.floats(min_value=0.0, max_value=2.0**29))
def test_a_bucket_holds_its_time_within_nine_percent(ms: float) -> None:
    upper = bucket_upper_ms(bucket_of(ms))
    assert ms <= upper * (1 + 1e-12)
    assert upper <= max(1.0, ms * 2 ** (1 / 8) * (1 + 1e-12))


@given(st.lists(st.floats(min_value=0.0, max_value=1e7), min_size=1, max_size=200))
def test_percentiles_bound_the_exact_ones(values: list[float]) -> None:
    buckets: dict[int, int] = {}
    for value in values:
        buckets[bucket_of(value)] = buckets.get(bucket_of(value), 0) + 1
    got = percentiles(buckets)
    ordered = sorted(values)
    for name, q in (("p50", 0.5), ("p90", 0.9), ("p99", 0.99)):
        exact = ordered[math.ceil(q * len(ordered)) - 1]
        estimate = got[name]
        assert estimate is not None
        assert exact <= estimate * (1 + 1e-9) + 1e-3
        assert estimate <= max(1.0, exact * 2 ** (1 / 8)) * (1 + 1e-9) + 1e-3


def test_prometheus_reads_the_rollups(queue: JobQueue, clock: Clock) -> None:
    registry = CollectorRegistry()
    registry.register(JobMetrics(queue.stats, cache_s=0))
    job = queue.submit(TENANT, JobRequest(type="job.a", queue="q1"))
    queue.submit(TENANT, JobRequest(type="job.a", queue="q1"))
    clock.advance(0.2)
    queue.claim(NODE, ["q1"])
    clock.advance(3.0)
    queue.complete(TENANT, job.id, NODE, 1, None)

    def value(name: str, **labels: str) -> float | None:
        return registry.get_sample_value(name, labels)

    assert value("logline_job_stats_up") == 1
    assert value("logline_jobs", queue="q1", state="queued") == 1
    assert value("logline_job_queue_ready", queue="q1") == 1
    assert value("logline_job_events_total", queue="q1", event="succeeded") == 1
    assert value("logline_job_events_total", queue="q1", event="submitted") == 2
    assert value("logline_job_run_seconds_bucket", queue="q1", le="2.5") == 0
    assert value("logline_job_run_seconds_bucket", queue="q1", le="5.0") == 1
    assert value("logline_job_run_seconds_count", queue="q1") == 1
    assert value("logline_job_run_seconds_sum", queue="q1") == pytest.approx(3.0)
    assert value("logline_job_wait_seconds_bucket", queue="q1", le="0.25") == 1
