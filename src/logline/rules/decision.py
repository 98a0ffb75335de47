"""Decisions: what a rule set concluded about one span, and how matched rules combine into one.

    >>> out = DecisionBuilder()
    >>> out.match("a"); out.simulate("a", "dry run")
    >>> out.match("b"); out.reject("b", "over the limit")
    >>> decision = out.finish(default="allow", version="7", digest="sha256:00")
    >>> decision.outcome, [r.text for r in decision.reasons]
    ('reject', ['over the limit'])

The outcome is `reject` if any matched rule rejects; else `hold` if any requires approval; else
`simulate` if any simulates; else `allow` — unless the set's default is deny and no matched rule
allowed, held or simulated the span, which rejects it. Tags, metadata, notes and follow-ups are
collected from every matched rule whatever the outcome; the caller records tags and metadata next
to the log entry (never in the signed body) and runs follow-ups only once the span is committed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal

from logline.errors import InvalidInput
from logline.rules.approvals import ApprovalGroup, ApprovalRequirement, merge
from logline.rules.followups import FollowUp, follow_up_from_json

Outcome = Literal["allow", "reject", "hold", "simulate"]
OUTCOMES: tuple[Outcome, ...] = ("allow", "reject", "hold", "simulate")
DEFAULT_DENY_REASON = "no rule allows this span and the rule set's default is deny"


@dataclass(frozen=True, slots=True)
class Reason:
    """Why the outcome is what it is; `rule` is None for the default."""

    rule: str | None
    text: str

    def to_json(self) -> dict[str, Any]:
        return {"rule": self.rule, "text": self.text}


@dataclass(frozen=True, slots=True)
class Note:
    """A `note` action's text."""

    rule: str
    text: str

    def to_json(self) -> dict[str, Any]:
        return {"rule": self.rule, "text": self.text}


@dataclass(frozen=True, slots=True)
class EvalError:
    """A rule whose condition could not be decided for this span (see `on_error`)."""

    rule: str
    message: str

    def to_json(self) -> dict[str, Any]:
        return {"rule": self.rule, "message": self.message}


@dataclass(frozen=True, slots=True)
class Decision:
    """The result of evaluating a rule set against one span.

    `matched` lists the rules that matched, in evaluation order. `approval` is set exactly when
    the outcome is `hold`. `ruleset_version` is the version the caller compiled the set as (its
    digest when none was given); `ruleset_digest` is the SHA-256 of its canonical form.
    """

    outcome: Outcome
    reasons: tuple[Reason, ...] = ()
    matched: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    metadata: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    notes: tuple[Note, ...] = ()
    approval: ApprovalRequirement | None = None
    follow_ups: tuple[FollowUp, ...] = ()
    errors: tuple[EvalError, ...] = ()
    ruleset_version: str = ""
    ruleset_digest: str = ""

    def to_json(self) -> dict[str, Any]:
        """The record to keep with the log entry (JSON-ready)."""
        return {
            "outcome": self.outcome,
            "reasons": [r.to_json() for r in self.reasons],
            "matched": list(self.matched),
            "tags": list(self.tags),
            "metadata": dict(self.metadata),
            "notes": [n.to_json() for n in self.notes],
            "approval": None if self.approval is None else self.approval.to_json(),
            "follow_ups": [f.to_json() for f in self.follow_ups],
            "errors": [e.to_json() for e in self.errors],
            "ruleset": {"version": self.ruleset_version, "digest": self.ruleset_digest},
        }

    @classmethod
    def from_json(cls, data: Any) -> Decision:
        """Read back `to_json()` output (as a held span keeps it); `InvalidInput` if it is not."""
        try:
            outcome = data["outcome"]
            if outcome not in OUTCOMES:
                raise ValueError(f"unknown outcome {outcome!r}")
            approval = data["approval"]
            return cls(
                outcome=outcome,
                reasons=tuple(Reason(_opt(r["rule"]), str(r["text"])) for r in data["reasons"]),
                matched=tuple(str(rule) for rule in data["matched"]),
                tags=tuple(str(tag) for tag in data["tags"]),
                metadata=MappingProxyType(dict(data["metadata"])),
                notes=tuple(Note(str(n["rule"]), str(n["text"])) for n in data["notes"]),
                approval=None if approval is None else ApprovalRequirement.from_json(approval),
                follow_ups=tuple(follow_up_from_json(f) for f in data["follow_ups"]),
                errors=tuple(EvalError(str(e["rule"]), str(e["message"])) for e in data["errors"]),
                ruleset_version=str(data["ruleset"]["version"]),
                ruleset_digest=str(data["ruleset"]["digest"]),
            )
        except (KeyError, TypeError, AttributeError, ValueError) as exc:
            raise InvalidInput(f"not a decision: {exc!r}") from exc


def _opt(value: Any) -> str | None:
    return None if value is None else str(value)


class DecisionBuilder:
    """Collects what matched rules do, in evaluation order; `finish` applies the precedence."""

    __slots__ = (
        "allowed", "allows", "approvals", "errors", "follow_ups", "holds", "matched", "metadata",
        "notes", "rejects", "simulates", "tags",
    )  # fmt: skip

    def __init__(self) -> None:
        self.matched: list[str] = []
        self.rejects: list[Reason] = []
        self.holds: list[Reason] = []
        self.simulates: list[Reason] = []
        self.allows: list[Reason] = []
        self.allowed = False
        self.approvals: list[tuple[str, ApprovalGroup, int]] = []
        self.tags: set[str] = set()
        self.metadata: dict[str, Any] = {}
        self.notes: list[Note] = []
        self.follow_ups: list[FollowUp] = []
        self.errors: list[EvalError] = []

    def match(self, rule: str) -> None:
        self.matched.append(rule)

    def error(self, rule: str, message: str) -> None:
        self.errors.append(EvalError(rule, message))

    def allow(self, rule: str, reason: str | None = None) -> None:
        self.allowed = True
        if reason:
            self.allows.append(Reason(rule, reason))

    def reject(self, rule: str, reason: str) -> None:
        self.rejects.append(Reason(rule, reason))

    def simulate(self, rule: str, note: str) -> None:
        self.simulates.append(Reason(rule, note))

    def require_approval(self, rule: str, group: ApprovalGroup, timeout_s: int, why: str) -> None:
        self.approvals.append((rule, group, timeout_s))
        self.holds.append(Reason(rule, why))

    def add_tags(self, tags: tuple[str, ...]) -> None:
        self.tags.update(tags)

    def set_metadata(self, key: str, value: Any) -> None:
        """The first rule (in evaluation order) to set a key wins."""
        self.metadata.setdefault(key, value)

    def note(self, rule: str, text: str) -> None:
        self.notes.append(Note(rule, text))

    def follow_up(self, item: FollowUp) -> None:
        self.follow_ups.append(item)

    def finish(self, *, default: str, version: str, digest: str) -> Decision:
        approval = None
        outcome: Outcome
        if self.rejects:
            outcome, reasons = "reject", self.rejects
        elif self.approvals:
            outcome, reasons = "hold", self.holds
            approval = merge(self.approvals)
        elif self.simulates:
            outcome, reasons = "simulate", self.simulates
        elif self.allowed or default == "allow":
            outcome, reasons = "allow", self.allows
        else:
            outcome, reasons = "reject", [Reason(None, DEFAULT_DENY_REASON)]
        return Decision(
            outcome=outcome,
            reasons=tuple(reasons),
            matched=tuple(self.matched),
            tags=tuple(sorted(self.tags)),
            metadata=MappingProxyType(self.metadata),
            notes=tuple(self.notes),
            approval=approval,
            follow_ups=tuple(self.follow_ups),
            errors=tuple(self.errors),
            ruleset_version=version,
            ruleset_digest=digest,
        )
