"""How matched rules combine: precedence, default deny, order, approvals, window counts."""

from __future__ import annotations

from typing import Any

import pytest

from logline.rules import EvalContext, KindGlob, compile_ruleset
from logline.rules.decision import DEFAULT_DENY_REASON

SPAN: dict[str, Any] = {
    "id": "01900000-0000-7000-8000-000000000001",
    "tenant": "acme",
    "author": "logline-id://person/alice",
    "kind": "payment.approved",
    "title": "Approve",
    "tags": [],
    "payload": {"amount": 10},
}
APPROVE = {"require_approval": {"approvers": ["finance"]}}


def rule(rule_id: str, *then: Any, **extra: Any) -> dict[str, Any]:
    return {"id": rule_id, "then": list(then), **extra}


@pytest.mark.parametrize(
    ("actions", "outcome"),
    [
        ([], "allow"),
        (["allow"], "allow"),
        (["simulate"], "simulate"),
        ([APPROVE], "hold"),
        ([{"reject": "no"}], "reject"),
        (["simulate", APPROVE], "hold"),
        (["simulate", {"reject": "no"}], "reject"),
        ([APPROVE, {"reject": "no"}], "reject"),
        (["allow", {"reject": "no"}, APPROVE, "simulate"], "reject"),
        (["allow", "simulate"], "simulate"),
        (["allow", APPROVE], "hold"),
    ],
)
def test_precedence(actions: list[Any], outcome: str) -> None:
    rules = [rule(f"r{i}", action) for i, action in enumerate(actions)]
    rules.append(rule("tagger", {"add_tag": "seen"}))
    decision = compile_ruleset({"rules": rules}).evaluate(SPAN)
    assert decision.outcome == outcome
    assert (decision.approval is not None) == (outcome == "hold")


def test_reasons_are_those_of_the_winning_outcome() -> None:
    ruleset = compile_ruleset(
        {"rules": [rule("a", {"simulate": "sim"}), rule("b", {"reject": "r1"}),
                   rule("c", {"reject": "r2"}), rule("d", {"allow": "ok"})]}
    )  # fmt: skip
    decision = ruleset.evaluate(SPAN)
    assert [(r.rule, r.text) for r in decision.reasons] == [("b", "r1"), ("c", "r2")]


@pytest.mark.parametrize(
    ("actions", "outcome"),
    [
        ([], "reject"),
        ([{"add_tag": "x"}, {"note": "n"}], "reject"),  # no gating action: still denied
        (["allow"], "allow"),
        (["simulate"], "simulate"),
        ([APPROVE], "hold"),
    ],
)
def test_default_deny(actions: list[Any], outcome: str) -> None:
    rules = [rule(f"r{i}", action) for i, action in enumerate(actions)]
    decision = compile_ruleset({"default": "deny", "rules": rules}).evaluate(SPAN)
    assert decision.outcome == outcome
    if outcome == "reject":
        assert [(r.rule, r.text) for r in decision.reasons] == [(None, DEFAULT_DENY_REASON)]


def test_default_deny_counts_only_matching_rules() -> None:
    ruleset = compile_ruleset(
        {"default": "deny", "rules": [rule("a", "allow", when={"kind": "login.*"})]}
    )
    assert ruleset.evaluate(SPAN).outcome == "reject"
    assert ruleset.evaluate({**SPAN, "kind": "login.ok"}).outcome == "allow"


def test_evaluation_order_is_priority_then_id() -> None:
    ruleset = compile_ruleset(
        {
            "rules": [
                rule("b", {"set_metadata": {"k": "b"}}),
                rule("a", {"set_metadata": {"k": "a"}}),
                rule("z", {"set_metadata": {"k": "z"}}, priority=5),
                rule("m", {"set_metadata": {"k": "m"}}, priority=-1, when={"kind": "payment.*"}),
                rule("off", {"set_metadata": {"k": "off"}}, priority=-9, enabled=False),
            ]
        }
    )
    assert ruleset.order == ("m", "z", "a", "b")
    decision = ruleset.evaluate(SPAN)
    assert decision.matched == ("m", "z", "a", "b")
    assert decision.metadata["k"] == "m"  # the first rule in evaluation order wins a key


def test_rules_do_not_see_each_others_effects() -> None:
    ruleset = compile_ruleset(
        {
            "rules": [
                rule("tag", {"add_tag": "flagged"}, priority=1),
                rule("later", {"reject": "flagged"}, when={"contains_tag": "flagged"}),
            ]
        }
    )
    assert ruleset.evaluate(SPAN).matched == ("tag",)


def test_the_kind_index_keeps_the_order_across_indexed_and_other_rules() -> None:
    ruleset = compile_ruleset(
        {
            "rules": [
                rule("p1", {"note": "p1"}, priority=1, when={"kind": "payment.*"}),
                rule("w2", {"note": "w2"}, priority=2, when={"exists": "span.id"}),
                rule("p3", {"note": "p3"}, priority=3, when={"kind": ["refund.*", "payment.x*"]}),
                rule("g4", {"note": "g4"}, priority=4, when={"kind": "**.approved"}),
                rule("l5", {"note": "l5"}, priority=5, when={"kind": "login.*"}),
                rule("n6", {"note": "n6"}, priority=6, when={"any": [{"kind": "payment.*"}]}),
            ]
        }
    )
    assert ruleset.evaluate(SPAN).matched == ("p1", "w2", "g4", "n6")
    assert ruleset.evaluate({**SPAN, "kind": "payment.xfer"}).matched == ("p1", "w2", "p3", "n6")
    assert ruleset.evaluate({**SPAN, "kind": "login.approved"}).matched == ("w2", "g4", "l5")
    assert ruleset.evaluate({**SPAN, "kind": "other.thing"}).matched == ("w2",)


def test_approvals_merge() -> None:
    ruleset = compile_ruleset(
        {
            "rules": [
                rule("a", {"require_approval": {"approvers": ["finance"], "quorum": 1,
                                                "timeout": "2d", "separation_of_duties": False}}),
                rule("b", {"require_approval": {"approvers": ["finance"], "quorum": 2,
                                                "timeout": "1h"}}),
                rule("c", {"require_approval": {"approvers": ["security"], "timeout": "3h"}}),
            ]
        }
    )  # fmt: skip
    need = ruleset.evaluate(SPAN).approval
    assert need is not None
    assert need.timeout_s == 3600  # the shortest
    finance, security = need.groups
    assert (finance.roles, finance.quorum, finance.separation_of_duties, finance.rules) == (
        ("finance",), 2, True, ("a", "b"),
    )  # fmt: skip
    assert (security.roles, security.quorum, security.rules) == (("security",), 1, ("c",))
    author = SPAN["author"]
    bob, carol, dan = (f"logline-id://person/{n}" for n in ("bob", "carol", "dan"))
    assert not need.is_met({bob: ["finance"], carol: ["finance"]}, author=author)
    assert need.is_met({bob: ["finance"], carol: ["finance"], dan: ["security"]}, author=author)
    # One approver with both roles counts toward both groups.
    assert need.is_met({bob: ["finance", "security"], carol: ["finance"]}, author=author)
    assert not need.is_met({author: ["finance", "security"], carol: ["finance"]}, author=author)


def test_disabled_rules_never_match() -> None:
    ruleset = compile_ruleset({"rules": [rule("off", {"reject": "no"}, enabled=False)]})
    assert ruleset.evaluate(SPAN).outcome == "allow"
    assert ruleset.to_json()["rules"][0]["enabled"] is False


def test_version_and_digest() -> None:
    doc = {"rules": [rule("a", "allow")]}
    plain = compile_ruleset(doc)
    assert plain.digest.startswith("sha256:") and plain.version == plain.digest
    labelled = compile_ruleset(doc, version="7")
    decision = labelled.evaluate(SPAN)
    assert (decision.ruleset_version, decision.ruleset_digest) == ("7", plain.digest)
    assert decision.to_json()["ruleset"] == {"version": "7", "digest": plain.digest}


# Window counts


class FakeCounter:
    def __init__(self, answers: dict[tuple[str, str | None, int], int]) -> None:
        self.answers = answers
        self.asked: list[tuple[str, str | None, int]] = []

    def count(self, kind: KindGlob, author: str | None, within_s: int) -> int:
        self.asked.append((kind.text, author, within_s))
        return self.answers.get((kind.text, author, within_s), 0)


BRUTE_FORCE = rule(
    "brute-force",
    {"reject": "too many failed logins"},
    when={
        "kind": "login.*",
        "count": {"kind": "login.failed", "by": "author", "within": "5m"},
        "greater_than": 5,
    },
)
ALICE = "logline-id://person/alice"


@pytest.mark.parametrize(("count", "outcome"), [(5, "allow"), (6, "reject")])
def test_window_count(count: int, outcome: str) -> None:
    counter = FakeCounter({("login.failed", ALICE, 300): count})
    ruleset = compile_ruleset({"rules": [BRUTE_FORCE]})
    decision = ruleset.evaluate({**SPAN, "kind": "login.failed"}, EvalContext(counter=counter))
    assert decision.outcome == outcome
    assert counter.asked == [("login.failed", ALICE, 300)]


def test_window_counts_are_asked_only_when_needed_and_once() -> None:
    counter = FakeCounter({("login.*", None, 3600): 50})
    anyone = {"kind": "login.*", "within": "1h"}
    ruleset = compile_ruleset(
        {
            "rules": [
                BRUTE_FORCE,  # kind login.*: not tried for a payment
                rule("a", {"note": "a"}, when={"count": anyone, "greater_than": 10}),
                rule("b", {"note": "b"}, when={"count": anyone, "less_than": 100}),
                rule("c", {"note": "c"}, when={"contains_tag": "x",  # false first: not counted
                                               "count": {**anyone, "within": 60},
                                               "equals": 0}),
            ]
        }
    )  # fmt: skip
    decision = ruleset.evaluate(SPAN, EvalContext(counter=counter))
    assert decision.matched == ("a", "b")
    assert counter.asked == [("login.*", None, 3600)]


def test_a_count_without_a_counter_is_undecidable() -> None:
    ruleset = compile_ruleset({"rules": [BRUTE_FORCE]})
    decision = ruleset.evaluate({**SPAN, "kind": "login.failed"})
    assert decision.outcome == "allow"
    assert [(e.rule, e.message) for e in decision.errors] == [
        ("brute-force", "window counts are not available in this evaluation")
    ]


def test_counter_failures_propagate() -> None:
    class Broken:
        def count(self, kind: KindGlob, author: str | None, within_s: int) -> int:
            raise RuntimeError("database is down")

    ruleset = compile_ruleset({"rules": [BRUTE_FORCE]})
    with pytest.raises(RuntimeError, match="database is down"):
        ruleset.evaluate({**SPAN, "kind": "login.failed"}, EvalContext(counter=Broken()))


# on_error


CEL_ERROR = {"cel": "payload.missing > 1"}


@pytest.mark.parametrize(("on_error", "outcome"), [(None, "allow"), ("skip", "allow"),
                                                    ("match", "reject")])  # fmt: skip
def test_on_error(on_error: str | None, outcome: str) -> None:
    extra = {} if on_error is None else {"on_error": on_error}
    ruleset = compile_ruleset({"rules": [rule("r", {"reject": "no"}, when=CEL_ERROR, **extra)]})
    decision = ruleset.evaluate(SPAN)
    assert decision.outcome == outcome
    assert [e.rule for e in decision.errors] == ["r"]
    assert decision.matched == (("r",) if on_error == "match" else ())
