"""CEL conditions: true, false, runtime errors, the checks made when compiling, window counts."""

from __future__ import annotations

from typing import Any

import cel
import pytest

from logline.errors import RuleError
from logline.rules import Decision, EvalContext, KindGlob, compile_ruleset
from logline.rules.expr import EXTRA_FUNCTIONS, NATIVE_FUNCTIONS, tokens

SPAN: dict[str, Any] = {
    "id": "01900000-0000-7000-8000-000000000001",
    "tenant": "acme",
    "author": "logline-id://person/alice",
    "kind": "payment.approved",
    "title": "Approve Invoice 42",
    "ts": "2026-01-02T03:04:05.000000Z",
    "status": "executed",
    "tags": ["finance", "q3"],
    "payload": {"amount": 1200, "currency": "EUR", "lines": [{"qty": 2}, {"qty": 3}]},
}
CONTEXT = EvalContext(roles=("member", "finance"), settings={"limit": 1000})


def evaluate(expression: str, span: dict[str, Any] = SPAN, context: Any = CONTEXT) -> Decision:
    ruleset = compile_ruleset(
        {"rules": [{"id": "c", "when": {"cel": expression}, "then": ["allow"]}]}
    )
    return ruleset.evaluate(span, context)


TRUE = [
    "span.kind == 'payment.approved'",
    "payload.amount > 1000",
    "span.payload.amount == payload.amount",
    "payload.amount > tenant.settings.limit",
    "'finance' in author.roles",
    "author.kind == 'person' && author.handle == 'alice'",
    "span.tags.exists(t, t == 'q3')",
    "payload.lines.all(l, l.qty > 1)",
    "payload.lines.map(l, l.qty).filter(q, q > 2).size() == 1",
    "{'a': 1}.all(k, k == 'a')",
    "has(payload.currency) && !has(payload.missing)",
    "span.title.startsWith('Approve') && span.title.matches('[0-9]+$')",
    "span.title.lowerAscii().contains('invoice')",
    "timestamp(span.ts).getFullYear() == 2026",
    "timestamp(span.ts) > timestamp('2025-12-31T00:00:00Z')",
    "size(span.tags) == 2",
    "tenant.name == 'acme'",
    "r'a\\d' == 'a\\\\d'",
    '"""span.kind""" == \'span.kind\'',
]
FALSE = [
    "payload.amount > 5000",
    "'admin' in author.roles",
    "span.tags.exists(t, t == 'hr')",
    "has(payload.missing)",
]


@pytest.mark.parametrize("expression", TRUE)
def test_true(expression: str) -> None:
    decision = evaluate(expression)
    assert decision.errors == ()
    assert decision.matched == ("c",)


@pytest.mark.parametrize("expression", FALSE)
def test_false(expression: str) -> None:
    decision = evaluate(expression)
    assert decision.errors == ()
    assert decision.matched == ()


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("payload.missing > 1", "CEL error: "),  # a missing map key
        ("payload.currency > 1", "CEL error: "),  # no such overload
        ("payload.amount / 0 > 1", "CEL error: "),
        ("payload.amount", "CEL returned int, not a boolean"),
        ("span.caused_by.size() > 0", "CEL error: "),  # caused_by is absent from this span
        ("lowerAscii(payload.amount) == 'x'", "CEL error: lowerAscii: "),
    ],
)
def test_runtime_errors_are_recorded_and_the_rule_does_not_match(
    expression: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    first = evaluate(expression)
    assert first.matched == ()
    assert [e.rule for e in first.errors] == ["c"]
    assert first.errors[0].message.startswith(message)
    assert evaluate(expression) == first  # deterministic
    assert capsys.readouterr().err == ""  # nothing leaks to stderr from callbacks


def test_errors_follow_cel_logic_in_structured_combinations() -> None:
    err, yes, no = {"cel": "payload.missing > 1"}, {"kind": "payment.*"}, {"kind": "login.*"}
    cases = [
        ({"any": [err, yes]}, True, False),
        ({"any": [err, no]}, False, True),
        ({"all": [err, no]}, False, False),
        ({"all": [err, yes]}, False, True),
        ({"not": err}, False, True),  # not(error) is an error, never true
        ({"kind": "login.*", "cel": "payload.missing > 1"}, False, False),
    ]
    for condition, matched, errored in cases:
        ruleset = compile_ruleset({"rules": [{"id": "c", "when": condition, "then": ["allow"]}]})
        decision = ruleset.evaluate(SPAN)
        assert (decision.matched == ("c",), bool(decision.errors)) == (matched, errored), condition


def test_cel_also_combines_errors_itself() -> None:
    assert evaluate("payload.missing > 1 || payload.amount > 1").matched == ("c",)
    assert evaluate("payload.missing > 1 && payload.amount < 1").errors == ()


@pytest.mark.parametrize(
    ("expression", "fragment"),
    [
        ("payload.amount >", "CEL does not compile: <input>:1:17: Syntax error"),
        ("spn.kind == 'x'", "unknown variable 'spn' (did you mean 'span'?"),
        ("request.ip == 'x'", "unknown variable 'request'"),
        ("span.kinds == 'x'", "span has no field 'kinds'"),
        ("author.name == 'x'", "author has no field 'name'"),
        ("tenant.limits.x == 1", "tenant has no field 'limits'"),
        ("span.title.startswith('x')", "unknown function 'startswith' (did you mean 'startsWith'?"),
        ("now() > 1", "unknown function 'now'"),
        ("count('a.b') > 1", "count takes 2 or 3 plain string literals"),
        ("count(span.kind, '5m') > 1", "count takes 2 or 3 plain string literals"),
        ("'a.b'.count('5m') > 1", "call count as a function"),
        ("count('payment', '5m') > 1", "matches no kind"),
        ("count('a.b', '5 minutes') > 1", "duration must look like"),
        ("count('a.b', '5m', 'someone') > 1", "by must be one of author, anyone"),
        ("count('a.b', '99d') > 1", "must be between 1 and"),
    ],
)
def test_compile_checks(expression: str, fragment: str) -> None:
    doc = {"rules": [{"id": "c", "when": {"cel": expression}, "then": ["allow"]}]}
    with pytest.raises(RuleError) as caught:
        compile_ruleset(doc)
    assert caught.value.location == "rules[0].when.cel"
    assert fragment in str(caught.value)


class Counter:
    def __init__(self, value: int) -> None:
        self.value = value
        self.asked: list[tuple[str, str | None, int]] = []

    def count(self, kind: KindGlob, author: str | None, within_s: int) -> int:
        self.asked.append((kind.text, author, within_s))
        return self.value


def test_count_in_cel() -> None:
    expression = 'count("login.failed", "5m", "author") > 5 && count("login.*", "1h") < 100'
    for value, matched in [(6, True), (5, False), (100, False)]:
        counter = Counter(value)
        decision = evaluate(expression, context=EvalContext(counter=counter))
        assert (decision.matched == ("c",)) is matched
        assert decision.errors == ()
    assert counter.asked == [
        ("login.failed", "logline-id://person/alice", 300),
        ("login.*", None, 3600),
    ]


def test_count_in_cel_without_a_counter_is_undecidable() -> None:
    decision = evaluate('count("login.failed", "5m") > 5 || true')
    assert decision.matched == ()
    assert decision.errors[0].message == "window counts are not available in this evaluation"


def test_count_shared_between_cel_and_structured_conditions() -> None:
    counter = Counter(7)
    ruleset = compile_ruleset(
        {
            "rules": [
                {"id": "a", "when": {"cel": 'count("login.failed", "300s") == 7'},
                 "then": ["allow"]},
                {"id": "b", "when": {"count": {"kind": "login.failed", "within": 300},
                                     "equals": 7}, "then": ["allow"]},
            ]
        }
    )  # fmt: skip
    assert ruleset.evaluate(SPAN, EvalContext(counter=counter)).matched == ("a", "b")
    assert counter.asked == [("login.failed", None, 300)]


def test_only_the_span_fields_mentioned_are_converted() -> None:
    # The conversion is an optimization; the results must not depend on it.
    ruleset = compile_ruleset(
        {
            "rules": [
                {"id": "a", "when": {"cel": "span.kind == 'payment.approved'"}, "then": ["allow"]},
                {"id": "b", "when": {"cel": "span.title.size() > 3"}, "then": ["allow"]},
            ]
        }
    )
    env = ruleset._cel_env
    assert env is not None and env.span_fields == frozenset({"kind", "title"})
    assert ruleset.evaluate(SPAN).matched == ("a", "b")
    whole = compile_ruleset(
        {"rules": [{"id": "w", "when": {"cel": "size(span) > 3"}, "then": ["allow"]}]}
    )
    assert whole._cel_env is not None and whole._cel_env.span_fields is None
    assert whole.evaluate(SPAN).matched == ("w",)


def test_tokens_skip_strings_and_comments() -> None:
    texts = [t.text for t in tokens("span.kind == 'span.x' // span.y\n && r\"s\\\" == x")]
    assert texts == ["span", ".", "kind", "==", "'span.x'", "&&", 'r"s\\"', "==", "x"]


FUNCTION_CALLS = [
    ("size", "size('ab') == 2"),
    ("contains", "'ab'.contains('a')"),
    ("startsWith", "'ab'.startsWith('a')"),
    ("endsWith", "'ab'.endsWith('b')"),
    ("matches", "'ab'.matches('^a')"),
    ("int", "int('1') == 1"),
    ("uint", "uint(1) == 1u"),
    ("double", "double(1) == 1.0"),
    ("string", "string(1) == '1'"),
    ("bytes", "bytes('a') == b'a'"),
    ("timestamp", "timestamp('2025-01-01T00:00:00Z') != null"),
    ("duration", "duration('5m') == duration('300s')"),
    ("dyn", "dyn(1) == 1"),
    ("type", "type(1) == int"),
    ("getFullYear", "timestamp('2025-01-01T00:00:00Z').getFullYear() == 2025"),
    ("getMonth", "timestamp('2025-01-01T00:00:00Z').getMonth() == 0"),
    ("getDayOfYear", "timestamp('2025-01-01T00:00:00Z').getDayOfYear() == 0"),
    ("getDayOfMonth", "timestamp('2025-01-01T00:00:00Z').getDayOfMonth() == 0"),
    ("getDate", "timestamp('2025-01-01T00:00:00Z').getDate() == 1"),
    ("getDayOfWeek", "timestamp('2025-01-01T00:00:00Z').getDayOfWeek() == 3"),
    ("getHours", "timestamp('2025-01-01T10:00:00Z').getHours() == 10"),
    ("getMinutes", "timestamp('2025-01-01T10:20:00Z').getMinutes() == 20"),
    ("getSeconds", "timestamp('2025-01-01T10:20:30Z').getSeconds() == 30"),
    ("getMilliseconds", "timestamp('2025-01-01T10:20:30Z').getMilliseconds() == 0"),
    ("lowerAscii", "'AB'.lowerAscii() == 'ab'"),
    ("upperAscii", "'ab'.upperAscii() == 'AB'"),
    ("trim", "' a '.trim() == 'a'"),
    ("split", "'a,b'.split(',') == ['a', 'b']"),
    ("join", "['a', 'b'].join(',') == 'a,b'"),
    ("replace", "'aa'.replace('a', 'b') == 'bb'"),
]


@pytest.mark.parametrize(("name", "call"), FUNCTION_CALLS)
def test_every_listed_function_runs(name: str, call: str) -> None:
    assert name in NATIVE_FUNCTIONS | EXTRA_FUNCTIONS.keys()
    assert evaluate(call).matched == ("c",), call


def test_every_listed_function_is_tried() -> None:
    assert {name for name, _ in FUNCTION_CALLS} == NATIVE_FUNCTIONS | EXTRA_FUNCTIONS.keys()


def test_an_unlisted_function_really_is_missing_from_the_runtime() -> None:
    with pytest.raises(RuntimeError, match="Undefined variable or function"):
        cel.compile("max(1, 2) == 2").execute({})
