"""The node registry: which worker nodes there are, what they serve, and whether they are alive.

    nodes = Nodes(log, author="logline-id://service/logline.local", key=instance_key)
    node = nodes.register("logline-id://service/system.node-1.0a1b2c3d", "system",
                          NodeInfo(labels={"zone": "eu-1"}, queues=("default",), concurrency=4))
    nodes.heartbeat(node.identity, node.session, running=2)            # no span: nothing changed
    nodes.heartbeat(node.identity, node.session, running=1, draining=True)  # `node.draining`
    nodes.stopped(node.identity, node.session)                         # `node.offline`
    nodes.mark_lost(older_than_s=30)          # silent nodes: `node.lost` (the server does this)

A node is one row per identity (the identity of its API key) and a *session* per registration:
registering again, from a restart or from another process holding the same key, starts a new
session, and the old one's heartbeats are refused (`Conflict`). States:

    register ──▶ online ◀──────── heartbeat ────────┐
                   │ heartbeat(draining)            │ (a lost node heard from again)
                   ▼                                │
                 draining ──deregister──▶ offline   │
      online, draining ──no heartbeat for older_than_s──▶ lost

Every state change is a span on the log of the node's tenant (the tenant of its key; `system`
for an instance-wide node), written in the transaction that changes the row: `node.registered`,
`node.draining`, `node.online` (back from draining or lost), `node.offline`, `node.lost`, signed
by `author`, `caused_by` the node's previous span on that log, with the node's identity as
`flow_id`, so a node's history is one query. Heartbeats that change nothing write no span.
Whether a node is registered does not decide what it may claim: leases do that (`JobQueue`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from logline.engine.jobs import DEFAULT_QUEUE, check_queue
from logline.errors import Conflict, InvalidInput, NotFound
from logline.identity.ids import check_kind, uuid7
from logline.identity.keys import PrivateKey
from logline.ledger.admission import Prepared
from logline.ledger.log import Log
from logline.ledger.span import new_span
from logline.ledger.timefmt import format_ts
from logline.store.interface import Tx
from logline.store.sql import Connection, SqlStore, SqlTx

STATES = ("online", "draining", "offline", "lost")
LIVE = ("online", "draining")  # states that expect heartbeats
KINDS = {
    "online": "node.online",
    "draining": "node.draining",
    "offline": "node.offline",
    "lost": "node.lost",
}
MAX_LABELS = 32
MAX_LABEL_VALUE = 200
MAX_QUEUES = 32
MAX_TYPES = 500
MAX_CONCURRENCY = 10_000
MAX_RUNNING = 100_000
MAX_PID = 2**31 - 1
MAX_LOST_BATCH = 100
_LABEL_KEY = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/-]{0,62}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def check_labels(labels: Any) -> dict[str, str]:
    """Labels as given, checked: at most 32, keys of 1-63 letters, digits and `._/-` (starting
    with a letter or digit), values strings of at most 200 characters without control
    characters."""
    if not isinstance(labels, Mapping):
        raise InvalidInput("labels must be an object of string keys and string values")
    if len(labels) > MAX_LABELS:
        raise InvalidInput(f"at most {MAX_LABELS} labels, got {len(labels)}")
    for key, value in labels.items():
        if not isinstance(key, str) or not _LABEL_KEY.fullmatch(key):
            raise InvalidInput(
                "a label key is 1-63 characters of letters, digits and '._/-', starting with a "
                f"letter or digit, got {str(key)[:80]!r}"
            )
        if not isinstance(value, str):
            raise InvalidInput(
                f"label {key}: the value must be a string, got {type(value).__name__}"
            )
        if len(value) > MAX_LABEL_VALUE or _CONTROL.search(value):
            raise InvalidInput(
                f"label {key}: the value must be at most {MAX_LABEL_VALUE} characters, without "
                "control characters"
            )
    return dict(labels)


def parse_label(text: str) -> tuple[str, str]:
    """`key=value` (as `logline worker --label` takes it) → (key, value), checked."""
    key, sep, value = text.partition("=")
    if not sep:
        raise InvalidInput(f"a label is key=value, got {text[:80]!r}")
    check_labels({key: value})
    return key, value


def _text(name: str, value: Any, limit: int) -> str:
    if not isinstance(value, str) or len(value) > limit or _CONTROL.search(value):
        raise InvalidInput(f"{name} must be text of at most {limit} characters")
    return value


@dataclass(frozen=True, slots=True)
class NodeInfo:
    """What a node says about itself when it registers; validated by `check()`."""

    labels: Mapping[str, str] = field(default_factory=dict)
    queues: tuple[str, ...] = (DEFAULT_QUEUE,)
    types: tuple[str, ...] | None = None  # the job types it has handlers for; None: any
    concurrency: int = 1
    version: str = ""
    host: str = ""
    pid: int = 0

    def check(self) -> None:
        check_labels(self.labels)
        if not 1 <= len(self.queues) <= MAX_QUEUES:
            raise InvalidInput(f"a node serves 1 to {MAX_QUEUES} queues")
        for queue in self.queues:
            check_queue(queue)
        if self.types is not None:
            if not 1 <= len(self.types) <= MAX_TYPES:
                raise InvalidInput(f"types: 1 to {MAX_TYPES} job types, or none for any")
            for type_ in self.types:
                check_kind(type_)
        if not 1 <= self.concurrency <= MAX_CONCURRENCY:
            raise InvalidInput(f"concurrency must be between 1 and {MAX_CONCURRENCY}")
        _text("version", self.version, 64)
        _text("host", self.host, 255)
        if not 0 <= self.pid <= MAX_PID:
            raise InvalidInput(f"pid must be between 0 and {MAX_PID}")


@dataclass(frozen=True, slots=True)
class Node:
    identity: str
    tenant: str  # the tenant of its key; `system`: an instance-wide node
    session: str
    labels: dict[str, str]
    queues: tuple[str, ...]
    types: tuple[str, ...] | None
    concurrency: int
    running: int
    version: str
    host: str
    pid: int
    state: str
    registered_at: str
    last_seen: str
    span_id: str

    @classmethod
    def from_row(cls, row: tuple[Any, ...]) -> Node:
        values = list(row)
        values[3] = json.loads(values[3])  # labels
        values[4] = tuple(json.loads(values[4]))  # queues
        values[5] = None if values[5] is None else tuple(json.loads(values[5]))  # types
        return cls(*values)

    def to_json(self) -> dict[str, Any]:
        return {
            "identity": self.identity, "tenant": self.tenant, "session": self.session,
            "state": self.state, "labels": self.labels, "queues": list(self.queues),
            "types": None if self.types is None else list(self.types),
            "concurrency": self.concurrency, "running": self.running, "version": self.version,
            "host": self.host, "pid": self.pid, "registered_at": self.registered_at,
            "last_seen": self.last_seen, "span_id": self.span_id,
        }  # fmt: skip


def _conn(tx: Tx) -> Connection:
    assert isinstance(tx, SqlTx), "the node registry needs a SQL store"
    return tx.c


class Nodes:
    """The worker nodes of one store; state changes signed by `author` with `key`."""

    def __init__(
        self,
        log: Log,
        *,
        author: str,
        key: PrivateKey,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        if not isinstance(log.store, SqlStore):
            raise TypeError("the node registry needs a SQL store")
        self.log = log
        self.store: SqlStore = log.store
        self.author = author
        self.key = key
        self.public_key = str(key.public_key)
        self.clock = clock

    def _span(
        self,
        tenant: str,
        identity: str,
        kind: str,
        title: str,
        caused_by: str | None,
        **payload: Any,
    ) -> Prepared:
        span = new_span(
            self.key,
            tenant=tenant,
            author=self.author,
            kind=kind,
            title=title,
            payload={"node": identity, **payload},
            caused_by=caused_by,
            flow_id=identity,
            tags=["node"],
        )
        return Prepared(span, self.public_key)

    # --- what nodes do ----------------------------------------------------------------------------

    def register(self, identity: str, tenant: str, info: NodeInfo) -> Node:
        """Start a new session for the node (online); a session it or another process held
        before ends here."""
        info.check()
        labels = dict(sorted(info.labels.items()))
        queues = list(dict.fromkeys(info.queues))
        types = None if info.types is None else sorted(set(info.types))

        def work(tx: Tx, received: str) -> tuple[list[Prepared], Node]:
            c = _conn(tx)
            row = c.one("lock_worker_node", {"identity": identity})
            before = None if row is None else Node.from_row(row)
            session, now = uuid7(), format_ts(self.clock())
            replaced = None
            if before is not None and before.state in LIVE:
                replaced = {"session": before.session, "state": before.state}
            record = self._span(
                tenant, identity, "node.registered", f"Node {identity} registered",
                before.span_id if before is not None and before.tenant == tenant else None,
                session=session, state="online", labels=labels, queues=queues, types=types,
                concurrency=info.concurrency, version=info.version, host=info.host,
                pid=info.pid, replaced=replaced,
            )  # fmt: skip
            c.run(
                "upsert_worker_node",
                {
                    "identity": identity, "tenant": tenant, "session": session,
                    "labels": json.dumps(labels), "queues": json.dumps(queues),
                    "types": None if types is None else json.dumps(types),
                    "concurrency": info.concurrency, "version": info.version, "host": info.host,
                    "pid": info.pid, "now": now, "span_id": record.span.id,
                },
            )  # fmt: skip
            node = c.one("select_worker_node", {"identity": identity})
            assert node is not None
            return [record], Node.from_row(node)

        _, node = self.log.transact(tenant, work)
        assert isinstance(node, Node)
        return node

    def heartbeat(
        self, identity: str, session: str, *, running: int, draining: bool = False
    ) -> Node:
        """The node is alive, running `running` jobs, and draining (or not). Only a change of
        state is logged. `NotFound` for a node never registered, `Conflict` for a session that is
        not the node's current one, or that ended with a deregistration."""
        if not 0 <= running <= MAX_RUNNING:
            raise InvalidInput(f"running must be between 0 and {MAX_RUNNING}")
        state = "draining" if draining else "online"
        conn = self.store._conn()
        with self.store.wrap_exceptions(), self.store._transaction(conn):
            touched = conn.run(
                "touch_worker_node",
                {"identity": identity, "session": session, "state": state, "running": running,
                 "now": format_ts(self.clock())},
            )  # fmt: skip
            row = conn.one("select_worker_node", {"identity": identity}) if touched else None
        if row is not None:
            return Node.from_row(row)
        return self._change(identity, session, state, running)

    def stopped(self, identity: str, session: str) -> Node:
        """The node stopped on purpose (offline); idempotent for its current session."""
        return self._change(identity, session, "offline", 0)

    def _change(self, identity: str, session: str, state: str, running: int) -> Node:
        tenant = self.get(identity).tenant

        def work(tx: Tx, received: str) -> tuple[list[Prepared], Node]:
            c = _conn(tx)
            row = c.one("lock_worker_node", {"identity": identity})
            if row is None:
                raise NotFound(f"node {identity} is not registered")
            node = Node.from_row(row)
            if node.session != session:
                raise Conflict(
                    f"session {session} of node {identity} is over: the node registered again "
                    f"(session {node.session})"
                )
            now = format_ts(self.clock())
            if node.state == state:  # a concurrent heartbeat made the change already
                touch = {"identity": identity, "session": session, "state": state,
                         "running": running, "now": now}  # fmt: skip
                c.run("touch_worker_node", touch)
                return [], _replace(node, running=running, last_seen=now)
            if node.state == "offline":
                raise Conflict(f"node {identity} deregistered session {session}; register again")
            titles = {
                "online": f"Node {identity} is back online",
                "draining": f"Node {identity} is draining",
                "offline": f"Node {identity} went offline",
            }
            record = self._span(
                node.tenant, identity, KINDS[state], titles[state],
                node.span_id, session=session, state=state, previous=node.state, running=running,
            )  # fmt: skip
            return [record], self._save(c, node, state, running, now, record)

        _, node = self.log.transact(tenant, work)
        assert isinstance(node, Node)
        return node

    def _save(
        self, c: Connection, node: Node, state: str, running: int, now: str, record: Prepared
    ) -> Node:
        node = _replace(node, state=state, running=running, last_seen=now, span_id=record.span.id)
        c.run(
            "update_worker_node",
            {"identity": node.identity, "state": node.state, "running": node.running,
             "last_seen": node.last_seen, "span_id": node.span_id},
        )  # fmt: skip
        return node

    # --- what the server does ---------------------------------------------------------------------

    def mark_lost(self, older_than_s: float, limit: int = MAX_LOST_BATCH) -> list[Node]:
        """Online or draining nodes not heard from for `older_than_s`: now lost. Their jobs come
        back when their leases expire (`JobQueue.expire_leases`), not here."""
        if older_than_s <= 0:
            raise InvalidInput("older_than_s must be positive")
        before = format_ts(self.clock() - timedelta(seconds=older_than_s))
        with self.store._read() as c:
            stale = [
                (str(identity), str(tenant))
                for identity, tenant in c.all(
                    "stale_worker_nodes", {"before": before, "limit": limit}
                )
            ]
        lost = []
        for identity, tenant in stale:

            def work(
                tx: Tx, received: str, identity: str = identity, tenant: str = tenant
            ) -> tuple[list[Prepared], Node | None]:
                c = _conn(tx)
                row = c.one("lock_worker_node", {"identity": identity})
                node = None if row is None else Node.from_row(row)
                if (
                    node is None
                    or node.tenant != tenant
                    or node.state not in LIVE
                    or node.last_seen >= before
                ):
                    return [], None  # heard from, re-registered or stopped meanwhile
                record = self._span(
                    tenant, identity, "node.lost",
                    f"Node {identity} lost: no heartbeat since {node.last_seen}", node.span_id,
                    session=node.session, state="lost", previous=node.state,
                    running=node.running, last_seen=node.last_seen,
                )  # fmt: skip
                return [record], self._save(c, node, "lost", node.running, node.last_seen, record)

            _, node = self.log.transact(tenant, work)
            if node is not None:
                lost.append(node)
        return lost

    # --- reading ----------------------------------------------------------------------------------

    def get(self, identity: str) -> Node:
        with self.store._read() as c:
            row = c.one("select_worker_node", {"identity": identity})
        if row is None:
            raise NotFound(f"node {identity} is not registered")
        return Node.from_row(row)

    def nodes(
        self, tenants: Sequence[str] | None = None, *, states: Sequence[str] = ()
    ) -> list[Node]:
        """The nodes of `tenants` (None: all), in identity order; only `states`, if given."""
        for state in states:
            if state not in STATES:
                raise InvalidInput(f"state must be one of {', '.join(STATES)}")
        with self.store._read() as c:
            if tenants is None:
                rows = c.all("worker_nodes", {})
            else:
                rows = c.all("worker_nodes_among", {"tenants": c.listify(sorted(set(tenants)))})
        found = [Node.from_row(row) for row in rows]
        return [node for node in found if not states or node.state in states]

    def by_state(self) -> dict[str, tuple[int, str | None]]:
        """For metrics: every state (none left out) → (how many nodes are in it, the oldest
        `last_seen` among them, None when there are none)."""
        with self.store._read() as c:
            rows = c.all("worker_node_states", {})
        found: dict[str, tuple[int, str | None]] = dict.fromkeys(STATES, (0, None))
        for state, n, oldest in rows:
            found[str(state)] = (int(n), str(oldest))
        return found


def _replace(node: Node, **changes: Any) -> Node:
    return replace(node, **changes)
