"""Properties of evaluation, checked against slow reference implementations kept here.

- The document order of rules never changes a decision (only priority, then id, order rules).
- The rules that match are those a plain reference evaluation finds (this also checks the index).
- The outcome follows the precedence: reject, then hold, then simulate, then allow or the default.
- Conditions follow three-valued logic, so reordering `all` / `any` never changes a result.
- A normalized document compiles to the same digest and the same decisions.
- Fast glob matching agrees with a recursive matcher over segments.
"""

from __future__ import annotations

import random
from dataclasses import replace
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from logline.rules import Decision, KindGlob, RuleSet, compile_ruleset
from logline.rules.paths import Template

KINDS = ["payment.approved", "payment.card.declined", "login.failed", "login.ok", "report.done"]
TAGS = ["a", "b", "c"]

# Leaf conditions with a reference predicate over (kind, tags, amount); None means "error".
LEAVES: list[tuple[dict[str, Any], Any]] = [
    ({"kind": "payment.*"}, lambda k, t, a: k in ("payment.approved",)),
    ({"kind": "payment.**"}, lambda k, t, a: k.startswith("payment.")),
    ({"kind": ["login.*", "report.*"]}, lambda k, t, a: k.split(".")[0] in ("login", "report")),
    ({"kind": "**.failed"}, lambda k, t, a: k.endswith(".failed")),
    ({"kind": "*.ok"}, lambda k, t, a: k == "login.ok"),
    ({"contains_tag": "a"}, lambda k, t, a: "a" in t),
    ({"contains_tag": "b"}, lambda k, t, a: "b" in t),
    ({"path": "payload.amount", "greater_than": 50}, lambda k, t, a: a is not None and a > 50),
    ({"path": "payload.amount", "less_than": 20}, lambda k, t, a: a is not None and a < 20),
    ({"missing": "payload.amount"}, lambda k, t, a: a is None),
    ({"cel": "payload.amount % 2 == 0"}, lambda k, t, a: None if a is None else a % 2 == 0),
    ({"cel": "span.tags.size() > 1"}, lambda k, t, a: len(t) > 1),
    ({"cel": "payload.nothing > 1"}, lambda k, t, a: None),
]
ACTIONS: list[Any] = [
    "allow",
    "simulate",
    {"reject": "no"},
    {"require_approval": {"approvers": ["finance"]}},
    {"require_approval": {"approvers": ["ops"], "quorum": 2, "timeout": "1h"}},
    {"add_tag": "x"},
    {"note": "n"},
    {"set_metadata": {"k": "v"}},
]


@st.composite
def rule_sets(draw: st.DrawFn) -> tuple[list[dict[str, Any]], list[Any], str]:
    count = draw(st.integers(min_value=0, max_value=8))
    ids = draw(st.lists(st.sampled_from("abcdefghij"), min_size=count, max_size=count,
                        unique=True))  # fmt: skip
    rules, leaves = [], []
    for rule_id in ids:
        leaf = draw(st.integers(0, len(LEAVES) - 1))
        then = draw(st.lists(st.sampled_from(ACTIONS), min_size=1, max_size=3))
        rule = {
            "id": rule_id,
            "priority": draw(st.integers(0, 2)),
            "enabled": draw(st.booleans()),
            "on_error": draw(st.sampled_from(["skip", "match"])),
            "when": LEAVES[leaf][0],
            "then": [
                {"set_metadata": {"k": rule_id}} if a == {"set_metadata": {"k": "v"}} else a
                for a in then
            ],
        }
        rules.append(rule)
        leaves.append(LEAVES[leaf][1])
    return rules, leaves, draw(st.sampled_from(["allow", "deny"]))


spans = st.builds(
    lambda kind, tags, amount: {
        "kind": kind,
        "author": "logline-id://person/alice",
        "tags": sorted(tags),
        "payload": None if amount is None else {"amount": amount},
    },
    st.sampled_from(KINDS),
    st.sets(st.sampled_from(TAGS)),
    st.none() | st.integers(0, 100),
)


def compile_rules(rules: list[dict[str, Any]], default: str) -> RuleSet:
    return compile_ruleset({"default": default, "rules": rules})


def reference(rules: list[dict[str, Any]], leaves: list[Any], default: str,
              span: dict[str, Any]) -> tuple[tuple[str, ...], str]:  # fmt: skip
    """Matched rule ids and outcome, computed the slow, obvious way."""
    amount = None if span["payload"] is None else span["payload"]["amount"]
    matched = []
    for rule, leaf in sorted(zip(rules, leaves, strict=True),
                             key=lambda pair: (pair[0]["priority"], pair[0]["id"])):  # fmt: skip
        if not rule["enabled"]:
            continue
        result = leaf(span["kind"], span["tags"], amount)
        if result or (result is None and rule["on_error"] == "match"):
            matched.append(rule)
    actions = [action for rule in matched for action in rule["then"]]
    names = {next(iter(a)) if isinstance(a, dict) else a for a in actions}
    if "reject" in names:
        outcome = "reject"
    elif "require_approval" in names:
        outcome = "hold"
    elif "simulate" in names:
        outcome = "simulate"
    elif "allow" in names or default == "allow":
        outcome = "allow"
    else:
        outcome = "reject"
    return tuple(rule["id"] for rule in matched), outcome


@settings(max_examples=300, deadline=None)
@given(rule_sets(), spans, st.randoms(use_true_random=False))
def test_decisions_match_the_reference_and_ignore_document_order(
    case: tuple[list[dict[str, Any]], list[Any], str], span: dict[str, Any], rng: random.Random
) -> None:
    rules, leaves, default = case
    decision = compile_rules(rules, default).evaluate(span)
    assert (decision.matched, decision.outcome) == reference(rules, leaves, default, span)
    shuffled = list(rules)
    rng.shuffle(shuffled)
    # The same decision in every detail; only the digest of the (reordered) document differs.
    assert _unlabelled(compile_rules(shuffled, default).evaluate(span)) == _unlabelled(decision)


def _unlabelled(decision: Decision) -> Decision:
    return replace(decision, ruleset_version="", ruleset_digest="")


@settings(max_examples=200, deadline=None)
@given(rule_sets(), spans)
def test_reject_always_wins(case: tuple[list[dict[str, Any]], list[Any], str],
                            span: dict[str, Any]) -> None:  # fmt: skip
    rules, _, default = case
    decision = compile_rules(rules, default).evaluate(span)
    by_id = {rule["id"]: rule for rule in rules}
    rejects = [i for i in decision.matched for a in by_id[i]["then"] if a == {"reject": "no"}]
    if rejects:
        assert decision.outcome == "reject"
        assert [r.rule for r in decision.reasons] == rejects  # one reason per reject action
    assert (decision.approval is not None) == (decision.outcome == "hold")


@settings(max_examples=100, deadline=None)
@given(rule_sets(), spans)
def test_normalized_documents_compile_to_the_same_set(
    case: tuple[list[dict[str, Any]], list[Any], str], span: dict[str, Any]
) -> None:
    rules, _, default = case
    ruleset = compile_rules(rules, default)
    again = compile_ruleset(ruleset.to_json())
    assert again.digest == ruleset.digest
    assert again.canonical == ruleset.canonical
    assert again.evaluate(span) == ruleset.evaluate(span)


# Three-valued logic

TRUE, FALSE, ERROR = {"cel": "true"}, {"cel": "false"}, {"cel": "payload.nothing == 1"}
LOGIC_LEAVES = {"t": TRUE, "f": FALSE, "e": ERROR}


def trees() -> st.SearchStrategy[Any]:
    leaves = st.sampled_from(sorted(LOGIC_LEAVES))
    return st.recursive(
        leaves,
        lambda children: st.tuples(st.sampled_from(["all", "any"]),
                                   st.lists(children, min_size=1, max_size=4))
        | st.tuples(st.just("not"), children),
        max_leaves=10,
    )  # fmt: skip


def to_condition(tree: Any, rng: random.Random | None = None) -> dict[str, Any]:
    if isinstance(tree, str):
        return LOGIC_LEAVES[tree]
    op, operand = tree
    if op == "not":
        return {"not": to_condition(operand, rng)}
    items = [to_condition(item, rng) for item in operand]
    if rng is not None:
        rng.shuffle(items)
    return {op: items}


def kleene(tree: Any) -> bool | None:
    if isinstance(tree, str):
        return {"t": True, "f": False, "e": None}[tree]
    op, operand = tree
    if op == "not":
        value = kleene(operand)
        return None if value is None else not value
    values = [kleene(item) for item in operand]
    if op == "all":
        return False if False in values else (None if None in values else True)
    return True if True in values else (None if None in values else False)


@settings(max_examples=300, deadline=None)
@given(trees(), st.randoms(use_true_random=False))
def test_conditions_follow_three_valued_logic_in_any_order(tree: Any, rng: random.Random) -> None:
    expected = kleene(tree)
    for condition in (to_condition(tree), to_condition(tree, rng)):
        ruleset = compile_ruleset({"rules": [{"id": "r", "when": condition, "then": ["allow"]}]})
        decision = ruleset.evaluate({"kind": "a.b", "payload": {}})
        assert (decision.matched == ("r",)) is (expected is True)
        assert bool(decision.errors) is (expected is None)


# Globs against a recursive reference


def reference_glob(pattern: list[str], kind: list[str]) -> bool:
    if not pattern:
        return not kind
    head, rest = pattern[0], pattern[1:]
    if head == "**":
        return any(reference_glob(rest, kind[i:]) for i in range(len(kind) + 1))
    return bool(kind) and _segment(head, kind[0]) and reference_glob(rest, kind[1:])


def _segment(pattern: str, segment: str) -> bool:
    if "*" not in pattern:
        return pattern == segment
    first, *middle, last = pattern.split("*")
    if not (segment.startswith(first) and segment[len(first) :].endswith(last)):
        return False
    if len(first) + len(last) > len(segment):
        return False
    inner, position = segment[len(first) : len(segment) - len(last)], 0
    for piece in middle:
        found = inner.find(piece, position)
        if found < 0:
            return False
        position = found + len(piece)
    return True


glob_segments = st.sampled_from(["a", "b", "ab", "*", "a*", "*b", "**"])
kind_segments = st.sampled_from(["a", "b", "ab", "ba", "aab"])


@settings(max_examples=500, deadline=None)
@given(st.lists(glob_segments, min_size=1, max_size=4), st.lists(kind_segments, min_size=2,
                                                                   max_size=5))  # fmt: skip
def test_globs_agree_with_the_reference(pattern: list[str], kind: list[str]) -> None:
    text = ".".join(pattern)
    if "**.**" in text or ("**" not in pattern and len(pattern) < 2):
        return  # refused when parsed
    assert KindGlob.parse(text).matches(".".join(kind)) is reference_glob(pattern, kind)


@given(st.text(alphabet="ab${}.x ", max_size=30))
def test_escaped_text_renders_as_itself(text: str) -> None:
    assert Template.parse(text.replace("$", "$$")).render({}) == text


# Robustness: whatever the input, compiling either succeeds or raises RuleError.

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.sampled_from(["id", "then", "when", "kind", "path", "equals", "rules",
                                       "all", "not", "cel", "reject", "x"]), children,
                      max_size=4),
    max_leaves=20,
)  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200) | st.builds(lambda v: {"rules": v}, json_values))
def test_any_input_compiles_or_raises_rule_error(source: Any) -> None:
    from logline.errors import RuleError

    try:
        compile_ruleset(source)
    except RuleError:
        pass
