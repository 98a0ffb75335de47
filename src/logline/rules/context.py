"""What a rule sees besides the span: the author's roles, tenant settings and window counts.

    class StoreCounter:                        # the caller implements WindowCounter
        def count(self, kind: KindGlob, author: str | None, within_s: int) -> int:
            ...                                # committed spans of this tenant matching `kind`,
                                               # by `author` if given, in the last `within_s`
    ruleset.evaluate(span, EvalContext(roles=("member",), settings={}, counter=StoreCounter()))

`Facts` is the per-evaluation state built from a span and an `EvalContext`: the roots that paths,
templates and CEL read, and a memo so that each distinct window count is asked for at most once
per evaluation, and only when a rule gets as far as needing it.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Protocol

from logline.errors import InvalidIdentifier
from logline.identity.ids import LogLineId
from logline.rules.globs import KindGlob

if TYPE_CHECKING:
    from logline.rules.expr import CelEnv, CelSession


class WindowCounter(Protocol):
    """Counts recent spans for conditions such as "more than 5 login.failed in 5 minutes"."""

    def count(self, kind: KindGlob, author: str | None, within_s: int) -> int:
        """Committed spans of the evaluated span's tenant whose kind matches `kind`, by `author`
        when it is not None, with a time in the last `within_s` seconds (measured from the time
        the caller uses for the evaluation, normally the time the span was received)."""
        ...


@dataclass(frozen=True, slots=True)
class EvalContext:
    """The caller's side of an evaluation.

    `roles` are matched exactly: pass every role the author holds in the tenant, with any role
    hierarchy already expanded. `settings` are the tenant's settings. Without a `counter`, a
    condition that needs a window count cannot be decided (see `Decision.errors`).
    """

    roles: Collection[str] = ()
    settings: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    counter: WindowCounter | None = None


@dataclass(frozen=True, slots=True)
class CountQuery:
    """A window count a condition declares: spans matching `kind`, by the author or anyone."""

    kind: KindGlob
    by_author: bool
    within_s: int

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind.text,
            "by": "author" if self.by_author else "anyone",
            "within": self.within_s,
        }


class Undecidable(Exception):
    """A condition could not be decided (a CEL runtime error, no window counter)."""


class Facts:
    """One evaluation's view of the span and its context."""

    __slots__ = ("_counts", "cel_env", "cel_session", "context", "kind", "pending", "roots", "tags")

    def __init__(
        self, view: Mapping[str, Any], context: EvalContext, cel_env: CelEnv | None
    ) -> None:
        kind = view.get("kind")
        self.kind = kind if isinstance(kind, str) else ""
        tags = view.get("tags")
        self.tags: Collection[str] = tags if isinstance(tags, list | tuple) else ()
        author = view.get("author")
        self.roots: dict[str, Any] = {
            "span": view,
            "payload": view.get("payload"),
            "author": _author(author if isinstance(author, str) else None, context.roles),
            "tenant": {"name": view.get("tenant"), "settings": dict(context.settings)},
        }
        self.context = context
        self.cel_env = cel_env
        self.cel_session: CelSession | None = None
        self.pending: BaseException | None = None  # raised inside a CEL callback, re-raised
        self._counts: dict[tuple[str, bool, int], int] = {}

    def count(self, query: CountQuery) -> int:
        key = (query.kind.text, query.by_author, query.within_s)
        found = self._counts.get(key)
        if found is not None:
            return found
        counter = self.context.counter
        if counter is None:
            raise Undecidable("window counts are not available in this evaluation")
        author = self.roots["author"]["id"] if query.by_author else None
        if query.by_author and author is None:
            raise Undecidable("the span has no author to count by")
        result = int(counter.count(query.kind, author, query.within_s))
        self._counts[key] = result
        return result


def _author(author: str | None, roles: Collection[str]) -> dict[str, Any]:
    kind = handle = None
    if author is not None:
        try:
            parsed = LogLineId.parse(author)
            kind, handle = parsed.kind, parsed.handle
        except InvalidIdentifier:
            pass
    return {"id": author, "kind": kind, "handle": handle, "roles": sorted(roles)}
