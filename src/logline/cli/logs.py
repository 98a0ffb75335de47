"""`logline log ...`: checkpoints, proofs, whole-log verification and the verifier key."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from logline.canonical import b64encode
from logline.cli.common import TenantOption, instance, tenant_of, write_text
from logline.cli.output import emit, fields, note, progress, short
from logline.errors import NotFound
from logline.instance import Instance
from logline.ledger.merkle import verify_consistency
from logline.ledger.receipt import Receipt
from logline.ledger.verify import verify_store
from logline.store.interface import CheckpointRecord

app = typer.Typer(
    help="Checkpoints, proofs and verification of a tenant's log.", no_args_is_help=True
)
OutOption = Annotated[str, typer.Option("--out", "-o", help="Write the JSON here (- for stdout).")]


@app.command("checkpoint")
def checkpoint(ctx: typer.Context, tenant: TenantOption = None) -> None:
    """Publish a signed checkpoint of the log's current size (if new) and print its note."""
    with instance(ctx) as opened:
        log_tenant = tenant_of(opened, tenant)
        before = opened.store.latest_checkpoint(opened.log.head(log_tenant).log_id)
        record = opened.log.checkpoint(log_tenant)
    fresh = before is None or before.size != record.size
    note(
        f"checkpoint of size {record.size}, root {short(record.root)} "
        f"({'published now' if fresh else 'already published'} at {record.created_at})"
    )
    emit(record.note)


def _checkpoint_at(
    opened: Instance, tenant: str, size: int | None, covering: int
) -> CheckpointRecord:
    """The checkpoint of exactly `size`, or the latest one covering `covering` entries."""
    if size is None:
        return opened.log.checkpoint(tenant, min_size=covering)
    record = opened.store.checkpoint(opened.log.head(tenant).log_id, size)
    if record is None:
        raise NotFound(
            f"no checkpoint of size {size} was published for {tenant}; "
            "`logline log checkpoint` publishes one of the current size"
        )
    return record


def _inclusion(opened: Instance, tenant: str, seq: int, size: int | None) -> dict[str, Any]:
    stored = opened.store.span_at(tenant, seq)
    if stored is None:
        raise NotFound(f"entry {seq} is not in the log of {tenant}")
    record = _checkpoint_at(opened, tenant, size, seq + 1)
    proof = opened.log.inclusion_proof(tenant, seq, record.size)
    receipt = Receipt(opened.log.origin(tenant), stored.entry, record.note, tuple(proof))
    note(
        f"entry {seq} (span {stored.entry.span_id}) is in the tree of size {record.size}: "
        f"{len(proof)} proof hashes"
    )
    return receipt.to_json()


def _consistency(opened: Instance, tenant: str, size1: int, size2: int | None) -> dict[str, Any]:
    if size2 is None:
        size2 = opened.log.checkpoint(tenant).size
    head = opened.log.head(tenant)
    proof = opened.log.consistency_proof(tenant, size1, size2)
    root1, root2 = opened.log.root(head.log_id, size1), opened.log.root(head.log_id, size2)
    verify_consistency(size1, size2, proof, root1, root2)
    result: dict[str, Any] = {"origin": opened.log.origin(tenant), "size1": size1, "size2": size2,
                              "root1": b64encode(root1), "root2": b64encode(root2),
                              "hashes": [b64encode(h) for h in proof]}  # fmt: skip
    # Signed checkpoints at either size let a verifier trust the roots, not just their relation.
    for name, size in (("checkpoint1", size1), ("checkpoint2", size2)):
        record = opened.store.checkpoint(head.log_id, size)
        if record is not None:
            result[name] = record.note
    note(
        f"tree of size {size1} (root {short(root1)}) is a prefix of the tree of size {size2} "
        f"(root {short(root2)}): {len(proof)} proof hashes"
    )
    return result


@app.command("prove")
def prove(
    ctx: typer.Context,
    seq: Annotated[
        int | None, typer.Argument(help="Entry to prove included.", min=0, metavar="SEQ")
    ] = None,
    size: Annotated[
        int | None, typer.Option("--size", help="Prove against the checkpoint of this size.")
    ] = None,
    size1: Annotated[
        int | None, typer.Option("--from", help="Consistency: older tree size.")
    ] = None,
    size2: Annotated[
        int | None, typer.Option("--to", help="Consistency: newer tree size (default: latest).")
    ] = None,
    output: OutOption = "-",
    tenant: TenantOption = None,
) -> None:
    """Inclusion proof of entry SEQ as a receipt, or with --from/--to a consistency proof."""
    if (seq is None) == (size1 is None):
        raise typer.BadParameter("give an entry SEQ, or --from (and optionally --to), not both")
    if seq is not None and size2 is not None:
        raise typer.BadParameter("--to belongs with --from")
    if seq is None and size is not None:
        raise typer.BadParameter("--size belongs with an entry SEQ")
    with instance(ctx) as opened:
        log_tenant = tenant_of(opened, tenant)
        if seq is not None:
            result = _inclusion(opened, log_tenant, seq, size)
        else:
            assert size1 is not None
            result = _consistency(opened, log_tenant, size1, size2)
    write_text(output, json.dumps(result, indent=2, ensure_ascii=False) + "\n", "proof")


@app.command("verify")
def verify(ctx: typer.Context, tenant: TenantOption = None) -> None:
    """Recompute the whole log: every signature, key, payload digest, Merkle node and checkpoint."""
    with instance(ctx) as opened:
        log_tenant = tenant_of(opened, tenant)
        with progress(f"verifying {log_tenant}") as update:
            summary = verify_store(
                opened.store,
                log_tenant,
                opened.log.origin(log_tenant),
                opened.log.verifier(),
                update,
            )
    fields([("log", summary.origin), ("entries", summary.size), ("root", summary.root.hex()),
            ("checkpoints", len(summary.checkpoints)),
            ("identities", len(summary.identities)), ("redacted", summary.redacted),
            ("result", "OK: every entry, node and checkpoint verifies")])  # fmt: skip


@app.command("key")
def key(ctx: typer.Context) -> None:
    """Print the log's verifier key, which checks its checkpoints, receipts and bundles."""
    with instance(ctx) as opened:
        emit(str(opened.log.verifier()))
