"""Measure job systems the same way: drain throughput, then submit-to-start latency when idle."""

from __future__ import annotations

import argparse
import os
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TextIO

import redis

from bench.common import Emitter, percentile, pg_admin_url
from bench.jobs_baselines.drivers import PEERS, SYSTEMS, Config, System
from bench.jobs_baselines.mark import PREFIX_ENV, REDIS_ENV, Marks, mark

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/15"
WARMUP_JOBS = 10
POLL_S = 0.005
Record = dict[str, Any]


def wait_done(
    system: System, marks: Marks, n: int, timeout_s: float, on_first: Callable[[], None] | None
) -> None:
    """Poll the mark count until `n` jobs ran; `on_first` is called once the first one has."""
    deadline = time.monotonic() + timeout_s
    while (count := marks.count()) < n:
        if on_first is not None and count > 0:
            on_first()
            on_first = None
        system.check_workers()
        if time.monotonic() > deadline:
            raise RuntimeError(f"{system.name}: {count} of {n} jobs ran in {timeout_s:.0f} s\n"
                               + system.log_tail())  # fmt: skip
        time.sleep(POLL_S)
    if on_first is not None:
        on_first()


def drain(system: System, marks: Marks, jobs: int) -> Record:
    """Enqueue `jobs`, then start the workers; the rate from the first job's start to the last's."""
    marks.reset()
    started = time.monotonic()
    system.enqueue_many(jobs)
    enqueue_s = time.monotonic() - started
    spawned = time.monotonic()
    system.start_workers()
    at_first: list[tuple[float, float | None]] = []

    def sample() -> None:
        at_first.append((system.worker_cpu_seconds(), system.broker_cpu_seconds()))

    wait_done(system, marks, jobs, 120 + jobs / 100, sample)
    worker_cpu = system.worker_cpu_seconds() - at_first[0][0]
    broker_end, broker_start = system.broker_cpu_seconds(), at_first[0][1]
    first, last = marks.first_last()
    drain_s = last - first
    return {
        "throughput": (jobs - 1) / drain_s if drain_s > 0 else float("inf"),
        "drain_s": drain_s,
        "boot_s": first - spawned,
        "enqueue_s": enqueue_s,
        "throughput_with_boot": jobs / (last - spawned),
        "worker_cpu_us_per_job": worker_cpu / jobs * 1e6,
        "broker_cpu_us_per_job": None
        if broker_end is None or broker_start is None
        else (broker_end - broker_start) / jobs * 1e6,
    }


def measure(
    system: System, marks: Marks, jobs: int, latency_jobs: int, rate: float, repeats: int = 3
) -> Record:
    """Drain `jobs` enqueued before the workers start, `repeats` times (the workers restarted
    and the system set up anew each time; the median run is kept); then, workers warm and
    idle, submit `latency_jobs` one at a time at `rate` per second. Returns the raw figures."""
    system.setup()
    try:
        drains = []
        for i in range(repeats):
            if i > 0:  # each drain from a fresh state: queues, files and database made anew
                system.stop_workers()
                system.cleanup()
                system.setup()
            drains.append(drain(system, marks, jobs))

        marks.reset()  # warm-up: a few jobs through the running workers, not counted
        for _ in range(WARMUP_JOBS):
            system.submit(time.monotonic())
        wait_done(system, marks, WARMUP_JOBS, 60, None)
        marks.reset()
        begin = time.monotonic()
        for i in range(latency_jobs):
            delay = begin + i / rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            system.submit(time.monotonic())
        wait_done(system, marks, latency_jobs, 60 + latency_jobs / rate, None)
        latencies = marks.latencies()
    finally:
        system.stop_workers()
        system.cleanup()
    median = sorted(drains, key=lambda d: float(d["throughput"]))[len(drains) // 2]
    return {
        **median,
        "drain_runs": [d["throughput"] for d in drains],
        "p50": percentile(latencies, 50),
        "p99": percentile(latencies, 99),
        "latencies": latencies,
    }


def mark_cost_us(url: str, prefix: str, n: int = 2000) -> float:
    """The cost of one `mark` round trip from one process: what every job pays for being seen."""
    saved = {k: os.environ.get(k) for k in (REDIS_ENV, PREFIX_ENV)}
    os.environ[REDIS_ENV], os.environ[PREFIX_ENV] = url, f"{prefix}-markcost"
    try:
        started = time.perf_counter()
        for _ in range(n):
            mark(0.0)
        cost = (time.perf_counter() - started) / n * 1e6
        Marks(url, f"{prefix}-markcost").reset()
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    return cost


def records_for(
    name: str, system: System, raw: Record, base: Record | None, jobs: int, rate: float
) -> list[Record]:
    """The drain and latency lines of one system, as ratios to the bare queue's figures."""
    common = {"concurrency": system.concurrency, "versions": system.versions()}
    throughput = raw["throughput"]
    drain_fields = ("drain_s", "boot_s", "enqueue_s", "throughput_with_boot",
                    "worker_cpu_us_per_job", "broker_cpu_us_per_job")  # fmt: skip
    out: list[Record] = [{
        "backend": name, "variant": "drain", "metric": "drain_throughput",
        "value": throughput, "unit": "jobs/s",
        "ratio": None if base is None else throughput / base["throughput"],
        "ratio_to": "bare_drain_throughput", "jobs": jobs,
        "drain_runs": [round(r, 1) for r in raw["drain_runs"]],
        **{key: raw[key] for key in drain_fields}, **common,
    }]  # fmt: skip
    latencies = raw["latencies"]
    for p in (50, 99):
        value = raw[f"p{p}"]
        out.append({
            "backend": name, "variant": f"idle, paced {rate:g}/s",
            "metric": f"start_latency_p{p}", "value": value * 1000, "unit": "ms",
            "ratio": None if base is None else value / base[f"p{p}"],
            "ratio_to": f"bare_start_latency_p{p}", "jobs": len(latencies),
            "max_ms": max(latencies) * 1000, **common,
        })  # fmt: skip
    return out


def run_baselines(
    systems: Sequence[str] = PEERS,
    jobs: int = 20_000,
    latency_jobs: int = 2_000,
    rate: float = 100.0,
    *,
    repeats: int = 3,
    redis_url: str = DEFAULT_REDIS_URL,
    pg_url: str | None = None,
    tmp_dir: str | None = None,
    emit: Callable[[Record], None] | None = None,
) -> list[Record]:
    """Measure the bare Redis-list queue, then each of `systems`; one record per line, each a
    keyword set for `Emitter.emit` (a skipped system gives a `skipped` line with its reason)."""
    records: list[Record] = []

    def add(record: Record) -> None:
        records.append(record)
        if emit is not None:
            emit(record)

    prefix = f"logline-bench-jobs-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    base: Record | None = None
    with tempfile.TemporaryDirectory(prefix="logline-bench-jobs-", dir=tmp_dir) as tmp:
        config = Config(redis_url, prefix, Path(tmp), pg_admin_url(pg_url))
        for name in ("bare", *systems):
            system = SYSTEMS[name](config)
            reason = system.unavailable()
            if reason is not None:
                add({"backend": name, "variant": None, "metric": "skipped", "value": 0,
                     "unit": "", "ratio": None, "ratio_to": None, "reason": reason})  # fmt: skip
                continue
            marks = Marks(redis_url, prefix)
            try:
                raw = measure(system, marks, jobs, latency_jobs, rate, repeats)
            except Exception as exc:  # one system failing must not lose the others' figures
                add({"backend": name, "variant": None, "metric": "failed", "value": 0,
                     "unit": "", "ratio": None, "ratio_to": None,
                     "reason": f"{type(exc).__name__}: {exc}"[-3000:]})  # fmt: skip
                continue
            finally:
                marks.close()
            if name == "bare":
                base = raw
            lines = records_for(name, system, raw, base, jobs, rate)
            if name == "bare":
                lines[0]["mark_us"] = mark_cost_us(redis_url, prefix)
            for line in lines:
                add(line)
    return records


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    from bench.jobs_baselines import __doc__ as doc

    parser = argparse.ArgumentParser(
        prog="python -m bench jobs-baselines",
        description=doc,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--jobs", type=int, default=20_000, help="drain jobs per system")
    parser.add_argument("--latency-jobs", type=int, default=2_000)
    parser.add_argument("--rate", type=float, default=100.0, help="latency jobs per second")
    parser.add_argument("--repeats", type=int, default=3, help="drains per system (median kept)")
    parser.add_argument("--systems", default=",".join(PEERS), help="comma-separated")
    parser.add_argument(
        "--redis-url",
        default=os.environ.get("LOGLINE_BENCH_REDIS", DEFAULT_REDIS_URL),
        help="broker and mark store (default $LOGLINE_BENCH_REDIS or db 15 on localhost)",
    )
    parser.add_argument("--pg-url", default=None, help="PostgreSQL maintenance URL")
    parser.add_argument("--tmp-dir", default=None)
    args = parser.parse_args(argv)
    systems = [s for s in args.systems.split(",") if s]
    unknown = [s for s in systems if s not in PEERS]
    if unknown:
        parser.error(f"unknown systems {unknown}; choose from {','.join(PEERS)}")
    if args.jobs < 2 or args.latency_jobs < 1 or args.rate <= 0 or args.repeats < 1:
        parser.error("--jobs must be at least 2, --latency-jobs and --repeats at least 1, "
                     "--rate positive")  # fmt: skip

    em = Emitter("jobs-baselines", out)
    em.run_info(
        jobs=args.jobs,
        latency_jobs=args.latency_jobs,
        rate=args.rate,
        repeats=args.repeats,
        systems=systems,
        redis=_redis_version(args.redis_url),
    )
    started = time.perf_counter()
    records = run_baselines(
        systems, args.jobs, args.latency_jobs, args.rate, repeats=args.repeats,
        redis_url=args.redis_url,
        pg_url=args.pg_url, tmp_dir=args.tmp_dir, emit=lambda r: em.emit(**r),
    )  # fmt: skip
    em.run_end(started)
    return 1 if any(r["metric"] == "failed" for r in records) else 0


def _redis_version(url: str) -> str | None:
    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=2)
        info: dict[str, Any] = client.info("server")
        client.close()
        return str(info.get("redis_version"))
    except redis.RedisError:
        return None
