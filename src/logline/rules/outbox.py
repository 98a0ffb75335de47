"""The follow-up outbox: what a decision asks for after commit (emit, enqueue, webhook), written in
the transaction that logs its trigger and run afterwards by a `Dispatcher`.

    stopped = queue_follow_ups(c, tenant, span.id, decision.follow_ups, chain, received, max_depth)
    dispatcher = Dispatcher(log, jobs, author=instance_identity, key=instance_key,
                            webhooks=WebhookAllowList(settings.rules_webhooks))
    dispatcher.run_due()            # every half second, in every server process

A row is `pending` until it ran (`done`, with what it made in `outcome`), could never run
(`failed`, with `last_error`), or was not to run at all (`stopped`: a cycle, or the chain depth
limit; written so by `queue_follow_ups`). A dispatcher *takes* due rows in a short transaction
(PostgreSQL skips rows another dispatcher is taking) by pushing their `next_at` a lease ahead:
if it dies, they are due again when the lease ends.

Exactly once (`emit`, `enqueue`): the row is marked done in the transaction that logs what it
made, under the tenant's log lock, after checking it is still pending. Whatever dies when, the
row and its span (or job) commit together or not at all, and a second run finds the row done.

At least once (`webhook`): HTTP cannot do better. A POST whose answer is lost (a timeout, the
process killed before the row is marked) is sent again with the same `LogLine-Delivery` header,
which receivers use to drop repeats. The request is signed (`webhook_message`, docs/PROTOCOL.md
§14): the signature covers the delivery id and the exact body bytes, so a replayed body cannot
pass as a new delivery.
"""

from __future__ import annotations

import json
import logging
import math
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from logline import __version__
from logline.canonical import b64decode, b64encode, canonicalize
from logline.engine.jobs import DEFAULT_QUEUE, Job, JobRequest
from logline.engine.queue import JobQueue
from logline.engine.stats import Tally
from logline.errors import (
    HeldForApproval,
    InvalidInput,
    LogLineError,
    SignatureError,
    StorageError,
)
from logline.identity.ids import uuid7
from logline.identity.keys import PrivateKey, PublicKey, domain_message
from logline.ledger.admission import Prepared
from logline.ledger.log import Log
from logline.ledger.span import new_span
from logline.ledger.timefmt import format_ts
from logline.rules.followups import CallWebhook, EmitSpan, EnqueueJob, FollowUp, follow_up_from_json
from logline.rules.webhooks import WebhookAllowList
from logline.store.interface import Tx
from logline.store.sql import Connection, SqlStore, SqlTx

WEBHOOK_DOMAIN = b"logline/webhook/v1"
BATCH = 50  # rows one pass takes
LEASE_S = 10.0  # how long a taken row is left alone before it is due again
WEBHOOK_TIMEOUT_S = 5.0
THREADS = 4  # rows run at once: their transactions share commits, a slow webhook one thread
WEBHOOK_ATTEMPTS = 10  # then the row is failed
BACKOFF_BASE_S = 2.0  # the wait after the first failed attempt; doubling up to the cap
BACKOFF_CAP_S = 600.0
MAX_ERROR_CHARS = 2000
log = logging.getLogger("logline.rules.outbox")


def _conn(tx: Tx) -> Connection:
    assert isinstance(tx, SqlTx), "the outbox needs a SQL store"
    return tx.c


# --- writing: in the transaction that logs the trigger -------------------------------------------


def queue_follow_ups(
    c: Connection,
    tenant: str,
    trigger: str,
    follow_ups: Sequence[FollowUp],
    chain: tuple[str, ...],
    at: str,
    max_depth: int,
) -> list[dict[str, str]]:
    """Write a row per follow-up of span `trigger`, due at `at`; those that may not run (and so
    are written `stopped`), each with the reason. `chain` names the rules whose follow-ups led
    to the trigger: a follow-up whose rule is in it is a cycle, and none may make it longer
    than `max_depth`."""
    stopped = []
    for follow_up in follow_ups:
        action = follow_up.to_json()
        reason = None
        if follow_up.rule in chain:
            reason = f"cycle: {' → '.join((*chain, follow_up.rule))}"
        elif len(chain) + 1 > max_depth:
            reason = f"chain depth limit {max_depth} reached: {' → '.join(chain)}"
        if reason is not None:
            stopped.append({"rule": follow_up.rule, "type": action["type"], "reason": reason})
        c.run(
            "insert_outbox",
            {"id": uuid7(), "tenant": tenant, "trigger": trigger, "rule": follow_up.rule,
             "action": json.dumps({**action, "chain": list(chain)}), "depth": len(chain) + 1,
             "state": "pending" if reason is None else "stopped", "next_at": at,
             "last_error": reason, "created_at": at},
        )  # fmt: skip
    return stopped


# --- webhook signatures ---------------------------------------------------------------------------


def webhook_message(delivery: str, body: bytes) -> bytes:
    """The bytes a webhook's `LogLine-Signature` signs: `logline/webhook/v1 || 0x00 ||
    <delivery id> || 0x0A || <body>` (docs/PROTOCOL.md §14)."""
    return domain_message(WEBHOOK_DOMAIN, delivery.encode("ascii") + b"\n" + body)


def sign_webhook(key: PrivateKey, delivery: str, body: bytes) -> str:
    """The `LogLine-Signature` header value: `ed25519=<standard base64 of the signature>`."""
    return "ed25519=" + b64encode(key.sign(webhook_message(delivery, body)))


def verify_webhook(key: PublicKey, delivery: str, body: bytes, signature: str) -> None:
    """Raise `SignatureError` unless `signature` (the header value) is `key`'s signature of this
    delivery of `body` (the raw request body, before any JSON parsing)."""
    scheme, _, value = signature.partition("=")
    if scheme != "ed25519" or not value:
        raise SignatureError("LogLine-Signature scheme", expected="ed25519=", found=scheme)
    key.verify(b64decode(value, what="LogLine-Signature"), webhook_message(delivery, body))


# --- running: after commit ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class OutboxRow:
    id: str
    tenant: str
    trigger: str
    rule: str
    action: dict[str, Any]
    depth: int
    state: str
    attempts: int
    next_at: str
    last_error: str | None
    outcome: Any
    created_at: str
    done_at: str | None

    @classmethod
    def from_row(cls, row: tuple[Any, ...]) -> OutboxRow:
        id_, tenant, trigger, rule, action, depth, state, attempts, next_at, error = row[:10]
        outcome, created_at, done_at = row[10:]
        return cls(
            str(id_), str(tenant), str(trigger), str(rule), json.loads(action), int(depth),
            str(state), int(attempts), str(next_at), error,
            None if outcome is None else json.loads(outcome), str(created_at), done_at,
        )  # fmt: skip

    @property
    def chain(self) -> tuple[str, ...]:
        """The rules that led to the trigger, then this row's: the chain of what it makes."""
        return (*(str(rule) for rule in self.action.get("chain", ())), self.rule)


@dataclass(frozen=True, slots=True)
class Ran:
    """What one run of a row came to: `done`, `failed`, `retry` (pending, due again later) or
    `skipped` (another dispatcher got there first)."""

    id: str
    type: str
    state: str
    detail: Any = None


class Dispatcher:
    """Runs due outbox rows of every tenant. Thread-safe; any number may run at once, in any
    number of processes."""

    def __init__(
        self,
        log: Log,
        jobs: JobQueue,
        *,
        author: str,
        key: PrivateKey,
        webhooks: WebhookAllowList,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        batch: int = BATCH,
        lease_s: float = LEASE_S,
        webhook_timeout_s: float = WEBHOOK_TIMEOUT_S,
        webhook_attempts: int = WEBHOOK_ATTEMPTS,
        backoff_base_s: float = BACKOFF_BASE_S,
        backoff_cap_s: float = BACKOFF_CAP_S,
    ) -> None:
        if not isinstance(log.store, SqlStore):
            raise TypeError("the outbox needs a SQL store")
        self.log = log
        self.store: SqlStore = log.store
        self.jobs = jobs
        self.author = author
        self.key = key
        self.public_key = str(key.public_key)
        self.webhooks = webhooks
        self.clock = clock
        self.batch = batch
        self.lease_s = lease_s
        self.webhook_timeout_s = webhook_timeout_s
        self.webhook_attempts = webhook_attempts
        self.backoff_base_s = backoff_base_s
        self.backoff_cap_s = backoff_cap_s
        self._http: httpx.Client | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()

    def close(self) -> None:
        with self._lock:
            if self._pool is not None:
                self._pool.shutdown()
            if self._http is not None:
                self._http.close()
            self._pool = self._http = None

    def run_due(self) -> list[Ran]:
        """Take up to `batch` due rows and run them, a few at a time; what each came to."""
        rows = self._take()
        if len(rows) <= 1:
            return [self._run(row) for row in rows]
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(THREADS, thread_name_prefix="logline-outbox")
            running = [self._pool.submit(self._run, row) for row in rows]
        return [future.result() for future in running]

    def _take(self) -> list[OutboxRow]:
        """Lease due rows: nobody takes them again until the lease is over. A webhook's lease
        covers the posts that may run before it, so a slow receiver does not get a row twice."""
        moment = self.clock()
        with self.store._read() as c:  # most passes find nothing: no write lock for that
            if c.one("any_due_outbox", {"now": format_ts(moment)}) is None:
                return []
        with self.store.write() as tx:
            c = _conn(tx)
            rows = [
                OutboxRow.from_row(row)
                for row in c.all("due_outbox", {"now": format_ts(moment), "limit": self.batch})
            ]
            hooks = sum(1 for row in rows if row.action.get("type") == "webhook")
            rounds = math.ceil(hooks / THREADS)
            for row in rows:
                lease = self.lease_s
                if row.action.get("type") == "webhook":
                    lease += self.webhook_timeout_s * rounds
                next_at = format_ts(moment + timedelta(seconds=lease))
                c.run("lease_outbox", {"id": row.id, "next_at": next_at})
        return [replace(row, attempts=row.attempts + 1) for row in rows]

    def _run(self, row: OutboxRow) -> Ran:
        try:
            follow_up = follow_up_from_json(row.action)
        except InvalidInput as exc:
            return self._fail(row, "unknown", f"not a follow-up: {exc}")
        try:
            if isinstance(follow_up, EmitSpan):
                return self._emit(row, follow_up)
            if isinstance(follow_up, EnqueueJob):
                return self._enqueue(row, follow_up)
            return self._webhook(row, follow_up)
        except StorageError as exc:
            # The database is away: the row stays pending, and is due again after the lease.
            log.warning("follow-up %s of %s: %s", row.id, row.tenant, exc)
            return Ran(row.id, str(row.action.get("type")), "retry", str(exc))

    # --- emit -------------------------------------------------------------------------------------

    def _emit(self, row: OutboxRow, emit: EmitSpan) -> Ran:
        def work(tx: Tx, received: str) -> tuple[list[Prepared], str | None]:
            c = _conn(tx)
            if not _pending(c, row.id):
                return [], None
            span = new_span(
                self.key,
                tenant=row.tenant,
                author=self.author,
                kind=emit.kind,
                title=emit.title,
                payload=emit.payload,
                tags=list(emit.tags),
                caused_by=emit.caused_by or row.trigger,
            )
            _finish(c, row.id, "done", {"span_id": span.id}, None, received)
            return [Prepared(span, self.public_key)], span.id

        try:
            _, span_id = self.log.transact(row.tenant, work, gated=True, chain=row.chain)
        except HeldForApproval as held:
            # Logged is the hold's request; the row is done (committed with it), and the span
            # waits for approval under its own id.
            return Ran(row.id, "emit", "done", {"span_id": held.held["span_id"], "held": True})
        except StorageError:
            raise
        except LogLineError as exc:  # the rules reject it, or it is not a valid span
            return self._fail(row, "emit", str(exc))
        if span_id is None:
            return Ran(row.id, "emit", "skipped")
        return Ran(row.id, "emit", "done", {"span_id": span_id})

    # --- enqueue ----------------------------------------------------------------------------------

    def _enqueue(self, row: OutboxRow, enqueue: EnqueueJob) -> Ran:
        request = JobRequest(
            type=enqueue.job,
            payload=enqueue.payload,
            queue=enqueue.queue or DEFAULT_QUEUE,
            priority=enqueue.priority or "normal",
            dedupe_key=enqueue.dedupe_key or None,
        )
        try:
            payload = request.check()
            self.jobs._check_schema(row.tenant, request)
        except InvalidInput as exc:
            return self._fail(row, "enqueue", str(exc))

        def work(tx: Tx, received: str) -> tuple[list[Prepared], dict[str, Any] | None]:
            c = _conn(tx)
            if not _pending(c, row.id):
                return [], None
            if request.dedupe_key is not None:
                found = c.one(
                    "job_by_dedupe_key", {"tenant": row.tenant, "dedupe_key": request.dedupe_key}
                )
                if found is not None:
                    outcome = {"job_id": Job.from_row(found).id, "deduplicated": True}
                    _finish(c, row.id, "done", outcome, None, received)
                    return [], outcome
            moment = self.jobs.clock()
            job, record = self.jobs._insert(
                c, row.tenant, request, payload, format_ts(moment), cause=row.trigger,
                rule=row.rule,
            )  # fmt: skip
            tally = Tally(moment)
            tally.count(job, "submitted")
            tally.flush(c)
            tx.announce_jobs(row.tenant)
            outcome = {"job_id": job.id, "span_id": record.span.id}
            _finish(c, row.id, "done", outcome, None, received)
            return [record], outcome

        try:
            _, outcome = self.log.transact(row.tenant, work)
        except StorageError:
            raise
        except LogLineError as exc:
            return self._fail(row, "enqueue", str(exc))
        if outcome is None:
            return Ran(row.id, "enqueue", "skipped")
        if "span_id" in outcome:
            self.jobs._ready()
        return Ran(row.id, "enqueue", "done", outcome)

    # --- webhook ----------------------------------------------------------------------------------

    def _client(self) -> httpx.Client:
        with self._lock:
            if self._http is None:
                self._http = httpx.Client(
                    timeout=self.webhook_timeout_s,
                    follow_redirects=False,  # a redirect could lead off the allow-list
                    headers={"User-Agent": f"LogLine/{__version__}"},
                )
            return self._http

    def _webhook(self, row: OutboxRow, hook: CallWebhook) -> Ran:
        if not self.webhooks.allows(hook.url):
            return self._fail(
                row, "webhook", f"{hook.url} is not on this instance's webhook allow-list"
            )
        body = canonicalize(hook.body)
        headers = {
            "Content-Type": "application/json",
            "LogLine-Delivery": row.id,
            "LogLine-Signature": sign_webhook(self.key, row.id, body),
            "LogLine-Key": self.public_key,
        }
        try:
            response = self._client().post(hook.url, content=body, headers=headers)
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}"
        else:
            if 200 <= response.status_code < 300:
                with self.store.write() as tx:
                    outcome = {"status": response.status_code}
                    _finish(_conn(tx), row.id, "done", outcome, None, format_ts(self.clock()))
                return Ran(row.id, "webhook", "done", {"status": response.status_code})
            error = f"HTTP {response.status_code}: {response.text[:200]}"
        if row.attempts >= self.webhook_attempts:
            return self._fail(row, "webhook", f"gave up after {row.attempts} attempts: {error}")
        delay = min(self.backoff_cap_s, self.backoff_base_s * 2 ** (row.attempts - 1))
        next_at = format_ts(self.clock() + timedelta(seconds=delay))
        with self.store.write() as tx:
            _conn(tx).run(
                "retry_outbox",
                {"id": row.id, "next_at": next_at, "last_error": error[:MAX_ERROR_CHARS]},
            )
        return Ran(row.id, "webhook", "retry", error)

    # --- failing ----------------------------------------------------------------------------------

    def _fail(self, row: OutboxRow, type_: str, error: str) -> Ran:
        log.warning("follow-up %s (%s of rule %s) failed: %s", row.id, type_, row.rule, error)
        with self.store.write() as tx:
            _finish(_conn(tx), row.id, "failed", None, error, format_ts(self.clock()))
        return Ran(row.id, type_, "failed", error)


def _pending(c: Connection, outbox_id: str) -> bool:
    row = c.one("select_outbox", {"id": outbox_id})
    return row is not None and row[6] == "pending"


def _finish(
    c: Connection, outbox_id: str, state: str, outcome: Any, error: str | None, at: str
) -> None:
    c.run(
        "finish_outbox",
        {"id": outbox_id, "state": state,
         "outcome": None if outcome is None else json.dumps(outcome),
         "last_error": None if error is None else error[:MAX_ERROR_CHARS], "done_at": at},
    )  # fmt: skip
