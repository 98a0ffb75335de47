"""CEL conditions: compiled once, checked statically, run against a per-evaluation context.

    when:
      cel: 'span.payload.amount > 1000 && "finance" in author.roles'
      cel: 'count("login.failed", "5m", "author") > 5'

The variables are the path roots: `span`, `payload`, `author`, `tenant` (paths.py). Compiling
checks that the expression parses, uses only those variables (and the ones its macros bind), only
known fields of `span`, `author` and `tenant`, and only known functions; `count(kind, within[,
by])` takes string literals, checked like a structured `count`. The result must be a boolean.

At evaluation a runtime error (a missing map key, a type mismatch, a division by zero) or a
non-boolean result makes the test undecidable: the rule does not match (unless it says
`on_error: match`) and the decision records the error. Use `has(payload.x)` to test for a key.

Converting values into CEL costs about a microsecond per string, so a rule set converts each root
once per evaluation, lazily, and `span` holds only the fields the set's expressions mention.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, ClassVar

import cel
from cel import stdlib

from logline.errors import InvalidInput
from logline.rules.conditions import Condition, count_query
from logline.rules.context import CountQuery, Facts, Undecidable
from logline.rules.paths import ROOT_FIELDS, ROOTS
from logline.rules.source import At, unknown

MAX_CEL_CHARS = 4096
# The functions the native (Rust) runtime provides; a test checks each one runs.
NATIVE_FUNCTIONS = frozenset({
    "size", "contains", "startsWith", "endsWith", "matches", "int", "uint", "double", "string",
    "bytes", "timestamp", "duration", "dyn", "type", "getFullYear", "getMonth", "getDayOfYear",
    "getDayOfMonth", "getDate", "getDayOfWeek", "getHours", "getMinutes", "getSeconds",
    "getMilliseconds",
})  # fmt: skip
# A few string helpers from cel.stdlib (Python callbacks), registered only when used.
EXTRA_FUNCTIONS: dict[str, Callable[..., Any]] = {
    "lowerAscii": stdlib.lower_ascii,
    "upperAscii": stdlib.upper_ascii,
    "trim": stdlib.trim,
    "split": stdlib.split,
    "join": stdlib.join,
    "replace": stdlib.replace,
}
COUNT = "count"
MACROS = frozenset({"all", "exists", "exists_one", "map", "filter"})
# Type names are values in CEL (`type(x) == int`); the runtime lists them as variables.
TYPE_NAMES = frozenset({"int", "uint", "double", "bool", "string", "bytes", "list", "map",
                        "null_type", "type"})  # fmt: skip
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_TOKEN = re.compile(
    r"""(?P<space>\s+|//[^\n]*)
    |(?P<raw>(?:[rR][bB]?|[bB][rR])(?:\"\"\"[\s\S]*?\"\"\"|'''[\s\S]*?'''|"[^"\n\r]*"|'[^'\n\r]*'))
    |(?P<str>[bB]?(?:\"\"\"(?:\\[\s\S]|[^\\])*?\"\"\"|'''(?:\\[\s\S]|[^\\])*?'''
        |"(?:\\.|[^"\\\n\r])*"|'(?:\\.|[^'\\\n\r])*'))
    |(?P<name>[A-Za-z_][A-Za-z0-9_]*)
    |(?P<number>[0-9][0-9A-Za-z_.]*(?:[eE][-+][0-9]+)?|\.[0-9]+(?:[eE][-+]?[0-9]+)?)
    |(?P<op>==|!=|<=|>=|&&|\|\|)
    |(?P<punct>[\s\S])""",
    re.VERBOSE,
)
_PLAIN_STRING = re.compile(r"""(["'])([^"'\\\n\r]*)\1""")


@dataclass(frozen=True, slots=True)
class Token:
    kind: str  # raw, str, name, number, punct
    text: str


def tokens(source: str) -> list[Token]:
    out = []
    for match in _TOKEN.finditer(source):
        kind = match.lastgroup or "punct"
        if kind != "space":
            kind = {"raw": "str", "op": "punct"}.get(kind, kind)
            out.append(Token(kind, match.group()))
    return out


@dataclass(frozen=True, slots=True)
class Needs:
    """What one expression reads: roots, `span` fields (None: the whole span), extra functions."""

    roots: frozenset[str]
    span_fields: frozenset[str] | None
    functions: frozenset[str]
    counts: tuple[tuple[tuple[str, ...], CountQuery], ...]


@dataclass(frozen=True, slots=True, eq=False)
class CelTest(Condition):
    source: str
    program: cel.Program
    needs: Needs
    cost: ClassVar[int] = 100

    def holds(self, facts: Facts) -> bool:
        session = facts.cel_session
        if session is None:
            if facts.cel_env is None:
                raise Undecidable("CEL is not available in this evaluation")
            session = facts.cel_session = CelSession(facts.cel_env, facts)
        context = session.context_for(self.needs)
        try:
            result = self.program.execute(context)
        except Exception as exc:
            error: Exception | None = exc
        else:
            error = None
        # A failed callback (count, a string helper) returned null and left its exception here:
        # the test is undecidable, or the counter's own failure propagates.
        pending, facts.pending = facts.pending, None
        if pending is not None:
            raise pending
        if error is not None:
            raise Undecidable(f"CEL error: {_first_line(error)}") from None
        if type(result) is not bool:
            raise Undecidable(f"CEL returned {type(result).__name__}, not a boolean")
        return result

    def to_json(self) -> dict[str, Any]:
        return {"cel": self.source}


@dataclass(frozen=True, slots=True)
class CelEnv:
    """What a whole rule set's expressions need: compiled once, shared by every evaluation."""

    span_fields: frozenset[str] | None
    functions: frozenset[str]
    counts: dict[tuple[str, ...], CountQuery]

    @classmethod
    def of(cls, tests: Iterable[CelTest]) -> CelEnv | None:
        tests = list(tests)
        if not tests:
            return None
        fields: set[str] | None = set()
        functions: set[str] = set()
        counts: dict[tuple[str, ...], CountQuery] = {}
        for test in tests:
            needs = test.needs
            if fields is not None and "span" in needs.roots:
                fields = None if needs.span_fields is None else fields | needs.span_fields
            functions |= needs.functions
            counts.update(needs.counts)
        return cls(None if fields is None else frozenset(fields), frozenset(functions), counts)


class CelSession:
    """One evaluation's CEL context; roots are converted the first time an expression needs them."""

    __slots__ = ("added", "context", "env", "facts")

    def __init__(self, env: CelEnv, facts: Facts) -> None:
        self.env = env
        self.facts = facts
        self.added: set[str] = set()
        self.context = cel.Context()
        for name in env.functions:
            self.context.add_function(name, self._guarded(name, EXTRA_FUNCTIONS[name]))
        if env.counts:
            self.context.add_function(COUNT, self._count)

    def context_for(self, needs: Needs) -> cel.Context:
        for root in needs.roots:
            if root not in self.added:
                self.context.add_variable(root, self._value(root))
                self.added.add(root)
        return self.context

    def _value(self, root: str) -> Any:
        value = self.facts.roots[root]
        fields = self.env.span_fields
        if root == "span" and fields is not None:
            return {name: value[name] for name in fields if name in value}
        return value

    # The CEL binding prints a Python callback's exception to stderr before failing the
    # expression; callbacks here never raise: they keep the exception and return null.

    def _count(self, *args: Any) -> int | None:
        query = self.env.counts.get(tuple(args))
        try:
            if query is None:  # not a call the compile-time check saw; cannot happen
                raise Undecidable(f"count{args!r} was not declared")
            return self.facts.count(query)
        except Exception as exc:
            self.facts.pending = self.facts.pending or exc
            return None

    def _guarded(self, name: str, function: Callable[..., Any]) -> Callable[..., Any]:
        def call(*args: Any) -> Any:
            try:
                return function(*args)
            except Exception as exc:
                self.facts.pending = self.facts.pending or Undecidable(
                    f"CEL error: {name}: {_first_line(exc)}"
                )
                return None

        return call


def compile_cel(at: At) -> CelTest:
    """Compile and check a `cel` test (see the module docstring)."""
    source = at.string(limit=MAX_CEL_CHARS)
    try:
        program = cel.compile(source)
    except Exception as exc:  # the binding raises ValueError; be safe with what it may add
        raise at.error(f"CEL does not compile: {_compile_message(exc)}") from exc
    toks = tokens(source)
    bound = _bound_names(toks)
    try:
        names = set(program.variables()) - bound
        functions = set(program.functions())
    except Exception as exc:
        raise at.error(f"CEL cannot be analysed: {_first_line(exc)}") from exc
    strange = sorted(names - set(ROOTS) - TYPE_NAMES)
    if strange:
        raise at.error(f"CEL: {unknown('variable', strange[0], ROOTS)}")
    known = NATIVE_FUNCTIONS | EXTRA_FUNCTIONS.keys() | {COUNT}
    for name in sorted(functions):
        if _NAME.fullmatch(name) and name not in known:
            raise at.error(f"CEL: {unknown('function', name, sorted(known))}")
    span_fields = _check_fields(at, toks, bound, "span" in names)
    counts = _counts(at, toks) if COUNT in functions else ()
    needs = Needs(
        roots=frozenset(names & set(ROOTS)),
        span_fields=span_fields,
        functions=frozenset(functions & EXTRA_FUNCTIONS.keys()),
        counts=counts,
    )
    return CelTest(source, program, needs)


def _bound_names(toks: list[Token]) -> set[str]:
    """Names bound by macros: `x` in `list.all(x, ...)`, `k, v` in `map.all(k, v, ...)`."""
    bound: set[str] = set()
    for i, tok in enumerate(toks):
        if tok.kind == "name" and tok.text in MACROS and i and toks[i - 1].text == ".":
            rest = toks[i + 1 : i + 6]
            if len(rest) >= 3 and rest[0].text == "(" and rest[1].kind == "name":
                if rest[2].text == ",":
                    bound.add(rest[1].text)
                    if len(rest) >= 5 and rest[3].kind == "name" and rest[4].text == ",":
                        bound.add(rest[3].text)
    return bound


def _check_fields(
    at: At, toks: list[Token], bound: set[str], uses_span: bool
) -> frozenset[str] | None:
    """Check `span.f`, `author.f`, `tenant.f`; the span fields read, None when it is used whole."""
    seen: set[str] = set()
    whole = False
    for i, tok in enumerate(toks):
        if tok.kind != "name" or tok.text not in ROOTS or tok.text in bound:
            continue
        if i and toks[i - 1].text == ".":
            continue  # a member named like a root: payload.span
        fields = ROOT_FIELDS[tok.text]
        if i + 2 < len(toks) and toks[i + 1].text == "." and toks[i + 2].kind == "name":
            name = toks[i + 2].text
            if fields is not None and name not in fields:
                raise at.error(f"CEL: {tok.text} has no field {name!r} (its fields: "
                               f"{', '.join(fields)})")  # fmt: skip
            if tok.text == "span":
                seen.add(name)
        elif tok.text == "span":
            whole = True
    if uses_span and not whole and not seen:
        whole = True  # the program reads `span` in a way the scan did not see: convert it all
    return None if whole else frozenset(seen)


def _counts(at: At, toks: list[Token]) -> tuple[tuple[tuple[str, ...], CountQuery], ...]:
    """Each `count(...)` call's literal arguments, checked, with the query they stand for."""
    found: dict[tuple[str, ...], CountQuery] = {}
    for i, tok in enumerate(toks):
        if tok.kind != "name" or tok.text != COUNT:
            continue
        if i and toks[i - 1].text == ".":
            raise at.error('CEL: call count as a function, count("kind.glob", "5m")')
        args, j = [], i + 2
        if i + 1 >= len(toks) or toks[i + 1].text != "(":
            continue  # `count` used as a name: reported as an unknown variable already
        while j < len(toks):
            literal = _PLAIN_STRING.fullmatch(toks[j].text)
            if literal is None:
                break
            args.append(literal.group(2))
            if j + 1 < len(toks) and toks[j + 1].text == ",":
                j += 2
                continue
            j += 1
            break
        if j >= len(toks) or toks[j].text != ")" or len(args) not in (2, 3):
            raise at.error(
                'CEL: count takes 2 or 3 plain string literals: count("login.failed", "5m") or '
                'count("login.failed", "5m", "author")'
            )
        found[tuple(args)] = _count_query(at, args)
    return tuple(found.items())


def _count_query(at: At, args: list[str]) -> CountQuery:
    try:
        return count_query(args[0], args[1], args[2] if len(args) == 3 else "anyone")
    except InvalidInput as exc:
        raise at.error(f"CEL: in count({', '.join(map(repr, args))}): {exc}") from exc


def _compile_message(exc: Exception) -> str:
    text = str(exc)
    prefix = "Failed to parse expression"
    if text.startswith(prefix):
        # "Failed to parse expression '<src>': ERROR: <input>:1:4: Syntax error: ..."
        _, _, text = text.partition("ERROR: ")
    return " | ".join(line.strip() for line in text.splitlines() if line.strip())[:500]


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:300]
