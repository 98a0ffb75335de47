"""Dry runs: what a tenant's rules would decide, without writing anything.

    runs = DryRuns(gate)                                   # the log's RulesGate
    runs.span("acme", {"kind": "payment.approved", "payload": {"amount": 25000}},
              author="logline-id://person/ada")            # → the Decision, as the write path
    runs.history("acme", proposal, last=500)               # → active vs proposal, span by span

A span is decided exactly as the write path would decide it now: by the tenant's active set (or a
proposal), with the author's roles in the tenant and window counts over the committed log up to
this moment (the gate's own `StoreCounter`). Spans the instance writes for itself are not gated
on the write path, so they are not decided here either.

`history` replays the tenant's last `last` committed spans (at most `MAX_HISTORY`) through the
active set and through a proposal, each span with the window counts the write path saw when it
was decided: the spans committed before it (entries received earlier) within the window ending
when it was received. Roles are the authors' roles now; the log does not keep past roles.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from logline.errors import InvalidInput, InvalidSpan
from logline.ledger.span import build_body, check_body
from logline.ledger.timefmt import format_ts, now_ts, parse_ts
from logline.rules.context import EvalContext
from logline.rules.decision import Decision
from logline.rules.gate import RulesGate, StoreCounter
from logline.rules.globs import KindGlob
from logline.rules.ruleset import RuleSet
from logline.store.sql import Connection

MAX_HISTORY = 1000
SPAN_FIELDS = (
    "id", "ts", "author", "kind", "title", "status", "payload", "tags", "caused_by", "replay_of",
    "contract_id", "workflow_id", "flow_id", "visibility",
)  # fmt: skip
NOT_GATED = {"outcome": "allow"}  # what the log records for a span no rule set decides


def draft_view(tenant: str, fields: Mapping[str, Any], *, author: str) -> dict[str, Any]:
    """The span rules see for a draft: `fields` (a span body's, `kind` required) over defaults —
    a fresh id, the time now, `author`, the kind as title — checked as a real span's body is.
    Raises `InvalidSpan` naming the field."""
    unknown = sorted(set(fields) - set(SPAN_FIELDS))
    if unknown:
        raise InvalidSpan(f"unknown field(s) {', '.join(unknown)}", field="span")
    kind = fields.get("kind")
    if not isinstance(kind, str):
        raise InvalidSpan("is required", field="span.kind")
    tags = fields.get("tags") or []
    if not isinstance(tags, list | tuple):
        raise InvalidSpan("must be a list of tags", field="span.tags")
    body = build_body(
        tenant=tenant, author=fields.get("author") or author, kind=kind,
        title=fields.get("title") or kind, payload=fields.get("payload"),
        status=fields.get("status") or "executed", tags=list(tags),
        caused_by=fields.get("caused_by"), replay_of=fields.get("replay_of"),
        contract_id=fields.get("contract_id"), workflow_id=fields.get("workflow_id"),
        flow_id=fields.get("flow_id"), visibility=fields.get("visibility") or "organization",
        span_id=fields.get("id"), ts=fields.get("ts"),
    )  # fmt: skip
    check_body(body)
    return {**body, "payload": fields.get("payload")}


class DryRuns:
    """Dry runs through the gate's rule sets, roles and window counts."""

    def __init__(self, gate: RulesGate) -> None:
        self.gate = gate
        self.sets = gate.sets

    def span(
        self,
        tenant: str,
        fields: Mapping[str, Any],
        *,
        author: str,
        proposal: RuleSet | None = None,
    ) -> dict[str, Any]:
        """The decision about a draft span (`draft_view`) by `proposal`, or by the active set.

        Returns `{"span": <the view decided>, "gated": bool, "ruleset": {...} | None,
        "decision": Decision.to_json()}`; with no set to apply, or for a span by the instance,
        the decision is the log's default `{"outcome": "allow"}` and `gated` is false.
        """
        view = draft_view(tenant, fields, author=author)
        received = now_ts()
        with self.sets.store._read() as c:
            ruleset = proposal if proposal is not None else self.sets.active(c, tenant)
            if ruleset is None or view["author"] == self.gate.author:
                return {"span": view, "gated": False, "ruleset": None, "decision": NOT_GATED}
            context = EvalContext(
                roles=self.gate.roles_of(c, tenant, view["author"]),
                counter=StoreCounter(self.gate, c, tenant, received),
            )
            decision = ruleset.evaluate(view, context)
        return {"span": view, "gated": True, "ruleset": _label(ruleset),
                "decision": decision.to_json()}  # fmt: skip

    def history(self, tenant: str, proposal: RuleSet, last: int) -> dict[str, Any]:
        """The active set's and `proposal`'s outcomes for each of the last `last` spans.

        Returns `{"active": {...} | None, "proposal": {...}, "spans": [...], "summary": {...}}`:
        per span its `seq`, `span_id`, `kind`, `author`, the outcome `recorded` in its entry, the
        `active` set's outcome and rules, the `proposed` outcome, rules and reasons, and whether
        it `changed`; the summary counts outcomes both ways and the transitions between them.
        """
        if not 1 <= last <= MAX_HISTORY:
            raise InvalidInput(f"last must be between 1 and {MAX_HISTORY}")
        store = self.sets.store
        spans: list[dict[str, Any]] = []
        skipped = 0
        with store._read() as c:
            active = self.sets.active(c, tenant)
            head = c.one("log_head", {"tenant": tenant})
            size = 0 if head is None else int(head[2])
            log_id = 0 if head is None else int(head[0])
            window = _Window(c, log_id, size)
            roles: dict[str, tuple[str, ...]] = {}
            for stored in store.spans(tenant, max(0, size - last), size):
                span, entry = stored.span, stored.entry
                if span.author == self.gate.author:
                    skipped += 1  # the instance's own records are never gated
                    continue
                if span.author not in roles:
                    roles[span.author] = self.gate.roles_of(c, tenant, span.author)
                context = EvalContext(
                    roles=roles[span.author], counter=window.counter(entry.received)
                )
                was = None if active is None else active.evaluate(span, context)
                now = proposal.evaluate(span, context)
                spans.append(_compared(stored.seq, span.id, span.kind, span.author,
                                       entry.decision, was, now))  # fmt: skip
        return {
            "active": None if active is None else _label(active),
            "proposal": _label(proposal),
            "spans": spans,
            "summary": _summary(spans, skipped),
        }


def _label(ruleset: RuleSet) -> dict[str, Any]:
    return {"version": ruleset.version, "digest": ruleset.digest, "rules": len(ruleset.rules)}


def _compared(
    seq: int,
    span_id: str,
    kind: str,
    author: str,
    recorded: Mapping[str, Any],
    was: Decision | None,
    now: Decision,
) -> dict[str, Any]:
    active = "allow" if was is None else was.outcome
    return {
        "seq": seq,
        "span_id": span_id,
        "kind": kind,
        "author": author,
        "recorded": recorded.get("outcome"),
        "active": active,
        "active_rules": [] if was is None else list(was.matched),
        "proposed": now.outcome,
        "proposed_rules": list(now.matched),
        "proposed_reasons": [r.text for r in now.reasons],
        "changed": active != now.outcome,
    }


def _summary(spans: list[dict[str, Any]], skipped: int) -> dict[str, Any]:
    transitions = Counter(f"{s['active']}->{s['proposed']}" for s in spans if s["changed"])
    return {
        "spans": len(spans),
        "skipped": skipped,
        "changed": sum(transitions.values()),
        "active": dict(Counter(s["active"] for s in spans)),
        "proposed": dict(Counter(s["proposed"] for s in spans)),
        "transitions": dict(transitions),
    }


class _Window:
    """Window counts as of past moments: the entries received before `received` (whose commit
    came earlier) and at or after `received - within`. Floors are found by binary search over
    `received`, which never decreases along the log, and remembered for the run."""

    def __init__(self, c: Connection, log_id: int, size: int) -> None:
        self.c = c
        self.log_id = log_id
        self.size = size
        self._floors: dict[str, int] = {}
        self._kinds: list[str] | None = None

    def counter(self, received: str) -> _PastCounter:
        return _PastCounter(self, received)

    def floor(self, since: str) -> int:
        """The first seq received at or after `since`."""
        found = self._floors.get(since)
        if found is not None:
            return found
        low, high = 0, self.size
        while low < high:
            middle = (low + high) // 2
            row = self.c.one("entry_received_at", {"log_id": self.log_id, "seq": middle})
            if row is not None and str(row[0]) >= since:
                high = middle
            else:
                low = middle + 1
        self._floors[since] = low
        return low

    def kinds(self, glob: KindGlob) -> list[str]:
        if self._kinds is None:
            rows = self.c.all("log_kinds_of", {"log_id": self.log_id})
            self._kinds = [str(row[0]) for row in rows]
        return [kind for kind in self._kinds if glob.matches(kind)]

    def count_from(self, floor: int, kinds: list[str], author: str | None) -> int:
        row = self.c.one(
            "count_recent",
            {"log_id": self.log_id, "floor": floor, "kinds": self.c.listify(kinds),
             "any_author": int(author is None), "author": author or ""},
        )  # fmt: skip
        return 0 if row is None else int(row[0])


class _PastCounter:
    """`WindowCounter` for a span received at `received`: what the gate counted then."""

    def __init__(self, window: _Window, received: str) -> None:
        self.window = window
        self.received = received

    def count(self, kind: KindGlob, author: str | None, within_s: int) -> int:
        kinds = self.window.kinds(kind)
        if not kinds:
            return 0
        since = format_ts(parse_ts(self.received) - timedelta(seconds=within_s))
        start, end = self.window.floor(since), self.window.floor(self.received)
        if start >= end:
            return 0
        return self.window.count_from(start, kinds, author) - self.window.count_from(
            end, kinds, author
        )
