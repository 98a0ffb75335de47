"""Job-queue baselines for issue 4: Celery, Dramatiq, Huey and pgqueuer, measured on this machine
in the same run as a bare Redis-list queue (and, later, the LogLine job engine).

    python -m bench jobs-baselines [--jobs 20000] [--latency-jobs 2000] [--rate 100]
                                   [--repeats 3] [--systems celery,dramatiq,huey,pgqueuer]

Each system runs a no-op job whose only work is to mark that it started: one Redis round trip
(a Lua script counting the job and keeping its CLOCK_MONOTONIC start time), the same for every
system, so no system's own result backend is involved. Per system, workers are real processes
started with the system's own CLI, with 2 worker processes for the 2 cores:

* drain: `--jobs` jobs are enqueued first, then the workers start; jobs/s = (jobs - 1) / (last
  job's start - first job's start). Worker boot time and the rate including it are reported too,
  with the CPU time per job of the workers and of the broker (Redis, or PostgreSQL's backends).
  `--repeats` drains (default 3), each on a fresh queue/database with fresh workers; the median
  is reported.
* latency: with the workers running and idle (after 10 warm-up jobs), `--latency-jobs` jobs are
  submitted one at a time at `--rate` per second; p50/p99 of (start - submit).

The bare queue (RPUSH, and 2 processes that BLPOP one job at a time and mark it) is measured
first, always; every figure is reported as a ratio to its figure. A system whose package or
service is missing prints a `skipped` line with the reason. Redis keys, Huey's SQLite file and
pgqueuer's database are named after the run and removed before and after.
"""

from bench.jobs_baselines.drivers import PEERS, SYSTEMS, Config, System
from bench.jobs_baselines.runner import main, measure, run_baselines

__all__ = ["PEERS", "SYSTEMS", "Config", "System", "main", "measure", "run_baselines"]
