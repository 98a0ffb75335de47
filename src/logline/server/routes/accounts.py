"""Tenants, members and roles, users, API keys, and onboarding.

Every change is a span on the tenant's log signed by the instance identity: `tenant.created`,
`membership.granted`, `membership.revoked`, `security.api_key_created`,
`security.api_key_revoked`, `security.sessions_revoked`.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from starlette.requests import HTTPConnection

from logline.errors import (
    Conflict,
    Forbidden,
    InvalidInput,
    LogLineError,
    NotFound,
    Unauthenticated,
)
from logline.identity import documents
from logline.identity.ids import LogLineId, check_tenant
from logline.identity.keys import PublicKey
from logline.ledger.admission import signing_key_hint
from logline.ledger.timefmt import format_ts, now_ts
from logline.server import tokens
from logline.server.auth import (
    Principal,
    authenticate,
    authenticated,
    client_of,
    limit,
    require,
    services_of,
)
from logline.server.models import (
    ApiKeyCreated,
    ApiKeyIn,
    ApiKeyOut,
    MemberIn,
    MemberOut,
    OnboardIn,
    OnboardOut,
    TenantIn,
    TenantOut,
    UserIn,
    UserOut,
)
from logline.server.roles import Permission, check_role, rank
from logline.server.routes.auth import instance_admin
from logline.server.routes.spans import append_spans, parse_wire
from logline.server.services import SYSTEM_TENANT, Services
from logline.store.accounts import ApiKey, Membership, Tenant, User

router = APIRouter(tags=["accounts"])
RESERVED_TENANTS = (SYSTEM_TENANT,)


def _tenant_out(tenant: Tenant, role: str | None = None) -> TenantOut:
    return TenantOut(
        name=tenant.name,
        display_name=tenant.display_name,
        created_at=tenant.created_at,
        created_by=tenant.created_by,
        role=role,
    )


def _member_out(m: Membership) -> MemberOut:
    return MemberOut(
        tenant=m.tenant,
        identity=m.identity,
        role=m.role,
        granted_at=m.granted_at,
        granted_by=m.granted_by,
    )


def _key_out(k: ApiKey) -> dict[str, Any]:
    return {
        "id": k.id,
        "tenant": k.tenant,
        "identity": k.identity,
        "role": k.role,
        "name": k.name,
        "created_at": k.created_at,
        "expires_at": k.expires_at,
        "revoked_at": k.revoked_at,
    }


def _new_tenant_name(name: str) -> str:
    check_tenant(name)
    if name in RESERVED_TENANTS:
        raise InvalidInput(f"tenant name {name} is reserved")
    return name


def grant(services: Services, tenant: str, identity: str, role: str, by: str) -> None:
    services.accounts.grant(tenant, identity, role, by=by, at=now_ts())
    services.record(
        tenant,
        "membership.granted",
        f"{identity} is {role}",
        {"identity": identity, "role": role, "by": by},
    )


def create_tenant(services: Services, body: TenantIn, owner: str) -> Tenant:
    name = _new_tenant_name(body.name)
    if not services.ensure_tenant(name, body.display_name or name, by=owner):
        raise Conflict(f"tenant {name} already exists")
    grant(services, name, owner, "owner", services.system_identity)
    tenant = services.accounts.tenant(name)
    assert tenant is not None
    return tenant


# --- tenants --------------------------------------------------------------------------------------


@router.post("/v1/tenants", status_code=201, response_model=TenantOut)
def post_tenant(
    request: Request, body: TenantIn, principal: Principal = authenticated("write")
) -> TenantOut:
    """Create a tenant (instance administrators); the creator becomes its owner."""
    services = services_of(request)
    instance_admin(services, principal)
    return _tenant_out(create_tenant(services, body, principal.identity), "owner")


@router.get("/v1/tenants", response_model=list[TenantOut])
def list_tenants(request: Request, principal: Principal = authenticated("read")) -> list[TenantOut]:
    """The tenants the credentials are bound to, with the caller's role in each."""
    services = services_of(request)
    out = []
    for name in principal.tenants:
        tenant = services.accounts.tenant(name)
        member = services.accounts.membership(name, principal.identity)
        if tenant is not None and member is not None:
            out.append(_tenant_out(tenant, member.role))
    return out


@router.get("/v1/tenants/{tenant}", response_model=TenantOut)
def get_tenant(
    request: Request, tenant: str, principal: Principal = require(Permission.READ, "read")
) -> TenantOut:
    return _tenant_out(services_of(request).require_tenant(tenant), principal.role)


# --- members --------------------------------------------------------------------------------------


@router.get("/v1/tenants/{tenant}/members", response_model=list[MemberOut])
def list_members(
    request: Request, tenant: str, principal: Principal = require(Permission.READ, "read")
) -> list[MemberOut]:
    return [_member_out(m) for m in services_of(request).accounts.members(tenant)]


def _check_rank(principal: Principal, *roles: str | None) -> None:
    """Only owners make or unmake owners; nobody grants a role above their own."""
    for role in roles:
        if role is None:
            continue
        if role == "owner" and principal.role != "owner":
            raise Forbidden("only an owner can grant or remove the owner role")
        if rank(role) > rank(principal.role or "viewer"):
            raise Forbidden(f"{principal.role} cannot grant {role}")


def _not_last_owner(services: Services, tenant: str, current: Membership | None) -> None:
    if (
        current is not None
        and current.role == "owner"
        and services.accounts.count_owners(tenant) <= 1
    ):
        raise Conflict(f"{current.identity} is the last owner of {tenant}")


@router.put("/v1/tenants/{tenant}/members/{identity:llid}", response_model=MemberOut)
def put_member(
    request: Request,
    tenant: str,
    identity: str,
    body: MemberIn,
    principal: Principal = require(Permission.ADMIN, "write"),
) -> MemberOut:
    """Grant `role` to a registered identity, or change its role."""
    services = services_of(request)
    role = check_role(body.role)
    services.require_identity(identity)
    current = services.accounts.membership(tenant, identity)
    _check_rank(principal, role, None if current is None else current.role)
    if role != "owner":
        _not_last_owner(services, tenant, current)
    grant(services, tenant, identity, role, principal.identity)
    member = services.accounts.membership(tenant, identity)
    assert member is not None
    return _member_out(member)


@router.delete("/v1/tenants/{tenant}/members/{identity:llid}", status_code=204)
def delete_member(
    request: Request,
    tenant: str,
    identity: str,
    principal: Principal = require(Permission.ADMIN, "write"),
) -> None:
    """Remove a member; its tokens and API keys lose their rights in the tenant at once."""
    services = services_of(request)
    current = services.accounts.membership(tenant, identity)
    if current is None:
        raise NotFound(f"{identity} is not a member of {tenant}")
    _check_rank(principal, current.role)
    _not_last_owner(services, tenant, current)
    services.accounts.revoke(tenant, identity)
    services.record(
        tenant,
        "membership.revoked",
        f"{identity} is no longer a member",
        {"identity": identity, "role": current.role, "by": principal.identity},
    )


@router.post("/v1/tenants/{tenant}/members/{identity:llid}/sessions/revoke", status_code=204)
def revoke_sessions(
    request: Request,
    tenant: str,
    identity: str,
    principal: Principal = require(Permission.ADMIN, "write"),
) -> None:
    """Revoke the member's sessions bound to this tenant (their access and refresh tokens);
    sessions bound only to other tenants stay."""
    services = services_of(request)
    if services.accounts.membership(tenant, identity) is None:
        raise NotFound(f"{identity} is not a member of {tenant}")
    count = services.accounts.revoke_sessions_of(identity, tenant, now_ts())
    services.record(
        tenant,
        "security.sessions_revoked",
        f"Sessions of {identity} revoked",
        {"identity": identity, "count": count, "by": principal.identity},
    )


# --- users ----------------------------------------------------------------------------------------


def create_user(services: Services, body: UserIn, by: str) -> User:
    """A person who logs in with a password, with a custodial identity, member of a tenant."""
    role = check_role(body.role, allow_node=False)
    services.require_tenant(body.tenant)
    if services.accounts.user(body.username) is not None:
        raise Conflict(f"user {body.username} already exists")
    identity = LogLineId.parse(f"logline-id://person/{body.username}")
    services.create_custodial_identity(body.tenant, identity, body.display_name)
    user = User(
        body.username,
        str(identity),
        tokens.hash_password(body.password),
        body.instance_admin,
        now_ts(),
    )
    if not services.accounts.create_user(user):
        raise Conflict(f"user {body.username} already exists")
    grant(services, body.tenant, str(identity), role, by)
    return user


@router.post("/v1/users", status_code=201, response_model=UserOut)
def post_user(
    request: Request, body: UserIn, principal: Principal = authenticated("write")
) -> UserOut:
    """Create a password user (instance administrators)."""
    services = services_of(request)
    instance_admin(services, principal)
    user = create_user(services, body, principal.identity)
    return UserOut(
        username=user.username,
        identity=user.identity,
        instance_admin=user.instance_admin,
        created_at=user.created_at,
    )


# --- API keys -------------------------------------------------------------------------------------


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:32] or "key"


def _may_hold_key_for(services: Services, principal: Principal, tenant: str, holder: str) -> None:
    """A key for an existing identity lets its holder sign as that identity (custodially), so
    only for oneself, or for a non-person member the caller could have granted its role."""
    member = services.accounts.membership(tenant, holder)
    if member is None:
        raise InvalidInput(f"{holder} is not a member of {tenant}; grant it a role first")
    if holder == principal.identity:
        return
    if holder.startswith("logline-id://person/") or rank(member.role) > rank(principal.role or ""):
        raise Forbidden(
            f"{principal.identity} may not make an API key that acts as {holder}: keys are for "
            "oneself or for services, nodes and agents of a role one could grant"
        )
    if member.role == "owner" and principal.role != "owner":
        raise Forbidden("only an owner can make a key that acts as an owner")


@router.post("/v1/tenants/{tenant}/api-keys", status_code=201, response_model=ApiKeyCreated)
def create_api_key(
    request: Request,
    tenant: str,
    body: ApiKeyIn,
    principal: Principal = require(Permission.ADMIN, "write"),
) -> dict[str, Any]:
    """Create an API key; the key is in this response only. Without `identity`, the key gets a
    new custodial service identity, member of the tenant with the key's role."""
    services = services_of(request)
    role = check_role(body.role)
    if role != "node":
        _check_rank(principal, role)
    expires = None
    if body.expires_in_s is not None:
        expires = datetime.now(UTC) + timedelta(seconds=body.expires_in_s)
    if body.identity is not None:
        _may_hold_key_for(services, principal, tenant, body.identity)
    key, secret = issue_api_key(
        services, tenant, body.name, role, principal.identity, holder=body.identity, expires=expires
    )
    return {**_key_out(key), "key": secret}


def issue_api_key(
    services: Services,
    tenant: str,
    name: str,
    role: str,
    by: str,
    *,
    holder: str | None = None,
    expires: datetime | None = None,
) -> tuple[ApiKey, str]:
    """Store a new API key (for `holder`, else a new custodial service identity with `role`)
    and log its creation; the key and the secret credential, which is nowhere else."""
    key_id = tokens.new_id()
    now = datetime.now(UTC)
    if holder is None:
        identity = LogLineId.parse(f"logline-id://service/{tenant}.{_slug(name)}.{key_id[:8]}")
        services.create_custodial_identity(tenant, identity, name)
        grant(services, tenant, str(identity), role, by)
        holder = str(identity)
    secret, digest = tokens.new_secret()
    key = ApiKey(
        key_id,
        tenant,
        holder,
        role,
        name,
        digest,
        format_ts(now),
        None if expires is None else format_ts(expires),
        None,
        None,
    )
    services.accounts.create_api_key(key)
    payload = {"id": key_id, "identity": holder, "role": role, "name": name, "by": by}
    services.record(tenant, "security.api_key_created", f"API key {name} created", payload)
    return key, tokens.compose(tokens.API_KEY_PREFIX, key_id, secret)


@router.get("/v1/tenants/{tenant}/api-keys", response_model=list[ApiKeyOut])
def list_api_keys(
    request: Request, tenant: str, principal: Principal = require(Permission.ADMIN, "read")
) -> list[dict[str, Any]]:
    return [_key_out(k) for k in services_of(request).accounts.api_keys(tenant)]


@router.delete("/v1/tenants/{tenant}/api-keys/{key_id}", status_code=204)
def revoke_api_key(
    request: Request,
    tenant: str,
    key_id: str,
    principal: Principal = require(Permission.ADMIN, "write"),
) -> None:
    services = services_of(request)
    if not services.accounts.revoke_api_key(tenant, key_id, now_ts()):
        raise NotFound(f"no active API key {key_id} in {tenant}")
    services.record(
        tenant,
        "security.api_key_revoked",
        f"API key {key_id} revoked",
        {"id": key_id, "by": principal.identity},
    )


# --- onboarding -----------------------------------------------------------------------------------


def _onboarder(request: HTTPConnection) -> Principal | None:
    """Who onboards: an instance administrator, or anyone when sign-up is open."""
    services = services_of(request)
    try:
        principal: Principal | None = authenticate(services, request, None)
    except Unauthenticated:
        if request.headers.get("authorization") or request.headers.get("x-api-key"):
            raise
        principal = None
    if principal is not None and principal.method == "token":
        user = services.accounts.user_by_identity(principal.identity)
        if user is not None and user.instance_admin:
            limit(services, "write", principal.rate_key)
            return principal
    if not services.settings.allow_signup:
        raise Forbidden("sign-up is closed on this instance; an instance administrator onboards")
    # Self-service, signed in or not: budgeted per client address.
    limit(services, "auth", f"ip:{client_of(request)}")
    return None


@router.post("/v1/onboard", status_code=201, response_model=OnboardOut)
def onboard(
    request: Request,
    body: OnboardIn,
    onboarder: Annotated[Principal | None, Depends(_onboarder)],
) -> OnboardOut:
    """identity → tenant → membership (owner) → first span, each a span on the new tenant's
    log. The new owner then logs in with a key challenge to get a token. Everything is checked
    before anything is stored; the tenant exists only once its owner's identity is logged."""
    services = services_of(request)
    name = _new_tenant_name(body.tenant.name)
    identity_span = parse_wire(body.identity_span, name)
    if identity_span.kind != documents.CREATED:
        raise InvalidInput("identity_span must be an identity.created span")
    first = None if body.first_span is None else parse_wire(body.first_span, name)
    if first is not None and first.author != identity_span.author:
        raise InvalidInput("the first span must be by the new identity")
    # Check all that can be checked before anything is stored, so a bad request leaves nothing.
    key = PublicKey.parse(signing_key_hint(identity_span) or "")
    for span in (identity_span, *([first] if first is not None else [])):
        span.verify(key)
        services.log.check_skew(span)
    if services.store.identity(identity_span.author) is not None:
        raise Conflict(f"identity {identity_span.author} already exists")
    tenant = Tenant(name, body.tenant.display_name or name, now_ts(), identity_span.author)
    if not services.accounts.create_tenant(tenant):
        raise Conflict(f"tenant {name} already exists")
    try:
        append_spans(request, [identity_span], "sequenced")
    except LogLineError:
        services.accounts.delete_tenant(name)  # nothing of it was logged
        raise
    services.tenant_created(tenant)
    grant(services, name, identity_span.author, "owner", services.system_identity)
    spans = [identity_span.id]
    if first is not None:
        append_spans(request, [first], "sequenced")
        spans.append(first.id)
    return OnboardOut(identity=identity_span.author, tenant=name, role="owner", spans=spans)
