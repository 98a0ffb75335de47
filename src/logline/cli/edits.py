"""`logline replay | revert | redact`: spans that act on an earlier span.

The spans themselves are built by `ledger.edits`.
"""

from __future__ import annotations

from typing import Annotated

import typer

from logline.cli.common import AsOption, TenantOption, append, instance, signing_keys, tenant_of
from logline.cli.output import fields
from logline.ledger.edits import (
    check_redactable,
    check_replayable,
    check_revertible,
    redaction_span,
    replay_span,
    revert_span,
)
from logline.ledger.span import Span
from logline.store.interface import StoredSpan

SpanArgument = Annotated[str, typer.Argument(help="Id of the original span.")]


def _result(original: StoredSpan, span: Span, seq: int) -> None:
    fields([("span", span.id), ("seq", seq), ("original", original.span.id),
            ("kind", span.kind), ("status", span.body["status"])])  # fmt: skip


def replay(
    ctx: typer.Context, span_id: SpanArgument, author: AsOption, tenant: TenantOption = None
) -> None:
    """Log the span again as a new span that names the original in replay_of."""
    with instance(ctx) as opened:
        original = opened.log.get(tenant_of(opened, tenant), span_id)
        check_replayable(original)
        _, (key,) = signing_keys(opened, author)
        span = replay_span(key, author, original)
        receipt = append(opened, span)
    _result(original, span, receipt.seq)


def revert(
    ctx: typer.Context,
    span_id: SpanArgument,
    author: AsOption,
    reason: Annotated[str | None, typer.Option("--reason", help="Why it is reverted.")] = None,
    tenant: TenantOption = None,
) -> None:
    """Log a revert of the span: same kind, status reverted, caused_by the original."""
    with instance(ctx) as opened:
        original = opened.log.get(tenant_of(opened, tenant), span_id)
        check_revertible(original)
        _, (key,) = signing_keys(opened, author)
        span = revert_span(key, author, original, reason)
        receipt = append(opened, span)
    _result(original, span, receipt.seq)


def redact(
    ctx: typer.Context,
    span_id: SpanArgument,
    author: AsOption,
    reason: Annotated[str, typer.Option("--reason", help="Why the payload is removed.")],
    tenant: TenantOption = None,
) -> None:
    """Delete the span's payload, logging a redaction; its digest and all proofs stay valid."""
    with instance(ctx) as opened:
        original = opened.log.get(tenant_of(opened, tenant), span_id)
        check_redactable(original, reason)
        _, (key,) = signing_keys(opened, author)
        span = redaction_span(key, author, original, reason)
        receipt = append(opened, span)
    _result(original, span, receipt.seq)
