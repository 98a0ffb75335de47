"""Rules on the write path (rules/gate.py, rules/sets.py), the same on SQLite and PostgreSQL: the
decision recorded in each entry, rejections that write nothing, holds, simulation, window counts,
default deny, versions, and tenants kept apart."""

from __future__ import annotations

import json

import pytest

from conftest import Ruled
from helpers import OTHER_TENANT, TENANT, make_identity, make_span
from logline.errors import Conflict, HeldForApproval, NotFound, RuleError, RuleRejected
from logline.ledger.verify import verify_store
from logline.rules.sets import ExamplesFailed
from logline.store.interface import Query
from logline.store.sql import SqlStore

RULES = """
rules:
  - id: no-test-payments
    when: {kind: payment.*, path: payload.test, equals: true}
    then: [{reject: test payments are not allowed here}]
  - id: big
    when: {kind: payment.*, path: payload.amount, greater_than: 1000}
    then:
      - add_tag: big
      - set_metadata: {review: manual}
      - note: looked at by the rules
  - id: dry
    when: {kind: deploy.*}
    then: [{simulate: deploys are simulated this week}]
  - id: brute-force
    when:
      kind: login.failed
      count: {kind: login.failed, by: author, within: 5m}
      greater_than: 2
    then: [{reject: too many failed logins}]
  - id: huge
    when: {kind: payment.*, path: payload.amount, greater_than: 100000}
    then:
      - require_approval: {approvers: [admin], quorum: 1, timeout: 1h}
  - id: bill
    when: {kind: payment.settled}
    then:
      - enqueue: {job: invoice.render, payload: {payment: "${span.id}"}}
"""


def _entry(ruled: Ruled, span_id: str) -> dict[str, object]:
    return ruled.log.get(TENANT, span_id).entry.decision


def _size(ruled: Ruled, tenant: str = TENANT) -> int:
    head = ruled.log.store.log_head(tenant)
    return 0 if head is None else head.size


def test_the_decision_is_recorded_in_the_entry(ruled: Ruled) -> None:
    author, key = make_identity(ruled.log, TENANT, "payer")
    version = ruled.publish(RULES)
    span = make_span(key, author, kind="payment.approved", payload={"amount": 5000})
    ruled.log.append(span, wait="sequenced")
    decision = _entry(ruled, span.id)
    assert decision["outcome"] == "allow"
    assert decision["ruleset"] == {
        "version": str(version),
        "digest": ruled.sets.get(TENANT, version).digest,
    }
    assert decision["rules"] == ["big"]
    assert decision["tags"] == ["big"] and decision["metadata"] == {"review": "manual"}
    stored = ruled.log.get(TENANT, span.id)
    assert stored.span.body == span.body  # the author's signed body is never changed
    verify_store(ruled.log.store, TENANT, ruled.log.origin(TENANT), ruled.log.verifier())


def test_a_rejected_span_writes_nothing(ruled: Ruled) -> None:
    author, key = make_identity(ruled.log, TENANT, "payer")
    ruled.publish(RULES)
    size = _size(ruled)
    span = make_span(key, author, kind="payment.approved", payload={"amount": 1, "test": True})
    with pytest.raises(RuleRejected, match="test payments are not allowed") as raised:
        ruled.log.append(span, wait="sequenced")
    assert raised.value.decision["matched"] == ["no-test-payments"]
    assert _size(ruled) == size
    ok = make_span(key, author, kind="payment.approved", payload={"amount": 1})
    bad = make_span(key, author, kind="payment.approved", payload={"test": True})
    with pytest.raises(RuleRejected):
        ruled.log.append_batch([ok, bad], wait="sequenced")  # a batch is all or nothing
    assert _size(ruled) == size
    ruled.log.append(ok, wait="sequenced")  # nothing of the refused batch stuck
    assert _size(ruled) == size + 1


def test_simulated_spans_are_logged_as_simulated(ruled: Ruled) -> None:
    author, key = make_identity(ruled.log, TENANT, "ops")
    ruled.publish(RULES)
    span = make_span(key, author, kind="deploy.started")
    ruled.log.append(span, wait="sequenced")
    decision = _entry(ruled, span.id)
    assert decision["outcome"] == "simulate"
    assert decision["reasons"] == [{"rule": "dry", "text": "deploys are simulated this week"}]


def test_window_counts_see_the_committed_log(ruled: Ruled) -> None:
    author, key = make_identity(ruled.log, TENANT, "mallory")
    other, other_key = make_identity(ruled.log, TENANT, "bob")
    ruled.publish(RULES)
    for _ in range(3):
        ruled.log.append(make_span(key, author, kind="login.failed"), wait="sequenced")
    with pytest.raises(RuleRejected, match="too many failed logins"):
        ruled.log.append(make_span(key, author, kind="login.failed"), wait="sequenced")
    ruled.log.append(make_span(other_key, other, kind="login.failed"), wait="sequenced")


def test_a_hold_logs_its_request_instead_of_the_span(ruled: Ruled) -> None:
    author, key = make_identity(ruled.log, TENANT, "payer")
    ruled.publish(RULES)
    span = make_span(key, author, kind="payment.approved", payload={"amount": 500_000})
    with pytest.raises(HeldForApproval) as held:
        ruled.log.append(span, wait="sequenced")
    with pytest.raises(NotFound):
        ruled.log.get(TENANT, span.id)
    record = ruled.log.get(TENANT, held.value.held["record"]).span
    assert (record.kind, record.author) == ("approval.requested", ruled.instance)
    assert record.payload["span_id"] == span.id and record.payload["requirement"]["groups"]
    with pytest.raises(Conflict, match="already held"):
        ruled.log.append(span, wait="sequenced")
    other = make_span(key, author, kind="payment.approved", payload={"amount": 1})
    with pytest.raises(Conflict, match="on its own"):
        ruled.log.append_batch([other, make_span(key, author, kind="payment.approved",
                                                 payload={"amount": 200_000})])  # fmt: skip


def test_follow_ups_go_to_the_outbox_with_the_span(ruled: Ruled) -> None:
    author, key = make_identity(ruled.log, TENANT, "payer")
    ruled.publish(RULES)
    span = make_span(key, author, kind="payment.settled", payload={"amount": 5})
    ruled.log.append(span, wait="sequenced")
    store = ruled.log.store
    assert isinstance(store, SqlStore)
    with store._read() as c:
        rows = c.sql("SELECT trigger, rule, action, depth, state FROM rule_outbox", {})
    [(trigger, rule, action, depth, state)] = rows
    assert (trigger, rule, depth, state) == (span.id, "bill", 1, "pending")
    assert json.loads(action)["payload"] == {"payment": span.id}
    assert _entry(ruled, span.id)["follow_ups"]


def test_default_deny_and_versions(ruled: Ruled) -> None:
    author, key = make_identity(ruled.log, TENANT, "payer")
    first = ruled.publish(RULES)
    deny = ruled.publish(
        "default: deny\nrules:\n  - id: ok\n    when: {kind: ok.*}\n    then: [allow]\n"
    )
    assert deny == first + 1
    with pytest.raises(RuleRejected, match="default is deny"):
        ruled.log.append(make_span(key, author, kind="payment.approved"), wait="sequenced")
    ruled.log.append(make_span(key, author, kind="ok.fine"), wait="sequenced")
    ruled.sets.rollback(TENANT, first, by="logline-id://person/admin")
    ruled.log.append(make_span(key, author, kind="payment.approved"), wait="sequenced")
    ruled.sets.disable(TENANT, by="logline-id://person/admin")
    span = make_span(key, author, kind="payment.approved", payload={"test": True})
    ruled.log.append(span, wait="sequenced")
    assert _entry(ruled, span.id) == {"outcome": "allow"}
    with pytest.raises(Conflict):
        ruled.sets.disable(TENANT, by="logline-id://person/admin")
    kinds = [s.span.kind for s in ruled.log.store.query(Query(TENANT, kind="rules.*")).items]
    assert kinds == ["rules.published", "rules.published", "rules.rolled_back", "rules.disabled"]
    assert [info.version for info in ruled.sets.history(TENANT)] == [deny, first]


def test_a_bad_rule_set_changes_nothing(ruled: Ruled) -> None:
    version = ruled.publish(RULES)
    with pytest.raises(RuleError, match=r"rules\[0\]\.when") as bad:
        ruled.publish("rules:\n  - id: x\n    when: {frobnicate: 1}\n    then: [allow]\n")
    assert bad.value.line == 3
    examples = """
rules:
  - id: r
    when: {kind: a.b}
    then: [{reject: never}]
    examples:
      - span: {kind: a.b}
        expect: {outcome: allow}
"""
    with pytest.raises(ExamplesFailed):
        ruled.publish(examples)
    assert ruled.sets.state(TENANT).active_version == version
    assert len(ruled.sets.history(TENANT)) == 1


def test_rules_are_per_tenant(ruled: Ruled) -> None:
    author, key = make_identity(ruled.log, OTHER_TENANT, "payer")
    ruled.publish(RULES)
    span = make_span(key, author, tenant=OTHER_TENANT, kind="payment.approved",
                     payload={"test": True})  # fmt: skip
    ruled.log.append(span, wait="sequenced")
    assert ruled.log.get(OTHER_TENANT, span.id).entry.decision == {"outcome": "allow"}


def test_the_instance_records_pass_ungated(ruled: Ruled) -> None:
    ruled.publish("default: deny\nrules: []\n")
    span = make_span(ruled.key, ruled.instance, kind="security.access_denied")
    ruled.log.append(span, wait="sequenced")
    assert _entry(ruled, span.id) == {"outcome": "allow"}
