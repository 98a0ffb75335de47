"""LogLine's own job engine, end to end over HTTP, against the job-queue baselines in the same run.

    python -m bench jobs [--backend sqlite|postgres|all] [--jobs 20000] [--latency-jobs 2000]
                         [--rate 100] [--repeats 3] [--workers 2] [--concurrency 32]
                         [--systems celery,dramatiq,huey,pgqueuer | none]

Per backend, a real `logline up --port 0` server (fresh home, or a fresh PostgreSQL database, for
every drain; its embedded node off, rate limits raised as in `bench.server`) and `--workers`
`logline worker` processes (`--concurrency` jobs each, an instance-wide node API key made by the
admin). Jobs are of type `bench.noop_mark` (`bench.jobs_engine_tasks`): a no-op whose only work is
the baselines' start mark, one Redis round trip. Every transition (job.queued, job.started,
job.succeeded) is a span the instance signs, committed with the job's change; after each drain
the log is counted to check that there are exactly 3 spans per job, and that every job succeeded.

The measurement is `bench.jobs_baselines.runner.measure`, the one the baselines get:

* drain: `--jobs` jobs submitted through `POST /jobs/batch` (1,000 a request) before the workers
  start; jobs/s = (jobs - 1) / (last start - first start). Also reported: the rate up to the
  last job's `succeeded` commit (its `finished_at`), which the baselines have no equivalent for.
* latency: workers running and idle (long-polling claims), jobs submitted one at a time with
  `POST /jobs` at `--rate` per second; p50/p99 of (handler start - submit); the goal is p99 < 20 ms.

Then `run_baselines` measures the bare Redis queue and `--systems` the same way, and each LogLine
figure is reported as a ratio to each system's (`vs`), its `ratio` being to the best peer.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import tempfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, ClassVar, TextIO

import httpx

from bench.common import (
    Emitter,
    backends,
    pg_admin_url,
    pg_backend_cpu,
    pg_create_database,
    pg_database_url,
    pg_drop_database,
    pg_server_version,
)
from bench.jobs_baselines import PEERS, Config, System, measure, run_baselines
from bench.jobs_baselines.mark import Marks
from bench.jobs_baselines.runner import DEFAULT_REDIS_URL, WARMUP_JOBS
from bench.jobs_engine_tasks import TYPE
from bench.server import ServerProcess, logline_command, start_logline

GOAL_P99_MS = 20.0
BATCH = 1000
TRANSITIONS = ("job.queued", "job.started", "job.succeeded")
SETTLE_TIMEOUT_S = 60.0
Record = dict[str, Any]


@dataclass
class Phase:
    """What the log and the jobs table say after one phase (a drain, or the latency run)."""

    jobs: int
    succeeded: int
    spans: dict[str, int]
    first_start: float  # the marks (monotonic)
    last_start: float
    last_succeeded: float  # the last job's finished_at, as time.monotonic()


@dataclass
class LogLineJobs(System):
    """LogLine as a `System`: a server (made anew at each `setup`) and `logline worker`s."""

    backend: str = "sqlite"
    workers: int = 2
    per_worker: int = 16
    wait_s: float = 5.0
    phases: list[Phase] = field(default_factory=list)

    name: ClassVar[str] = "logline"
    modules: ClassVar[tuple[str, ...]] = ("redis",)
    packages: ClassVar[tuple[str, ...]] = ("logline",)

    server: ServerProcess | None = None
    http: httpx.Client | None = None
    node_key: str = ""
    generation: int = 0
    draining: bool = False

    @property
    def settings(self) -> str:
        return (f"{self.workers} x `logline worker --concurrency {self.per_worker} "
                f"--wait-s {self.wait_s:g}`, handler {TYPE} (sync, thread pool)")  # fmt: skip

    @property
    def database(self) -> str:
        return f"{self.config.pg_database}_logline"

    @property
    def database_url(self) -> str:
        return pg_database_url(self.config.pg_admin_url, self.database)

    def unavailable(self) -> str | None:
        reason = super().unavailable()
        if reason is None and self.backend == "postgres":
            import psycopg

            try:
                psycopg.connect(self.config.pg_admin_url, connect_timeout=3).close()
            except psycopg.Error as exc:
                return f"PostgreSQL at {self.config.pg_admin_url} unreachable: {exc}"
        return reason

    # --- the server -------------------------------------------------------------------------------

    def setup(self) -> None:
        super().setup()
        self.generation += 1
        self.home = self.config.tmp_dir / f"logline-{self.backend}-{self.generation}"
        database_url = None
        if self.backend == "postgres":
            pg_create_database(self.config.pg_admin_url, self.database, fresh=True)
            database_url = self.database_url
        env = {"LOGLINE_EMBEDDED_NODE": "false"}
        self.server = start_logline(self.home, database_url=database_url, env=env)
        token = self.server.login(("default", "system"))
        self.http = httpx.Client(
            base_url=self.server.url, headers={"Authorization": f"Bearer {token}"}, timeout=120
        )
        reply = self._post("/v1/tenants/system/api-keys", {"name": "bench node", "role": "node"})
        self.node_key = str(reply["key"])

    def _post(self, path: str, body: Any) -> Any:
        assert self.http is not None
        response = self.http.post(path, json=body)
        if response.status_code not in (200, 201):
            raise RuntimeError(f"POST {path}: {response.status_code} {response.text[:500]}")
        return response.json()

    def cleanup(self) -> None:
        if self.http is not None:
            self.http.close()
            self.http = None
        if self.server is not None:
            self.server.stop()
            self.server = None
        if self.backend == "postgres" and self.generation:
            pg_drop_database(self.config.pg_admin_url, self.database)
        super().cleanup()

    # --- jobs and workers -------------------------------------------------------------------------

    def enqueue_many(self, n: int) -> None:
        self.draining = True
        for start in range(0, n, BATCH):
            size = min(BATCH, n - start)
            self._post("/v1/tenants/default/jobs/batch", {"jobs": [{"type": TYPE}] * size})

    def submit(self, submitted: float) -> None:
        self._post("/v1/tenants/default/jobs", {"type": TYPE, "payload": {"submitted": submitted}})

    def env(self) -> dict[str, str]:
        base = {k: v for k, v in super().env().items() if not k.startswith("LOGLINE_")}
        base.update({k: v for k, v in super().env().items() if k.startswith("LOGLINE_BENCH_")})
        return {**base, "LOGLINE_API_KEY": self.node_key, "LOGLINE_LOG_LEVEL": "warning"}

    def worker_commands(self) -> list[list[str]]:
        assert self.server is not None
        command = [
            *logline_command(), "worker", "--server", self.server.url,
            "--handlers", "bench.jobs_engine_tasks", "--concurrency", str(self.per_worker),
            "--wait-s", str(self.wait_s), "--grace-s", "30",
        ]  # fmt: skip
        return [command] * self.workers

    def broker_cpu_seconds(self) -> float | None:
        """Redis (the marks), the server process, and its PostgreSQL backends."""
        marks = super().broker_cpu_seconds()
        if marks is None or self.server is None:
            return None
        total = marks + self.server.cpu_seconds()
        if self.backend == "postgres":
            total += sum(pg_backend_cpu(self.config.pg_admin_url, self.database).values())
        return total

    def stop_workers(self) -> None:
        """Before the workers stop: wait for every job's `succeeded` commit, and count the log
        (a drain's, when the server is made anew for the next; else the latency phase's, which
        runs on the last drain's server: its counts include that drain's)."""
        try:
            if self.processes and self.server is not None:
                self.phases.append(self._settle())
                self.draining = False
        finally:
            super().stop_workers()

    def _settle(self) -> Phase:
        deadline = time.monotonic() + SETTLE_TIMEOUT_S
        while True:
            states, last_finished, spans = self._read_database()
            jobs = sum(states.values())
            if states.get("succeeded", 0) == jobs or time.monotonic() > deadline:
                break
            time.sleep(0.02)
        marks = Marks(self.config.redis_url, self.config.prefix)
        try:
            first, last = marks.first_last()
        finally:
            marks.close()
        offset = time.time() - time.monotonic()
        return Phase(jobs, states.get("succeeded", 0), spans, first, last, last_finished - offset)

    def _read_database(self) -> tuple[dict[str, int], float, dict[str, int]]:
        """Job counts by state, the last finished_at (epoch s), the default log's job spans."""
        jobs_sql = "SELECT state, count(*), max(finished_at) FROM jobs GROUP BY state"
        spans_sql = (
            "SELECT e.kind, count(*) FROM entries e JOIN logs l ON l.id = e.log_id "
            "WHERE l.tenant = 'default' AND e.kind LIKE 'job.%' "
            "AND length(e.signature) = 64 GROUP BY e.kind"
        )
        rows: list[Any]
        kinds: list[Any]
        if self.backend == "sqlite":
            conn = sqlite3.connect(f"file:{self.home / 'logline.db'}?mode=ro", uri=True)
            try:
                rows, kinds = conn.execute(jobs_sql).fetchall(), conn.execute(spans_sql).fetchall()
            finally:
                conn.close()
        else:
            import psycopg

            with psycopg.connect(self.database_url) as pg:
                rows = pg.execute(jobs_sql).fetchall()
                kinds = pg.execute(spans_sql).fetchall()
        states = {str(r[0]): int(r[1]) for r in rows}
        finished = [str(r[2]) for r in rows if r[0] == "succeeded" and r[2]]
        last = _epoch(finished[0]) if finished else 0.0
        return states, last, {str(k): int(n) for k, n in kinds}


def _epoch(ts: str) -> float:
    return datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()


class _Marks(Marks):
    """The marks, counting a drain's phase before they are reset for the latency phase (which
    runs on the last drain's server and workers, so `stop_workers` comes only after it)."""

    def __init__(self, system: LogLineJobs) -> None:
        super().__init__(system.config.redis_url, system.config.prefix)
        self.system = system

    def reset(self) -> None:
        if self.system.draining:
            self.system.phases.append(self.system._settle())
            self.system.draining = False
        super().reset()


def measure_logline(
    system: LogLineJobs, jobs: int, latency_jobs: int, rate: float, repeats: int
) -> Record:
    """`runner.measure` on LogLine, plus per drain the rate to the last `succeeded` and the
    span check; raises if a job did not succeed or a transition has no signed span."""
    marks = _Marks(system)
    try:
        raw = measure(system, marks, jobs, latency_jobs, rate, repeats)
    finally:
        marks.close()
        system.stop_workers()  # after a failure in measure's own clean-up: nothing left running
        system.cleanup()
    drains, latency = system.phases[:repeats], system.phases[repeats:]
    problems = []
    for i, phase in enumerate(system.phases):
        # The latency phase runs on the last drain's server, after WARMUP_JOBS warm-up jobs.
        expected = jobs if i < repeats else jobs + WARMUP_JOBS + latency_jobs
        if phase.jobs != expected or phase.succeeded != expected:
            problems.append(f"phase {i}: {phase.succeeded} of {phase.jobs} jobs succeeded, "
                            f"expected {expected}")  # fmt: skip
        wrong = {k: phase.spans.get(k, 0) for k in TRANSITIONS if phase.spans.get(k) != expected}
        if wrong:
            problems.append(f"phase {i}: signed spans {wrong}, expected {expected} of each")
    if problems or len(drains) != repeats or len(latency) != 1:
        raise RuntimeError("; ".join(problems) or f"{len(system.phases)} phases recorded")
    to_succeeded = sorted((jobs - 1) / (p.last_succeeded - p.first_start) for p in drains)
    raw["throughput_to_succeeded"] = to_succeeded[len(to_succeeded) // 2]
    raw["succeeded_lag_ms"] = sorted((p.last_succeeded - p.last_start) * 1000 for p in drains)
    raw["signed_spans_per_job"] = sum(drains[0].spans.values()) / jobs
    return raw


def logline_records(
    backend: str, system: LogLineJobs, raw: Record, peers: dict[str, Record], jobs: int, rate: float
) -> list[Record]:
    """LogLine's lines: each figure with `vs` (LogLine / system, for every system measured) and
    `ratio` to the best peer (the fastest drain, the lowest latency)."""
    common = {"settings": system.settings, "workers": system.workers,
              "concurrency": system.per_worker}  # fmt: skip
    throughput = float(raw["throughput"])
    vs = {name: throughput / p["throughput"] for name, p in peers.items()}
    best = max(
        (n for n in peers if n != "bare"), key=lambda n: peers[n]["throughput"], default=None
    )
    out: list[Record] = [{
        "backend": f"logline-{backend}", "variant": "drain", "metric": "drain_throughput",
        "value": throughput, "unit": "jobs/s",
        "ratio": None if best is None else vs[best],
        "ratio_to": f"{best}_drain_throughput" if best else None,
        "vs": {k: round(v, 3) for k, v in vs.items()},
        "ahead_of_all_peers": all(v > 1 for k, v in vs.items() if k != "bare") if best else None,
        "jobs": jobs, "drain_runs": [round(r, 1) for r in raw["drain_runs"]],
        "throughput_to_succeeded": raw["throughput_to_succeeded"],
        "succeeded_lag_ms": [round(v, 1) for v in raw["succeeded_lag_ms"]],
        "signed_spans_per_job": raw["signed_spans_per_job"],
        **{key: raw[key] for key in ("drain_s", "boot_s", "enqueue_s", "throughput_with_boot",
                                     "worker_cpu_us_per_job", "broker_cpu_us_per_job")},
        **common,
    }]  # fmt: skip
    for p in (50, 99):
        value = float(raw[f"p{p}"])
        lat_vs = {name: value / peer[f"p{p}"] for name, peer in peers.items()}
        lowest = min((n for n in peers if n != "bare"), key=lambda n: peers[n][f"p{p}"],
                     default=None)  # fmt: skip
        out.append({
            "backend": f"logline-{backend}", "variant": f"idle, paced {rate:g}/s",
            "metric": f"start_latency_p{p}", "value": value * 1000, "unit": "ms",
            "ratio": None if lowest is None else lat_vs[lowest],
            "ratio_to": f"{lowest}_start_latency_p{p}" if lowest else None,
            "vs": {k: round(v, 3) for k, v in lat_vs.items()},
            "jobs": len(raw["latencies"]), "max_ms": max(raw["latencies"]) * 1000,
            **({"goal_ms": GOAL_P99_MS, "goal_met": value * 1000 < GOAL_P99_MS} if p == 99 else {}),
            **common,
        })  # fmt: skip
    return out


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench jobs",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--backend", default="all", help="sqlite, postgres or all")
    parser.add_argument("--jobs", type=int, default=20_000, help="drain jobs")
    parser.add_argument("--latency-jobs", type=int, default=2_000)
    parser.add_argument("--rate", type=float, default=100.0, help="latency jobs per second")
    parser.add_argument("--repeats", type=int, default=3, help="drains (median kept)")
    parser.add_argument("--workers", type=int, default=2, help="logline worker processes")
    parser.add_argument("--concurrency", type=int, default=32, help="jobs per worker at once")
    parser.add_argument("--wait-s", type=float, default=5.0, help="the workers' long-poll wait")
    parser.add_argument(
        "--systems",
        default=",".join(PEERS),
        help="baselines, comma-separated, or 'none' (the bare queue always runs)",
    )
    parser.add_argument(
        "--redis-url", default=os.environ.get("LOGLINE_BENCH_REDIS", DEFAULT_REDIS_URL)
    )
    parser.add_argument("--pg-url", default=None, help="PostgreSQL maintenance URL")
    parser.add_argument("--tmp-dir", default=None)
    args = parser.parse_args(argv)
    systems = [] if args.systems == "none" else [s for s in args.systems.split(",") if s]
    unknown = [s for s in systems if s not in PEERS]
    if unknown:
        parser.error(f"unknown systems {unknown}; choose from {','.join(PEERS)} or none")
    if args.jobs < 2 or args.latency_jobs < 1 or args.rate <= 0 or args.repeats < 1:
        parser.error("--jobs must be at least 2, --latency-jobs and --repeats at least 1, "
                     "--rate positive")  # fmt: skip
    chosen = backends(args.backend)
    admin = pg_admin_url(args.pg_url)

    em = Emitter("jobs", out)
    extra = {"postgres": pg_server_version(admin)} if "postgres" in chosen else {}
    em.run_info(jobs=args.jobs, latency_jobs=args.latency_jobs, rate=args.rate,
                repeats=args.repeats, workers=args.workers, concurrency=args.concurrency,
                systems=systems, **extra)  # fmt: skip
    started = time.perf_counter()
    failed = False
    measured: dict[str, Record] = {}
    with tempfile.TemporaryDirectory(prefix="logline-bench-jobs-", dir=args.tmp_dir) as tmp:
        for backend in chosen:
            prefix = f"logline-bench-jobs-{os.getpid()}-{uuid.uuid4().hex[:6]}"
            config = Config(args.redis_url, prefix, Path(tmp), admin)
            system = LogLineJobs(config, backend=backend, workers=args.workers,
                                 per_worker=args.concurrency, wait_s=args.wait_s)  # fmt: skip
            reason = system.unavailable()
            if reason is not None:
                em.emit(backend=f"logline-{backend}", variant=None, metric="skipped", value=0,
                        unit="", ratio=None, ratio_to=None, reason=reason)  # fmt: skip
                continue
            try:
                measured[backend] = measure_logline(
                    system, args.jobs, args.latency_jobs, args.rate, args.repeats
                )
            except Exception as exc:
                failed = True
                em.emit(backend=f"logline-{backend}", variant=None, metric="failed", value=0,
                        unit="", ratio=None, ratio_to=None,
                        reason=f"{type(exc).__name__}: {exc}"[-3000:])  # fmt: skip

    # The baselines, in the same run; their lines are printed as they come.
    peers: dict[str, Record] = {}
    raw_by_name: dict[str, Record] = {}

    def keep(record: Record) -> None:
        nonlocal failed
        em.emit(**record)
        if record["metric"] in ("drain_throughput", "start_latency_p50", "start_latency_p99"):
            entry = raw_by_name.setdefault(record["backend"], {})
            key = {"drain_throughput": "throughput", "start_latency_p50": "p50",
                   "start_latency_p99": "p99"}[record["metric"]]  # fmt: skip
            entry[key] = record["value"] if key == "throughput" else record["value"] / 1000
        elif record["metric"] == "failed":
            failed = True

    run_baselines(systems, args.jobs, args.latency_jobs, args.rate, repeats=args.repeats,
                  redis_url=args.redis_url, pg_url=args.pg_url, tmp_dir=args.tmp_dir,
                  emit=keep)  # fmt: skip
    peers = {n: r for n, r in raw_by_name.items() if {"throughput", "p50", "p99"} <= set(r)}
    for backend, raw in measured.items():
        probe = LogLineJobs(Config(args.redis_url, "", Path("."), admin), backend=backend,
                            workers=args.workers, per_worker=args.concurrency,
                            wait_s=args.wait_s)  # fmt: skip
        for record in logline_records(backend, probe, raw, peers, args.jobs, args.rate):
            em.emit(**record)
    em.run_end(started)
    return 1 if failed else 0
