"""`logline export | import | verify | verify-receipt`: bundles and receipts, offline."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from logline.cli.common import (
    TenantOption,
    input_lines,
    instance,
    output_file,
    read_json,
    tenant_of,
)
from logline.cli.output import fields, note, progress, short
from logline.ledger.bundle import export_bundle, import_bundle, verify_bundle
from logline.ledger.checkpoint import NoteVerifier
from logline.ledger.receipt import Receipt, verify_receipt
from logline.ledger.span import parse_span
from logline.ledger.verify import Summary

KeyOption = Annotated[
    str | None,
    typer.Option("--key", help="Trusted log verifier key (`logline log key` prints it)."),
]


def _summary(summary: Summary, log_key: str) -> None:
    fields([("log", summary.origin), ("entries", f"{summary.start}..{summary.size - 1}"),
            ("tree size", max(summary.checkpoints, default=summary.size)),
            ("root", summary.root.hex()), ("identities", len(summary.identities)),
            ("redacted", summary.redacted), ("log key", log_key)])  # fmt: skip


def export(
    ctx: typer.Context,
    file: Annotated[str, typer.Argument(help="Bundle file to write (- for stdout).")],
    start: Annotated[int, typer.Option("--from", help="First entry.", min=0)] = 0,
    end: Annotated[
        int | None, typer.Option("--to", help="End entry, exclusive (default: all).")
    ] = None,
    tenant: TenantOption = None,
) -> None:
    """Export a tenant's log (or a range) as an NDJSON bundle that verifies offline."""
    with instance(ctx) as opened:
        log_tenant = tenant_of(opened, tenant)
        with output_file(file, "bundle") as out, progress("exporting") as update:
            written = export_bundle(
                opened.log, log_tenant, out, start=start, end=end, progress=update
            )
        key = str(opened.log.verifier())
    note(
        f"exported entries {start}..{start + written - 1} of {opened.log.origin(log_tenant)} "
        f"to {file}; verify with: logline verify {file} --key {key}"
    )


def import_(
    ctx: typer.Context,
    file: Annotated[str, typer.Argument(help="Bundle file (- for stdin).")],
    key: KeyOption = None,
) -> None:
    """Verify a bundle completely, then store its entries as a replica of its log."""
    trusted = None if key is None else NoteVerifier.parse(key)
    with instance(ctx) as opened, input_lines(file, "bundle") as lines:
        with progress("importing") as update:
            summary = import_bundle(opened.log, lines, trusted_key=trusted, progress=update)
    _summary(summary, key or "(from the bundle)")
    note(f"imported into tenant {summary.origin.rpartition('/')[2]}")


def verify(
    bundle: Annotated[str, typer.Argument(help="Bundle file (- for stdin).")],
    key: KeyOption = None,
) -> None:
    """Verify a bundle offline: no data directory or database is used."""
    trusted = None if key is None else NoteVerifier.parse(key)
    with input_lines(bundle, "bundle") as lines, progress("verifying") as update:
        summary = verify_bundle(lines, trusted_key=trusted, progress=update)
    _summary(summary, key or "(from the bundle)")
    if key is None:
        note(
            "note: checked against the log key the bundle itself names; pass --key to pin the "
            "key you trust"
        )


def _span_json(data: Any) -> Any:
    """A span in wire form, or the object `span show --json` / a bundle entry line wraps it in."""
    if isinstance(data, dict) and "span" in data and "body" not in data:
        return data["span"]
    return data


def verify_receipt_command(
    receipt_file: Annotated[str, typer.Argument(help="Receipt JSON file (- for stdin).")],
    key: Annotated[str, typer.Option("--key", help="The log's verifier key.")],
    span_file: Annotated[
        str | None, typer.Option("--span", help="Also check this span JSON is the one logged.")
    ] = None,
) -> None:
    """Verify a receipt offline: the checkpoint signature and the inclusion proof."""
    verifier = NoteVerifier.parse(key)
    receipt = Receipt.from_json(read_json(receipt_file, "receipt"))
    span = None if span_file is None else parse_span(_span_json(read_json(span_file, "span")))
    checkpoint = verify_receipt(receipt, verifier, span)
    rows: list[tuple[str, object]] = [
        ("log", receipt.origin), ("entry", receipt.seq), ("span", receipt.entry.span_id),
        ("checkpoint", f"size {checkpoint.size}, root {short(checkpoint.root)}"),
    ]  # fmt: skip
    if span is not None:
        rows.append(("span check", "the span's hash and signature match the entry"))
    rows.append(("result", "OK: signed by the log and included in its tree"))
    fields(rows)
