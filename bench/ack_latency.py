"""Acknowledgement latency of single-span appends over HTTP, against a bare FastAPI endpoint.

    python -m bench ack-latency [--requests 2000] [--checkpointed 500] [--clients 1,8]
                                [--backend sqlite|postgres|all]

Spans are signed first (not timed), by 4 identities registered and made members of `default` on a
fresh `logline up` process; each is serialized to its request body before the clock starts. For
each `--clients` level, over that many keep-alive connections (one request in flight on each):

* `bare`: `--requests` POSTs of the same bodies to `bench.bare`'s no-op endpoint (FastAPI on
  uvicorn, same settings, running beside the server in its own process) — the baseline;
* `sequenced`: `--requests` `POST /v1/tenants/default/spans?wait=sequenced`;
* `checkpointed`: `--checkpointed` more with `?wait=checkpointed` (the answer waits for a signed
  checkpoint covering the span and carries its inclusion proof).

Each phase starts with untimed warm-up requests. Reported: p50 and p99 in ms (ratio: to the bare
endpoint's same percentile at the same concurrency) and the request rate (ratio: to the bare
rate). The goals (docs/PERFORMANCE.md): sequenced p99 < 10 ms, checkpointed p99 < 1 s; the
lines carry `goal_ms` and `goal_met`.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

from bench.common import (
    Emitter,
    backends,
    percentile,
    pg_admin_url,
    pg_create_database,
    pg_database_url,
    pg_drop_database,
    pg_server_version,
)
from bench.server import (
    TENANT,
    ServerProcess,
    enrol_writers,
    make_writers,
    running,
    sign_spans,
    start_bare,
    start_logline,
    wire,
)
from bench.wire import Request, drive, run

IDENTITIES = 4
WARMUP = 50
PG_DATABASE = "logline_bench_ack_latency"
GOALS_MS = {"sequenced": 10.0, "checkpointed": 1000.0}


def _phase(
    server: ServerProcess,
    token: str | None,
    target: str,
    bodies: list[bytes],
    clients: int,
    expect: int,
    warmup_count: int,
) -> tuple[float, list[float], float]:
    """(requests/s, latencies, server CPU seconds per request) of one timed phase."""
    warmup, timed = bodies[:warmup_count], bodies[warmup_count:]
    run(
        drive(
            server.url, token, [Request("POST", target, b, expect) for b in warmup], clients=clients
        )
    )
    cpu = server.cpu_seconds()
    requests = [Request("POST", target, body, expect) for body in timed]
    elapsed, latencies = run(drive(server.url, token, requests, clients=clients))
    return len(timed) / elapsed, latencies, (server.cpu_seconds() - cpu) / len(timed)


def measure(
    em: Emitter,
    backend: str,
    home: Path,
    database_url: str | None,
    *,
    requests: int,
    checkpointed: int,
    levels: list[int],
    warmup: int,
) -> None:
    writers = make_writers(IDENTITIES)
    counts = {"sequenced": warmup + requests, "checkpointed": warmup + checkpointed}
    bodies: dict[tuple[int, str], list[bytes]] = {}
    start = 0
    for clients in levels:
        for wait, count in counts.items():
            bodies[clients, wait] = wire(sign_spans(writers, count, start=start))
            start += count
    with (
        running(start_bare()) as bare,
        running(start_logline(home, database_url=database_url)) as server,
    ):
        token = server.login()
        enrol_writers(server.url, token, writers)
        for clients in levels:
            variant = f"clients={clients}"
            base_rate, base, base_cpu = _phase(
                bare,
                None,
                f"/v1/tenants/{TENANT}/spans",
                bodies[clients, "sequenced"],
                clients,
                201,
                warmup,
            )
            em.emit(
                backend=backend,
                variant=variant,
                metric="bare_requests",
                value=base_rate,
                unit="requests/s",
                ratio=1.0,
                ratio_to="baseline",
                clients=clients,
                requests=len(base),
                server_cpu_us_per_request=base_cpu * 1e6,
            )
            for p in (50, 99):
                em.emit(
                    backend=backend,
                    variant=variant,
                    metric=f"bare_ack_latency_p{p}",
                    value=percentile(base, p) * 1000,
                    unit="ms",
                    ratio=1.0,
                    ratio_to="baseline",
                    clients=clients,
                )
            for wait in ("sequenced", "checkpointed"):
                target = f"/v1/tenants/{TENANT}/spans?wait={wait}"
                rate, latencies, cpu = _phase(
                    server, token, target, bodies[clients, wait], clients, 201, warmup
                )
                em.emit(
                    backend=backend,
                    variant=variant,
                    metric=f"{wait}_requests",
                    value=rate,
                    unit="requests/s",
                    ratio=rate / base_rate,
                    ratio_to="bare_requests",
                    clients=clients,
                    requests=len(latencies),
                    server_cpu_us_per_request=cpu * 1e6,
                )
                for p in (50, 99):
                    value, reference = percentile(latencies, p), percentile(base, p)
                    goal = GOALS_MS[wait] if p == 99 else None
                    em.emit(
                        backend=backend,
                        variant=variant,
                        metric=f"{wait}_ack_latency_p{p}",
                        value=value * 1000,
                        unit="ms",
                        ratio=value / reference,
                        ratio_to=f"bare_ack_latency_p{p}",
                        clients=clients,
                        bare_ms=reference * 1000,
                        goal_ms=goal,
                        goal_met=None if goal is None else value * 1000 < goal,
                    )


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench ack-latency",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--requests", type=int, default=2000, help="timed sequenced appends")
    parser.add_argument("--checkpointed", type=int, default=500, help="timed checkpointed appends")
    parser.add_argument("--clients", default="1,8", help="comma-separated concurrency levels")
    parser.add_argument("--warmup", type=int, default=WARMUP, help="untimed requests per phase")
    parser.add_argument("--backend", default="sqlite", help="sqlite, postgres or all")
    parser.add_argument(
        "--pg-url",
        default=None,
        help="PostgreSQL maintenance URL (default $LOGLINE_BENCH_PG or "
        "postgresql://postgres@127.0.0.1:5432/postgres)",
    )
    parser.add_argument("--tmp-dir", default=None, help="where the server's home goes")
    args = parser.parse_args(argv)
    levels = [int(c) for c in args.clients.split(",") if c]
    if args.requests < 1 or args.checkpointed < 1 or not levels or min(levels) < 1:
        parser.error("--requests, --checkpointed and --clients must be at least 1")
    chosen = backends(args.backend)
    admin = pg_admin_url(args.pg_url)

    em = Emitter("ack-latency", out)
    extra = {"postgres": pg_server_version(admin)} if "postgres" in chosen else {}
    em.run_info(requests=args.requests, checkpointed=args.checkpointed, clients=levels, **extra)
    started = time.perf_counter()
    for backend in chosen:
        with tempfile.TemporaryDirectory(prefix="logline-bench-", dir=args.tmp_dir) as tmp:
            url = None
            if backend == "postgres":
                pg_create_database(admin, PG_DATABASE, fresh=True)
                url = pg_database_url(admin, PG_DATABASE)
            try:
                measure(
                    em,
                    backend,
                    Path(tmp) / "home",
                    url,
                    requests=args.requests,
                    checkpointed=args.checkpointed,
                    levels=levels,
                    warmup=args.warmup,
                )
            finally:
                if backend == "postgres":
                    pg_drop_database(admin, PG_DATABASE)
    em.run_end(started)
    return 0
