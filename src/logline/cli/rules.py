"""`logline rules ...`: a tenant's rule sets on a server, and rule documents offline.

    logline rules test rules.yaml                   # offline: compile, check the examples
    logline rules publish rules.yaml                # the next version, active at once (admin)
    logline rules list ; logline rules show 3       # the active set's rules; a version's source
    logline rules history                           # versions and every change, newest first
    logline rules rollback 2 ; logline rules disable
    logline rules dry-run --span span.json          # what the active set decides, nothing written
    logline rules dry-run --file proposal.yaml --last 500   # a proposal against recent spans

Remote commands take `--server` (`LOGLINE_SERVER`), `--token` (`LOGLINE_TOKEN`) or `--api-key`
(`LOGLINE_API_KEY`), `--tenant` (`LOGLINE_TENANT`), and `--json` to print the server's JSON.
`rules test` runs offline unless given `--remote`: offline, webhook URLs are not checked against an
allow-list (the server checks them when publishing). A document that does not compile prints one
`error:` line with the location of the problem; failing examples are listed; both exit 1.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, NoReturn

import typer

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
from logline.client.errors import ApiInvalidInput
from logline.errors import InvalidInput
from logline.rules.examples import check_examples
from logline.rules.ruleset import compile_ruleset
from logline.rules.source import load_document
from logline.rules.webhooks import WebhookAllowList

app = typer.Typer(
    help="Rule sets: test, publish, list, show, history, roll back, disable, dry-run.",
    no_args_is_help=True,
)

FileArgument = Annotated[
    str, typer.Argument(metavar="FILE", help="A YAML or JSON rule set (- for stdin).")
]
HISTORY_SPANS = 50


def _text(target: str, what: str) -> str:
    try:
        return read_bytes(target, what).decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidInput(f"{what} {target} is not UTF-8 text") from None


def _url(tenant: str, suffix: str = "") -> str:
    return f"/v1/tenants/{tenant}/rules{suffix}"


def _print_state(state: dict[str, Any]) -> None:
    active = state.get("active_version")
    fields([("tenant", state["tenant"]), ("active", "none" if active is None else active),
            ("changed", state.get("updated_at")), ("by", state.get("updated_by")),
            ("span", state.get("span_id"))])  # fmt: skip


def _print_info(info: dict[str, Any]) -> None:
    fields([("version", info["version"]), ("active", "yes" if info["active"] else "no"),
            ("rules", info["rules"]), ("default", info["default"]), ("digest", info["digest"]),
            ("published", info["published_at"]), ("by", info["published_by"]),
            ("span", info["span_id"])])  # fmt: skip


def print_failures(failures: list[dict[str, Any]]) -> None:
    grid = table("failing examples", ["example", "line", "name", "problems"],
                 unbroken=["example"])  # fmt: skip
    for failure in failures:
        line, problems = failure.get("line"), failure.get("problems") or []
        grid.add_row(str(failure.get("location")), "-" if line is None else str(line),
                     failure.get("name") or "", "\n".join(problems))  # fmt: skip
    out.print(grid)


def _refused(exc: ApiInvalidInput) -> NoReturn:
    """A publish or test the server refused for failing examples: list them, exit 1."""
    failures = exc.problem.get("failures")
    if exc.slug != "examples-failed" or not isinstance(failures, list):
        raise exc
    note(f"error: {len(failures)} example(s) fail; nothing was published")
    print_failures(failures)
    raise typer.Exit(1)


def _kinds(when: dict[str, Any]) -> str:
    kinds = when.get("kind")
    return ", ".join(kinds) if isinstance(kinds, list) else "any"


def _actions(then: list[dict[str, Any]]) -> str:
    return ", ".join(next(iter(action)) for action in then if action)


@app.command("test")
def test(
    file: FileArgument,
    remote: Annotated[
        bool, typer.Option("--remote", help="Check on the server (its webhook allow-list).")
    ] = False,
    server: ServerOption = DEFAULT_SERVER,
    token: TokenOption = None,
    api_key: ApiKeyOption = None,
    tenant: TenantOption = "default",
    as_json: JsonOption = False,
) -> None:
    """Compile a rule set and check its examples; exit 1 if it does not compile or one fails."""
    source = _text(file, "rule set")
    if remote:
        with Remote(server, token=token, api_key=api_key) as client:
            result = client.call("POST", _url(tenant, "/test"), {"source": source})
    else:
        ruleset = compile_ruleset(source, webhooks=WebhookAllowList.unsafe_allow_any())
        failures = check_examples(ruleset)
        result = {"ok": not failures, "digest": ruleset.digest, "rules": len(ruleset.rules),
                  "examples": len(ruleset.all_examples()),
                  "failures": [failure.to_json() for failure in failures]}  # fmt: skip
    if as_json:
        emit_json(result)
    elif result["ok"]:
        note(f"ok: {result['examples']} example(s) of {result['rules']} rule(s) hold "
             f"({result['digest']})")  # fmt: skip
    else:
        note(f"{len(result['failures'])} of {result['examples']} example(s) fail")
        print_failures(result["failures"])
    if not result["ok"]:
        raise typer.Exit(1)


@app.command("publish")
def publish(
    file: FileArgument,
    server: ServerOption = DEFAULT_SERVER,
    token: TokenOption = None,
    api_key: ApiKeyOption = None,
    tenant: TenantOption = "default",
    as_json: JsonOption = False,
) -> None:
    """Publish a rule set as the next version and make it active (admin)."""
    source = _text(file, "rule set")
    with Remote(server, token=token, api_key=api_key) as client:
        try:
            info = client.call("POST", _url(tenant), {"source": source})
        except ApiInvalidInput as exc:
            _refused(exc)
    if as_json:
        emit_json(info)
        return
    note(f"published version {info['version']} of {tenant}'s rules; it applies from now on")
    _print_info(info)


@app.command("list")
def list_rules(
    version: Annotated[
        int | None, typer.Option("--version", min=1, help="A version (default: the active one).")
    ] = None,
    server: ServerOption = DEFAULT_SERVER,
    token: TokenOption = None,
    api_key: ApiKeyOption = None,
    tenant: TenantOption = "default",
    as_json: JsonOption = False,
) -> None:
    """The rules of the active set (or of `--version`), in evaluation order."""
    with Remote(server, token=token, api_key=api_key) as client:
        if version is None:
            version = client.call("GET", _url(tenant))["active_version"]
            if version is None:
                note(f"no rule set is active in {tenant}: every span is allowed")
                return
        info = client.call("GET", _url(tenant, f"/{version}"))
    rules = sorted(info["document"]["rules"], key=lambda r: (r["priority"], r["id"]))
    if as_json:
        emit_json(rules)
        return
    grid = table(f"rules of version {version} (default {info['default']})",
                 ["id", "priority", "enabled", "kinds", "actions", "description"],
                 unbroken=["id"])  # fmt: skip
    for rule in rules:
        grid.add_row(rule["id"], str(rule["priority"]), "yes" if rule["enabled"] else "no",
                     _kinds(rule["when"]), _actions(rule["then"]), rule["description"])  # fmt: skip
    out.print(grid)


@app.command("show")
def show(
    version: Annotated[
        int | None, typer.Argument(min=1, help="The version (default: the active one).")
    ] = None,
    normalized: Annotated[
        bool, typer.Option("--normalized", help="Print the normalized document, not the source.")
    ] = False,
    server: ServerOption = DEFAULT_SERVER,
    token: TokenOption = None,
    api_key: ApiKeyOption = None,
    tenant: TenantOption = "default",
    as_json: JsonOption = False,
) -> None:
    """A version's details and its source as published."""
    with Remote(server, token=token, api_key=api_key) as client:
        if version is None:
            version = client.call("GET", _url(tenant))["active_version"]
            if version is None:
                raise InvalidInput(f"no rule set is active in {tenant}; name a version")
        info = client.call("GET", _url(tenant, f"/{version}"))
    if as_json:
        emit_json(info)
        return
    _print_info(info)
    out.print("")
    text = json.dumps(info["document"], indent=2, ensure_ascii=False) if normalized else None
    out.print(text if text is not None else info["source"].rstrip("\n"), soft_wrap=True)


@app.command("history")
def history(
    server: ServerOption = DEFAULT_SERVER,
    token: TokenOption = None,
    api_key: ApiKeyOption = None,
    tenant: TenantOption = "default",
    as_json: JsonOption = False,
) -> None:
    """Every published version, and the changes (published, disabled, rolled back) as logged."""
    with Remote(server, token=token, api_key=api_key) as client:
        state = client.call("GET", _url(tenant))
        params = {"kind": "rules.*", "order": "desc", "limit": HISTORY_SPANS}
        changes = client.call("GET", f"/v1/tenants/{tenant}/spans", params=params)["items"]
    if as_json:
        emit_json({**state, "changes": changes})
        return
    _print_state(state)
    if not state["versions"]:
        note(f"no rule set was ever published in {tenant}")
        return
    grid = table("versions", ["version", "active", "rules", "default", "published", "by",
                              "digest"], unbroken=["published", "digest"])  # fmt: skip
    for info in state["versions"]:
        grid.add_row(str(info["version"]), "*" if info["active"] else "", str(info["rules"]),
                     info["default"], info["published_at"], info["published_by"],
                     info["digest"])  # fmt: skip
    out.print(grid)
    log = table("changes on the log", ["seq", "kind", "version", "previous", "by", "received"],
                unbroken=["received"])  # fmt: skip
    for item in changes:
        payload = item["span"].get("payload") or {}
        number, previous = payload.get("version"), payload.get("previous")
        log.add_row(str(item["seq"]), item["span"]["body"]["kind"],
                    "-" if number is None else str(number),
                    "-" if previous is None else str(previous),
                    str(payload.get("by", "")), item["entry"]["received"])  # fmt: skip
    out.print(log)


@app.command("rollback")
def rollback(
    version: Annotated[int, typer.Argument(min=1, help="The version to make active again.")],
    server: ServerOption = DEFAULT_SERVER,
    token: TokenOption = None,
    api_key: ApiKeyOption = None,
    tenant: TenantOption = "default",
    as_json: JsonOption = False,
) -> None:
    """Make a published version the active one again (admin)."""
    with Remote(server, token=token, api_key=api_key) as client:
        state = client.call("POST", _url(tenant, "/rollback"), {"version": version})
    if as_json:
        emit_json(state)
        return
    note(f"version {version} is active again in {tenant}")
    _print_state(state)


@app.command("disable")
def disable(
    server: ServerOption = DEFAULT_SERVER,
    token: TokenOption = None,
    api_key: ApiKeyOption = None,
    tenant: TenantOption = "default",
    as_json: JsonOption = False,
) -> None:
    """Stop applying rules (admin): every span is allowed until a publish or a rollback."""
    with Remote(server, token=token, api_key=api_key) as client:
        state = client.call("POST", _url(tenant, "/disable"))
    if as_json:
        emit_json(state)
        return
    note(f"rules are off in {tenant}")
    _print_state(state)


def _print_decision(result: dict[str, Any]) -> None:
    decision, ruleset = result["decision"], result.get("ruleset")
    which = "no rule set (not gated)" if ruleset is None else f"version {ruleset['version']}"
    rows: list[tuple[str, object]] = [("outcome", decision["outcome"]), ("rule set", which)]
    if result.get("gated"):
        reasons = "; ".join(f"{r['rule'] or 'default'}: {r['text']}" for r in decision["reasons"])
        follow_ups = ", ".join(f["type"] for f in decision["follow_ups"])
        rows += [("matched", ", ".join(decision["matched"]) or "-"), ("reasons", reasons or "-"),
                 ("tags", ", ".join(decision["tags"]) or "-"),
                 ("metadata", json.dumps(decision["metadata"], ensure_ascii=False)),
                 ("follow-ups", follow_ups or "-")]  # fmt: skip
        if decision.get("approval"):
            rows.append(("approval", json.dumps(decision["approval"], ensure_ascii=False)))
        for error in decision["errors"]:
            rows.append(("error", f"{error['rule']}: {error['message']}"))
    fields(rows)


def _print_comparison(result: dict[str, Any], everything: bool) -> None:
    summary, active = result["summary"], result["active"]
    note(f"{summary['changed']} of {summary['spans']} span(s) would be decided differently "
         f"than by {'no rule set' if active is None else 'version ' + str(active['version'])}"
         f" ({summary['skipped']} by the instance are never gated)")  # fmt: skip
    shown = [s for s in result["spans"] if everything or s["changed"]]
    if shown:
        grid = table("spans", ["seq", "kind", "author", "active", "proposed", "proposed rules",
                               "reasons"], unbroken=["seq"])  # fmt: skip
        for span in shown:
            grid.add_row(str(span["seq"]), span["kind"], span["author"], span["active"],
                         span["proposed"], ", ".join(span["proposed_rules"]),
                         "; ".join(span["proposed_reasons"]))  # fmt: skip
        out.print(grid)
    if summary["transitions"]:
        moves = table("changes", ["from -> to", "spans"])
        for move, count in sorted(summary["transitions"].items()):
            moves.add_row(move, str(count))
        out.print(moves)


@app.command("dry-run")
def dry_run(
    span: Annotated[
        str | None,
        typer.Option("--span", metavar="FILE", help="A span's fields (JSON or YAML) to decide."),
    ] = None,
    proposal: Annotated[
        str | None,
        typer.Option("--file", metavar="PROPOSAL", help="A rule set to use instead of the active."),
    ] = None,
    last: Annotated[
        int | None,
        typer.Option("--last", min=1, max=1000, help="Compare PROPOSAL on the last N spans."),
    ] = None,
    everything: Annotated[
        bool, typer.Option("--all", help="With --last: list unchanged spans too.")
    ] = False,
    server: ServerOption = DEFAULT_SERVER,
    token: TokenOption = None,
    api_key: ApiKeyOption = None,
    tenant: TenantOption = "default",
    as_json: JsonOption = False,
) -> None:
    """Decide without writing: a span, or a proposal against the last N committed spans."""
    if (span is None) == (last is None):
        raise InvalidInput("give --span FILE, or --file PROPOSAL with --last N")
    if last is not None and proposal is None:
        raise InvalidInput("--last compares a proposal: give it with --file PROPOSAL")
    body: dict[str, Any] = {}
    if span is not None:
        fields_ = load_document(_text(span, "span")).value
        if not isinstance(fields_, dict):
            raise InvalidInput(f"span {span} must hold a mapping of span fields")
        body["span"] = fields_
    if proposal is not None:
        body["source"] = _text(proposal, "rule set")
    if last is not None:
        body["last"] = last
    with Remote(server, token=token, api_key=api_key) as client:
        result = client.call("POST", _url(tenant, "/dry-run"), body)
    if as_json:
        emit_json(result)
    elif result["mode"] == "span":
        _print_decision(result)
    else:
        _print_comparison(result, everything)
