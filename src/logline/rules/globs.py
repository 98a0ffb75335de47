"""Kind globs: patterns over dotted span kinds, matched segment by segment.

    >>> glob = KindGlob.parse("payment.*")
    >>> glob.matches("payment.approved"), glob.matches("payment.card.declined")
    (True, False)
    >>> KindGlob.parse("payment.**").matches("payment.card.declined")
    True
    >>> KindGlob.parse("**.failed").matches("login.failed")
    True
    >>> KindGlob.parse("login.fail*").prefix
    'login.fail'

A glob is dot-separated segments. A segment is `**`, which matches zero or more whole segments,
or lowercase letters, digits, `_` and `*`, where `*` matches any run of characters within one
segment (never a dot). A segment without `*` follows the kind syntax: a letter, then letters,
digits or `_`. A glob without `**` must have at least two segments, since every kind does.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from logline.errors import InvalidInput
from logline.identity.ids import MAX_KIND_LENGTH

_LITERAL = re.compile(r"[a-z][a-z0-9_]*")
_PATTERN = re.compile(r"[a-z0-9_*]+")


@dataclass(frozen=True, slots=True)
class KindGlob:
    """A parsed kind glob. `prefix` is the literal text before the first wildcard (an index range
    scan can start there); `first` is the literal first segment, or None if it has a wildcard."""

    text: str
    prefix: str
    first: str | None
    _regex: re.Pattern[str] | None = field(repr=False, compare=False)
    _shape: str = field(default="regex", repr=False, compare=False)  # exact, one, below, regex

    @classmethod
    def parse(cls, text: str) -> KindGlob:
        """Raise `InvalidInput` unless `text` is a valid glob (see the module docstring)."""
        if not isinstance(text, str) or not text or len(text) > MAX_KIND_LENGTH:
            raise InvalidInput(f"a kind glob is 1-{MAX_KIND_LENGTH} characters, got {text!r}")
        segments = text.split(".")
        parts: list[str] = []
        for i, segment in enumerate(segments):
            if segment == "**":
                if i and segments[i - 1] == "**":
                    raise InvalidInput(f"kind glob {text!r} repeats '**'")
                parts.append(r"(?:\.[^.]+)*")
            elif "*" in segment:
                if "**" in segment or not _PATTERN.fullmatch(segment):
                    raise InvalidInput(
                        f"kind glob {text!r}: segment {segment!r} may hold a-z, 0-9, '_' and "
                        "'*' ('**' only as a whole segment)"
                    )
                parts.append(r"\." + r"[^.]*".join(map(re.escape, segment.split("*"))))
            elif _LITERAL.fullmatch(segment):
                parts.append(r"\." + segment)
            else:
                raise InvalidInput(
                    f"kind glob {text!r}: segment {segment!r} must be a letter then letters, "
                    "digits or '_', or hold '*'"
                )
        if "**" not in segments and len(segments) < 2:
            raise InvalidInput(
                f"kind glob {text!r} matches no kind: kinds have at least two segments "
                f"(did you mean '{text}.*' or '{text}.**'?)"
            )
        wild = text.find("*")
        prefix = text if wild < 0 else text[:wild]
        first = None if "*" in segments[0] else segments[0]
        regex = None if wild < 0 else re.compile("".join(parts))
        shape = "regex"
        if wild < 0:
            shape = "exact"
        elif prefix.endswith(".") and text[len(prefix) :] in ("*", "**"):
            shape = "one" if text.endswith(".*") else "below"  # the common `a.b.*`, `a.**`
        return cls(text, prefix, first, regex, shape)

    def matches(self, kind: str) -> bool:
        shape = self._shape
        if shape == "exact":
            return kind == self.text
        if shape == "one":
            return kind.startswith(self.prefix) and kind.find(".", len(self.prefix)) < 0
        if shape == "below":  # `**` also matches zero segments: `a.b.**` matches `a.b`
            return kind.startswith(self.prefix) or kind == self.prefix[:-1]
        assert self._regex is not None
        return self._regex.fullmatch("." + kind) is not None

    def __str__(self) -> str:
        return self.text
