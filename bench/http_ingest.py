"""Batch ingest over HTTP, against `Log.append_batch` in-process on the same backend, same run.

    python -m bench http-ingest [--spans 20000] [--batch 500] [--clients 4]
                                [--backend sqlite|postgres|all]

Spans are built and signed first (signing is the client's cost; not timed), by 4 identities, and
each batch is serialized to its request body before the clock starts. Then, per backend:

* `inprocess`: on a fresh store, `Log.append_batch(batch, wait="sequenced")` from `--clients`
  threads, exactly as `bench ingest` does;
* `http`: a fresh `logline up` process on the same backend; the identities are registered and made
  members, and the same spans go to `POST /v1/tenants/default/spans/batch?wait=sequenced` over
  `--clients` keep-alive connections (one request in flight per connection).

The ratio of the HTTP rate to the in-process rate is what the server costs on top of the log: the
request body's JSON parse and validation, auth, the response, the framework. The in-process rate
is itself reported against the Ed25519 verification bound, measured first (`bench ingest`).
Throughput lines carry the CPU time per span of the server process and of the client.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

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
from bench.ingest import BOUND, measure_bound, run_phase
from bench.server import (
    TENANT,
    Writers,
    enrol_writers,
    make_writers,
    running,
    sign_spans,
    start_logline,
    wire_batch,
)
from bench.wire import Request, drive, run
from logline.identity.keys import PrivateKey
from logline.ledger.log import Log
from logline.ledger.span import Span
from logline.store import open_store

IDENTITIES = 4
PG_DATABASE = "logline_bench_http_ingest"
INPROCESS = "inprocess_batch_throughput"


def inprocess(
    em: Emitter,
    backend: str,
    url: str,
    writers: Writers,
    spans: list[Span],
    *,
    batch: int,
    clients: int,
    bound: float,
) -> tuple[float, list[float]]:
    """`Log.append_batch` from `clients` threads on a fresh store; (spans/s, call latencies)."""
    store = open_store(url)
    log = Log(store, instance="bench.local", key=PrivateKey.generate())
    try:
        log.append_batch(writers.creations, wait="sequenced")
        result = run_phase(log, spans, threads=clients, batch=batch, wait="sequenced")
        size = log.head(TENANT).size
    finally:
        log.close()
        store.close()
    if size != len(spans) + len(writers.creations):
        raise RuntimeError(f"{backend}: the in-process log has {size} entries")
    rate = result.spans / result.elapsed_s
    em.emit(
        backend=backend,
        variant="inprocess",
        metric=INPROCESS,
        value=rate,
        unit="spans/s",
        ratio=rate / bound,
        ratio_to=BOUND,
        spans=result.spans,
        clients=clients,
        batch=batch,
        elapsed_s=result.elapsed_s,
        cpu_us_per_span=result.cpu_s / result.spans * 1e6,
    )
    return rate, result.latencies_s


def over_http(
    em: Emitter,
    backend: str,
    home: Path,
    database_url: str | None,
    writers: Writers,
    spans: list[Span],
    *,
    batch: int,
    clients: int,
    inprocess_rate: float,
    inprocess_latencies: list[float],
) -> None:
    bodies = [wire_batch(spans[i : i + batch]) for i in range(0, len(spans), batch)]
    target = f"/v1/tenants/{TENANT}/spans/batch?wait=sequenced"
    requests = [Request("POST", target, body, 201) for body in bodies]
    with running(start_logline(home, database_url=database_url)) as server:
        token = server.login()
        enrol_writers(server.url, token, writers)
        server_cpu = server.cpu_seconds()
        client_cpu = time.process_time()
        elapsed, latencies = run(drive(server.url, token, requests, clients=clients))
        client_s = time.process_time() - client_cpu
        server_s = server.cpu_seconds() - server_cpu
    rate = len(spans) / elapsed
    common: dict[str, Any] = {"spans": len(spans), "clients": clients, "batch": batch}
    em.emit(
        backend=backend,
        variant="http",
        metric="http_batch_throughput",
        value=rate,
        unit="spans/s",
        ratio=rate / inprocess_rate,
        ratio_to=INPROCESS,
        elapsed_s=elapsed,
        server_cpu_us_per_span=server_s / len(spans) * 1e6,
        client_cpu_us_per_span=client_s / len(spans) * 1e6,
        request_bytes=sum(map(len, bodies)) // len(bodies),
        **common,
    )
    for p in (50, 99):
        value, base = percentile(latencies, p), percentile(inprocess_latencies, p)
        em.emit(
            backend=backend,
            variant="http",
            metric=f"http_batch_latency_p{p}",
            value=value * 1000,
            unit="ms",
            ratio=value / base,
            ratio_to=f"inprocess_batch_latency_p{p}",
            inprocess_ms=base * 1000,
            **common,
        )


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench http-ingest",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--spans", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument(
        "--clients", type=int, default=4, help="connections, and in-process threads"
    )
    parser.add_argument("--backend", default="sqlite", help="sqlite, postgres or all")
    parser.add_argument(
        "--pg-url",
        default=None,
        help="PostgreSQL maintenance URL (default $LOGLINE_BENCH_PG or "
        "postgresql://postgres@127.0.0.1:5432/postgres)",
    )
    parser.add_argument("--tmp-dir", default=None, help="where the SQLite files and homes go")
    args = parser.parse_args(argv)
    if args.spans < 1 or args.batch < 1 or args.clients < 1:
        parser.error("--spans, --batch and --clients must be at least 1")
    chosen = backends(args.backend)
    admin = pg_admin_url(args.pg_url)

    em = Emitter("http-ingest", out)
    extra = {"postgres": pg_server_version(admin)} if "postgres" in chosen else {}
    em.run_info(spans=args.spans, batch=args.batch, clients=args.clients, **extra)
    started = time.perf_counter()
    writers = make_writers(IDENTITIES)
    spans = sign_spans(writers, args.spans)
    keys: dict[str, PrivateKey] = writers.keys
    for backend in chosen:
        _, bound = measure_bound(em, spans, keys, backend, None)
        with tempfile.TemporaryDirectory(prefix="logline-bench-", dir=args.tmp_dir) as tmp:
            if backend == "sqlite":
                inproc_url, server_url = f"sqlite:///{tmp}/inprocess.db", None
            else:
                pg_create_database(admin, PG_DATABASE, fresh=True)
                inproc_url = server_url = pg_database_url(admin, PG_DATABASE)
            try:
                rate, latencies = inprocess(
                    em,
                    backend,
                    inproc_url,
                    writers,
                    spans,
                    batch=args.batch,
                    clients=args.clients,
                    bound=bound,
                )
                if backend == "postgres":
                    pg_create_database(admin, PG_DATABASE, fresh=True)
                over_http(
                    em,
                    backend,
                    Path(tmp) / "home",
                    server_url,
                    writers,
                    spans,
                    batch=args.batch,
                    clients=args.clients,
                    inprocess_rate=rate,
                    inprocess_latencies=latencies,
                )
            finally:
                if backend == "postgres":
                    pg_drop_database(admin, PG_DATABASE)
    em.run_end(started)
    return 0
