"""Examples in rule documents: checked against the whole set, every mismatch reported."""

from __future__ import annotations

from logline.rules import check_examples, compile_ruleset
from logline.rules.examples import EXAMPLE_DEFAULTS

DOCUMENT = """\
default: deny
rules:
  - id: members
    priority: 50
    when: {cel: '"member" in author.roles'}
    then: [allow]
    examples:
      - name: members may write
        span: {kind: note.added}
        roles: [member]
        expect: {outcome: allow, matches: true, matched: [members]}
      - name: strangers may not
        span: {kind: note.added}
        expect:
          outcome: reject
          matches: false
          reasons: ["no rule allows this span and the rule set's default is deny"]
  - id: large
    priority: 10
    when: {kind: payment.*, path: payload.amount, greater_than: 10000}
    then:
      - require_approval: {approvers: [finance], quorum: 2}
      - add_tag: large
      - set_metadata: {amount: "${payload.amount}"}
    examples:
      - span: {kind: payment.approved, payload: {amount: 25000}}
        roles: [member]
        expect: {outcome: hold, tags: [large], metadata: {amount: 25000}}
  - id: brute-force
    when:
      kind: login.failed
      count: {kind: login.failed, by: author, within: 5m}
      greater_than: 5
    then: [{reject: too many failed logins}]
    examples:
      - span: {kind: login.failed}
        roles: [member]
        counts: [{kind: login.failed, by: author, within: 5m, value: 6}]
        expect: {outcome: reject, reasons: [too many failed logins]}
      - span: {kind: login.failed}
        roles: [member]
        counts: [{kind: login.failed, within: 5m, value: 6}]   # by anyone: not this count
        expect: {outcome: allow}
examples:
  - name: a small payment by a member
    span: {kind: payment.approved, payload: {amount: 5}, tags: [b, a, b]}
    roles: [member]
    expect: {outcome: allow, matched: [members]}
"""


def test_passing_examples() -> None:
    ruleset = compile_ruleset(DOCUMENT)
    assert check_examples(ruleset) == []
    assert len(ruleset.all_examples()) == 6
    # Set examples first, then each rule's, in document order.
    assert [e.location for e in ruleset.all_examples()][:2] == [
        "examples[0]",
        "rules[0].examples[0]",
    ]


def test_every_failure_and_every_mismatch_is_reported() -> None:
    broken = DOCUMENT.replace(
        "expect: {outcome: hold, tags: [large], metadata: {amount: 25000}}",
        "expect: {outcome: allow, tags: [big], metadata: {amount: 1, x: 2}}",
    )
    broken = broken.replace("expect: {outcome: allow, matched: [members]}",
                            "expect: {matched: [large, members]}")  # fmt: skip
    failures = check_examples(compile_ruleset(broken))
    assert [(f.location, f.line, f.name) for f in failures] == [
        ("examples[0]", 45, "a small payment by a member"),
        ("rules[1].examples[0]", 26, None),
    ]
    assert failures[0].problems == ("matched: expected ['large', 'members'], got ['members']",)
    assert failures[1].problems == (
        "outcome: expected allow, got hold",
        "tags: expected ['big'] among ['large']",
        "metadata.amount: expected 1, got 25000",
        "metadata.x: expected 2, not set",
    )
    assert str(failures[1]).startswith("rules[1].examples[0] (line 26): outcome: expected allow")
    assert failures[1].decision.outcome == "hold"


def test_an_example_that_hits_an_evaluation_error_fails_unless_it_expects_one() -> None:
    document = """\
rules:
  - id: r
    when: {cel: payload.amount > 1}
    then: [{reject: big}]
    examples:
      - span: {kind: a.b}
        expect: {outcome: allow}
      - span: {kind: a.b}
        expect: {outcome: allow, errors: true}
"""
    (failure,) = check_examples(compile_ruleset(document))
    assert failure.location == "rules[0].examples[0]"
    assert failure.problems[0].startswith("errors: expected none, got r: CEL error:")


def test_examples_of_disabled_rules_are_not_checked() -> None:
    document = """\
rules:
  - id: r
    enabled: false
    then: [{reject: "no"}]
    examples:
      - span: {kind: a.b}
        expect: {outcome: reject}
"""
    assert check_examples(compile_ruleset(document)) == []


def test_example_spans_are_full_and_fixed() -> None:
    ruleset = compile_ruleset(DOCUMENT)
    span = ruleset.all_examples()[0].span
    assert {key: span[key] for key in EXAMPLE_DEFAULTS} == dict(EXAMPLE_DEFAULTS)
    assert span["title"] == "payment.approved"
    assert span["tags"] == ["a", "b"]
    assert span["payload"] == {"amount": 5}
    assert span["payload_digest"].startswith("sha256:")


def test_examples_belong_to_the_canonical_form() -> None:
    ruleset = compile_ruleset(DOCUMENT)
    normalized = ruleset.to_json()
    assert normalized["examples"][0]["span"]["tags"] == ["a", "b"]
    assert normalized["rules"][2]["examples"][0]["counts"] == [
        {"kind": "login.failed", "by": "author", "within": 300, "value": 6}
    ]
    changed = compile_ruleset(DOCUMENT.replace("amount: 25000}}", "amount: 25001}}"))
    assert changed.digest != ruleset.digest
    assert compile_ruleset(normalized).digest == ruleset.digest
    assert check_examples(compile_ruleset(normalized)) == []
