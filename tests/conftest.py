"""Shared fixtures: one store URL per backend, an opened store, a log, and an identity.

`backend` is parametrized over SQLite (a fresh file per test, copied from one migrated once per
session) and PostgreSQL. For PostgreSQL each
pytest-xdist worker gets its own database, `logline_test_<worker>`, created fresh and migrated once
per session on the server at `LOGLINE_TEST_PG`; every test then gets it with all tables truncated.
When that server is unreachable the PostgreSQL cases are skipped, except under `CI=true`, where
they fail: CI must never go green without having run them.

Two test sessions may share one server (two checkouts, or a developer running one file while
another runs the suite). Each session holds a server-wide advisory lock on its database name; a
session that finds the name taken uses `logline_test_<worker>_<pid>` instead of dropping a database
that another session is using.
"""

from __future__ import annotations

import os
import shutil
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn
from urllib.parse import urlsplit

import pytest

from helpers import INSTANCE, TENANT, Clock, make_identity
from logline.identity.keys import PrivateKey
from logline.ledger.log import Log
from logline.rules.gate import RulesGate
from logline.rules.sets import RuleSets
from logline.rules.webhooks import WebhookAllowList
from logline.server.services import roles_of
from logline.store import SCHEMA_REVISION, open_store
from logline.store.interface import Store

PG_DEFAULT_SERVER = "postgresql://postgres@127.0.0.1:5432/postgres"
PG_CONNECT_TIMEOUT_S = 5
PG_NAME_LOCK_CLASS = 0x4C4C5453  # "LLTS": advisory lock class of test database names


def _pg_server() -> str:
    return os.environ.get("LOGLINE_TEST_PG", PG_DEFAULT_SERVER)


def _postgres_unavailable(reason: str) -> NoReturn:
    if os.environ.get("CI") == "true":
        pytest.fail(f"PostgreSQL is required when CI=true, but {reason}", pytrace=False)
    pytest.skip(f"PostgreSQL tests skipped: {reason} (set LOGLINE_TEST_PG to a reachable server)")


def _without_password(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{parts.username}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return parts._replace(netloc=netloc).geturl()


@dataclass
class PgDatabase:
    """A per-worker PostgreSQL database, migrated, with a connection that resets it."""

    url: str
    admin: Any  # psycopg.Connection to `url`, autocommit

    def reset(self) -> None:
        """Truncate every table but alembic_version (re-migrating if a test left it behind)."""
        from psycopg import sql

        revision = self.admin.execute(
            "SELECT CASE WHEN to_regclass('alembic_version') IS NULL THEN NULL "
            "ELSE (SELECT max(version_num) FROM alembic_version) END"
        ).fetchone()[0]
        if revision != SCHEMA_REVISION:
            open_store(self.url).close()
        tables = [
            row[0]
            for row in self.admin.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = current_schema() "
                "AND tablename <> 'alembic_version' ORDER BY tablename"
            ).fetchall()
        ]
        if tables:
            self.admin.execute(
                sql.SQL("TRUNCATE {} RESTART IDENTITY CASCADE").format(
                    sql.SQL(", ").join(sql.Identifier(t) for t in tables)
                )
            )


@pytest.fixture(scope="session")
def pg_database(worker_id: str) -> Iterator[PgDatabase]:
    server = _pg_server()
    try:
        import psycopg
        from psycopg import sql
    except ImportError as exc:
        _postgres_unavailable(f"psycopg is not installed ({exc})")
    try:
        server_conn = psycopg.connect(server, autocommit=True, connect_timeout=PG_CONNECT_TIMEOUT_S)
    except psycopg.Error as exc:
        _postgres_unavailable(f"cannot connect to {_without_password(server)}: {exc}")
    with server_conn:  # closing it releases the name lock
        name = f"logline_test_{worker_id}"
        if not _lock_name(server_conn, name):
            name = f"{name}_{os.getpid()}"  # another session on this server uses the name
            assert _lock_name(server_conn, name)
        drop = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        server_conn.execute(drop)
        server_conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        try:
            url = urlsplit(server)._replace(path=f"/{name}").geturl()
            open_store(url).close()  # migrate once for the session
            admin = psycopg.connect(url, autocommit=True, connect_timeout=PG_CONNECT_TIMEOUT_S)
            # Resets need not wait for the WAL flush (the stores under test keep the server's
            # default), and fail rather than hang behind a transaction a test left open.
            admin.execute("SET synchronous_commit = off")
            admin.execute("SET lock_timeout = '20s'")
            try:
                yield PgDatabase(url, admin)
            finally:
                admin.close()
        finally:
            server_conn.execute(drop)


def _lock_name(server_conn: Any, name: str) -> bool:
    """Take the session-long advisory lock on a test database name; False if another has it."""
    key = zlib.crc32(name.encode()) & 0x7FFFFFFF
    row = server_conn.execute(
        "SELECT pg_try_advisory_lock(%s, %s)", (PG_NAME_LOCK_CLASS, key)
    ).fetchone()
    return bool(row[0])


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite database migrated once per session; tests get copies of it."""
    path = tmp_path_factory.mktemp("sqlite-template") / "logline.db"
    open_store(f"sqlite:///{path}").close()  # closing the last connection folds the WAL in
    return path


@pytest.fixture(
    params=[
        pytest.param("sqlite", id="sqlite"),
        pytest.param("postgres", id="postgres", marks=pytest.mark.postgres),
    ]
)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A store URL of an empty, migrated database: a SQLite file in `tmp_path`, or the worker's
    PostgreSQL database with every table truncated."""
    if request.param == "sqlite":
        path = tmp_path / "logline.db"
        shutil.copyfile(request.getfixturevalue("sqlite_template"), path)
        return f"sqlite:///{path}"
    pg = request.getfixturevalue("pg_database")
    assert isinstance(pg, PgDatabase)
    pg.reset()
    return pg.url


@pytest.fixture
def store(backend: str) -> Iterator[Store]:
    opened = open_store(backend)
    try:
        yield opened
    finally:
        opened.close()


@pytest.fixture
def log(store: Store) -> Iterator[Log]:
    opened = Log(store, instance=INSTANCE, key=PrivateKey.generate())
    try:
        yield opened
    finally:
        opened.close()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def clocked_log(store: Store, clock: Clock) -> Iterator[Log]:
    """A log whose time is `clock`'s: tests move it with `clock.advance`."""
    opened = Log(store, instance=INSTANCE, key=PrivateKey.generate(), clock=clock)
    try:
        yield opened
    finally:
        opened.close()


@pytest.fixture
def alice(log: Log) -> tuple[str, PrivateKey]:
    """`logline-id://person/alice`, registered in TENANT's log."""
    return make_identity(log, TENANT, "alice")


@dataclass
class Ruled:
    """A log with the rules gate installed, as a server process has it (services.start)."""

    log: Log
    sets: RuleSets
    gate: RulesGate
    instance: str  # the instance identity: it signs rule, approval and follow-up records
    key: PrivateKey

    def publish(self, source: str, tenant: str = TENANT) -> int:
        return self.sets.publish(tenant, source, by="logline-id://person/admin").version


@pytest.fixture
def ruled(log: Log) -> Ruled:
    instance, key = make_identity(log, "system", "instance", kind="service")
    sets = RuleSets(log, author=instance, key=key, webhooks=WebhookAllowList(["http://127.0.0.1"]))
    gate = RulesGate(sets, roles_of, author=instance, key=key)
    log.gate = gate
    return Ruled(log, sets, gate, instance, key)
