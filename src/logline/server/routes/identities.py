"""Identities: register (public key only), rotate, list, ghosts and claims.

Registering and rotating take spans the identity signed itself (docs/PROTOCOL.md §8): the API never
sees, makes or returns a private key for them. Ghosts made here are custodial (the server keeps
their key until they are claimed), so a person can be named before they have a key.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse

from logline.canonical import b64encode
from logline.errors import Conflict, Forbidden, InvalidInput, NotFound
from logline.identity import documents
from logline.identity.ids import LogLineId
from logline.server.auth import Principal, require, services_of
from logline.server.models import (
    Appended,
    ClaimProof,
    GhostIn,
    IdentityDetail,
    IdentityOut,
    WireSpan,
)
from logline.server.roles import Permission
from logline.server.routes.spans import append_spans, check_authors, parse_wire
from logline.store.interface import IdentityRecord

router = APIRouter(prefix="/v1/tenants/{tenant}", tags=["identities"])


def _out(request: Request, record: IdentityRecord) -> dict[str, Any]:
    custodial = services_of(request).accounts.custodial_key(record.id) is not None
    return {
        "id": record.id,
        "kind": record.kind,
        "public_key": record.public_key,
        "status": record.status,
        "tenant": record.tenant,
        "created_at": record.created_at,
        "display_name": record.display_name,
        "expires_at": record.expires_at,
        "claimed_by": record.claimed_by,
        "custodial": custodial,
    }


def _visible(request: Request, tenant: str, record: IdentityRecord) -> bool:
    """An identity is visible in a tenant where it was registered or is a member."""
    accounts = services_of(request).accounts
    return record.tenant == tenant or accounts.membership(tenant, record.id) is not None


def _document(request: Request, principal: Principal, wire: WireSpan, kind: str) -> JSONResponse:
    assert principal.tenant is not None
    span = parse_wire(wire, principal.tenant)
    if span.kind != kind:
        raise InvalidInput(f"expected an {kind} span, got {span.kind}")
    check_authors(request, principal, [span])
    [result] = append_spans(request, [span], "sequenced")
    return JSONResponse(result, 201)


@router.get("/identities", response_model=list[IdentityOut])
def list_identities(
    request: Request, tenant: str, principal: Principal = require(Permission.READ, "read")
) -> JSONResponse:
    store = services_of(request).store
    return JSONResponse(
        [_out(request, r) for r in store.identities() if _visible(request, tenant, r)]
    )


@router.post("/identities", status_code=201, response_model=Appended)
def register(
    request: Request,
    tenant: str,
    wire: WireSpan,
    principal: Principal = require(Permission.WRITE, "write"),
) -> JSONResponse:
    """Register an identity with its `identity.created` span, signed by its new key."""
    return _document(request, principal, wire, documents.CREATED)


@router.post("/identities/rotate", status_code=201, response_model=Appended)
def rotate(
    request: Request,
    tenant: str,
    wire: WireSpan,
    principal: Principal = require(Permission.WRITE, "write"),
) -> JSONResponse:
    """Rotate a key with an `identity.rotated` span, signed by the current key."""
    return _document(request, principal, wire, documents.ROTATED)


@router.post("/identities/ghosts", status_code=201, response_model=IdentityOut)
def create_ghost(
    request: Request,
    tenant: str,
    body: GhostIn,
    principal: Principal = require(Permission.WRITE, "write"),
) -> JSONResponse:
    """A provisional, custodial ghost identity that expires unless claimed."""
    services = services_of(request)
    ghost = LogLineId.parse(f"logline-id://ghost/{body.handle}")
    expires = datetime.now(UTC) + timedelta(seconds=body.expires_in_s)
    services.create_custodial_identity(tenant, ghost, body.display_name, expires_at=expires)
    record = services.store.identity(str(ghost))
    assert record is not None
    return JSONResponse(_out(request, record), 201)


def _ghost(request: Request, tenant: str, ghost: str) -> IdentityRecord:
    record = services_of(request).store.identity(ghost)
    if record is None or record.kind != "ghost" or not _visible(request, tenant, record):
        raise NotFound(f"no ghost identity {ghost} in {tenant}")
    return record


@router.get("/identities/claim-proof", response_model=ClaimProof)
def claim_proof(
    request: Request,
    tenant: str,
    ghost: Annotated[str, Query()],
    principal: Principal = require(Permission.WRITE, "write"),
) -> ClaimProof:
    """The custodial ghost's consent for the caller to claim it (docs/PROTOCOL.md §8.3)."""
    services = services_of(request)
    _ghost(request, tenant, ghost)
    key = services.custody.key(ghost)
    if key is None:
        raise Conflict(f"the server does not hold the key of {ghost}; its owner signs the claim")
    proof = key.sign(documents.claim_message(ghost, principal.identity))
    return ClaimProof(ghost=ghost, claimant=principal.identity, proof=b64encode(proof))


@router.post("/identities/claims", status_code=201, response_model=Appended)
def claim(
    request: Request,
    tenant: str,
    wire: WireSpan | None = None,
    ghost: Annotated[str | None, Query()] = None,
    principal: Principal = require(Permission.WRITE, "write"),
) -> JSONResponse:
    """Claim a ghost: post the claimant's signed `identity.claimed` span, or name the `ghost`
    to have the server sign both parts (custodial claimant and custodial ghost)."""
    if (wire is None) == (ghost is None):
        raise InvalidInput("post either a signed identity.claimed span or ?ghost=<id>, not both")
    if wire is not None:
        return _document(request, principal, wire, documents.CLAIMED)
    assert ghost is not None
    services = services_of(request)
    _ghost(request, tenant, ghost)
    ghost_key = services.custody.key(ghost)
    if ghost_key is None:
        raise Conflict(f"the server does not hold the key of {ghost}")
    if principal.identity == ghost:
        raise Forbidden("a ghost cannot claim itself")
    claimant_key = services.custodial_key(principal.identity)
    span = documents.claim_span(claimant_key, principal.identity, ghost_key, ghost, tenant)
    [result] = append_spans(request, [span], "sequenced")
    return JSONResponse(result, 201)


@router.get("/identities/{identity:llid}", response_model=IdentityDetail)
def get_identity(
    request: Request,
    tenant: str,
    identity: str,
    principal: Principal = require(Permission.READ, "read"),
) -> JSONResponse:
    store = services_of(request).store
    record = store.identity(identity)
    if record is None or not _visible(request, tenant, record):
        raise NotFound(f"no identity {identity} in {tenant}")
    keys = [
        {
            "public_key": k.public_key,
            "valid_from": k.valid_from,
            "valid_until": k.valid_until,
            "span_id": k.span_id,
        }
        for k in store.keys(identity)
    ]
    return JSONResponse({**_out(request, record), "keys": keys})
