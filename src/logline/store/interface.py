"""The store interface: everything the ledger reads and writes, on any backend.

Two backends implement it on one shared DB-API implementation (`store.sql.SqlStore`): SQLite (the
embedded default) and PostgreSQL. Writes happen only inside `Store.write()`, a transaction that
holds the tenant's log lock from `Tx.lock_log` until commit, which is what keeps per-tenant order
under concurrent writers and processes. Reads need no transaction: every row they return is
immutable once committed, except the derived `reverted_by`/`redacted_by` marks and payload
deletion.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any

from logline.canonical import b64encode
from logline.ledger.entry import Entry
from logline.ledger.merkle import NodeId
from logline.ledger.span import Span, span_from_stored


@dataclass(frozen=True, slots=True)
class Notice:
    """An announcement from another process: `topic` "log" (the tenant's log grew to `size`) or
    "jobs" (jobs of the tenant became claimable; `size` is -1)."""

    topic: str
    tenant: str
    size: int = -1


IDLE = Notice("idle", "")  # `Store.listen` yields it while nothing happens


@dataclass(frozen=True, slots=True)
class LogHead:
    log_id: int
    tenant: str
    size: int
    created: bool = False  # by this transaction's `lock_log`


@dataclass(frozen=True, slots=True)
class StoredSpan:
    """A span as the log holds it: the stored bytes, parsed on access.

    Parsing is deferred so that `verify` can attribute unreadable bytes to their entry instead of
    failing to read the log at all.
    """

    tenant: str
    seq: int
    leaf: bytes
    body: bytes
    signature: bytes
    payload: bytes | None
    reverted_by: str | None = None
    redacted_by: str | None = None

    @property
    def span(self) -> Span:
        return span_from_stored(self.body, self.signature, self.payload)

    @property
    def entry(self) -> Entry:
        return Entry.from_leaf_data(self.leaf)

    def json_text(self) -> str:
        """`to_json()` as JSON text, spliced from the stored bytes without parsing them.

        The leaf data, body and payload are stored as the canonical JSON the log verified when
        it admitted them (docs/PROTOCOL.md §2-3), so serving them as stored is exact and costs a
        fraction of parsing and re-serializing them; readers verify what they get anyway.
        """
        span = f'{{"body":{self.body.decode()},"signature":"{b64encode(self.signature)}"'
        if self.payload is not None:
            span += f',"payload":{self.payload.decode()}'
        text = f'{{"seq":{self.seq},"entry":{self.leaf.decode()},"span":{span}}}'
        if self.reverted_by is not None:
            text += f',"reverted_by":{json.dumps(self.reverted_by)}'
        if self.redacted_by is not None:
            text += f',"redacted_by":{json.dumps(self.redacted_by)}'
        return text + "}"

    def to_json(self) -> dict[str, Any]:
        """The entry, the span in wire form and the log's marks on it (a bundle's entry line)."""
        result: dict[str, Any] = {
            "seq": self.seq,
            "entry": self.entry.to_json(),
            "span": self.span.to_json(),
        }
        if self.reverted_by is not None:
            result["reverted_by"] = self.reverted_by
        if self.redacted_by is not None:
            result["redacted_by"] = self.redacted_by
        return result


@dataclass(frozen=True, slots=True)
class NewEntry:
    """One row the sequencer writes: the span, its entry, and the entry's exact leaf bytes."""

    span: Span
    entry: Entry
    leaf: bytes


@dataclass(frozen=True, slots=True)
class SpanRef:
    """What admission checks need to know about an already-logged span."""

    seq: int
    author: str
    kind: str
    status: str
    payload_digest: str | None
    reverted_by: str | None
    redacted_by: str | None
    has_payload: bool


@dataclass(frozen=True, slots=True)
class IdentityRecord:
    id: str
    kind: str
    public_key: str
    status: str  # active | claimed | foreign (imported; registered on another log, cannot sign)
    tenant: str
    created_at: str
    span_id: str
    display_name: str | None = None
    expires_at: str | None = None
    claimed_by: str | None = None


@dataclass(frozen=True, slots=True)
class KeyRecord:
    identity: str
    public_key: str
    valid_from: str
    valid_until: str | None
    span_id: str


@dataclass(frozen=True, slots=True)
class CheckpointRecord:
    size: int
    root: bytes
    note: str
    created_at: str


@dataclass(frozen=True, slots=True)
class Query:
    """Filters for `Store.query`; all given filters must hold. `kind` is a glob (`payment.*`)."""

    tenant: str
    kind: str | None = None
    author: str | None = None
    status: str | None = None
    tags: tuple[str, ...] = ()
    since: str | None = None
    until: str | None = None
    contract_id: str | None = None
    workflow_id: str | None = None
    flow_id: str | None = None
    caused_by: str | None = None
    replay_of: str | None = None
    text: str | None = None  # full-text search over titles: every word must occur
    after_seq: int | None = None
    before_seq: int | None = None
    descending: bool = False
    limit: int = 100


@dataclass(frozen=True, slots=True)
class Page:
    items: list[StoredSpan] = field(default_factory=list)
    next_cursor: str | None = None


class Tx(ABC):
    """One write transaction. Every method runs inside it; nothing is visible until commit."""

    @abstractmethod
    def lock_log(self, tenant: str, created_at: str) -> LogHead:
        """Lock the tenant's log for appending (creating it if missing) and return its head."""

    @abstractmethod
    def delete_empty_log(self, log_id: int) -> None:
        """Undo `lock_log`'s creation of a log that ends up with no entry."""

    @abstractmethod
    def nodes(self, log_id: int, ids: Sequence[NodeId]) -> dict[NodeId, bytes]: ...

    @abstractmethod
    def existing_span_ids(self, log_id: int, span_ids: Sequence[str]) -> set[str]: ...

    @abstractmethod
    def span_ref(self, log_id: int, span_id: str) -> SpanRef | None: ...

    @abstractmethod
    def insert_entries(self, log_id: int, rows: Sequence[NewEntry]) -> None:
        """Insert entries, their payloads and their tags."""

    @abstractmethod
    def insert_nodes(self, log_id: int, nodes: Sequence[tuple[int, int, bytes]]) -> None: ...

    @abstractmethod
    def set_size(self, log_id: int, size: int) -> None: ...

    @abstractmethod
    def identity(self, identity: str) -> IdentityRecord | None:
        """The identity, read-locked until commit where the backend has row locks."""

    @abstractmethod
    def keys(self, identity: str) -> list[KeyRecord]: ...

    @abstractmethod
    def delete_identity(self, identity: str) -> None:
        """Remove an identity and its key records (to replace a `foreign` placeholder)."""

    @abstractmethod
    def last_received(self, log_id: int, size: int) -> str | None:
        """The `received` time of the log's last entry, if it has one."""

    @abstractmethod
    def insert_identity(self, record: IdentityRecord) -> None: ...

    @abstractmethod
    def update_identity(
        self,
        identity: str,
        *,
        public_key: str | None = None,
        status: str | None = None,
        claimed_by: str | None = None,
    ) -> None: ...

    @abstractmethod
    def insert_key(self, record: KeyRecord) -> None: ...

    @abstractmethod
    def close_key(self, identity: str, public_key: str, valid_until: str) -> None: ...

    @abstractmethod
    def mark_span(
        self,
        log_id: int,
        span_id: str,
        *,
        reverted_by: str | None = None,
        redacted_by: str | None = None,
    ) -> None: ...

    @abstractmethod
    def delete_payload(self, log_id: int, span_id: str) -> bool:
        """Delete the payload of a span; False if there was none."""

    @abstractmethod
    def savepoint(self) -> AbstractContextManager[None]:
        """A nested scope: an exception leaving it undoes what was done in it, and propagates."""

    @abstractmethod
    def announce(self, tenant: str, size: int) -> None:
        """Tell other processes, on commit, that the tenant's log grew to `size` (see `listen`)."""

    @abstractmethod
    def announce_jobs(self, tenant: str) -> None:
        """Tell other processes, on commit, that jobs of the tenant became claimable."""


class Store(ABC):
    """Storage of logs, entries, Merkle nodes, checkpoints and identities."""

    url: str
    dialect: str

    @abstractmethod
    def write(self) -> AbstractContextManager[Tx]:
        """A write transaction; commits on normal exit, rolls back on an exception."""

    @abstractmethod
    def log_head(self, tenant: str) -> LogHead | None: ...

    @abstractmethod
    def logs(self) -> list[LogHead]: ...

    @abstractmethod
    def nodes(self, log_id: int, ids: Sequence[NodeId]) -> dict[NodeId, bytes]: ...

    @abstractmethod
    def span(self, tenant: str, span_id: str) -> StoredSpan | None: ...

    @abstractmethod
    def span_at(self, tenant: str, seq: int) -> StoredSpan | None: ...

    @abstractmethod
    def spans(self, tenant: str, start: int, end: int, batch: int = 1000) -> Iterator[StoredSpan]:
        """Entries with start <= seq < end, in order, fetched `batch` at a time."""

    @abstractmethod
    def authors(self, tenant: str, start: int, end: int) -> list[str]:
        """The distinct authors of entries start <= seq < end, sorted."""

    @abstractmethod
    def query(self, query: Query) -> Page: ...

    @abstractmethod
    def identity(self, identity: str) -> IdentityRecord | None: ...

    @abstractmethod
    def identities(self) -> list[IdentityRecord]: ...

    @abstractmethod
    def keys(self, identity: str) -> list[KeyRecord]: ...

    @abstractmethod
    def latest_checkpoint(self, log_id: int) -> CheckpointRecord | None: ...

    @abstractmethod
    def checkpoint(self, log_id: int, size: int) -> CheckpointRecord | None: ...

    @abstractmethod
    def checkpoints(self, log_id: int) -> list[CheckpointRecord]: ...

    @abstractmethod
    def insert_checkpoint(self, log_id: int, record: CheckpointRecord) -> None:
        """Store a checkpoint; storing the same size twice keeps the first."""

    @abstractmethod
    def listen(self, stop: Callable[[], bool]) -> Iterator[Notice] | None:
        """Other processes' announcements while `stop()` is false, as their transactions commit.

        None when the backend cannot push them; watchers then poll. The iterator yields
        `IDLE` about twice a second while idle, so its consumer can check `stop`.
        """

    @abstractmethod
    def close(self) -> None: ...


# Merkle nodes are stored under one integer key: the level in the top bits, the index below.
NODE_LEVEL_SHIFT = 56


def node_key(level: int, index: int) -> int:
    return (level << NODE_LEVEL_SHIFT) | index


def node_of_key(key: int) -> tuple[int, int]:
    return key >> NODE_LEVEL_SHIFT, key & ((1 << NODE_LEVEL_SHIFT) - 1)
