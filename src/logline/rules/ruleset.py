"""Rule sets: a document compiled once, then evaluated against each span.

    >>> ruleset = compile_ruleset('''
    ... rules:
    ...   - id: large-payments
    ...     when: {kind: payment.*, path: payload.amount, greater_than: 10000}
    ...     then: [{reject: "amount ${payload.amount} is over the limit"}]
    ... ''')
    >>> decision = ruleset.evaluate({"kind": "payment.approved", "payload": {"amount": 25000}})
    >>> decision.outcome, decision.reasons[0].text, decision.matched
    ('reject', 'amount 25000 is over the limit', ('large-payments',))

Enabled rules run in order of `priority` (lower first), then `id`. Every rule sees the span as it
was written: no rule sees another's tags or metadata, so the order only decides which rule's
metadata wins for a key (the first) and the order of lists in the decision. Rules are indexed by
the first segment of their top-level `kind` globs, so a span only tries the rules that can match
its kind.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Literal

from logline.canonical import canonicalize, sha256_hex
from logline.ledger.span import Span
from logline.rules.actions import Action, compile_action
from logline.rules.conditions import (
    ALWAYS,
    Condition,
    Conjunction,
    KindTest,
    compile_condition,
)
from logline.rules.context import EvalContext, Facts, Undecidable
from logline.rules.decision import Decision, DecisionBuilder
from logline.rules.examples import Example, compile_examples
from logline.rules.expr import CelEnv, CelTest, compile_cel
from logline.rules.source import At, load_document
from logline.rules.webhooks import NO_WEBHOOKS, WebhookAllowList

MAX_RULES = 1000
MAX_ACTIONS = 32
DEFAULT_PRIORITY = 100
DEFAULTS = ("allow", "deny")
ON_ERROR = ("skip", "match")
SET_KEYS = ("description", "default", "rules", "examples")
RULE_KEYS = (
    "id", "description", "priority", "enabled", "labels", "on_error", "when", "then", "examples",
)  # fmt: skip
_RULE_ID = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
_LABEL = re.compile(r"[a-z0-9][a-z0-9._/-]{0,62}")
_EMPTY_CONTEXT = EvalContext()


@dataclass(frozen=True, slots=True, eq=False)
class Rule:
    """A compiled rule. `index` holds the literal first kind segments it can match, or None."""

    id: str
    description: str
    priority: int
    enabled: bool
    labels: Mapping[str, str]
    on_error: Literal["skip", "match"]
    when: Condition
    then: tuple[Action, ...]
    examples: tuple[Example, ...]
    index: frozenset[str] | None

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "description": self.description,
            "priority": self.priority,
            "enabled": self.enabled,
            "labels": dict(self.labels),
            "on_error": self.on_error,
            "when": self.when.to_json(),
            "then": [action.to_json() for action in self.then],
            "examples": [dict(example.source) for example in self.examples],
        }


class RuleSet:
    """A compiled, immutable rule set; `evaluate` is safe to call from many threads at once."""

    __slots__ = (
        "_buckets", "_cel_env", "_wildcard", "canonical", "default", "description", "digest",
        "examples", "rules", "version",
    )  # fmt: skip

    def __init__(
        self,
        *,
        default: Literal["allow", "deny"],
        description: str,
        rules: tuple[Rule, ...],
        examples: tuple[Example, ...],
        cel_env: CelEnv | None,
        version: str | None,
    ) -> None:
        self.default = default
        self.description = description
        self.rules = rules  # in document order
        self.examples = examples  # the set's own
        self._cel_env = cel_env
        self.canonical = canonicalize(self.to_json())
        self.digest = "sha256:" + sha256_hex(self.canonical)
        self.version = version or self.digest
        ordered = sorted((r for r in rules if r.enabled), key=lambda r: (r.priority, r.id))
        self._wildcard = tuple(r for r in ordered if r.index is None)
        keys = {key for r in ordered if r.index is not None for key in r.index}
        self._buckets = {
            key: tuple(r for r in ordered if r.index is None or key in r.index) for key in keys
        }

    @property
    def order(self) -> tuple[str, ...]:
        """Ids of the enabled rules in evaluation order."""
        ordered = sorted((r for r in self.rules if r.enabled), key=lambda r: (r.priority, r.id))
        return tuple(r.id for r in ordered)

    def rule(self, rule_id: str) -> Rule:
        for rule in self.rules:
            if rule.id == rule_id:
                return rule
        raise KeyError(rule_id)

    def all_examples(self) -> tuple[Example, ...]:
        """The set's examples, then those of each enabled rule, in document order."""
        own = tuple(e for r in self.rules if r.enabled for e in r.examples)
        return self.examples + own

    def evaluate(
        self, span: Span | Mapping[str, Any], context: EvalContext | None = None
    ) -> Decision:
        """Decide about `span`: a `Span`, or a mapping of body fields plus `payload`."""
        facts = Facts(span_view(span), context or _EMPTY_CONTEXT, self._cel_env)
        out = DecisionBuilder()
        rules = self._buckets.get(facts.kind.partition(".")[0], self._wildcard)
        for rule in rules:
            try:
                matched = rule.when.holds(facts)
            except Undecidable as exc:
                out.error(rule.id, str(exc))
                matched = rule.on_error == "match"
            if matched:
                out.match(rule.id)
                for action in rule.then:
                    action.apply(facts, out, rule.id)
        return out.finish(default=self.default, version=self.version, digest=self.digest)

    def to_json(self) -> dict[str, Any]:
        """The normalized document: defaults filled in, shorthands expanded, durations in
        seconds. It compiles back to a set with the same digest."""
        return {
            "description": self.description,
            "default": self.default,
            "rules": [rule.to_json() for rule in self.rules],
            "examples": [dict(example.source) for example in self.examples],
        }

    def __repr__(self) -> str:
        return f"RuleSet(version={self.version!r}, rules={len(self.rules)})"


def span_view(span: Span | Mapping[str, Any]) -> dict[str, Any]:
    """What `span` and paths see: the body fields and `payload`."""
    if isinstance(span, Span):
        view = dict(span.body)
        view["payload"] = span.payload
        return view
    view = dict(span)
    view.setdefault("payload", None)
    return view


def compile_ruleset(
    source: str | bytes | Mapping[str, Any],
    *,
    webhooks: WebhookAllowList = NO_WEBHOOKS,
    version: str | None = None,
) -> RuleSet:
    """Parse, check and compile a rule set document; raise `RuleError` with its location.

    `webhooks` is the instance's allow-list (by default no webhook is allowed); `version` is the
    label decisions carry (by default the set's digest).
    """
    root = At.root(load_document(source))
    members = root.mapping(required=("rules",), optional=SET_KEYS)
    cel_tests: list[CelTest] = []

    def cel_compiler(at: At) -> Condition:
        test = compile_cel(at)
        cel_tests.append(test)
        return test

    rules: list[Rule] = []
    seen: dict[str, int] = {}
    for i, at in enumerate(members["rules"].list(limit=MAX_RULES)):
        rule = _rule(at, cel_compiler, webhooks)
        if rule.id in seen:
            raise at.child("id").error(
                f"duplicate rule id {rule.id!r} (also rules[{seen[rule.id]}])"
            )
        seen[rule.id] = i
        rules.append(rule)
    default = members["default"].choice(DEFAULTS) if "default" in members else "allow"
    return RuleSet(
        default="deny" if default == "deny" else "allow",
        description=_description(members),
        rules=tuple(rules),
        examples=compile_examples(members["examples"], None) if "examples" in members else (),
        cel_env=CelEnv.of(cel_tests),
        version=version,
    )


def _rule(at: At, cel: Callable[[At], Condition], webhooks: WebhookAllowList) -> Rule:
    members = at.mapping(required=("id", "then"), optional=RULE_KEYS)
    rule_id = members["id"].matching(_RULE_ID, "1-64 of a-z, 0-9, '.', '_', '-'")
    priority = DEFAULT_PRIORITY
    if "priority" in members:
        priority = members["priority"].integer(minimum=-1_000_000, maximum=1_000_000)
    enabled = members["enabled"].boolean() if "enabled" in members else True
    labels: dict[str, str] = {}
    for key, value in members["labels"].items() if "labels" in members else []:
        if not _LABEL.fullmatch(key):
            raise value.error("a label key is 1-63 of a-z, 0-9, '._/-', starting with a-z0-9")
        labels[key] = value.string(nonempty=False, limit=128)
    on_error = members["on_error"].choice(ON_ERROR) if "on_error" in members else "skip"
    when = compile_condition(members["when"], cel, top=True) if "when" in members else ALWAYS
    then = tuple(
        compile_action(item, webhooks)
        for item in members["then"].list(nonempty=True, limit=MAX_ACTIONS)
    )
    examples = compile_examples(members["examples"], rule_id) if "examples" in members else ()
    return Rule(
        id=rule_id,
        description=_description(members),
        priority=priority,
        enabled=enabled,
        labels=MappingProxyType(labels),
        on_error="match" if on_error == "match" else "skip",
        when=when,
        then=then,
        examples=examples,
        index=_index(when),
    )


def _description(members: dict[str, At]) -> str:
    if "description" not in members:
        return ""
    return members["description"].string(nonempty=False, limit=2000)


def _index(when: Condition) -> frozenset[str] | None:
    """The literal first segments of the top-level kind globs, if every glob has one."""
    items = when.items if isinstance(when, Conjunction) else (when,)
    for item in items:
        if isinstance(item, KindTest):
            firsts = [glob.first for glob in item.globs]
            if all(first is not None for first in firsts):
                return frozenset(first for first in firsts if first is not None)
    return None
