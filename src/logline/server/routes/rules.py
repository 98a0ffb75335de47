"""Rule sets: the state and versions, publish, disable, roll back, dry runs and tests
(docs/PROTOCOL.md §14, the language in docs/RULES.md).

Who may: readers see the state, the versions and their sources; members dry-run spans and
proposals and test documents (nothing is written); admins publish, disable and roll back, each a
span on the tenant's log. A document that does not compile is refused with the `location`,
`line` and `column` of the problem (`invalid-rules`); one whose examples fail, with the failures
(`examples-failed`); the active set stays as it was.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from logline.errors import InvalidInput, LogLineError
from logline.rules.dryrun import MAX_HISTORY, DryRuns
from logline.rules.examples import check_examples
from logline.rules.gate import RulesGate
from logline.rules.sets import MAX_SOURCE_BYTES, RuleSets
from logline.server.auth import Principal, require, services_of
from logline.server.models import JsonValue
from logline.server.roles import Permission

router = APIRouter(prefix="/v1/tenants/{tenant}/rules", tags=["rules"])

MAX_VERSION = 2**31 - 1
Version = Annotated[int, Field(ge=1, le=MAX_VERSION)]
Source = Annotated[
    str,
    Field(
        min_length=1,
        max_length=MAX_SOURCE_BYTES,
        description="A rule set document, YAML or JSON text (docs/RULES.md).",
        examples=["rules:\n  - id: no-tests\n    when: {kind: test.*}\n    then: [{reject: no}]\n"],
    ),
]


class SourceIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    source: Source


class RollbackIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    version: Version


class DraftSpan(BaseModel):
    """A span to decide, as a body's fields: `kind` is required; `author` defaults to the
    caller, `id` to a fresh one, `ts` to now, `title` to the kind."""

    model_config = ConfigDict(extra="forbid")

    kind: str
    title: str | None = None
    author: str | None = None
    payload: JsonValue = None
    tags: list[str] = Field(default_factory=list, max_length=256)
    status: Literal["executed", "simulated", "ghost"] = "executed"
    visibility: Literal["private", "organization", "public"] = "organization"
    caused_by: str | None = None
    replay_of: str | None = None
    contract_id: str | None = None
    workflow_id: str | None = None
    flow_id: str | None = None
    id: str | None = None
    ts: str | None = None


class DryRunIn(BaseModel):
    """Either `span` (decided by `source` if given, else by the active set), or `source` and
    `last` (the proposal against the tenant's last `last` committed spans)."""

    model_config = ConfigDict(extra="forbid")

    span: DraftSpan | None = None
    source: Source | None = None
    last: int | None = Field(None, ge=1, le=MAX_HISTORY)


class RuleSetOut(BaseModel):
    """A published version; `source` (as published) and `document` (normalized, the one its
    `digest` hashes) only when one version is asked for."""

    tenant: str
    version: int
    digest: str
    published_at: str
    published_by: str
    span_id: str
    active: bool
    rules: int
    default: str
    source: str | None = None
    document: dict[str, JsonValue] | None = None


class RuleStateOut(BaseModel):
    """Which version applies (none: rules are off), and the span that made it so."""

    tenant: str
    active_version: int | None
    updated_at: str | None
    updated_by: str | None
    span_id: str | None


class RulesOut(RuleStateOut):
    versions: list[RuleSetOut]  # newest first, without sources


class DryRunOut(BaseModel):
    """`mode` `span`: the `decision` about `span` (docs/RULES.md §6.5), `gated` false when no
    rule set applies. `mode` `history`: `spans` compared one by one and their `summary`."""

    mode: Literal["span", "history"]
    ruleset: dict[str, JsonValue] | None = None
    gated: bool | None = None
    span: dict[str, JsonValue] | None = None
    decision: dict[str, JsonValue] | None = None
    active: dict[str, JsonValue] | None = None
    proposal: dict[str, JsonValue] | None = None
    spans: list[dict[str, JsonValue]] | None = None
    summary: dict[str, JsonValue] | None = None


class TestOut(BaseModel):
    """`ok` when every example holds; `failures` lists each failing example with all its
    mismatches."""

    ok: bool
    digest: str
    rules: int
    examples: int
    failures: list[dict[str, JsonValue]]
    document: dict[str, JsonValue]


def _sets(request: Request) -> RuleSets:
    return services_of(request).rules


def _dry_runs(request: Request) -> DryRuns:
    gate = services_of(request).log.gate
    if not isinstance(gate, RulesGate):
        raise LogLineError("the rules gate is not installed")
    return DryRuns(gate)


def _state(request: Request, tenant: str) -> dict[str, Any]:
    services = services_of(request)
    services.require_tenant(tenant)
    return services.rules.state(tenant).to_json()


@router.get("", response_model=RulesOut)
def rules_state(
    request: Request,
    tenant: str,
    principal: Principal = require(Permission.READ, "read"),
) -> JSONResponse:
    """The active version and every published version, newest first (without sources)."""
    current = _state(request, tenant)
    versions = _sets(request).history(tenant)
    active = current["active_version"]
    listed = [info.to_json(active=active, source=False) for info in versions]
    return JSONResponse({**current, "versions": listed})


@router.get("/{version:int}", response_model=RuleSetOut)
def rule_set(
    request: Request,
    tenant: str,
    version: Annotated[int, Path(ge=1, le=MAX_VERSION)],
    principal: Principal = require(Permission.READ, "read"),
) -> JSONResponse:
    """One version with its source and normalized document."""
    sets = _sets(request)
    info = sets.get(tenant, version)
    return JSONResponse(info.to_json(active=sets.state(tenant).active_version))


@router.post("", status_code=201, response_model=RuleSetOut)
def publish(
    request: Request,
    tenant: str,
    body: SourceIn,
    principal: Principal = require(Permission.ADMIN, "write"),
) -> JSONResponse:
    """Publish a document as the next version and make it active (a `rules.published` span).
    Refused, with nothing changed, if it does not compile or its examples fail."""
    services_of(request).require_tenant(tenant)
    info = _sets(request).publish(tenant, body.source, principal.identity)
    return JSONResponse(info.to_json(active=info.version, source=False), 201)


@router.post("/disable", response_model=RuleStateOut)
def disable(
    request: Request,
    tenant: str,
    principal: Principal = require(Permission.ADMIN, "write"),
) -> JSONResponse:
    """No rule set applies from the next append on (a `rules.disabled` span); 409 if none did."""
    services_of(request).require_tenant(tenant)
    return JSONResponse(_sets(request).disable(tenant, principal.identity).to_json())


@router.post("/rollback", response_model=RuleStateOut)
def rollback(
    request: Request,
    tenant: str,
    body: RollbackIn,
    principal: Principal = require(Permission.ADMIN, "write"),
) -> JSONResponse:
    """Make a published version the active one again (a `rules.rolled_back` span)."""
    services_of(request).require_tenant(tenant)
    changed = _sets(request).rollback(tenant, body.version, principal.identity)
    return JSONResponse(changed.to_json())


@router.post("/dry-run", response_model=DryRunOut)
def dry_run(
    request: Request,
    tenant: str,
    body: DryRunIn,
    principal: Principal = require(Permission.WRITE, "write"),
) -> JSONResponse:
    """Decide without writing: a span (by the active set, or by `source`), or a proposal
    against the last `last` committed spans compared with the active set."""
    if (body.span is None) == (body.last is None):
        raise InvalidInput("give either `span`, or `source` and `last`")
    services_of(request).require_tenant(tenant)
    runs = _dry_runs(request)
    proposal = None
    if body.source is not None:
        proposal = _sets(request).compile(body.source, version="proposal")
    if body.span is not None:
        fields = body.span.model_dump(exclude_none=True)
        result = runs.span(tenant, fields, author=principal.identity, proposal=proposal)
        return JSONResponse({"mode": "span", **result})
    if proposal is None:
        raise InvalidInput("`last` compares a proposal: give its `source` too")
    assert body.last is not None
    return JSONResponse({"mode": "history", **runs.history(tenant, proposal, body.last)})


@router.post("/test", response_model=TestOut)
def check(
    request: Request,
    tenant: str,
    body: SourceIn,
    principal: Principal = require(Permission.WRITE, "write"),
) -> JSONResponse:
    """Compile a document with this instance's webhook allow-list and check its examples;
    nothing is written. A document that does not compile is a 400 problem."""
    ruleset = _sets(request).compile(body.source)
    failures = check_examples(ruleset)
    return JSONResponse(
        {
            "ok": not failures,
            "digest": ruleset.digest,
            "rules": len(ruleset.rules),
            "examples": len(ruleset.all_examples()),
            "failures": [failure.to_json() for failure in failures],
            "document": ruleset.to_json(),
        }
    )
