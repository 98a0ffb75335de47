"""Accounts: tenants, users, memberships, API keys, sessions, login challenges, custodial keys.

    accounts = Accounts(store)
    accounts.grant("acme", "logline-id://person/alice", "admin", by=admin, at=now)
    accounts.membership("acme", "logline-id://person/alice").role   # → "admin"

This is who may use the server and how; what they did is on the logs. Secrets are never stored:
passwords as argon2 hashes, API keys and refresh tokens as SHA-256 digests, custodial private
keys sealed with the instance's master key (`server.custody`).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from logline.store.interface import Store
from logline.store.sql import Connection, Row, SqlStore


@dataclass(frozen=True, slots=True)
class Tenant:
    name: str
    display_name: str
    created_at: str
    created_by: str


@dataclass(frozen=True, slots=True)
class User:
    username: str
    identity: str
    password_hash: str | None
    instance_admin: bool
    created_at: str


@dataclass(frozen=True, slots=True)
class Membership:
    tenant: str
    identity: str
    role: str
    granted_at: str
    granted_by: str


@dataclass(frozen=True, slots=True)
class ApiKey:
    id: str
    tenant: str
    identity: str
    role: str
    name: str
    secret_hash: bytes
    created_at: str
    expires_at: str | None
    revoked_at: str | None
    member_role: str | None  # the identity's current role in the tenant, if still a member


@dataclass(frozen=True, slots=True)
class Session:
    id: str
    identity: str
    tenants: tuple[str, ...]
    method: str
    refresh_hash: bytes
    previous_hash: bytes | None  # the refresh secret the current one replaced
    created_at: str
    expires_at: str
    revoked_at: str | None
    role: str | None  # the identity's role in the tenant asked about, if a member


@dataclass(frozen=True, slots=True)
class Challenge:
    identity: str
    tenants: tuple[str, ...]
    expires_at: str


class Accounts:
    """Account records over a SQL store (the same database as the logs)."""

    def __init__(self, store: Store) -> None:
        if not isinstance(store, SqlStore):
            raise TypeError("accounts need a SQL store")
        self.store = store

    @contextmanager
    def _conn(self, *, write: bool = False) -> Iterator[Connection]:
        conn = self.store._conn()
        if write:
            with self.store.wrap_exceptions(), self.store._transaction(conn):
                yield conn
        else:
            with self.store.wrap_exceptions():
                yield conn

    def _one(self, name: str, params: dict[str, Any]) -> Row | None:
        with self._conn() as c:
            return c.one(name, params)

    def _all(self, name: str, params: dict[str, Any]) -> list[Row]:
        with self._conn() as c:
            return c.all(name, params)

    def _run(self, name: str, params: dict[str, Any]) -> int:
        with self._conn(write=True) as c:
            return c.run(name, params)

    # --- tenants ----------------------------------------------------------------------------------

    def create_tenant(self, tenant: Tenant) -> bool:
        """Insert the tenant; False if one of that name exists."""
        return self._run("insert_tenant", {
            "name": tenant.name, "display_name": tenant.display_name,
            "created_at": tenant.created_at, "created_by": tenant.created_by,
        }) > 0  # fmt: skip

    def delete_tenant(self, name: str) -> None:
        """Take back a tenant whose creation failed before anything was logged for it."""
        self._run("delete_tenant", {"name": name})

    def tenant(self, name: str) -> Tenant | None:
        row = self._one("select_tenant", {"name": name})
        return None if row is None else Tenant(*row)

    def tenants(self) -> list[Tenant]:
        return [Tenant(*row) for row in self._all("select_tenants", {})]

    # --- users ------------------------------------------------------------------------------------

    def create_user(self, user: User) -> bool:
        """Insert the user; False if the username or identity is taken."""
        return self._run("insert_user", {
            "username": user.username, "identity": user.identity,
            "password_hash": user.password_hash, "instance_admin": int(user.instance_admin),
            "created_at": user.created_at,
        }) > 0  # fmt: skip

    def user(self, username: str) -> User | None:
        row = self._one("select_user", {"username": username})
        return None if row is None else _user(row)

    def user_by_identity(self, identity: str) -> User | None:
        row = self._one("select_user_by_identity", {"identity": identity})
        return None if row is None else _user(row)

    def count_users(self) -> int:
        row = self._one("count_users", {})
        return 0 if row is None else int(row[0])

    def set_password(self, username: str, password_hash: str) -> None:
        self._run("set_password", {"username": username, "password_hash": password_hash})

    # --- memberships ------------------------------------------------------------------------------

    def grant(self, tenant: str, identity: str, role: str, *, by: str, at: str) -> None:
        self._run("upsert_membership", {
            "tenant": tenant, "identity": identity, "role": role, "granted_at": at,
            "granted_by": by,
        })  # fmt: skip

    def revoke(self, tenant: str, identity: str) -> bool:
        return self._run("delete_membership", {"tenant": tenant, "identity": identity}) > 0

    def membership(self, tenant: str, identity: str) -> Membership | None:
        row = self._one("select_membership", {"tenant": tenant, "identity": identity})
        return None if row is None else Membership(*row)

    def members(self, tenant: str) -> list[Membership]:
        return [Membership(*row) for row in self._all("select_members", {"tenant": tenant})]

    def memberships_of(self, identity: str) -> list[Membership]:
        rows = self._all("select_memberships_of", {"identity": identity})
        return [Membership(*row) for row in rows]

    def count_owners(self, tenant: str) -> int:
        row = self._one("count_owners", {"tenant": tenant})
        return 0 if row is None else int(row[0])

    # --- API keys ---------------------------------------------------------------------------------

    def create_api_key(self, key: ApiKey) -> None:
        self._run("insert_api_key", {
            "id": key.id, "tenant": key.tenant, "identity": key.identity, "role": key.role,
            "name": key.name, "secret_hash": key.secret_hash, "created_at": key.created_at,
            "expires_at": key.expires_at,
        })  # fmt: skip

    def api_key(self, key_id: str) -> ApiKey | None:
        row = self._one("select_api_key", {"id": key_id})
        return None if row is None else _api_key(row)

    def api_keys(self, tenant: str) -> list[ApiKey]:
        return [_api_key(row) for row in self._all("select_api_keys", {"tenant": tenant})]

    def revoke_api_key(self, tenant: str, key_id: str, at: str) -> bool:
        return self._run("revoke_api_key", {"id": key_id, "tenant": tenant, "at": at}) > 0

    # --- sessions ---------------------------------------------------------------------------------

    def create_session(self, session: Session) -> None:
        self._run("insert_session", {
            "id": session.id, "identity": session.identity, "tenants": " ".join(session.tenants),
            "method": session.method, "refresh_hash": session.refresh_hash,
            "created_at": session.created_at, "expires_at": session.expires_at,
        })  # fmt: skip

    def session(self, session_id: str, tenant: str = "") -> Session | None:
        """The session, with its identity's current role in `tenant` (one indexed look-up)."""
        row = self._one("select_session", {"id": session_id, "tenant": tenant})
        if row is None:
            return None
        sid, identity, tenants, method, refresh, previous, created, expires, revoked, role = row
        return Session(sid, identity, tuple(tenants.split()), method, bytes(refresh),
                       None if previous is None else bytes(previous), created, expires, revoked,
                       role)  # fmt: skip

    def rotate_refresh(self, session_id: str, old_hash: bytes, new_hash: bytes, now: str) -> bool:
        """Swap the refresh token's digest, only if `old_hash` is the current one."""
        return self._run("rotate_refresh", {
            "id": session_id, "old_hash": old_hash, "new_hash": new_hash, "now": now,
        }) > 0  # fmt: skip

    def revoke_session(self, session_id: str, at: str) -> bool:
        return self._run("revoke_session", {"id": session_id, "at": at}) > 0

    def revoke_sessions_of(self, identity: str, tenant: str, at: str) -> int:
        """Revoke the identity's sessions that are bound to `tenant`; how many there were."""
        # Tenant names are [a-z0-9-]: nothing in them is a LIKE wildcard.
        params = {"identity": identity, "at": at, "pattern": f"% {tenant} %"}
        return self._run("revoke_sessions_of", params)

    # --- login challenges -------------------------------------------------------------------------

    def create_challenge(self, nonce: str, challenge: Challenge, now: str) -> None:
        with self._conn(write=True) as c:
            c.run("purge_challenges", {"now": now})
            c.run("insert_challenge", {
                "nonce": nonce, "identity": challenge.identity,
                "tenants": " ".join(challenge.tenants), "expires_at": challenge.expires_at,
            })  # fmt: skip

    def take_challenge(self, nonce: str) -> Challenge | None:
        """Remove and return the challenge: a nonce answers one login at most."""
        with self._conn(write=True) as c:
            row = c.one("take_challenge", {"nonce": nonce})
        if row is None:
            return None
        return Challenge(row[0], tuple(str(row[1]).split()), row[2])

    # --- custodial keys ---------------------------------------------------------------------------

    def put_custodial_key(self, identity: str, sealed: bytes, at: str) -> bytes:
        """Store a sealed key unless one exists; return the one stored (first writer wins)."""
        with self._conn(write=True) as c:
            params = {"identity": identity, "sealed": sealed, "created_at": at}
            c.run("insert_custodial_key", params)
            row = c.one("select_custodial_key", {"identity": identity})
        assert row is not None
        return bytes(row[0])

    def custodial_key(self, identity: str) -> bytes | None:
        row = self._one("select_custodial_key", {"identity": identity})
        return None if row is None else bytes(row[0])


def _user(row: Row) -> User:
    username, identity, password_hash, admin, created_at = row
    return User(username, identity, password_hash, bool(admin), created_at)


def _api_key(row: Row) -> ApiKey:
    values = list(row)
    values[5] = bytes(values[5])
    return ApiKey(*values)
