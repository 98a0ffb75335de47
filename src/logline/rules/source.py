"""Rule documents as data: YAML or JSON text to plain values that remember where they came from.

    >>> doc = load_document("rules:\\n  - id: a\\n    priority: high\\n")
    >>> at = At.root(doc).child("rules").child(0).child("priority")
    >>> at.integer()
    Traceback (most recent call last):
    ...
    logline.errors.RuleError: rules[0].priority (line 3, column 15): must be an integer, got string

`load_document` turns text into JSON-like values (dicts with string keys, lists, strings, numbers,
booleans, None) and a map from each value's path to its line and column. `At` walks those values
with typed readers that raise `RuleError` naming the path, so every compile step reports where the
problem is without carrying positions itself.
"""

from __future__ import annotations

import difflib
import json
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import yaml

from logline.canonical import MAX_SAFE_INTEGER, canonicalize, loads
from logline.errors import InvalidInput, ParseError, RuleError
from logline.ledger.timefmt import parse_duration

MAX_DOCUMENT_BYTES = 1024 * 1024
MAX_NODES = 100_000  # after YAML aliases are expanded: refuses "billion laughs" documents
MAX_DEPTH = 64

Path = tuple[str | int, ...]
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_LOADER: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@dataclass(frozen=True, slots=True)
class Document:
    """Plain values and, for text, the (line, column) of each path (1-based)."""

    value: Any
    marks: Mapping[Path, tuple[int, int]] = field(default_factory=dict)


def load_document(source: str | bytes | Mapping[str, Any]) -> Document:
    """Parse YAML or JSON text (or take an already parsed mapping) into a `Document`.

    Text that starts with `{` is read as strict JSON first (duplicate keys refused); if that fails
    and it is valid YAML it is read as YAML, otherwise the JSON error is reported.
    """
    if isinstance(source, Mapping):
        return Document(source)
    if isinstance(source, bytes):
        if len(source) > MAX_DOCUMENT_BYTES:
            raise RuleError(f"the document is over {MAX_DOCUMENT_BYTES} bytes")
        try:
            source = source.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise RuleError("the document is not valid UTF-8") from exc
    if not isinstance(source, str):
        raise RuleError("a rule document is YAML or JSON text, or a mapping")
    if len(source) > MAX_DOCUMENT_BYTES:
        raise RuleError(f"the document is over {MAX_DOCUMENT_BYTES} characters")
    try:
        source.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise RuleError("the document holds a lone surrogate, which is not valid UTF-8") from exc
    if source.lstrip().startswith("{"):
        try:
            return Document(loads(source))
        except ParseError as exc:
            try:
                return _load_yaml(source)
            except RuleError:
                raise RuleError(str(exc)) from exc
    return _load_yaml(source)


def _load_yaml(text: str) -> Document:
    loader = _LOADER(text)
    try:
        node = loader.get_single_node()
        if node is None:
            raise RuleError("the document is empty")
        marks: dict[Path, tuple[int, int]] = {}
        value = _Builder(loader, marks).build(node, ())
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = exc.problem or exc.context or "invalid YAML"
        raise RuleError(
            f"invalid YAML: {problem}",
            line=None if mark is None else mark.line + 1,
            column=None if mark is None else mark.column + 1,
        ) from exc
    except yaml.YAMLError as exc:
        first = str(exc).strip().splitlines()
        raise RuleError(f"invalid YAML: {first[0] if first else type(exc).__name__}") from exc
    finally:
        loader.dispose()
    return Document(value, marks)


class _Builder:
    """Builds plain values from a YAML node graph, recording each path's position."""

    def __init__(self, loader: yaml.SafeLoader, marks: dict[Path, tuple[int, int]]) -> None:
        self.loader = loader
        self.marks = marks
        self.nodes = 0

    def build(self, node: yaml.Node, path: Path, key_mark: yaml.Mark | None = None) -> Any:
        self.nodes += 1
        if self.nodes > MAX_NODES:
            raise _error(f"the document has over {MAX_NODES} values", path, node.start_mark)
        if len(path) > MAX_DEPTH:
            raise _error(f"nested deeper than {MAX_DEPTH} levels", path, node.start_mark)
        if isinstance(node, yaml.ScalarNode):
            self.marks[path] = _pair(node.start_mark)
            return self._scalar(node, path)
        # A block collection starts on the line after its key: point at the key.
        self.marks[path] = _pair(key_mark or node.start_mark)
        if isinstance(node, yaml.SequenceNode):
            return [self.build(item, (*path, i)) for i, item in enumerate(node.value)]
        if not isinstance(node, yaml.MappingNode):
            raise _error("unsupported YAML node", path, node.start_mark)
        result: dict[str, Any] = {}
        for key_node, value_node in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                raise _error("YAML merge keys (<<) are not supported", path, key_node.start_mark)
            if not isinstance(key_node, yaml.ScalarNode):
                raise _error("mapping keys must be strings", path, key_node.start_mark)
            key = str(key_node.value)
            if key in result:
                raise _error(f"duplicate key {key!r}", (*path, key), key_node.start_mark)
            result[key] = self.build(value_node, (*path, key), key_node.start_mark)
        return result

    def _scalar(self, node: yaml.ScalarNode, path: Path) -> Any:
        value = self.loader.construct_object(node, deep=True)
        if isinstance(value, date):
            return node.value  # an unquoted timestamp: keep the text, as JSON would
        if isinstance(value, float) and not math.isfinite(value):
            raise _error("NaN and infinity are not allowed", path, node.start_mark)
        if value is None or isinstance(value, str | int | float | bool):
            return value
        raise _error(f"YAML type {type(value).__name__} is not a JSON value", path, node.start_mark)


def _pair(mark: yaml.Mark) -> tuple[int, int]:
    return mark.line + 1, mark.column + 1


def _error(message: str, path: Path, mark: yaml.Mark) -> RuleError:
    return RuleError(
        message, location=location_of(path), line=mark.line + 1, column=mark.column + 1
    )


def location_of(path: Path) -> str:
    """`("rules", 3, "when", "all", 1)` → `rules[3].when.all[1]`."""
    out: list[str] = []
    for part in path:
        if isinstance(part, int):
            out.append(f"[{part}]")
        elif _IDENTIFIER.fullmatch(part):
            out.append(f".{part}" if out else part)
        else:
            out.append(f"[{json.dumps(part)}]")
    return "".join(out)


class At:
    """A value inside a document and its path; typed readers raise `RuleError` located here."""

    __slots__ = ("doc", "path", "value")

    def __init__(self, doc: Document, path: Path, value: Any) -> None:
        self.doc = doc
        self.path = path
        self.value = value

    @classmethod
    def root(cls, doc: Document) -> At:
        return cls(doc, (), doc.value)

    @property
    def location(self) -> str:
        return location_of(self.path)

    def child(self, key: str | int) -> At:
        value: Any = None
        if isinstance(self.value, Mapping):
            value = self.value.get(key)
        elif isinstance(self.value, list) and isinstance(key, int) and 0 <= key < len(self.value):
            value = self.value[key]
        return At(self.doc, (*self.path, key), value)

    @property
    def position(self) -> tuple[int, int] | None:
        """(line, column) of this path, or of its nearest ancestor that has one."""
        for depth in range(len(self.path), -1, -1):
            mark = self.doc.marks.get(self.path[:depth])
            if mark is not None:
                return mark
        return None

    def error(self, message: str) -> RuleError:
        """A `RuleError` located at this path."""
        position = self.position
        if position is None:
            return RuleError(message, location=self.location)
        return RuleError(message, location=self.location, line=position[0], column=position[1])

    # Typed readers

    def mapping(
        self, *, required: Iterable[str] = (), optional: Iterable[str] = (), what: str = "key"
    ) -> dict[str, At]:
        """The members of a mapping; unknown keys are refused (with a close match suggested)."""
        if not isinstance(self.value, Mapping):
            raise self.error(f"must be a mapping, got {type_name(self.value)}")
        required = tuple(required)
        known = (*required, *optional)
        for key in self.value:
            if not isinstance(key, str):
                raise self.error("mapping keys must be strings")
            if known and key not in known:
                raise self.child(key).error(unknown(what, key, known))
        for key in required:
            if key not in self.value:
                raise self.error(f"{key!r} is required")
        return {key: self.child(key) for key in self.value}

    def items(self) -> list[tuple[str, At]]:
        """The members of a mapping of free keys (labels, metadata, payloads)."""
        return list(self.mapping().items())

    def list(self, *, nonempty: bool = False, limit: int | None = None) -> list[At]:
        if not isinstance(self.value, list):
            raise self.error(f"must be a list, got {type_name(self.value)}")
        if nonempty and not self.value:
            raise self.error("must not be empty")
        if limit is not None and len(self.value) > limit:
            raise self.error(f"has {len(self.value)} items, the limit is {limit}")
        return [self.child(i) for i in range(len(self.value))]

    def string(self, *, nonempty: bool = True, limit: int = 10_000) -> str:
        if isinstance(self.value, bool) and self.doc.marks:
            raise self.error(
                "must be a string, got boolean (YAML reads unquoted yes, no, on, off as "
                "booleans: quote the text)"
            )
        if not isinstance(self.value, str):
            raise self.error(f"must be a string, got {type_name(self.value)}")
        if nonempty and not self.value.strip():
            raise self.error("must not be empty")
        if len(self.value) > limit:
            raise self.error(f"is {len(self.value)} characters, the limit is {limit}")
        return self.value

    def matching(self, pattern: re.Pattern[str], what: str) -> str:
        text = self.string()
        if not pattern.fullmatch(text):
            raise self.error(f"must be {what}, got {text[:80]!r}")
        return text

    def boolean(self) -> bool:
        if not isinstance(self.value, bool):
            raise self.error(f"must be true or false, got {type_name(self.value)}")
        return self.value

    def integer(self, *, minimum: int | None = None, maximum: int | None = None) -> int:
        if not isinstance(self.value, int) or isinstance(self.value, bool):
            raise self.error(f"must be an integer, got {type_name(self.value)}")
        if abs(self.value) > MAX_SAFE_INTEGER:
            raise self.error("is outside the JSON safe integer range")
        if minimum is not None and self.value < minimum:
            raise self.error(f"must be at least {minimum}, got {self.value}")
        if maximum is not None and self.value > maximum:
            raise self.error(f"must be at most {maximum}, got {self.value}")
        return self.value

    def number(self) -> int | float:
        if not isinstance(self.value, int | float) or isinstance(self.value, bool):
            raise self.error(f"must be a number, got {type_name(self.value)}")
        self.json()
        return self.value

    def choice(self, choices: tuple[str, ...]) -> str:
        text = self.string()
        if text not in choices:
            raise self.error(unknown("value", text, choices))
        return text

    def duration(self, *, maximum_s: int) -> int:
        """Seconds, from an integer or from `90s`, `15m`, `12h`, `7d`; at least 1 second."""
        try:
            return duration_s(self.value, maximum_s)
        except InvalidInput as exc:
            raise self.error(str(exc)) from exc

    def json(self) -> Any:
        """Any JSON value that canonicalizes (no NaN, safe integers, valid UTF-8)."""
        try:
            canonicalize(self.value)
        except InvalidInput as exc:
            raise self.error(str(exc)) from exc
        return self.value


def duration_s(value: Any, maximum_s: int) -> int:
    """Seconds from an integer or from `90s`, `15m`, `12h`, `7d`, between 1 and `maximum_s`."""
    if isinstance(value, int) and not isinstance(value, bool):
        seconds = value
    elif isinstance(value, str):
        seconds = int(parse_duration(value).total_seconds())
    else:
        raise InvalidInput(f"must be a duration like 90s, 15m, 12h, 7d, got {value!r}")
    if not 1 <= seconds <= maximum_s:
        raise InvalidInput(f"must be between 1 and {maximum_s} seconds, got {seconds}")
    return seconds


def type_name(value: Any) -> str:
    if value is None:
        return "null"
    return {
        bool: "boolean", int: "integer", float: "number", str: "string", list: "list",
        dict: "mapping",
    }.get(type(value), type(value).__name__)  # fmt: skip


def unknown(what: str, name: str, known: Iterable[str]) -> str:
    """`unknown action 'rejekt' (did you mean 'reject'?; known: ...)`."""
    known = tuple(known)
    close = difflib.get_close_matches(name, known, n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    return f"unknown {what} {name!r} ({hint}known: {', '.join(known)})"
