"""Ingest throughput of `Log.append_batch`, against the Ed25519 verification bound of this machine.

    python -m bench ingest [--spans 20000] [--backend sqlite|postgres|all] [--batch 500]

Spans are pre-signed (not timed) by a few identities registered in one tenant. Then, on a fresh
store per backend variant, in-process:

* `batch_sequenced`: `append_batch(batch, wait="sequenced")` from 2 threads, `--spans` spans;
* `single_sequenced`: `append_batch([span], wait="sequenced")` from 16 threads, fewer spans, with
  the acknowledgement latency of each call;
* `batch_checkpointed` and `single_checkpointed`: the same with `wait="checkpointed"`.

The bound: verifying the same spans' signatures with `cryptography` on 1 and on 2 threads (it
releases the GIL), best of 3, measured at the start and again just before each backend variant.
Every throughput of a variant is reported as a ratio to the 2-thread bound measured just before it
(the goal: ingest at >= 0.8 of it), every latency as a multiple of one signature verification.
Throughput lines also carry the CPU time per span of this process (all threads) and, on a local
PostgreSQL, of the server processes serving the benchmark database, beside one verification's:
on 2 cores, 0.8 of the 2-thread bound leaves at most 1.25 verifications' worth of CPU per span.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from bench.common import (
    Emitter,
    backends,
    percentile,
    pg_admin_url,
    pg_backend_cpu,
    pg_create_database,
    pg_database_url,
    pg_drop_database,
    pg_server_version,
)
from logline.identity.documents import creation_span
from logline.identity.ids import LogLineId
from logline.identity.keys import PrivateKey, PublicKey
from logline.ledger.log import Log, Wait
from logline.ledger.span import Span, new_span
from logline.store import open_store
from logline.store.interface import Store

TENANT = "bench"
INSTANCE = "bench.local"
IDENTITIES = 4
BATCH_THREADS = 2
SINGLE_THREADS = 16
PG_DATABASE = "logline_bench_ingest"
BOUND = "ed25519_verify_2threads"
ONE_VERIFY = "ed25519_verify_1sig"
PHASES = ("batch_sequenced", "single_sequenced", "batch_checkpointed", "single_checkpointed")


@dataclass
class Corpus:
    creations: list[Span]
    keys: dict[str, PrivateKey]
    phases: dict[str, list[Span]]


@dataclass
class PhaseResult:
    spans: int
    calls: int
    elapsed_s: float
    cpu_s: float
    latencies_s: list[float]


ServerCpu = Callable[[], dict[int, float]]


def make_corpus(spans: int, single: int, phases: Sequence[str]) -> Corpus:
    """Register-able identities and distinct signed spans for every phase (signing is not timed)."""
    keys: dict[str, PrivateKey] = {}
    creations = []
    for i in range(IDENTITIES):
        key = PrivateKey.generate()
        identity = LogLineId.of("service", f"bench-writer-{i}")
        keys[str(identity)] = key
        creations.append(creation_span(key, TENANT, identity, f"Bench writer {i}"))
    authors = list(keys)
    corpus = Corpus(creations, keys, {})
    for phase in phases:
        count = single if phase.startswith("single") else spans
        corpus.phases[phase] = [
            new_span(keys[authors[i % IDENTITIES]], tenant=TENANT, author=authors[i % IDENTITIES],
                     kind="bench.event", title=f"Bench event {i}", tags=["bench"],
                     payload={"i": i, "amount": i % 1000, "currency": "EUR"})
            for i in range(count)
        ]  # fmt: skip
    return corpus


# --- the bound ------------------------------------------------------------------------------------


def _threaded(parts: Sequence[Callable[[], None]]) -> float:
    """Run each callable on its own thread, started together; the wall-clock seconds they took."""
    barrier = threading.Barrier(len(parts) + 1)
    errors: list[BaseException] = []

    def run(work: Callable[[], None]) -> None:
        barrier.wait()
        try:
            work()
        except BaseException as exc:  # re-raised in the caller
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(work,)) for work in parts]
    for thread in threads:
        thread.start()
    barrier.wait()
    start = time.perf_counter()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - start
    if errors:
        raise errors[0]
    return elapsed


def verify_raw_rate(
    spans: Sequence[Span], keys: dict[str, PrivateKey], threads: int, repeats: int = 3
) -> float:
    """Signatures per second verified by `cryptography` alone (keys loaded once), best of runs."""
    loaded = {author: Ed25519PublicKey.from_public_bytes(key.public_key.raw)
              for author, key in keys.items()}  # fmt: skip
    items = [(loaded[s.author], s.signature, s.signing_message()) for s in spans]
    parts = [items[i::threads] for i in range(threads)]

    def work(part: list[tuple[Ed25519PublicKey, bytes, bytes]]) -> Callable[[], None]:
        def run() -> None:
            for key, signature, message in part:
                key.verify(signature, message)

        return run

    best = min(_threaded([work(p) for p in parts]) for _ in range(repeats))
    return len(items) / best


def verify_api_rate(spans: Sequence[Span], keys: dict[str, PrivateKey], threads: int) -> float:
    """The same through LogLine's API as the write path calls it (`PublicKey.parse`, `verify`)."""
    texts = {author: str(key.public_key) for author, key in keys.items()}
    parts = [list(spans[i::threads]) for i in range(threads)]

    def work(part: list[Span]) -> Callable[[], None]:
        def run() -> None:
            for span in part:
                span.verify(PublicKey.parse(texts[span.author]))

        return run

    return len(spans) / _threaded([work(p) for p in parts])


def measure_bound(
    em: Emitter,
    sample: Sequence[Span],
    keys: dict[str, PrivateKey],
    backend: str | None,
    variant: str | None,
) -> tuple[float, float]:
    """Measure and report the 1- and 2-thread verification rates; (1-thread, 2-thread)."""
    one = verify_raw_rate(sample, keys, 1)
    two = verify_raw_rate(sample, keys, 2)
    load = round(os.getloadavg()[0], 2)
    em.emit(backend=backend, variant=variant, metric="ed25519_verify_1thread", value=one,
            unit="signatures/s", ratio=one / two, ratio_to=BOUND, signatures=len(sample),
            loadavg_1min=load)  # fmt: skip
    em.emit(backend=backend, variant=variant, metric=BOUND, value=two, unit="signatures/s",
            ratio=two / one, ratio_to="ed25519_verify_1thread", signatures=len(sample),
            loadavg_1min=load)  # fmt: skip
    return one, two


# --- ingest ---------------------------------------------------------------------------------------


def run_phase(
    log: Log, spans: Sequence[Span], *, threads: int, batch: int, wait: Wait
) -> PhaseResult:
    chunks = [list(spans[i : i + batch]) for i in range(0, len(spans), batch)]
    lock = threading.Lock()
    position = iter(range(len(chunks)))
    latencies: list[float] = []

    def worker() -> None:
        mine: list[float] = []
        while True:
            with lock:
                index = next(position, None)
            if index is None:
                break
            start = time.perf_counter()
            log.append_batch(chunks[index], wait=wait)
            mine.append(time.perf_counter() - start)
        with lock:
            latencies.extend(mine)

    cpu = time.process_time()
    elapsed = _threaded([worker] * threads)
    return PhaseResult(len(spans), len(chunks), elapsed, time.process_time() - cpu, latencies)


def _sqlite_factory(directory: Path, synchronous: str) -> Callable[[], Store]:
    def make() -> Store:
        path = directory / f"ingest-{synchronous.lower()}.db"
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        return open_store(f"sqlite:///{path}?synchronous={synchronous}")

    return make


def run_variant(
    em: Emitter,
    backend: str,
    variant: str,
    make_store: Callable[[], Store],
    corpus: Corpus,
    *,
    batch: int,
    sample: Sequence[Span],
    server_cpu: ServerCpu | None = None,
) -> None:
    # The bound again, just before this variant: other work on the machine weighs on both alike.
    one, bound = measure_bound(em, sample, corpus.keys, backend, variant)
    one_verify_s = 1 / one
    store = make_store()
    log = Log(store, instance=INSTANCE, key=PrivateKey.generate())
    try:
        log.append_batch(corpus.creations, wait="sequenced")
        expected = len(corpus.creations)
        for phase, spans in corpus.phases.items():
            single = phase.startswith("single")
            threads = SINGLE_THREADS if single else BATCH_THREADS
            wait: Wait = "checkpointed" if phase.endswith("checkpointed") else "sequenced"
            server_before = server_cpu() if server_cpu else {}
            result = run_phase(log, spans, threads=threads, batch=1 if single else batch, wait=wait)
            server_after = server_cpu() if server_cpu else {}
            server_s = sum(t - server_before.get(pid, 0.0) for pid, t in server_after.items())
            expected += result.spans
            rate = result.spans / result.elapsed_s
            cpu = {
                "cpu_us_per_span": result.cpu_s / result.spans * 1e6,
                "server_cpu_us_per_span": server_s / result.spans * 1e6 if server_after else None,
                "verify_cpu_us_per_span": one_verify_s * 1e6,
            }
            common = {
                "spans": result.spans,
                "threads": threads,
                "batch": 1 if single else batch,
                "wait": wait,
            }
            em.emit(
                backend=backend,
                variant=variant,
                metric=f"{phase}_throughput",
                value=rate,
                unit="spans/s",
                ratio=rate / bound,
                ratio_to=BOUND,
                elapsed_s=result.elapsed_s,
                **cpu,
                **common,
            )
            for p in (50, 99):
                latency = percentile(result.latencies_s, p)
                em.emit(
                    backend=backend,
                    variant=variant,
                    metric=f"{phase}_ack_latency_p{p}",
                    value=latency * 1000,
                    unit="ms",
                    ratio=latency / one_verify_s,
                    ratio_to=ONE_VERIFY,
                    **common,
                )
        size = log.head(TENANT).size
        if size != expected:
            raise RuntimeError(
                f"{backend}/{variant}: the log has {size} entries, expected {expected}"
            )
    finally:
        log.close()
        store.close()


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench ingest",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--spans",
        type=int,
        default=20_000,
        help="spans per batch phase, and for the 2-thread verification bound",
    )
    parser.add_argument(
        "--single-spans",
        type=int,
        default=None,
        help="spans per single-append phase (default: spans / 4)",
    )
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--backend", default="all", help="sqlite, postgres or all")
    parser.add_argument(
        "--phases", default=",".join(PHASES), help=f"comma-separated subset of {', '.join(PHASES)}"
    )
    parser.add_argument(
        "--pg-url",
        default=None,
        help="PostgreSQL maintenance URL (default $LOGLINE_BENCH_PG or "
        "postgresql://postgres@127.0.0.1:5432/postgres)",
    )
    parser.add_argument("--tmp-dir", default=None, help="where the SQLite files go")
    parser.add_argument(
        "--sqlite-synchronous",
        default="FULL,NORMAL",
        help="the SQLite variants to run (PRAGMA synchronous values, comma-separated)",
    )
    args = parser.parse_args(argv)
    phases = [p for p in args.phases.split(",") if p]
    unknown = sorted(set(phases) - set(PHASES))
    if unknown:
        parser.error(f"unknown phase(s) {', '.join(unknown)}")
    synchronous_modes = [m for m in args.sqlite_synchronous.upper().split(",") if m]
    if not set(synchronous_modes) <= {"OFF", "NORMAL", "FULL", "EXTRA"}:
        parser.error("--sqlite-synchronous takes OFF, NORMAL, FULL or EXTRA")
    single = args.single_spans if args.single_spans is not None else max(1, args.spans // 4)
    chosen = backends(args.backend)
    admin = pg_admin_url(args.pg_url)

    em = Emitter("ingest", out)
    extra = {"postgres": pg_server_version(admin)} if "postgres" in chosen else {}
    em.run_info(spans=args.spans, single_spans=single, batch=args.batch, **extra)

    run_started = started = time.perf_counter()
    corpus = make_corpus(args.spans, single, phases)
    signed = sum(len(s) for s in corpus.phases.values()) + len(corpus.creations)
    sign_s = time.perf_counter() - started

    # The bound, on the spans of the largest phase.
    sample = max(corpus.phases.values(), key=len) if corpus.phases else corpus.creations
    _, bound = measure_bound(em, sample, corpus.keys, None, None)
    for threads in (1, 2):
        api = verify_api_rate(sample, corpus.keys, threads)
        em.emit(
            backend=None,
            variant=None,
            metric=f"span_verify_api_{threads}thread",
            value=api,
            unit="signatures/s",
            ratio=api / bound,
            ratio_to=BOUND,
            signatures=len(sample),
        )
    em.emit(
        backend=None,
        variant=None,
        metric="presign_spans",
        value=signed / sign_s,
        unit="spans/s",
        ratio=signed / sign_s / bound,
        ratio_to=BOUND,
        spans=signed,
        elapsed_s=sign_s,
        note="building and signing the corpus; not part of any timing",
    )

    for backend in chosen:
        if backend == "sqlite":
            with tempfile.TemporaryDirectory(prefix="logline-bench-", dir=args.tmp_dir) as tmp:
                for synchronous in synchronous_modes:
                    run_variant(
                        em,
                        "sqlite",
                        f"synchronous={synchronous}",
                        _sqlite_factory(Path(tmp), synchronous),
                        corpus,
                        batch=args.batch,
                        sample=sample,
                    )
        else:
            url = pg_database_url(admin, PG_DATABASE)

            def make_pg(url: str = url) -> Store:
                pg_create_database(admin, PG_DATABASE, fresh=True)
                return open_store(url)

            def server_cpu() -> dict[int, float]:
                return pg_backend_cpu(admin, PG_DATABASE)

            try:
                run_variant(
                    em,
                    "postgres",
                    "synchronous_commit=on",
                    make_pg,
                    corpus,
                    batch=args.batch,
                    sample=sample,
                    server_cpu=server_cpu,
                )
            finally:
                pg_drop_database(admin, PG_DATABASE)
    em.run_end(run_started)
    return 0
