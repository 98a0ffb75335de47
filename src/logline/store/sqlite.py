"""SQLite backend: the embedded default. WAL mode; writers take the database write lock up front.

Durability: `synchronous=FULL` by default, so a span acknowledged as sequenced survives power loss,
not only a crash of the process. Several processes may write to one database file: `BEGIN
IMMEDIATE` serializes them, and `busy_timeout` makes them wait for each other instead of failing.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from logline.errors import StorageError
from logline.store.interface import Notice
from logline.store.queries import load_queries
from logline.store.sql import Connection, SqlStore, search_words

BUSY_TIMEOUT_MS = 60_000
MMAP_BYTES = 1 << 30


SYNCHRONOUS = ("OFF", "NORMAL", "FULL", "EXTRA")


def sqlite_path(url: str) -> Path:
    """`sqlite:///relative.db` or `sqlite:////absolute/path.db[?synchronous=...]` → the file."""
    prefix = "sqlite:///"
    url = url.partition("?")[0]
    if not url.startswith(prefix) or len(url) == len(prefix):
        raise StorageError(f"a SQLite URL looks like sqlite:////path/to/logline.db, got {url!r}")
    return Path(url[len(prefix) :])


def sqlite_synchronous(url: str) -> str:
    """The `synchronous` option of the URL: FULL unless `?synchronous=NORMAL` (etc.) says so."""
    query = url.partition("?")[2]
    if not query:
        return "FULL"
    name, _, value = query.partition("=")
    if name != "synchronous" or value.upper() not in SYNCHRONOUS:
        raise StorageError(
            f"the only SQLite URL option is synchronous={'|'.join(SYNCHRONOUS)}, got {query!r}"
        )
    return value.upper()


class SqliteStore(SqlStore):
    dialect = "sqlite"

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.path = sqlite_path(url)
        self.synchronous = sqlite_synchronous(url)
        self._queries = load_queries("sqlite")

    def _search_text(self, text: str) -> str:
        # Quoted, each word is a literal term for FTS5 (no operators); terms together mean AND.
        return " ".join(f'"{word}"' for word in search_words(text))

    def _connect(self) -> Connection:
        raw = sqlite3.connect(
            self.path, isolation_level=None, check_same_thread=False, timeout=BUSY_TIMEOUT_MS / 1000
        )
        raw.execute("PRAGMA journal_mode=WAL")
        raw.execute(f"PRAGMA synchronous={self.synchronous}")
        raw.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        # Readers on many threads share the file's pages through one mapping instead of each
        # connection copying them into its own page cache.
        raw.execute(f"PRAGMA mmap_size={MMAP_BYTES}")
        raw.execute("PRAGMA foreign_keys=ON")
        return Connection(raw, self._queries, json.dumps)

    def listen(self, stop: Callable[[], bool]) -> Iterator[Notice] | None:
        return None  # SQLite cannot push; watchers poll

    @contextmanager
    def _transaction(self, conn: Connection) -> Iterator[None]:
        conn.raw.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            conn.raw.execute("ROLLBACK")
            raise
        conn.raw.execute("COMMIT")

    @contextmanager
    def wrap_exceptions(self) -> Iterator[None]:
        try:
            yield
        except sqlite3.Error as exc:
            raise StorageError(f"SQLite ({self.path}): {exc}") from exc
