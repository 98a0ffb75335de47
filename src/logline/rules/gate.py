"""The rules on the write path: the `Gate` (ledger/gate.py) that decides, under the tenant's log
lock, about every span a client appends.

    log.gate = RulesGate(rule_sets, roles_of, author=instance_identity, key=instance_key)

With no active rule set a span is logged as before (`{"outcome": "allow"}`). Otherwise the
tenant's active set is evaluated for each span of the group, with the author's roles and window
counts over the committed log, and:

- any span rejected: the whole group is refused (`RuleRejected`); nothing is written;
- a span held for approval (`require_approval`): it is not logged; the instance logs an
  `approval.requested` span about it instead, the span waits in `held_spans`, and the caller is
  told `HeldForApproval`. Such a span must be appended on its own (a batch is refused);
- otherwise every span is logged with its decision in its entry: `outcome` (`allow` or
  `simulate`), the rule set version and digest, the rules that matched, tags, metadata, notes and
  reasons, and the follow-ups it asked for, written to the outbox in the same transaction.

Spans the instance writes for itself (its records, job transitions) are not gated; the spans its
follow-ups emit are, with the chain of rules that led to them: a follow-up whose rule is already
in its chain (a cycle), or that would make the chain longer than `max_depth`, is not run, and its
trigger's entry records why (`stopped`).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import timedelta
from typing import Any

from logline.errors import Conflict, HeldForApproval, RuleRejected
from logline.identity.ids import uuid7
from logline.identity.keys import PrivateKey
from logline.ledger.admission import Prepared
from logline.ledger.gate import Gated
from logline.ledger.span import new_span
from logline.ledger.timefmt import format_ts, parse_ts
from logline.rules.context import EvalContext
from logline.rules.decision import Decision
from logline.rules.globs import KindGlob
from logline.rules.outbox import queue_follow_ups
from logline.rules.sets import RuleSets
from logline.store.interface import Tx
from logline.store.sql import Connection, SqlTx

MAX_DEPTH = 5
RolesOf = Callable[[Connection, str, str], tuple[str, ...]]  # (connection, tenant, identity)


def _conn(tx: Tx) -> Connection:
    assert isinstance(tx, SqlTx), "the rules gate needs a SQL store"
    return tx.c


class RulesGate:
    def __init__(
        self,
        sets: RuleSets,
        roles_of: RolesOf,
        *,
        author: str,
        key: PrivateKey,
        max_depth: int = MAX_DEPTH,
    ) -> None:
        self.sets = sets
        self.roles_of = roles_of
        self.author = author
        self.key = key
        self.max_depth = max_depth
        self._floors: dict[str, tuple[str, int]] = {}  # tenant → (since, seq): window starts
        self._floors_lock = threading.Lock()
        # Set when follow-ups were queued (cleared by whoever wakes the dispatcher after the
        # commit): a hint, set before the transaction commits.
        self.queued = False

    def decide(
        self, tx: Tx, tenant: str, items: Sequence[Prepared], received: str, chain: tuple[str, ...]
    ) -> Gated:
        if not chain and all(item.span.author == self.author for item in items):
            return Gated(list(items))  # the instance's own records
        c = _conn(tx)
        ruleset = self.sets.active(c, tenant)
        if ruleset is None:
            return Gated(list(items))
        counter = StoreCounter(self, c, tenant, received)
        roles: dict[str, tuple[str, ...]] = {}  # per author, for this group
        decisions = []
        for item in items:
            author = item.span.author
            if author not in roles:
                roles[author] = self.roles_of(c, tenant, author)
            context = EvalContext(roles=roles[author], counter=counter)
            decisions.append(ruleset.evaluate(item.span, context))
        for item, decision in zip(items, decisions, strict=True):
            if decision.outcome == "reject":
                raise RuleRejected(item.span.id, decision.to_json())
        held = [(i, d) for i, d in zip(items, decisions, strict=True) if d.outcome == "hold"]
        if held:
            if len(items) > 1:
                raise Conflict(
                    f"span {held[0][0].span.id} needs approval under the rules of {tenant}; "
                    "append it on its own, not in a batch"
                )
            return self._hold(c, tenant, items[0], decisions[0], received)
        out = []
        for item, decision in zip(items, decisions, strict=True):
            record = entry_decision(decision, chain)
            if decision.outcome == "allow":
                stopped = self._follow_up(c, tenant, item, decision, chain, received)
                if stopped:
                    record["stopped"] = stopped
            out.append(replace(item, decision=record))
        return Gated(out)

    # --- follow-ups -------------------------------------------------------------------------------

    def _follow_up(
        self,
        c: Connection,
        tenant: str,
        item: Prepared,
        decision: Decision,
        chain: tuple[str, ...],
        received: str,
    ) -> list[dict[str, str]]:
        """Queue the decision's follow-ups in the outbox; those that may not run, and why."""
        stopped = queue_follow_ups(
            c, tenant, item.span.id, decision.follow_ups, chain, received, self.max_depth
        )
        if len(stopped) < len(decision.follow_ups):
            self.queued = True
        return stopped

    # --- holds ------------------------------------------------------------------------------------

    def _hold(
        self, c: Connection, tenant: str, item: Prepared, decision: Decision, received: str
    ) -> Gated:
        span = item.span
        previous = c.one("held_span_of", {"tenant": tenant, "span_id": span.id})
        if previous is not None:
            raise Conflict(f"span {span.id} is already held for approval ({previous[1]})")
        assert decision.approval is not None
        requirement = decision.approval.to_json()
        hold_id = uuid7()
        expires_at = format_ts(parse_ts(received) + timedelta(seconds=decision.approval.timeout_s))
        record = new_span(
            self.key,
            tenant=tenant,
            author=self.author,
            kind="approval.requested",
            title=f"Approval requested for {span.kind}",
            payload={"hold": hold_id, "span_id": span.id, "author": span.author,
                     "kind": span.kind, "title": span.body["title"], "requirement": requirement,
                     "expires_at": expires_at, "reasons": [r.to_json() for r in decision.reasons],
                     "ruleset": {"version": decision.ruleset_version,
                                 "digest": decision.ruleset_digest}},
            flow_id=hold_id,
            tags=["approval"],
        )  # fmt: skip
        c.run(
            "insert_held_span",
            {"id": hold_id, "tenant": tenant, "span_id": span.id, "author": span.author,
             "kind": span.kind, "span": json.dumps(span.to_json()), "key": item.key,
             "decision": json.dumps(decision.to_json()), "created_at": received,
             "expires_at": expires_at, "span_ref": record.id},
        )  # fmt: skip
        held = {
            "hold": hold_id,
            "span_id": span.id,
            "state": "pending",
            "expires_at": expires_at,
            "requirement": requirement,
            "reasons": [r.to_json() for r in decision.reasons],
            "record": record.id,
        }
        return Gated([Prepared(record, str(self.key.public_key))], after=HeldForApproval(held))

    # --- window counts ----------------------------------------------------------------------------

    def floor(self, c: Connection, tenant: str, log_id: int, size: int, since: str) -> int:
        """The first seq received at or after `since` (`received` never decreases along the log,
        so a binary search finds it), starting from the last floor found for the tenant."""
        low = 0
        with self._floors_lock:
            cached = self._floors.get(tenant)
        if cached is not None and cached[0] <= since:
            low = min(cached[1], size)
            # Everything before the cached floor came before `since` too: often it still is it.
            row = c.one("entry_received_at", {"log_id": log_id, "seq": low})
            if row is None or str(row[0]) >= since:
                return low
        high = size
        while low < high:
            middle = (low + high) // 2
            row = c.one("entry_received_at", {"log_id": log_id, "seq": middle})
            if row is not None and str(row[0]) >= since:
                high = middle
            else:
                low = middle + 1
        with self._floors_lock:
            self._floors[tenant] = (since, low)
        return low


class StoreCounter:
    """`WindowCounter` over the committed log, inside the deciding transaction."""

    def __init__(self, gate: RulesGate, c: Connection, tenant: str, received: str) -> None:
        self.gate = gate
        self.c = c
        self.tenant = tenant
        self.received = received
        # The committed log does not change while a group is decided: each count is asked once.
        self._counts: dict[tuple[str, str | None, int], int] = {}
        self._head: tuple[int, int, list[str]] | None = None

    def count(self, kind: KindGlob, author: str | None, within_s: int) -> int:
        key = (kind.text, author, within_s)
        if key not in self._counts:
            self._counts[key] = self._count(kind, author, within_s)
        return self._counts[key]

    def _count(self, kind: KindGlob, author: str | None, within_s: int) -> int:
        if self._head is None:
            head = self.c.one("lock_log", {"tenant": self.tenant})
            if head is None:
                return 0
            log_id = int(head[0])
            known = [str(row[0]) for row in self.c.all("log_kinds_of", {"log_id": log_id})]
            self._head = (log_id, int(head[2]), known)
        log_id, size, known = self._head
        kinds = [name for name in known if kind.matches(name)]
        if not kinds:
            return 0
        since = format_ts(parse_ts(self.received) - timedelta(seconds=within_s))
        floor = self.gate.floor(self.c, self.tenant, log_id, size, since)
        row = self.c.one(
            "count_recent",
            {"log_id": log_id, "floor": floor, "kinds": self.c.listify(kinds),
             "any_author": int(author is None), "author": author or ""},
        )  # fmt: skip
        return 0 if row is None else int(row[0])


def entry_decision(decision: Decision, chain: tuple[str, ...] = ()) -> dict[str, Any]:
    """What a logged span's entry records of its decision (docs/PROTOCOL.md §3, §14): the
    outcome, the rule set, and only the members that say something."""
    out: dict[str, Any] = {
        "outcome": decision.outcome,
        "ruleset": {"version": decision.ruleset_version, "digest": decision.ruleset_digest},
    }
    members: dict[str, Any] = {
        "rules": list(decision.matched),
        "reasons": [r.to_json() for r in decision.reasons],
        "tags": list(decision.tags),
        "metadata": dict(decision.metadata),
        "notes": [n.to_json() for n in decision.notes],
        "errors": [e.to_json() for e in decision.errors],
        "follow_ups": [f.to_json() for f in decision.follow_ups],
        "chain": list(chain),
    }
    out.update({name: value for name, value in members.items() if value})
    return out
