"""Who is calling, and may they: the one dependency every route declares.

    @router.get("/v1/tenants/{tenant}/spans")
    def query(principal: Principal = require(Permission.READ, "read")) -> ...

`require` authenticates the request (a bearer access token, or an API key as a bearer token or
in `X-API-Key`; the stream also takes `?access_token=` because browsers cannot set headers on a
WebSocket), resolves the principal's *current* role in the tenant of the path (so a revoked
membership or session takes effect at once, not when a token expires), charges the rate limit of
the route class, and checks the permission. A denial is logged as a
`security.access_denied` span on the tenant's log.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, NoReturn

from fastapi import Depends, Request
from starlette.requests import HTTPConnection

from logline.errors import Forbidden, LogLineError, Unauthenticated
from logline.ledger.timefmt import now_ts
from logline.server import tokens
from logline.server.clientaddr import client_address
from logline.server.roles import Permission, allowed, weaker
from logline.server.services import Services

log = logging.getLogger("logline.server.auth")


@dataclass(frozen=True, slots=True)
class Principal:
    identity: str
    tenants: tuple[str, ...]  # what the credential is bound to
    method: str  # token | api_key
    credential: str  # session id or API key id
    tenant: str | None = None  # the tenant of this request, if any
    role: str | None = None  # the principal's role in it

    @property
    def rate_key(self) -> str:
        return f"{self.method}:{self.identity}"


def services_of(conn: HTTPConnection) -> Services:
    services: Services = conn.app.state.services
    return services


def client_of(conn: HTTPConnection) -> str:
    services = services_of(conn)
    peer = conn.client.host if conn.client else None
    return client_address(peer, conn.headers.items(), services.settings.trusted_proxies)


def _credential(conn: HTTPConnection) -> tuple[str, str]:
    header = conn.headers.get("authorization")
    if header is not None:
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            raise Unauthenticated("Authorization must be 'Bearer <token>'")
        value = value.strip()
        return (
            ("api_key", value) if value.startswith(tokens.API_KEY_PREFIX + "_") else ("jwt", value)
        )
    api_key = conn.headers.get("x-api-key")
    if api_key is not None:
        return "api_key", api_key
    if conn.scope["type"] == "websocket" or conn.url.path.endswith("/stream"):
        token = conn.query_params.get("access_token")
        if token:
            return "jwt", token
    raise Unauthenticated("this route needs credentials: a bearer token or an API key")


def authenticate(services: Services, conn: HTTPConnection, tenant: str | None) -> Principal:
    """The principal behind the request's credentials, with its role in `tenant`."""
    method, value = _credential(conn)
    now = now_ts()
    if method == "jwt":
        try:
            claims = services.tokens.verify_access(value)
        except Unauthenticated:
            services.metrics.auth_failed("token")
            raise
        session = services.accounts.session(claims.session, tenant or "")
        if session is None or session.revoked_at is not None or session.expires_at <= now:
            services.metrics.auth_failed("token")
            raise Unauthenticated("the session of this token was revoked or has expired")
        role = session.role if tenant in claims.tenants else None
        return Principal(claims.identity, claims.tenants, "token", claims.session, tenant, role)
    split = tokens.split(tokens.API_KEY_PREFIX, value)
    key = services.accounts.api_key(split.id)
    if (
        key is None
        or not tokens.same_digest(key.secret_hash, split.digest)
        or key.revoked_at is not None
        or (key.expires_at is not None and key.expires_at <= now)
    ):
        services.metrics.auth_failed("api_key")
        raise Unauthenticated("invalid, revoked or expired API key")
    role = None
    if tenant == key.tenant and key.member_role is not None:
        role = weaker(key.role, key.member_role)
    return Principal(key.identity, (key.tenant,), "api_key", key.id, tenant, role)


def authorize(services: Services, principal: Principal, permission: Permission) -> None:
    tenant = principal.tenant
    if tenant is None:
        return
    if tenant not in principal.tenants:
        deny(services, principal, f"the credentials are not bound to tenant {tenant}")
    if not allowed(principal.role, permission):
        what = "is not a member" if principal.role is None else f"is {principal.role}"
        deny(
            services,
            principal,
            f"{principal.identity} {what} in {tenant}; this needs {permission.value}",
        )


def deny(services: Services, principal: Principal, reason: str) -> NoReturn:
    """Refuse, logging the refusal on the tenant asked about (if it exists)."""
    tenant = principal.tenant
    if tenant is not None and services.accounts.tenant(tenant) is not None:
        try:
            services.record(
                tenant,
                "security.access_denied",
                "Access denied",
                {"identity": principal.identity, "reason": reason, "credential": principal.method},
            )
        except LogLineError as exc:  # the denial stands even if it cannot be logged
            log.warning("could not log a denial on %s: %s", tenant, exc)
    raise Forbidden(reason)


def limit(services: Services, route_class: str, key: str) -> None:
    try:
        services.limiter.hit(route_class, key)
    except LogLineError:
        services.metrics.rate_limited(route_class)
        raise


def require(permission: Permission, route_class: str) -> Any:
    """A dependency: the authorized principal for `permission` in the path's tenant."""

    def dependency(request: Request) -> Principal:
        return check(request, permission, route_class)

    return Depends(dependency)


def authenticated(route_class: str) -> Any:
    """A dependency for routes outside any tenant: any valid credential."""

    def dependency(request: Request) -> Principal:
        services = services_of(request)
        principal = authenticate(services, request, None)
        limit(services, route_class, principal.rate_key)
        return principal

    return Depends(dependency)


def check(conn: HTTPConnection, permission: Permission, route_class: str) -> Principal:
    services = services_of(conn)
    tenant = conn.path_params.get("tenant")
    principal = authenticate(services, conn, tenant)
    # Charged before authorizing: every denial is logged as a span, so denials need a budget too.
    limit(services, route_class, principal.rate_key)
    authorize(services, principal, permission)
    return principal


def public(route_class: str) -> Any:
    """A dependency for routes without credentials (login): rate-limited per client address."""

    def dependency(request: Request) -> str:
        services = services_of(request)
        client = client_of(request)
        limit(services, route_class, f"ip:{client}")
        return client

    return Depends(dependency)
