"""Rule sets as the SDK sees them: the state and versions, publishing, dry runs and tests.

    state = client.rules_state()                 # RuleState: active_version, versions
    info = client.publish_rules(Path("rules.yaml").read_text())   # RuleSetInfo, now active
    run = client.dry_run({"kind": "payment.approved", "payload": {"amount": 25000}})
    run.outcome, run.decision["reasons"]         # ('hold', [...]): nothing was written
    run = client.dry_run(source=proposal, last=500)
    run.summary["changed"]                       # how many of the last 500 spans would change

A document that does not compile is an `ApiInvalidInput` whose `problem` holds `location`,
`line` and `column`; one whose examples fail, one whose `problem["failures"]` lists them
(type `examples-failed`). The formats are docs/PROTOCOL.md §14; the language docs/RULES.md.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from logline.client.core import Core
from logline.client.models import field, optional
from logline.client.protocol import Operation, Request
from logline.errors import ParseError


@dataclass(frozen=True, slots=True)
class RuleSetInfo:
    """A published version. `source` and `document` (normalized) are filled by `rule_set`."""

    tenant: str
    version: int
    digest: str
    published_at: str
    published_by: str
    span_id: str  # its `rules.published` span
    active: bool
    rules: int
    default: str
    source: str | None = None
    document: dict[str, Any] | None = None

    @classmethod
    def from_json(cls, data: Any) -> RuleSetInfo:
        what = "rule set"
        return cls(
            field(data, "tenant", str, what),
            field(data, "version", int, what),
            field(data, "digest", str, what),
            field(data, "published_at", str, what),
            field(data, "published_by", str, what),
            field(data, "span_id", str, what),
            field(data, "active", bool, what),
            field(data, "rules", int, what),
            field(data, "default", str, what),
            optional(data, "source", str, what),
            optional(data, "document", dict, what),
        )


@dataclass(frozen=True, slots=True)
class RuleState:
    """Which version applies (None: no rule set, every span is allowed) and since when; with
    `rules_state`, every published version too, newest first."""

    tenant: str
    active_version: int | None
    updated_at: str | None
    updated_by: str | None
    span_id: str | None  # the span that made it so
    versions: tuple[RuleSetInfo, ...] = ()

    @classmethod
    def from_json(cls, data: Any) -> RuleState:
        what = "rule state"
        versions = optional(data, "versions", list, what) or []
        return cls(
            field(data, "tenant", str, what),
            optional(data, "active_version", int, what),
            optional(data, "updated_at", str, what),
            optional(data, "updated_by", str, what),
            optional(data, "span_id", str, what),
            tuple(RuleSetInfo.from_json(item) for item in versions),
        )


@dataclass(frozen=True, slots=True)
class RulesTest:
    """A document compiled by the server and its examples checked; `failures` as the server
    reports them (`location`, `line`, `name`, `problems`, `decision`)."""

    ok: bool
    digest: str
    rules: int
    examples: int
    failures: tuple[dict[str, Any], ...]
    document: dict[str, Any]

    @classmethod
    def from_json(cls, data: Any) -> RulesTest:
        what = "rules test"
        failures = field(data, "failures", list, what)
        if not all(isinstance(item, dict) for item in failures):
            raise ParseError("rules test: failures must be objects")
        return cls(
            field(data, "ok", bool, what),
            field(data, "digest", str, what),
            field(data, "rules", int, what),
            field(data, "examples", int, what),
            tuple(failures),
            field(data, "document", dict, what),
        )


@dataclass(frozen=True, slots=True)
class DryRun:
    """A dry run's answer. `mode` `span`: the `decision` about `span` (docs/RULES.md §6.5) by
    `ruleset`, `gated` False when no rule set applied. `mode` `history`: `spans` compared one by
    one (the `active` set's outcome vs the `proposal`'s, `changed`) and their `summary`."""

    mode: str
    decision: dict[str, Any] | None = None
    gated: bool | None = None
    span: dict[str, Any] | None = None
    ruleset: dict[str, Any] | None = None
    active: dict[str, Any] | None = None
    proposal: dict[str, Any] | None = None
    spans: tuple[dict[str, Any], ...] = ()
    summary: dict[str, Any] | None = None

    @property
    def outcome(self) -> str | None:
        """The decision's outcome (span mode)."""
        found = None if self.decision is None else self.decision.get("outcome")
        return found if isinstance(found, str) else None

    @classmethod
    def from_json(cls, data: Any) -> DryRun:
        what = "dry run"
        mode = field(data, "mode", str, what)
        if mode not in ("span", "history"):
            raise ParseError(f"dry run: unknown mode {mode!r}")
        spans = optional(data, "spans", list, what) or []
        if not all(isinstance(item, dict) for item in spans):
            raise ParseError("dry run: spans must be objects")
        if mode == "span":
            field(data, "decision", dict, what)
        return cls(
            mode,
            optional(data, "decision", dict, what),
            optional(data, "gated", bool, what),
            optional(data, "span", dict, what),
            optional(data, "ruleset", dict, what),
            optional(data, "active", dict, what),
            optional(data, "proposal", dict, what),
            tuple(spans),
            optional(data, "summary", dict, what),
        )


class RulesApi(Core):
    """The rule set endpoints of the client's tenant, as operations (`Api` has them all)."""

    def _rules(self, suffix: str = "") -> str:
        return f"/v1/tenants/{self.tenant}/rules{suffix}"

    def rules_state(self) -> Operation[RuleState]:
        """The active version and every published version (without sources)."""
        request = Request("GET", self._rules(), idempotent=True)
        return RuleState.from_json((yield from self.call_json(request)))

    def rule_set(self, version: int) -> Operation[RuleSetInfo]:
        """One version with its source and normalized document."""
        request = Request("GET", self._rules(f"/{int(version)}"), idempotent=True)
        return RuleSetInfo.from_json((yield from self.call_json(request)))

    def publish_rules(self, source: str) -> Operation[RuleSetInfo]:
        """Publish a document (YAML or JSON text) as the next version and make it active (admin).
        Not retried after a lost response: a retry would publish another version."""
        request = Request("POST", self._rules(), json={"source": source})
        return RuleSetInfo.from_json((yield from self.call_json(request)))

    def disable_rules(self) -> Operation[RuleState]:
        """No rule set applies from the next append on (admin); `ApiConflict` if none did."""
        request = Request("POST", self._rules("/disable"))
        return RuleState.from_json((yield from self.call_json(request)))

    def rollback_rules(self, version: int) -> Operation[RuleState]:
        """Make a published version the active one again (admin)."""
        request = Request("POST", self._rules("/rollback"), json={"version": int(version)})
        return RuleState.from_json((yield from self.call_json(request)))

    def dry_run(
        self,
        span: Mapping[str, Any] | None = None,
        *,
        source: str | None = None,
        last: int | None = None,
    ) -> Operation[DryRun]:
        """Decide without writing: `span` (a body's fields, `kind` required) by the active set or
        by `source`; or the proposal `source` against the last `last` committed spans."""
        body: dict[str, Any] = {}
        if span is not None:
            body["span"] = dict(span)
        if source is not None:
            body["source"] = source
        if last is not None:
            body["last"] = last
        request = Request("POST", self._rules("/dry-run"), json=body, idempotent=True)
        return DryRun.from_json((yield from self.call_json(request)))

    def test_rules(self, source: str) -> Operation[RulesTest]:
        """Compile a document on the server (its webhook allow-list) and check its examples."""
        request = Request("POST", self._rules("/test"), json={"source": source}, idempotent=True)
        return RulesTest.from_json((yield from self.call_json(request)))
