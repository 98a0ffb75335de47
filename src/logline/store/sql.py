"""The shared DB-API implementation of `Store`; dialects supply connections and SQL text.

SQL lives in `store/sql/` (common.sql and one file per dialect); the only SQL assembled here is
the WHERE clause of `query`, from fixed fragments with bound parameters.
"""

from __future__ import annotations

import base64
import json
import re
import threading
import weakref
from abc import abstractmethod
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from typing import Any

from logline.errors import InvalidInput
from logline.ledger.merkle import NodeId
from logline.store.interface import (
    CheckpointRecord,
    IdentityRecord,
    KeyRecord,
    LogHead,
    NewEntry,
    Page,
    Query,
    SpanRef,
    Store,
    StoredSpan,
    Tx,
    node_key,
    node_of_key,
)
from logline.store.queries import load_queries

Row = tuple[Any, ...]
MAX_PAGE = 1000
MAX_KINDS = 500
_KIND_GLOB = re.compile(r"[a-z0-9_.*?]{1,128}")


class Connection:
    """The little of a DB-API connection the store uses, with SQL looked up by block name."""

    def __init__(self, raw: Any, queries: dict[str, str], listify: Callable[[list[Any]], Any]):
        self.raw = raw
        self.queries = queries
        self.listify = listify

    def all(self, name: str, params: dict[str, Any]) -> list[Row]:
        return list(self.raw.execute(self.queries[name], params).fetchall())

    def one(self, name: str, params: dict[str, Any]) -> Row | None:
        row = self.raw.execute(self.queries[name], params).fetchone()
        return None if row is None else tuple(row)

    def run(self, name: str, params: dict[str, Any]) -> int:
        return int(self.raw.execute(self.queries[name], params).rowcount)

    def many(self, name: str, rows: Sequence[dict[str, Any]]) -> None:
        if rows:
            self.raw.cursor().executemany(self.queries[name], rows)

    def sql(self, text: str, params: dict[str, Any]) -> list[Row]:
        return list(self.raw.execute(text, params).fetchall())


class SqlTx(Tx):
    def __init__(self, conn: Connection) -> None:
        self.c = conn
        self._savepoints = 0

    def lock_log(self, tenant: str, created_at: str) -> LogHead:
        row = self.c.one("lock_log", {"tenant": tenant})
        created = False
        if row is None:
            created = self.c.run("insert_log", {"tenant": tenant, "created_at": created_at}) > 0
            row = self.c.one("lock_log", {"tenant": tenant})
        assert row is not None
        return LogHead(int(row[0]), str(row[1]), int(row[2]), created=created)

    def delete_empty_log(self, log_id: int) -> None:
        self.c.run("delete_empty_log", {"log_id": log_id})

    def nodes(self, log_id: int, ids: Sequence[NodeId]) -> dict[NodeId, bytes]:
        return _select_nodes(self.c, log_id, ids)

    def existing_span_ids(self, log_id: int, span_ids: Sequence[str]) -> set[str]:
        rows = self.c.all(
            "existing_span_ids", {"log_id": log_id, "span_ids": self.c.listify(list(span_ids))}
        )
        return {str(r[0]) for r in rows}

    def span_ref(self, log_id: int, span_id: str) -> SpanRef | None:
        row = self.c.one("span_ref", {"log_id": log_id, "span_id": span_id})
        if row is None:
            return None
        seq, author, kind, status, digest, reverted_by, redacted_by, payloads = row
        return SpanRef(
            int(seq), author, kind, status, digest, reverted_by, redacted_by, bool(payloads)
        )

    def insert_entries(self, log_id: int, rows: Sequence[NewEntry]) -> None:
        entries: list[dict[str, Any]] = []
        tags: list[dict[str, Any]] = []
        payloads: list[dict[str, Any]] = []
        for row in rows:
            body, seq = row.span.body, row.entry.seq
            entries.append({
                "log_id": log_id, "seq": seq, "span_id": body["id"],
                "span_hash": row.span.hash, "leaf": row.leaf, "body": row.span.body_bytes,
                "signature": row.span.signature, "ts": body["ts"], "received": row.entry.received,
                "author": body["author"], "kind": body["kind"], "title": body["title"],
                "status": body["status"], "payload_digest": body["payload_digest"],
                "caused_by": body["caused_by"], "replay_of": body["replay_of"],
                "contract_id": body["contract_id"], "workflow_id": body["workflow_id"],
                "flow_id": body["flow_id"], "visibility": body["visibility"],
                "tags": json.dumps(body["tags"]),
            })  # fmt: skip
            tags.extend({"log_id": log_id, "tag": tag, "seq": seq} for tag in body["tags"])
            if row.span.payload_bytes is not None:
                payloads.append({"log_id": log_id, "seq": seq, "data": row.span.payload_bytes})
        self.c.many("insert_entry", entries)
        self.c.many("insert_tag", tags)
        self.c.many("insert_payload", payloads)
        kinds = sorted({row.span.kind for row in rows})
        self.c.many("insert_kind", [{"log_id": log_id, "kind": kind} for kind in kinds])

    def insert_nodes(self, log_id: int, nodes: Sequence[tuple[int, int, bytes]]) -> None:
        self.c.many("insert_node", [
            {"log_id": log_id, "node": node_key(level, index), "hash": h}
            for level, index, h in nodes
        ])  # fmt: skip

    def set_size(self, log_id: int, size: int) -> None:
        self.c.run("set_size", {"log_id": log_id, "size": size})

    def identity(self, identity: str) -> IdentityRecord | None:
        row = self.c.one("lock_identity", {"id": identity})
        return None if row is None else _identity(row)

    def keys(self, identity: str) -> list[KeyRecord]:
        return [KeyRecord(*r) for r in self.c.all("select_keys", {"identity": identity})]

    def delete_identity(self, identity: str) -> None:
        self.c.run("delete_keys", {"id": identity})
        self.c.run("delete_identity", {"id": identity})

    def last_received(self, log_id: int, size: int) -> str | None:
        row = self.c.one("last_received", {"log_id": log_id, "seq": size - 1}) if size else None
        return None if row is None else str(row[0])

    def insert_identity(self, record: IdentityRecord) -> None:
        self.c.run("insert_identity", {
            "id": record.id, "kind": record.kind, "public_key": record.public_key,
            "status": record.status, "tenant": record.tenant, "created_at": record.created_at,
            "span_id": record.span_id, "display_name": record.display_name,
            "expires_at": record.expires_at, "claimed_by": record.claimed_by,
        })  # fmt: skip

    def update_identity(
        self,
        identity: str,
        *,
        public_key: str | None = None,
        status: str | None = None,
        claimed_by: str | None = None,
    ) -> None:
        self.c.run(
            "update_identity",
            {"id": identity, "public_key": public_key, "status": status, "claimed_by": claimed_by},
        )

    def insert_key(self, record: KeyRecord) -> None:
        self.c.run("insert_key", {
            "identity": record.identity, "public_key": record.public_key,
            "valid_from": record.valid_from, "valid_until": record.valid_until,
            "span_id": record.span_id,
        })  # fmt: skip

    def close_key(self, identity: str, public_key: str, valid_until: str) -> None:
        self.c.run(
            "close_key",
            {"identity": identity, "public_key": public_key, "valid_until": valid_until},
        )

    def mark_span(
        self,
        log_id: int,
        span_id: str,
        *,
        reverted_by: str | None = None,
        redacted_by: str | None = None,
    ) -> None:
        if reverted_by is not None:
            self.c.run("mark_reverted", {"log_id": log_id, "span_id": span_id, "by": reverted_by})
        if redacted_by is not None:
            self.c.run("mark_redacted", {"log_id": log_id, "span_id": span_id, "by": redacted_by})

    def delete_payload(self, log_id: int, span_id: str) -> bool:
        return self.c.run("delete_payload", {"log_id": log_id, "span_id": span_id}) > 0

    @contextmanager
    def savepoint(self) -> Iterator[None]:
        self._savepoints += 1
        name = f"logline_sp{self._savepoints}"
        self.c.raw.execute(f"SAVEPOINT {name}")
        try:
            yield
        except BaseException:
            self.c.raw.execute(f"ROLLBACK TO SAVEPOINT {name}")
            self.c.raw.execute(f"RELEASE SAVEPOINT {name}")
            raise
        self.c.raw.execute(f"RELEASE SAVEPOINT {name}")

    def announce(self, tenant: str, size: int) -> None:
        self.c.all("announce", {"payload": f"{tenant} {size}"})

    def announce_jobs(self, tenant: str) -> None:
        self.c.all("announce_jobs", {"tenant": tenant})


def _select_nodes(c: Connection, log_id: int, ids: Sequence[NodeId]) -> dict[NodeId, bytes]:
    if not ids:
        return {}
    keys = sorted({node_key(level, index) for level, index in ids})
    rows = c.all("select_nodes", {"log_id": log_id, "nodes": c.listify(keys)})
    return {node_of_key(int(k)): bytes(h) for k, h in rows}


def _identity(row: Row) -> IdentityRecord:
    return IdentityRecord(*row)


def _blob(value: Any) -> bytes:
    # SQLite columns are dynamically typed: a tampered row may hold TEXT where bytes belong.
    # Hand verification the bytes anyway, so it can name the bad entry.
    return value.encode("utf-8", "surrogateescape") if isinstance(value, str) else bytes(value)


def _stored(tenant: str, row: Row) -> StoredSpan:
    seq, _span_hash, leaf, body, signature, reverted_by, redacted_by, payload = row
    return StoredSpan(
        tenant,
        int(seq),
        _blob(leaf),
        _blob(body),
        _blob(signature),
        None if payload is None else _blob(payload),
        reverted_by,
        redacted_by,
    )


class SqlStore(Store):
    """`Store` over a DB-API driver. Each thread gets its own connection."""

    dialect: str

    def __init__(self, url: str) -> None:
        self.url = url
        self._local = threading.local()
        self._all: list[Connection] = []
        self._lock = threading.Lock()
        # Fragments that `query` assembles, in `:name` style like the rest of its SQL.
        self._fragments = load_queries("sqlite" if self.dialect == "sqlite" else "postgres")

    # --- what a dialect provides ----------------------------------------------------------------

    @abstractmethod
    def _connect(self) -> Connection: ...

    @abstractmethod
    def _transaction(self, conn: Connection) -> AbstractContextManager[None]:
        """BEGIN (taking the dialect's write lock) ... COMMIT, or ROLLBACK on error."""

    @abstractmethod
    def wrap_exceptions(self) -> AbstractContextManager[None]:
        """Translate the driver's exceptions into `StorageError`."""

    # --- shared -----------------------------------------------------------------------------------

    def _conn(self) -> Connection:
        conn: Connection | None = getattr(self._local, "conn", None)
        if conn is not None and getattr(conn.raw, "closed", False):
            # The database dropped it (a restart, a failover) and the driver closed it for good:
            # connect anew, or this thread would fail every request from now on.
            self._local.released.detach()
            self._release(conn)
            conn = None
        if conn is None:
            with self.wrap_exceptions():
                conn = self._connect()
            self._local.conn = conn
            with self._lock:
                self._all.append(conn)
            # Thread pools retire idle threads and start new ones: a connection lives as long as
            # its thread, or the store would keep one open for every thread that ever ran.
            self._local.released = weakref.finalize(threading.current_thread(), self._release, conn)
        return conn

    def _release(self, conn: Connection) -> None:
        with self._lock:
            if conn not in self._all:
                return  # closed with the store already
            self._all.remove(conn)
        try:
            conn.raw.close()
        except Exception:
            pass

    @contextmanager
    def write(self) -> Iterator[Tx]:
        conn = self._conn()
        with self.wrap_exceptions(), self._transaction(conn):
            yield SqlTx(conn)

    @contextmanager
    def _read(self) -> Iterator[Connection]:
        with self.wrap_exceptions():
            yield self._conn()

    def log_head(self, tenant: str) -> LogHead | None:
        with self._read() as c:
            row = c.one("log_head", {"tenant": tenant})
        return None if row is None else LogHead(int(row[0]), str(row[1]), int(row[2]))

    def logs(self) -> list[LogHead]:
        with self._read() as c:
            return [LogHead(int(r[0]), str(r[1]), int(r[2])) for r in c.all("logs", {})]

    def nodes(self, log_id: int, ids: Sequence[NodeId]) -> dict[NodeId, bytes]:
        with self._read() as c:
            return _select_nodes(c, log_id, ids)

    def span(self, tenant: str, span_id: str) -> StoredSpan | None:
        head = self.log_head(tenant)
        if head is None:
            return None
        with self._read() as c:
            row = c.one("select_span_by_id", {"log_id": head.log_id, "span_id": span_id})
        return None if row is None else _stored(tenant, row)

    def span_at(self, tenant: str, seq: int) -> StoredSpan | None:
        head = self.log_head(tenant)
        if head is None:
            return None
        with self._read() as c:
            row = c.one("select_span_at", {"log_id": head.log_id, "seq": seq})
        return None if row is None else _stored(tenant, row)

    def spans(self, tenant: str, start: int, end: int, batch: int = 1000) -> Iterator[StoredSpan]:
        head = self.log_head(tenant)
        if head is None:
            return
        while start < end:
            with self._read() as c:
                rows = c.all(
                    "select_span_range",
                    {"log_id": head.log_id, "start": start, "end": end, "limit": batch},
                )
            if not rows:
                return
            for row in rows:
                yield _stored(tenant, row)
            start = int(rows[-1][0]) + 1

    def authors(self, tenant: str, start: int, end: int) -> list[str]:
        head = self.log_head(tenant)
        if head is None:
            return []
        with self._read() as c:
            rows = c.all("authors_in_range", {"log_id": head.log_id, "start": start, "end": end})
        return [str(row[0]) for row in rows]

    def query(self, query: Query) -> Page:
        if not 1 <= query.limit <= MAX_PAGE:
            raise InvalidInput(f"limit must be between 1 and {MAX_PAGE}")
        if query.kind is not None:
            check_kind_glob(query.kind)
        head = self.log_head(query.tenant)
        if head is None:
            return Page()
        where = ["e.log_id = :log_id"]
        params: dict[str, Any] = {"log_id": head.log_id, "limit": query.limit + 1}
        for column in ("author", "status", "contract_id", "workflow_id", "flow_id",
                       "caused_by", "replay_of"):  # fmt: skip
            value = getattr(query, column)
            if value is not None:
                where.append(f"e.{column} = :{column}")
                params[column] = value
        if query.kind is not None:
            kinds = self._kinds(head.log_id, query.kind)
            if not kinds:
                return Page()
            names = [f"kind{i}" for i in range(len(kinds))]
            where.append(f"e.kind IN ({', '.join(':' + n for n in names)})")
            params.update(zip(names, kinds, strict=True))
        if query.text is not None:
            where.append(self._fragments["title_match"])
            params["text"] = self._search_text(query.text)
        if query.since is not None:
            where.append("e.ts >= :since")
            params["since"] = query.since
        if query.until is not None:
            where.append("e.ts < :until")
            params["until"] = query.until
        if query.after_seq is not None:
            where.append("e.seq > :after_seq")
            params["after_seq"] = query.after_seq
        if query.before_seq is not None:
            where.append("e.seq < :before_seq")
            params["before_seq"] = query.before_seq
        # With tags, the first tag's rows drive the query in `seq` order (its primary key);
        # the others are checked per row.
        source, order_by = "entries e", "e.seq"
        for i, tag in enumerate(query.tags):
            params[f"tag{i}"] = tag
            if i == 0:
                source = "span_tags t0 JOIN entries e ON e.log_id = t0.log_id AND e.seq = t0.seq"
                where.append("t0.log_id = :log_id AND t0.tag = :tag0")
                order_by = "t0.seq"
            else:
                where.append(
                    f"EXISTS (SELECT 1 FROM span_tags t WHERE t.log_id = e.log_id "
                    f"AND t.tag = :tag{i} AND t.seq = e.seq)"
                )
        order = "DESC" if query.descending else "ASC"
        sql = (
            "SELECT e.seq, e.span_hash, e.leaf, e.body, e.signature, e.reverted_by, "
            f"e.redacted_by, p.data FROM {source} LEFT JOIN payloads p "
            "ON p.log_id = e.log_id AND p.seq = e.seq "
            f"WHERE {' AND '.join(where)} ORDER BY {order_by} {order} LIMIT :limit"
        )
        with self._read() as c:
            rows = c.sql(self._prepare(sql), params)
        items = [_stored(query.tenant, row) for row in rows[: query.limit]]
        cursor = None
        if len(rows) > query.limit:
            cursor = encode_cursor(items[-1].seq, query.descending)
        return Page(items, cursor)

    def _prepare(self, sql: str) -> str:
        return sql

    def _kinds(self, log_id: int, pattern: str) -> list[str]:
        """The log's kinds a glob matches (at most MAX_KINDS; then the glob itself is refused)."""
        check_kind_glob(pattern)
        if "*" not in pattern and "?" not in pattern:
            return [pattern]
        params = {"log_id": log_id, "pattern": glob_to_like(pattern), "limit": MAX_KINDS + 1}
        with self._read() as c:
            kinds = [str(row[0]) for row in c.all("kinds_like", params)]
        if len(kinds) > MAX_KINDS:
            raise InvalidInput(f"kind filter {pattern!r} matches over {MAX_KINDS} kinds; narrow it")
        return kinds

    def _search_text(self, text: str) -> str:
        """The search words, as the dialect's full-text match expects them."""
        words = search_words(text)
        return " ".join(words)

    def identity(self, identity: str) -> IdentityRecord | None:
        with self._read() as c:
            row = c.one("select_identity", {"id": identity})
        return None if row is None else _identity(row)

    def identities(self) -> list[IdentityRecord]:
        with self._read() as c:
            return [_identity(r) for r in c.all("select_identities", {})]

    def keys(self, identity: str) -> list[KeyRecord]:
        with self._read() as c:
            return [KeyRecord(*r) for r in c.all("select_keys", {"identity": identity})]

    def latest_checkpoint(self, log_id: int) -> CheckpointRecord | None:
        with self._read() as c:
            row = c.one("latest_checkpoint", {"log_id": log_id})
        return None if row is None else _checkpoint(row)

    def checkpoint(self, log_id: int, size: int) -> CheckpointRecord | None:
        with self._read() as c:
            row = c.one("checkpoint_at", {"log_id": log_id, "size": size})
        return None if row is None else _checkpoint(row)

    def checkpoints(self, log_id: int) -> list[CheckpointRecord]:
        with self._read() as c:
            return [_checkpoint(r) for r in c.all("checkpoints", {"log_id": log_id})]

    def insert_checkpoint(self, log_id: int, record: CheckpointRecord) -> None:
        conn = self._conn()
        with self.wrap_exceptions(), self._transaction(conn):
            conn.run(
                "insert_checkpoint",
                {
                    "log_id": log_id,
                    "size": record.size,
                    "root": record.root,
                    "note": record.note,
                    "created_at": record.created_at,
                },
            )

    def close(self) -> None:
        with self._lock:
            conns, self._all = self._all, []
        for conn in conns:
            try:
                conn.raw.close()
            except Exception:
                pass
        self._local = threading.local()


def _checkpoint(row: Row) -> CheckpointRecord:
    return CheckpointRecord(int(row[0]), bytes(row[1]), str(row[2]), str(row[3]))


def check_kind_glob(pattern: str) -> str:
    """A kind glob: kind characters with `*` (any run) and `?` (one character)."""
    if not _KIND_GLOB.fullmatch(pattern):
        raise InvalidInput(f"kind filter {pattern!r} is not a kind glob (a-z, 0-9, _, ., *, ?)")
    return pattern


def search_words(text: str) -> list[str]:
    words = re.findall(r"\w+", text)
    if not words:
        raise InvalidInput("a title search needs at least one word")
    return words


def glob_to_like(pattern: str) -> str:
    """`payment.*` → `payment.%`; `?` matches one character; LIKE's own wildcards are escaped."""
    out = []
    for ch in pattern:
        if ch == "*":
            out.append("%")
        elif ch == "?":
            out.append("_")
        elif ch in "%_\\":
            out.append("\\" + ch)
        else:
            out.append(ch)
    return "".join(out)


def encode_cursor(seq: int, descending: bool) -> str:
    raw = json.dumps({"seq": seq, "desc": descending}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[int, bool]:
    """A cursor from `Page.next_cursor` → (last seq, descending). Anything else is InvalidInput."""
    try:
        data = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        seq, desc = data["seq"], data["desc"]
        if type(seq) is not int or seq < 0 or type(desc) is not bool:
            raise ValueError
    except (ValueError, KeyError, TypeError) as exc:
        raise InvalidInput(f"invalid cursor {cursor[:40]!r}") from exc
    return seq, desc
