"""`logline job ...` and `logline dead-letters ...`: the jobs API of a server, from a terminal.

    logline job submit report.render --payload '{"month": "2026-10"}' --priority high \\
        --server http://127.0.0.1:8470 --token "$T"
    logline job list --state running
    logline job show 0192...          # the job, its result or error, and every attempt
    logline job cancel 0192... ; logline job retry 0192...
    logline job stats --window 5m --window 1h
    logline dead-letters list ; logline dead-letters requeue --type report.render

Every command takes `--server` (`LOGLINE_SERVER`), `--token` (`LOGLINE_TOKEN`) or `--api-key`
(`LOGLINE_API_KEY`), `--tenant` (`LOGLINE_TENANT`), and `--json` to print the server's JSON.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Annotated, Any

import typer

from logline.canonical import loads
from logline.cli.common import read_bytes
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
from logline.engine.jobs import DEFAULT_QUEUE, PRIORITIES, STATES
from logline.errors import InvalidInput, ParseError
from logline.ledger.timefmt import parse_duration

app = typer.Typer(help="Submit, inspect, cancel and retry jobs.", no_args_is_help=True)
dead_letters_app = typer.Typer(
    help="Jobs that are dead (attempts used up) or failed (not retryable).", no_args_is_help=True
)

JobId = Annotated[str, typer.Argument(help="The job's id.")]
TypeFilter = Annotated[str | None, typer.Option("--type", help="Only jobs of this type.")]
QueueFilter = Annotated[str | None, typer.Option("--queue", help="Only jobs of this queue.")]
LimitOption = Annotated[int, typer.Option("--limit", min=1, max=1000, help="At most this many.")]


def _payload(text: str) -> Any:
    """JSON text, or `@file` (`@-` for stdin)."""
    raw = read_bytes(text[1:], "payload") if text.startswith("@") else text.encode()
    try:
        return loads(raw)
    except ParseError as exc:
        raise ParseError(f"--payload: {exc}") from exc


def _run_at(text: str) -> str:
    """A moment as RFC 3339: a duration from now (`90s`, `10m`) or an ISO 8601 time (UTC unless
    it says otherwise)."""
    text = text.strip()
    if text[-1:] in ("s", "m", "h", "d") and text[:-1].isdigit():
        return (datetime.now(UTC) + parse_duration(text)).isoformat()
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise InvalidInput(
            f"--run-at takes a duration like 10m or an ISO 8601 time, got {text!r}"
        ) from None
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).isoformat()


def _print_job(job: dict[str, Any]) -> None:
    attempts = f"{job['attempts']} of {job['max_attempts']}"
    rows: list[tuple[str, object]] = [
        ("id", job["id"]), ("type", job["type"]), ("tenant", job["tenant"]),
        ("queue", job["queue"]), ("state", job["state"]), ("priority", job["priority"]),
        ("attempts", attempts), ("run at", job["run_at"]), ("node", job.get("node")),
        ("created", job["created_at"]), ("finished", job.get("finished_at")),
    ]  # fmt: skip
    if job.get("cancel_requested") and job["state"] == "running":
        rows.append(("cancel", "requested"))
    if job.get("error"):
        rows.append(("error", job["error"]))
    if job.get("result") is not None:
        rows.append(("result", json.dumps(job["result"], ensure_ascii=False)))
    fields(rows)
    history = job.get("history") or []
    if history:
        grid = table("attempts", ["#", "node", "started", "ended", "outcome", "error"],
                     unbroken=["node", "started", "ended"])  # fmt: skip
        for a in history:
            grid.add_row(str(a["attempt"]), a["node"], a["started_at"], a.get("ended_at") or "-",
                         a.get("outcome") or "running", a.get("error") or "")  # fmt: skip
        out.print(grid)


def _print_jobs(title: str, jobs: list[dict[str, Any]]) -> None:
    if not jobs:
        note(f"no {title}")
        return
    grid = table(title, ["id", "type", "queue", "state", "attempts", "updated", "error"],
                 unbroken=["id", "updated"])  # fmt: skip
    for job in jobs:
        grid.add_row(job["id"], job["type"], job["queue"], job["state"],
                     f"{job['attempts']}/{job['max_attempts']}", job["updated_at"],
                     job.get("error") or "")  # fmt: skip
    out.print(grid)


@app.command("submit")
def submit(
    job_type: Annotated[str, typer.Argument(metavar="TYPE", help="Job type, e.g. report.render.")],
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
    backoff_base_s: Annotated[
        float | None, typer.Option("--backoff-base-s", help="First retry delay.")
    ] = None,
    backoff_cap_s: Annotated[
        float | None, typer.Option("--backoff-cap-s", help="Longest retry delay.")
    ] = None,
    dedupe_key: Annotated[
        str | None, typer.Option("--dedupe-key", help="At most one job per key in the tenant.")
    ] = None,
    run_at: Annotated[
        str | None, typer.Option("--run-at", help="Not before: 10m from now, or an ISO time.")
    ] = None,
    tags: Annotated[list[str] | None, typer.Option("--tag", help="A tag (repeatable).")] = None,
    server: ServerOption = DEFAULT_SERVER,
    token: TokenOption = None,
    api_key: ApiKeyOption = None,
    tenant: TenantOption = "default",
    as_json: JsonOption = False,
) -> None:
    """Queue a job; with a dedupe key already used, shows the earlier job instead."""
    body: dict[str, Any] = {
        "type": job_type, "payload": _payload(payload), "queue": queue, "priority": priority,
        "max_attempts": max_attempts, "timeout_s": timeout_s, "tags": tags or [],
    }  # fmt: skip
    optional = {"backoff_base_s": backoff_base_s, "backoff_cap_s": backoff_cap_s,
                "dedupe_key": dedupe_key, "run_at": run_at and _run_at(run_at)}  # fmt: skip
    body.update({name: value for name, value in optional.items() if value is not None})
    with Remote(server, token=token, api_key=api_key) as remote:
        job = remote.call("POST", f"/v1/tenants/{tenant}/jobs", body)
    if as_json:
        emit_json(job)
        return
    if job.get("deduplicated"):
        note(f"dedupe key {dedupe_key!r} was used before: this is the earlier job")
    _print_job(job)


@app.command("show")
def show(
    job_id: JobId,
    server: ServerOption = DEFAULT_SERVER,
    token: TokenOption = None,
    api_key: ApiKeyOption = None,
    tenant: TenantOption = "default",
    as_json: JsonOption = False,
) -> None:
    """A job with its result or last error and every attempt."""
    with Remote(server, token=token, api_key=api_key) as remote:
        job = remote.call("GET", f"/v1/tenants/{tenant}/jobs/{job_id}")
    if as_json:
        emit_json(job)
    else:
        _print_job(job)


@app.command("list")
def list_jobs(
    states: Annotated[
        list[str] | None, typer.Option("--state", help=f"One of {', '.join(STATES)} (repeatable).")
    ] = None,
    job_type: TypeFilter = None,
    queue: QueueFilter = None,
    limit: LimitOption = 50,
    server: ServerOption = DEFAULT_SERVER,
    token: TokenOption = None,
    api_key: ApiKeyOption = None,
    tenant: TenantOption = "default",
    as_json: JsonOption = False,
) -> None:
    """Jobs, newest first."""
    params: dict[str, Any] = {"limit": limit, "state": states or []}
    params.update({k: v for k, v in (("type", job_type), ("queue", queue)) if v is not None})
    with Remote(server, token=token, api_key=api_key) as remote:
        page = remote.call("GET", f"/v1/tenants/{tenant}/jobs", params=params)
    if as_json:
        emit_json(page)
    else:
        _print_jobs("jobs", page["jobs"])


def _ms(timing: dict[str, Any], key: str) -> str:
    value = timing.get(key)
    return "-" if value is None else f"{value:,.1f}"


@app.command("stats")
def stats(
    windows: Annotated[
        list[str] | None,
        typer.Option("--window", help="1m, 5m, 15m, 1h, 6h or 24h (repeatable; default 5m)."),
    ] = None,
    job_type: TypeFilter = None,
    queue: QueueFilter = None,
    server: ServerOption = DEFAULT_SERVER,
    token: TokenOption = None,
    api_key: ApiKeyOption = None,
    tenant: TenantOption = "default",
    as_json: JsonOption = False,
) -> None:
    """Per type and queue: jobs by state, queue depth, and over each window throughput,
    failure rate and wait and run time percentiles (milliseconds)."""
    params: dict[str, Any] = {"window": windows or ["5m"]}
    params.update({k: v for k, v in (("type", job_type), ("queue", queue)) if v is not None})
    with Remote(server, token=token, api_key=api_key) as remote:
        summary = remote.call("GET", f"/v1/tenants/{tenant}/stats", params=params)
    if as_json:
        emit_json(summary)
        return
    if not summary["groups"]:
        note("no jobs")
        return
    live = table("jobs now", ["type", "queue", "queued", "running", "retrying", "dead letters",
                              "succeeded", "ready", "oldest ready"])  # fmt: skip
    rows = [*summary["groups"], {"type": "all", "queue": "", **summary["total"]}]
    for group in rows:
        states, oldest = group["states"], group["oldest_ready_age_s"]
        live.add_row(group["type"], group["queue"], str(states["queued"]), str(states["running"]),
                     str(states["retrying"]), str(states["dead"] + states["failed"]),
                     str(states["succeeded"]), str(group["queue_depth"]),
                     "-" if oldest is None else f"{oldest:,.1f} s")  # fmt: skip
    out.print(live)
    for name in summary["windows"]:
        grid = table(f"last {name}", ["type", "queue", "succeeded/s", "failure rate",
                                      "wait p50", "wait p99", "run p50", "run p99"])  # fmt: skip
        for group in rows:
            w = group["windows"][name]
            rate = "-" if w["failure_rate"] is None else f"{w['failure_rate']:.1%}"
            grid.add_row(group["type"], group["queue"], f"{w['throughput_per_s']:,.2f}", rate,
                         _ms(w["wait_ms"], "p50"), _ms(w["wait_ms"], "p99"),
                         _ms(w["run_ms"], "p50"), _ms(w["run_ms"], "p99"))  # fmt: skip
        out.print(grid)


def _act(action: str, job_id: str, server: str, token: str | None, api_key: str | None,
         tenant: str, as_json: bool) -> None:  # fmt: skip
    with Remote(server, token=token, api_key=api_key) as remote:
        job = remote.call("POST", f"/v1/tenants/{tenant}/jobs/{job_id}/{action}")
    if as_json:
        emit_json(job)
    else:
        _print_job(job)


@app.command("cancel")
def cancel(
    job_id: JobId,
    server: ServerOption = DEFAULT_SERVER,
    token: TokenOption = None,
    api_key: ApiKeyOption = None,
    tenant: TenantOption = "default",
    as_json: JsonOption = False,
) -> None:
    """Cancel a queued or retrying job; ask a running one's handler to stop."""
    _act("cancel", job_id, server, token, api_key, tenant, as_json)


@app.command("retry")
def retry(
    job_id: JobId,
    server: ServerOption = DEFAULT_SERVER,
    token: TokenOption = None,
    api_key: ApiKeyOption = None,
    tenant: TenantOption = "default",
    as_json: JsonOption = False,
) -> None:
    """Run a retrying job now, or queue a dead or failed one again."""
    _act("retry", job_id, server, token, api_key, tenant, as_json)


@dead_letters_app.command("list")
def list_dead(
    job_type: TypeFilter = None,
    queue: QueueFilter = None,
    limit: LimitOption = 50,
    server: ServerOption = DEFAULT_SERVER,
    token: TokenOption = None,
    api_key: ApiKeyOption = None,
    tenant: TenantOption = "default",
    as_json: JsonOption = False,
) -> None:
    """Dead letters, newest first."""
    params: dict[str, Any] = {"limit": limit}
    params.update({k: v for k, v in (("type", job_type), ("queue", queue)) if v is not None})
    with Remote(server, token=token, api_key=api_key) as remote:
        page = remote.call("GET", f"/v1/tenants/{tenant}/dead-letters", params=params)
    if as_json:
        emit_json(page)
    else:
        _print_jobs("dead letters", page["jobs"])


@dead_letters_app.command("requeue")
def requeue(
    job_type: TypeFilter = None,
    queue: QueueFilter = None,
    ids: Annotated[
        list[str] | None, typer.Option("--id", help="Only this job (repeatable).")
    ] = None,
    server: ServerOption = DEFAULT_SERVER,
    token: TokenOption = None,
    api_key: ApiKeyOption = None,
    tenant: TenantOption = "default",
    as_json: JsonOption = False,
) -> None:
    """Queue again the dead letters matching every filter given (none: all of them)."""
    body: dict[str, Any] = {"ids": ids or []}
    body.update({k: v for k, v in (("type", job_type), ("queue", queue)) if v is not None})
    with Remote(server, token=token, api_key=api_key) as remote:
        page = remote.call("POST", f"/v1/tenants/{tenant}/dead-letters/requeue", body)
    if as_json:
        emit_json(page)
        return
    note(f"requeued {len(page['jobs'])} job(s)")
    _print_jobs("requeued", page["jobs"])
