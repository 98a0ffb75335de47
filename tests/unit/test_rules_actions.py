"""Every action: its shorthand and long forms, its normalized form, and its effect on a decision."""

from __future__ import annotations

from typing import Any

import pytest

from logline.rules import (
    ApprovalGroup,
    ApprovalRequirement,
    CallWebhook,
    Decision,
    EmitSpan,
    EnqueueJob,
    WebhookAllowList,
    compile_ruleset,
    follow_up_from_json,
)

SPAN: dict[str, Any] = {
    "id": "01900000-0000-7000-8000-000000000001",
    "tenant": "acme",
    "author": "logline-id://person/alice",
    "kind": "payment.approved",
    "title": "Approve invoice 42",
    "tags": [],
    "payload": {"amount": 1200, "currency": "EUR", "invoice": {"id": 42}},
}
HOOKS = WebhookAllowList(["https://hooks.example.com/logline"])


def run(*actions: Any, span: dict[str, Any] = SPAN, default: str = "allow") -> Decision:
    ruleset = compile_ruleset(
        {"default": default, "rules": [{"id": "r", "then": list(actions)}]}, webhooks=HOOKS
    )
    return ruleset.evaluate(span)


def normalized(action: Any) -> Any:
    ruleset = compile_ruleset({"rules": [{"id": "r", "then": [action]}]}, webhooks=HOOKS)
    (out,) = ruleset.to_json()["rules"][0]["then"]
    return out


def test_allow() -> None:
    assert run("allow").outcome == "allow"
    assert run("allow", default="deny").outcome == "allow"
    decision = run({"allow": "trusted ${span.tenant}"}, default="deny")
    assert [(r.rule, r.text) for r in decision.reasons] == [("r", "trusted acme")]
    assert normalized("allow") == {"allow": {}}
    assert normalized({"allow": None}) == {"allow": {}}
    assert normalized({"allow": {"reason": "x"}}) == {"allow": {"reason": "x"}}


def test_reject() -> None:
    decision = run({"reject": "amount ${payload.amount} ${payload.currency} is too much"})
    assert decision.outcome == "reject"
    assert decision.reasons[0].text == "amount 1200 EUR is too much"
    assert normalized({"reject": "no"}) == {"reject": {"reason": "no"}}
    assert normalized({"reject": {"reason": "no"}}) == {"reject": {"reason": "no"}}
    # A reason that renders empty still says something.
    assert run({"reject": "${payload.gone}"}).reasons[0].text == "rejected by rule r"


def test_simulate() -> None:
    decision = run("simulate")
    assert decision.outcome == "simulate"
    assert decision.reasons[0].text == "simulated by rule r"
    assert run({"simulate": "trying ${span.kind}"}).reasons[0].text == "trying payment.approved"
    assert run({"simulate": {"note": "n"}}).reasons[0].text == "n"
    assert normalized("simulate") == {"simulate": {}}
    # Under default deny, a simulating rule is enough to let the span in as simulated.
    assert run("simulate", default="deny").outcome == "simulate"


def test_add_tag() -> None:
    decision = run({"add_tag": "b"}, {"add_tag": ["a", "c", "a"]}, {"add_tag": {"tags": ["b"]}})
    assert decision.tags == ("a", "b", "c")
    assert decision.outcome == "allow"
    assert normalized({"add_tag": ["z", "a", "z"]}) == {"add_tag": {"tags": ["a", "z"]}}


def test_set_metadata() -> None:
    decision = run(
        {"set_metadata": {"amount": "${payload.amount}", "label": "inv-${payload.invoice.id}"}},
        {"set_metadata": {"amount": 0, "fixed": {"a": [1, "${span.tenant}"]}}},
    )
    # The first to set a key wins; whole-string templates keep the value's type.
    assert dict(decision.metadata) == {
        "amount": 1200,
        "label": "inv-42",
        "fixed": {"a": [1, "acme"]},
    }
    assert normalized({"set_metadata": {"k": "${span.id}"}}) == {
        "set_metadata": {"k": "${span.id}"}
    }


def test_note() -> None:
    decision = run({"note": "seen ${span.title}"}, {"note": {"text": "second"}})
    assert [(n.rule, n.text) for n in decision.notes] == [
        ("r", "seen Approve invoice 42"),
        ("r", "second"),
    ]
    assert decision.reasons == ()  # notes do not explain the outcome
    assert normalized({"note": "x"}) == {"note": {"text": "x"}}


def test_require_approval() -> None:
    decision = run(
        {
            "require_approval": {
                "approvers": ["finance", "logline-id://person/bob"],
                "quorum": 2,
                "timeout": "2h",
                "reason": "large: ${payload.amount}",
            }
        }
    )
    assert decision.outcome == "hold"
    assert decision.reasons[0].text == "large: 1200"
    assert decision.approval == ApprovalRequirement(
        groups=(ApprovalGroup(("finance",), ("logline-id://person/bob",), 2, True, ("r",)),),
        timeout_s=7200,
    )
    assert normalized({"require_approval": {"approvers": {"roles": ["ops"]}}}) == {
        "require_approval": {
            "approvers": {"roles": ["ops"], "identities": []},
            "quorum": 1,
            "timeout": 86400,
            "separation_of_duties": True,
        }
    }


def test_approval_separation_of_duties() -> None:
    need = run({"require_approval": {"approvers": ["finance"], "quorum": 1}}).approval
    assert need is not None
    author = SPAN["author"]
    assert not need.eligible(author, ("finance",), author=author)
    assert need.eligible("logline-id://person/bob", ("finance",), author=author)
    assert not need.eligible("logline-id://person/bob", ("member",), author=author)
    assert not need.is_met({author: ("finance",)}, author=author)
    relaxed = run(
        {"require_approval": {"approvers": ["finance"], "separation_of_duties": False}}
    ).approval
    assert relaxed is not None and relaxed.is_met({author: ("finance",)}, author=author)


def test_approval_requirement_round_trips() -> None:
    need = run({"require_approval": {"approvers": ["a", "b"], "quorum": 3}}).approval
    assert need is not None
    assert ApprovalRequirement.from_json(need.to_json()) == need


def test_enqueue() -> None:
    decision = run(
        {
            "enqueue": {
                "job": "invoice.review",
                "payload": {"invoice": "${payload.invoice.id}", "by": "${span.author}"},
                "queue": "finance",
                "priority": "high",
                "dedupe_key": "review-${payload.invoice.id}",
            }
        },
        {"enqueue": {"job": "audit.log"}},
    )
    assert decision.follow_ups == (
        EnqueueJob(
            "r", "invoice.review", {"invoice": 42, "by": "logline-id://person/alice"},
            "finance", "high", "review-42",
        ),
        EnqueueJob("r", "audit.log", None, None, None, None),
    )  # fmt: skip
    assert normalized({"enqueue": {"job": "a.b"}}) == {
        "enqueue": {"job": "a.b", "payload": None, "queue": None, "priority": None,
                    "dedupe_key": None}
    }  # fmt: skip


def test_emit() -> None:
    decision = run(
        {
            "emit": {
                "kind": "alert.raised",
                "title": "Large ${span.kind} of ${payload.amount}",
                "payload": {"trigger": "${span.id}", "amount": "${payload.amount}"},
                "tags": ["alert"],
            }
        },
        {"emit": {"kind": "alert.blank", "title": "${payload.gone}"}},
    )
    assert decision.follow_ups == (
        EmitSpan(
            "r", "alert.raised", "Large payment.approved of 1200",
            {"trigger": SPAN["id"], "amount": 1200}, ("alert",), SPAN["id"],
        ),
        EmitSpan("r", "alert.blank", "alert.blank", None, (), SPAN["id"]),
    )  # fmt: skip


def test_webhook() -> None:
    decision = run(
        {"webhook": "https://hooks.example.com/logline/x"},
        {"webhook": {"url": "https://hooks.example.com/logline", "body": {"k": "${span.kind}"}}},
    )
    first, second = decision.follow_ups
    # The default body is the rule and the span as rules see it.
    assert first == CallWebhook(
        "r", "https://hooks.example.com/logline/x", {"rule": "r", "span": SPAN}
    )
    assert second == CallWebhook(
        "r", "https://hooks.example.com/logline", {"k": "payment.approved"}
    )
    assert normalized({"webhook": "https://hooks.example.com/logline"}) == {
        "webhook": {"url": "https://hooks.example.com/logline", "body": None}
    }


@pytest.mark.parametrize(
    ("url", "allowed"),
    [
        ("https://hooks.example.com/logline", True),
        ("https://hooks.example.com/logline/a/b?q=1", True),
        ("https://hooks.example.com:443/logline/a", True),
        ("https://HOOKS.example.com/logline/a", True),
        ("https://hooks.example.com/loglinex", False),
        ("https://hooks.example.com/", False),
        ("http://hooks.example.com/logline", False),
        ("https://hooks.example.com:8443/logline", False),
        ("https://hooks.example.com.evil.net/logline", False),
        ("https://evil.net/?https://hooks.example.com/logline", False),
        ("https://user:pw@hooks.example.com/logline", False),
        ("ftp://hooks.example.com/logline", False),
        ("not a url", False),
    ],
)
def test_webhook_allow_list(url: str, allowed: bool) -> None:
    assert HOOKS.allows(url) is allowed


def test_unsafe_allow_any_skips_the_list() -> None:
    anything = WebhookAllowList.unsafe_allow_any()
    assert anything.allows("https://anywhere.example/x")
    assert not anything.allows("ftp://anywhere.example/x")  # still a valid http(s) URL


def test_follow_ups_round_trip() -> None:
    decision = run(
        {"enqueue": {"job": "a.b", "payload": {"x": 1}}},
        {"emit": {"kind": "c.d", "title": "t", "tags": ["x"]}},
        {"webhook": "https://hooks.example.com/logline"},
    )
    for item in decision.follow_ups:
        assert follow_up_from_json(item.to_json()) == item


def test_follow_ups_and_tags_are_kept_on_reject() -> None:
    decision = run({"add_tag": "x"}, {"emit": {"kind": "a.b", "title": "t"}}, {"reject": "no"})
    assert decision.outcome == "reject"
    assert decision.tags == ("x",)
    assert len(decision.follow_ups) == 1  # recorded; the caller runs them only after a commit
