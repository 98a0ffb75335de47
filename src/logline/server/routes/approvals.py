"""Approvals: spans the tenant's rules held, and the votes that decide them (docs/PROTOCOL.md
§14, rules/holds.py).

Who may: readers list and read holds (the held span included: approvers must see what they
approve); members vote, but only those the hold's requirement names (one of its roles or
identities; never the span's author under separation of duties) — others are refused with
403 `forbidden` saying why, and the refusal is logged like any other. A vote on a hold already
decided, a second vote, or a vote after the deadline is a 409 `conflict`.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from logline.errors import Forbidden
from logline.rules.holds import MAX_REASON_CHARS, Hold
from logline.server.auth import Principal, deny, require, services_of
from logline.server.roles import Permission, implied

router = APIRouter(prefix="/v1/tenants/{tenant}", tags=["approvals"])

StateFilter = Literal["pending", "approved", "rejected", "expired", "failed", "all"]


class RejectIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str = Field(min_length=1, max_length=MAX_REASON_CHARS)


class HoldOut(BaseModel):
    """A held span and where its approval stands (docs/PROTOCOL.md §14)."""

    model_config = ConfigDict(extra="allow")
    id: str
    tenant: str
    state: str
    span_id: str


class HoldList(BaseModel):
    approvals: list[dict[str, Any]]
    next_before: str | None


@router.get("/approvals", response_model=HoldList)
def list_approvals(
    request: Request,
    tenant: str,
    state: StateFilter = "pending",
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    before: str | None = None,
    principal: Principal = require(Permission.READ, "read"),
) -> HoldList:
    """Holds newest first (pending ones unless `state` says otherwise); pass `before` = the
    previous page's `next_before` for the next page."""
    holds = services_of(request).approvals.list(
        tenant, state=None if state == "all" else state, limit=limit, before=before or ""
    )
    return HoldList(
        approvals=[hold.to_json() for hold in holds],
        next_before=holds[-1].id if len(holds) == limit else None,
    )


@router.get("/approvals/{hold_id}", response_model=HoldOut)
def get_approval(
    request: Request,
    tenant: str,
    hold_id: str,
    principal: Principal = require(Permission.READ, "read"),
) -> JSONResponse:
    return JSONResponse(services_of(request).approvals.get(tenant, hold_id).to_json())


def _voter(request: Request, tenant: str, hold_id: str, principal: Principal) -> Hold:
    """The hold, once the caller is known to be one of its approvers (else a logged 403)."""
    services = services_of(request)
    hold = services.approvals.get(tenant, hold_id)
    try:
        services.approvals.check_voter(hold, principal.identity, implied(principal.role or ""))
    except Forbidden as exc:
        deny(services, principal, str(exc))
    return hold


@router.post("/approvals/{hold_id}/approve", response_model=HoldOut)
def approve(
    request: Request,
    tenant: str,
    hold_id: str,
    principal: Principal = require(Permission.WRITE, "write"),
) -> JSONResponse:
    """Vote for the held span; when the votes meet its requirement, it is logged."""
    _voter(request, tenant, hold_id, principal)
    hold = services_of(request).approvals.approve(
        tenant, hold_id, principal.identity, implied(principal.role or "")
    )
    return JSONResponse(hold.to_json())


@router.post("/approvals/{hold_id}/reject", response_model=HoldOut)
def reject(
    request: Request,
    tenant: str,
    hold_id: str,
    body: RejectIn,
    principal: Principal = require(Permission.WRITE, "write"),
) -> JSONResponse:
    """Vote against the held span: the hold is rejected and the span is never logged."""
    _voter(request, tenant, hold_id, principal)
    hold = services_of(request).approvals.reject(
        tenant, hold_id, principal.identity, implied(principal.role or ""), body.reason
    )
    return JSONResponse(hold.to_json())
