"""Verification of a whole log, streamed in order: from the store or from a bundle.

    verifier = LogVerifier(origin, note_verifier, keys)
    for item in items: verifier.add(item)      # raises VerificationError naming the entry
    verifier.check_checkpoint(note)

For every entry, in order (docs/PROTOCOL.md §9):
 1. the leaf is an entry whose `seq` is its position;
 2. the span body is valid and hashes to the entry's `span_hash`;
 3. the span signature is the entry's `sig` and verifies under the entry's `key`;
 4. that key is the author's key at that point of the log: followed through the identity documents
    in the log itself, or, for authors registered elsewhere, within a key record's validity;
 5. the payload, if present, hashes to the body's `payload_digest`; if absent while the digest is
    set, a redaction span names it (when the redaction lies inside what is verified);
 6. the leaf is appended to the recomputed Merkle tree.
Then each checkpoint's signature is checked and its root compared with the recomputed root at its
size, which also proves every pair of checkpoints consistent.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from logline.canonical import b64encode, loads
from logline.errors import LogLineError, NotFound, VerificationError
from logline.identity import documents
from logline.identity.ids import LogLineId, check_uuid7
from logline.identity.keys import PublicKey
from logline.ledger import merkle
from logline.ledger.admission import REDACTION, RESERVED_PREFIXES, SYSTEM_KINDS
from logline.ledger.checkpoint import Checkpoint, NoteVerifier, open_checkpoint
from logline.ledger.entry import Entry
from logline.ledger.span import Span, parse_span
from logline.store.interface import CheckpointRecord, KeyRecord, Store


@dataclass(frozen=True, slots=True)
class Item:
    """One entry to verify: the leaf data, the span in wire form, and the claimed marks."""

    seq: int
    leaf: bytes
    span: dict[str, Any]
    redacted_by: str | None = None


@dataclass
class _Identity:
    key: str
    kind: str
    claimed: bool = False
    expires_at: str | None = None
    used_keys: set[str] = field(default_factory=set)


@dataclass
class _Span:
    kind: str
    status: str
    digest: str | None
    reverted: bool = False
    redacted_by: str | None = None


@dataclass
class Summary:
    origin: str
    start: int
    size: int
    root: bytes
    checkpoints: list[int] = field(default_factory=list)
    redacted: int = 0
    identities: dict[str, str] = field(default_factory=dict)
    keys: list[KeyRecord] = field(default_factory=list)


class LogVerifier:
    """Recomputes a log from its entries. `start` > 0 needs the left frontier hashes.

    The §8 rules are checked for every identity and span whose earlier entries were seen; from
    `start` = 0 every span is seen, so a revert, replay or redaction must name one of them.
    With `collect_nodes`, the recomputed Merkle nodes gather in `new_nodes` for the caller.
    """

    def __init__(
        self,
        origin: str,
        note_verifier: NoteVerifier,
        keys: Sequence[KeyRecord] = (),
        *,
        start: int = 0,
        left: Sequence[bytes] = (),
        collect_nodes: bool = False,
    ) -> None:
        self.origin = origin
        self.tenant = origin.rpartition("/")[2]
        self.note_verifier = note_verifier
        self.start = start
        self.size = start
        ids = merkle.range_nodes(0, start)
        if len(left) != len(ids) or any(len(h) != merkle.HASH_SIZE for h in left):
            raise VerificationError(
                "left frontier hashes", expected=f"{len(ids)} of 32 bytes", found=len(left)
            )
        self.frontier = {level: h for (level, _), h in zip(ids, left, strict=True)}
        self.key_records: dict[str, list[KeyRecord]] = {}
        for record in keys:
            self.key_records.setdefault(record.identity, []).append(record)
        self.identities: dict[str, _Identity] = {}
        self.spans: dict[str, _Span] = {}
        self.collect_nodes = collect_nodes
        self.new_nodes: list[tuple[int, int, bytes]] = []
        self.checkpoints: list[int] = []
        self.redacted = 0
        self.last_received = ""

    def root(self) -> bytes:
        if self.size == 0:
            return merkle.EMPTY_ROOT
        levels = sorted(self.frontier)
        return merkle.fold_right([self.frontier[level] for level in reversed(levels)])

    def add(self, item: Item) -> None:
        try:
            self._add(item)
        except VerificationError as exc:
            if exc.seq is None:
                exc.seq = item.seq
                exc.args = (f"entry {item.seq}: {exc.args[0]}",)
            raise
        except LogLineError as exc:
            raise VerificationError(str(exc), seq=item.seq) from exc

    def _add(self, item: Item) -> None:
        # 1. the leaf is an entry at its position
        if item.seq != self.size:
            raise VerificationError("entry position", expected=self.size, found=item.seq)
        entry = Entry.from_leaf_data(item.leaf)
        if entry.leaf_data() != item.leaf:
            raise VerificationError("leaf data", expected="RFC 8785 canonical", found="other bytes")
        if entry.seq != item.seq:
            raise VerificationError("entry seq", expected=item.seq, found=entry.seq)
        if entry.received < self.last_received:
            raise VerificationError("received", expected=f">= {self.last_received}",
                                    found=entry.received)  # fmt: skip
        self.last_received = entry.received
        # 2. the span is valid and is the one the entry commits to
        if not isinstance(item.span, dict):
            raise VerificationError("span", expected="an object", found=type(item.span).__name__)
        span = parse_span({k: v for k, v in item.span.items() if k != "payload"})
        if span.hash != entry.span_hash:
            raise VerificationError(
                "span hash", expected=entry.span_hash.hex(), found=span.hash.hex()
            )
        if span.id != entry.span_id:
            raise VerificationError("span id", expected=entry.span_id, found=span.id)
        if span.tenant != self.tenant:
            raise VerificationError("span tenant", expected=self.tenant, found=span.tenant)
        if span.id in self.spans:
            raise VerificationError("span id", expected="unique in the log", found=span.id)
        # 3. the signature is the entry's and verifies under the entry's key
        if span.signature != entry.signature:
            raise VerificationError("span signature", expected="the entry's sig", found="another")
        span.verify(PublicKey.parse(entry.key))
        # 5. the payload, if present, matches its digest
        payload_present = "payload" in item.span
        digest = span.body["payload_digest"]
        if payload_present:
            span = parse_span(item.span)
        elif digest is not None:
            if item.redacted_by is None:
                raise VerificationError(
                    "payload", expected=f"present ({digest})", found="missing without a redaction"
                )
            check_uuid7(item.redacted_by)
            self.redacted += 1
        elif item.redacted_by is not None:
            raise VerificationError("redacted_by", expected="absent: no payload", found="present")
        # 4. the key is the author's at this point of the log, and the §8 rules hold
        self._follow_identity(span, entry)
        self._follow_links(span, payload_present)
        self.spans[span.id] = _Span(
            span.kind,
            span.body["status"],
            digest,
            redacted_by=None if payload_present else item.redacted_by,
        )
        # 6. append the leaf
        nodes = merkle.append_nodes(self.size, self.frontier, [merkle.leaf_hash(item.leaf)])
        if self.collect_nodes:
            self.new_nodes.extend(nodes)
        self.size += 1

    def _follow_identity(self, span: Span, entry: Entry) -> None:
        author, kind = span.author, span.kind
        if kind.startswith(RESERVED_PREFIXES) and kind not in SYSTEM_KINDS:
            raise VerificationError("span kind", expected="a kind LogLine defines", found=kind)
        if kind == documents.CREATED:
            identity, key, _, expires = documents.parse_creation(span)
            if author in self.identities:
                raise VerificationError(
                    "identity document", expected="first for " + author, found="a second one"
                )
            if str(key) != entry.key:
                raise VerificationError("identity key", expected=str(key), found=entry.key)
            if expires is not None and expires <= entry.received:
                raise VerificationError(
                    "ghost expiry", expected=f"> {entry.received}", found=expires
                )
            self.identities[author] = _Identity(
                str(key), identity.kind, expires_at=expires, used_keys={str(key)}
            )
            return
        state = self.identities.get(author)
        if state is not None:
            if state.claimed:
                raise VerificationError(
                    "author", expected="an unclaimed identity", found=f"{author}, claimed earlier"
                )
            if state.expires_at is not None and entry.received >= state.expires_at:
                raise VerificationError(
                    "author",
                    expected="an unexpired ghost",
                    found=f"{author}, expired at {state.expires_at}",
                )
            if entry.key != state.key:
                raise VerificationError(
                    "signing key of " + author, expected=state.key, found=entry.key
                )
        else:
            self._check_key_record(author, entry)
        author_kind = LogLineId.parse(author).kind
        if kind == documents.ROTATED:
            if author_kind == "ghost":
                raise VerificationError("rotation", expected="a non-ghost author", found=author)
            new_key = str(documents.parse_rotation(span))
            if state is not None:
                if new_key in state.used_keys:
                    raise VerificationError(
                        "rotation", expected="a key never used before", found=new_key
                    )
                state.key = new_key
                state.used_keys.add(new_key)
        elif kind == documents.CLAIMED:
            if author_kind == "ghost":
                raise VerificationError("claim", expected="a non-ghost claimant", found=author)
            ghost, proof = documents.parse_claim(span)
            ghost_state = self.identities.get(ghost)
            if ghost_state is not None:
                if ghost_state.claimed:
                    raise VerificationError(
                        "claim of " + ghost, expected="unclaimed", found="claimed earlier"
                    )
                if ghost_state.expires_at is not None and entry.received >= ghost_state.expires_at:
                    raise VerificationError(
                        "claim of " + ghost,
                        expected="before expiry",
                        found=f"expired at {ghost_state.expires_at}",
                    )
                PublicKey.parse(ghost_state.key).verify(
                    proof, documents.claim_message(ghost, author)
                )
                ghost_state.claimed = True
            elif self.start == 0:
                raise VerificationError(
                    "claim of " + ghost, expected="a ghost created in this log", found="none"
                )

    def _follow_links(self, span: Span, payload_present: bool) -> None:
        """Reverts, replays and redactions name spans seen earlier (§8.4, §8.5)."""
        body, whole = span.body, self.start == 0
        if body["replay_of"] is not None and whole and body["replay_of"] not in self.spans:
            raise VerificationError(
                "replay_of", expected="a span earlier in the log", found=body["replay_of"]
            )
        if body["status"] == "reverted":
            target = self.spans.get(body["caused_by"]) if body["caused_by"] else None
            if target is None and (whole or body["caused_by"] is None):
                raise VerificationError(
                    "revert", expected="caused_by naming an earlier span", found=body["caused_by"]
                )
            if target is not None:
                if target.status == "reverted" or target.reverted:
                    raise VerificationError(
                        "revert",
                        expected="a span not reverted before and not itself a revert",
                        found=body["caused_by"],
                    )
                target.reverted = True
        if span.kind == REDACTION:
            if not payload_present:
                return  # a redaction's own payload can't be redacted; verified when present
            payload = span.payload
            if not isinstance(payload, dict) or not isinstance(payload.get("span_id"), str):
                raise VerificationError(
                    "redaction payload", expected="{span_id, ...}", found=type(payload).__name__
                )
            target = self.spans.get(payload["span_id"])
            if target is None:
                if whole:
                    raise VerificationError(
                        "redaction", expected="a span earlier in the log", found=payload["span_id"]
                    )
                return
            if target.kind in SYSTEM_KINDS or target.digest != payload.get("payload_digest"):
                raise VerificationError(
                    "redaction of " + payload["span_id"],
                    expected=f"a payload with digest {target.digest}",
                    found=payload.get("payload_digest"),
                )
            if target.redacted_by is not None and target.redacted_by != span.id:
                raise VerificationError(
                    f"redaction of {payload['span_id']}", expected=span.id, found=target.redacted_by
                )
            target.redacted_by = span.id
            target.digest = None  # redacted once: a second redaction finds nothing to redact

    def _check_key_record(self, author: str, entry: Entry) -> None:
        for record in self.key_records.get(author, ()):
            if (
                record.public_key == entry.key
                and record.valid_from <= entry.received
                and (record.valid_until is None or entry.received <= record.valid_until)
            ):
                return
        raise VerificationError(
            "signing key of " + author,
            expected="a key of the author valid at " + entry.received,
            found=entry.key,
        )

    def check_checkpoint(self, note: str) -> Checkpoint:
        """Verify a checkpoint whose size is the number of entries added so far."""
        checkpoint = open_checkpoint(note, self.note_verifier, origin=self.origin)
        if checkpoint.size != self.size:
            raise VerificationError("checkpoint size", expected=self.size, found=checkpoint.size)
        root = self.root()
        if checkpoint.root != root:
            raise VerificationError(
                f"checkpoint of size {checkpoint.size}: root",
                expected=root.hex(),
                found=checkpoint.root.hex(),
            )
        self.checkpoints.append(checkpoint.size)
        return checkpoint

    def check_consistency_to(self, note: str, proof: Sequence[bytes]) -> Checkpoint:
        """Verify a checkpoint of a larger tree, with a consistency proof from the current size."""
        checkpoint = open_checkpoint(note, self.note_verifier, origin=self.origin)
        if checkpoint.size < self.size:
            raise VerificationError(
                "checkpoint size", expected=f">= {self.size}", found=checkpoint.size
            )
        merkle.verify_consistency(self.size, checkpoint.size, proof, self.root(), checkpoint.root)
        self.checkpoints.append(checkpoint.size)
        return checkpoint

    def finish(self, *, reaches_end: bool) -> Summary:
        """Final cross-checks. `reaches_end`: the entries run to the end of the signed tree.

        A redaction always follows its target, so when the entries reach the end, every payload
        missing from them must have been redacted by a redaction among them.
        """
        for span_id, state in self.spans.items():
            if state.redacted_by is None or state.digest is None:
                continue  # present, or matched by a redaction seen in the log
            if reaches_end or state.redacted_by in self.spans:
                raise VerificationError(
                    f"payload of {span_id}",
                    expected="present or removed by a redaction span naming it",
                    found=f"missing, said to be redacted by {state.redacted_by}",
                )
        return Summary(
            self.origin,
            self.start,
            self.size,
            self.root(),
            self.checkpoints,
            self.redacted,
            {k: v.key for k, v in self.identities.items()},
            [record for records in self.key_records.values() for record in records],
        )


NODE_CHECK_BATCH = 4096


def verify_store(
    store: Store,
    tenant: str,
    origin: str,
    note_verifier: NoteVerifier,
    progress: Callable[[int, int], None] | None = None,
) -> Summary:
    """Verify a tenant's log as stored: every entry, every stored Merkle node, every checkpoint."""
    head = store.log_head(tenant)
    if head is None:
        raise NotFound(f"tenant {tenant} has no log")
    authors_keys = [k for record in store.identities() for k in store.keys(record.id)]
    verifier = LogVerifier(origin, note_verifier, authors_keys, collect_nodes=True)
    checkpoints = {c.size: c for c in store.checkpoints(head.log_id)}
    if 0 in checkpoints:
        _check_stored_checkpoint(verifier, checkpoints[0])
    for stored in store.spans(tenant, 0, head.size):
        try:
            wire: dict[str, Any] = {
                "body": loads(stored.body),
                "signature": b64encode(stored.signature),
            }
            if stored.payload is not None:
                wire["payload"] = loads(stored.payload)
        except LogLineError as exc:
            raise VerificationError(f"stored span is unreadable: {exc}", seq=stored.seq) from exc
        verifier.add(Item(stored.seq, stored.leaf, wire, stored.redacted_by))
        if len(verifier.new_nodes) >= NODE_CHECK_BATCH:
            _compare_nodes(store, head.log_id, verifier)
        if verifier.size in checkpoints:
            _compare_nodes(store, head.log_id, verifier)
            _check_stored_checkpoint(verifier, checkpoints[verifier.size])
        if progress is not None:
            progress(verifier.size, head.size)
    _compare_nodes(store, head.log_id, verifier)
    if verifier.size != head.size:
        raise VerificationError("log size", expected=head.size, found=verifier.size)
    beyond = [size for size in checkpoints if size > head.size]
    if beyond:
        raise VerificationError("checkpoint size", expected=f"<= {head.size}", found=max(beyond))
    return verifier.finish(reaches_end=True)


def _check_stored_checkpoint(verifier: LogVerifier, record: CheckpointRecord) -> None:
    # The root column is what the log signs new checkpoints against: it must match the note.
    checkpoint = verifier.check_checkpoint(record.note)
    if checkpoint.root != record.root:
        raise VerificationError(
            f"checkpoint of size {record.size}: stored root",
            expected=checkpoint.root.hex(),
            found=record.root.hex(),
        )


def _compare_nodes(store: Store, log_id: int, verifier: LogVerifier) -> None:
    nodes, verifier.new_nodes = verifier.new_nodes, []
    stored = store.nodes(log_id, [(level, index) for level, index, _ in nodes])
    for level, index, expected in nodes:
        found = stored.get((level, index))
        if found != expected:
            raise VerificationError(
                f"stored Merkle node (level {level}, index {index})",
                expected=expected.hex(),
                found=None if found is None else found.hex(),
                seq=(index << level) + (1 << level) - 1,
            )
