"""Approval requirements: who must approve a held span, how many of them, and by when.

    >>> group = ApprovalGroup(roles=("finance",), identities=(), quorum=2)
    >>> need = ApprovalRequirement(groups=(group,), timeout_s=86400)
    >>> author = "logline-id://person/alice"
    >>> need.is_met({"logline-id://person/bob": ("finance",)}, author=author)
    False
    >>> need.is_met({"logline-id://person/bob": ("finance",),
    ...              "logline-id://person/carol": ("finance", "admin")}, author=author)
    True

Several `require_approval` actions on one span merge into one requirement: the same approvers
(roles and identities) form one group that needs the largest quorum asked, with separation of
duties if any rule asks for it; different approvers form separate groups, and every group must
reach its quorum. The timeout is the shortest asked.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from logline.errors import InvalidInput


@dataclass(frozen=True, slots=True)
class ApprovalGroup:
    """`quorum` distinct approvers, each holding one of `roles` or being one of `identities`.

    With `separation_of_duties` the span's author never counts, whatever their roles.
    """

    roles: tuple[str, ...]
    identities: tuple[str, ...]
    quorum: int = 1
    separation_of_duties: bool = True
    rules: tuple[str, ...] = ()

    def eligible(self, approver: str, roles: Collection[str], *, author: str) -> bool:
        if self.separation_of_duties and approver == author:
            return False
        return approver in self.identities or any(role in self.roles for role in roles)

    def to_json(self) -> dict[str, Any]:
        return {
            "roles": list(self.roles),
            "identities": list(self.identities),
            "quorum": self.quorum,
            "separation_of_duties": self.separation_of_duties,
            "rules": list(self.rules),
        }


@dataclass(frozen=True, slots=True)
class ApprovalRequirement:
    """Every group must reach its quorum within `timeout_s` seconds of the hold."""

    groups: tuple[ApprovalGroup, ...]
    timeout_s: int

    def eligible(self, approver: str, roles: Collection[str], *, author: str) -> bool:
        """May `approver` (holding `roles`) approve at all? (Counts toward some group.)"""
        return any(group.eligible(approver, roles, author=author) for group in self.groups)

    def is_met(self, approvals: Mapping[str, Collection[str]], *, author: str) -> bool:
        """`approvals` maps each distinct approver to the roles they held when approving.

        One approval counts toward every group its approver is eligible for.
        """
        return all(
            sum(1 for who, roles in approvals.items() if group.eligible(who, roles, author=author))
            >= group.quorum
            for group in self.groups
        )

    def to_json(self) -> dict[str, Any]:
        return {"groups": [g.to_json() for g in self.groups], "timeout_s": self.timeout_s}

    @classmethod
    def from_json(cls, data: Any) -> ApprovalRequirement:
        """Read back `to_json()` output (as recorded with a held span); `InvalidInput` if not."""
        try:
            groups = tuple(
                ApprovalGroup(
                    roles=tuple(str(r) for r in g["roles"]),
                    identities=tuple(str(i) for i in g["identities"]),
                    quorum=_positive(g["quorum"]),
                    separation_of_duties=_bool(g["separation_of_duties"]),
                    rules=tuple(str(r) for r in g.get("rules", ())),
                )
                for g in data["groups"]
            )
            timeout_s = _positive(data["timeout_s"])
        except (KeyError, TypeError, AttributeError) as exc:
            raise InvalidInput(f"not an approval requirement: {exc!r}") from exc
        if not groups:
            raise InvalidInput("an approval requirement has at least one group")
        return cls(groups, timeout_s)


def merge(asked: Iterable[tuple[str, ApprovalGroup, int]]) -> ApprovalRequirement:
    """Merge (rule id, group, timeout_s) asks, in evaluation order, into one requirement."""
    merged: dict[tuple[tuple[str, ...], tuple[str, ...]], ApprovalGroup] = {}
    timeouts: list[int] = []
    for rule, group, timeout_s in asked:
        timeouts.append(timeout_s)
        key = (group.roles, group.identities)
        old = merged.get(key)
        if old is None:
            merged[key] = ApprovalGroup(
                group.roles, group.identities, group.quorum, group.separation_of_duties, (rule,)
            )
        else:
            merged[key] = ApprovalGroup(
                old.roles,
                old.identities,
                max(old.quorum, group.quorum),
                old.separation_of_duties or group.separation_of_duties,
                old.rules if rule in old.rules else (*old.rules, rule),
            )
    return ApprovalRequirement(tuple(merged[key] for key in sorted(merged)), min(timeouts))


def _positive(value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise TypeError(f"expected a positive integer, got {value!r}")
    return value


def _bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"expected true or false, got {value!r}")
    return value
