"""PostgreSQL backend (psycopg 3).

Appends lock the tenant's `logs` row (`FOR UPDATE`), so writers in
any number of processes append to one tenant in a single order, while tenants proceed in parallel.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from logline.errors import StorageError
from logline.store.interface import IDLE, Notice
from logline.store.queries import load_queries, to_pyformat
from logline.store.sql import Connection, SqlStore

try:
    import psycopg
except ImportError:  # pragma: no cover - depends on the install
    psycopg = None  # type: ignore[assignment]


def driver_url(url: str) -> str:
    """`postgresql+psycopg://...` (SQLAlchemy style) → `postgresql://...` (libpq style)."""
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


_COPY_COLUMNS = re.compile(r"^COPY \w+ \(([^)]*)\) FROM STDIN", re.DOTALL)


class PgConnection(Connection):
    def many(self, name: str, rows: Sequence[dict[str, Any]]) -> None:
        sql = self.queries[name]
        match = _COPY_COLUMNS.match(sql)
        if match is None:
            super().many(name, rows)
            return
        if not rows:
            return
        columns = [column.strip() for column in match.group(1).split(",")]
        with self.raw.cursor().copy(sql.rstrip(";")) as copy:
            for row in rows:
                copy.write_row([row[column] for column in columns])


class PostgresStore(SqlStore):
    dialect = "postgresql"

    def __init__(self, url: str) -> None:
        if psycopg is None:
            raise StorageError("PostgreSQL needs psycopg: pip install 'logline[postgres]'")
        super().__init__(url)
        self._queries = {name: to_pyformat(sql) for name, sql in load_queries("postgres").items()}

    def _connect(self) -> Connection:
        raw = psycopg.connect(driver_url(self.url), autocommit=True, prepare_threshold=0)
        return PgConnection(raw, self._queries, list)

    def listen(self, stop: Callable[[], bool]) -> Iterator[Notice] | None:
        return self._notifications(stop)

    def _notifications(self, stop: Callable[[], bool]) -> Iterator[Notice]:
        with self.wrap_exceptions():
            raw = psycopg.connect(driver_url(self.url), autocommit=True)
        try:
            with self.wrap_exceptions():
                raw.execute("LISTEN logline_logs")
                raw.execute("LISTEN logline_jobs")
            while not stop():
                with self.wrap_exceptions():
                    received = list(raw.notifies(timeout=0.5, stop_after=1000))
                for note in received:
                    if note.channel == "logline_jobs":
                        yield Notice("jobs", note.payload)
                        continue
                    tenant, _, size = note.payload.partition(" ")
                    if size.isdigit():
                        yield Notice("log", tenant, int(size))
                if not received:
                    yield IDLE
        finally:
            raw.close()

    @contextmanager
    def _transaction(self, conn: Connection) -> Iterator[None]:
        with conn.raw.transaction():
            yield

    def _prepare(self, sql: str) -> str:
        return to_pyformat(sql)

    @contextmanager
    def wrap_exceptions(self) -> Iterator[None]:
        try:
            yield
        except psycopg.Error as exc:
            raise StorageError(f"PostgreSQL: {_first_line(exc)}") from exc


def _first_line(exc: Any) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
