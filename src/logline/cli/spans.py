"""`logline span ...`: write, show and list spans."""

from __future__ import annotations

import json
from enum import StrEnum
from typing import Annotated, Any

import typer

from logline.canonical import loads
from logline.cli.common import (
    AsOption,
    TenantOption,
    WaitFor,
    WaitOption,
    append,
    instance,
    parse_when,
    read_json,
    signing_keys,
    tenant_of,
    write_text,
)
from logline.cli.output import emit_json, err, fields, out, stored_json, table
from logline.errors import InvalidInput, ParseError
from logline.identity.ids import check_kind
from logline.ledger.admission import RESERVED_PREFIXES
from logline.ledger.span import build_body, check_body, sign_body
from logline.store.interface import Query, StoredSpan

app = typer.Typer(help="Write, show and list spans.", no_args_is_help=True)


class Status(StrEnum):
    executed = "executed"
    simulated = "simulated"


class Visibility(StrEnum):
    private = "private"
    organization = "organization"
    public = "public"


JsonFlag = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


def parse_payload(text: str | None, file: str | None) -> Any:
    if text is not None and file is not None:
        raise typer.BadParameter("give --payload or --payload-file, not both")
    if file is not None:
        return read_json(file, "payload file")
    if text is None:
        return None
    try:
        return loads(text)
    except ParseError as exc:
        raise InvalidInput(f"--payload: {exc}") from exc


@app.command("add")
def add(
    ctx: typer.Context,
    author: AsOption,
    kind: Annotated[str, typer.Option("--kind", help="Dotted kind, e.g. payment.approved.")],
    title: Annotated[str, typer.Option("--title", help="One line saying what happened.")],
    payload: Annotated[str | None, typer.Option("--payload", help="JSON payload.")] = None,
    payload_file: Annotated[
        str | None,
        typer.Option("--payload-file", help="File holding the JSON payload (- for stdin)."),
    ] = None,
    tags: Annotated[list[str] | None, typer.Option("--tag", help="Tag (repeatable).")] = None,
    caused_by: Annotated[
        str | None, typer.Option("--caused-by", help="Span id of the cause.")
    ] = None,
    contract_id: Annotated[str | None, typer.Option("--contract-id")] = None,
    workflow_id: Annotated[str | None, typer.Option("--workflow-id")] = None,
    flow_id: Annotated[str | None, typer.Option("--flow-id")] = None,
    status: Annotated[Status, typer.Option("--status")] = Status.executed,
    visibility: Annotated[Visibility, typer.Option("--visibility")] = Visibility.organization,
    wait: WaitOption = WaitFor.checkpointed,
    receipt_out: Annotated[
        str | None,
        typer.Option("--receipt-out", help="Write the receipt JSON here (- for stdout)."),
    ] = None,
    tenant: TenantOption = None,
) -> None:
    """Sign a span with the identity's key from the keystore and append it to the log."""
    check_kind(kind)
    if kind.startswith(RESERVED_PREFIXES):
        raise InvalidInput(
            f"kinds under identity.* and logline.* are reserved, got {kind!r}; "
            "use `logline id ...` or `logline redact`"
        )
    data = parse_payload(payload, payload_file)
    with instance(ctx) as opened:
        limits = opened.log.limits
        body = build_body(tenant=tenant_of(opened, tenant), author=author, kind=kind, title=title,
                          payload=data, status=status.value, tags=tags or (), caused_by=caused_by,
                          contract_id=contract_id, workflow_id=workflow_id, flow_id=flow_id,
                          visibility=visibility.value)  # fmt: skip
        check_body(body, limits)  # a malformed span fails before the passphrase is asked for
        _, (key,) = signing_keys(opened, author)
        span = sign_body(key, body, data, limits)
        receipt = append(opened, span, wait)
    if receipt_out is not None:
        write_text(receipt_out, json.dumps(receipt.to_json(), indent=2) + "\n", "receipt")
    # With the receipt on stdout, the summary moves aside so stdout stays valid JSON.
    fields(
        [
            ("span", span.id),
            ("seq", receipt.seq),
            ("status", span.body["status"]),
            ("receipt", receipt.status),
        ],
        console=err if receipt_out == "-" else out,
    )


@app.command("show")
def show(
    ctx: typer.Context,
    span_id: Annotated[str, typer.Argument(help="Span id (UUIDv7).")],
    as_json: JsonFlag = False,
    tenant: TenantOption = None,
) -> None:
    """Show one span with its log entry."""
    with instance(ctx) as opened:
        stored = opened.log.get(tenant_of(opened, tenant), span_id)
    if as_json:
        emit_json(stored_json(stored))
        return
    body, entry = stored.span.body, stored.entry
    fields([("span", body["id"]), ("seq", stored.seq), ("kind", body["kind"]),
            ("title", body["title"]), ("author", body["author"]),
            ("status", body["status"]), ("ts", body["ts"]), ("received", entry.received),
            ("tags", ", ".join(body["tags"]) or None), ("caused by", body["caused_by"]),
            ("replay of", body["replay_of"]), ("contract", body["contract_id"]),
            ("workflow", body["workflow_id"]), ("flow", body["flow_id"]),
            ("visibility", body["visibility"]), ("key", entry.key),
            ("span hash", stored.span.hash.hex()), ("payload digest", body["payload_digest"]),
            ("reverted by", stored.reverted_by), ("redacted by", stored.redacted_by)])  # fmt: skip
    if stored.payload is not None:
        out.print("payload", style="bold")
        out.print(json.dumps(stored.span.payload, indent=2, ensure_ascii=False), soft_wrap=True)


def _status(stored: StoredSpan, status: str) -> str:
    marks = [status]
    if stored.reverted_by is not None:
        marks.append("reverted")
    if stored.redacted_by is not None:
        marks.append("redacted")
    return ", ".join(marks)


@app.command("list")
def list_(
    ctx: typer.Context,
    kind: Annotated[str | None, typer.Option("--kind", help="Glob, e.g. 'payment.*'.")] = None,
    author: Annotated[str | None, typer.Option("--author")] = None,
    status: Annotated[str | None, typer.Option("--status")] = None,
    tags: Annotated[
        list[str] | None, typer.Option("--tag", help="All must match (repeatable).")
    ] = None,
    since: Annotated[
        str | None, typer.Option("--since", help="7d, 90m, or an ISO date/time.")
    ] = None,
    until: Annotated[
        str | None, typer.Option("--until", help="Exclusive; same forms as --since.")
    ] = None,
    contract_id: Annotated[str | None, typer.Option("--contract-id")] = None,
    workflow_id: Annotated[str | None, typer.Option("--workflow-id")] = None,
    flow_id: Annotated[str | None, typer.Option("--flow-id")] = None,
    caused_by: Annotated[str | None, typer.Option("--caused-by")] = None,
    replay_of: Annotated[str | None, typer.Option("--replay-of")] = None,
    limit: Annotated[int, typer.Option("--limit", help="Spans per page.")] = 50,
    cursor: Annotated[str | None, typer.Option("--cursor", help="From a previous page.")] = None,
    descending: Annotated[bool, typer.Option("--desc", help="Newest first.")] = False,
    as_json: JsonFlag = False,
    tenant: TenantOption = None,
) -> None:
    """List spans matching all the given filters, a page at a time."""
    after = before = None
    if cursor is not None:
        # Imported here: the SQL store pulls in SQLAlchemy, which offline commands never need.
        from logline.store.sql import decode_cursor

        seq, cursor_desc = decode_cursor(cursor)
        if cursor_desc != descending:
            raise InvalidInput(
                "this cursor continues a listing "
                + ("with --desc" if cursor_desc else "without --desc")
            )
        after, before = (None, seq) if descending else (seq, None)
    with instance(ctx) as opened:
        query = Query(
            tenant=tenant_of(opened, tenant), kind=kind, author=author, status=status,
            tags=tuple(tags or ()), since=None if since is None else parse_when(since),
            until=None if until is None else parse_when(until), contract_id=contract_id,
            workflow_id=workflow_id, flow_id=flow_id, caused_by=caused_by, replay_of=replay_of,
            after_seq=after, before_seq=before, descending=descending, limit=limit,
        )  # fmt: skip
        page = opened.store.query(query)
    if as_json:
        emit_json({"items": [stored_json(s) for s in page.items], "next_cursor": page.next_cursor})
        return
    result = table(
        None, ["seq", "span", "ts", "kind", "author", "status", "title"], unbroken=["span"]
    )
    for stored in page.items:
        body = stored.span.body
        result.add_row(str(stored.seq), body["id"], body["ts"][:19], body["kind"], body["author"],
                       _status(stored, body["status"]), body["title"])  # fmt: skip
    out.print(result)
    if page.next_cursor is not None:
        out.print(f"next cursor: {page.next_cursor}", soft_wrap=True)
