"""`logline approvals ...`: spans a server's rules held for approval, and voting on them.

    logline approvals list                      # pending holds, newest first
    logline approvals list --state all
    logline approvals show 0192...              # the held span, its requirement and the votes
    logline approvals approve 0192...
    logline approvals reject 0192... --reason "not this quarter"

Every command takes `--server` (`LOGLINE_SERVER`), `--token` (`LOGLINE_TOKEN`) or `--api-key`
(`LOGLINE_API_KEY`), `--tenant` (`LOGLINE_TENANT`), and `--json` to print the server's JSON.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from logline.cli.output import emit_json, fields, note, out, table
from logline.cli.remote import (
    DEFAULT_SERVER,
    ApiKeyOption,
    JsonOption,
    Remote,
    ServerOption,
    TenantOption,
    TokenOption,
)
from logline.rules.holds import STATES

app = typer.Typer(
    help="Spans held for approval by the rules: list, show, approve, reject.", no_args_is_help=True
)

HoldId = Annotated[str, typer.Argument(help="The hold's id.")]


def _progress(hold: dict[str, Any]) -> str:
    """`1/2 finance` per group of the requirement."""
    parts = []
    for group in hold["requirement"]["groups"]:
        who = ", ".join([*group["roles"], *group["identities"]])
        parts.append(f"{group['approvals']}/{group['quorum']} {who}")
    return "; ".join(parts)


def _print_hold(hold: dict[str, Any]) -> None:
    reasons = "; ".join(r["text"] for r in hold.get("reasons") or [])
    fields([
        ("hold", hold["id"]), ("state", hold["state"]), ("span", hold["span_id"]),
        ("kind", hold["kind"]), ("title", hold["title"]), ("author", hold["author"]),
        ("why", reasons or None), ("approvals", _progress(hold)),
        ("held", hold["created_at"]), ("expires", hold["expires_at"]),
        ("decided", hold.get("decided_at")), ("reason", hold.get("reason")),
        ("payload", json.dumps(hold["span"].get("payload"), ensure_ascii=False)),
    ])  # fmt: skip
    if hold["votes"]:
        grid = table("votes", ["by", "vote", "at", "reason"], unbroken=["by", "at"])
        for vote in hold["votes"]:
            grid.add_row(vote["by"], vote["vote"], vote["at"], vote.get("reason") or "")
        out.print(grid)


@app.command("list")
def list_holds(
    state: Annotated[
        str, typer.Option("--state", help=f"One of {', '.join(STATES)}, or all.")
    ] = "pending",
    limit: Annotated[int, typer.Option("--limit", min=1, max=1000, help="At most this many.")] = 50,
    server: ServerOption = DEFAULT_SERVER,
    token: TokenOption = None,
    api_key: ApiKeyOption = None,
    tenant: TenantOption = "default",
    as_json: JsonOption = False,
) -> None:
    """Held spans, newest first."""
    with Remote(server, token=token, api_key=api_key) as remote:
        page = remote.call(
            "GET", f"/v1/tenants/{tenant}/approvals", params={"state": state, "limit": limit}
        )
    if as_json:
        emit_json(page)
        return
    if not page["approvals"]:
        note(f"no {'' if state == 'all' else state + ' '}holds")
        return
    grid = table("approvals", ["hold", "state", "kind", "author", "approvals", "expires"],
                 unbroken=["hold", "expires"])  # fmt: skip
    for hold in page["approvals"]:
        grid.add_row(hold["id"], hold["state"], hold["kind"], hold["author"], _progress(hold),
                     hold["expires_at"])  # fmt: skip
    out.print(grid)


@app.command("show")
def show(
    hold_id: HoldId,
    server: ServerOption = DEFAULT_SERVER,
    token: TokenOption = None,
    api_key: ApiKeyOption = None,
    tenant: TenantOption = "default",
    as_json: JsonOption = False,
) -> None:
    """A held span, its approval requirement and the votes so far."""
    with Remote(server, token=token, api_key=api_key) as remote:
        hold = remote.call("GET", f"/v1/tenants/{tenant}/approvals/{hold_id}")
    if as_json:
        emit_json(hold)
    else:
        _print_hold(hold)


@app.command("approve")
def approve(
    hold_id: HoldId,
    server: ServerOption = DEFAULT_SERVER,
    token: TokenOption = None,
    api_key: ApiKeyOption = None,
    tenant: TenantOption = "default",
    as_json: JsonOption = False,
) -> None:
    """Vote for a held span; once enough approvers have, it is logged."""
    with Remote(server, token=token, api_key=api_key) as remote:
        hold = remote.call("POST", f"/v1/tenants/{tenant}/approvals/{hold_id}/approve")
    if as_json:
        emit_json(hold)
        return
    if hold["state"] == "approved":
        note(f"approved: span {hold['span_id']} is logged")
    elif hold["state"] == "failed":
        note(f"approved, but the span could not be logged: {hold.get('reason')}")
    _print_hold(hold)


@app.command("reject")
def reject(
    hold_id: HoldId,
    reason: Annotated[str, typer.Option("--reason", help="Why (recorded on the log).")],
    server: ServerOption = DEFAULT_SERVER,
    token: TokenOption = None,
    api_key: ApiKeyOption = None,
    tenant: TenantOption = "default",
    as_json: JsonOption = False,
) -> None:
    """Vote against a held span: it is rejected and never logged."""
    with Remote(server, token=token, api_key=api_key) as remote:
        hold = remote.call(
            "POST", f"/v1/tenants/{tenant}/approvals/{hold_id}/reject", {"reason": reason}
        )
    if as_json:
        emit_json(hold)
    else:
        _print_hold(hold)
