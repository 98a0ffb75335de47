"""Rule sets per tenant: published as numbered versions, one of them active (or none).

    sets = RuleSets(log, author=instance_identity, key=instance_key)
    info = sets.publish("acme", yaml_text, by="logline-id://person/ada")   # version 1, active
    sets.disable("acme", by=...) ; sets.rollback("acme", 1, by=...)
    sets.active(connection, "acme")                                      # the compiled set

Every change is a span on the tenant's log, written by the instance in the transaction that makes
it (`rules.published`, `rules.disabled`, `rules.rolled_back`), so the log says which version was
active when each entry was decided. Publishing compiles the document and checks its examples
first: a set that does not compile, or whose examples fail, is refused and the active set stays.
Compiled sets are cached per (tenant, version); a commit asks the database which version is
active, so every process applies a change from its next commit on.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from logline.canonical import loads
from logline.errors import Conflict, InvalidInput, NotFound
from logline.identity.keys import PrivateKey
from logline.ledger.admission import Prepared
from logline.ledger.log import Log
from logline.ledger.span import new_span
from logline.rules.examples import ExampleFailure, check_examples
from logline.rules.ruleset import RuleSet, compile_ruleset
from logline.rules.webhooks import NO_WEBHOOKS, WebhookAllowList
from logline.store.interface import Tx
from logline.store.sql import Connection, SqlStore, SqlTx

MAX_SOURCE_BYTES = 256 * 1024


@dataclass(frozen=True, slots=True)
class RuleSetInfo:
    tenant: str
    version: int
    digest: str
    published_at: str
    published_by: str
    span_id: str
    source: str
    document: dict[str, Any]

    def to_json(self, *, active: int | None, source: bool = True) -> dict[str, Any]:
        out = {
            "tenant": self.tenant,
            "version": self.version,
            "digest": self.digest,
            "published_at": self.published_at,
            "published_by": self.published_by,
            "span_id": self.span_id,
            "active": self.version == active,
            "rules": len(self.document.get("rules", [])),
            "default": self.document.get("default", "allow"),
        }
        if source:
            out |= {"source": self.source, "document": self.document}
        return out


@dataclass(frozen=True, slots=True)
class RuleState:
    tenant: str
    active_version: int | None  # None: no rule set applies (every span is allowed)
    updated_at: str | None
    updated_by: str | None
    span_id: str | None

    def to_json(self) -> dict[str, Any]:
        return {
            "tenant": self.tenant,
            "active_version": self.active_version,
            "updated_at": self.updated_at,
            "updated_by": self.updated_by,
            "span_id": self.span_id,
        }


class ExamplesFailed(InvalidInput):
    """A rule set whose own examples do not hold is not published."""

    def __init__(self, failures: list[ExampleFailure]) -> None:
        self.failures = failures
        first = failures[0]
        super().__init__(
            f"{len(failures)} example(s) fail; the first, {first.location}: "
            + "; ".join(first.problems)
        )


def _conn(tx: Tx) -> Connection:
    assert isinstance(tx, SqlTx), "rule sets need a SQL store"
    return tx.c


class RuleSets:
    def __init__(
        self,
        log: Log,
        *,
        author: str,
        key: PrivateKey,
        webhooks: WebhookAllowList = NO_WEBHOOKS,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        if not isinstance(log.store, SqlStore):
            raise TypeError("rule sets need a SQL store")
        self.log = log
        self.store: SqlStore = log.store
        self.author = author
        self.key = key
        self.webhooks = webhooks
        self.clock = clock
        self._compiled: dict[tuple[str, int], RuleSet] = {}
        self._lock = threading.Lock()

    # --- compiling --------------------------------------------------------------------------------

    def compile(self, source: str, version: str | None = None) -> RuleSet:
        """The compiled set; `RuleError` (with the location) if it is not a valid document."""
        if len(source.encode()) > MAX_SOURCE_BYTES:
            raise InvalidInput(f"a rule set document is at most {MAX_SOURCE_BYTES} bytes")
        return compile_ruleset(source, webhooks=self.webhooks, version=version)

    def check(self, source: str) -> RuleSet:
        """Compile and check the examples: what publishing requires."""
        ruleset = self.compile(source)
        failures = check_examples(ruleset)
        if failures:
            raise ExamplesFailed(failures)
        return ruleset

    def active(self, c: Connection, tenant: str) -> RuleSet | None:
        """The tenant's active set, compiled (cached), read through `c` (in a transaction)."""
        row = c.one("select_rule_state", {"tenant": tenant})
        if row is None or row[1] is None:
            return None
        version = int(row[1])
        with self._lock:
            cached = self._compiled.get((tenant, version))
        if cached is not None:
            return cached
        found = c.one("select_rule_set", {"tenant": tenant, "version": version})
        if found is None:
            raise NotFound(f"rule set version {version} of {tenant} is missing")
        ruleset = compile_ruleset(str(found[3]), webhooks=self.webhooks, version=str(version))
        with self._lock:
            self._compiled[tenant, version] = ruleset
        return ruleset

    # --- changing ---------------------------------------------------------------------------------

    def _record(self, tenant: str, kind: str, title: str, payload: dict[str, Any]) -> Prepared:
        span = new_span(
            self.key,
            tenant=tenant,
            author=self.author,
            kind=kind,
            title=title,
            payload=payload,
            tags=["rules"],
        )
        return Prepared(span, str(self.key.public_key))

    def publish(self, tenant: str, source: str, by: str) -> RuleSetInfo:
        """Store `source` as the next version and make it active."""
        ruleset = self.check(source)
        document = loads(ruleset.canonical)

        def work(tx: Tx, received: str) -> tuple[list[Prepared], RuleSetInfo]:
            c = _conn(tx)
            latest = c.one("max_rule_version", {"tenant": tenant})
            version = int(latest[0] or 0) + 1 if latest else 1
            previous = _state(c, tenant).active_version
            record = self._record(
                tenant,
                "rules.published",
                f"Rule set version {version} published",
                {"version": version, "digest": ruleset.digest, "rules": len(ruleset.rules),
                 "default": ruleset.default, "previous": previous, "by": by},
            )  # fmt: skip
            info = RuleSetInfo(
                tenant, version, ruleset.digest, received, by, record.span.id, source, document
            )
            c.run(
                "insert_rule_set",
                {"tenant": tenant, "version": version, "source": source,
                 "document": ruleset.canonical.decode(), "digest": ruleset.digest,
                 "published_at": received, "published_by": by, "span_id": record.span.id},
            )  # fmt: skip
            self._activate(c, tenant, version, received, by, record.span.id)
            return [record], info

        _, info = self.log.transact(tenant, work)
        assert isinstance(info, RuleSetInfo)
        return info

    def disable(self, tenant: str, by: str) -> RuleState:
        """No rule set applies from the next commit on (every span is allowed)."""

        def work(tx: Tx, received: str) -> tuple[list[Prepared], RuleState]:
            c = _conn(tx)
            previous = _state(c, tenant).active_version
            if previous is None:
                raise Conflict(f"no rule set is active in {tenant}")
            record = self._record(
                tenant, "rules.disabled", "Rules disabled", {"previous": previous, "by": by}
            )
            self._activate(c, tenant, None, received, by, record.span.id)
            return [record], RuleState(tenant, None, received, by, record.span.id)

        _, state = self.log.transact(tenant, work)
        assert isinstance(state, RuleState)
        return state

    def rollback(self, tenant: str, version: int, by: str) -> RuleState:
        """Make an earlier (or any published) version the active one again."""

        def work(tx: Tx, received: str) -> tuple[list[Prepared], RuleState]:
            c = _conn(tx)
            if c.one("select_rule_set", {"tenant": tenant, "version": version}) is None:
                raise NotFound(f"{tenant} has no rule set version {version}")
            previous = _state(c, tenant).active_version
            if previous == version:
                raise Conflict(f"version {version} is already the active rule set of {tenant}")
            record = self._record(
                tenant,
                "rules.rolled_back",
                f"Rule set version {version} active again",
                {"version": version, "previous": previous, "by": by},
            )
            self._activate(c, tenant, version, received, by, record.span.id)
            return [record], RuleState(tenant, version, received, by, record.span.id)

        _, state = self.log.transact(tenant, work)
        assert isinstance(state, RuleState)
        return state

    def _activate(
        self, c: Connection, tenant: str, version: int | None, at: str, by: str, span_id: str
    ) -> None:
        c.run(
            "upsert_rule_state",
            {"tenant": tenant, "active_version": version, "updated_at": at, "updated_by": by,
             "span_id": span_id},
        )  # fmt: skip

    # --- reading ----------------------------------------------------------------------------------

    def state(self, tenant: str) -> RuleState:
        with self.store._read() as c:
            return _state(c, tenant)

    def get(self, tenant: str, version: int) -> RuleSetInfo:
        with self.store._read() as c:
            row = c.one("select_rule_set", {"tenant": tenant, "version": version})
        if row is None:
            raise NotFound(f"{tenant} has no rule set version {version}")
        return _info(row)

    def history(self, tenant: str) -> list[RuleSetInfo]:
        """Every published version, newest first."""
        with self.store._read() as c:
            return [_info(row) for row in c.all("select_rule_sets", {"tenant": tenant})]


def _state(c: Connection, tenant: str) -> RuleState:
    row = c.one("select_rule_state", {"tenant": tenant})
    if row is None:
        return RuleState(tenant, None, None, None, None)
    return RuleState(
        tenant, None if row[1] is None else int(row[1]), str(row[2]), str(row[3]), str(row[4])
    )


def _info(row: tuple[Any, ...]) -> RuleSetInfo:
    tenant, version, source, document, digest, published_at, published_by, span_id = row
    return RuleSetInfo(
        str(tenant), int(version), str(digest), str(published_at), str(published_by),
        str(span_id), str(source), loads(str(document).encode()),
    )  # fmt: skip
