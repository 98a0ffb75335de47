"""Dot paths into what a rule sees, and `${path}` templates built from them.

    >>> roots = {"span": {"kind": "payment.approved"}, "payload": {"lines": [{"sku": "A-1"}]}}
    >>> FactPath.parse("payload.lines.0.sku").resolve(roots)
    'A-1'
    >>> FactPath.parse("payload.total").resolve(roots) is MISSING
    True
    >>> Template.parse("${span.kind}: first line ${payload.lines.0.sku}").render(roots)
    'payment.approved: first line A-1'
    >>> Template.parse("${payload.lines}").render(roots)
    [{'sku': 'A-1'}]

A path is a root and dot-separated segments. The roots are `span` (the body fields and
`span.payload`), `payload` (the same payload, shorter), `author` (`id`, `kind`, `handle`, `roles`)
and `tenant` (`name`, `settings`). The field after `span`, `author` and `tenant` is checked when
the rule is compiled; below it any segment is allowed, and an all-digit segment also indexes
lists. Resolving never fails: an absent value is `MISSING`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from logline.errors import InvalidInput
from logline.ledger.span import FIELDS

SPAN_FIELDS: Final = (*FIELDS, "payload")
AUTHOR_FIELDS: Final = ("id", "kind", "handle", "roles")
TENANT_FIELDS: Final = ("name", "settings")
ROOT_FIELDS: Final[dict[str, tuple[str, ...] | None]] = {
    "span": SPAN_FIELDS,
    "payload": None,
    "author": AUTHOR_FIELDS,
    "tenant": TENANT_FIELDS,
}
ROOTS: Final = tuple(ROOT_FIELDS)
MAX_PATH_CHARS = 256
_SEGMENT = re.compile(r"[^\s.${}\[\]\"']+")


class _Missing:
    __slots__ = ()

    def __repr__(self) -> str:
        return "MISSING"


MISSING: Final = _Missing()


@dataclass(frozen=True, slots=True)
class FactPath:
    """A parsed dot path; `steps` are (key, list index or None) pairs after the root."""

    text: str
    root: str
    steps: tuple[tuple[str, int | None], ...]

    @classmethod
    def parse(cls, text: str) -> FactPath:
        if not isinstance(text, str) or not 0 < len(text) <= MAX_PATH_CHARS:
            raise InvalidInput(f"a path is 1-{MAX_PATH_CHARS} characters, got {text!r}")
        root, *segments = text.split(".")
        if root not in ROOT_FIELDS:
            raise InvalidInput(
                f"path {text!r} must start with one of {', '.join(ROOTS)}, not {root!r}"
            )
        for segment in segments:
            if not _SEGMENT.fullmatch(segment):
                raise InvalidInput(
                    f"path {text!r} has an empty or invalid segment {segment!r} (no spaces, "
                    "quotes, brackets, braces or '$')"
                )
        fields = ROOT_FIELDS[root]
        if fields is not None and segments and segments[0] not in fields:
            raise InvalidInput(
                f"path {text!r}: {root} has no field {segments[0]!r} "
                f"(its fields: {', '.join(fields)})"
            )
        steps = tuple((s, int(s) if s.isdigit() else None) for s in segments)
        return cls(text, root, steps)

    def resolve(self, roots: Mapping[str, Any]) -> Any:
        """The value at this path, or `MISSING` (a present null is None)."""
        value = roots.get(self.root, MISSING)
        for key, index in self.steps:
            kind = type(value)
            if kind is dict or isinstance(value, Mapping):
                value = value.get(key, MISSING)
            elif (kind is list or kind is tuple) and index is not None and index < len(value):
                value = value[index]
            else:
                return MISSING
            if value is MISSING:
                return MISSING
        return value

    def __str__(self) -> str:
        return self.text


@dataclass(frozen=True, slots=True)
class Template:
    """A string with `${path}` substitutions; `$$` is a literal `$`.

    When the whole string is one `${path}`, `render` gives the value itself (a number stays a
    number, a missing value is None); otherwise values are written into the text: strings as
    they are, null or missing as nothing, other values as compact JSON.
    """

    text: str
    parts: tuple[str | FactPath, ...]

    @classmethod
    def parse(cls, text: str) -> Template:
        parts: list[str | FactPath] = []
        literal: list[str] = []
        i = 0
        while i < len(text):
            char = text[i]
            if char == "$" and text.startswith("$$", i):
                literal.append("$")
                i += 2
            elif char == "$" and text.startswith("${", i):
                end = text.find("}", i + 2)
                if end < 0:
                    raise InvalidInput(f"template {text[:80]!r} has an unclosed '${{'")
                if literal:
                    parts.append("".join(literal))
                    literal = []
                parts.append(FactPath.parse(text[i + 2 : end].strip()))
                i = end + 1
            else:
                literal.append(char)
                i += 1
        if literal:
            parts.append("".join(literal))
        return cls(text, tuple(parts))

    @property
    def constant(self) -> bool:
        return all(isinstance(part, str) for part in self.parts)

    def render(self, roots: Mapping[str, Any]) -> Any:
        parts = self.parts
        if len(parts) == 1 and isinstance(parts[0], FactPath):
            value = parts[0].resolve(roots)
            return None if value is MISSING else value
        return "".join(p if isinstance(p, str) else _text(p.resolve(roots)) for p in parts)

    def render_text(self, roots: Mapping[str, Any]) -> str:
        """Always a string, even for a whole-string `${path}`."""
        value = self.render(roots)
        return value if isinstance(value, str) else _text(value)


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if value is None or value is MISSING:
        return ""
    return json.dumps(value, separators=(",", ":"), sort_keys=True, ensure_ascii=False)


@dataclass(frozen=True, slots=True)
class JsonTemplate:
    """A JSON value whose strings are templates (`source` is the value as written)."""

    source: Any
    _build: Any

    @classmethod
    def parse(cls, value: Any) -> JsonTemplate:
        """`value` must already be checked JSON; a template error names the member's path."""
        return cls(value, _compile(value, ""))

    def render(self, roots: Mapping[str, Any]) -> Any:
        return _render(self._build, roots)


class TemplateError(InvalidInput):
    """A template inside a JSON value is invalid; `where` is the member path (`.a.b[0]`)."""

    def __init__(self, message: str, where: str) -> None:
        self.where = where
        super().__init__(message)


def _compile(value: Any, where: str) -> Any:
    if isinstance(value, str):
        try:
            template = Template.parse(value)
        except InvalidInput as exc:
            raise TemplateError(str(exc), where) from exc
        return value if template.constant and "$" not in value else template
    if isinstance(value, list):
        return [_compile(item, f"{where}[{i}]") for i, item in enumerate(value)]
    if isinstance(value, dict):
        return {key: _compile(item, f"{where}.{key}") for key, item in value.items()}
    return value


def _render(built: Any, roots: Mapping[str, Any]) -> Any:
    if isinstance(built, Template):
        return built.render(roots)
    if isinstance(built, list):
        return [_render(item, roots) for item in built]
    if isinstance(built, dict):
        return {key: _render(item, roots) for key, item in built.items()}
    return built
