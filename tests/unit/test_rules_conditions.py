"""Every structured condition, its edge cases, and the kind globs and paths under them."""

from __future__ import annotations

from typing import Any

import pytest

from logline.rules import EvalContext, KindGlob, compile_ruleset
from logline.rules.paths import MISSING, FactPath, Template

SPAN: dict[str, Any] = {
    "id": "01900000-0000-7000-8000-000000000001",
    "tenant": "acme",
    "author": "logline-id://person/alice",
    "kind": "payment.approved",
    "title": "Approve Invoice 42 (urgent)",
    "status": "executed",
    "caused_by": None,
    "tags": ["finance", "q3"],
    "payload": {
        "amount": 1200,
        "ratio": 0.5,
        "currency": "EUR",
        "flag": True,
        "zero": 0,
        "empty": None,
        "lines": [{"sku": "A-1", "qty": 2}, {"sku": "B-2", "qty": 1}],
        "meta": {"source": "api"},
        "text_amount": "1200",
    },
}
CONTEXT = EvalContext(roles=("member", "finance"), settings={"limit": 1000, "region": "eu"})


def holds(condition: dict[str, Any], span: dict[str, Any] = SPAN, context: Any = CONTEXT) -> bool:
    ruleset = compile_ruleset({"rules": [{"id": "t", "when": condition, "then": ["allow"]}]})
    decision = ruleset.evaluate(span, context)
    assert not decision.errors, decision.errors
    return decision.matched == ("t",)


CASES: list[tuple[str, dict[str, Any], bool]] = [
    # kind
    ("kind exact", {"kind": "payment.approved"}, True),
    ("kind other", {"kind": "payment.declined"}, False),
    ("kind one segment", {"kind": "payment.*"}, True),
    ("kind one segment, deeper", {"kind": "payment.*.x"}, False),
    ("kind any depth", {"kind": "**"}, True),
    ("kind suffix", {"kind": "**.approved"}, True),
    ("kind partial segment", {"kind": "pay*.appr*"}, True),
    ("kind list, second", {"kind": ["refund.*", "payment.*"]}, True),
    ("kind list, none", {"kind": ["refund.*", "login.*"]}, False),
    # all / any / not
    ("all true", {"all": [{"kind": "payment.*"}, {"contains_tag": "q3"}]}, True),
    ("all one false", {"all": [{"kind": "payment.*"}, {"contains_tag": "q4"}]}, False),
    ("any one true", {"any": [{"kind": "login.*"}, {"contains_tag": "q3"}]}, True),
    ("any none", {"any": [{"kind": "login.*"}, {"contains_tag": "q4"}]}, False),
    ("not false", {"not": {"kind": "login.*"}}, True),
    ("not true", {"not": {"kind": "payment.*"}}, False),
    (
        "nested",
        {"not": {"any": [{"all": [{"exists": "payload.x"}]}, {"missing": "span.id"}]}},
        True,
    ),
    # several tests in one mapping are all required
    ("mapping and", {"kind": "payment.*", "contains_tag": "finance", "exists": "payload"}, True),
    ("mapping and, one false", {"kind": "payment.*", "contains_tag": "nope"}, False),
    # equals / not_equals
    ("equals string", {"path": "payload.currency", "equals": "EUR"}, True),
    ("equals string differs", {"path": "payload.currency", "equals": "USD"}, False),
    ("equals int as float", {"path": "payload.amount", "equals": 1200.0}, True),
    ("equals is typed", {"path": "payload.text_amount", "equals": 1200}, False),
    ("equals bool", {"path": "payload.flag", "equals": True}, True),
    ("true is not 1", {"path": "payload.flag", "equals": 1}, False),
    ("0 is not false", {"path": "payload.zero", "equals": False}, False),
    ("equals object", {"path": "payload.meta", "equals": {"source": "api"}}, True),
    ("equals list", {"path": "payload.lines.1", "equals": {"sku": "B-2", "qty": 1}}, True),
    ("equals null on null", {"path": "payload.empty", "equals": None}, True),
    ("equals null on missing", {"path": "payload.nothing", "equals": None}, True),
    ("missing never equals a value", {"path": "payload.nothing", "equals": "x"}, False),
    ("not_equals", {"path": "payload.currency", "not_equals": "USD"}, True),
    ("not_equals same", {"path": "payload.currency", "not_equals": "EUR"}, False),
    ("not_equals on missing", {"path": "payload.nothing", "not_equals": "x"}, True),
    ("span field", {"path": "span.status", "equals": "executed"}, True),
    ("null span field", {"path": "span.caused_by", "equals": None}, True),
    ("author id", {"path": "author.id", "equals": "logline-id://person/alice"}, True),
    ("author kind", {"path": "author.kind", "equals": "person"}, True),
    ("author handle", {"path": "author.handle", "equals": "alice"}, True),
    ("tenant name", {"path": "tenant.name", "equals": "acme"}, True),
    ("tenant setting", {"path": "tenant.settings.region", "equals": "eu"}, True),
    # greater_than / less_than
    ("greater", {"path": "payload.amount", "greater_than": 1000}, True),
    ("not greater", {"path": "payload.amount", "greater_than": 1200}, False),
    ("greater float", {"path": "payload.ratio", "greater_than": 0.25}, True),
    ("less", {"path": "payload.amount", "less_than": 1200.5}, True),
    ("not less", {"path": "payload.amount", "less_than": 1200}, False),
    ("range", {"path": "payload.amount", "greater_than": 1000, "less_than": 2000}, True),
    ("range outside", {"path": "payload.amount", "greater_than": 1000, "less_than": 1100}, False),
    ("no coercion of strings", {"path": "payload.text_amount", "greater_than": 1}, False),
    ("booleans are not numbers", {"path": "payload.flag", "greater_than": 0}, False),
    ("missing is not greater", {"path": "payload.nothing", "greater_than": -1}, False),
    ("missing is not less", {"path": "payload.nothing", "less_than": 1}, False),
    ("list index", {"path": "payload.lines.0.qty", "greater_than": 1}, True),
    ("index past the end", {"path": "payload.lines.5.qty", "less_than": 100}, False),
    # contains_text
    ("text, case-insensitive", {"path": "span.title", "contains_text": "URGENT"}, True),
    ("text absent", {"path": "span.title", "contains_text": "refund"}, False),
    ("text needs a string", {"path": "payload.amount", "contains_text": "12"}, False),
    # exists / missing
    ("exists", {"exists": "payload.meta.source"}, True),
    ("exists on null", {"exists": "payload.empty"}, False),
    ("exists on absent", {"exists": "payload.nothing.deeper"}, False),
    ("exists, falsy values count", {"exists": "payload.zero"}, True),
    ("missing on null", {"missing": "payload.empty"}, True),
    ("missing on absent", {"missing": "payload.nothing"}, True),
    ("missing on present", {"missing": "payload.amount"}, False),
    ("exists whole payload", {"exists": "payload"}, True),
    # contains_tag
    ("tag", {"contains_tag": "finance"}, True),
    ("tag absent", {"contains_tag": "hr"}, False),
    # roles are in author.roles
    ("role", {"path": "author.roles", "equals": ["finance", "member"]}, True),
]


@pytest.mark.parametrize(
    ("condition", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_condition(condition: dict[str, Any], expected: bool) -> None:
    assert holds(condition) is expected


def test_a_rule_without_when_matches_every_span() -> None:
    ruleset = compile_ruleset({"rules": [{"id": "t", "then": ["allow"]}]})
    assert ruleset.evaluate({"kind": "x.y"}).matched == ("t",)
    assert ruleset.to_json()["rules"][0]["when"] == {}


def test_a_span_without_payload_reads_payload_as_null() -> None:
    span = {key: value for key, value in SPAN.items() if key != "payload"}
    assert holds({"missing": "payload"}, span)
    assert holds({"missing": "span.payload"}, span)
    assert not holds({"path": "payload.amount", "greater_than": 0}, span)


def test_conditions_read_a_signed_span() -> None:
    from logline.identity.keys import PrivateKey
    from logline.ledger.span import new_span

    span = new_span(
        PrivateKey.generate(), tenant="acme", author="logline-id://person/alice",
        kind="payment.approved", title="Approve", payload={"amount": 5}, tags=["b", "a"],
    )  # fmt: skip
    ruleset = compile_ruleset(
        {
            "rules": [
                {"id": "p", "when": {"path": "payload.amount", "equals": 5}, "then": ["allow"]},
                {"id": "t", "when": {"contains_tag": "a"}, "then": ["allow"]},
                {"id": "i", "when": {"path": "span.id", "equals": span.id}, "then": ["allow"]},
            ]
        }
    )
    assert ruleset.evaluate(span).matched == ("i", "p", "t")


# Globs and paths on their own


GLOBS = [
    ("payment.approved", "payment.approved", True),
    ("payment.approved", "payment.approvedx", False),
    ("payment.*", "payment.x", True),
    ("payment.*", "payment.x.y", False),
    ("payment.*", "paymentx.y", False),
    ("payment.**", "payment.x.y.z", True),
    ("payment.**", "payments.x", False),
    ("payment.card.**", "payment.card", True),  # zero segments
    ("payment.card.**", "payment.cards", False),
    ("**", "a.b", True),
    ("**.failed", "a.b.failed", True),
    ("**.failed", "a.failedx", False),
    ("a.**.z", "a.z", True),  # `**` matches zero segments too
    ("a.**.z", "a.b.z", True),
    ("a.**.z", "a.b.c.z", True),
    ("log*.fail*", "login.failed", True),
    ("log*.fail*", "logout.fail", True),
    ("log*.fail*", "blog.failed", False),
    ("*.*", "a.b", True),
    ("*.*", "a.b.c", False),
]


@pytest.mark.parametrize(("glob", "kind", "expected"), GLOBS)
def test_glob(glob: str, kind: str, expected: bool) -> None:
    assert KindGlob.parse(glob).matches(kind) is expected


def test_glob_index_hints() -> None:
    assert KindGlob.parse("payment.*").first == "payment"
    assert KindGlob.parse("pay*.x").first is None
    assert KindGlob.parse("**.x").first is None
    assert KindGlob.parse("payment.card.*").prefix == "payment.card."


@pytest.mark.parametrize(
    "bad", ["", "payment", "*", "Payment.x", "a..b", "a.***", "a.**.**", "a.b-c", "a.1b", "a. b"]
)
def test_bad_globs(bad: str) -> None:
    from logline.errors import InvalidInput

    with pytest.raises(InvalidInput):
        KindGlob.parse(bad)


def test_path_resolution() -> None:
    roots = {"span": {"tags": ["a", "b"]}, "payload": {"0": "key", "list": [10, 20]}}
    assert FactPath.parse("span.tags.1").resolve(roots) == "b"
    assert FactPath.parse("payload.0").resolve(roots) == "key"  # a digit key in a mapping
    assert FactPath.parse("payload.list.1").resolve(roots) == 20
    assert FactPath.parse("payload.list.x").resolve(roots) is MISSING
    assert FactPath.parse("payload.list.1.x").resolve(roots) is MISSING
    assert FactPath.parse("author.id").resolve(roots) is MISSING


def test_templates() -> None:
    roots = {"span": {"kind": "a.b"}, "payload": {"n": 5, "s": "x", "o": {"k": [1]}, "z": None}}
    assert Template.parse("${payload.n}").render(roots) == 5
    assert Template.parse("${payload.o}").render(roots) == {"k": [1]}
    assert Template.parse("${payload.gone}").render(roots) is None
    assert Template.parse("n=${payload.n} s=${payload.s} o=${payload.o}").render(roots) == (
        'n=5 s=x o={"k":[1]}'
    )
    assert Template.parse("[${payload.gone}][${payload.z}]").render(roots) == "[][]"
    assert Template.parse("cost: $$5 $x ${ span.kind }").render(roots) == "cost: $5 $x a.b"
    assert Template.parse("${payload.n}").render_text(roots) == "5"
