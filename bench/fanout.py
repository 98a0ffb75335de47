"""Live-stream fan-out: spans appended over HTTP, delivered to many subscribers, against a bare app.

    python -m bench fanout [--subscribers 1000] [--transports ws,sse] [--rates 10,50,200]
                           [--seconds 8] [--processes 2] [--backend sqlite|postgres]

Subscribers connect from `--processes` separate processes (`bench.subscribers`: raw clients that
only look for each span's marker, so that the load generator takes as little CPU as possible from
the server on a 2-core machine) and subscribe to tenant `default` from now on. Then a writer
appends single spans (`POST /spans?wait=sequenced`, signed beforehand, a `bench_i` marker in each
payload) over 8 connections, open loop at each `--rates` value for `--seconds`, and waits until
every connected subscriber has every span of the phase (at most 30 s) before the next phase.

Per transport and rate, reported:

* `delivery_latency_p50/p99/max`: from the append's acknowledgement (the writer read the 201) to
  a subscriber reading the span, over every (subscriber, span) pair; negative when a subscriber
  had the span before the writer had its answer. `end_to_end_latency_p50/p99`: from the append's
  request being sent;
* `delivered_spans_per_s`: spans delivered per subscriber, divided by the time from the phase's
  first request to its last delivery (it equals the offered rate while fan-out keeps up);
* `subscribers_dropped` (the server dropped them, e.g. as slow consumers, or they lost the
  connection; cumulative), `delivered_fraction` (pairs received / pairs expected);
* `append_ack_p99` under the fan-out load.

The baseline: `bench.bare` (FastAPI on uvicorn, one queue and sender task per subscriber, as
LogLine has), to which the writer posts the same span bodies (`POST /publish`), at the same rates
with the same subscriber processes. LogLine's lines carry the ratio to the bare app's figure.
"""

from __future__ import annotations

import argparse
import multiprocessing
import resource
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from multiprocessing.connection import Connection as Pipe
from pathlib import Path
from typing import Any, TextIO

from bench.common import (
    Emitter,
    backends,
    pg_admin_url,
    pg_create_database,
    pg_database_url,
    pg_drop_database,
    pg_server_version,
)
from bench.server import (
    TENANT,
    ServerProcess,
    Writers,
    enrol_writers,
    make_writers,
    running,
    start_bare,
    start_logline,
    wire,
)
from bench.subscribers import serve
from bench.wire import Request, drive, run
from logline.ledger.span import new_span

WRITER_CONNECTIONS = 8
DRAIN_S = 30.0
READY_S = 180.0
PG_DATABASE = "logline_bench_fanout"


def raise_fd_limit(needed: int) -> int:
    """Raise this process's soft limit on open files (children inherit it); the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        soft = needed if hard == resource.RLIM_INFINITY else min(hard, max(needed, soft))
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    return soft


def percentile_of(counts: Counter[float], p: float) -> float:
    """Nearest-rank percentile of a histogram {value: count}."""
    total = sum(counts.values())
    rank = max(1, -(-p * total // 100))
    seen = 0
    for value in sorted(counts):
        seen += counts[value]
        if seen >= rank:
            return value
    raise ValueError("empty histogram")


class Crowd:
    """The subscriber processes of one variant."""

    def __init__(
        self, url: str, path: str, token: str | None, transport: str, count: int, processes: int
    ) -> None:
        context = multiprocessing.get_context("spawn")
        self.pipes: list[Pipe] = []
        self.procs = []
        for n in range(processes):
            share = count // processes + (1 if n < count % processes else 0)
            mine, theirs = context.Pipe()
            proc = context.Process(
                target=serve, args=(theirs, url, path, token, transport, share), daemon=True
            )
            proc.start()
            self.pipes.append(mine)
            self.procs.append(proc)
        self.connected = 0
        for pipe in self.pipes:
            if not pipe.poll(READY_S):
                raise RuntimeError("subscribers did not get ready in time")
            _, live = pipe.recv()
            self.connected += live

    def progress(self) -> tuple[int, int]:
        """(fewest spans any connected subscriber has, or -1; subscribers dropped)."""
        least, dropped = -1, 0
        for pipe in self.pipes:
            pipe.send(("progress",))
        for pipe in self.pipes:
            mine, gone = pipe.recv()
            dropped += gone
            if mine >= 0:
                least = mine if least < 0 else min(least, mine)
        return least, dropped

    def summary(self, lo: int, sent: list[float], acked: list[float]) -> dict[str, Any]:
        merged: dict[str, Any] = {
            "delivery": Counter(),
            "end_to_end": Counter(),
            "received": 0,
            "last": 0.0,
            "dropped": 0,
            "reasons": Counter(),
            "cpu_s": 0.0,
        }
        for pipe in self.pipes:
            pipe.send(("summary", lo, sent, acked))
        for pipe in self.pipes:
            part = pipe.recv()
            merged["delivery"].update(part["delivery"])
            merged["end_to_end"].update(part["end_to_end"])
            merged["reasons"].update(part["reasons"])
            for key in ("received", "dropped", "cpu_s"):
                merged[key] += part[key]
            merged["last"] = max(merged["last"], part["last"])
        return merged

    def stop(self) -> None:
        for pipe in self.pipes:
            try:
                pipe.send(("stop",))
                if pipe.poll(30):
                    pipe.recv()
            except (OSError, EOFError):
                pass
        for proc in self.procs:
            proc.join(10)
            if proc.is_alive():
                proc.kill()


def phase_bodies(writers: Writers, rates: list[int], seconds: float) -> list[list[bytes]]:
    """Per phase, the signed spans' request bodies; `bench_i` numbers them across phases."""
    author = writers.authors[0]
    key = writers.keys[author]
    out, i = [], 0
    for rate in rates:
        spans = []
        for _ in range(max(1, round(rate * seconds))):
            spans.append(
                new_span(
                    key,
                    tenant=TENANT,
                    author=author,
                    kind="bench.fanout",
                    title=f"Fan-out {i}",
                    payload={"bench_i": i},
                )
            )
            i += 1
        out.append(wire(spans))
    return out


def run_variant(
    em: Emitter,
    backend: str,
    server: ServerProcess,
    token: str | None,
    *,
    bare: bool,
    transport: str,
    subscribers: int,
    processes: int,
    rates: list[int],
    bodies: list[list[bytes]],
    baseline: dict[tuple[int, str], float],
) -> None:
    name = "bare" if bare else "logline"
    if transport == "ws":
        path = f"/v1/stream/ws?tenant={TENANT}"
    else:
        path = f"/v1/stream?tenant={TENANT}"
    target = "/publish" if bare else f"/v1/tenants/{TENANT}/spans?wait=sequenced"
    started = time.perf_counter()
    crowd = Crowd(server.url, path, token, transport, subscribers, processes)
    try:
        setup_s = time.perf_counter() - started
        expected, lo = 0, 0
        for rate, phase in zip(rates, bodies, strict=True):
            marks: list[tuple[float, float]] = []
            cpu = server.cpu_seconds()
            requests = [Request("POST", target, body, 201) for body in phase]
            _, latencies = run(
                drive(
                    server.url, token, requests, clients=WRITER_CONNECTIONS, rate=rate, marks=marks
                )
            )
            expected += len(phase)
            deadline = time.monotonic() + DRAIN_S
            while time.monotonic() < deadline:
                least, _ = crowd.progress()
                if least < 0 or least >= expected:
                    break
                time.sleep(0.1)
            server_s = server.cpu_seconds() - cpu
            sent = [m[0] for m in marks]
            result = crowd.summary(lo, sent, [m[1] for m in marks])
            lo += len(phase)
            _emit_phase(
                em,
                backend,
                name,
                transport,
                rate,
                len(phase),
                crowd.connected,
                result,
                sent[0],
                latencies,
                server_s,
                setup_s,
                baseline,
            )
    finally:
        crowd.stop()


def _emit_phase(
    em: Emitter,
    backend: str,
    name: str,
    transport: str,
    rate: int,
    spans: int,
    connected: int,
    result: dict[str, Any],
    first_sent: float,
    acks: list[float],
    server_s: float,
    setup_s: float,
    baseline: dict[tuple[int, str], float],
) -> None:
    from bench.common import percentile

    variant = f"{transport} {rate}/s"
    prefix = "bare_" if name == "bare" else ""
    received = result["received"]
    figures: dict[str, tuple[float, str]] = {}
    if received:
        for p in (50, 99):
            figures[f"delivery_latency_p{p}"] = (percentile_of(result["delivery"], p), "ms")
            figures[f"end_to_end_latency_p{p}"] = (percentile_of(result["end_to_end"], p), "ms")
        figures["delivery_latency_max"] = (max(result["delivery"]), "ms")
        per_sub = received / max(1, connected)
        figures["delivered_spans_per_s"] = (per_sub / (result["last"] - first_sent), "spans/s")
    figures["delivered_fraction"] = (received / max(1, spans * connected), "fraction")
    figures["subscribers_dropped"] = (result["dropped"], "subscribers")
    figures["append_ack_p99"] = (percentile(acks, 99) * 1000, "ms")
    phase = {
        "server_cpu_s": server_s,
        "subscriber_cpu_s": result["cpu_s"],
        "connect_s": setup_s,
        "drop_reasons": dict(result["reasons"]),
    }
    for metric, (value, unit) in figures.items():
        extra: dict[str, Any] = {"subscribers": connected, "offered_per_s": rate, "spans": spans}
        if metric == "delivered_spans_per_s":
            extra.update(phase)
        if metric == "subscribers_dropped":
            ratio, ratio_to = value / max(1, connected), "subscribers_connected"
        elif name == "bare":
            baseline[rate, f"{transport} {metric}"] = value
            ratio, ratio_to = 1.0, "baseline"
        else:
            base = baseline.get((rate, f"{transport} {metric}"))
            ratio, ratio_to = (value / base, f"bare_{metric}") if base else (0.0, "bare (none)")
        em.emit(
            backend=backend,
            variant=variant,
            metric=prefix + metric,
            value=value,
            unit=unit,
            ratio=ratio,
            ratio_to=ratio_to,
            **extra,
        )


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench fanout",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--subscribers", type=int, default=1000)
    parser.add_argument("--transports", default="ws,sse", help="ws, sse or ws,sse")
    parser.add_argument("--rates", default="10,50,200", help="spans/s offered, one phase each")
    parser.add_argument("--seconds", type=float, default=8.0, help="length of each phase")
    parser.add_argument("--processes", type=int, default=2, help="subscriber processes")
    parser.add_argument("--backend", default="sqlite", help="sqlite, postgres or all")
    parser.add_argument(
        "--pg-url",
        default=None,
        help="PostgreSQL maintenance URL (default $LOGLINE_BENCH_PG or "
        "postgresql://postgres@127.0.0.1:5432/postgres)",
    )
    parser.add_argument("--tmp-dir", default=None, help="where the server's home goes")
    args = parser.parse_args(argv)
    transports = [t for t in args.transports.split(",") if t]
    rates = [int(r) for r in args.rates.split(",") if r]
    if not transports or set(transports) - {"ws", "sse"}:
        parser.error("--transports takes ws, sse or both")
    if not rates or min(rates) < 1 or args.subscribers < 1 or args.processes < 1:
        parser.error("--rates, --subscribers and --processes must be at least 1")
    chosen = backends(args.backend)
    admin = pg_admin_url(args.pg_url)
    fds = raise_fd_limit(2 * args.subscribers + 1024)

    em = Emitter("fanout", out)
    extra = {"postgres": pg_server_version(admin)} if "postgres" in chosen else {}
    em.run_info(
        subscribers=args.subscribers,
        transports=transports,
        rates=rates,
        seconds=args.seconds,
        processes=args.processes,
        nofile=fds,
        **extra,
    )
    started = time.perf_counter()
    for backend in chosen:
        with tempfile.TemporaryDirectory(prefix="logline-bench-", dir=args.tmp_dir) as tmp:
            url = None
            if backend == "postgres":
                pg_create_database(admin, PG_DATABASE, fresh=True)
                url = pg_database_url(admin, PG_DATABASE)
            try:
                writers = make_writers(1)
                with (
                    running(start_bare()) as bare,
                    running(start_logline(Path(tmp) / "home", database_url=url)) as server,
                ):
                    token = server.login()
                    enrol_writers(server.url, token, writers)
                    for transport in transports:
                        bodies = phase_bodies(writers, rates, args.seconds)
                        baseline: dict[tuple[int, str], float] = {}
                        for target, auth, is_bare in ((bare, None, True), (server, token, False)):
                            run_variant(
                                em,
                                backend,
                                target,
                                auth,
                                bare=is_bare,
                                transport=transport,
                                subscribers=args.subscribers,
                                processes=args.processes,
                                rates=rates,
                                bodies=bodies,
                                baseline=baseline,
                            )
            finally:
                if backend == "postgres":
                    pg_drop_database(admin, PG_DATABASE)
    em.run_end(started)
    return 0
