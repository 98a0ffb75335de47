"""Invalid documents: one `RuleError` naming where the problem is (path, and line for YAML).

Each case is a rule document, the location and line the error must name, and a fragment of its
message. All cases run and every failing one is reported.
"""

from __future__ import annotations

import textwrap

import pytest

from logline.errors import InvalidInput, RuleError
from logline.rules import WebhookAllowList, compile_ruleset

HOOKS = WebhookAllowList(["https://hooks.example.com/"])


def one_rule(body: str) -> str:
    """A document with one rule whose indented `body` starts on line 4."""
    return "rules:\n  - id: r\n    then: [allow]\n" + textwrap.indent(textwrap.dedent(body), "    ")


# (name, document, location, line, fragment)
CASES: list[tuple[str, str, str, int | None, str]] = [
    ("yaml syntax", "rules: [\n  - id: a\n", "", 2, "invalid YAML"),
    ("yaml tab", "rules:\n\t- id: a\n", "", 2, "invalid YAML"),
    ("empty document", "", "", None, "the document is empty"),
    ("not a mapping", "- a\n- b\n", "", 1, "must be a mapping, got list"),
    ("rules missing", "default: deny\n", "", 1, "'rules' is required"),
    ("unknown top key", "rule: []\nrules: []\n", "rule", 1, "did you mean 'rules'?"),
    ("rules not a list", "rules: {}\n", "rules", 1, "must be a list, got mapping"),
    ("bad default", "default: maybe\nrules: []\n", "default", 1, "unknown value 'maybe'"),
    ("duplicate yaml key", "rules: []\nrules: []\n", "rules", 2, "duplicate key 'rules'"),
    ("merge key", "a: &x {b: 1}\nrules:\n  - <<: *x\n", "rules[0]", 3, "merge keys"),
    ("nan", one_rule("priority: .nan\n"), "rules[0].priority", 4, "NaN"),
    ("rule not a mapping", "rules:\n  - just text\n", "rules[0]", 2, "must be a mapping"),
    ("rule without id", "rules:\n  - then: [allow]\n", "rules[0]", 2, "'id' is required"),
    ("rule without then", "rules:\n  - id: a\n", "rules[0]", 2, "'then' is required"),
    ("bad id", "rules:\n  - id: Big Rule\n    then: [allow]\n", "rules[0].id", 2, "must be 1-64"),
    (
        "duplicate id",
        "rules:\n  - id: a\n    then: [allow]\n  - id: a\n    then: [allow]\n",
        "rules[1].id",
        4,
        "duplicate rule id 'a' (also rules[0])",
    ),
    ("unknown rule key", one_rule("whenn: {}\n"), "rules[0].whenn", 4, "did you mean 'when'?"),
    ("priority type", one_rule("priority: high\n"), "rules[0].priority", 4, "must be an integer"),
    ("priority bool", one_rule("priority: true\n"), "rules[0].priority", 4, "got boolean"),
    ("enabled type", one_rule("enabled: 'no'\n"), "rules[0].enabled", 4, "must be true or false"),
    ("labels key", one_rule("labels: {Team X: a}\n"), 'rules[0].labels["Team X"]', 4, "label key"),
    ("on_error", one_rule("on_error: ignore\n"), "rules[0].on_error", 4, "unknown value"),
    ("when not mapping", one_rule("when: payment.*\n"), "rules[0].when", 4, "must be a mapping"),
    (
        "unknown condition",
        one_rule("when:\n  all:\n    - kind: a.*\n    - equalz: 1\n"),
        "rules[0].when.all[1].equalz",
        7,
        "unknown condition 'equalz' (did you mean 'equals'?",
    ),
    (
        "comparison without subject",
        "rules:\n"
        + "".join(f"  - id: r{i}\n    then: [allow]\n" for i in range(3))
        + "  - id: r3\n    then: [allow]\n    when:\n      all:\n        - kind: a.*\n"
        "        - equals: 5\n",
        "rules[3].when.all[1].equals",
        13,
        "`equals` compares a `path` or a `count`",
    ),
    (
        "path without comparison",
        one_rule("when: {path: payload.a}\n"),
        "rules[0].when.path",
        4,
        "`path` needs a comparison",
    ),
    (
        "path and count",
        one_rule("when: {path: payload.a, count: {kind: a.b, within: 5m}, equals: 1}\n"),
        "rules[0].when.count",
        4,
        "not both",
    ),
    (
        "bad path root",
        one_rule("when: {exists: body.x}\n"),
        "rules[0].when.exists",
        4,
        "must start with one of span, payload, author, tenant",
    ),
    (
        "bad span field",
        one_rule("when: {exists: span.kinds}\n"),
        "rules[0].when.exists",
        4,
        "span has no field 'kinds'",
    ),
    (
        "bad path segment",
        one_rule("when: {exists: payload..x}\n"),
        "rules[0].when.exists",
        4,
        "empty or invalid segment",
    ),
    (
        "bad glob",
        one_rule("when:\n  kind: [a.*, Payment.*]\n"),
        "rules[0].when.kind[1]",
        5,
        "segment 'Payment'",
    ),
    (
        "glob one segment",
        one_rule("when: {kind: payment}\n"),
        "rules[0].when.kind",
        4,
        "did you mean 'payment.*' or 'payment.**'?",
    ),
    ("empty all", one_rule("when: {all: []}\n"), "rules[0].when.all", 4, "must not be empty"),
    (
        "empty not",
        one_rule("when: {not: {}}\n"),
        "rules[0].when.not",
        4,
        "a condition needs at least one test",
    ),
    (
        "bad tag",
        one_rule("when: {contains_tag: Urgent!}\n"),
        "rules[0].when.contains_tag",
        4,
        "a tag is",
    ),
    (
        "greater_than string",
        one_rule("when: {path: payload.a, greater_than: '5'}\n"),
        "rules[0].when.greater_than",
        4,
        "must be a number, got string",
    ),
    (
        "contains_text on count",
        one_rule("when: {count: {kind: a.b, within: 5m}, contains_text: x}\n"),
        "rules[0].when.contains_text",
        4,
        "contains_text needs a path",
    ),
    (
        "count window",
        one_rule("when: {count: {kind: a.b, within: 5y}, greater_than: 1}\n"),
        "rules[0].when.count.within",
        4,
        "duration must look like",
    ),
    (
        "count by",
        one_rule("when: {count: {kind: a.b, within: 5m, by: bob}, equals: 1}\n"),
        "rules[0].when.count.by",
        4,
        "unknown value 'bob'",
    ),
    (
        "deep nesting",
        one_rule("when: " + "{not: " * 40 + "{kind: a.*}" + "}" * 40 + "\n"),
        "rules[0].when" + ".not" * 33,
        4,
        "nested deeper than 32",
    ),
    (
        "cel syntax",
        one_rule("when:\n  cel: payload.a >\n"),
        "rules[0].when.cel",
        5,
        "CEL does not compile",
    ),
    (
        "cel variable",
        one_rule("when: {cel: 'spam.kind == \"x\"'}\n"),
        "rules[0].when.cel",
        4,
        "unknown variable 'spam'",
    ),
    ("then empty", "rules:\n  - id: r\n    then: []\n", "rules[0].then", 3, "must not be empty"),
    (
        "unknown action",
        "rules:\n  - id: r\n    then: [rejekt]\n",
        "rules[0].then[0]",
        3,
        "unknown action 'rejekt' (did you mean 'reject'?",
    ),
    (
        "unknown action key",
        "rules:\n  - id: r\n    then:\n      - rejekt: no\n",
        "rules[0].then[0].rejekt",
        4,
        "unknown action 'rejekt'",
    ),
    (
        "action indentation",
        "rules:\n  - id: r\n    then:\n      - require_approval:\n        approvers: [a]\n",
        "rules[0].then[0]",
        4,
        "got keys require_approval, approvers (check the indentation",
    ),
    (
        "bare reject",
        "rules:\n  - id: r\n    then: [reject]\n",
        "rules[0].then[0]",
        3,
        "reject needs arguments",
    ),
    (
        "reject empty",
        "rules:\n  - id: r\n    then: [{reject: ''}]\n",
        "rules[0].then[0].reject",
        3,
        "must not be empty",
    ),
    (
        "allow argument",
        "rules:\n  - id: r\n    then: [{allow: {why: x}}]\n",
        "rules[0].then[0].allow.why",
        3,
        "unknown argument 'why'",
    ),
    (
        "template",
        "rules:\n  - id: r\n    then: [{note: 'x ${payload.a'}]\n",
        "rules[0].then[0].note",
        3,
        "unclosed",
    ),
    (
        "template path",
        "rules:\n  - id: r\n    then: [{note: '${request.ip}'}]\n",
        "rules[0].then[0].note",
        3,
        "must start with one of",
    ),
    (
        "payload template",
        "rules:\n  - id: r\n    then:\n      - enqueue:\n          job: a.b\n"
        "          payload: {x: [1, '${bad}']}\n",
        "rules[0].then[0].enqueue.payload",
        6,
        "at .x[1]:",
    ),
    (
        "add_tag",
        "rules:\n  - id: r\n    then: [{add_tag: [ok, 'Not OK']}]\n",
        "rules[0].then[0].add_tag[1]",
        3,
        "a tag is",
    ),
    (
        "metadata key",
        "rules:\n  - id: r\n    then: [{set_metadata: {'A B': 1}}]\n",
        'rules[0].then[0].set_metadata["A B"]',
        3,
        "metadata key",
    ),
    (
        "metadata empty",
        "rules:\n  - id: r\n    then: [{set_metadata: {}}]\n",
        "rules[0].then[0].set_metadata",
        3,
        "at least one key",
    ),
    (
        "approvers",
        "rules:\n  - id: r\n    then: [{require_approval: {approvers: []}}]\n",
        "rules[0].then[0].require_approval.approvers",
        3,
        "must not be empty",
    ),
    (
        "approver id",
        "rules:\n  - id: r\n    then:\n      - require_approval:\n"
        "          approvers: ['logline-id://robot/x']\n",
        "rules[0].then[0].require_approval.approvers[0]",
        5,
        "identity kind must be one of",
    ),
    (
        "quorum",
        "rules:\n  - id: r\n    then:\n      - require_approval:\n"
        "          approvers: ['logline-id://person/bob']\n          quorum: 2\n",
        "rules[0].then[0].require_approval.quorum",
        6,
        "can never be reached",
    ),
    (
        "approval timeout",
        "rules:\n  - id: r\n    then:\n      - require_approval:\n"
        "          approvers: [ops]\n          timeout: 0s\n",
        "rules[0].then[0].require_approval.timeout",
        6,
        "must be between 1 and",
    ),
    (
        "enqueue job",
        "rules:\n  - id: r\n    then: [{enqueue: {job: Report}}]\n",
        "rules[0].then[0].enqueue.job",
        3,
        "job type: kind must be",
    ),
    (
        "enqueue queue",
        "rules:\n  - id: r\n    then: [{enqueue: {job: a.b, queue: 'Q 1'}}]\n",
        "rules[0].then[0].enqueue.queue",
        3,
        "queue must be",
    ),
    (
        "enqueue priority",
        "rules:\n  - id: r\n    then: [{enqueue: {job: a.b, priority: 9}}]\n",
        "rules[0].then[0].enqueue.priority",
        3,
        "must be a string",
    ),
    (
        "emit reserved",
        "rules:\n  - id: r\n    then: [{emit: {kind: logline.x, title: t}}]\n",
        "rules[0].then[0].emit.kind",
        3,
        "LogLine's own",
    ),
    (
        "emit title",
        "rules:\n  - id: r\n    then: [{emit: {kind: a.b}}]\n",
        "rules[0].then[0].emit",
        3,
        "'title' is required",
    ),
    (
        "webhook not allowed",
        "rules:\n  - id: r\n    then: [{webhook: 'https://evil.net/x'}]\n",
        "rules[0].then[0].webhook",
        3,
        "not on this instance's webhook allow-list (https://hooks.example.com/)",
    ),
    (
        "webhook url",
        "rules:\n  - id: r\n    then: [{webhook: {url: 'ftp://x/y'}}]\n",
        "rules[0].then[0].webhook.url",
        3,
        "http(s)://host",
    ),
    (
        "example span",
        one_rule("examples:\n  - span: {kind: Bad}\n    expect: {outcome: allow}\n"),
        "rules[0].examples[0].span.kind",
        5,
        "kind must be dotted",
    ),
    (
        "example author",
        one_rule("examples:\n  - span: {kind: a.b, author: bob}\n    expect: {outcome: allow}\n"),
        "rules[0].examples[0].span.author",
        5,
        "starts with logline-id://",
    ),
    (
        "example span key",
        one_rule("examples:\n  - span: {kind: a.b, body: {}}\n    expect: {outcome: allow}\n"),
        "rules[0].examples[0].span.body",
        5,
        "unknown span field 'body'",
    ),
    (
        "example expect",
        one_rule("examples:\n  - span: {kind: a.b}\n    expect: {}\n"),
        "rules[0].examples[0].expect",
        6,
        "expect at least one of",
    ),
    (
        "example outcome",
        one_rule("examples:\n  - span: {kind: a.b}\n    expect: {outcome: ok}\n"),
        "rules[0].examples[0].expect.outcome",
        6,
        "unknown value 'ok'",
    ),
    (
        "set example matches",
        "rules: []\nexamples:\n  - span: {kind: a.b}\n    expect: {matches: true}\n",
        "examples[0].expect.matches",
        4,
        "unknown expectation",
    ),
    (
        "example count",
        one_rule(
            "examples:\n  - span: {kind: a.b}\n    counts: [{kind: a.b}]\n"
            "    expect: {outcome: allow}\n"
        ),
        "rules[0].examples[0].counts[0]",
        6,
        "'within' is required",
    ),
]


def test_error_locations() -> None:
    failures = []
    for name, document, location, line, fragment in CASES:
        try:
            compile_ruleset(document, webhooks=HOOKS)
        except RuleError as exc:
            found = (exc.location, exc.line, fragment in str(exc))
            if found != (location, line, True):
                failures.append(f"{name}: expected {location!r} line {line} with {fragment!r}, "
                                f"got {exc.location!r} line {exc.line}: {exc}")  # fmt: skip
        else:
            failures.append(f"{name}: compiled")
    assert not failures, "\n".join(failures)


def test_the_message_reads_location_line_then_reason() -> None:
    with pytest.raises(RuleError) as caught:
        compile_ruleset("rules:\n  - id: r\n    then: [rejekt]\n")
    assert str(caught.value).startswith("rules[0].then[0] (line 3, column 12): unknown action")
    assert caught.value.column == 12
    assert isinstance(caught.value, InvalidInput)


def test_json_documents() -> None:
    with pytest.raises(RuleError) as caught:
        compile_ruleset('{"rules": [{"id": "r", "then": ["allow"], "priority": "x"}]}')
    assert (caught.value.location, caught.value.line) == ("rules[0].priority", None)
    with pytest.raises(RuleError, match="invalid JSON"):
        compile_ruleset('{"rules": [}')
    with pytest.raises(RuleError, match="duplicate JSON key 'rules'"):
        compile_ruleset('{"rules": [], "rules": []}')
    assert compile_ruleset('{"rules": []}').rules == ()
    assert compile_ruleset(b'{"rules": []}').rules == ()
    assert compile_ruleset("{rules: []}").rules == ()  # YAML flow style starts with { too


def test_mappings_are_checked_like_text() -> None:
    with pytest.raises(RuleError) as caught:
        compile_ruleset({"rules": [{"id": "r", "then": [{"reject": 5}]}]})
    assert (caught.value.location, caught.value.line) == ("rules[0].then[0].reject", None)


def test_bad_input_types() -> None:
    with pytest.raises(RuleError, match="not valid UTF-8"):
        compile_ruleset(b"\xff\xfe")
    with pytest.raises(RuleError, match="over 1048576"):
        compile_ruleset("#" * (1024 * 1024 + 1))
    with pytest.raises(RuleError, match="values"):
        bomb = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
            f"{c}: &{c} [{', '.join(['*' + p] * 10)}]\n"
            for p, c in zip("abcdef", "bcdefg", strict=True)
        )
        compile_ruleset(bomb)


def test_unquoted_yaml_timestamps_stay_text() -> None:
    ruleset = compile_ruleset(one_rule("when: {path: payload.day, equals: 2026-01-02}\n"))
    assert ruleset.to_json()["rules"][0]["when"]["equals"] == "2026-01-02"


def test_a_location_is_named_once() -> None:
    with pytest.raises(RuleError) as raised:
        compile_ruleset("rules:\n  - id: x\n    when: {kind: a.b}\n    then: [{reject: no}]\n")
    assert str(raised.value).count("rules[0].then[0].reject") == 1
