"""Helpers shared by the test suites: a controllable clock, identities, spans, raw SQL access."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from logline.identity.documents import creation_span
from logline.identity.ids import LogLineId
from logline.identity.keys import PrivateKey
from logline.ledger.log import Log
from logline.ledger.span import Span, new_span
from logline.ledger.timefmt import format_ts
from logline.store.interface import Store
from logline.store.queries import to_pyformat
from logline.store.sql import SqlStore

TENANT = "acme"
OTHER_TENANT = "globex"
INSTANCE = "test.local"


class Clock:
    """A clock for `Log(..., clock=...)` that only moves when told to."""

    def __init__(self, start: datetime | None = None) -> None:
        self.now = start or datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)

    def ts(self, offset_s: float = 0.0) -> str:
        """The clock's time (plus `offset_s`) as a span timestamp."""
        return format_ts(self.now + timedelta(seconds=offset_s))


def ts_from_now(offset_s: float) -> str:
    """A span timestamp `offset_s` seconds from the real current time."""
    return format_ts(datetime.now(UTC) + timedelta(seconds=offset_s))


def make_identity(
    log: Log,
    tenant: str,
    handle: str,
    kind: str = "person",
    *,
    display_name: str | None = None,
    expires_at: datetime | None = None,
) -> tuple[str, PrivateKey]:
    """Register `logline-id://<kind>/<handle>` in `tenant`'s log; return its id and key."""
    key = PrivateKey.generate()
    identity = LogLineId.of(kind, handle)
    log.append(
        creation_span(key, tenant, identity, display_name, expires_at=expires_at),
        wait="sequenced",
    )
    return str(identity), key


def make_span(
    key: PrivateKey,
    author: str,
    tenant: str = TENANT,
    kind: str = "test.event",
    title: str = "something happened",
    **fields: Any,
) -> Span:
    """A signed span with sensible defaults; `fields` go to `new_span` (payload, tags, ts, ...)."""
    return new_span(key, tenant=tenant, author=author, kind=kind, title=title, **fields)


def sql_store(store: Store) -> SqlStore:
    assert isinstance(store, SqlStore)
    return store


def raw_sql(store: Store, sql: str, params: dict[str, Any] | None = None) -> list[tuple[Any, ...]]:
    """Run SQL with `:named` parameters directly on the store's (autocommit) connection.

    This bypasses the store on purpose: the tamper tests use it to corrupt committed rows.
    """
    s = sql_store(store)
    text = to_pyformat(sql) if s.dialect == "postgresql" else sql
    cursor = s._conn().raw.execute(text, params or {})
    if cursor.description is None:
        return []
    return [tuple(row) for row in cursor.fetchall()]


def log_id(store: Store, tenant: str) -> int:
    head = store.log_head(tenant)
    assert head is not None, f"tenant {tenant} has no log"
    return head.log_id


def flip_bit(data: bytes, index: int = 0, bit: int = 0) -> bytes:
    out = bytearray(data)
    out[index] ^= 1 << bit
    return bytes(out)
