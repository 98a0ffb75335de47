"""The Alembic migrations produce exactly the declared schema (`store.schema.metadata`), on every
backend, and `open_store` migrates once, idempotently, even when several openers race."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, inspect, text
from sqlalchemy.pool import NullPool

from helpers import TENANT, make_identity, make_span
from logline.identity.keys import PrivateKey
from logline.ledger.log import Log
from logline.ledger.verify import verify_store
from logline.store import (
    SCHEMA_REVISION,
    alembic_config,
    current_revision,
    open_store,
    sqlalchemy_url,
)
from logline.store.schema import metadata


@contextmanager
def _engine(url: str) -> Iterator[Engine]:
    engine = create_engine(sqlalchemy_url(url), poolclass=NullPool)
    try:
        yield engine
    finally:
        engine.dispose()


def _config() -> Config:
    config = alembic_config()
    assert isinstance(config, Config)
    return config


def _alembic(url: str, run: Callable[[Config], None]) -> None:
    """Run an Alembic command on `url` the way `open_store` does: on a connection we hand it."""
    with _engine(url) as engine, engine.begin() as connection:
        config = _config()
        config.attributes["connection"] = connection
        run(config)


def _declared(name: str | None, type_: str, *_: Any) -> bool:
    # The full-text objects of migration 0002 cannot be declared in SQLAlchemy metadata.
    return not (name or "").startswith("entries_fts")


def _schema_diff(url: str) -> list[Any]:
    with _engine(url) as engine, engine.connect() as connection:
        context = MigrationContext.configure(
            connection, opts={"compare_type": True, "include_name": _declared}
        )
        return list(compare_metadata(context, metadata))


def _tables(url: str) -> set[str]:
    with _engine(url) as engine:
        return {t for t in inspect(engine).get_table_names() if _declared(t, "table")}


def _versions(url: str) -> list[str]:
    with _engine(url) as engine, engine.connect() as connection:
        return [str(row[0]) for row in connection.execute(text("SELECT * FROM alembic_version"))]


def test_migrated_schema_matches_declared_metadata(backend: str) -> None:
    open_store(backend).close()
    assert _schema_diff(backend) == []
    assert _tables(backend) == {*metadata.tables, "alembic_version"}


def test_schema_revision_is_the_alembic_head(backend: str) -> None:
    scripts = ScriptDirectory.from_config(_config())
    assert scripts.get_heads() == [SCHEMA_REVISION]
    store = open_store(backend)
    try:
        assert current_revision(store) == SCHEMA_REVISION
    finally:
        store.close()
    assert _versions(backend) == [SCHEMA_REVISION]


def test_open_store_twice_is_idempotent(backend: str) -> None:
    first = open_store(backend)
    log = Log(first, instance="test.local", key=PrivateKey.generate())
    try:
        author, key = make_identity(log, TENANT, "alice")
        span = make_span(key, author, payload={"kept": True})
        log.append(span, wait="checkpointed")
        second = open_store(backend)  # while the first is still open
        try:
            stored = second.span(TENANT, span.id)
            assert stored is not None and stored.payload == span.payload_bytes
        finally:
            second.close()
    finally:
        log.close()
        first.close()

    third = open_store(backend)
    try:
        assert current_revision(third) == SCHEMA_REVISION
        head = third.log_head(TENANT)
        assert head is not None and head.size == 2
        verify_store(third, TENANT, log.origin(TENANT), log.verifier())
    finally:
        third.close()
    assert _versions(backend) == [SCHEMA_REVISION]
    assert _schema_diff(backend) == []


def test_downgrade_to_base_then_upgrade(backend: str) -> None:
    open_store(backend).close()
    try:
        _alembic(backend, lambda config: command.downgrade(config, "base"))
        assert _tables(backend) <= {"alembic_version"}
        unmigrated = open_store(backend, migrate=False)
        try:
            assert current_revision(unmigrated) is None
        finally:
            unmigrated.close()

        _alembic(backend, lambda config: command.upgrade(config, "head"))
        assert _schema_diff(backend) == []
        assert _versions(backend) == [SCHEMA_REVISION]
        store = open_store(backend)
        log = Log(store, instance="test.local", key=PrivateKey.generate())
        try:
            author, key = make_identity(log, TENANT, "alice")
            assert log.append(make_span(key, author)).seq == 1
        finally:
            log.close()
            store.close()
    finally:
        open_store(backend).close()  # leave a shared (PostgreSQL) database migrated


def test_racing_openers_migrate_once(backend: str) -> None:
    """Openers racing on an unmigrated database all succeed; one of them migrates."""
    open_store(backend).close()
    _alembic(backend, lambda config: command.downgrade(config, "base"))
    openers = 4
    barrier = threading.Barrier(openers)
    errors: list[BaseException] = []

    def open_and_close() -> None:
        try:
            barrier.wait()
            open_store(backend).close()
        except BaseException as exc:  # reported below, in the test's thread
            errors.append(exc)

    try:
        threads = [threading.Thread(target=open_and_close) for _ in range(openers)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert errors == []
        assert _versions(backend) == [SCHEMA_REVISION]
        assert _schema_diff(backend) == []
    finally:
        open_store(backend).close()


def test_a_migration_that_fails_halfway_leaves_nothing_behind(
    backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A migration killed or failing after some tables exist must not strand the database."""
    from alembic import op

    open_store(backend).close()
    _alembic(backend, lambda config: command.downgrade(config, "base"))
    calls: list[str] = []
    real_create_index = op.create_index

    def fail_after_first_index(*args: Any, **kwargs: Any) -> Any:
        calls.append(str(args[0]))
        if len(calls) > 1:
            raise RuntimeError("simulated crash in the middle of the migration")
        return real_create_index(*args, **kwargs)

    try:
        with monkeypatch.context() as patch:
            patch.setattr(op, "create_index", fail_after_first_index)
            with pytest.raises(RuntimeError, match="simulated crash"):
                open_store(backend)
        assert len(calls) == 2
        assert _tables(backend) <= {"alembic_version"}
    finally:
        open_store(backend).close()  # a later open migrates normally
    assert _versions(backend) == [SCHEMA_REVISION]
