"""`logline schedule ...`: a server's job schedules, from a terminal.

    logline schedule add nightly-report report.render --cron '0 2 * * *' \\
        --timezone Europe/Berlin --payload '{"month": "current"}'
    logline schedule add heartbeat logline.noop --every 30s
    logline schedule list
    logline schedule pause nightly-report ; logline schedule resume nightly-report
    logline schedule rm heartbeat

A schedule is named by its name or its id. Every command takes `--server` (`LOGLINE_SERVER`),
`--token` (`LOGLINE_TOKEN`) or `--api-key` (`LOGLINE_API_KEY`), `--tenant` (`LOGLINE_TENANT`), and
`--json` to print the server's JSON.
"""

from __future__ import annotations

import json
from typing import Annotated, Any
from urllib.parse import quote

import typer

from logline.cli.jobs import _payload
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
from logline.engine.jobs import DEFAULT_QUEUE, PRIORITIES
from logline.errors import InvalidInput
from logline.ledger.timefmt import parse_duration

app = typer.Typer(help="Submit jobs every period, by cron or interval.", no_args_is_help=True)

Ref = Annotated[str, typer.Argument(metavar="NAME-OR-ID", help="The schedule's name or id.")]


def _when(schedule: dict[str, Any]) -> str:
    if schedule.get("cron") is not None:
        return f"{schedule['cron']} ({schedule['timezone']})"
    return f"every {schedule['interval_s']:g} s"


def _print_schedule(schedule: dict[str, Any]) -> None:
    job = schedule["job"]
    fields([
        ("name", schedule["name"]), ("id", schedule["id"]), ("when", _when(schedule)),
        ("state", "enabled" if schedule["enabled"] else "paused"),
        ("next run", schedule["next_run_at"] if schedule["enabled"] else None),
        ("last run", schedule.get("last_run_at")), ("last job", schedule.get("last_job_id")),
        ("job", f"{job['type']} on {job['queue']}, {job['priority']} priority"),
        ("payload", json.dumps(job.get("payload"), ensure_ascii=False)),
        ("created", f"{schedule['created_at']} by {schedule['created_by']}"),
    ])  # fmt: skip


def _path(tenant: str, ref: str = "") -> str:
    return f"/v1/tenants/{tenant}/schedules" + (f"/{quote(ref, safe='')}" if ref else "")


@app.command("add")
def add(
    name: Annotated[str, typer.Argument(metavar="NAME", help="A name, unique in the tenant.")],
    job_type: Annotated[str, typer.Argument(metavar="TYPE", help="Job type, e.g. report.render.")],
    cron: Annotated[
        str | None, typer.Option("--cron", help="Cron expression, e.g. '*/5 * * * *'.")
    ] = None,
    every: Annotated[
        str | None, typer.Option("--every", help="Interval instead: 30s, 15m, 12h or 7d.")
    ] = None,
    timezone: Annotated[
        str, typer.Option("--timezone", help="IANA time zone the cron fields are read in.")
    ] = "UTC",
    payload: Annotated[
        str, typer.Option("--payload", help="JSON payload, or @file (@- for stdin).")
    ] = "null",
    queue: Annotated[str, typer.Option("--queue", help="Queue.")] = DEFAULT_QUEUE,
    priority: Annotated[
        str, typer.Option("--priority", help=f"One of {', '.join(PRIORITIES)}.")
    ] = "normal",
    max_attempts: Annotated[int, typer.Option("--max-attempts", min=1, max=100)] = 3,
    timeout_s: Annotated[
        float, typer.Option("--timeout-s", help="Seconds an attempt may run.")
    ] = 60.0,
    tags: Annotated[list[str] | None, typer.Option("--tag", help="A tag (repeatable).")] = None,
    paused: Annotated[bool, typer.Option("--paused", help="Create it paused.")] = False,
    server: ServerOption = DEFAULT_SERVER,
    token: TokenOption = None,
    api_key: ApiKeyOption = None,
    tenant: TenantOption = "default",
    as_json: JsonOption = False,
) -> None:
    """Create a schedule that submits a TYPE job every period (--cron or --every)."""
    if (cron is None) == (every is None):
        raise InvalidInput("give --cron or --every (one of them)")
    body: dict[str, Any] = {
        "name": name, "timezone": timezone, "enabled": not paused,
        "job": {"type": job_type, "payload": _payload(payload), "queue": queue,
                "priority": priority, "max_attempts": max_attempts, "timeout_s": timeout_s,
                "tags": tags or []},
    }  # fmt: skip
    if cron is not None:
        body["cron"] = cron
    else:
        body["interval_s"] = parse_duration(str(every)).total_seconds()
    with Remote(server, token=token, api_key=api_key) as remote:
        schedule = remote.call("POST", _path(tenant), body)
    if as_json:
        emit_json(schedule)
    else:
        _print_schedule(schedule)


@app.command("list")
def list_schedules(
    server: ServerOption = DEFAULT_SERVER,
    token: TokenOption = None,
    api_key: ApiKeyOption = None,
    tenant: TenantOption = "default",
    as_json: JsonOption = False,
) -> None:
    """Every schedule of the tenant, by name."""
    schedules: list[dict[str, Any]] = []
    after = ""
    with Remote(server, token=token, api_key=api_key) as remote:
        while True:
            page = remote.call("GET", _path(tenant), params={"limit": 1000, "after": after})
            schedules += page["schedules"]
            if page["next_after"] is None:
                break
            after = page["next_after"]
    if as_json:
        emit_json(schedules)
        return
    if not schedules:
        note("no schedules")
        return
    grid = table("schedules", ["name", "when", "job", "state", "next run", "last run"],
                 unbroken=["name", "next run", "last run"])  # fmt: skip
    for s in schedules:
        state, next_run = ("enabled", s["next_run_at"]) if s["enabled"] else ("paused", "-")
        grid.add_row(s["name"], _when(s), s["job"]["type"], state, next_run,
                     s.get("last_run_at") or "-")  # fmt: skip
    out.print(grid)


@app.command("show")
def show(
    ref: Ref,
    server: ServerOption = DEFAULT_SERVER,
    token: TokenOption = None,
    api_key: ApiKeyOption = None,
    tenant: TenantOption = "default",
    as_json: JsonOption = False,
) -> None:
    """A schedule: its timing, its job, and when it ran last."""
    with Remote(server, token=token, api_key=api_key) as remote:
        schedule = remote.call("GET", _path(tenant, ref))
    if as_json:
        emit_json(schedule)
    else:
        _print_schedule(schedule)


def _switch(ref: str, enabled: bool, server: str, token: str | None, api_key: str | None,
            tenant: str, as_json: bool) -> None:  # fmt: skip
    with Remote(server, token=token, api_key=api_key) as remote:
        schedule = remote.call("PATCH", _path(tenant, ref), {"enabled": enabled})
    if as_json:
        emit_json(schedule)
    else:
        _print_schedule(schedule)


@app.command("pause")
def pause(
    ref: Ref,
    server: ServerOption = DEFAULT_SERVER,
    token: TokenOption = None,
    api_key: ApiKeyOption = None,
    tenant: TenantOption = "default",
    as_json: JsonOption = False,
) -> None:
    """Stop submitting jobs until resumed."""
    _switch(ref, False, server, token, api_key, tenant, as_json)


@app.command("resume")
def resume(
    ref: Ref,
    server: ServerOption = DEFAULT_SERVER,
    token: TokenOption = None,
    api_key: ApiKeyOption = None,
    tenant: TenantOption = "default",
    as_json: JsonOption = False,
) -> None:
    """Submit jobs again, from the next period on (periods while paused are not made up for)."""
    _switch(ref, True, server, token, api_key, tenant, as_json)


@app.command("rm")
def remove(
    ref: Ref,
    server: ServerOption = DEFAULT_SERVER,
    token: TokenOption = None,
    api_key: ApiKeyOption = None,
    tenant: TenantOption = "default",
) -> None:
    """Delete a schedule; the jobs it queued stay."""
    with Remote(server, token=token, api_key=api_key) as remote:
        remote.call("DELETE", _path(tenant, ref))
    note(f"deleted schedule {ref}")
