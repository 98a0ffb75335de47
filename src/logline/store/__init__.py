"""Storage backends behind one interface, and the migrations that create their schema.

store = open_store("sqlite:////tmp/logline.db")   # migrates to the current schema
store.logs()                                        # → [LogHead(...), ...]
"""

from __future__ import annotations

import fcntl
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import resources
from pathlib import Path
from typing import Any

from logline.errors import StorageError
from logline.store.interface import Store

SCHEMA_REVISION = "0005"
_PG_MIGRATION_LOCK = 0x4C4F474C  # "LOGL": advisory lock id held while migrating


def open_store(url: str, *, migrate: bool = True) -> Store:
    """Open the store at `url` (sqlite:///... or postgresql://...), migrating it first."""
    store: Store
    if url.startswith("sqlite:///"):
        from logline.store.sqlite import SqliteStore

        store = SqliteStore(url)
    elif url.startswith(("postgresql://", "postgresql+psycopg://", "postgres://")):
        from logline.store.postgres import PostgresStore

        store = PostgresStore(url.replace("postgres://", "postgresql://", 1))
    else:
        raise StorageError(
            f"unsupported database URL {url.split(':', 1)[0]!r}: use sqlite:/// or postgresql://"
        )
    if migrate:
        try:
            upgrade(store)
        except BaseException:
            store.close()
            raise
    return store


def current_revision(store: Store) -> str | None:
    from logline.store.sql import SqlStore

    assert isinstance(store, SqlStore)
    conn = store._conn()
    try:
        with store.wrap_exceptions():
            row = conn.one("schema_revision", {})
    except StorageError:
        if store.dialect == "postgresql":
            conn.raw.rollback()
        return None
    return None if row is None else str(row[0])


def upgrade(store: Store) -> None:
    """Bring the schema to SCHEMA_REVISION with Alembic, once, even with racing processes."""
    if current_revision(store) == SCHEMA_REVISION:
        return
    with _migration_lock(store):
        if current_revision(store) == SCHEMA_REVISION:
            return
        _run_alembic(store.url)


@contextmanager
def _migration_lock(store: Store) -> Iterator[None]:
    if store.dialect == "sqlite":
        from logline.store.sqlite import sqlite_path

        path = sqlite_path(store.url)
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(f"{path}.migrate-lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield
        return
    from logline.store.sql import SqlStore

    assert isinstance(store, SqlStore)
    conn = store._conn()
    with store.wrap_exceptions():
        conn.raw.execute("SELECT pg_advisory_lock(%s)", (_PG_MIGRATION_LOCK,))
    try:
        yield
    finally:
        with store.wrap_exceptions():
            conn.raw.execute("SELECT pg_advisory_unlock(%s)", (_PG_MIGRATION_LOCK,))


def sqlalchemy_url(url: str) -> str:
    if url.startswith("sqlite:"):
        return url.partition("?")[0]  # LogLine's own options are not SQLAlchemy's
    if url.startswith("postgresql://"):
        return url.replace("postgresql://", "postgresql+psycopg://", 1)
    return url


def alembic_config() -> object:
    from alembic.config import Config

    config = Config()
    config.set_main_option(
        "script_location", str(Path(str(resources.files("logline.store"))) / "migrations")
    )
    return config


def _run_alembic(url: str) -> None:
    from alembic import command
    from alembic.config import Config
    from sqlalchemy import create_engine, event
    from sqlalchemy.exc import SQLAlchemyError

    config = alembic_config()
    assert isinstance(config, Config)
    engine = create_engine(sqlalchemy_url(url))
    if url.startswith("sqlite"):
        # Python's sqlite3 commits DDL statement by statement; a migration killed halfway would
        # leave tables without a revision. Let SQLAlchemy run it in one real transaction.
        @event.listens_for(engine, "connect")
        def _no_driver_transactions(dbapi_connection: Any, _record: Any) -> None:
            dbapi_connection.isolation_level = None

        @event.listens_for(engine, "begin")
        def _begin(connection: Any) -> None:
            connection.exec_driver_sql("BEGIN IMMEDIATE")

    try:
        with engine.begin() as connection:
            config.attributes["connection"] = connection
            command.upgrade(config, "head")
    except SQLAlchemyError as exc:
        raise StorageError(f"migrating {url.split('://')[0]} database failed: {exc}") from exc
    finally:
        engine.dispose()
