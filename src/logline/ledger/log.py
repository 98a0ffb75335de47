"""The write path and the proofs of per-tenant logs.

    log = Log(store, instance="logline.example", key=instance_key)
    receipt = log.append(span, wait="checkpointed")
    log.consistency_proof("acme", 10, 20)

Appending: validate and verify the signature in the caller's thread (Ed25519 verification releases
the GIL, so callers verify in parallel), then hand the spans to the *group commit*: whichever caller
holds the commit lock drains every pending group into one transaction, which locks each tenant's
log row, admits the spans (`admission`), assigns `seq`, builds entries and Merkle nodes, and
commits. That acknowledgement is *sequenced*. A caller asking for *checkpointed* then makes sure a
signed checkpoint covers its entries (one checkpoint serves every caller waiting at that moment) and
gets an inclusion proof. Each call is atomic: all its spans are logged, or none.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from logline.errors import (
    InvalidSpan,
    LogLineError,
    NotFound,
    SignatureError,
    StorageError,
    UnknownAuthor,
    VerificationError,
)
from logline.identity import documents
from logline.identity.ids import check_tenant
from logline.identity.keys import PrivateKey, PublicKey
from logline.ledger import merkle
from logline.ledger.admission import Admission, Prepared, signing_key_hint
from logline.ledger.checkpoint import Checkpoint, NoteSigner, NoteVerifier, sign_checkpoint
from logline.ledger.entry import DEFAULT_DECISION, Entry
from logline.ledger.gate import Gate
from logline.ledger.receipt import Receipt
from logline.ledger.span import DEFAULT_LIMITS, Limits, Span
from logline.ledger.timefmt import format_ts, parse_ts
from logline.store.interface import CheckpointRecord, LogHead, NewEntry, Store, StoredSpan, Tx

Wait = Literal["sequenced", "checkpointed"]
# Work done inside the sequencing transaction, under the tenant's log lock: given the transaction
# and the entries' `received` time, it changes what it owns and returns the spans that record it
# (already signed, each with the key that must verify it) and a value for the caller.
Work = Callable[[Tx, str], tuple[list[Prepared], Any]]
MAX_GROUP_SPANS = 5000
VERIFY_THREADS = 2
PARALLEL_VERIFY_MIN = 16
KEY_CACHE_SIZE = 100_000


def _verify_all(items: Sequence[Prepared]) -> None:
    for item in items:
        item.span.verify(PublicKey.parse(item.key))


@dataclass
class _Group:
    tenant: str
    items: list[Prepared]
    work: Work | None = None
    value: Any = None
    done: bool = False
    committed: bool = False
    entries: list[Entry] = field(default_factory=list)
    error: LogLineError | None = None
    gated: bool = True  # decided by the log's gate, if it has one
    chain: tuple[str, ...] = ()  # see `Gate.decide`
    after: LogLineError | None = None  # raised to the caller once the group is committed


class Log:
    """All tenants' logs of one instance, over one store. Thread-safe."""

    def __init__(
        self,
        store: Store,
        instance: str,
        key: PrivateKey,
        *,
        limits: Limits = DEFAULT_LIMITS,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.store = store
        self.instance = instance
        self.signer = NoteSigner(instance, key)
        self.limits = limits
        self.clock = clock
        self._pending: list[_Group] = []
        self._pending_lock = threading.Lock()
        self._commit_lock = threading.Lock()
        self._checkpoint_locks: dict[str, threading.Lock] = {}
        self._known_keys: dict[str, str] = {}
        self._heads: dict[str, LogHead] = {}
        self._pool = ThreadPoolExecutor(VERIFY_THREADS, thread_name_prefix="logline-verify")
        # Called as listener(tenant, new_size) after every commit that grew a log (the live
        # stream's wake-up); must be quick and must not raise.
        self.listeners: list[Callable[[str, int], None]] = []
        self.gate: Gate | None = None

    def close(self) -> None:
        self._pool.shutdown()

    def origin(self, tenant: str) -> str:
        return f"{self.instance}/{tenant}"

    def verifier(self) -> NoteVerifier:
        return self.signer.verifier()

    # --- appending ------------------------------------------------------------------------------

    def append(self, span: Span, *, wait: Wait = "checkpointed") -> Receipt:
        return self.append_batch([span], wait=wait)[0]

    def append_batch(
        self, spans: Sequence[Span], *, wait: Wait = "checkpointed", check_skew: bool = True
    ) -> list[Receipt]:
        """Log `spans` (all of one tenant) atomically, in order; raise on the first bad span."""
        if not spans:
            return []
        tenant = spans[0].tenant
        check_tenant(tenant)
        for i, span in enumerate(spans):
            if span.tenant != tenant:
                raise InvalidSpan(
                    f"span {i} is for tenant {span.tenant}, the batch for {tenant}",
                    field="body.tenant",
                )
        now = self.clock()
        if check_skew:
            for span in spans:
                self.check_skew(span, now)
        prepared = self._prepare(spans)
        entries = self._sequence(tenant, prepared)
        for item in prepared:
            if item.span.kind == documents.ROTATED:
                self._remember_key(item.span.author, str(documents.parse_rotation(item.span)))
        if wait == "sequenced":
            return [Receipt(self.origin(tenant), entry) for entry in entries]
        return self._checkpointed(tenant, entries)

    def check_skew(self, span: Span, now: datetime | None = None) -> None:
        """Refuse a span whose `ts` is too far from the log's clock (`Limits`)."""
        now = self.clock() if now is None else now
        delta = (parse_ts(span.body["ts"]) - now).total_seconds()
        if delta > self.limits.max_future_skew_s:
            raise InvalidSpan(
                f"is {delta:.0f} s ahead of the log's clock; at most "
                f"{self.limits.max_future_skew_s:.0f} s is accepted",
                field="body.ts",
            )
        if -delta > self.limits.max_past_skew_s:
            raise InvalidSpan(
                f"is {-delta:.0f} s behind the log's clock; at most "
                f"{self.limits.max_past_skew_s:.0f} s is accepted",
                field="body.ts",
            )

    def _prepare(self, spans: Sequence[Span]) -> list[Prepared]:
        """Find the key each span must verify under, then verify all signatures in parallel.

        Authors' keys come from a cache of earlier look-ups; if a signature fails under a cached
        key (another process may have rotated it), the batch is checked again with fresh keys.
        Keys are followed through the batch itself, so a batch may register an identity or rotate
        a key and use it at once. Admission re-checks every key under the log lock.
        """
        prepared, from_cache = self._resolve_keys(spans, use_cache=True)
        try:
            self._verify(prepared)
        except SignatureError:
            if not from_cache:
                raise
            prepared, _ = self._resolve_keys(spans, use_cache=False)
            self._verify(prepared)
        return prepared

    def _resolve_keys(
        self, spans: Sequence[Span], *, use_cache: bool
    ) -> tuple[list[Prepared], bool]:
        """Each span with its signing key, and whether any key came from the cache."""
        keys: dict[str, str | None] = {}
        from_cache = False
        prepared = []
        for span in spans:
            hint = signing_key_hint(span)
            if hint is not None:
                keys[span.author] = hint
            elif span.author not in keys:
                known = self._known_keys.get(span.author) if use_cache else None
                if known is not None:
                    keys[span.author], from_cache = known, True
                else:
                    record = self.store.identity(span.author)
                    keys[span.author] = None if record is None else record.public_key
                    if record is not None:
                        self._remember_key(span.author, record.public_key)
            key = keys[span.author]
            if key is None:
                raise UnknownAuthor(f"author {span.author} is not a registered identity")
            prepared.append(Prepared(span, key))
            if span.kind == documents.ROTATED:
                keys[span.author] = str(documents.parse_rotation(span))
        return prepared, from_cache

    def _verify(self, prepared: list[Prepared]) -> None:
        if len(prepared) < PARALLEL_VERIFY_MIN:
            _verify_all(prepared)
            return
        half = len(prepared) // 2
        parts = [self._pool.submit(_verify_all, prepared[:half]),
                 self._pool.submit(_verify_all, prepared[half:])]  # fmt: skip
        for part in parts:
            part.result()

    def _remember_key(self, author: str, key: str) -> None:
        if len(self._known_keys) >= KEY_CACHE_SIZE:
            self._known_keys.clear()
        self._known_keys[author] = key

    def transact(
        self,
        tenant: str,
        work: Work,
        *,
        wait: Wait = "sequenced",
        gated: bool = False,
        chain: tuple[str, ...] = (),
    ) -> tuple[list[Receipt], Any]:
        """Run `work` in the transaction that logs the spans it returns: its changes and their
        record commit together, or neither does (a `LogLineError` from `work` or from admitting
        its spans undoes its changes and is raised here). The spans come from the server's own
        keys within the transaction, so they are admitted without a second signature check.

        Returns the receipts and what `work` returned. `work` may run more than once (a
        transaction retried after a database error); it must depend only on the database.
        The server's records pass the gate only if `gated` (a follow-up's, with its `chain`).
        """
        check_tenant(tenant)
        group = _Group(tenant, [], work=work, gated=gated, chain=chain)
        entries = self._run(group)
        receipts = [Receipt(self.origin(tenant), entry) for entry in entries]
        if wait == "checkpointed" and entries:
            receipts = self._checkpointed(tenant, entries)
        return receipts, group.value

    def _sequence(self, tenant: str, items: list[Prepared]) -> list[Entry]:
        return self._run(_Group(tenant, items))

    def _run(self, group: _Group) -> list[Entry]:
        with self._pending_lock:
            self._pending.append(group)
        while not group.done:
            with self._commit_lock:
                if group.done:
                    break
                with self._pending_lock:
                    batch: list[_Group] = []
                    count = 0
                    while self._pending and (
                        not batch or count + len(self._pending[0].items) <= MAX_GROUP_SPANS
                    ):
                        batch.append(self._pending.pop(0))
                        count += len(batch[-1].items)
                self._commit(batch)
        if group.error is not None:
            raise group.error
        if group.after is not None:
            raise group.after
        return group.entries

    def _commit(self, batch: list[_Group]) -> None:
        """Commit `batch` in one transaction; if that fails, each group on its own.

        A database error caused by one group (say, a value the schema refuses) must not fail the
        unrelated groups that happened to share its transaction.
        """
        try:
            if self._commit_once(batch) or len(batch) == 1:
                return
            for group in batch:
                group.error, group.entries, group.committed = None, [], False
                self._commit_once([group])
        finally:
            for group in batch:
                if group.error is None and not group.committed:
                    group.error = StorageError("commit interrupted")
                group.done = True

    def _commit_once(self, batch: list[_Group]) -> bool:
        by_tenant: dict[str, list[_Group]] = {}
        for group in batch:
            by_tenant.setdefault(group.tenant, []).append(group)
        grown: list[tuple[str, int]] = []
        try:
            with self.store.write() as tx:
                for tenant in sorted(by_tenant):  # one lock order across processes: no deadlock
                    size = self._commit_tenant(tx, tenant, by_tenant[tenant])
                    if size is not None:
                        grown.append((tenant, size))
        except BaseException as exc:
            # Without a commit no group was logged, whatever admission said: every waiter gets an
            # error, and none may return as if acknowledged.
            error = (
                exc if isinstance(exc, LogLineError) else StorageError(f"commit failed: {exc!r}")
            )
            for group in batch:
                group.error, group.entries = group.error or error, []
            if not isinstance(exc, Exception):
                raise
            return False
        for group in batch:
            group.committed = group.error is None
        for tenant, size in grown:
            for listener in self.listeners:
                listener(tenant, size)
        return True

    def _commit_tenant(self, tx: Tx, tenant: str, groups: list[_Group]) -> int | None:
        """Admit and write the groups of one tenant; the log's new size, or None if unchanged."""
        head = tx.lock_log(tenant, format_ts(self.clock()))
        # Taken under the log lock, and never earlier than the last entry's: `received` does not
        # go backwards within a log, even across processes whose clocks differ a little.
        received = format_ts(self.clock())
        last = tx.last_received(head.log_id, head.size)
        if last is not None and last > received:
            received = last
        size = head.size
        frontier_ids = merkle.range_nodes(0, size)
        stored = tx.nodes(head.log_id, frontier_ids)
        if len(stored) != len(frontier_ids):
            raise VerificationError(
                "Merkle frontier of " + tenant, expected=len(frontier_ids), found=len(stored)
            )
        frontier = {level: stored[(level, index)] for level, index in frontier_ids}
        span_ids = [item.span.id for group in groups for item in group.items]
        admission = Admission(
            tx, head.log_id, tenant, received, tx.existing_span_ids(head.log_id, span_ids)
        )
        rows: list[NewEntry] = []
        for group in groups:
            saved = admission.save()
            try:
                with tx.savepoint():
                    if group.work is not None:
                        group.items, group.value = group.work(tx, received)
                    admission.admit(group.items)
                    if self.gate is not None and group.gated and group.items:
                        gated = self.gate.decide(tx, tenant, group.items, received, group.chain)
                        if [i.span.id for i in gated.items] != [i.span.id for i in group.items]:
                            # The gate logs something else (a hold's record): admit just that.
                            admission.restore(saved)
                            admission.admit(gated.items)
                        group.items, group.after = gated.items, gated.after
            except LogLineError as exc:
                admission.restore(saved)  # nothing of the group is logged
                group.error = exc
                continue
            for item in group.items:
                entry = Entry(
                    size,
                    item.span.id,
                    item.span.hash,
                    item.key,
                    item.span.signature,
                    received,
                    dict(DEFAULT_DECISION) if item.decision is None else item.decision,
                )
                rows.append(NewEntry(item.span, entry, entry.leaf_data()))
                group.entries.append(entry)
                size += 1
        if not rows:
            if head.created:
                tx.delete_empty_log(head.log_id)
            return None
        nodes = merkle.append_nodes(
            head.size, frontier, [merkle.leaf_hash(row.leaf) for row in rows]
        )
        tx.insert_entries(head.log_id, rows)
        tx.insert_nodes(head.log_id, nodes)
        tx.set_size(head.log_id, size)
        admission.apply()
        tx.announce(tenant, size)
        return size

    # --- checkpoints ----------------------------------------------------------------------------

    def head(self, tenant: str) -> LogHead:
        head = self.store.log_head(tenant)
        if head is None:
            raise NotFound(f"tenant {tenant} has no log")
        return head

    def checkpoint(self, tenant: str, *, min_size: int | None = None) -> CheckpointRecord:
        """The latest signed checkpoint, first publishing one for the current size if needed.

        With `min_size`, an existing checkpoint of at least that size is good enough. Before
        signing, the new tree is proven consistent with the latest checkpoint: a log never signs
        a checkpoint that contradicts an earlier one.
        """
        with self._checkpoint_locks.setdefault(tenant, threading.Lock()):
            head = self.head(tenant)
            self._heads[tenant] = head
            latest = self.store.latest_checkpoint(head.log_id)
            wanted = head.size if min_size is None else min_size
            if latest is not None and latest.size >= wanted:
                return latest
            size = head.size
            root = self.root(head.log_id, size)
            if latest is not None:
                proof = self.consistency_proof(tenant, latest.size, size) if latest.size else []
                try:
                    merkle.verify_consistency(latest.size, size, proof, latest.root, root)
                except VerificationError as exc:
                    raise VerificationError(
                        f"refusing to sign: tree of size {size} is not consistent with the "
                        f"checkpoint of size {latest.size}",
                        expected=exc.expected,
                        found=exc.found,
                    ) from exc
            note = sign_checkpoint(Checkpoint(self.origin(tenant), size, root), self.signer)
            record = CheckpointRecord(size, root, note, format_ts(self.clock()))
            self.store.insert_checkpoint(head.log_id, record)
            return record

    def _checkpointed(self, tenant: str, entries: list[Entry]) -> list[Receipt]:
        record = self.checkpoint(tenant, min_size=entries[-1].seq + 1)
        log_id, _ = self._check_size(tenant, record.size)
        needed = [n for e in entries for n in merkle.inclusion_nodes(e.seq, record.size)]
        fetch = self._fetcher(log_id, needed)
        return [
            Receipt(
                self.origin(tenant),
                e,
                record.note,
                tuple(merkle.inclusion_path(e.seq, record.size, fetch)),
            )
            for e in entries
        ]

    # --- proofs ---------------------------------------------------------------------------------

    def _fetcher(self, log_id: int, ids: Sequence[merkle.NodeId]) -> merkle.NodeFetcher:
        found = self.store.nodes(log_id, ids)

        def fetch(level: int, index: int) -> bytes:
            try:
                return found[(level, index)]
            except KeyError:
                raise VerificationError(
                    f"Merkle node ({level}, {index}) is missing from the store",
                    expected="stored",
                    found="missing",
                ) from None

        return fetch

    def root(self, log_id: int, size: int) -> bytes:
        return merkle.tree_root(size, self._fetcher(log_id, merkle.range_nodes(0, size)))

    def _check_size(self, tenant: str, size: int | None) -> tuple[int, int]:
        # A log only grows and its id never changes: a head seen before answers for any size it
        # covers, which saves proofs of historical sizes a round trip to the database.
        known = self._heads.get(tenant)
        if known is not None and size is not None and 0 <= size <= known.size:
            return known.log_id, size
        head = self.head(tenant)
        self._heads[tenant] = head
        if size is None:
            size = head.size
        if not 0 <= size <= head.size:
            raise NotFound(f"the log of {tenant} has {head.size} entries; no tree of size {size}")
        return head.log_id, size

    def inclusion_proof(self, tenant: str, seq: int, size: int | None = None) -> list[bytes]:
        log_id, size = self._check_size(tenant, size)
        if not 0 <= seq < size:
            raise NotFound(f"entry {seq} is not in the tree of size {size}")
        return merkle.inclusion_path(
            seq, size, self._fetcher(log_id, merkle.inclusion_nodes(seq, size))
        )

    def consistency_proof(self, tenant: str, size1: int, size2: int) -> list[bytes]:
        log_id, size2 = self._check_size(tenant, size2)
        if not 0 < size1 <= size2:
            raise NotFound(f"no consistency proof from size {size1} to size {size2}")
        return merkle.consistency_path(
            size1, size2, self._fetcher(log_id, merkle.consistency_nodes(size1, size2))
        )

    def receipt(self, tenant: str, span_id: str) -> Receipt:
        """A checkpointed receipt for a logged span, against the latest checkpoint."""
        stored = self.get(tenant, span_id)
        record = self.checkpoint(tenant, min_size=stored.seq + 1)
        proof = self.inclusion_proof(tenant, stored.seq, record.size)
        return Receipt(self.origin(tenant), stored.entry, record.note, tuple(proof))

    def get(self, tenant: str, span_id: str) -> StoredSpan:
        stored = self.store.span(tenant, span_id)
        if stored is None:
            raise NotFound(f"span {span_id} is not in the log of {tenant}")
        return stored
