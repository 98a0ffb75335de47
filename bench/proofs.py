"""Proof latency of `Log.inclusion_proof` and `Log.consistency_proof` on large synthetic logs.

    python -m bench proofs [--sizes 1000000,10000000] [--backend sqlite|postgres|all]
                           [--samples 2000]

The log is synthetic: random leaf hashes, the perfect-subtree nodes `merkle.append_nodes` computes
from them written straight into `merkle_nodes` in large batches (COPY on PostgreSQL, executemany in
big transactions on SQLite), and the `logs` row's size set. No entries are written: generating a
proof reads only Merkle nodes (and the log head). The database is cached under `bench-data/`
(SQLite, one file per size) or in the PostgreSQL database `logline_bench_proofs` (one tenant per
size), so a re-run skips the build; `--rebuild` forces it (on PostgreSQL by recreating the whole
database), `--drop-cache` removes it afterwards.

Timed: many random `inclusion_proof(tenant, seq, size)` and `consistency_proof(tenant, size1,
size2)` calls at random historical sizes, p50/p99/max in ms, twice: variant `first-pass` (pages as
the run finds them in the OS cache and shared_buffers) and `warm` (the same samples again, every
page they need now cached). The ratio: the same proofs computed
from an in-memory dict of the nodes they need (pure computation, same run). A sample of the proofs
is verified against `Log.root(log_id, size)` (not timed).
"""

from __future__ import annotations

import argparse
import json
import random
import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TextIO

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
from logline.identity.keys import PrivateKey
from logline.ledger import merkle
from logline.ledger.log import Log
from logline.ledger.timefmt import now_ts
from logline.store import open_store
from logline.store.interface import Store, node_key

INSTANCE = "bench.local"
PG_DATABASE = "logline_bench_proofs"
CHUNK = 1 << 16  # leaves hashed and inserted per step
CHUNKS_PER_TX = 16
WARMUP = 100
VERIFY_SAMPLES = 200
FIRST_PASS = "first-pass"
WARM = "warm"
NOTE = ("synthetic log: merkle_nodes and logs.size only, no entries were written; proof "
        "generation reads only the log head and Merkle nodes")  # fmt: skip

Row = tuple[int, int, bytes]


@dataclass
class Build:
    leaves: int
    seed: int
    nodes: int
    compute_s: float
    insert_s: float
    total_s: float


def tenant_for(size: int) -> str:
    return f"proofs-{size}"


# --- building the synthetic log -------------------------------------------------------------------


class _Chunks:
    """The node rows of a synthetic log of `leaves` random leaf hashes, chunk by chunk, in key order
    within each chunk; `compute_s` accumulates the time spent generating and hashing them."""

    def __init__(self, log_id: int, leaves: int, seed: int) -> None:
        self.log_id, self.leaves, self.seed = log_id, leaves, seed
        self.compute_s = 0.0
        self.nodes = 0

    def __iter__(self) -> Iterator[list[Row]]:
        rng = random.Random(self.seed)
        frontier: dict[int, bytes] = {}
        size = 0
        while size < self.leaves:
            start = time.perf_counter()
            count = min(CHUNK, self.leaves - size)
            blob = rng.randbytes(32 * count)
            hashes = [blob[i : i + 32] for i in range(0, len(blob), 32)]
            nodes = merkle.append_nodes(size, frontier, hashes)
            rows = sorted((self.log_id, node_key(level, index), h) for level, index, h in nodes)
            self.compute_s += time.perf_counter() - start
            self.nodes += len(rows)
            size += count
            yield rows


def _insert_sqlite(path: Path, chunks: _Chunks) -> None:
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=OFF")
        conn.execute("PRAGMA cache_size=-262144")
        pending = 0
        conn.execute("BEGIN")
        for rows in chunks:
            conn.executemany("INSERT INTO merkle_nodes (log_id, node, hash) VALUES (?, ?, ?)", rows)
            pending += 1
            if pending == CHUNKS_PER_TX:
                conn.execute("COMMIT")
                conn.execute("BEGIN")
                pending = 0
        conn.execute("COMMIT")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        conn.execute("ANALYZE")
    finally:
        conn.close()


def _insert_postgres(url: str, chunks: _Chunks) -> None:
    import psycopg

    with psycopg.connect(url) as conn:
        conn.execute("SET synchronous_commit = off")
        with conn.cursor() as cur:
            pending = 0
            for rows in chunks:
                with cur.copy("COPY merkle_nodes (log_id, node, hash) FROM STDIN "
                              "(FORMAT BINARY)") as copy:  # fmt: skip
                    copy.set_types(["int4", "int8", "bytea"])
                    for row in rows:
                        copy.write_row(row)
                pending += 1
                if pending == CHUNKS_PER_TX:
                    conn.commit()
                    pending = 0
        conn.commit()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("VACUUM (ANALYZE) merkle_nodes")


def _delete_nodes(store: Store, log_id: int) -> None:
    from logline.store.sql import SqlStore

    assert isinstance(store, SqlStore)
    text = "DELETE FROM merkle_nodes WHERE log_id = " + ("?" if store.dialect == "sqlite" else "%s")
    store._conn().raw.execute(text, (log_id,))


def prepare(
    backend: str, size: int, *, data_dir: Path, admin_url: str, seed: int, rebuild: bool
) -> tuple[str, Build, bool]:
    """The URL of a store holding a synthetic log of `size` leaves, built unless cached.

    Returns (url, build details, whether the cache was used)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    meta_path = data_dir / f"proofs-{backend}-{size}.json"
    tenant = tenant_for(size)
    if backend == "sqlite":
        db_path = data_dir / f"proofs-{size}.sqlite"
        if rebuild:
            for suffix in ("", "-wal", "-shm", ".migrate-lock"):
                Path(f"{db_path}{suffix}").unlink(missing_ok=True)
        url = f"sqlite:///{db_path}"
    else:
        pg_create_database(admin_url, PG_DATABASE, fresh=False)
        url = pg_database_url(admin_url, PG_DATABASE)

    store = open_store(url)
    try:
        head = store.log_head(tenant)
        meta = json.loads(meta_path.read_text()) if meta_path.exists() else None
        if (
            not rebuild
            and head is not None
            and head.size == size
            and meta is not None
            and meta.get("seed") == seed
            and meta.get("leaves") == size
        ):
            return url, Build(**meta), True
        if head is not None:
            _delete_nodes(store, head.log_id)
            log_id = head.log_id
        else:
            with store.write() as tx:
                log_id = tx.lock_log(tenant, now_ts()).log_id
        with store.write() as tx:
            tx.lock_log(tenant, now_ts())
            tx.set_size(log_id, 0)
        meta_path.unlink(missing_ok=True)

        start = time.perf_counter()
        chunks = _Chunks(log_id, size, seed)
        if backend == "sqlite":
            _insert_sqlite(Path(url[len("sqlite:///") :]), chunks)
        else:
            _insert_postgres(url, chunks)
        with store.write() as tx:
            tx.lock_log(tenant, now_ts())
            tx.set_size(log_id, size)
        total = time.perf_counter() - start
    finally:
        store.close()
    build = Build(size, seed, chunks.nodes, chunks.compute_s, total - chunks.compute_s, total)
    meta_path.write_text(json.dumps(asdict(build)))
    return url, build, False


# --- timing ---------------------------------------------------------------------------------------


def _timed(
    call: Callable[[int, int], list[bytes]], args: Sequence[tuple[int, int]]
) -> tuple[list[float], list[list[bytes]]]:
    """Call `call(a, b)` for each pair; the milliseconds each took, and what each returned."""
    times: list[float] = []
    results: list[list[bytes]] = []
    for a, b in args:
        start = time.perf_counter_ns()
        result = call(a, b)
        times.append((time.perf_counter_ns() - start) / 1e6)
        results.append(result)
    return times, results


ProofOf = Callable[[int, int], list[bytes]]
NodesOf = Callable[[int, int], list[merkle.NodeId]]
PathOf = Callable[[int, int, merkle.NodeFetcher], list[bytes]]
VerifyOf = Callable[[int, int, list[bytes]], None]


def _time_kind(
    em: Emitter,
    backend: str,
    kind: str,
    size: int,
    args: list[tuple[int, int]],
    warmup: list[tuple[int, int]],
    from_store: ProofOf,
    nodes_of: NodesOf,
    path_of: PathOf,
    fetch_nodes: Callable[[list[merkle.NodeId]], dict[merkle.NodeId, bytes]],
    verify: VerifyOf,
) -> None:
    for a, b in warmup:
        from_store(a, b)
    # First pass: the pages as this run finds them (OS cache, shared_buffers). Then the same
    # samples again: every page they need is cached now, the steady state of a warm server.
    first_ms, proofs = _timed(from_store, args)
    warm_ms, again = _timed(from_store, args)
    if again != proofs:
        raise RuntimeError(f"{backend}: {kind} proofs differ between two passes")

    # The same proofs from memory: fetch every node they need first (not timed).
    needed = sorted({n for a, b in args for n in nodes_of(a, b)})
    memory: dict[merkle.NodeId, bytes] = {}
    for i in range(0, len(needed), 2000):
        memory.update(fetch_nodes(needed[i : i + 2000]))

    def fetch(level: int, index: int) -> bytes:
        return memory[(level, index)]

    def from_memory(a: int, b: int) -> list[bytes]:
        nodes_of(a, b)  # the planning step Log does before its query
        return path_of(a, b, fetch)

    memory_ms, memory_proofs = _timed(from_memory, args)
    if memory_proofs != proofs:
        raise RuntimeError(f"{backend}: {kind} proofs from the store and from memory differ")

    checked = 0
    for (a, b), proof in list(zip(args, proofs, strict=True))[:VERIFY_SAMPLES]:
        verify(a, b, proof)
        checked += 1

    common = {"leaves": size, "samples": len(args),
              "mean_hashes": sum(map(len, proofs)) / len(proofs)}  # fmt: skip
    stats: dict[str, Callable[[list[float]], float]] = {
        "p50": lambda v: percentile(v, 50),
        "p99": lambda v: percentile(v, 99),
        "max": max,
    }
    for variant, store_ms in ((FIRST_PASS, first_ms), (WARM, warm_ms)):
        for stat, fn in stats.items():
            value, base = fn(store_ms), fn(memory_ms)
            em.emit(backend=backend, variant=variant, metric=f"{kind}_proof_{stat}", value=value,
                    unit="ms", ratio=value / base, ratio_to=f"in_memory_{kind}_proof_{stat}",
                    in_memory_ms=base, **common)  # fmt: skip
    em.emit(backend=backend, variant=None, metric=f"{kind}_proofs_verified", value=checked,
            unit="proofs", ratio=1.0, ratio_to="proofs_checked", leaves=size,
            note="verified against Log.root(log_id, size); not timed")  # fmt: skip


def measure(em: Emitter, backend: str, url: str, size: int, build: Build, cached: bool, *,
            samples: int, seed: int) -> None:  # fmt: skip
    tenant = tenant_for(size)
    em.emit(backend=backend, variant=None, metric="build_time", value=build.total_s, unit="s",
            ratio=build.total_s / build.compute_s if build.compute_s else None,
            ratio_to="in_memory_node_computation", leaves=size, nodes=build.nodes,
            compute_s=build.compute_s, insert_s=build.insert_s, cached=cached,
            note=NOTE)  # fmt: skip
    rng = random.Random(seed + 1)

    def inclusion_args() -> tuple[int, int]:
        tree = rng.randint(1, size)
        return rng.randrange(tree), tree

    def consistency_args() -> tuple[int, int]:
        a, b = rng.randint(1, size), rng.randint(1, size)
        return min(a, b), max(a, b)

    store = open_store(url)
    log = Log(store, instance=INSTANCE, key=PrivateKey.generate())
    try:
        head = log.head(tenant)
        if head.size != size:
            raise RuntimeError(f"{backend}: tenant {tenant} has size {head.size}, expected {size}")
        log_id = head.log_id
        roots: dict[int, bytes] = {}

        def root(tree: int) -> bytes:
            if tree not in roots:
                roots[tree] = log.root(log_id, tree)
            return roots[tree]

        def fetch_nodes(ids: list[merkle.NodeId]) -> dict[merkle.NodeId, bytes]:
            return store.nodes(log_id, ids)

        def inclusion(seq: int, tree: int) -> list[bytes]:
            return log.inclusion_proof(tenant, seq, tree)

        def verify_inclusion(seq: int, tree: int, proof: list[bytes]) -> None:
            leaf = store.nodes(log_id, [(0, seq)])[(0, seq)]
            merkle.verify_inclusion(seq, tree, leaf, proof, root(tree))

        def consistency(size1: int, size2: int) -> list[bytes]:
            return log.consistency_proof(tenant, size1, size2)

        def verify_consistency(size1: int, size2: int, proof: list[bytes]) -> None:
            merkle.verify_consistency(size1, size2, proof, root(size1), root(size2))

        _time_kind(em, backend, "inclusion", size,
                   [inclusion_args() for _ in range(samples)],
                   [inclusion_args() for _ in range(WARMUP)],
                   inclusion, merkle.inclusion_nodes, merkle.inclusion_path, fetch_nodes,
                   verify_inclusion)  # fmt: skip
        _time_kind(em, backend, "consistency", size,
                   [consistency_args() for _ in range(samples)],
                   [consistency_args() for _ in range(WARMUP)],
                   consistency, merkle.consistency_nodes, merkle.consistency_path, fetch_nodes,
                   verify_consistency)  # fmt: skip
    finally:
        log.close()
        store.close()


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench proofs",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--sizes", default="1000000,10000000", help="comma-separated log sizes (leaves)"
    )
    parser.add_argument("--backend", default="all", help="sqlite, postgres or all")
    parser.add_argument("--samples", type=int, default=2000, help="timed proofs of each kind")
    parser.add_argument("--seed", type=int, default=6962)
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=DATA_DIR,
        help="where the cached SQLite files and build notes go",
    )
    parser.add_argument(
        "--pg-url",
        default=None,
        help="PostgreSQL maintenance URL (default $LOGLINE_BENCH_PG or "
        "postgresql://postgres@127.0.0.1:5432/postgres)",
    )
    parser.add_argument("--rebuild", action="store_true", help="ignore the cache")
    parser.add_argument(
        "--drop-cache", action="store_true", help="remove the built databases when done"
    )
    args = parser.parse_args(argv)
    sizes = [int(s.replace("_", "")) for s in args.sizes.split(",") if s]
    if not sizes or min(sizes) < 2:
        parser.error("--sizes needs sizes of at least 2")
    if args.samples < 1:
        parser.error("--samples must be at least 1")
    chosen = backends(args.backend)
    admin = pg_admin_url(args.pg_url)

    em = Emitter("proofs", out)
    extra = {"postgres": pg_server_version(admin)} if "postgres" in chosen else {}
    em.run_info(sizes=sizes, samples=args.samples, **extra)
    started = time.perf_counter()
    try:
        for backend in chosen:
            if backend == "postgres" and args.rebuild:
                # A fresh database rather than deleting millions of rows and leaving them as bloat.
                pg_drop_database(admin, PG_DATABASE)
            for size in sizes:
                url, build, cached = prepare(
                    backend,
                    size,
                    data_dir=args.data_dir,
                    admin_url=admin,
                    seed=args.seed,
                    rebuild=args.rebuild,
                )
                measure(em, backend, url, size, build, cached, samples=args.samples, seed=args.seed)
    finally:
        if args.drop_cache:
            for backend in chosen:
                for size in sizes:
                    for path in args.data_dir.glob(f"proofs-{size}.sqlite*"):
                        path.unlink()
                    (args.data_dir / f"proofs-{backend}-{size}.json").unlink(missing_ok=True)
                if backend == "postgres":
                    pg_drop_database(admin, PG_DATABASE)
    em.run_end(started)
    return 0
