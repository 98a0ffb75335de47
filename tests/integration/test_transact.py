"""`Log.transact`: work and the spans that record it commit together, or not at all, on both
backends, and a failing piece of work never takes down the groups it shares a commit with."""

from __future__ import annotations

from typing import Any

import pytest

from helpers import TENANT, make_identity, make_span
from logline.errors import Conflict, UnknownAuthor
from logline.identity.keys import PrivateKey
from logline.ledger.admission import Prepared
from logline.ledger.log import Log, _Group
from logline.store.interface import Store, Tx
from logline.store.sql import SqlTx


def _tenant_row(tx: Tx, name: str) -> None:
    """A change the work owns: a row in a table of its own (here, `tenants`)."""
    assert isinstance(tx, SqlTx)
    tx.c.run(
        "insert_tenant",
        {
            "name": name,
            "display_name": "x",
            "created_at": "2026-01-01T00:00:00.000000Z",
            "created_by": "y",
        },
    )


def _rows(store: Store) -> list[str]:
    from logline.store.sql import SqlStore

    assert isinstance(store, SqlStore)
    with store._read() as c:
        return [str(r[0]) for r in c.sql("SELECT name FROM tenants ORDER BY name", {})]


def test_work_and_its_record_commit_together(log: Log, store: Store) -> None:
    author, key = make_identity(log, TENANT, "alice")

    def work(tx: Tx, received: str) -> tuple[list[Prepared], Any]:
        _tenant_row(tx, "made-by-work")
        span = make_span(key, author, kind="work.done", payload={"received": received})
        return [Prepared(span, str(key.public_key))], "value"

    receipts, value = log.transact(TENANT, work)
    assert value == "value" and [r.seq for r in receipts] == [1]
    assert _rows(store) == ["made-by-work"]
    stored = store.span_at(TENANT, 1)
    assert stored is not None and stored.span.kind == "work.done"

    def more(tx: Tx, received: str) -> tuple[list[Prepared], Any]:
        return [Prepared(make_span(key, author, kind="work.more"), str(key.public_key))], None

    [checkpointed], _ = log.transact(TENANT, more, wait="checkpointed")
    assert checkpointed.checkpoint is not None


def test_failing_work_leaves_nothing(log: Log, store: Store) -> None:
    make_identity(log, TENANT, "alice")
    before = log.head(TENANT).size

    def refuses(tx: Tx, received: str) -> tuple[list[Prepared], Any]:
        _tenant_row(tx, "never")
        raise Conflict("the job was claimed by someone else")

    with pytest.raises(Conflict):
        log.transact(TENANT, refuses)
    stranger = PrivateKey.generate()

    def unadmissible(tx: Tx, received: str) -> tuple[list[Prepared], Any]:
        _tenant_row(tx, "never")
        span = make_span(stranger, "logline-id://service/nobody", kind="work.done")
        return [Prepared(span, str(stranger.public_key))], None

    with pytest.raises(UnknownAuthor):
        log.transact(TENANT, unadmissible)
    assert _rows(store) == [] and log.head(TENANT).size == before

    def quiet(tx: Tx, received: str) -> tuple[list[Prepared], Any]:
        _tenant_row(tx, "quiet")
        return [], None

    log.transact(TENANT, quiet)  # work with nothing to record still commits its changes
    assert _rows(store) == ["quiet"] and log.head(TENANT).size == before


def test_a_failing_group_spares_its_neighbours(log: Log, store: Store) -> None:
    author, key = make_identity(log, TENANT, "alice")

    def ok(tx: Tx, received: str) -> tuple[list[Prepared], Any]:
        _tenant_row(tx, "kept")
        return [Prepared(make_span(key, author, kind="work.ok"), str(key.public_key))], 1

    def bad(tx: Tx, received: str) -> tuple[list[Prepared], Any]:
        _tenant_row(tx, "undone")
        raise Conflict("no")

    plain = make_span(key, author, kind="plain.append")
    groups = [
        _Group(TENANT, [], work=ok),
        _Group(TENANT, [], work=bad),
        _Group(TENANT, [Prepared(plain, str(key.public_key))]),
    ]
    log._commit(groups)  # one transaction for the three, as the group commit would
    assert [g.error is None for g in groups] == [True, False, True]
    assert isinstance(groups[1].error, Conflict)
    assert _rows(store) == ["kept"]
    kinds = [s.span.kind for s in store.spans(TENANT, 1, log.head(TENANT).size)]
    assert kinds == ["work.ok", "plain.append"]
