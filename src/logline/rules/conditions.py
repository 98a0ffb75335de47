"""Conditions: the `when` part of a rule, compiled once into objects that test `Facts`.

    when:
      kind: payment.*                   # a kind glob, or a list of them
      path: payload.amount              # a subject ...
      greater_than: 10000               # ... and one or more comparisons of it
      any:
        - contains_tag: urgent
        - not: {exists: payload.approver}

A condition is a mapping; each key is a test and the mapping holds when all its tests hold. The
tests are `kind`, `all`, `any`, `not`, `exists`, `missing`, `contains_tag`, `cel`, and a subject
(`path` or `count`) with comparisons (`equals`, `not_equals`, `greater_than`, `less_than`, and for a
path `contains_text`). docs/RULES.md §3 gives the exact semantics of each.

Evaluation is three-valued, as in CEL: a test that cannot be decided (a CEL runtime error, a count
without a counter) raises `Undecidable`; `all` is false if any part is false, whatever the
errors, `any` is true if any part is true, and otherwise the error stands. So the result never
depends on the order tests are tried in. Within one mapping the cheap tests run first.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from logline.errors import InvalidIdentifier, InvalidInput
from logline.identity.ids import check_tag
from logline.rules.context import CountQuery, Facts, Undecidable
from logline.rules.globs import KindGlob
from logline.rules.paths import MISSING, FactPath
from logline.rules.source import At, duration_s

MAX_CONDITION_DEPTH = 32
MAX_WINDOW_S = 31 * 86_400
COUNT_BY = ("author", "anyone")
COMPARISONS = ("equals", "not_equals", "greater_than", "less_than", "contains_text")
COUNT_COMPARISONS = ("equals", "not_equals", "greater_than", "less_than")
TESTS = (
    "kind", "all", "any", "not", "exists", "missing", "contains_tag", "cel", "path", "count",
    *COMPARISONS,
)  # fmt: skip


class Condition(ABC):
    """A compiled test. `holds` returns a bool or raises `Undecidable`."""

    __slots__ = ()
    cost: ClassVar[int] = 1  # what trying it costs, roughly; cheaper tests run first

    @abstractmethod
    def holds(self, facts: Facts) -> bool: ...

    @abstractmethod
    def to_json(self) -> dict[str, Any]:
        """This test as members of a normalized condition mapping."""


CelCompiler = Callable[[At], Condition]


class Always(Condition):
    """A rule without `when`: every span."""

    __slots__ = ()

    def holds(self, facts: Facts) -> bool:
        return True

    def to_json(self) -> dict[str, Any]:
        return {}


ALWAYS = Always()


@dataclass(frozen=True, slots=True)
class KindTest(Condition):
    globs: tuple[KindGlob, ...]
    cost: ClassVar[int] = 0

    def holds(self, facts: Facts) -> bool:
        kind = facts.kind
        return any(glob.matches(kind) for glob in self.globs)

    def to_json(self) -> dict[str, Any]:
        return {"kind": [glob.text for glob in self.globs]}


@dataclass(frozen=True, slots=True)
class AllOf(Condition):
    items: tuple[Condition, ...]
    cost: ClassVar[int] = 5

    def holds(self, facts: Facts) -> bool:
        return all_hold(self.items, facts)

    def to_json(self) -> dict[str, Any]:
        return {"all": [item.to_json() for item in self.items]}


@dataclass(frozen=True, slots=True)
class AnyOf(Condition):
    items: tuple[Condition, ...]
    cost: ClassVar[int] = 5

    def holds(self, facts: Facts) -> bool:
        error: Undecidable | None = None
        for item in self.items:
            try:
                if item.holds(facts):
                    return True
            except Undecidable as exc:
                error = error or exc
        if error is not None:
            raise error
        return False

    def to_json(self) -> dict[str, Any]:
        return {"any": [item.to_json() for item in self.items]}


@dataclass(frozen=True, slots=True)
class Not(Condition):
    item: Condition
    cost: ClassVar[int] = 5

    def holds(self, facts: Facts) -> bool:
        return not self.item.holds(facts)

    def to_json(self) -> dict[str, Any]:
        return {"not": self.item.to_json()}


@dataclass(frozen=True, slots=True)
class Conjunction(Condition):
    """A mapping of several tests, kept in cost order."""

    items: tuple[Condition, ...]
    cost: ClassVar[int] = 5

    def holds(self, facts: Facts) -> bool:
        return all_hold(self.items, facts)

    def to_json(self) -> dict[str, Any]:
        merged: dict[str, Any] = {}
        for item in self.items:
            merged.update(item.to_json())
        return merged


def all_hold(items: tuple[Condition, ...], facts: Facts) -> bool:
    error: Undecidable | None = None
    for item in items:
        try:
            if not item.holds(facts):
                return False
        except Undecidable as exc:
            error = error or exc
    if error is not None:
        raise error
    return True


@dataclass(frozen=True, slots=True)
class Exists(Condition):
    path: FactPath

    def holds(self, facts: Facts) -> bool:
        value = self.path.resolve(facts.roots)
        return value is not MISSING and value is not None

    def to_json(self) -> dict[str, Any]:
        return {"exists": self.path.text}


@dataclass(frozen=True, slots=True)
class Missing(Condition):
    path: FactPath

    def holds(self, facts: Facts) -> bool:
        value = self.path.resolve(facts.roots)
        return value is MISSING or value is None

    def to_json(self) -> dict[str, Any]:
        return {"missing": self.path.text}


@dataclass(frozen=True, slots=True)
class HasTag(Condition):
    tag: str

    def holds(self, facts: Facts) -> bool:
        return self.tag in facts.tags

    def to_json(self) -> dict[str, Any]:
        return {"contains_tag": self.tag}


@dataclass(frozen=True, slots=True)
class Comparison:
    """One comparison of a subject's value with the operand written in the rule."""

    op: str
    operand: Any

    def check(self, value: Any) -> bool:
        op, operand = self.op, self.operand
        if op == "equals":
            return json_equal(None if value is MISSING else value, operand)
        if op == "not_equals":
            return not json_equal(None if value is MISSING else value, operand)
        if op == "greater_than":
            return is_number(value) and bool(value > operand)
        if op == "less_than":
            return is_number(value) and bool(value < operand)
        # contains_text: the operand is stored casefolded
        return isinstance(value, str) and operand in value.casefold()


@dataclass(frozen=True, slots=True)
class PathCompare(Condition):
    path: FactPath
    comparisons: tuple[Comparison, ...]
    cost: ClassVar[int] = 2

    def holds(self, facts: Facts) -> bool:
        value = self.path.resolve(facts.roots)
        return all(c.check(value) for c in self.comparisons)

    def to_json(self) -> dict[str, Any]:
        return {"path": self.path.text, **{c.op: c.operand for c in self.comparisons}}


@dataclass(frozen=True, slots=True)
class CountCompare(Condition):
    query: CountQuery
    comparisons: tuple[Comparison, ...]
    cost: ClassVar[int] = 50

    def holds(self, facts: Facts) -> bool:
        value = facts.count(self.query)
        return all(c.check(value) for c in self.comparisons)

    def to_json(self) -> dict[str, Any]:
        return {"count": self.query.to_json(), **{c.op: c.operand for c in self.comparisons}}


def is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def json_equal(a: Any, b: Any) -> bool:
    """JSON equality: numbers by value (1 == 1.0), booleans only equal booleans, deep for
    lists and objects."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if is_number(a) and is_number(b):
        return bool(a == b)
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(json_equal(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        return a.keys() == b.keys() and all(json_equal(a[key], b[key]) for key in a)
    return type(a) is type(b) and bool(a == b)


# Compiling


def compile_condition(at: At, cel: CelCompiler, *, top: bool = False, depth: int = 0) -> Condition:
    """Compile a condition mapping. `top` allows the empty mapping (every span)."""
    if depth > MAX_CONDITION_DEPTH:
        raise at.error(f"conditions are nested deeper than {MAX_CONDITION_DEPTH} levels")
    members = at.mapping(optional=TESTS, what="condition")
    if not members:
        if top:
            return ALWAYS
        raise at.error(f"a condition needs at least one test ({', '.join(TESTS[:9])}, ...)")
    tests: list[Condition] = []
    for key, member in members.items():
        if key == "kind":
            tests.append(KindTest(_globs(member)))
        elif key in ("all", "any"):
            items = tuple(
                compile_condition(item, cel, depth=depth + 1) for item in member.list(nonempty=True)
            )
            tests.append(AllOf(items) if key == "all" else AnyOf(items))
        elif key == "not":
            tests.append(Not(compile_condition(member, cel, depth=depth + 1)))
        elif key in ("exists", "missing"):
            path = read_path(member)
            tests.append(Exists(path) if key == "exists" else Missing(path))
        elif key == "contains_tag":
            tests.append(HasTag(_tag(member)))
        elif key == "cel":
            tests.append(cel(member))
    subject = _subject(at, members)
    if subject is not None:
        tests.append(subject)
    tests.sort(key=lambda test: test.cost)
    return tests[0] if len(tests) == 1 else Conjunction(tuple(tests))


def _subject(at: At, members: dict[str, At]) -> Condition | None:
    ops = [key for key in members if key in COMPARISONS]
    if "path" in members and "count" in members:
        raise members["count"].error("a condition has one subject, `path` or `count`, not both")
    if "path" in members:
        if not ops:
            raise members["path"].error(f"`path` needs a comparison beside it ({_OPS})")
        path = read_path(members["path"])
        return PathCompare(path, tuple(_comparison(members[op], op) for op in ops))
    if "count" in members:
        if not ops:
            raise members["count"].error(f"`count` needs a comparison beside it ({_COUNT_OPS})")
        if "contains_text" in ops:
            raise members["contains_text"].error("a count is a number: contains_text needs a path")
        query = read_count(members["count"])
        return CountCompare(query, tuple(_comparison(members[op], op, count=True) for op in ops))
    if ops:
        raise members[ops[0]].error(f"`{ops[0]}` compares a `path` or a `count`; add one beside it")
    return None


_OPS = ", ".join(COMPARISONS)
_COUNT_OPS = ", ".join(COUNT_COMPARISONS)


def _comparison(at: At, op: str, *, count: bool = False) -> Comparison:
    if op in ("greater_than", "less_than"):
        return Comparison(op, at.integer() if count else at.number())
    if op == "contains_text":
        return Comparison(op, at.string(limit=1000).casefold())
    if count:
        return Comparison(op, at.integer(minimum=0))
    return Comparison(op, at.json())


def read_path(at: At) -> FactPath:
    text = at.string()  # its own RuleError names the place already
    try:
        return FactPath.parse(text)
    except InvalidInput as exc:
        raise at.error(str(exc)) from exc


def read_glob(at: At) -> KindGlob:
    text = at.string()  # its own RuleError names the place already
    try:
        return KindGlob.parse(text)
    except InvalidInput as exc:
        raise at.error(str(exc)) from exc


def read_count(at: At) -> CountQuery:
    members = at.mapping(required=("kind", "within"), optional=("by",))
    by = members["by"].choice(COUNT_BY) if "by" in members else "anyone"
    within = members["within"].duration(maximum_s=MAX_WINDOW_S)
    return CountQuery(read_glob(members["kind"]), by == "author", within)


def count_query(kind: str, within: str, by: str) -> CountQuery:
    """The query of a CEL `count(kind, within, by)`; `InvalidInput` names what is wrong."""
    if by not in COUNT_BY:
        raise InvalidInput(f"by must be one of {', '.join(COUNT_BY)}, got {by!r}")
    return CountQuery(KindGlob.parse(kind), by == "author", duration_s(within, MAX_WINDOW_S))


def _globs(at: At) -> tuple[KindGlob, ...]:
    if isinstance(at.value, list):
        return tuple(read_glob(item) for item in at.list(nonempty=True, limit=64))
    return (read_glob(at),)


def _tag(at: At) -> str:
    try:
        return check_tag(at.string())
    except InvalidIdentifier as exc:
        raise at.error(str(exc)) from exc
