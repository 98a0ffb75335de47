"""The pgqueuer no-op entrypoint, on PostgreSQL with asyncpg. A worker process is
`python -m bench.jobs_baselines.tasks_pgqueuer`: `pgqueuer.run(main)` on uvloop, which is what
`pgq run bench.jobs_baselines.tasks_pgqueuer:main` does, with its defaults (batch size 10,
LISTEN/NOTIFY, 30 s dequeue timeout). The CLI itself is not used: pgqueuer 1.6.0's `pgq run`
fails at start with typer 0.29 (`--log-level` reaches it as a str: 'str' object has no
attribute 'name')."""

from __future__ import annotations

import asyncio
import importlib
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from bench.jobs_baselines.mark import mark

PG_ENV = "LOGLINE_BENCH_JOBS_PG"
ENTRYPOINT = "noop"


@asynccontextmanager
async def main() -> AsyncIterator[Any]:
    """The factory `pgq run` calls: a PgQueuer on one asyncpg connection, one entrypoint."""
    asyncpg = importlib.import_module("asyncpg")
    pgqueuer = importlib.import_module("pgqueuer")
    connection = await asyncpg.connect(os.environ[PG_ENV])
    pgq = pgqueuer.PgQueuer(pgqueuer.AsyncpgDriver(connection))

    async def noop(job: Any) -> None:
        mark(float(job.payload))

    pgq.entrypoint(ENTRYPOINT)(noop)
    try:
        yield pgq
    finally:
        await connection.close()


def run() -> None:
    pgqueuer = importlib.import_module("pgqueuer")
    try:
        uvloop = importlib.import_module("uvloop")
    except ImportError:
        asyncio.run(pgqueuer.run(main))
    else:
        uvloop.run(pgqueuer.run(main))


if __name__ == "__main__":
    run()
