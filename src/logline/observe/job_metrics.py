"""Prometheus metrics of jobs, read at scrape time from the persisted read model (`engine.stats`),
so every server of an instance reports the same figures and a restart loses none of them.

    logline_jobs{queue,state}                         gauge      jobs in a live state now
    logline_job_queue_ready{queue}                    gauge      claimable now
    logline_job_oldest_ready_age_seconds{queue}       gauge      how long the oldest has waited
    logline_job_events_total{queue,event}             counter    engine.stats.EVENTS, all time
    logline_job_wait_seconds{queue}                   histogram  ready → started
    logline_job_run_seconds{queue}                    histogram  started → ended
    logline_job_stats_up                              gauge      0 when the read failed

Labels are bounded: no tenant and no type (both are unbounded); the `max_queues` busiest queues
keep their name and the rest are summed as "other". Queries run at most once per `cache_s`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any, Final

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from logline.engine.stats import EVENTS, JobStats, bucket_upper_ms
from logline.errors import LogLineError
from logline.ledger.timefmt import parse_ts

log = logging.getLogger("logline.metrics")

SECONDS_BUCKETS: Final = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 3600.0,
)  # fmt: skip


class JobMetrics(Collector):
    def __init__(self, stats: JobStats, *, max_queues: int = 20, cache_s: float = 5.0) -> None:
        self.stats = stats
        self.max_queues = max_queues
        self.cache_s = cache_s
        self._lock = threading.Lock()
        self._cached: tuple[float, list[Metric]] | None = None

    def describe(self) -> list[Metric]:
        return []  # read at scrape time: nothing to describe up front

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            if self._cached is None or time.monotonic() - self._cached[0] >= self.cache_s:
                self._cached = (time.monotonic(), self._read())
            yield from self._cached[1]

    def _read(self) -> list[Metric]:
        up = GaugeMetricFamily("logline_job_stats_up", "1 if the jobs read model was read.")
        try:
            figures = self.stats.by_queue(self.max_queues)
        except LogLineError as exc:
            log.warning("job metrics: %s", exc)
            up.add_metric([], 0)
            return [up]
        up.add_metric([], 1)
        return [up, *_families(figures)]


def _families(figures: dict[str, Any]) -> list[Metric]:
    jobs = GaugeMetricFamily("logline_jobs", "Jobs in a live state now.", labels=["queue", "state"])
    for (queue, state), n in sorted(figures["live"].items()):
        jobs.add_metric([queue, state], n)
    ready = GaugeMetricFamily("logline_job_queue_ready", "Claimable jobs now.", labels=["queue"])
    oldest = GaugeMetricFamily(
        "logline_job_oldest_ready_age_seconds",
        "Seconds the oldest claimable job has waited.",
        labels=["queue"],
    )
    now = datetime.now(UTC)
    for queue, (n, run_at) in sorted(figures["ready"].items()):
        ready.add_metric([queue], n)
        oldest.add_metric([queue], max(0.0, (now - parse_ts(run_at)).total_seconds()))
    events = CounterMetricFamily(
        "logline_job_events", "Job events since the start.", labels=["queue", "event"]
    )
    for queue, totals in sorted(figures["totals"].items()):
        for event in EVENTS:
            events.add_metric([queue, event], totals[event])
    out: list[Metric] = [jobs, ready, oldest, events]
    for metric, name, sum_key, what in (
        ("wait", "logline_job_wait_seconds", "wait_ms", "From claimable to started."),
        ("run", "logline_job_run_seconds", "run_ms", "From started to the attempt's end."),
    ):
        histogram = HistogramMetricFamily(name, what, labels=["queue"])
        for queue, totals in sorted(figures["totals"].items()):
            counts = figures["buckets"].get((queue, metric), {})
            histogram.add_metric([queue], _cumulative(counts), sum_value=totals[sum_key] / 1000)
        out.append(histogram)
    return out


def _cumulative(counts: dict[int, int]) -> list[tuple[str, float]]:
    """Our log-scale buckets summed into the fixed `le` bounds: each into the first bound at or
    above its upper edge, so a bound counts no time longer than itself."""
    per_bound = [0] * (len(SECONDS_BUCKETS) + 1)
    for bucket, n in counts.items():
        upper_s = bucket_upper_ms(bucket) / 1000
        index = next(
            (i for i, bound in enumerate(SECONDS_BUCKETS) if upper_s <= bound),
            len(SECONDS_BUCKETS),
        )
        per_bound[index] += n
    out, running = [], 0
    for bound, n in zip((*SECONDS_BUCKETS, float("inf")), per_bound, strict=True):
        running += n
        out.append(("+Inf" if bound == float("inf") else repr(bound), float(running)))
    return out
