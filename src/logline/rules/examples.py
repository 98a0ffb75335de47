"""Examples: spans with the decision a rule set must reach for them, checked before publishing.

    examples:
      - name: a large payment waits for finance
        span: {kind: payment.approved, payload: {amount: 25000}}
        roles: [member]                  # the author's roles (optional)
        settings: {}                     # tenant settings (optional)
        counts:                          # answers for window counts (optional; others are 0)
          - {kind: login.failed, by: author, within: 5m, value: 6}
        expect:
          outcome: hold                  # allow | reject | hold | simulate
          matches: true                  # this rule matched (rule examples only)
          matched: [large-payments]      # exactly these rules matched, in evaluation order
          tags: [finance]                # at least these tags were added
          metadata: {risk: high}         # at least these metadata values were set
          reasons: ["needs two approvals"]   # at least these reason texts
          errors: false                  # whether some rule could not be decided (default false)

An example span is a span body without the signature: `kind` is required; the other fields take
fixed defaults (`EXAMPLE_DEFAULTS`) so an example decides the same way every time.
`check_examples` evaluates every example of enabled rules and of the set against the whole set and
returns every failure, each with all its mismatches.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from logline.errors import InvalidSpan
from logline.ledger.span import build_body, check_body
from logline.rules.conditions import read_count
from logline.rules.context import CountQuery, EvalContext
from logline.rules.decision import OUTCOMES, Decision
from logline.rules.globs import KindGlob
from logline.rules.source import At

if TYPE_CHECKING:
    from logline.rules.ruleset import RuleSet

EXAMPLE_DEFAULTS: Mapping[str, Any] = {
    "id": "01900000-0000-7000-8000-000000000000",
    "tenant": "example",
    "ts": "2025-01-01T00:00:00.000000Z",
    "author": "logline-id://person/example",
    "status": "executed",
    "visibility": "organization",
}
SPAN_KEYS = (
    "id", "tenant", "ts", "author", "kind", "title", "status", "caused_by", "replay_of",
    "contract_id", "workflow_id", "flow_id", "tags", "visibility", "payload",
)  # fmt: skip
EXAMPLE_KEYS = ("name", "span", "roles", "settings", "counts", "expect")
EXPECT_KEYS = ("outcome", "matches", "matched", "tags", "metadata", "reasons", "errors")
MAX_EXAMPLES = 100
_FIELD = re.compile(r"body\.([a-z_]+)")


@dataclass(frozen=True, slots=True)
class Example:
    """A compiled example. `rule` is the rule it belongs to (None for the set's own)."""

    location: str
    line: int | None
    rule: str | None
    name: str | None
    span: Mapping[str, Any]
    context: EvalContext
    expect: Mapping[str, Any]
    source: Mapping[str, Any]

    def check(self, decision: Decision) -> list[str]:
        """Every way `decision` differs from what the example expects."""
        want, problems = self.expect, []
        if "outcome" in want and decision.outcome != want["outcome"]:
            problems.append(f"outcome: expected {want['outcome']}, got {decision.outcome}")
        if "matches" in want and (self.rule in decision.matched) != want["matches"]:
            problems.append(
                f"rule {self.rule}: expected it {'to' if want['matches'] else 'not to'} match"
            )
        if "matched" in want and list(decision.matched) != want["matched"]:
            problems.append(f"matched: expected {want['matched']}, got {list(decision.matched)}")
        if "tags" in want:
            absent = [tag for tag in want["tags"] if tag not in decision.tags]
            if absent:
                problems.append(f"tags: expected {absent} among {list(decision.tags)}")
        for key, value in want.get("metadata", {}).items():
            if key not in decision.metadata:
                problems.append(f"metadata.{key}: expected {value!r}, not set")
            elif decision.metadata[key] != value:
                problems.append(
                    f"metadata.{key}: expected {value!r}, got {decision.metadata[key]!r}"
                )
        texts = [reason.text for reason in decision.reasons]
        for text in want.get("reasons", []):
            if text not in texts:
                problems.append(f"reasons: expected {text!r} among {texts}")
        errors = want.get("errors", False)
        if bool(decision.errors) != errors:
            found = "; ".join(f"{e.rule}: {e.message}" for e in decision.errors) or "none"
            problems.append(f"errors: expected {'some' if errors else 'none'}, got {found}")
        return problems


@dataclass(frozen=True, slots=True)
class ExampleFailure:
    """An example whose decision differs from its expectation; `problems` lists every mismatch."""

    location: str
    line: int | None
    name: str | None
    problems: tuple[str, ...]
    decision: Decision

    def to_json(self) -> dict[str, Any]:
        """The failure as an API reports it (the problem of a refused publish, a test run)."""
        return {
            "location": self.location,
            "line": self.line,
            "name": self.name,
            "problems": list(self.problems),
            "decision": self.decision.to_json(),
        }

    def __str__(self) -> str:
        where = self.location if self.line is None else f"{self.location} (line {self.line})"
        name = f" {self.name!r}" if self.name else ""
        return f"{where}{name}: {'; '.join(self.problems)}"


def check_examples(ruleset: RuleSet) -> list[ExampleFailure]:
    """Evaluate every example (the set's, then each enabled rule's) and return every failure."""
    failures = []
    for example in ruleset.all_examples():
        decision = ruleset.evaluate(example.span, example.context)
        problems = example.check(decision)
        if problems:
            failures.append(
                ExampleFailure(
                    example.location, example.line, example.name, tuple(problems), decision
                )
            )
    return failures


class ExampleCounter:
    """The window counter of an example: the values it lists, 0 for any other query."""

    __slots__ = ("values",)

    def __init__(self, values: Mapping[tuple[str, bool, int], int]) -> None:
        self.values = dict(values)

    def count(self, kind: KindGlob, author: str | None, within_s: int) -> int:
        return self.values.get((kind.text, author is not None, within_s), 0)


def compile_examples(at: At, rule: str | None) -> tuple[Example, ...]:
    return tuple(_example(item, rule) for item in at.list(limit=MAX_EXAMPLES))


def _example(at: At, rule: str | None) -> Example:
    members = at.mapping(required=("span", "expect"), optional=EXAMPLE_KEYS, what="example key")
    source: dict[str, Any] = {}
    name = None
    if "name" in members:
        name = source["name"] = members["name"].string(limit=200)
    span, source["span"] = _span(members["span"])
    roles: list[str] = []
    if "roles" in members:
        roles = [item.string(limit=64) for item in members["roles"].list(limit=100)]
    source["roles"] = sorted(set(roles))
    settings: dict[str, Any] = {}
    if "settings" in members:
        members["settings"].mapping()
        settings = dict(members["settings"].json())
    source["settings"] = settings
    counts: dict[tuple[str, bool, int], int] = {}
    listed = []
    for item in members["counts"].list(limit=100) if "counts" in members else []:
        query, value = _count(item)
        counts[(query.kind.text, query.by_author, query.within_s)] = value
        listed.append({**query.to_json(), "value": value})
    source["counts"] = listed
    source["expect"] = expect = _expect(members["expect"], rule)
    position = at.position
    context = EvalContext(roles=tuple(roles), settings=settings, counter=ExampleCounter(counts))
    line = None if position is None else position[0]
    return Example(at.location, line, rule, name, span, context, expect, source)


def _span(at: At) -> tuple[dict[str, Any], dict[str, Any]]:
    """The full span view an example evaluates, and the fields as written (normalized)."""
    members = at.mapping(required=("kind",), optional=SPAN_KEYS, what="span field")
    given = {key: member.value for key, member in members.items()}
    payload = members["payload"].json() if "payload" in members else None
    tags = given.get("tags", [])
    if not isinstance(tags, list) or not all(isinstance(tag, str) for tag in tags):
        raise members["tags"].error("must be a list of tags")
    fields = {**EXAMPLE_DEFAULTS, **given}
    kind = fields["kind"]
    body = build_body(
        tenant=fields["tenant"], author=fields["author"], kind=kind,
        title=fields.get("title", kind if isinstance(kind, str) else ""), payload=payload,
        status=fields["status"], tags=tags, caused_by=fields.get("caused_by"),
        replay_of=fields.get("replay_of"), contract_id=fields.get("contract_id"),
        workflow_id=fields.get("workflow_id"), flow_id=fields.get("flow_id"),
        visibility=fields["visibility"], span_id=fields["id"], ts=fields["ts"],
    )  # fmt: skip
    try:
        check_body(body)
    except InvalidSpan as exc:
        match = _FIELD.match(exc.field or "")
        where = members.get(match.group(1), at) if match else at
        message = str(exc).partition(": ")[2] if exc.field else str(exc)
        raise where.error(message) from exc
    if "tags" in given:
        given["tags"] = body["tags"]
    return {**body, "payload": payload}, given


def _count(at: At) -> tuple[CountQuery, int]:
    members = at.mapping(required=("kind", "within", "value"), optional=("by",))
    value = members["value"].integer(minimum=0)
    spec = {key: member.value for key, member in members.items() if key != "value"}
    return read_count(At(at.doc, at.path, spec)), value


def _expect(at: At, rule: str | None) -> dict[str, Any]:
    keys = EXPECT_KEYS if rule is not None else tuple(k for k in EXPECT_KEYS if k != "matches")
    members = at.mapping(optional=keys, what="expectation")
    if not members:
        raise at.error(f"expect at least one of {', '.join(keys)}")
    out: dict[str, Any] = {}
    for key, member in members.items():
        if key == "outcome":
            out[key] = member.choice(OUTCOMES)
        elif key in ("matches", "errors"):
            out[key] = member.boolean()
        elif key == "metadata":
            out[key] = member.json()
            member.mapping()
        else:  # matched, tags, reasons: lists of strings
            out[key] = [item.string(limit=2000) for item in member.list()]
    return out
