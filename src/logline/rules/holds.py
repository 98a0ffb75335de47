"""Approvals: spans the rules held (`require_approval`), and the votes that decide them.

    holds = Holds(log, author=instance_identity, key=instance_key)
    holds.list("acme")                                     # pending, newest first
    holds.approve("acme", hold_id, "logline-id://person/bob", ("viewer", "member", "finance"))
    holds.reject("acme", hold_id, "logline-id://person/carol", roles, "not this quarter")
    holds.expire_due()                                     # every second, in every process

The gate (rules/gate.py) keeps a held span in `held_spans`, unlogged, and logs an
`approval.requested` span about it. From there every change is a span the instance signs, with
the hold's id as `flow_id` and `caused_by` the hold's previous span, written in the transaction
that makes the change (under the tenant's log lock, which serializes all of a tenant's votes):

- a vote for: `approval.granted`. Who may vote is the stored requirement's business
  (`ApprovalRequirement.eligible`: one of a group's roles or identities; with separation of
  duties never the span's author), once per identity. When the votes meet the requirement, the
  same transaction logs `approval.approved`, then the held span itself — the author's signed
  span as submitted, its entry's decision the hold's with outcome `allow` and an `approval`
  member naming the hold and the votes — and queues its follow-ups in the outbox.
- a vote against: `approval.rejected`; one is enough, the hold is `rejected`.
- the deadline passing: `approval.expired` (`expire_due`; a vote that comes too late expires
  the hold too, and is refused).
- approved, but the span can no longer be logged (its author's key was rotated, the author was
  claimed, ...): `approval.failed` with the reason, and the hold is `failed`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Collection
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from logline.errors import Conflict, Forbidden, InvalidInput, LogLineError, NotFound, StorageError
from logline.identity.keys import PrivateKey
from logline.ledger.admission import Prepared
from logline.ledger.log import Log
from logline.ledger.span import new_span, parse_span
from logline.ledger.timefmt import format_ts
from logline.rules.approvals import ApprovalRequirement
from logline.rules.decision import Decision
from logline.rules.gate import MAX_DEPTH, entry_decision
from logline.rules.outbox import queue_follow_ups
from logline.store.interface import Tx
from logline.store.sql import Connection, SqlStore, SqlTx

STATES = ("pending", "approved", "rejected", "expired", "failed")
MAX_LIST = 1000
MAX_REASON_CHARS = 2000
log = logging.getLogger("logline.rules.holds")
_COLUMNS = (
    "id", "tenant", "span_id", "author", "kind", "span", "key", "decision", "votes", "state",
    "created_at", "expires_at", "decided_at", "span_ref", "reason",
)  # fmt: skip


def _conn(tx: Tx) -> Connection:
    assert isinstance(tx, SqlTx), "approvals need a SQL store"
    return tx.c


@dataclass(frozen=True, slots=True)
class Hold:
    """A held span and where its approval stands. `votes`: `{by, vote (approve | reject), roles,
    at, span_id}` (and `reason` for a rejection), in the order they were cast."""

    id: str
    tenant: str
    span_id: str
    author: str
    kind: str
    span: dict[str, Any]  # the author's span in wire form, as submitted
    key: str
    decision: dict[str, Any]  # the rules' decision (`Decision.to_json()`): outcome hold
    votes: tuple[dict[str, Any], ...]
    state: str
    created_at: str
    expires_at: str
    decided_at: str | None
    span_ref: str  # the latest approval.* span about it
    reason: str | None

    @classmethod
    def from_row(cls, row: tuple[Any, ...]) -> Hold:
        data = dict(zip(_COLUMNS, row, strict=True))
        return cls(**{
            **data, "span": json.loads(data["span"]), "decision": json.loads(data["decision"]),
            "votes": tuple(json.loads(data["votes"])),
        })  # fmt: skip

    @property
    def requirement(self) -> ApprovalRequirement:
        return ApprovalRequirement.from_json(self.decision["approval"])

    @property
    def approvals(self) -> dict[str, tuple[str, ...]]:
        """The approvers so far, each with the roles they held when voting."""
        return {v["by"]: tuple(v["roles"]) for v in self.votes if v["vote"] == "approve"}

    def to_json(self) -> dict[str, Any]:
        requirement = self.requirement
        approvals = self.approvals
        groups = [
            {**group.to_json(), "approvals": sum(
                1 for who, roles in approvals.items()
                if group.eligible(who, roles, author=self.author)
            )}
            for group in requirement.groups
        ]  # fmt: skip
        return {
            "id": self.id,
            "tenant": self.tenant,
            "state": self.state,
            "span_id": self.span_id,
            "author": self.author,
            "kind": self.kind,
            "title": self.span["body"]["title"],
            "created_at": self.created_at,
            "expires_at": self.expires_at,
            "decided_at": self.decided_at,
            "reason": self.reason,
            "requirement": {"groups": groups, "timeout_s": requirement.timeout_s},
            "reasons": self.decision.get("reasons", []),
            "votes": list(self.votes),
            "record": self.span_ref,
            "span": self.span,
        }


class Holds:
    """Every tenant's held spans, their votes signed by `author` with `key`."""

    def __init__(
        self,
        log: Log,
        *,
        author: str,
        key: PrivateKey,
        max_depth: int = MAX_DEPTH,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        if not isinstance(log.store, SqlStore):
            raise TypeError("approvals need a SQL store")
        self.log = log
        self.store: SqlStore = log.store
        self.author = author
        self.key = key
        self.public_key = str(key.public_key)
        self.max_depth = max_depth
        self.clock = clock

    # --- voting -----------------------------------------------------------------------------------

    def check_voter(self, hold: Hold, voter: str, roles: Collection[str]) -> None:
        """Raise `Forbidden` (saying why) unless `voter`, holding `roles`, may vote on `hold`."""
        if hold.requirement.eligible(voter, roles, author=hold.author):
            return
        groups = hold.requirement.groups
        if voter == hold.author and any(group.separation_of_duties for group in groups):
            raise Forbidden(
                f"{voter} wrote span {hold.span_id} and may not approve or reject it "
                "(separation of duties)"
            )
        who = [name for group in groups for name in (*group.roles, *group.identities)]
        raise Forbidden(
            f"{voter} may not vote on hold {hold.id}: its approvers are "
            f"{', '.join(sorted(set(who)))}, and {voter} holds {', '.join(roles) or 'no role'}"
        )

    def approve(self, tenant: str, hold_id: str, voter: str, roles: Collection[str]) -> Hold:
        """Vote for: once the requirement is met, the span is logged (or, if it can no longer
        be, the hold fails). `Forbidden` for a voter who may not vote, `Conflict` for a second
        vote, a hold already decided or one whose time ran out."""
        attempt = _Attempt()
        try:
            return self._vote(tenant, hold_id, voter, tuple(roles), "approve", None, attempt)
        except StorageError:
            raise
        except LogLineError as exc:
            if not attempt.logging_span:
                raise
            # Logging the held span was refused (by admission): record that instead.
            attempt.failure = str(exc)
            return self._vote(tenant, hold_id, voter, tuple(roles), "approve", None, attempt)

    def reject(
        self, tenant: str, hold_id: str, voter: str, roles: Collection[str], reason: str
    ) -> Hold:
        """Vote against: the hold is rejected, and the span never logged."""
        reason = reason.strip() if isinstance(reason, str) else ""
        if not 1 <= len(reason) <= MAX_REASON_CHARS:
            raise InvalidInput(f"a rejection gives its reason, 1-{MAX_REASON_CHARS} characters")
        return self._vote(tenant, hold_id, voter, tuple(roles), "reject", reason, _Attempt())

    def _vote(
        self,
        tenant: str,
        hold_id: str,
        voter: str,
        roles: tuple[str, ...],
        vote: str,
        reason: str | None,
        attempt: _Attempt,
    ) -> Hold:
        def work(tx: Tx, received: str) -> tuple[list[Prepared], tuple[Hold, bool]]:
            c = _conn(tx)
            hold = _hold(c, tenant, hold_id)
            now = format_ts(self.clock())
            if hold.state != "pending":
                raise Conflict(f"hold {hold_id} is already {hold.state}")
            if hold.expires_at <= now:
                records, expired = self._expire(c, hold, received)
                return records, (expired, True)
            self.check_voter(hold, voter, roles)
            if any(v["by"] == voter for v in hold.votes):
                raise Conflict(f"{voter} has already voted on hold {hold_id}")
            ballot: dict[str, Any] = {"by": voter, "vote": vote, "roles": list(roles), "at": now}
            if reason is not None:
                ballot["reason"] = reason
            votes = [*hold.votes, ballot]
            kind = "approval.granted" if vote == "approve" else "approval.rejected"
            state = "rejected" if vote == "reject" else "pending"
            if vote == "approve" and hold.requirement.is_met(
                {v["by"]: v["roles"] for v in votes if v["vote"] == "approve"}, author=hold.author
            ):
                state = "approved" if attempt.failure is None else "failed"
            title = f"Approval {'granted' if vote == 'approve' else 'rejected'} for {hold.kind}"
            extra = {"by": voter, "roles": list(roles)} | ({"reason": reason} if reason else {})
            record = self._record(hold, kind, title, hold.span_ref, votes, state, **extra)
            ballot["span_id"] = record.span.id
            records, latest = [record], record.span.id
            if state == "approved":
                attempt.logging_span = True  # from here on, a refusal is about the held span
                approved, held = self._log_held(c, hold, votes, record.span.id, received)
                records += [approved, held]
                latest = approved.span.id
            elif state == "failed":
                failed = self._record(
                    hold, "approval.failed", f"Approved {hold.kind} could not be logged",
                    record.span.id, votes, state, reason=attempt.failure,
                )  # fmt: skip
                records.append(failed)
                latest = failed.span.id
            why = reason if state == "rejected" else attempt.failure if state == "failed" else None
            hold = replace(
                hold, votes=tuple(votes), state=state, span_ref=latest, reason=why,
                decided_at=None if state == "pending" else now,
            )  # fmt: skip
            _save(c, hold)
            return records, (hold, False)

        _, (hold, expired) = self.log.transact(tenant, work)
        if expired:
            raise Conflict(f"hold {hold_id} expired at {hold.expires_at}; it takes no more votes")
        assert isinstance(hold, Hold)
        return hold

    def _log_held(
        self, c: Connection, hold: Hold, votes: list[dict[str, Any]], last_vote: str, at: str
    ) -> tuple[Prepared, Prepared]:
        """`approval.approved`, then the held span with its decision (and its follow-ups queued)."""
        approved = self._record(
            hold, "approval.approved", f"{hold.kind} approved", last_vote, votes, "approved"
        )
        decision = Decision.from_json(hold.decision)
        record = entry_decision(replace(decision, outcome="allow"))
        record["approval"] = {
            "hold": hold.id,
            "votes": [{"by": v["by"], "at": v["at"], "span_id": v.get("span_id")} for v in votes
                      if v["vote"] == "approve"],
        }  # fmt: skip
        span = parse_span(hold.span)
        stopped = queue_follow_ups(
            c, hold.tenant, span.id, decision.follow_ups, (), at, self.max_depth
        )
        if stopped:
            record["stopped"] = stopped
        return approved, Prepared(span, hold.key, decision=record)

    # --- expiring ---------------------------------------------------------------------------------

    def expire_due(self, limit: int = 100) -> list[Hold]:
        """Expire pending holds whose time ran out (at most `limit`); the holds expired."""
        now = format_ts(self.clock())
        with self.store._read() as c:
            due = [(str(t), str(i)) for t, i in c.all("due_holds", {"now": now, "limit": limit})]
        out = []
        for tenant, hold_id in due:

            def work(
                tx: Tx, received: str, tenant: str = tenant, hold_id: str = hold_id
            ) -> tuple[list[Prepared], Hold | None]:
                c = _conn(tx)
                hold = _hold(c, tenant, hold_id)
                if hold.state != "pending" or hold.expires_at > format_ts(self.clock()):
                    return [], None  # decided meanwhile
                return self._expire(c, hold, received)

            try:
                _, hold = self.log.transact(tenant, work)
            except LogLineError as exc:  # one hold's trouble must not keep the others waiting
                log.warning("hold %s of %s not expired: %s", hold_id, tenant, exc)
                continue
            if hold is not None:
                out.append(hold)
        return out

    def _expire(self, c: Connection, hold: Hold, at: str) -> tuple[list[Prepared], Hold]:
        votes = list(hold.votes)
        record = self._record(
            hold, "approval.expired", f"Approval expired for {hold.kind}", hold.span_ref, votes,
            "expired", expires_at=hold.expires_at,
        )  # fmt: skip
        hold = replace(hold, state="expired", decided_at=at, span_ref=record.span.id)
        _save(c, hold)
        return [record], hold

    # --- recording --------------------------------------------------------------------------------

    def _record(
        self,
        hold: Hold,
        kind: str,
        title: str,
        cause: str,
        votes: list[dict[str, Any]],
        state: str,
        **details: Any,
    ) -> Prepared:
        payload = {
            "hold": hold.id,
            "span_id": hold.span_id,
            **details,
            "votes": [{k: v[k] for k in ("by", "vote", "roles", "at")} for v in votes],
            "state": state,
        }
        span = new_span(
            self.key,
            tenant=hold.tenant,
            author=self.author,
            kind=kind,
            title=title,
            payload=payload,
            caused_by=cause,
            flow_id=hold.id,
            tags=["approval"],
        )
        return Prepared(span, self.public_key)

    # --- reading ----------------------------------------------------------------------------------

    def get(self, tenant: str, hold_id: str) -> Hold:
        with self.store._read() as c:
            return _hold(c, tenant, hold_id)

    def list(
        self, tenant: str, *, state: str | None = "pending", limit: int = 100, before: str = ""
    ) -> list[Hold]:
        """Holds newest first, of `state` (None: any); `before` is the id of the last hold of the
        previous page."""
        if state is not None and state not in STATES:
            raise InvalidInput(f"state must be one of {', '.join(STATES)}")
        if not 1 <= limit <= MAX_LIST:
            raise InvalidInput(f"limit must be between 1 and {MAX_LIST}")
        params = {"tenant": tenant, "state": state or "", "before": before, "limit": limit}
        with self.store._read() as c:
            return [Hold.from_row(row) for row in c.all("select_holds", params)]


@dataclass
class _Attempt:
    """What an approval learnt on its first try: that it logged the held span (so an error from
    the log is about that span), and then why it could not be."""

    logging_span: bool = False
    failure: str | None = None


def _hold(c: Connection, tenant: str, hold_id: str) -> Hold:
    row = c.one("select_held", {"id": hold_id, "tenant": tenant})
    if row is None:
        raise NotFound(f"no hold {hold_id} in {tenant}")
    return Hold.from_row(row)


def _save(c: Connection, hold: Hold) -> None:
    c.run(
        "update_held",
        {"id": hold.id, "tenant": hold.tenant, "votes": json.dumps(list(hold.votes)),
         "state": hold.state, "decided_at": hold.decided_at, "span_ref": hold.span_ref,
         "reason": hold.reason},
    )  # fmt: skip
