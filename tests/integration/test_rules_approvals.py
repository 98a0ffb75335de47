"""Approvals of held spans (rules/holds.py), the same on SQLite and PostgreSQL: quorum,
separation of duties, eligibility, one vote each, rejection, expiry, a span that can no longer be
logged, the approved span in the log with its decision (and the log still verifies), and tenants
kept apart."""

from __future__ import annotations

import json
from typing import Any

import pytest

from conftest import Ruled
from helpers import OTHER_TENANT, TENANT, Clock, make_identity, make_span
from logline.errors import Conflict, Forbidden, HeldForApproval, InvalidInput, NotFound
from logline.identity.documents import rotation_span
from logline.identity.keys import PrivateKey
from logline.ledger.span import Span
from logline.ledger.verify import verify_store
from logline.rules.holds import Holds
from logline.store.interface import Query
from logline.store.sql import SqlStore

RULES = """
rules:
  - id: big-payments
    when: {kind: payment.*, path: payload.amount, greater_than: 1000}
    then:
      - require_approval: {approvers: [finance], quorum: 2, timeout: 1h}
      - add_tag: big
      - set_metadata: {review: "two of finance"}
      - enqueue: {job: payment.book, payload: {payment: "${span.id}"}}
  - id: cfo
    when: {kind: contract.signed}
    then:
      - require_approval: {approvers: ["logline-id://person/cfo"], timeout: 1h}
"""
FINANCE = ("viewer", "member", "finance")


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def holds(ruled: Ruled, clock: Clock) -> Holds:
    return Holds(ruled.log, author=ruled.instance, key=ruled.key, clock=clock)


def _hold(ruled: Ruled, key: PrivateKey, author: str, tenant: str = TENANT,
          kind: str = "payment.approved", amount: int = 5000) -> tuple[Span, str]:  # fmt: skip
    """A span the rules hold; with the id of its hold."""
    span = make_span(key, author, tenant=tenant, kind=kind, payload={"amount": amount})
    with pytest.raises(HeldForApproval) as held:
        ruled.log.append(span, wait="sequenced")
    return span, str(held.value.held["hold"])


def _flow(ruled: Ruled, hold_id: str, tenant: str = TENANT) -> list[Any]:
    """The approval.* spans of a hold, in log order."""
    return [item.span for item in ruled.log.store.query(Query(tenant, flow_id=hold_id)).items]


def _outbox(ruled: Ruled) -> list[tuple[str, str, str]]:
    store = ruled.log.store
    assert isinstance(store, SqlStore)
    with store._read() as c:
        return [(str(t), str(r), str(s)) for t, r, s in
                c.sql("SELECT trigger, rule, state FROM rule_outbox ORDER BY id", {})]  # fmt: skip


def test_two_of_finance_approve_and_the_span_is_logged(ruled: Ruled, holds: Holds) -> None:
    alice, key = make_identity(ruled.log, TENANT, "alice")
    ruled.publish(RULES)
    span, hold_id = _hold(ruled, key, alice)
    [pending] = holds.list(TENANT)
    assert (pending.id, pending.state, pending.span_id, pending.votes) == (
        hold_id, "pending", span.id, (),
    )  # fmt: skip
    first = holds.approve(TENANT, hold_id, "logline-id://person/bob", FINANCE)
    assert (first.state, [v["by"] for v in first.votes]) == ("pending", ["logline-id://person/bob"])
    assert first.to_json()["requirement"]["groups"][0]["approvals"] == 1
    with pytest.raises(NotFound):
        ruled.log.get(TENANT, span.id)  # one approval of two: still held
    done = holds.approve(TENANT, hold_id, "logline-id://person/carol", ("finance",))
    assert (done.state, done.decided_at is not None, len(done.votes)) == ("approved", True, 2)
    assert holds.list(TENANT) == [] and [h.id for h in holds.list(TENANT, state=None)] == [hold_id]
    # The author's span as signed, its entry recording the rules' decision and the approval.
    stored = ruled.log.get(TENANT, span.id)
    assert stored.span.body == span.body and stored.span.signature == span.signature
    decision = stored.entry.decision
    assert decision["outcome"] == "allow" and decision["rules"] == ["big-payments"]
    assert decision["tags"] == ["big"] and decision["metadata"] == {"review": "two of finance"}
    assert decision["approval"]["hold"] == hold_id
    assert [v["by"] for v in decision["approval"]["votes"]] == [
        "logline-id://person/bob", "logline-id://person/carol",
    ]  # fmt: skip
    # Each step a span of the instance, chained by caused_by, with the hold as flow.
    flow = _flow(ruled, hold_id)
    kinds = [s.kind for s in flow]
    assert kinds == ["approval.requested", "approval.granted", "approval.granted",
                     "approval.approved"]  # fmt: skip
    assert all(s.author == ruled.instance for s in flow)
    assert [s.body["caused_by"] for s in flow[1:]] == [s.id for s in flow[:-1]]
    assert flow[2].payload["votes"] == [
        {"by": v["by"], "vote": "approve", "roles": v["roles"], "at": v["at"]} for v in done.votes
    ]
    assert flow[3].payload["state"] == "approved" and done.span_ref == flow[3].id
    assert [v["span_id"] for v in done.votes] == [flow[1].id, flow[2].id]
    # The follow-ups the rules asked for are queued, triggered by the span itself.
    assert _outbox(ruled) == [(span.id, "big-payments", "pending")]
    verify_store(ruled.log.store, TENANT, ruled.log.origin(TENANT), ruled.log.verifier())


def test_who_may_vote(ruled: Ruled, holds: Holds) -> None:
    alice, key = make_identity(ruled.log, TENANT, "alice")
    ruled.publish(RULES)
    _, hold_id = _hold(ruled, key, alice)
    # The author, even holding the role (separation of duties); a viewer; a member.
    with pytest.raises(Forbidden, match="separation of duties"):
        holds.approve(TENANT, hold_id, alice, FINANCE)
    with pytest.raises(Forbidden, match="approvers are finance"):
        holds.approve(TENANT, hold_id, "logline-id://person/vic", ("viewer",))
    with pytest.raises(Forbidden):
        holds.reject(TENANT, hold_id, "logline-id://person/meg", ("viewer", "member"), "no")
    holds.approve(TENANT, hold_id, "logline-id://person/bob", FINANCE)
    with pytest.raises(Conflict, match="already voted"):
        holds.approve(TENANT, hold_id, "logline-id://person/bob", FINANCE)
    with pytest.raises(Conflict, match="already voted"):
        holds.reject(TENANT, hold_id, "logline-id://person/bob", FINANCE, "changed my mind")
    hold = holds.get(TENANT, hold_id)
    assert (hold.state, len(hold.votes)) == ("pending", 1)
    # Named identities: only the one named.
    contract, contract_hold = _hold(ruled, key, alice, kind="contract.signed")
    with pytest.raises(Forbidden):
        holds.approve(TENANT, contract_hold, "logline-id://person/bob", FINANCE)
    assert holds.approve(TENANT, contract_hold, "logline-id://person/cfo", ()).state == "approved"
    assert ruled.log.get(TENANT, contract.id).entry.decision["outcome"] == "allow"


def test_one_rejection_rejects(ruled: Ruled, holds: Holds) -> None:
    alice, key = make_identity(ruled.log, TENANT, "alice")
    ruled.publish(RULES)
    span, hold_id = _hold(ruled, key, alice)
    holds.approve(TENANT, hold_id, "logline-id://person/bob", FINANCE)
    with pytest.raises(InvalidInput):
        holds.reject(TENANT, hold_id, "logline-id://person/carol", FINANCE, "  ")
    rejected = holds.reject(TENANT, hold_id, "logline-id://person/carol", FINANCE, "too much")
    assert (rejected.state, rejected.reason) == ("rejected", "too much")
    assert rejected.votes[-1]["vote"] == "reject" and rejected.votes[-1]["reason"] == "too much"
    with pytest.raises(Conflict, match="already rejected"):
        holds.approve(TENANT, hold_id, "logline-id://person/dan", FINANCE)
    with pytest.raises(NotFound):
        ruled.log.get(TENANT, span.id)
    last = _flow(ruled, hold_id)[-1]
    assert last.kind == "approval.rejected"
    assert (last.payload["by"], last.payload["reason"], last.payload["state"]) == (
        "logline-id://person/carol", "too much", "rejected",
    )  # fmt: skip
    assert _outbox(ruled) == []  # a rejected span's follow-ups never run
    # The span can't be submitted again: its id is taken by the hold.
    with pytest.raises(Conflict):
        ruled.log.append(span, wait="sequenced")


def test_holds_expire(ruled: Ruled, holds: Holds, clock: Clock) -> None:
    alice, key = make_identity(ruled.log, TENANT, "alice")
    ruled.publish(RULES)
    _, hold_id = _hold(ruled, key, alice)
    _, late_id = _hold(ruled, key, alice)
    holds.approve(TENANT, hold_id, "logline-id://person/bob", FINANCE)
    assert holds.expire_due() == []
    clock.advance(3601)
    # A vote that comes too late expires the hold, and is refused.
    with pytest.raises(Conflict, match="expired"):
        holds.approve(TENANT, late_id, "logline-id://person/bob", FINANCE)
    assert holds.get(TENANT, late_id).state == "expired"
    [expired] = holds.expire_due()
    assert (expired.id, expired.state, len(expired.votes)) == (hold_id, "expired", 1)
    assert holds.expire_due() == []
    last = _flow(ruled, hold_id)[-1]
    assert (last.kind, last.payload["state"], last.payload["expires_at"]) == (
        "approval.expired", "expired", expired.expires_at,
    )  # fmt: skip
    with pytest.raises(Conflict, match="already expired"):
        holds.approve(TENANT, hold_id, "logline-id://person/carol", FINANCE)
    assert [h.id for h in holds.list(TENANT, state="expired")] == [late_id, hold_id]


def test_a_span_whose_key_was_rotated_fails_its_approval(ruled: Ruled, holds: Holds) -> None:
    alice, key = make_identity(ruled.log, TENANT, "alice")
    ruled.publish(RULES)
    span, hold_id = _hold(ruled, key, alice)
    ruled.log.append(rotation_span(key, PrivateKey.generate().public_key, TENANT, alice),
                     wait="sequenced")  # fmt: skip
    holds.approve(TENANT, hold_id, "logline-id://person/bob", FINANCE)
    failed = holds.approve(TENANT, hold_id, "logline-id://person/carol", FINANCE)
    assert failed.state == "failed" and failed.reason is not None
    assert "key of " + alice in failed.reason
    with pytest.raises(NotFound):
        ruled.log.get(TENANT, span.id)
    flow = _flow(ruled, hold_id)
    assert [s.kind for s in flow[-2:]] == ["approval.granted", "approval.failed"]
    assert flow[-1].payload["reason"] == failed.reason
    assert _outbox(ruled) == []
    verify_store(ruled.log.store, TENANT, ruled.log.origin(TENANT), ruled.log.verifier())


def test_holds_stay_in_their_tenant(ruled: Ruled, holds: Holds) -> None:
    alice, key = make_identity(ruled.log, TENANT, "alice")
    ruled.publish(RULES)
    _, hold_id = _hold(ruled, key, alice)
    assert holds.list(OTHER_TENANT, state=None) == []
    with pytest.raises(NotFound):
        holds.get(OTHER_TENANT, hold_id)
    with pytest.raises(NotFound):
        holds.approve(OTHER_TENANT, hold_id, "logline-id://person/bob", FINANCE)
    with pytest.raises(NotFound):
        holds.reject(OTHER_TENANT, hold_id, "logline-id://person/bob", FINANCE, "no")
    assert holds.get(TENANT, hold_id).votes == ()
    head = ruled.log.store.log_head(OTHER_TENANT)
    assert head is None or all(
        not s.span.kind.startswith("approval.")
        for s in ruled.log.store.spans(OTHER_TENANT, 0, head.size)
    )


def test_the_api_form(ruled: Ruled, holds: Holds) -> None:
    alice, key = make_identity(ruled.log, TENANT, "alice")
    ruled.publish(RULES)
    span, hold_id = _hold(ruled, key, alice)
    hold = holds.approve(TENANT, hold_id, "logline-id://person/bob", FINANCE)
    out = json.loads(json.dumps(hold.to_json()))
    assert out == holds.get(TENANT, hold_id).to_json()
    assert {k: out[k] for k in ("id", "tenant", "state", "span_id", "author", "kind", "title")} == {
        "id": hold_id, "tenant": TENANT, "state": "pending", "span_id": span.id, "author": alice,
        "kind": "payment.approved", "title": span.body["title"],
    }  # fmt: skip
    assert out["span"] == span.to_json() and out["record"] == hold.span_ref
    assert out["requirement"]["groups"] == [{
        "roles": ["finance"], "identities": [], "quorum": 2, "separation_of_duties": True,
        "rules": ["big-payments"], "approvals": 1,
    }]  # fmt: skip
