"""Helpers shared by the test suites: a controllable clock, identities, spans, raw SQL access."""

from __future__ import annotations

import importlib.util
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

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


# --- published test vectors (tests/vectors, written by tests/vectors/generate.py) ---------------

VECTORS = Path(__file__).resolve().parent / "vectors"


def load_vectors(folder: str) -> list[Any]:
    """One `pytest.param` per JSON file under tests/vectors/<folder>, with the file name as id."""
    paths = sorted((VECTORS / folder).rglob("*.json"))
    assert paths, f"no vectors under tests/vectors/{folder}: run tests/vectors/generate.py"
    return [pytest.param(json.loads(p.read_text(encoding="utf-8")), id=p.stem) for p in paths]


def vector_drift(folder: str) -> list[str]:
    """Files under tests/vectors/<folder> that are missing, extra or differ from the generator."""
    spec = importlib.util.spec_from_file_location("vectors_generate", VECTORS / "generate.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    built: dict[str, str] = module.build()
    expected = {name: text for name, text in built.items() if name.startswith(f"{folder}/")}
    on_disk = {
        p.relative_to(VECTORS).as_posix(): p.read_text(encoding="utf-8")
        for p in sorted((VECTORS / folder).rglob("*.json"))
    }
    return sorted(name for name in expected.keys() | on_disk.keys()
                  if expected.get(name) != on_disk.get(name))  # fmt: skip
