"""Roles per tenant and what each may do.

    allowed("member", Permission.WRITE)     # → True
    allowed("viewer", Permission.WRITE)     # → False

Roles are ordered: viewer < member < operator < admin < owner; each has the rights of the roles
below it. `node` (worker nodes) stands apart: it reads and writes spans, and nothing else.
Every route declares one permission (`server.auth.require`); the route-by-role-by-tenant test
walks all of them.
"""

from __future__ import annotations

from enum import Enum

from logline.errors import InvalidInput

ROLES = ("viewer", "member", "operator", "admin", "owner")
NODE = "node"
ALL_ROLES = (*ROLES, NODE)


class Permission(Enum):
    """What a route needs; the value is the least role that has it."""

    READ = "viewer"  # spans, proofs, identities, the stream, members
    WRITE = "member"  # append spans, register identities, replay, revert
    OPERATE = "operator"  # publish checkpoints on demand, approve (later issues)
    ADMIN = "admin"  # redact, memberships, API keys
    OWN = "owner"  # grant or remove owners


_NODE_PERMISSIONS = frozenset({Permission.READ, Permission.WRITE})


def check_role(role: str, *, allow_node: bool = True) -> str:
    if role not in ALL_ROLES or (role == NODE and not allow_node):
        choices = ALL_ROLES if allow_node else ROLES
        raise InvalidInput(f"role must be one of {', '.join(choices)}, got {role!r}")
    return role


def rank(role: str) -> int:
    """Position in the order of tenant roles; -1 for `node`, which is outside it."""
    return ROLES.index(role) if role in ROLES else -1


def implied(role: str) -> tuple[str, ...]:
    """The role with every tenant role below it: what rules and approvals see a holder as
    having (`member` → viewer, member). `node` and unknown roles stand alone."""
    return ROLES[: rank(role) + 1] if role in ROLES else (role,)


def allowed(role: str | None, permission: Permission) -> bool:
    if role is None:
        return False
    if role == NODE:
        return permission in _NODE_PERMISSIONS
    return rank(role) >= rank(permission.value)


def weaker(a: str, b: str) -> str:
    """The role with fewer rights (an API key's role, capped by its identity's membership)."""
    if NODE in (a, b):
        other = b if a == NODE else a
        return NODE if other == NODE or rank(other) >= rank("member") else "viewer"
    return a if rank(a) <= rank(b) else b
