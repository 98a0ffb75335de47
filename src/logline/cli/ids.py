"""`logline id ...`: create, list, show, rotate and claim identities."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

import typer

from logline.cli.common import (
    TenantOption,
    append,
    check_author,
    instance,
    open_keystore,
    signing_keys,
    tenant_of,
)
from logline.cli.output import fields, out, table
from logline.errors import Conflict, InvalidInput, NotFound
from logline.identity.documents import claim_span, creation_span, rotation_span
from logline.identity.ids import ID_KINDS, LogLineId
from logline.identity.keys import PrivateKey
from logline.ledger.timefmt import parse_duration

app = typer.Typer(help="Create and manage identities and their keys.", no_args_is_help=True)


@app.command("new")
def new(
    ctx: typer.Context,
    kind: Annotated[str, typer.Argument(help=f"One of {', '.join(ID_KINDS)}.")],
    handle: Annotated[str, typer.Argument(help="Lowercase handle, e.g. alice.")],
    name: Annotated[str | None, typer.Option("--name", help="Display name.")] = None,
    expires: Annotated[
        str | None, typer.Option("--expires", help="Lifetime of a ghost, e.g. 7d (ghosts only).")
    ] = None,
    tenant: TenantOption = None,
) -> None:
    """Generate a key, keep it in the keystore and log the identity document."""
    identity = LogLineId.of(kind, handle)
    if (kind == "ghost") != (expires is not None):
        raise InvalidInput("--expires is required for ghost identities, and only for them")
    expires_at = None if expires is None else datetime.now(UTC) + parse_duration(expires)
    with instance(ctx) as opened:
        ident = str(identity)
        if opened.store.identity(ident) is not None:
            raise Conflict(f"identity {ident} already exists")
        keystore = open_keystore(opened)
        # A key left in the keystore by an earlier attempt whose append failed is reused, so
        # retrying is safe; otherwise the key is stored before the document that makes it count.
        if ident in keystore:
            key = keystore.get(ident)
        else:
            key = PrivateKey.generate()
            keystore.add(ident, key)
        span = creation_span(key, tenant_of(opened, tenant), identity, name, expires_at)
        receipt = append(opened, span)
    fields([("id", ident), ("public key", key.public_key), ("seq", receipt.seq),
            ("span", span.id), ("expires", span.payload["expires_at"])])  # fmt: skip


@app.command("list")
def list_(ctx: typer.Context) -> None:
    """List registered identities; `in keystore` needs the passphrase."""
    with instance(ctx) as opened:
        records = opened.store.identities()
        held: set[str] = set()
        if records and opened.config.keystore_path.exists():
            held = set(open_keystore(opened).identities())
    result = table(
        None,
        ["id", "kind", "status", "key", "tenant", "expires", "in keystore"],
        unbroken=["id"],
    )
    for r in records:
        result.add_row(
            r.id,
            r.kind,
            r.status,
            r.public_key,
            r.tenant,
            r.expires_at or "-",
            "yes" if r.id in held else "no",
        )
    out.print(result)


@app.command("show")
def show(ctx: typer.Context, identity: Annotated[str, typer.Argument(help="LogLine ID.")]) -> None:
    """Show an identity and its key history."""
    with instance(ctx) as opened:
        ident = str(LogLineId.parse(identity))
        record = opened.store.identity(ident)
        if record is None:
            raise NotFound(f"identity {ident} is not registered")
        keys = opened.store.keys(ident)
    fields([("id", record.id), ("kind", record.kind), ("display name", record.display_name),
            ("status", record.status), ("claimed by", record.claimed_by),
            ("tenant", record.tenant), ("created", record.created_at),
            ("created by span", record.span_id), ("expires", record.expires_at),
            ("current key", record.public_key)])  # fmt: skip
    out.print("key history", style="bold")
    history = table(None, ["public key", "valid from", "valid until", "span"])
    for k in keys:
        history.add_row(k.public_key, k.valid_from, k.valid_until or "(current)", k.span_id)
    out.print(history)


@app.command("rotate")
def rotate(
    ctx: typer.Context, identity: Annotated[str, typer.Argument(help="LogLine ID.")]
) -> None:
    """Replace an identity's key: the old key signs the rotation, then the keystore switches."""
    with instance(ctx) as opened:
        record = check_author(opened, identity)
        keystore, (old_key,) = signing_keys(opened, record.id)
        new_key = PrivateKey.generate()
        # In the identity's own log: its verifier follows key history through that log's documents.
        span = rotation_span(old_key, new_key.public_key, record.tenant, record.id)
        receipt = append(opened, span)
        # Only now: until the rotation is logged, the old key is the one the log accepts.
        keystore.replace(record.id, new_key)
    fields([("id", record.id), ("old key", old_key.public_key), ("new key", new_key.public_key),
            ("seq", receipt.seq), ("span", span.id)])  # fmt: skip


@app.command("claim")
def claim(
    ctx: typer.Context,
    ghost: Annotated[str, typer.Argument(help="The ghost's LogLine ID.")],
    claimant: Annotated[str, typer.Option("--as", help="The identity claiming the ghost.")],
) -> None:
    """Claim a ghost: both keys consent, and the ghost signs nothing more."""
    with instance(ctx) as opened:
        record = check_author(opened, ghost)
        if record.kind != "ghost":
            raise InvalidInput(f"{record.id} is not a ghost identity")
        _, (ghost_key, claimant_key) = signing_keys(opened, record.id, claimant)
        claimant_id = str(LogLineId.parse(claimant))
        # Logged where the ghost was created, so that log's verifier sees the ghost end.
        span = claim_span(claimant_key, claimant_id, ghost_key, record.id, record.tenant)
        receipt = append(opened, span)
    fields([("ghost", record.id), ("claimed by", claimant_id), ("seq", receipt.seq),
            ("span", span.id)])  # fmt: skip
