"""A tenant's log: head, checkpoints, inclusion and consistency proofs, entries, bundles."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from typing import IO, Annotated

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse

from logline.canonical import b64encode
from logline.errors import InvalidInput, NotFound
from logline.ledger.bundle import export_bundle
from logline.server.auth import Principal, require, services_of
from logline.server.models import CheckpointOut, EntryRange, LogInfo, ProofOut
from logline.server.roles import Permission
from logline.store.interface import CheckpointRecord

router = APIRouter(prefix="/v1/tenants/{tenant}/log", tags=["log"])
MAX_RANGE = 1000
MAX_INDEX = 2**63 - 1  # what the databases store; larger numbers are a 422, not an overflow
NonNegative = Annotated[int, Query(ge=0, le=MAX_INDEX)]
Size = Annotated[int | None, Query(ge=1, le=MAX_INDEX)]


def _checkpoint(record: CheckpointRecord) -> dict[str, object]:
    return {
        "size": record.size,
        "root": b64encode(record.root),
        "checkpoint": record.note,
        "created_at": record.created_at,
    }


@router.get("", response_model=LogInfo)
def info(
    request: Request, tenant: str, principal: Principal = require(Permission.READ, "read")
) -> LogInfo:
    log = services_of(request).log
    head = log.head(tenant)
    latest = log.store.latest_checkpoint(head.log_id)
    return LogInfo(
        tenant=tenant,
        origin=log.origin(tenant),
        size=head.size,
        key=str(log.verifier()),
        checkpoint=None if latest is None else latest.note,
    )


@router.get("/checkpoint", response_model=CheckpointOut)
def checkpoint(
    request: Request,
    tenant: str,
    size: Size = None,
    principal: Principal = require(Permission.READ, "read"),
) -> JSONResponse:
    """The latest signed checkpoint (publishing one if the log grew), or the one of `size`."""
    log = services_of(request).log
    if size is None:
        return JSONResponse(_checkpoint(log.checkpoint(tenant)))
    record = log.store.checkpoint(log.head(tenant).log_id, size)
    if record is None:
        raise NotFound(f"no checkpoint of size {size} was published for {tenant}")
    return JSONResponse(_checkpoint(record))


@router.post("/checkpoint", response_model=CheckpointOut)
def publish_checkpoint(
    request: Request, tenant: str, principal: Principal = require(Permission.OPERATE, "write")
) -> JSONResponse:
    """Publish a checkpoint of the current size now."""
    return JSONResponse(_checkpoint(services_of(request).log.checkpoint(tenant)))


@router.get("/proofs/inclusion", response_model=ProofOut)
def inclusion(
    request: Request,
    tenant: str,
    seq: NonNegative,
    size: Size = None,
    principal: Principal = require(Permission.READ, "read"),
) -> ProofOut:
    """The inclusion proof of entry `seq` in the tree of `size` (default: the current size)."""
    log = services_of(request).log
    head = log.head(tenant)
    size = head.size if size is None else size
    proof = log.inclusion_proof(tenant, seq, size)
    return ProofOut(
        size=size,
        index=seq,
        proof=[b64encode(h) for h in proof],
        root=b64encode(log.root(head.log_id, size)),
    )


@router.get("/proofs/consistency", response_model=ProofOut)
def consistency(
    request: Request,
    tenant: str,
    size1: Annotated[int, Query(ge=1, le=MAX_INDEX, alias="from")],
    size2: Annotated[int | None, Query(ge=1, le=MAX_INDEX, alias="to")] = None,
    principal: Principal = require(Permission.READ, "read"),
) -> ProofOut:
    """The consistency proof from the tree of size `from` to the tree of size `to`."""
    log = services_of(request).log
    head = log.head(tenant)
    size2 = head.size if size2 is None else size2
    proof = log.consistency_proof(tenant, size1, size2)
    return ProofOut(
        size=size2,
        size1=size1,
        proof=[b64encode(h) for h in proof],
        root=b64encode(log.root(head.log_id, size2)),
    )


@router.get("/entries", response_model=EntryRange)
def entries(
    request: Request,
    tenant: str,
    start: NonNegative,
    end: NonNegative,
    principal: Principal = require(Permission.READ, "read"),
) -> Response:
    """Entries with start <= seq < end (at most 1000), with their spans as logged."""
    if not start < end <= start + MAX_RANGE:
        raise InvalidInput(f"need start < end <= start + {MAX_RANGE}")
    log = services_of(request).log
    size = log.head(tenant).size
    end = min(end, size)
    items = ",".join(s.json_text() for s in log.store.spans(tenant, start, end))
    return Response(
        f'{{"start":{start},"end":{max(start, end)},"items":[{items}]}}',
        media_type="application/json",
    )


@router.get(
    "/bundle",
    response_class=StreamingResponse,
    responses={200: {"content": {"application/x-ndjson": {}}}},
)
def bundle(
    request: Request,
    tenant: str,
    start: NonNegative = 0,
    end: Size = None,
    principal: Principal = require(Permission.READ, "read"),
) -> StreamingResponse:
    """The bundle (docs/PROTOCOL.md §7) of entries [start, end) under the latest checkpoint."""
    log = services_of(request).log
    spool: IO[str] = tempfile.TemporaryFile("w+", encoding="utf-8")
    try:
        export_bundle(log, tenant, spool, start=start, end=end)
    except BaseException:
        spool.close()
        raise
    spool.seek(0)

    def chunks() -> Iterator[str]:
        with spool:
            while chunk := spool.read(64 * 1024):
                yield chunk

    filename = f"{tenant}-{start}-{'head' if end is None else end}.ndjson"
    return StreamingResponse(
        chunks(),
        media_type="application/x-ndjson",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )
