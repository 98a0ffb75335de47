"""Login (password or key challenge), refresh with rotation, logout, whoami, the JWKS.

Every login, failed login and detected refresh-token reuse is a span on the tenants involved.
"""

from __future__ import annotations

import base64
import secrets
from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi import APIRouter, Request

from logline.canonical import b64decode
from logline.errors import Forbidden, LogLineError, ParseError, SignatureError, Unauthenticated
from logline.identity.ids import LogLineId, check_tenant
from logline.identity.keys import PublicKey, domain_message
from logline.ledger.timefmt import format_ts, now_ts
from logline.server import tokens
from logline.server.auth import Principal, public, require, services_of
from logline.server.models import (
    ChallengeIn,
    ChallengeOut,
    KeyLogin,
    PasswordLogin,
    RefreshIn,
    TokenOut,
    WhoAmI,
)
from logline.server.roles import Permission
from logline.server.services import Services
from logline.store.accounts import Challenge, Session

router = APIRouter(tags=["auth"])
LOGIN_DOMAIN = b"logline/login/v1"


def login_message(instance: str, nonce: str, identity: str, tenants: list[str]) -> bytes:
    """What a key-challenge login signs (docs/PROTOCOL.md §11.3)."""
    text = f"{instance}\n{nonce}\n{identity}\n{','.join(tenants)}"
    return domain_message(LOGIN_DOMAIN, text.encode())


def _security(
    services: Services, tenants: list[str], kind: str, title: str, **payload: Any
) -> None:
    for tenant in tenants:
        if services.accounts.tenant(tenant) is not None:
            try:
                services.record(tenant, kind, title, payload)
            except LogLineError:
                pass  # the answer to the login stands even if its record cannot be written


def _check_tenants(tenants: list[str]) -> list[str]:
    return sorted({check_tenant(t) for t in tenants})


def _issue(services: Services, identity: str, tenants: list[str], method: str) -> TokenOut:
    now = datetime.now(UTC)
    session_id = tokens.new_id()
    secret, digest = tokens.new_secret()
    expires = now + timedelta(seconds=services.settings.refresh_token_ttl_s)
    services.accounts.create_session(
        Session(
            session_id,
            identity,
            tuple(tenants),
            method,
            digest,
            None,
            format_ts(now),
            format_ts(expires),
            None,
            None,
        )
    )
    return _tokens(services, identity, tenants, session_id, secret)


def _tokens(
    services: Services, identity: str, tenants: list[str], session_id: str, secret: str
) -> TokenOut:
    return TokenOut(
        access_token=services.tokens.access_token(identity, tuple(tenants), session_id),
        refresh_token=tokens.compose(tokens.REFRESH_PREFIX, session_id, secret),
        expires_in=services.settings.access_token_ttl_s,
        identity=identity,
        tenants=tenants,
    )


def _members_of_all(services: Services, identity: str, tenants: list[str]) -> bool:
    return all(services.accounts.membership(t, identity) is not None for t in tenants)


@router.post("/v1/auth/login", response_model=TokenOut)
def login(request: Request, body: PasswordLogin, client: str = public("auth")) -> TokenOut:
    """Log in with a username and password; the tokens are bound to `tenants`."""
    services = services_of(request)
    tenants = _check_tenants(body.tenants)
    user = services.accounts.user(body.username)
    ok = tokens.check_password(None if user is None else user.password_hash, body.password)
    if not ok or user is None or not _members_of_all(services, user.identity, tenants):
        services.metrics.auth_failed("password")
        _security(
            services,
            tenants,
            "security.login_failed",
            "Login failed",
            username=body.username,
            method="password",
            client=client,
        )
        raise Unauthenticated("wrong username or password, or not a member of those tenants")
    _security(
        services,
        tenants,
        "security.login",
        f"{user.identity} logged in",
        identity=user.identity,
        method="password",
        client=client,
    )
    return _issue(services, user.identity, tenants, "password")


@router.post("/v1/auth/challenge", response_model=ChallengeOut)
def challenge(request: Request, body: ChallengeIn, client: str = public("auth")) -> ChallengeOut:
    """A nonce for a key-challenge login: sign `message` with the identity's current key."""
    services = services_of(request)
    tenants = _check_tenants(body.tenants)
    LogLineId.parse(body.identity)
    nonce = secrets.token_urlsafe(32)
    expires = format_ts(datetime.now(UTC) + timedelta(seconds=services.settings.challenge_ttl_s))
    services.accounts.create_challenge(
        nonce, Challenge(body.identity, tuple(tenants), expires), now_ts()
    )
    message = login_message(services.name, nonce, body.identity, tenants)
    return ChallengeOut(nonce=nonce, message=base64.b64encode(message).decode(), expires_at=expires)


@router.post("/v1/auth/key-login", response_model=TokenOut)
def key_login(request: Request, body: KeyLogin, client: str = public("auth")) -> TokenOut:
    """Answer a challenge with the identity key's signature over its message."""
    services = services_of(request)
    found = services.accounts.take_challenge(body.nonce)
    if found is None or found.expires_at <= now_ts():
        services.metrics.auth_failed("key")
        raise Unauthenticated("unknown, used or expired challenge; ask for a new one")
    tenants = list(found.tenants)
    record = services.store.identity(found.identity)
    try:
        if record is None or record.status != "active":
            raise SignatureError("no usable identity")
        signature = b64decode(body.signature, what="signature")
        message = login_message(services.name, body.nonce, found.identity, tenants)
        PublicKey.parse(record.public_key).verify(signature, message)
        if not _members_of_all(services, found.identity, tenants):
            raise SignatureError("not a member")
    except (SignatureError, ParseError):
        services.metrics.auth_failed("key")
        _security(
            services,
            tenants,
            "security.login_failed",
            "Login failed",
            identity=found.identity,
            method="key",
            client=client,
        )
        raise Unauthenticated(
            "the signature does not verify under the identity's current key, or it is not a "
            "member of those tenants"
        ) from None
    _security(
        services,
        tenants,
        "security.login",
        f"{found.identity} logged in",
        identity=found.identity,
        method="key",
        client=client,
    )
    return _issue(services, found.identity, tenants, "key")


@router.post("/v1/auth/refresh", response_model=TokenOut)
def refresh(request: Request, body: RefreshIn, client: str = public("auth")) -> TokenOut:
    """New tokens for a refresh token, which is used up. Reusing one revokes its session."""
    services = services_of(request)
    split = tokens.split(tokens.REFRESH_PREFIX, body.refresh_token)
    session = services.accounts.session(split.id)
    now = now_ts()
    if session is None or session.revoked_at is not None or session.expires_at <= now:
        services.metrics.auth_failed("token")
        raise Unauthenticated("the session was revoked or has expired; log in again")
    secret, digest = tokens.new_secret()
    current = tokens.same_digest(session.refresh_hash, split.digest)
    if current and services.accounts.rotate_refresh(split.id, split.digest, digest, now):
        return _tokens(services, session.identity, list(session.tenants), split.id, secret)
    replaced = session.previous_hash is not None and tokens.same_digest(
        session.previous_hash, split.digest
    )
    if not current and not replaced:
        # Not a secret this session ever issued (the session id alone is no secret: it is in
        # every access token); refuse it without touching the session.
        services.metrics.auth_failed("token")
        raise Unauthenticated("invalid refresh token")
    # A refresh token that was already exchanged: a copy is in someone else's hands.
    services.accounts.revoke_session(split.id, now)
    services.metrics.auth_failed("token")
    _security(
        services,
        list(session.tenants),
        "security.refresh_reuse",
        "Refresh token reused; session revoked",
        identity=session.identity,
        session=split.id,
        client=client,
    )
    raise Unauthenticated("refresh token already used; the session is revoked")


@router.post("/v1/auth/logout", status_code=204)
def logout(request: Request, principal: Principal = require(Permission.READ, "auth")) -> None:
    """Revoke the session of the token (or do nothing for an API key)."""
    if principal.method == "token":
        services_of(request).accounts.revoke_session(principal.credential, now_ts())


@router.get("/v1/auth/whoami", response_model=WhoAmI)
def whoami(request: Request, principal: Principal = require(Permission.READ, "read")) -> WhoAmI:
    services = services_of(request)
    roles: dict[str, str | None] = {}
    for tenant in principal.tenants:
        member = services.accounts.membership(tenant, principal.identity)
        roles[tenant] = None if member is None else member.role
    user = services.accounts.user_by_identity(principal.identity)
    return WhoAmI(
        identity=principal.identity,
        tenants=list(principal.tenants),
        method=principal.method,
        instance_admin=bool(user and user.instance_admin),
        roles=roles,
    )


@router.get("/.well-known/jwks.json")
def jwks(request: Request) -> dict[str, Any]:
    """The key that signs access tokens (RFC 8037 OKP), for services that check them."""
    return services_of(request).tokens.jwks()


def instance_admin(services: Services, principal: Principal) -> None:
    """Instance-wide rights come from an administrator's login, never from an API key (keys
    are bound to one tenant and capped by their role)."""
    user = services.accounts.user_by_identity(principal.identity)
    if user is None or not user.instance_admin or principal.method != "token":
        raise Forbidden("this needs an instance administrator, logged in")
