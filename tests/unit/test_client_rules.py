"""The SDK and the rules, driven by scripted responses: held appends, rejections by rule, and the
rule set operations (their requests, their answers, their refusals). No server, no sockets."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest

from logline.client import (
    ApiConflict,
    ApiForbidden,
    ApiInvalidInput,
    ApiRuleRejected,
    DryRun,
    RuleSetInfo,
    RuleState,
    RulesTest,
    Signer,
    SpanHeld,
)
from logline.client.api import Api
from logline.client.errors import ApiError, error_for
from logline.client.protocol import Operation, Request, Response
from logline.errors import Forbidden, HeldForApproval, ParseError, RuleRejected

TENANT = "acme"
PREFIX = "urn:logline:problem:"
ALICE = Signer.generate("logline-id://person/alice")
HELD: dict[str, Any] = {
    "state": "held",
    "hold": "01a20000-0000-7000-8000-000000000001",
    "span_id": "01a20000-0000-7000-8000-000000000002",
    "expires_at": "2026-11-23T00:00:00.000000Z",
    "requirement": {"groups": [{"roles": ["admin"], "identities": [], "quorum": 1,
                                "separation_of_duties": True, "rules": ["huge"]}],
                    "timeout_s": 3600},
    "reasons": [{"rule": "huge", "text": "rule huge requires approval"}],
    "record": "01a20000-0000-7000-8000-000000000003",
}  # fmt: skip
DECISION = {
    "outcome": "reject",
    "reasons": [{"rule": "no-tests", "text": "test payments are not allowed"}],
    "matched": ["no-tests"],
    "ruleset": {"version": "3", "digest": "sha256:00"},
}
INFO = {
    "tenant": TENANT, "version": 3, "digest": "sha256:ab", "published_at": "2026-11-22T00:00:00Z",
    "published_by": "logline-id://person/ada", "span_id": "01a20000-0000-7000-8000-000000000004",
    "active": True, "rules": 2, "default": "allow",
}  # fmt: skip
STATE = {
    "tenant": TENANT, "active_version": 3, "updated_at": "2026-11-22T00:00:00Z",
    "updated_by": "logline-id://person/ada", "span_id": "01a20000-0000-7000-8000-000000000004",
}  # fmt: skip


def response(status: int, body: Any = None) -> Response:
    return Response(status, {}, b"" if body is None else json.dumps(body).encode())


def problem(status: int, slug: str, detail: str = "no", **extra: Any) -> Response:
    body = {"type": PREFIX + slug, "title": slug, "status": status, "detail": detail, **extra}
    return response(status, body)


def run(op: Operation[Any], *replies: Response) -> tuple[Any, list[Request]]:
    """Answer each request of `op` with the next reply; its result and the requests sent."""
    sent: list[Request] = []
    queue = list(replies)
    reply: Any = None
    while True:
        try:
            action = op.send(reply)
        except StopIteration as stop:
            return stop.value, sent
        assert isinstance(action, Request), action
        sent.append(action)
        reply = queue.pop(0)


def api() -> Api:
    return Api(TENANT, token="t", rng=random.Random(0))


# --- appends the rules decide ---------------------------------------------------------------------


def test_a_held_append_raises_span_held_with_the_hold() -> None:
    span = ALICE.span(TENANT, "payment.approved", "pay", {"amount": 500_000})
    operations = [api().append(span), api().append_batch([span]), api().replay(span.id),
                  api().append_custodial("payment.approved", "pay")]  # fmt: skip
    for op in operations:
        with pytest.raises(SpanHeld) as held:
            run(op, response(202, HELD))
        error = held.value
        assert error.held == HELD and error.status == 202
        assert isinstance(error, HeldForApproval) and isinstance(error, ApiError)
        assert error.slug == "held" and HELD["hold"] in str(error)


def test_a_202_that_is_not_a_hold_is_a_parse_error() -> None:
    span = ALICE.span(TENANT, "payment.approved", "pay")
    with pytest.raises(ParseError):
        run(api().append(span), response(202, {"state": "queued"}))
    with pytest.raises(ParseError):
        run(api().append(span), response(202, ["held"]))


def test_a_rejection_by_rule_carries_the_decision() -> None:
    span = ALICE.span(TENANT, "payment.approved", "pay", {"test": True})
    reply = problem(403, "rejected-by-rule", "rejected", decision=DECISION, span_id=span.id)
    for op in (api().append(span), api().append_custodial("payment.approved", "pay")):
        with pytest.raises(ApiRuleRejected) as rejected:
            run(op, reply)
        error = rejected.value
        assert isinstance(error, ApiForbidden) and isinstance(error, RuleRejected)
        assert isinstance(error, Forbidden)
        assert error.decision == DECISION and error.span_id == span.id
        assert error.reasons == ["test payments are not allowed"]
    # Any other 403 stays a plain ApiForbidden.
    other = problem(403, "forbidden")
    assert type(error_for(other.status, other.headers, other.content)) is ApiForbidden


def test_a_rejection_without_a_decision_still_parses() -> None:
    reply = problem(403, "rejected-by-rule", "rejected")
    error = error_for(reply.status, reply.headers, reply.content)
    assert isinstance(error, ApiRuleRejected) and error.decision == {} and error.reasons == []


# --- rule set operations --------------------------------------------------------------------------


def test_rules_state_lists_the_versions() -> None:
    state, [request] = run(api().rules_state(), response(200, {**STATE, "versions": [INFO]}))
    assert (request.method, request.path, request.idempotent) == (
        "GET", f"/v1/tenants/{TENANT}/rules", True)  # fmt: skip
    assert isinstance(state, RuleState) and state.active_version == 3
    assert state.versions == (RuleSetInfo.from_json(INFO),)
    off, _ = run(api().rules_state(), response(200, {**STATE, "active_version": None,
                                                     "versions": []}))  # fmt: skip
    assert off.active_version is None and off.versions == ()


def test_rule_set_has_its_source_and_document() -> None:
    body = {**INFO, "source": "rules: []\n", "document": {"rules": []}}
    info, [request] = run(api().rule_set(3), response(200, body))
    assert request.path == f"/v1/tenants/{TENANT}/rules/3"
    assert info.source == "rules: []\n" and info.document == {"rules": []}


def test_publishing_is_not_retried_and_refusals_keep_where() -> None:
    info, [request] = run(api().publish_rules("rules: []\n"), response(201, INFO))
    assert request.json == {"source": "rules: []\n"} and not request.idempotent
    assert info.version == 3 and info.source is None
    where = {"location": "rules[0].when.frobnicate", "line": 3, "column": 24}
    with pytest.raises(ApiInvalidInput) as bad:
        run(api().publish_rules("x"), problem(400, "invalid-rules", "bad", **where))
    assert bad.value.slug == "invalid-rules"
    assert {k: bad.value.problem[k] for k in where} == where
    failure = {"location": "rules[0].examples[0]", "line": 6, "name": None,
               "problems": ["outcome: expected allow, got reject"]}  # fmt: skip
    failures = [{**failure, "decision": DECISION}]
    with pytest.raises(ApiInvalidInput) as failing:
        run(api().publish_rules("x"), problem(400, "examples-failed", failures=failures))
    assert failing.value.problem["failures"] == failures


def test_disable_and_rollback() -> None:
    state, [request] = run(api().disable_rules(), response(200, {**STATE, "active_version": None}))
    assert request.path.endswith("/rules/disable") and state.active_version is None
    state, [request] = run(api().rollback_rules(2), response(200, {**STATE, "active_version": 2}))
    assert request.json == {"version": 2} and state.active_version == 2
    with pytest.raises(ApiConflict):
        run(api().disable_rules(), problem(409, "conflict"))


def test_dry_runs_of_a_span_and_of_a_proposal() -> None:
    answer = {"mode": "span", "gated": True, "span": {"kind": "payment.approved"},
              "ruleset": {"version": "3"}, "decision": DECISION}  # fmt: skip
    run_, [request] = run(api().dry_run({"kind": "payment.approved"}), response(200, answer))
    assert request.json == {"span": {"kind": "payment.approved"}} and request.idempotent
    assert isinstance(run_, DryRun) and run_.outcome == "reject" and run_.gated
    summary = {"spans": 2, "skipped": 0, "changed": 1, "transitions": {"allow->reject": 1}}
    spans = [{"seq": 4, "active": "allow", "proposed": "reject", "changed": True},
             {"seq": 5, "active": "allow", "proposed": "allow", "changed": False}]  # fmt: skip
    answer = {"mode": "history", "active": None, "proposal": {"version": "proposal"},
              "spans": spans, "summary": summary}  # fmt: skip
    history, [request] = run(api().dry_run(source="rules: []", last=2), response(200, answer))
    assert request.json == {"source": "rules: []", "last": 2}
    assert history.mode == "history" and history.outcome is None
    assert history.spans == tuple(spans) and history.summary == summary
    assert history.proposal == {"version": "proposal"} and history.active is None


def test_rules_test_reports_failures() -> None:
    answer = {"ok": False, "digest": "sha256:ab", "rules": 1, "examples": 2, "document": {},
              "failures": [{"location": "rules[0].examples[1]", "problems": ["x"]}]}  # fmt: skip
    result, [request] = run(api().test_rules("rules: []"), response(200, answer))
    assert request.path.endswith("/rules/test") and request.idempotent
    assert isinstance(result, RulesTest) and not result.ok and len(result.failures) == 1


@pytest.mark.parametrize("model", [RuleSetInfo, RuleState, RulesTest, DryRun])
@pytest.mark.parametrize("data", [None, [], "x", {}, {"mode": "other", "failures": ["x"]}])
def test_rule_models_refuse_nonsense_with_parse_error_only(model: Any, data: Any) -> None:
    with pytest.raises(ParseError):
        model.from_json(data)
