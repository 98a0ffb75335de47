"""Span queries over HTTP on a large log, from many clients, against the same queries in-process.

    python -m bench query [--spans 1000000] [--clients 50] [--requests 10000]
                          [--backend sqlite|postgres|all] [--rebuild] [--drop-cache]

The data: a `logline up` home whose tenant `default` holds `--spans` signed spans by 8 authors,
30 days of them: kinds from 6 families x 5 actions (`payment.created`, `deploy.failed`, ...),
1 to 3 tags each from 200 (Zipf-distributed, so some are common and most are rare), titles naming
one of 1,000 customers (`Payment failed for kalomi`), a small payload. Signing runs in worker
processes and the spans go in through `Log.append_batch` (batches of 5,000, every signature
verified, `check_skew=False` for the old timestamps); the admin login comes from the same
bootstrap `logline up` runs. The home is cached in `bench-data/query-<backend>-<spans>/` (and,
on PostgreSQL, the database `logline_bench_query_<spans>`), so a re-run skips the load;
`--rebuild` forces it, `--drop-cache` removes it afterwards. No ANALYZE is run on SQLite (LogLine
does not run one); PostgreSQL gets a VACUUM ANALYZE, which autovacuum would do after such a load.

The queries (`GET /v1/tenants/default/spans`, newest first, `limit=50`), interleaved:
`recent` (no filter), `cursor` (a continuation page at a random depth), `kind` (a glob:
`payment.*`, `*.failed`, `deploy.completed`), `author`, `tag`, `text` (`q=` a customer's name)
and `time_range` (`since`/`until`, a 1-hour window, oldest first).

Timed, after untimed warm-up requests, from `--clients` keep-alive connections:

* `saturated`: closed loop, every client sends its next query as soon as the last is answered:
  the server's throughput, and the latency of a server with 50 callers always waiting;
* `paced`: open loop at `--paced-fraction` (0.5) of the saturated rate, latency counted from
  when each request was due.

Reported per query type and overall: p50 and p99 in ms, against the same queries run in this
process by `Store.query` on one thread (the ratio; `inprocess_ms` on each line). The goal: p99
< 25 ms at 50 clients (`goal_ms`, `goal_met` on the overall lines).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import random
import shutil
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import urlencode

from bench.common import (
    DATA_DIR,
    Emitter,
    backends,
    percentile,
    pg_admin_url,
    pg_create_database,
    pg_database_url,
    pg_drop_database,
    pg_server_version,
)
from bench.server import TENANT, running, start_logline
from bench.wire import Request, drive, run
from logline.identity.documents import creation_span
from logline.identity.ids import LogLineId
from logline.identity.keys import PrivateKey
from logline.instance import Instance
from logline.ledger.span import Span, new_span
from logline.ledger.timefmt import format_ts
from logline.server.run import bootstrap
from logline.server.services import Services
from logline.server.settings import load_settings
from logline.store import open_store
from logline.store.interface import Query
from logline.store.sql import encode_cursor

IDENTITIES = 8
LOAD_BATCH = 5000
POOL_FROM = 20_000  # sign in worker processes from this many spans on
DAYS = 30
LIMIT = 50
WARMUP = 200
INPROCESS_SAMPLES = 200
GOAL_MS = 25.0
FAMILIES = {"payment": 30, "order": 25, "invoice": 15, "user": 15, "deploy": 10, "alert": 5}
ACTIONS = {"created": 40, "updated": 30, "completed": 20, "failed": 7, "cancelled": 3}
KIND_GLOBS = ("payment.*", "*.failed", "deploy.completed", "order.*", "alert.cancelled")
SYLLABLES = ("ka", "lo", "mi", "ra", "to", "ve", "ni", "su", "pe", "do")
CUSTOMERS = [a + b + c for a in SYLLABLES for b in SYLLABLES for c in SYLLABLES]  # 1,000 words
TAGS = [f"{group}-{i}" for group in ("team", "region", "project", "env") for i in range(50)]
TAG_WEIGHTS = [1 / (rank + 1) for rank in range(len(TAGS))]  # Zipf: a few common, most rare
TYPES = ("recent", "cursor", "kind", "author", "tag", "text", "time_range")


@dataclass
class Dataset:
    spans: int
    seed: int
    authors: list[str]
    first_ts: str
    last_ts: str
    load_s: float


# --- building the log -----------------------------------------------------------------------------


def _span(
    keys: list[PrivateKey], authors: list[str], seed: int, i: int, total: int, start: datetime
) -> Span:
    rng = random.Random(seed * 1_000_003 + i)
    family = rng.choices(list(FAMILIES), weights=list(FAMILIES.values()))[0]
    action = rng.choices(list(ACTIONS), weights=list(ACTIONS.values()))[0]
    customer = rng.choice(CUSTOMERS)
    tags = set(rng.choices(TAGS, weights=TAG_WEIGHTS, k=rng.randint(1, 3)))
    who = i % len(keys)
    ts = start + timedelta(seconds=DAYS * 86400 * i / total)
    return new_span(
        keys[who],
        tenant=TENANT,
        author=authors[who],
        kind=f"{family}.{action}",
        title=f"{family.capitalize()} {action} for {customer}",
        tags=sorted(tags),
        ts=format_ts(ts),
        payload={"customer": customer, "amount": rng.randint(1, 10**6), "n": i},
    )


def _sign_range(job: tuple[list[bytes], list[str], int, int, int, int, str]) -> list[Span]:
    seeds, authors, seed, begin, end, total, start = job
    keys = [PrivateKey.from_seed(s) for s in seeds]
    moment = datetime.fromisoformat(start)
    return [_span(keys, authors, seed, i, total, moment) for i in range(begin, end)]


def _signed(
    seeds: list[bytes], authors: list[str], seed: int, total: int, start: datetime
) -> Iterator[list[Span]]:
    jobs = [
        (seeds, authors, seed, b, min(total, b + LOAD_BATCH), total, start.isoformat())
        for b in range(0, total, LOAD_BATCH)
    ]
    if total < POOL_FROM:
        yield from map(_sign_range, jobs)
        return
    with multiprocessing.get_context("spawn").Pool(os.cpu_count() or 2) as pool:
        yield from pool.imap(_sign_range, jobs)


def build(home: Path, database_url: str | None, spans: int, seed: int) -> Dataset:
    """A `logline up` home with its admin login and `spans` spans on tenant `default`."""
    keys = [PrivateKey.generate() for _ in range(IDENTITIES)]
    ids = [LogLineId.of("service", f"bench-author-{i}") for i in range(IDENTITIES)]
    authors = [str(i) for i in ids]
    end = datetime.now(UTC).replace(microsecond=0)
    start = end - timedelta(days=DAYS)
    started = time.perf_counter()
    instance = Instance.init(home, name="bench.local", tenant=TENANT, database_url=database_url)
    services = Services(instance, load_settings(instance.config))
    try:
        bootstrap(services)
        log = services.log
        log.append_batch(
            [
                creation_span(k, TENANT, i, f"Author {n}")
                for n, (k, i) in enumerate(zip(keys, ids, strict=True))
            ],
            wait="sequenced",
        )
        for batch in _signed([k.seed() for k in keys], authors, seed, spans, start):
            log.append_batch(batch, wait="sequenced", check_skew=False)
        log.checkpoint(TENANT)
    finally:
        services.close()
    _settle(database_url, home)
    last = start + timedelta(seconds=DAYS * 86400 * (spans - 1) / spans)
    return Dataset(
        spans, seed, authors, format_ts(start), format_ts(last), time.perf_counter() - started
    )


def _settle(database_url: str | None, home: Path) -> None:
    if database_url is None:
        import sqlite3

        lite = sqlite3.connect(home / "logline.db")
        try:
            lite.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            lite.close()
    else:
        import psycopg

        with psycopg.connect(database_url, autocommit=True) as conn:
            conn.execute("VACUUM (ANALYZE)")


def prepare(
    backend: str, spans: int, *, data_dir: Path, admin_url: str, seed: int, rebuild: bool
) -> tuple[Path, str | None, Dataset, bool]:
    """The cached home (built unless cached): (home, database URL, dataset, cached)."""
    home = data_dir / f"query-{backend}-{spans}"
    meta = home / "bench-dataset.json"
    database = f"logline_bench_query_{spans}"
    url = pg_database_url(admin_url, database) if backend == "postgres" else None
    if not rebuild and meta.exists():
        dataset = Dataset(**json.loads(meta.read_text()))
        if dataset.seed == seed and _size(home, url, dataset) == spans:
            return home, url, dataset, True
    shutil.rmtree(home, ignore_errors=True)
    data_dir.mkdir(parents=True, exist_ok=True)
    if backend == "postgres":
        pg_create_database(admin_url, database, fresh=True)
    dataset = build(home, url, spans, seed)
    meta.write_text(json.dumps(asdict(dataset)))
    return home, url, dataset, False


def _size(home: Path, url: str | None, dataset: Dataset) -> int:
    """How many benchmark spans the cached log holds (the last one's `n` + 1), or -1."""
    try:
        store = open_store(url or f"sqlite:///{home / 'logline.db'}", migrate=False)
    except Exception:
        return -1
    try:
        last_author = dataset.authors[(dataset.spans - 1) % IDENTITIES]
        page = store.query(Query(TENANT, author=last_author, descending=True, limit=1))
        if not page.items:
            return -1
        return int(page.items[0].span.payload["n"]) + 1
    except Exception:
        return -1
    finally:
        store.close()


# --- the queries ----------------------------------------------------------------------------------


def queries(dataset: Dataset, size: int, count: int, seed: int) -> list[tuple[str, dict[str, Any]]]:
    """`count` (type, query parameters) pairs, the types interleaved."""
    rng = random.Random(seed + 1)
    first = datetime.fromisoformat(dataset.first_ts.replace("Z", "+00:00"))
    out: list[tuple[str, dict[str, Any]]] = []
    for i in range(count):
        kind = TYPES[i % len(TYPES)]
        params: dict[str, Any] = {"order": "desc", "limit": LIMIT}
        if kind == "cursor":
            params["cursor"] = encode_cursor(rng.randint(size // 10, size), True)
        elif kind == "kind":
            params["kind"] = rng.choice(KIND_GLOBS)
        elif kind == "author":
            params["author"] = rng.choice(dataset.authors)
        elif kind == "tag":
            params["tag"] = rng.choices(TAGS, weights=TAG_WEIGHTS)[0]
        elif kind == "text":
            params["q"] = rng.choice(CUSTOMERS)
        elif kind == "time_range":
            since = first + timedelta(seconds=rng.uniform(0, DAYS * 86400 - 3600))
            params.update(
                order="asc", since=format_ts(since), until=format_ts(since + timedelta(hours=1))
            )
        out.append((kind, params))
    return out


def _store_query(params: dict[str, Any]) -> Query:
    from logline.store.sql import decode_cursor

    descending = params["order"] == "desc"
    after = before = None
    if "cursor" in params:
        seq, _ = decode_cursor(params["cursor"])
        after, before = (None, seq) if descending else (seq, None)
    return Query(
        TENANT,
        kind=params.get("kind"),
        author=params.get("author"),
        tags=(params["tag"],) if "tag" in params else (),
        text=params.get("q"),
        since=params.get("since"),
        until=params.get("until"),
        after_seq=after,
        before_seq=before,
        descending=descending,
        limit=params["limit"],
    )


def inprocess(
    url: str, mix: list[tuple[str, dict[str, Any]]], warmup: list[tuple[str, dict[str, Any]]]
) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """Each query type's latencies through `Store.query` on one thread, after a warm-up pass:
    the query alone, and the query with the page rendered to JSON as the route renders it."""
    store = open_store(url, migrate=False)
    try:
        for _, params in warmup:
            store.query(_store_query(params))
        times: dict[str, list[float]] = {}
        rendered: dict[str, list[float]] = {}
        for kind, params in mix:
            query = _store_query(params)
            start = time.perf_counter()
            page = store.query(query)
            middle = time.perf_counter()
            json.dumps(
                {"items": [item.to_json() for item in page.items], "next_cursor": page.next_cursor}
            )
            end = time.perf_counter()
            times.setdefault(kind, []).append(middle - start)
            rendered.setdefault(kind, []).append(end - start)
    finally:
        store.close()
    return times, rendered


def report(
    em: Emitter,
    backend: str,
    variant: str,
    mix: list[tuple[str, dict[str, Any]]],
    latencies: list[float],
    base: dict[str, list[float]],
    rendered: dict[str, list[float]],
    **extra: Any,
) -> None:
    by_type: dict[str, list[float]] = {}
    for (kind, _), latency in zip(mix, latencies, strict=True):
        by_type.setdefault(kind, []).append(latency)
    everything = [t for times in base.values() for t in times]
    all_rendered = [t for times in rendered.values() for t in times]
    for kind in (*TYPES, "all"):
        mine = latencies if kind == "all" else by_type[kind]
        reference = everything if kind == "all" else base[kind]
        with_render = all_rendered if kind == "all" else rendered[kind]
        for p in (50, 99):
            value, ref = percentile(mine, p), percentile(reference, p)
            extra["inprocess_with_render_ms"] = percentile(with_render, p) * 1000
            goal = GOAL_MS if kind == "all" and p == 99 else None
            em.emit(
                backend=backend,
                variant=variant,
                metric=f"query_{kind}_p{p}",
                value=value * 1000,
                unit="ms",
                ratio=value / ref,
                ratio_to=f"inprocess_query_{kind}_p{p}",
                inprocess_ms=ref * 1000,
                requests=len(mine),
                goal_ms=goal,
                goal_met=None if goal is None else value * 1000 < goal,
                **extra,
            )


def measure(
    em: Emitter,
    backend: str,
    home: Path,
    url: str | None,
    dataset: Dataset,
    *,
    clients: int,
    requests: int,
    warmup: int,
    fraction: float,
    seed: int,
) -> None:
    store_url = url or f"sqlite:///{home / 'logline.db'}"
    store = open_store(store_url, migrate=False)
    try:
        head = store.log_head(TENANT)
        size = 0 if head is None else head.size
    finally:
        store.close()
    samples = max(1, min(INPROCESS_SAMPLES, requests // len(TYPES))) * len(TYPES)
    sample = queries(dataset, size, samples, seed)
    base, rendered = inprocess(store_url, sample, queries(dataset, size, warmup, seed + 3))
    mean_s = sum(t for times in base.values() for t in times) / len(sample)
    mix = queries(dataset, size, warmup + 2 * requests, seed + 7)
    path = f"/v1/tenants/{TENANT}/spans?"
    calls = [Request("GET", path + urlencode(params, doseq=True)) for _, params in mix]
    with running(start_logline(home, database_url=url)) as server:
        token = server.login()
        run(drive(server.url, token, calls[:warmup], clients=clients))
        saturated = slice(warmup, warmup + requests)
        cpu, client_cpu = server.cpu_seconds(), time.process_time()
        elapsed, latencies = run(drive(server.url, token, calls[saturated], clients=clients))
        server_s, client_s = server.cpu_seconds() - cpu, time.process_time() - client_cpu
        rate = requests / elapsed
        em.emit(
            backend=backend,
            variant="saturated",
            metric="query_throughput",
            value=rate,
            unit="requests/s",
            ratio=rate * mean_s,
            ratio_to="inprocess_query_1thread",
            clients=clients,
            requests=requests,
            elapsed_s=elapsed,
            spans=dataset.spans,
            server_cpu_us_per_request=server_s / requests * 1e6,
            client_cpu_us_per_request=client_s / requests * 1e6,
            inprocess_per_s=1 / mean_s,
        )
        report(
            em,
            backend,
            "saturated",
            mix[saturated],
            latencies,
            base,
            rendered,
            clients=clients,
            spans=dataset.spans,
        )
        paced = slice(warmup + requests, warmup + 2 * requests)
        offered = rate * fraction
        elapsed, latencies = run(
            drive(server.url, token, calls[paced], clients=clients, rate=offered)
        )
        report(
            em,
            backend,
            "paced",
            mix[paced],
            latencies,
            base,
            rendered,
            clients=clients,
            spans=dataset.spans,
            offered_per_s=offered,
            achieved_per_s=requests / elapsed,
        )


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench query",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--spans", type=int, default=1_000_000)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--requests", type=int, default=10_000, help="timed queries per variant")
    parser.add_argument("--warmup", type=int, default=WARMUP, help="untimed queries first")
    parser.add_argument(
        "--paced-fraction",
        type=float,
        default=0.5,
        help="the paced variant's rate, as a fraction of the saturated rate",
    )
    parser.add_argument("--backend", default="sqlite", help="sqlite, postgres or all")
    parser.add_argument("--seed", type=int, default=2024)
    parser.add_argument("--data-dir", type=Path, default=DATA_DIR, help="where the cached homes go")
    parser.add_argument(
        "--pg-url",
        default=None,
        help="PostgreSQL maintenance URL (default $LOGLINE_BENCH_PG or "
        "postgresql://postgres@127.0.0.1:5432/postgres)",
    )
    parser.add_argument("--rebuild", action="store_true", help="ignore the cache")
    parser.add_argument("--drop-cache", action="store_true", help="remove the data when done")
    args = parser.parse_args(argv)
    if args.spans < LIMIT or args.clients < 1 or args.requests < len(TYPES):
        parser.error(f"--spans must be at least {LIMIT}, --requests at least {len(TYPES)}")
    if not 0 < args.paced_fraction <= 1:
        parser.error("--paced-fraction must be in (0, 1]")
    chosen = backends(args.backend)
    admin = pg_admin_url(args.pg_url)

    em = Emitter("query", out)
    extra = {"postgres": pg_server_version(admin)} if "postgres" in chosen else {}
    em.run_info(spans=args.spans, clients=args.clients, requests=args.requests, **extra)
    started = time.perf_counter()
    try:
        for backend in chosen:
            home, url, dataset, cached = prepare(
                backend,
                args.spans,
                data_dir=args.data_dir,
                admin_url=admin,
                seed=args.seed,
                rebuild=args.rebuild,
            )
            em.emit(
                backend=backend,
                variant=None,
                metric="load_time",
                value=dataset.load_s,
                unit="s",
                ratio=dataset.spans / dataset.load_s,
                ratio_to="spans_per_s",
                spans=dataset.spans,
                cached=cached,
                note="signing in worker processes + Log.append_batch; once, then cached",
            )
            measure(
                em,
                backend,
                home,
                url,
                dataset,
                clients=args.clients,
                requests=args.requests,
                warmup=args.warmup,
                fraction=args.paced_fraction,
                seed=args.seed,
            )
    finally:
        if args.drop_cache:
            for backend in chosen:
                shutil.rmtree(args.data_dir / f"query-{backend}-{args.spans}", ignore_errors=True)
                if backend == "postgres":
                    pg_drop_database(admin, f"logline_bench_query_{args.spans}")
    em.run_end(started)
    return 0
