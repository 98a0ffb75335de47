"""The rules' follow-up outbox (rules/outbox.py), the same on SQLite and PostgreSQL: emits and
enqueues run exactly once however many dispatchers race, chains stop at cycles and at the depth
limit with the reason recorded, webhooks are signed, retried and given up on, and a URL taken
off the allow-list is never called."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from helpers import OTHER_TENANT, TENANT, make_identity, make_span
from logline.engine.queue import JobQueue
from logline.errors import SignatureError
from logline.identity.keys import PrivateKey, PublicKey
from logline.ledger.log import Log
from logline.ledger.verify import verify_store
from logline.rules.gate import RulesGate
from logline.rules.holds import Holds
from logline.rules.outbox import Dispatcher, Ran, verify_webhook
from logline.rules.sets import RuleSets
from logline.rules.webhooks import WebhookAllowList
from logline.server.services import roles_of
from logline.store.interface import Query
from logline.store.sql import SqlStore

ADMIN = "logline-id://person/admin"


class OffsetClock:
    """The real time plus an offset that tests move forward."""

    def __init__(self) -> None:
        self.offset = timedelta()

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += timedelta(seconds=seconds)


# --- a receiver of webhooks -----------------------------------------------------------------------


@dataclass
class Receiver:
    """A local HTTP server that records every request and answers with `statuses` in turn
    (then 200)."""

    url: str
    requests: list[tuple[str, dict[str, str], bytes]] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    got = Receiver("")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            got.requests.append((self.path, dict(self.headers.items()), body))
            status = got.statuses.pop(0) if got.statuses else 200
            self.send_response(status)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    got.url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield got
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


# --- the engine as a server process has it -------------------------------------------------------


@dataclass
class Engine:
    log: Log
    sets: RuleSets
    gate: RulesGate
    jobs: JobQueue
    holds: Holds
    instance: str
    key: PrivateKey
    clock: OffsetClock
    receiver: Receiver

    def publish(self, source: str, tenant: str = TENANT) -> None:
        self.sets.publish(tenant, source.replace("$HOOKS", self.receiver.url), by=ADMIN)

    def dispatcher(self, allowed: tuple[str, ...] = ("/allowed",), **options: Any) -> Dispatcher:
        webhooks = WebhookAllowList([self.receiver.url + path for path in allowed])
        return Dispatcher(self.log, self.jobs, author=self.instance, key=self.key,
                          webhooks=webhooks, clock=self.clock, **options)  # fmt: skip

    def outbox(self) -> list[dict[str, Any]]:
        store = self.log.store
        assert isinstance(store, SqlStore)
        columns = ("id", "tenant", "trigger", "rule", "state", "attempts", "last_error", "outcome")
        with store._read() as c:
            rows = c.sql(f"SELECT {', '.join(columns)} FROM rule_outbox ORDER BY id", {})
        out = [dict(zip(columns, row, strict=True)) for row in rows]
        for row in out:
            row["outcome"] = None if row["outcome"] is None else json.loads(row["outcome"])
        return out

    def spans(self, kind: str, tenant: str = TENANT) -> list[Any]:
        return [item.span for item in self.log.store.query(Query(tenant, kind=kind)).items]


@pytest.fixture
def engine(log: Log, receiver: Receiver) -> Engine:
    """RuleSets, the gate, the job queue, approvals: as `Services.start` builds them. Rule sets
    may call the receiver's /allowed and /removed paths; dispatchers choose their own list."""
    instance, key = make_identity(log, "system", "instance", kind="service")
    allowed = WebhookAllowList([receiver.url + "/allowed", receiver.url + "/removed"])
    sets = RuleSets(log, author=instance, key=key, webhooks=allowed)
    gate = RulesGate(sets, roles_of, author=instance, key=key)
    log.gate = gate
    jobs = JobQueue(log, author=instance, key=key)
    holds = Holds(log, author=instance, key=key)
    return Engine(log, sets, gate, jobs, holds, instance, key, OffsetClock(), receiver)


ORDERS = """
rules:
  - id: invoice
    when: {kind: order.placed}
    then:
      - enqueue: {job: invoice.render, payload: {order: "${span.id}"}, queue: billing}
      - emit: {kind: order.noted, title: "Noted ${span.title}", payload: {order: "${span.id}"},
               tags: [noted]}
"""


def _drain(dispatcher: Dispatcher, rounds: int = 20) -> list[Ran]:
    """Run passes until one finds nothing due."""
    ran: list[Ran] = []
    for _ in range(rounds):
        got = dispatcher.run_due()
        if not got:
            return ran
        ran += got
    raise AssertionError(f"still running after {rounds} passes: {ran[-5:]}")


# --- emit and enqueue: exactly once ---------------------------------------------------------------


def test_emit_and_enqueue_run_once_each(engine: Engine) -> None:
    author, key = make_identity(engine.log, TENANT, "shop")
    engine.publish(ORDERS)
    order = make_span(key, author, kind="order.placed", title="order 42")
    engine.log.append(order, wait="sequenced")
    dispatcher = engine.dispatcher()
    first = dispatcher.run_due()
    assert sorted((r.type, r.state) for r in first) == [("emit", "done"), ("enqueue", "done")]
    assert dispatcher.run_due() == [] and _drain(engine.dispatcher()) == []
    [noted] = engine.spans("order.noted")
    assert (noted.author, noted.body["caused_by"], noted.body["title"]) == (
        engine.instance, order.id, "Noted order 42",
    )  # fmt: skip
    assert noted.payload == {"order": order.id} and noted.body["tags"] == ["noted"]
    # The emitted span went through the gate, with the chain that led to it.
    assert engine.log.get(TENANT, noted.id).entry.decision["chain"] == ["invoice"]
    [job] = engine.jobs.jobs(TENANT)
    assert (job.type, job.queue, job.payload) == ("invoice.render", "billing", {"order": order.id})
    [queued] = engine.spans("job.queued")
    assert queued.body["caused_by"] == order.id and queued.payload["rule"] == "invoice"
    assert {row["state"] for row in engine.outbox()} == {"done"}
    outcomes = [row["outcome"] for row in engine.outbox()]
    assert {"span_id": noted.id} in outcomes
    assert {"job_id": job.id, "span_id": queued.id} in outcomes
    verify_store(engine.log.store, TENANT, engine.log.origin(TENANT), engine.log.verifier())


def test_racing_dispatchers_run_each_follow_up_once(engine: Engine) -> None:
    """Two dispatchers in two threads, whose leases end at once (so both take every row): each
    emit and enqueue still happens exactly once."""
    author, key = make_identity(engine.log, TENANT, "shop")
    engine.publish(ORDERS)
    orders = [make_span(key, author, kind="order.placed", title=f"order {n}") for n in range(12)]
    for order in orders:
        engine.log.append(order, wait="sequenced")
    dispatchers = [engine.dispatcher(lease_s=0), engine.dispatcher(lease_s=0)]
    results: list[list[Ran]] = [[], []]
    start = threading.Barrier(2)

    def run(i: int) -> None:
        start.wait()
        for _ in range(5):
            results[i] += dispatchers[i].run_due()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    done = [r for rs in results for r in rs if r.state == "done"]
    assert len(done) == 2 * len(orders)  # the losers of each race were `skipped`
    noted = engine.spans("order.noted")
    assert sorted(s.body["caused_by"] for s in noted) == sorted(o.id for o in orders)
    jobs = engine.jobs.jobs(TENANT, limit=100)
    assert sorted(j.payload["order"] for j in jobs) == sorted(o.id for o in orders)
    assert {row["state"] for row in engine.outbox()} == {"done"}


def test_rows_a_dead_dispatcher_took_run_after_its_lease(engine: Engine) -> None:
    author, key = make_identity(engine.log, TENANT, "shop")
    engine.publish(ORDERS)
    engine.log.append(make_span(key, author, kind="order.placed"), wait="sequenced")
    dead = engine.dispatcher(lease_s=30)
    assert len(dead._take()) == 2  # took them, then died before running them
    survivor = engine.dispatcher()
    assert survivor.run_due() == []
    engine.clock.advance(31)
    assert sorted(r.state for r in survivor.run_due()) == ["done", "done"]
    assert len(engine.spans("order.noted")) == 1 and len(engine.jobs.jobs(TENANT)) == 1
    assert {row["attempts"] for row in engine.outbox()} == {2}


def test_enqueue_dedupes_and_refuses_bad_jobs(engine: Engine) -> None:
    author, key = make_identity(engine.log, TENANT, "shop")
    engine.publish("""
rules:
  - id: once-a-day
    when: {kind: report.asked}
    then: [{enqueue: {job: report.render, dedupe_key: "report-${payload.day}"}}]
  - id: unlike-its-schema
    when: {kind: report.odd}
    then: [{enqueue: {job: report.strict, payload: {month: "${payload.month}"}}}]
""")
    schema = {"type": "object", "properties": {"month": {"type": "string", "pattern": "^[0-9]+$"}}}
    engine.jobs.register_type(TENANT, "report.strict", schema, by=ADMIN)
    for _ in range(2):
        span = make_span(key, author, kind="report.asked", payload={"day": 1})
        engine.log.append(span, wait="sequenced")
    odd = make_span(key, author, kind="report.odd", payload={"month": "October"})
    engine.log.append(odd, wait="sequenced")
    ran = sorted((r.type, r.state) for r in _drain(engine.dispatcher()))
    assert ran == [("enqueue", "done"), ("enqueue", "done"), ("enqueue", "failed")]
    [job] = engine.jobs.jobs(TENANT)
    outcomes = [row["outcome"] for row in engine.outbox() if row["state"] == "done"]
    assert {"job_id": job.id, "deduplicated": True} in outcomes
    [failed] = [row for row in engine.outbox() if row["state"] == "failed"]
    assert "does not match the schema of report.strict" in failed["last_error"]


# --- chains ---------------------------------------------------------------------------------------


def test_a_rule_triggered_by_its_own_span_stops_at_the_cycle(engine: Engine) -> None:
    author, key = make_identity(engine.log, TENANT, "pinger")
    engine.publish("""
rules:
  - id: echo
    when: {kind: "ping.*"}
    then: [{emit: {kind: ping.echo, title: echo}}]
""")
    ping = make_span(key, author, kind="ping.start")
    engine.log.append(ping, wait="sequenced")
    _drain(engine.dispatcher())
    [echo] = engine.spans("ping.echo")
    assert echo.body["caused_by"] == ping.id
    decision = engine.log.get(TENANT, echo.id).entry.decision
    assert decision["chain"] == ["echo"]
    assert decision["stopped"] == [{"rule": "echo", "type": "emit", "reason": "cycle: echo → echo"}]
    states = {(row["trigger"], row["state"]) for row in engine.outbox()}
    assert states == {(ping.id, "done"), (echo.id, "stopped")}
    [stopped] = [row for row in engine.outbox() if row["state"] == "stopped"]
    assert stopped["last_error"] == "cycle: echo → echo"


def test_a_chain_stops_at_the_depth_limit(engine: Engine) -> None:
    author, key = make_identity(engine.log, TENANT, "stepper")
    steps = "\n".join(
        f"  - id: step-{n}\n    when: {{kind: step.s{n}}}\n"
        f"    then: [{{emit: {{kind: step.s{n + 1}, title: step {n + 1}}}}}]"
        for n in range(1, 9)
    )
    engine.publish(f"rules:\n{steps}\n")
    engine.log.append(make_span(key, author, kind="step.s1"), wait="sequenced")
    _drain(engine.dispatcher())
    kinds = [s.span.kind for s in engine.log.store.query(Query(TENANT, kind="step.*")).items]
    # The client's span and five more (the gate's default max_depth): the sixth hop is stopped.
    assert kinds == [f"step.s{n}" for n in range(1, 7)]
    [last] = engine.spans("step.s6")
    decision = engine.log.get(TENANT, last.id).entry.decision
    assert decision["chain"] == [f"step-{n}" for n in range(1, 6)]
    [stop] = decision["stopped"]
    assert stop["rule"] == "step-6" and "chain depth limit 5" in stop["reason"]


def test_an_emitted_span_the_rules_reject_fails_its_row(engine: Engine) -> None:
    author, key = make_identity(engine.log, TENANT, "shop")
    engine.publish("""
rules:
  - id: announce
    when: {kind: x.trigger}
    then: [{emit: {kind: x.forbidden, title: not allowed}}]
  - id: deny
    when: {kind: x.forbidden}
    then: [{reject: nobody announces that}]
""")
    engine.log.append(make_span(key, author, kind="x.trigger"), wait="sequenced")
    [ran] = _drain(engine.dispatcher())
    assert (ran.type, ran.state) == ("emit", "failed")
    assert engine.spans("x.forbidden") == []
    [row] = engine.outbox()
    assert row["state"] == "failed" and "nobody announces that" in row["last_error"]


# --- webhooks -------------------------------------------------------------------------------------

HOOKS = """
rules:
  - id: tell
    when: {kind: "pay.*"}
    then:
      - webhook:
          url: $HOOKS/allowed/pay
          body: {paid: "${span.id}", amount: "${payload.amount}"}
  - id: gone
    when: {kind: pay.removed}
    then: [{webhook: "$HOOKS/removed/pay"}]
"""


def test_a_webhook_is_signed_by_the_instance(engine: Engine) -> None:
    author, key = make_identity(engine.log, TENANT, "payer")
    engine.publish(HOOKS)
    pay = make_span(key, author, kind="pay.done", payload={"amount": 12})
    engine.log.append(pay, wait="sequenced")
    [ran] = engine.dispatcher().run_due()
    assert (ran.type, ran.state, ran.detail) == ("webhook", "done", {"status": 200})
    [(path, headers, body)] = engine.receiver.requests
    [row] = engine.outbox()
    assert path == "/allowed/pay" and headers["LogLine-Delivery"] == row["id"]
    assert json.loads(body) == {"paid": pay.id, "amount": 12}  # a whole ${...} keeps its type
    assert headers["Content-Type"] == "application/json"
    assert headers["LogLine-Key"] == str(engine.key.public_key)
    verify_webhook(engine.key.public_key, row["id"], body, headers["LogLine-Signature"])
    # The signature covers the delivery id and the exact bytes: change either and it fails.
    with pytest.raises(SignatureError):
        verify_webhook(engine.key.public_key, row["id"], body + b" ", headers["LogLine-Signature"])
    with pytest.raises(SignatureError):
        verify_webhook(engine.key.public_key, engine.outbox()[0]["trigger"], body,
                       headers["LogLine-Signature"])  # fmt: skip
    with pytest.raises(SignatureError):
        other = PublicKey.parse(str(PrivateKey.generate().public_key))
        verify_webhook(other, row["id"], body, headers["LogLine-Signature"])
    assert (row["state"], row["outcome"], row["attempts"]) == ("done", {"status": 200}, 1)


def test_a_webhook_is_retried_after_a_failure(engine: Engine) -> None:
    author, key = make_identity(engine.log, TENANT, "payer")
    engine.publish(HOOKS)
    engine.log.append(
        make_span(key, author, kind="pay.done", payload={"amount": 1}), wait="sequenced"
    )
    engine.receiver.statuses = [500]
    dispatcher = engine.dispatcher(backoff_base_s=60)
    [ran] = dispatcher.run_due()
    assert (ran.state, ran.detail) == ("retry", "HTTP 500: ok")
    [row] = engine.outbox()
    assert (row["state"], row["attempts"], row["last_error"]) == ("pending", 1, "HTTP 500: ok")
    assert dispatcher.run_due() == []  # not before the backoff is over
    engine.clock.advance(61)
    [ran] = dispatcher.run_due()
    assert ran.state == "done"
    deliveries = [headers["LogLine-Delivery"] for _, headers, _ in engine.receiver.requests]
    assert deliveries == [row["id"], row["id"]]  # the same delivery: receivers drop repeats
    [row] = engine.outbox()
    assert (row["state"], row["attempts"], row["outcome"]) == ("done", 2, {"status": 200})


def test_a_webhook_fails_after_its_attempts(engine: Engine) -> None:
    author, key = make_identity(engine.log, TENANT, "payer")
    engine.publish(HOOKS)
    engine.log.append(
        make_span(key, author, kind="pay.done", payload={"amount": 1}), wait="sequenced"
    )
    engine.receiver.statuses = [503] * 10
    dispatcher = engine.dispatcher(webhook_attempts=3, backoff_base_s=1, backoff_cap_s=2)
    states = []
    for _ in range(5):
        states += [r.state for r in dispatcher.run_due()]
        engine.clock.advance(3)
    assert states == ["retry", "retry", "failed"]
    assert len(engine.receiver.requests) == 3
    [row] = engine.outbox()
    assert row["state"] == "failed" and row["attempts"] == 3
    assert row["last_error"].startswith("gave up after 3 attempts: HTTP 503")


def test_a_url_taken_off_the_allow_list_is_never_called(engine: Engine) -> None:
    author, key = make_identity(engine.log, TENANT, "payer")
    engine.publish(HOOKS)  # compiled while /removed was allowed
    engine.log.append(make_span(key, author, kind="pay.removed"), wait="sequenced")
    ran = sorted((r.state, str(r.detail)) for r in engine.dispatcher(("/allowed",)).run_due())
    assert [state for state, _ in ran] == ["done", "failed"]
    assert "allow-list" in ran[1][1]
    assert [path for path, _, _ in engine.receiver.requests] == ["/allowed/pay"]


def test_follow_ups_stay_in_their_tenant(engine: Engine) -> None:
    author, key = make_identity(engine.log, OTHER_TENANT, "shop")
    engine.publish(ORDERS)  # in TENANT only
    stray = make_span(key, author, tenant=OTHER_TENANT, kind="order.placed")
    engine.log.append(stray, wait="sequenced")
    assert engine.outbox() == [] and engine.dispatcher().run_due() == []
    engine.publish(ORDERS, tenant=OTHER_TENANT)
    order = make_span(key, author, tenant=OTHER_TENANT, kind="order.placed")
    engine.log.append(order, wait="sequenced")
    _drain(engine.dispatcher())
    assert engine.spans("order.noted") == []
    [noted] = engine.spans("order.noted", OTHER_TENANT)
    assert noted.body["caused_by"] == order.id
    assert [j.tenant for j in engine.jobs.jobs(OTHER_TENANT)] == [OTHER_TENANT]
    assert engine.jobs.jobs(TENANT) == []
