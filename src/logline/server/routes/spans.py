"""Spans: append (author-signed or custodial), get, query, receipt, replay, revert, redact."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from functools import partial
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import JSONResponse

from logline.errors import Forbidden, InvalidInput
from logline.identity import documents
from logline.identity.ids import check_kind, check_tag
from logline.ledger.admission import REDACTION
from logline.ledger.edits import redaction_span, replay_span, revert_span
from logline.ledger.receipt import Receipt
from logline.ledger.span import Span, parse_span
from logline.server.auth import Principal, require, services_of
from logline.server.models import (
    Appended,
    AppendedBatch,
    Draft,
    Reason,
    ReceiptOut,
    SpanBatch,
    SpanPage,
    StoredSpanOut,
    Wait,
    WireSpan,
)
from logline.server.roles import Permission, allowed
from logline.store.interface import Query as SpanQuery
from logline.store.sql import decode_cursor

router = APIRouter(prefix="/v1/tenants/{tenant}", tags=["spans"])
WaitParam = Annotated[Wait, Query(description="Acknowledgement to wait for.")]


def parse_wire(wire: WireSpan, tenant: str, index: int | None = None) -> Span:
    span = parse_span(wire.model_dump(exclude_unset=True))
    if span.tenant != tenant:
        where = "" if index is None else f"span {index}: "
        raise InvalidInput(f"{where}the span is for tenant {span.tenant}, not {tenant}")
    return span


def check_authors(request: Request, principal: Principal, spans: list[Span]) -> None:
    """Who may post a span signed by whom.

    The caller may post spans by itself, by identities that may write in the tenant (a service
    forwarding its members' signed spans), and identity documents that register new identities.
    Redactions delete data: they need an admin, whoever signed them.
    """
    services = services_of(request)
    tenant = principal.tenant
    assert tenant is not None
    checked: dict[str, bool] = {principal.identity: True}
    for span in spans:
        if span.kind == REDACTION and not allowed(principal.role, Permission.ADMIN):
            raise Forbidden("redactions need the admin role")
        if span.kind == documents.CREATED:
            continue
        author = span.author
        if author not in checked:
            member = services.accounts.membership(tenant, author)
            checked[author] = member is not None and allowed(member.role, Permission.WRITE)
        if not checked[author]:
            raise Forbidden(
                f"{principal.identity} may not post spans by {author}, who may not write in "
                f"{tenant}"
            )


def _appended(receipt: Receipt, span_id: str) -> dict[str, Any]:
    return {
        "span_id": span_id,
        "seq": receipt.seq,
        "status": receipt.status,
        "receipt": receipt.to_json(),
    }


def append_spans(request: Request, spans: list[Span], wait: Wait) -> list[dict[str, Any]]:
    services = services_of(request)
    started = time.perf_counter()
    receipts = services.log.append_batch(spans, wait=wait)
    services.metrics.observe_append(wait, len(spans), time.perf_counter() - started)
    return [_appended(r, s.id) for r, s in zip(receipts, spans, strict=True)]


@router.post("/spans", status_code=201, response_model=Appended)
def append(
    request: Request,
    tenant: str,
    wire: WireSpan,
    wait: WaitParam = "sequenced",
    principal: Principal = require(Permission.WRITE, "write"),
) -> JSONResponse:
    """Append one author-signed span."""
    spans = [parse_wire(wire, tenant)]
    check_authors(request, principal, spans)
    [result] = append_spans(request, spans, wait)
    return JSONResponse(result, 201)


@router.post("/spans/batch", status_code=201, response_model=AppendedBatch)
def append_batch(
    request: Request,
    tenant: str,
    batch: SpanBatch,
    wait: WaitParam = "sequenced",
    principal: Principal = require(Permission.WRITE, "write"),
) -> JSONResponse:
    """Append author-signed spans atomically, in order: all are logged, or none."""
    spans = [parse_wire(wire, tenant, i) for i, wire in enumerate(batch.spans)]
    check_authors(request, principal, spans)
    return JSONResponse({"results": append_spans(request, spans, wait)}, 201)


@router.post("/spans/custodial", status_code=201, response_model=Appended)
def append_custodial(
    request: Request,
    tenant: str,
    draft: Draft,
    wait: WaitParam = "sequenced",
    principal: Principal = require(Permission.WRITE, "write"),
) -> JSONResponse:
    """Append a span the server signs as the caller's custodial identity."""
    fields = draft.model_dump()
    fields["kind"] = check_kind(fields["kind"])
    for tag in fields["tags"]:
        check_tag(tag)
    span = services_of(request).sign_as(principal.identity, tenant=tenant, **fields)
    check_authors(request, principal, [span])  # a custodial redaction needs admin too
    [result] = append_spans(request, [span], wait)
    return JSONResponse(result, 201)


@router.get("/spans", response_model=SpanPage)
def query(
    request: Request,
    tenant: str,
    kind: str | None = None,
    author: str | None = None,
    status: str | None = None,
    tag: Annotated[list[str] | None, Query()] = None,
    since: str | None = None,
    until: str | None = None,
    q: Annotated[str | None, Query(description="Words that must all occur in the title.")] = None,
    contract_id: str | None = None,
    workflow_id: str | None = None,
    flow_id: str | None = None,
    caused_by: str | None = None,
    replay_of: str | None = None,
    order: Annotated[str, Query(pattern="^(asc|desc)$")] = "asc",
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: str | None = None,
    principal: Principal = require(Permission.READ, "read"),
) -> Response:
    """Spans matching every given filter, oldest first (or newest with order=desc)."""
    descending = order == "desc"
    after = before = None
    if cursor is not None:
        seq, cursor_desc = decode_cursor(cursor)
        if cursor_desc != descending:
            raise InvalidInput("the cursor was made for the other order")
        after, before = (None, seq) if descending else (seq, None)
    page = services_of(request).store.query(
        SpanQuery(
            tenant,
            kind=kind,
            author=author,
            status=status,
            tags=tuple(tag or ()),
            since=since,
            until=until,
            text=q,
            contract_id=contract_id,
            workflow_id=workflow_id,
            flow_id=flow_id,
            caused_by=caused_by,
            replay_of=replay_of,
            after_seq=after,
            before_seq=before,
            descending=descending,
            limit=limit,
        )
    )
    items = ",".join(item.json_text() for item in page.items)
    return Response(
        f'{{"items":[{items}],"next_cursor":{json.dumps(page.next_cursor)}}}',
        media_type="application/json",
    )


@router.get("/spans/{span_id}", response_model=StoredSpanOut)
def get(
    request: Request,
    tenant: str,
    span_id: str,
    principal: Principal = require(Permission.READ, "read"),
) -> Response:
    text = services_of(request).log.get(tenant, span_id).json_text()
    return Response(text, media_type="application/json")


@router.get("/spans/{span_id}/receipt", response_model=ReceiptOut)
def receipt(
    request: Request,
    tenant: str,
    span_id: str,
    principal: Principal = require(Permission.READ, "read"),
) -> JSONResponse:
    """A checkpointed receipt for a logged span, against the latest checkpoint."""
    return JSONResponse(services_of(request).log.receipt(tenant, span_id).to_json())


def _edit(
    request: Request, principal: Principal, span_id: str, wait: Wait, build: Callable[..., Span]
) -> JSONResponse:
    """Sign `build(key, author, original)` as the caller's custodial identity, and append it."""
    assert principal.tenant is not None
    services = services_of(request)
    original = services.log.get(principal.tenant, span_id)
    span = build(services.custodial_key(principal.identity), principal.identity, original)
    [result] = append_spans(request, [span], wait)
    return JSONResponse(result, 201)


@router.post("/spans/{span_id}/replay", status_code=201, response_model=Appended)
def replay(
    request: Request,
    tenant: str,
    span_id: str,
    wait: WaitParam = "sequenced",
    principal: Principal = require(Permission.WRITE, "write"),
) -> JSONResponse:
    """Log the span again (custodial signing), naming the original in replay_of."""
    return _edit(request, principal, span_id, wait, replay_span)


@router.post("/spans/{span_id}/revert", status_code=201, response_model=Appended)
def revert(
    request: Request,
    tenant: str,
    span_id: str,
    body: Reason,
    wait: WaitParam = "sequenced",
    principal: Principal = require(Permission.WRITE, "write"),
) -> JSONResponse:
    """Log a revert of the span (custodial signing): same kind, status reverted."""
    return _edit(request, principal, span_id, wait, partial(revert_span, reason=body.reason))


@router.post("/spans/{span_id}/redact", status_code=201, response_model=Appended)
def redact(
    request: Request,
    tenant: str,
    span_id: str,
    body: Reason,
    wait: WaitParam = "sequenced",
    principal: Principal = require(Permission.ADMIN, "write"),
) -> JSONResponse:
    """Delete the span's payload, logging a redaction (custodial signing); proofs stay valid."""
    build = partial(redaction_span, reason=body.reason or "")
    return _edit(request, principal, span_id, wait, build)
