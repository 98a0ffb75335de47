"""One behaviour suite for the store and the write path, run against every backend (`backend`).

Everything here goes through `Log` and `Store` as an application would, except the tamper tests,
which corrupt committed rows with raw SQL and expect `verify_store` to name the damaged entry.
"""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from helpers import (
    INSTANCE,
    OTHER_TENANT,
    TENANT,
    Clock,
    flip_bit,
    log_id,
    make_identity,
    make_span,
    raw_sql,
    sql_store,
    ts_from_now,
)
from logline.canonical import b64decode, b64encode
from logline.errors import (
    Conflict,
    InvalidInput,
    InvalidSpan,
    NotFound,
    SignatureError,
    StorageError,
    UnknownAuthor,
    VerificationError,
)
from logline.identity import documents
from logline.identity.ids import LogLineId, uuid7
from logline.identity.keys import PrivateKey
from logline.ledger import merkle
from logline.ledger.checkpoint import Checkpoint, NoteSigner, open_checkpoint, sign_checkpoint
from logline.ledger.log import Log, Wait
from logline.ledger.receipt import Receipt, verify_receipt
from logline.ledger.span import Span, new_span, parse_span
from logline.ledger.timefmt import parse_ts
from logline.ledger.verify import verify_store
from logline.store import open_store
from logline.store.interface import CheckpointRecord, Query, Store, node_key
from logline.store.sql import decode_cursor

Identity = tuple[str, PrivateKey]


def _size(store: Store, tenant: str = TENANT) -> int:
    head = store.log_head(tenant)
    return 0 if head is None else head.size


def _verify(log: Log, tenant: str = TENANT) -> int:
    """verify_store the tenant's log; return the verified size."""
    summary = verify_store(log.store, tenant, log.origin(tenant), log.verifier())
    return summary.size


def _ids(items: Any) -> list[str]:
    return [item.span.id for item in items]


# --- append and read back -------------------------------------------------------------------------


def test_append_and_read_back_round_trip(log: Log, store: Store, alice: Identity) -> None:
    author, key = alice
    payload = {"amount": 42, "note": "café ☕ 日本", "nested": {"xs": [1, 2.5, None, True]}}
    span = make_span(
        key, author, kind="payment.approved", title="Approve invoice №42", payload=payload,
        tags=["q4", "finance"], contract_id="c-1", workflow_id="wf-1", flow_id="f-1",
        visibility="private",
    )  # fmt: skip
    before = datetime.now(UTC)
    receipt = log.append(span, wait="sequenced")
    assert receipt.status == "sequenced"
    assert receipt.seq == 1  # seq 0 is alice's identity document
    assert receipt.origin == f"{INSTANCE}/{TENANT}"

    stored = store.span(TENANT, span.id)
    assert stored is not None
    assert (stored.tenant, stored.seq) == (TENANT, 1)
    assert stored.body == span.body_bytes
    assert stored.signature == span.signature
    assert stored.payload == span.payload_bytes
    assert (stored.reverted_by, stored.redacted_by) == (None, None)

    read = stored.span
    assert read.body == span.body
    assert read.body["tags"] == ["finance", "q4"]
    assert read.hash == span.hash
    assert read.payload == payload
    read.verify(key.public_key)

    entry = stored.entry
    assert entry == receipt.entry
    assert entry.seq == 1
    assert entry.span_id == span.id
    assert entry.span_hash == span.hash
    assert entry.key == str(key.public_key)
    assert entry.signature == span.signature
    assert entry.decision == {"outcome": "allow"}
    assert before - timedelta(seconds=1) <= parse_ts(entry.received) <= datetime.now(UTC)
    assert stored.leaf == entry.leaf_data()

    assert store.span_at(TENANT, 1) == stored
    assert log.get(TENANT, span.id) == stored
    first = store.span_at(TENANT, 0)
    assert first is not None and first.span.kind == documents.CREATED
    assert list(store.spans(TENANT, 0, 2)) == [first, stored]


def test_span_without_payload_and_missing_spans(log: Log, store: Store, alice: Identity) -> None:
    author, key = alice
    span = make_span(key, author)
    log.append(span, wait="sequenced")
    stored = store.span(TENANT, span.id)
    assert stored is not None
    assert stored.payload is None
    assert stored.span.payload is None
    assert stored.span.body["payload_digest"] is None

    assert store.span(TENANT, uuid7()) is None
    assert store.span(OTHER_TENANT, span.id) is None
    assert store.span_at(TENANT, 2) is None
    assert store.span_at(OTHER_TENANT, 0) is None
    assert list(store.spans(OTHER_TENANT, 0, 10)) == []
    with pytest.raises(NotFound):
        log.get(TENANT, uuid7())


def test_spans_streams_a_range_in_batches(log: Log, store: Store, alice: Identity) -> None:
    author, key = alice
    spans = [make_span(key, author, title=f"event {i}") for i in range(9)]
    log.append_batch(spans, wait="sequenced")
    assert [s.seq for s in store.spans(TENANT, 0, 10, batch=2)] == list(range(10))
    assert _ids(store.spans(TENANT, 3, 7, batch=3)) == [s.id for s in spans[2:6]]
    assert list(store.spans(TENANT, 5, 5)) == []


# --- sequencing and tenants -----------------------------------------------------------------------


def test_tenants_have_independent_sequences(log: Log, store: Store) -> None:
    writers = {
        TENANT: make_identity(log, TENANT, "alice"),
        OTHER_TENANT: make_identity(log, OTHER_TENANT, "bob"),
    }
    seqs: dict[str, list[int]] = {TENANT: [], OTHER_TENANT: []}
    ids: dict[str, list[str]] = {TENANT: [], OTHER_TENANT: []}
    for i in range(6):
        for tenant, (author, key) in writers.items():
            span = make_span(key, author, tenant=tenant, title=f"{tenant} {i}")
            seqs[tenant].append(log.append(span, wait="sequenced").seq)
            ids[tenant].append(span.id)

    assert [head.tenant for head in store.logs()] == sorted(writers)
    for tenant in writers:
        assert seqs[tenant] == list(range(1, 7))
        assert _size(store, tenant) == 7
        stored = list(store.spans(tenant, 0, 7))
        assert [s.seq for s in stored] == list(range(7))
        assert _ids(stored[1:]) == ids[tenant]
        assert all(s.tenant == tenant and s.span.tenant == tenant for s in stored)
        assert _ids(store.query(Query(tenant)).items)[1:] == ids[tenant]
        assert _verify(log, tenant) == 7
    assert store.span(OTHER_TENANT, ids[TENANT][0]) is None
    assert store.span(TENANT, ids[OTHER_TENANT][0]) is None


def test_batch_gets_consecutive_seqs(log: Log, store: Store, alice: Identity) -> None:
    author, key = alice
    spans = [make_span(key, author, title=f"event {i}") for i in range(5)]
    receipts = log.append_batch(spans, wait="sequenced")
    assert [r.seq for r in receipts] == [1, 2, 3, 4, 5]
    assert [r.entry.span_id for r in receipts] == [s.id for s in spans]
    assert log.append_batch([]) == []


def test_batch_for_two_tenants_is_refused(log: Log, store: Store, alice: Identity) -> None:
    author, key = alice
    spans = [make_span(key, author), make_span(key, author, tenant=OTHER_TENANT)]
    with pytest.raises(InvalidSpan) as info:
        log.append_batch(spans)
    assert info.value.field == "body.tenant"
    assert _size(store) == 1
    assert store.log_head(OTHER_TENANT) is None


# --- atomic batches and typed refusals ------------------------------------------------------------


def _forged(span: Span) -> Span:
    """`span` with one bit of its signature flipped."""
    return replace(span, signature=flip_bit(span.signature, 7))


BadSpanFactory = Callable[[Identity, Span, Span], Span]

BAD_SPANS: dict[str, tuple[BadSpanFactory, type[Exception]]] = {
    # (alice, a span already logged, the first good span of the batch) -> the bad span
    "duplicate_in_batch": (lambda a, logged, first: first, Conflict),
    "already_logged": (lambda a, logged, first: logged, Conflict),
    "reused_id": (lambda a, logged, first: make_span(a[1], a[0], span_id=logged.id), Conflict),
    "unknown_author": (
        lambda a, logged, first: make_span(PrivateKey.generate(), "logline-id://person/nobody"),
        UnknownAuthor,
    ),
    "bad_signature": (lambda a, logged, first: _forged(make_span(a[1], a[0])), SignatureError),
    "wrong_key": (lambda a, logged, first: make_span(PrivateKey.generate(), a[0]), SignatureError),
    "missing_replay_target": (
        lambda a, logged, first: make_span(a[1], a[0], replay_of=uuid7()),
        InvalidSpan,
    ),
    "revert_of_unknown": (
        lambda a, logged, first: make_span(a[1], a[0], status="reverted", caused_by=uuid7()),
        InvalidSpan,
    ),
}


# Batches of PARALLEL_VERIFY_MIN (16) spans or more verify signatures on the log's thread pool.
BATCH_CASES = [
    *(pytest.param(bad, 4, id=f"small-{bad}") for bad in sorted(BAD_SPANS)),
    *(pytest.param(bad, 20, id=f"pooled-{bad}") for bad in
      ("already_logged", "bad_signature", "unknown_author", "wrong_key")),
]  # fmt: skip


@pytest.mark.parametrize(("bad", "batch_size"), BATCH_CASES)
def test_batch_with_one_bad_span_stores_nothing(
    log: Log, store: Store, alice: Identity, bad: str, batch_size: int
) -> None:
    """A batch is all or nothing, also for effects (a new identity) and for pooled verification."""
    author, key = alice
    logged = make_span(key, author, title="logged before")
    log.append(logged, wait="sequenced")
    size = _size(store)
    carol_key = PrivateKey.generate()
    good = [
        make_span(key, author, title="first", payload={"n": 1}, tags=["batch"]),
        documents.creation_span(carol_key, TENANT, LogLineId.of("person", "carol")),
        *(make_span(key, author, title=f"more {i}") for i in range(batch_size - 3)),
    ]
    factory, error = BAD_SPANS[bad]
    batch = [*good, factory(alice, logged, good[0])]
    assert len(batch) == batch_size

    with pytest.raises(error):
        log.append_batch(batch, wait="checkpointed")

    assert _size(store) == size
    for span in good:
        assert store.span(TENANT, span.id) is None
    assert store.identity("logline-id://person/carol") is None
    assert store.query(Query(TENANT, tags=("batch",))).items == []
    assert store.latest_checkpoint(log_id(store, TENANT)) is None
    # the log is still usable and intact
    assert log.append(make_span(key, author), wait="sequenced").seq == size
    assert _verify(log) == size + 1


def test_batch_may_register_an_identity_rotate_and_use_it(log: Log, store: Store) -> None:
    """Keys are followed through the batch: later spans may use what earlier spans registered."""
    carol = "logline-id://person/carol"
    first, second = PrivateKey.generate(), PrivateKey.generate()
    batch = [
        documents.creation_span(first, TENANT, LogLineId.parse(carol)),
        make_span(first, carol, title="with the first key"),
        documents.rotation_span(first, second.public_key, TENANT, carol),
        make_span(second, carol, title="with the second key"),
    ]
    assert [r.seq for r in log.append_batch(batch)] == [0, 1, 2, 3]
    record = store.identity(carol)
    assert record is not None and record.public_key == str(second.public_key)
    keys = {k.public_key: k for k in store.keys(carol)}
    assert set(keys) == {str(first.public_key), str(second.public_key)}
    assert keys[str(first.public_key)].valid_until is not None
    assert keys[str(second.public_key)].valid_until is None

    dave = "logline-id://person/dave"
    old, new = PrivateKey.generate(), PrivateKey.generate()
    stale = [
        documents.creation_span(old, TENANT, LogLineId.parse(dave)),
        documents.rotation_span(old, new.public_key, TENANT, dave),
        make_span(old, dave, title="with the key just retired"),
    ]
    with pytest.raises(SignatureError):
        log.append_batch(stale)
    assert store.identity(dave) is None
    assert _size(store) == 4
    assert _verify(log) == 4


def test_duplicate_span_id_is_a_conflict(log: Log, store: Store, alice: Identity) -> None:
    author, key = alice
    span = make_span(key, author)
    log.append(span, wait="sequenced")
    with pytest.raises(Conflict):
        log.append(span)
    with pytest.raises(Conflict):
        log.append(make_span(key, author, title="another span, same id", span_id=span.id))
    assert _size(store) == 2


def test_a_refused_first_append_leaves_no_empty_log(
    log: Log, store: Store, alice: Identity
) -> None:
    author, key = alice
    again = documents.creation_span(key, "newco", LogLineId.parse(author))
    with pytest.raises(Conflict, match="already exists"):
        log.append(again)
    assert store.log_head("newco") is None
    assert [head.tenant for head in store.logs()] == [TENANT]


def test_unknown_author_is_refused(log: Log, store: Store) -> None:
    key = PrivateKey.generate()
    with pytest.raises(UnknownAuthor, match="nobody"):
        log.append(make_span(key, "logline-id://person/nobody"))
    assert store.log_head(TENANT) is None


def test_tampered_signature_is_refused(log: Log, store: Store, alice: Identity) -> None:
    author, key = alice
    span = make_span(key, author, payload={"amount": 1})
    with pytest.raises(SignatureError):
        log.append(replace(span, signature=flip_bit(span.signature, 31, 3)))
    with pytest.raises(SignatureError):
        log.append(make_span(PrivateKey.generate(), author))
    # the body changed after signing, sent in wire form
    changed = {**span.body, "title": "a different title"}
    with pytest.raises(SignatureError):
        log.append(parse_span({"body": changed, "signature": b64encode(span.signature)}))
    assert _size(store) == 1
    log.append(span, wait="sequenced")
    assert _size(store) == 2


def test_reserved_kinds_are_refused(log: Log, store: Store, alice: Identity) -> None:
    author, key = alice
    for kind in ("logline.anything", "identity.deleted"):
        with pytest.raises(InvalidSpan) as info:
            log.append(make_span(key, author, kind=kind))
        assert info.value.field == "body.kind"
    assert _size(store) == 1


# --- clock skew -----------------------------------------------------------------------------------


def test_clock_skew_beyond_limits_is_refused(clocked_log: Log, store: Store, clock: Clock) -> None:
    author, key = make_identity(clocked_log, TENANT, "alice")
    for offset_s in (300.000001, 301, 86_400, -3600.000001, -3601, -86_400):
        span = make_span(key, author, ts=clock.ts(offset_s))
        with pytest.raises(InvalidSpan) as info:
            clocked_log.append(span)
        assert info.value.field == "body.ts", offset_s
        assert str(info.value).startswith("body.ts: ")
        assert _size(store) == 1
    # the last one is accepted when the caller opts out of the skew check (imports)
    assert clocked_log.append_batch([span], wait="sequenced", check_skew=False)[0].seq == 1


def test_clock_skew_within_limits_is_accepted(clocked_log: Log, store: Store, clock: Clock) -> None:
    author, key = make_identity(clocked_log, TENANT, "alice")
    for seq, offset_s in enumerate((300, 299, 0, -3599, -3600), start=1):
        span = make_span(key, author, ts=clock.ts(offset_s))
        receipt = clocked_log.append(span, wait="sequenced")
        assert receipt.seq == seq, offset_s
        assert receipt.entry.received == clock.ts()


# --- identities -----------------------------------------------------------------------------------


def test_identity_creation(log: Log, store: Store) -> None:
    key = PrivateKey.generate()
    span = documents.creation_span(key, TENANT, LogLineId.of("service", "billing"), "Billing")
    receipt = log.append(span, wait="sequenced")
    record = store.identity("logline-id://service/billing")
    assert record is not None
    assert (record.id, record.kind, record.status) == ("logline-id://service/billing", "service",
                                                       "active")  # fmt: skip
    assert record.public_key == str(key.public_key)
    assert (record.tenant, record.span_id, record.display_name) == (TENANT, span.id, "Billing")
    assert record.created_at == receipt.entry.received
    assert (record.expires_at, record.claimed_by) == (None, None)
    assert [r.id for r in store.identities()] == [record.id]
    [key_record] = store.keys(record.id)
    assert (key_record.public_key, key_record.valid_from, key_record.valid_until) == (
        str(key.public_key), receipt.entry.received, None
    )  # fmt: skip
    assert key_record.span_id == span.id
    assert store.identity("logline-id://service/nobody") is None
    assert store.keys("logline-id://service/nobody") == []


def test_creating_an_existing_identity_is_a_conflict(
    log: Log, store: Store, alice: Identity
) -> None:
    author, key = alice
    alice_id = LogLineId.parse(author)
    with pytest.raises(Conflict):
        log.append(documents.creation_span(PrivateKey.generate(), TENANT, alice_id))
    with pytest.raises(Conflict):  # identities are global: not in another tenant either
        log.append(documents.creation_span(PrivateKey.generate(), OTHER_TENANT, alice_id))
    with pytest.raises(Conflict):  # nor twice in one batch
        bob = LogLineId.of("person", "bob")
        log.append_batch([documents.creation_span(PrivateKey.generate(), TENANT, bob),
                          documents.creation_span(PrivateKey.generate(), TENANT, bob)])  # fmt: skip
    record = store.identity(author)
    assert record is not None and record.public_key == str(key.public_key)
    assert store.identity("logline-id://person/bob") is None
    assert _size(store) == 1


def test_ghost_expiry_rules(clocked_log: Log, clock: Clock) -> None:
    key = PrivateKey.generate()
    with pytest.raises(InvalidSpan):
        documents.creation_span(key, TENANT, LogLineId.of("ghost", "g1"))
    with pytest.raises(InvalidSpan):
        documents.creation_span(key, TENANT, LogLineId.of("person", "p1"),
                                expires_at=clock.now + timedelta(hours=1))  # fmt: skip
    already_expired = documents.creation_span(
        key, TENANT, LogLineId.of("ghost", "g1"), expires_at=clock.now - timedelta(seconds=1)
    )
    with pytest.raises(InvalidSpan) as info:
        clocked_log.append(already_expired)
    assert info.value.field == "payload.expires_at"


def test_rotation_retires_the_old_key(log: Log, store: Store, alice: Identity) -> None:
    author, old = alice
    new = PrivateKey.generate()
    rotation = documents.rotation_span(old, new.public_key, TENANT, author)
    receipt = log.append(rotation, wait="sequenced")

    record = store.identity(author)
    assert record is not None and record.public_key == str(new.public_key)
    old_record, new_record = store.keys(author)
    assert (old_record.public_key, old_record.valid_until) == (str(old.public_key),
                                                               receipt.entry.received)  # fmt: skip
    assert (new_record.public_key, new_record.valid_from, new_record.valid_until) == (
        str(new.public_key), receipt.entry.received, None
    )  # fmt: skip
    assert new_record.span_id == rotation.id

    with pytest.raises(SignatureError):
        log.append(make_span(old, author, title="signed with the retired key"))
    with pytest.raises(SignatureError):
        log.append(documents.rotation_span(old, PrivateKey.generate().public_key, TENANT, author))
    with pytest.raises(InvalidSpan):
        log.append(documents.rotation_span(new, new.public_key, TENANT, author))
    assert _size(store) == 2
    assert log.append(make_span(new, author, title="signed with the new key")).seq == 2
    assert _verify(log) == 3


def test_identity_documents_stay_on_the_identitys_own_log(
    log: Log, store: Store, alice: Identity
) -> None:
    author, key = alice
    new = PrivateKey.generate()
    with pytest.raises(InvalidSpan, match="belong on the log of acme"):
        log.append(documents.rotation_span(key, new.public_key, OTHER_TENANT, author))
    ghost_key = PrivateKey.generate()
    ghost = LogLineId.of("ghost", "visitor")
    expiry = datetime.now(UTC) + timedelta(days=1)
    log.append(documents.creation_span(ghost_key, TENANT, ghost, expires_at=expiry))
    with pytest.raises(InvalidSpan, match="belong on the log of acme"):
        log.append(documents.claim_span(key, author, ghost_key, str(ghost), OTHER_TENANT))
    assert store.log_head(OTHER_TENANT) is None
    # Spans themselves may go to any tenant's log, and both logs verify on their own.
    log.append(make_span(key, author, tenant=OTHER_TENANT))
    log.append(documents.rotation_span(key, new.public_key, TENANT, author))
    log.append(make_span(new, author, tenant=OTHER_TENANT))
    for tenant in (TENANT, OTHER_TENANT):
        log.checkpoint(tenant)
        verify_store(store, tenant, log.origin(tenant), log.verifier())


def test_a_key_rotated_elsewhere_is_noticed(backend: str, log: Log, alice: Identity) -> None:
    """A second writer (as another process would) rotates alice's key behind this log's back."""
    author, old = alice
    log.append(make_span(old, author), wait="sequenced")  # this log now knows the old key
    other_store = open_store(backend)
    other = Log(other_store, INSTANCE, PrivateKey.generate())
    try:
        new = PrivateKey.generate()
        other.append(documents.rotation_span(old, new.public_key, TENANT, author))
    finally:
        other.close()
        other_store.close()
    assert log.append(make_span(new, author), wait="sequenced").seq == 3
    with pytest.raises(SignatureError):  # the retired key, now that this log has noticed
        log.append(make_span(old, author), wait="sequenced")


def test_ghost_cannot_author_after_expiry(clocked_log: Log, store: Store, clock: Clock) -> None:
    ghost, key = make_identity(clocked_log, TENANT, "visitor-1", kind="ghost",
                               expires_at=clock.now + timedelta(seconds=60))  # fmt: skip
    record = store.identity(ghost)
    assert record is not None and record.expires_at == clock.ts(60)
    clocked_log.append(make_span(key, ghost, title="while alive"), wait="sequenced")
    with pytest.raises(InvalidSpan, match="cannot rotate"):
        clocked_log.append(documents.rotation_span(key, PrivateKey.generate().public_key, TENANT,
                                                   ghost))  # fmt: skip
    clock.advance(59)
    clocked_log.append(make_span(key, ghost, title="just before expiry"), wait="sequenced")
    clock.advance(1)
    with pytest.raises(UnknownAuthor, match="expired"):
        clocked_log.append(make_span(key, ghost, title="at expiry"))
    clock.advance(600)
    with pytest.raises(UnknownAuthor, match="expired"):
        clocked_log.append(make_span(key, ghost, title="long after"))
    assert _size(store) == 3
    assert _verify(clocked_log) == 3


def test_claimed_ghost_cannot_author(clocked_log: Log, store: Store, clock: Clock) -> None:
    ghost, ghost_key = make_identity(clocked_log, TENANT, "visitor-2", kind="ghost",
                                     expires_at=clock.now + timedelta(hours=1))  # fmt: skip
    alice, alice_key = make_identity(clocked_log, TENANT, "alice")
    clocked_log.append(make_span(ghost_key, ghost, title="as a ghost"), wait="sequenced")
    claim = documents.claim_span(alice_key, alice, ghost_key, ghost, TENANT)
    clocked_log.append(claim, wait="sequenced")

    record = store.identity(ghost)
    assert record is not None
    assert (record.status, record.claimed_by) == ("claimed", alice)
    with pytest.raises(UnknownAuthor, match="claimed"):
        clocked_log.append(make_span(ghost_key, ghost, title="after the claim"))
    bob, bob_key = make_identity(clocked_log, TENANT, "bob")
    with pytest.raises(Conflict, match="already claimed"):
        clocked_log.append(documents.claim_span(bob_key, bob, ghost_key, ghost, TENANT))
    assert _size(store) == 5
    clocked_log.append(make_span(alice_key, alice, title="alice is fine"), wait="sequenced")
    assert _verify(clocked_log) == 6


def test_claim_with_a_bad_proof_is_refused(clocked_log: Log, store: Store, clock: Clock) -> None:
    ghost, ghost_key = make_identity(clocked_log, TENANT, "visitor-3", kind="ghost",
                                     expires_at=clock.now + timedelta(minutes=10))  # fmt: skip
    alice, alice_key = make_identity(clocked_log, TENANT, "alice")
    bob, bob_key = make_identity(clocked_log, TENANT, "bob")
    size = _size(store)

    forged = documents.claim_span(alice_key, alice, PrivateKey.generate(), ghost, TENANT)
    with pytest.raises(InvalidSpan) as info:
        clocked_log.append(forged)
    assert info.value.field == "payload.proof"
    # a proof made out to alice, presented by bob: the proof binds the claimant
    alice_proof = documents.claim_span(alice_key, alice, ghost_key, ghost, TENANT).payload["proof"]
    stolen = new_span(bob_key, tenant=TENANT, author=bob, kind=documents.CLAIMED,
                      title="claim", payload={"ghost": ghost, "proof": alice_proof})  # fmt: skip
    with pytest.raises(InvalidSpan) as info:
        clocked_log.append(stolen)
    assert info.value.field == "payload.proof"
    with pytest.raises(InvalidSpan):  # only ghosts can be claimed
        clocked_log.append(documents.claim_span(alice_key, alice, bob_key, bob, TENANT))
    with pytest.raises(InvalidSpan):  # a ghost cannot claim
        clocked_log.append(documents.claim_span(ghost_key, ghost, ghost_key, ghost, TENANT))

    assert _size(store) == size
    record = store.identity(ghost)
    assert record is not None and (record.status, record.claimed_by) == ("active", None)
    clocked_log.append(make_span(ghost_key, ghost, title="still a ghost"), wait="sequenced")
    clock.advance(601)
    with pytest.raises(Conflict, match="expired"):
        clocked_log.append(documents.claim_span(alice_key, alice, ghost_key, ghost, TENANT))


def test_span_accepted_with_a_key_retired_in_the_same_instant_verifies(
    clocked_log: Log, store: Store, clock: Clock
) -> None:
    """A frozen clock gives two commits one `received`, as groups of a single commit have."""
    carol = "logline-id://person/carol"
    old, new = PrivateKey.generate(), PrivateKey.generate()
    clocked_log.append(documents.creation_span(old, "zzz", LogLineId.parse(carol)))
    clock.advance(1)
    clocked_log.append(make_span(old, carol, tenant="aaa"), wait="sequenced")  # accepted
    clocked_log.append(documents.rotation_span(old, new.public_key, "zzz", carol))
    assert _verify(clocked_log, "zzz") == 2
    assert _verify(clocked_log, "aaa") == 1


# --- replays and reverts --------------------------------------------------------------------------


def test_replay_must_name_a_logged_span(log: Log, store: Store, alice: Identity) -> None:
    author, key = alice
    original = make_span(key, author, title="original")
    log.append(original, wait="sequenced")
    replay = make_span(key, author, title="replay", status="simulated", replay_of=original.id)
    log.append(replay, wait="sequenced")

    with pytest.raises(InvalidSpan) as info:
        log.append(make_span(key, author, replay_of=uuid7()))
    assert info.value.field == "body.replay_of"
    other_id, other_key = make_identity(log, OTHER_TENANT, "olga")
    elsewhere = make_span(other_key, other_id, tenant=OTHER_TENANT)
    log.append(elsewhere, wait="sequenced")
    with pytest.raises(InvalidSpan):  # replay_of names a span of another tenant's log
        log.append(make_span(key, author, replay_of=elsewhere.id))
    # within one batch, a replay may name a span logged earlier in the batch
    first = make_span(key, author, title="first")
    log.append_batch([first, make_span(key, author, replay_of=first.id)], wait="sequenced")
    assert _size(store) == 5
    assert _ids(store.query(Query(TENANT, replay_of=original.id)).items) == [replay.id]


def test_revert_marks_the_original(log: Log, store: Store, alice: Identity) -> None:
    author, key = alice
    original = make_span(key, author, kind="payment.approved", payload={"amount": 5})
    log.append(original, wait="sequenced")
    revert = make_span(key, author, kind="payment.approved", title="undo",
                       status="reverted", caused_by=original.id)  # fmt: skip
    log.append(revert, wait="sequenced")

    stored_revert = store.span(TENANT, revert.id)
    assert stored_revert is not None
    assert stored_revert.span.body["status"] == "reverted"
    assert stored_revert.span.body["caused_by"] == original.id
    stored_original = store.span(TENANT, original.id)
    assert stored_original is not None and stored_original.reverted_by == revert.id

    again = make_span(key, author, title="undo again", status="reverted", caused_by=original.id)
    with pytest.raises(Conflict):
        log.append(again)
    with pytest.raises(InvalidSpan) as info:
        log.append(make_span(key, author, status="reverted", caused_by=revert.id))
    assert info.value.field == "body.caused_by"
    with pytest.raises(InvalidSpan) as info:
        log.append(make_span(key, author, status="reverted"))
    assert info.value.field == "body.caused_by"

    target = make_span(key, author, title="target")
    log.append(target, wait="sequenced")
    twice = [make_span(key, author, status="reverted", caused_by=target.id) for _ in range(2)]
    with pytest.raises(Conflict):  # a double revert inside one batch
        log.append_batch(twice)
    stored_target = store.span(TENANT, target.id)
    assert stored_target is not None and stored_target.reverted_by is None

    stored_original = store.span(TENANT, original.id)
    assert stored_original is not None and stored_original.reverted_by == revert.id
    assert _size(store) == 4
    assert _verify(log) == 4


# --- redaction ------------------------------------------------------------------------------------


def _redaction(key: PrivateKey, author: str, span_id: str, digest: str | None,
               reason: str = "erasure request") -> Span:  # fmt: skip
    payload = {"span_id": span_id, "payload_digest": digest, "reason": reason}
    return make_span(key, author, kind="logline.redaction", title="Redact", payload=payload)


def test_redaction_deletes_the_payload_and_keeps_proofs(
    log: Log, store: Store, alice: Identity
) -> None:
    author, key = alice
    secret = make_span(key, author, payload={"ssn": "078-05-1120"}, tags=["pii"])
    receipt = log.append(secret, wait="checkpointed")
    verify_receipt(receipt, log.verifier(), secret)
    redaction = _redaction(key, author, secret.id, secret.body["payload_digest"])
    log.append(redaction, wait="sequenced")

    stored = store.span(TENANT, secret.id)
    assert stored is not None
    assert stored.payload is None
    assert stored.redacted_by == redaction.id
    assert stored.span.payload is None
    assert stored.span.body == secret.body
    lid = log_id(store, TENANT)
    rows = raw_sql(store, "SELECT data FROM payloads WHERE log_id = :log_id", {"log_id": lid})
    assert all(b"078-05-1120" not in bytes(row[0]) for row in rows)
    assert len(rows) == 2  # alice's identity document and the redaction itself
    [page_item] = store.query(Query(TENANT, tags=("pii",))).items
    assert page_item.payload is None and page_item.redacted_by == redaction.id

    # the receipt given before the redaction still verifies, against the span as now stored
    verify_receipt(receipt, log.verifier(), stored.span)
    fresh = log.receipt(TENANT, secret.id)
    assert verify_receipt(fresh, log.verifier(), stored.span).size == 2
    latest = log.checkpoint(TENANT)
    assert latest.size == 3
    proof = log.inclusion_proof(TENANT, stored.seq, latest.size)
    merkle.verify_inclusion(stored.seq, 3, stored.entry.leaf_hash(), proof, latest.root)

    with pytest.raises(InvalidSpan):  # nothing left to redact
        log.append(_redaction(key, author, secret.id, secret.body["payload_digest"]))
    summary = verify_store(store, TENANT, log.origin(TENANT), log.verifier())
    assert (summary.size, summary.redacted) == (3, 1)


def test_identity_documents_cannot_be_redacted(log: Log, store: Store, alice: Identity) -> None:
    author, key = alice
    record = store.identity(author)
    assert record is not None
    document = store.span(TENANT, record.span_id)
    assert document is not None
    with pytest.raises(InvalidSpan) as info:
        log.append(_redaction(key, author, record.span_id, document.span.body["payload_digest"]))
    assert info.value.field == "payload.span_id"
    document = store.span(TENANT, record.span_id)
    assert document is not None and document.payload is not None
    assert document.redacted_by is None
    assert _size(store) == 1


def test_redaction_with_a_wrong_target_or_digest_is_refused(
    log: Log, store: Store, alice: Identity
) -> None:
    author, key = alice
    target = make_span(key, author, payload={"card": "4111"})
    bare = make_span(key, author, title="no payload")
    log.append_batch([target, bare], wait="sequenced")
    with pytest.raises(InvalidSpan) as info:
        log.append(_redaction(key, author, target.id, "sha256:" + "0" * 64))
    assert info.value.field == "payload.payload_digest"
    with pytest.raises(InvalidSpan):  # nothing to redact
        log.append(_redaction(key, author, bare.id, None))
    with pytest.raises(NotFound):
        log.append(_redaction(key, author, uuid7(), target.body["payload_digest"]))
    with pytest.raises(InvalidSpan) as info:
        log.append(_redaction(key, author, target.id, target.body["payload_digest"], reason=" "))
    assert info.value.field == "payload.reason"
    with pytest.raises(InvalidSpan):
        log.append(make_span(key, author, kind="logline.redaction", title="Redact",
                             payload={"span_id": target.id}))  # fmt: skip
    stored = store.span(TENANT, target.id)
    assert stored is not None and stored.payload == target.payload_bytes
    assert stored.redacted_by is None
    assert _size(store) == 3


# --- queries and pagination -----------------------------------------------------------------------


class _Fixture:
    """A small log with one span per filter; `ts` values are fixed, 30 minutes in the past."""

    def __init__(self, log: Log) -> None:
        self.alice, alice_key = make_identity(log, TENANT, "alice")
        self.bob, bob_key = make_identity(log, TENANT, "bob")
        self.t0 = ts_from_now(-1800)
        self.t1 = ts_from_now(-1740)
        self.t2 = ts_from_now(-1680)
        self.paid = make_span(
            alice_key,
            self.alice,
            kind="payment.approved",
            ts=self.t0,
            tags=["finance", "q4"],
            contract_id="c-1",
            payload={"n": 1},
        )
        self.refund = make_span(
            bob_key,
            self.bob,
            kind="payment.refunded",
            ts=self.t1,
            tags=["finance"],
            workflow_id="wf-1",
        )
        self.order = make_span(
            alice_key, self.alice, kind="order.created", ts=self.t2, tags=["q4"], flow_id="f-1"
        )
        self.lookalike = make_span(alice_key, self.alice, kind="payments.approved")
        self.underscore = make_span(alice_key, self.alice, kind="pay_ment.done")
        self.not_underscore = make_span(alice_key, self.alice, kind="payxment.done")
        self.revert = make_span(
            alice_key,
            self.alice,
            kind="payment.approved",
            status="reverted",
            caused_by=self.paid.id,
        )
        self.replay = make_span(bob_key, self.bob, kind="order.created", status="simulated",
                                replay_of=self.order.id)  # fmt: skip
        self.spans = [self.paid, self.refund, self.order, self.lookalike, self.underscore,
                      self.not_underscore, self.revert, self.replay]  # fmt: skip
        log.append_batch(self.spans, wait="sequenced")


def test_query_filters(log: Log, store: Store) -> None:
    f = _Fixture(log)

    def ids(**filters: Any) -> list[str]:
        return _ids(store.query(Query(TENANT, **filters)).items)

    assert ids(kind="payment.*") == [f.paid.id, f.refund.id, f.revert.id]
    assert ids(kind="payment.approved") == [f.paid.id, f.revert.id]
    assert ids(kind="*.approved") == [f.paid.id, f.lookalike.id, f.revert.id]
    assert ids(kind="pay_ment.*") == [f.underscore.id]
    assert ids(kind="order.c?eated") == [f.order.id, f.replay.id]
    assert ids(kind="identity.*") == ids(tags=("identity",))
    assert len(ids(kind="identity.*")) == 2
    assert ids(kind="nothing.*") == []
    assert ids(author=f.bob)[1:] == [f.refund.id, f.replay.id]
    assert ids(status="reverted") == [f.revert.id]
    assert ids(status="simulated") == [f.replay.id]
    assert ids(tags=("finance",)) == [f.paid.id, f.refund.id]
    assert ids(tags=("q4",)) == [f.paid.id, f.order.id]
    assert ids(tags=("finance", "q4")) == [f.paid.id]
    assert ids(tags=("finance", "nope")) == []
    assert ids(since=f.t1, until=f.t2) == [f.refund.id]
    assert ids(until=f.t1) == [f.paid.id]
    assert ids(since=f.t1, tags=("finance",)) == [f.refund.id]
    assert len(ids(since=f.t0)) == 10
    assert ids(contract_id="c-1") == [f.paid.id]
    assert ids(workflow_id="wf-1") == [f.refund.id]
    assert ids(flow_id="f-1") == [f.order.id]
    assert ids(caused_by=f.paid.id) == [f.revert.id]
    assert ids(replay_of=f.order.id) == [f.replay.id]
    assert ids(kind="payment.*", author=f.alice, tags=("finance",)) == [f.paid.id]
    assert ids(kind="payment.*", descending=True) == [f.revert.id, f.refund.id, f.paid.id]
    assert ids(after_seq=8) == [f.replay.id]
    assert ids(after_seq=1, before_seq=4) == [f.paid.id, f.refund.id]
    assert ids(after_seq=1, before_seq=4, descending=True) == [f.refund.id, f.paid.id]
    assert store.query(Query(TENANT, kind="payment.*")).next_cursor is None
    assert store.query(Query(OTHER_TENANT)).items == []

    [item] = store.query(Query(TENANT, contract_id="c-1")).items
    assert item.payload == f.paid.payload_bytes
    assert item.entry.span_hash == f.paid.hash
    assert item.reverted_by == f.revert.id


def test_json_text_is_to_json(log: Log, store: Store) -> None:
    f = _Fixture(log)
    items = store.query(Query(TENANT, limit=100)).items
    assert any(i.reverted_by for i in items) and any(i.payload is None for i in items)
    for item in items:
        assert json.loads(item.json_text()) == item.to_json()
    del f


def test_query_title_text(log: Log, store: Store, alice: Identity) -> None:
    author, key = alice
    titles = ["Invoice 42 paid by ACME", "Refund of invoice 7", "Deploy finished",
              'quote" OR * NEAR( injection', "paid paid"]  # fmt: skip
    spans = [make_span(key, author, title=title) for title in titles]
    log.append_batch(spans, wait="sequenced")
    other = make_identity(log, OTHER_TENANT, "olga")
    log.append(make_span(other[1], other[0], tenant=OTHER_TENANT, title="invoice paid"),
               wait="sequenced")  # fmt: skip

    def ids(text: str, **filters: Any) -> list[str]:
        return _ids(store.query(Query(TENANT, text=text, **filters)).items)

    assert ids("invoice") == [spans[0].id, spans[1].id]  # case-insensitive, this tenant only
    assert ids("INVOICE paid") == [spans[0].id]  # every word must occur
    assert ids("paid") == [spans[0].id, spans[4].id]
    assert ids("paid", descending=True, limit=1) == [spans[4].id]
    assert ids('OR * NEAR( "injection') == [spans[3].id]  # operators are plain words
    assert ids("nothing") == []
    with pytest.raises(InvalidInput):
        store.query(Query(TENANT, text=" *** "))


def _paginate(store: Store, limit: int, descending: bool, **filters: Any) -> list[list[int]]:
    pages: list[list[int]] = []
    after = before = None
    while True:
        page = store.query(Query(TENANT, limit=limit, descending=descending, after_seq=after,
                                 before_seq=before, **filters))  # fmt: skip
        pages.append([item.seq for item in page.items])
        if page.next_cursor is None:
            return pages
        seq, desc = decode_cursor(page.next_cursor)
        assert desc is descending
        assert seq == pages[-1][-1]
        after, before = (None, seq) if desc else (seq, None)
        assert len(pages) < 100


@pytest.mark.parametrize("descending", [False, True], ids=["asc", "desc"])
def test_cursor_pagination(log: Log, store: Store, alice: Identity, descending: bool) -> None:
    author, key = alice
    spans = [make_span(key, author, title=f"event {i}", tags=["even"] if i % 2 == 0 else [])
             for i in range(23)]  # fmt: skip
    log.append_batch(spans, wait="sequenced")
    cases: list[tuple[list[int], dict[str, Any]]] = [
        (list(range(24)), {}),
        (list(range(1, 24, 2)), {"tags": ("even",)}),  # spans 0, 2, ... sit at seqs 1, 3, ...
    ]
    for limit in (1, 4, 5, 12, 24, 25):  # 4, 12, 24 divide the counts: no empty last page
        for ascending, filters in cases:
            expected = ascending[::-1] if descending else ascending
            pages = _paginate(store, limit, descending, **filters)
            flat = [seq for page in pages for seq in page]
            assert flat == expected, (limit, filters)  # in order, no duplicates, no gaps
            assert all(len(page) == limit for page in pages[:-1])
            assert 1 <= len(pages[-1]) <= limit
            assert len(pages) == -(-len(expected) // limit)


def test_query_limits_and_bad_cursors(store: Store) -> None:
    for limit in (0, -1, 1001):
        with pytest.raises(InvalidInput):
            store.query(Query(TENANT, limit=limit))
    assert store.query(Query(TENANT, limit=1000)).items == []
    negative = base64.urlsafe_b64encode(b'{"seq":-1,"desc":false}').decode()
    wrong_type = base64.urlsafe_b64encode(b'{"seq":"1","desc":false}').decode()
    for kind in ("Payment.*", "a b", "%", "x" * 200):
        with pytest.raises(InvalidInput):
            store.query(Query(TENANT, kind=kind))
    for cursor in ("", "not a cursor", negative, wrong_type, "W10"):
        with pytest.raises(InvalidInput):
            decode_cursor(cursor)


# --- checkpoints and proofs -----------------------------------------------------------------------


def test_checkpoint_is_reused_until_the_log_grows(log: Log, store: Store, alice: Identity) -> None:
    author, key = alice
    lid = log_id(store, TENANT)
    assert store.latest_checkpoint(lid) is None
    first = log.checkpoint(TENANT)
    assert first.size == 1
    assert log.checkpoint(TENANT) == first
    assert store.checkpoints(lid) == [first]
    opened = open_checkpoint(first.note, log.verifier(), origin=log.origin(TENANT))
    assert (opened.size, opened.root) == (first.size, first.root)
    leaves = [merkle.leaf_hash(s.leaf) for s in store.spans(TENANT, 0, 1)]
    assert first.root == merkle.root_from_leaves(leaves)

    log.append_batch([make_span(key, author), make_span(key, author)], wait="sequenced")
    assert log.checkpoint(TENANT, min_size=1) == first  # an old one is good enough
    second = log.checkpoint(TENANT)
    assert second.size == 3 and second.root != first.root
    assert log.checkpoint(TENANT) == second
    assert store.checkpoints(lid) == [first, second]
    assert store.latest_checkpoint(lid) == second
    assert store.checkpoint(lid, 1) == first
    assert store.checkpoint(lid, 2) is None

    # storing a size twice keeps the first
    bogus = CheckpointRecord(3, bytes(32), "bogus", second.created_at)
    store.insert_checkpoint(lid, bogus)
    assert store.checkpoint(lid, 3) == second
    with pytest.raises(NotFound):
        log.checkpoint(OTHER_TENANT)
    assert _verify(log) == 3


def test_checkpointed_receipts_verify(log: Log, store: Store, alice: Identity) -> None:
    author, key = alice
    spans = [make_span(key, author, title=f"event {i}", payload={"i": i}) for i in range(5)]
    receipts = log.append_batch(spans)
    single = make_span(key, author, title="single")
    receipts.append(log.append(single))
    for receipt, span in zip(receipts, [*spans, single], strict=True):
        assert receipt.status == "checkpointed"
        checkpoint = verify_receipt(receipt, log.verifier(), span)
        assert checkpoint.size > receipt.seq
        assert checkpoint.origin == log.origin(TENANT)
        again = Receipt.from_json(receipt.to_json())
        assert again == receipt
        verify_receipt(again, log.verifier(), span)

    with pytest.raises(VerificationError):  # the receipt of another span
        verify_receipt(receipts[0], log.verifier(), spans[1])
    stranger = NoteSigner(INSTANCE, PrivateKey.generate()).verifier()
    with pytest.raises(SignatureError):
        verify_receipt(receipts[0], stranger, spans[0])
    with pytest.raises(VerificationError):
        verify_receipt(replace(receipts[0], entry=receipts[1].entry), log.verifier())
    sequenced = log.append(make_span(key, author), wait="sequenced")
    with pytest.raises(VerificationError):
        verify_receipt(sequenced, log.verifier())
    verify_receipt(log.receipt(TENANT, spans[2].id), log.verifier(), spans[2])


def test_historical_inclusion_and_consistency_proofs(
    log: Log, store: Store, alice: Identity
) -> None:
    author, key = alice
    log.checkpoint(TENANT)
    for n in (1, 2, 1, 4, 3, 2, 8):
        log.append_batch([make_span(key, author, title=f"b{n}.{i}") for i in range(n)],
                         wait="sequenced")  # fmt: skip
        log.checkpoint(TENANT)
    records = store.checkpoints(log_id(store, TENANT))
    assert [r.size for r in records] == [1, 2, 4, 5, 9, 12, 14, 22]
    leaves = [merkle.leaf_hash(s.leaf) for s in store.spans(TENANT, 0, 22)]

    for record in records:
        opened = open_checkpoint(record.note, log.verifier(), origin=log.origin(TENANT))
        assert (opened.size, opened.root) == (record.size, record.root)
        assert record.root == merkle.root_from_leaves(leaves[: record.size])
        for seq in range(record.size):
            proof = log.inclusion_proof(TENANT, seq, record.size)
            merkle.verify_inclusion(seq, record.size, leaves[seq], proof, record.root)
    for i, old in enumerate(records):
        for new in records[i:]:
            proof = log.consistency_proof(TENANT, old.size, new.size)
            merkle.verify_consistency(old.size, new.size, proof, old.root, new.root)

    proof = log.inclusion_proof(TENANT, 3, 9)
    with pytest.raises(VerificationError):
        merkle.verify_inclusion(3, 9, leaves[4], proof, records[4].root)
    proof = log.consistency_proof(TENANT, 5, 14)
    with pytest.raises(VerificationError):
        merkle.verify_consistency(5, 14, proof, records[2].root, records[6].root)
    with pytest.raises(NotFound):
        log.inclusion_proof(TENANT, 9, 9)
    with pytest.raises(NotFound):
        log.inclusion_proof(TENANT, 0, 23)
    with pytest.raises(NotFound):
        log.consistency_proof(TENANT, 0, 5)
    with pytest.raises(NotFound):
        log.consistency_proof(TENANT, 6, 5)
    with pytest.raises(NotFound):
        log.consistency_proof(TENANT, 5, 23)
    assert _verify(log) == 22


# --- concurrency ----------------------------------------------------------------------------------

THREADS = 8
ROUNDS = 12


def _hammer(logs: list[Log], writers: dict[str, Identity], tenants: list[str],
            ) -> dict[str, list[tuple[Receipt, Span]]]:  # fmt: skip
    """THREADS threads append to their tenant (thread i: tenants[i % len]) through logs[i % len]."""
    barrier = threading.Barrier(THREADS)

    def work(i: int) -> tuple[str, list[tuple[Receipt, Span]]]:
        tenant = tenants[i % len(tenants)]
        log = logs[i % len(logs)]
        author, key = writers[tenant]
        out: list[tuple[Receipt, Span]] = []
        barrier.wait()
        for j in range(ROUNDS):
            wait: Wait = "checkpointed" if j % 3 == 0 else "sequenced"
            if j % 4 == 3:
                spans = [make_span(key, author, tenant=tenant, title=f"t{i} r{j} b{k}")
                         for k in range(3)]  # fmt: skip
                out.extend(zip(log.append_batch(spans, wait=wait), spans, strict=True))
            else:
                span = make_span(key, author, tenant=tenant, title=f"t{i} r{j}")
                out.append((log.append(span, wait=wait), span))
        return tenant, out

    results: dict[str, list[tuple[Receipt, Span]]] = {tenant: [] for tenant in tenants}
    with ThreadPoolExecutor(THREADS) as pool:
        for tenant, out in pool.map(work, range(THREADS)):
            results[tenant].extend(out)
    return results


def _check_hammered(log: Log, results: dict[str, list[tuple[Receipt, Span]]]) -> None:
    for tenant, pairs in results.items():
        seqs = sorted(receipt.seq for receipt, _ in pairs)
        assert seqs == list(range(1, len(pairs) + 1))  # unique, no gaps; 0 is the identity
        assert _size(log.store, tenant) == len(pairs) + 1
        for receipt, span in pairs:
            stored = log.store.span_at(tenant, receipt.seq)
            assert stored is not None and stored.entry == receipt.entry
            assert stored.body == span.body_bytes
            if receipt.status == "checkpointed":
                verify_receipt(receipt, log.verifier(), span)
        assert _verify(log, tenant) == len(pairs) + 1


def test_concurrent_appends_to_two_tenants(log: Log) -> None:
    tenants = [TENANT, OTHER_TENANT]
    writers = {tenant: make_identity(log, tenant, f"writer-{tenant}") for tenant in tenants}
    results = _hammer([log], writers, tenants)
    assert sum(len(pairs) for pairs in results.values()) == THREADS * (ROUNDS + ROUNDS // 4 * 2)
    _check_hammered(log, results)


def test_two_stores_on_one_database_keep_one_order(backend: str, store: Store) -> None:
    """Two stores (as two processes would have) append to one tenant: the database serializes."""
    key = PrivateKey.generate()
    first = Log(store, instance=INSTANCE, key=key)
    second_store = open_store(backend)
    second = Log(second_store, instance=INSTANCE, key=key)
    try:
        writers = {TENANT: make_identity(first, TENANT, "writer")}
        results = _hammer([first, second], writers, [TENANT])
        _check_hammered(first, results)
    finally:
        first.close()
        second.close()
        second_store.close()


# --- verify_store finds tampering -----------------------------------------------------------------

TARGET = 5  # the entry the tamper tests damage; checkpoints exist at sizes 4 and 8


def _tamper_column(store: Store, table: str, column: str, seq: int,
                   change: Callable[[bytes], bytes]) -> None:  # fmt: skip
    lid = log_id(store, TENANT)
    where = "log_id = :log_id AND seq = :seq"
    params: dict[str, Any] = {"log_id": lid, "seq": seq}
    [(value,)] = raw_sql(store, f"SELECT {column} FROM {table} WHERE {where}", params)
    changed = change(bytes(value))
    assert changed != bytes(value)
    raw_sql(
        store, f"UPDATE {table} SET {column} = :value WHERE {where}", {**params, "value": changed}
    )


def _replace(old: bytes, new: bytes) -> Callable[[bytes], bytes]:
    def change(data: bytes) -> bytes:
        assert data.count(old) == 1, (old, data)
        return data.replace(old, new)

    return change


def _tamper_node(store: Store, level: int, index: int) -> None:
    lid = log_id(store, TENANT)
    params = {"log_id": lid, "node": node_key(level, index)}
    [(value,)] = raw_sql(store, "SELECT hash FROM merkle_nodes WHERE log_id = :log_id "
                         "AND node = :node", params)  # fmt: skip
    raw_sql(store, "UPDATE merkle_nodes SET hash = :hash WHERE log_id = :log_id AND node = :node",
            {**params, "hash": flip_bit(bytes(value), 0)})  # fmt: skip


def _tamper_note(store: Store, size: int, change: Callable[[str], str]) -> None:
    lid = log_id(store, TENANT)
    params = {"log_id": lid, "size": size}
    [(note,)] = raw_sql(store, "SELECT note FROM checkpoints WHERE log_id = :log_id "
                        "AND size = :size", params)  # fmt: skip
    raw_sql(store, "UPDATE checkpoints SET note = :note WHERE log_id = :log_id AND size = :size",
            {**params, "note": change(str(note))})  # fmt: skip


def _swap_leaves(store: Store) -> None:
    lid = log_id(store, TENANT)
    a, b = (store.span_at(TENANT, seq) for seq in (TARGET, TARGET + 1))
    assert a is not None and b is not None
    for seq, leaf in ((TARGET, b.leaf), (TARGET + 1, a.leaf)):
        raw_sql(store, "UPDATE entries SET leaf = :leaf WHERE log_id = :log_id AND seq = :seq",
                {"log_id": lid, "seq": seq, "leaf": leaf})  # fmt: skip


def _delete_payload(store: Store, seq: int) -> None:
    raw_sql(store, "DELETE FROM payloads WHERE log_id = :l AND seq = :s",
            {"l": log_id(store, TENANT), "s": seq})  # fmt: skip


def _flip_note_signature(note: str) -> str:
    text, _, line = note.rpartition("\n\n")
    prefix, _, encoded = line.rstrip("\n").rpartition(" ")
    return f"{text}\n\n{prefix} {b64encode(flip_bit(b64decode(encoded), 20))}\n"


def _forge_checkpoint(log: Log) -> Callable[[str], str]:
    """A note properly signed by the log's key, over a wrong root (a forked or buggy signer)."""
    forged = sign_checkpoint(Checkpoint(log.origin(TENANT), 4, bytes(32)), log.signer)
    return lambda note: forged


Tamper = Callable[[Log, Store], None]

TAMPERS: dict[str, tuple[Tamper, int | None]] = {
    # name: (how to damage the log, the seq VerificationError must name; None: not an entry)
    "body_field": (
        lambda log, s: _tamper_column(
            s, "entries", "body", TARGET, _replace(b'"title":"event 4"', b'"title":"event X"')
        ),
        TARGET,
    ),
    "body_garbage": (
        lambda log, s: _tamper_column(s, "entries", "body", TARGET, lambda b: b"\xff" + b[1:]),
        TARGET,
    ),
    "leaf_decision": (
        lambda log, s: _tamper_column(
            s, "entries", "leaf", TARGET, _replace(b'"allow"', b'"allox"')
        ),
        TARGET,
    ),
    "leaf_swapped": (lambda log, s: _swap_leaves(s), TARGET),
    "signature": (
        lambda log, s: _tamper_column(s, "entries", "signature", TARGET, lambda b: flip_bit(b, 5)),
        TARGET,
    ),
    "payload": (
        lambda log, s: _tamper_column(
            s, "payloads", "data", TARGET, _replace(b'{"i":4}', b'{"i":5}')
        ),
        TARGET,
    ),
    "payload_deleted": (lambda log, s: _delete_payload(s, TARGET), TARGET),
    "merkle_leaf_node": (lambda log, s: _tamper_node(s, 0, TARGET), TARGET),
    "merkle_inner_node": (lambda log, s: _tamper_node(s, 1, TARGET // 2), TARGET),
    "merkle_top_node": (lambda log, s: _tamper_node(s, 3, 0), 7),
    "checkpoint_note": (
        lambda log, s: _tamper_note(s, 4, lambda n: n.replace("\n4\n", "\n3\n", 1)),
        None,
    ),
    "checkpoint_signature": (lambda log, s: _tamper_note(s, 8, _flip_note_signature), None),
    "checkpoint_forged": (lambda log, s: _tamper_note(s, 4, _forge_checkpoint(log)), None),
}


@pytest.mark.parametrize("tamper", sorted(TAMPERS))
def test_verify_store_detects_tampering(
    log: Log, store: Store, alice: Identity, tamper: str
) -> None:
    author, key = alice
    spans = [make_span(key, author, title=f"event {i}", payload={"i": i}) for i in range(9)]
    log.append_batch(spans[:3], wait="sequenced")
    assert log.checkpoint(TENANT).size == 4
    log.append_batch(spans[3:7], wait="sequenced")
    assert log.checkpoint(TENANT).size == 8
    log.append_batch(spans[7:], wait="sequenced")
    assert _verify(log) == 10

    damage, seq = TAMPERS[tamper]
    damage(log, store)
    with pytest.raises(VerificationError) as info:
        _verify(log)
    assert info.value.seq == seq, str(info.value)
    if seq is not None:
        assert str(info.value).startswith(f"entry {seq}: ")


def test_verify_store_detects_a_corrupted_checkpoint_root(
    log: Log, store: Store, alice: Identity
) -> None:
    author, key = alice
    log.append(make_span(key, author), wait="checkpointed")
    raw_sql(store, "UPDATE checkpoints SET root = :root WHERE log_id = :l AND size = 2",
            {"root": bytes(32), "l": log_id(store, TENANT)})  # fmt: skip
    # the log now refuses to sign any later checkpoint ...
    log.append(make_span(key, author), wait="sequenced")
    with pytest.raises(VerificationError, match="refusing to sign"):
        log.checkpoint(TENANT)
    # ... so verification of the store must report the damage
    with pytest.raises(VerificationError):
        _verify(log)


def test_verify_store_detects_a_false_redaction_mark(
    log: Log, store: Store, alice: Identity
) -> None:
    author, key = alice
    victim = make_span(key, author, payload={"keep": "me"})
    log.append(victim, wait="sequenced")
    lid = log_id(store, TENANT)
    fake = uuid7()
    raw_sql(store, "UPDATE entries SET redacted_by = :by WHERE log_id = :l AND seq = 1",
            {"by": fake, "l": lid})  # fmt: skip
    raw_sql(store, "DELETE FROM payloads WHERE log_id = :l AND seq = 1", {"l": lid})
    with pytest.raises(VerificationError, match=victim.id):
        _verify(log)


def test_verify_store_detects_a_deleted_entry(log: Log, store: Store, alice: Identity) -> None:
    author, key = alice
    log.append_batch([make_span(key, author, title=f"event {i}") for i in range(4)],
                     wait="sequenced")  # fmt: skip
    lid = log_id(store, TENANT)
    raw_sql(store, "DELETE FROM entries WHERE log_id = :l AND seq = 2", {"l": lid})
    with pytest.raises(VerificationError) as info:
        _verify(log)
    assert info.value.expected == 2  # the position where entry 2 should have been


def test_a_redaction_cannot_be_redacted(log: Log, store: Store, alice: Identity) -> None:
    author, key = alice
    target = make_span(key, author, payload={"secret": 1})
    log.append(target, wait="sequenced")
    first = _redaction_of(key, author, target)
    log.append(first, wait="sequenced")
    with pytest.raises(InvalidSpan, match="redactions can't be redacted"):
        log.append(_redaction_of(key, author, first), wait="sequenced")
    assert _verify(log) == 3


def _redaction_of(key: PrivateKey, author: str, target: Span) -> Span:
    payload = {"span_id": target.id, "payload_digest": target.body["payload_digest"],
               "reason": "asked to"}  # fmt: skip
    return make_span(key, author, kind="logline.redaction", payload=payload)


def test_a_retired_key_never_returns(log: Log, store: Store, alice: Identity) -> None:
    author, first = alice
    second = PrivateKey.generate()
    log.append(documents.rotation_span(first, second.public_key, TENANT, author))
    with pytest.raises(InvalidSpan, match="used this key before"):
        log.append(documents.rotation_span(second, first.public_key, TENANT, author))
    assert _size(store) == 2


def test_the_longest_valid_identity_fits(log: Log, store: Store) -> None:
    handle = "a" * 64
    author, key = make_identity(log, TENANT, handle, "service")
    assert len(author) == 85
    log.append(make_span(key, author), wait="sequenced")
    assert _verify(log) == 2


def test_received_never_goes_backwards(clocked_log: Log, store: Store, clock: Clock) -> None:
    author, key = make_identity(clocked_log, TENANT, "alice")
    first = clocked_log.append(make_span(key, author, ts=clock.ts()), wait="sequenced")
    clock.advance(-30)  # the clock of the next writer is behind
    second = clocked_log.append(make_span(key, author, ts=clock.ts()), wait="sequenced")
    assert second.entry.received == first.entry.received
    assert _verify(clocked_log) == 3


def test_a_group_whose_commit_fails_does_not_fail_its_batch_mates(
    log: Log, store: Store, alice: Identity, monkeypatch: pytest.MonkeyPatch
) -> None:
    """White-box: two callers' groups share one transaction; one of them breaks the database."""
    from logline.ledger.admission import Prepared
    from logline.ledger.log import _Group

    author, key = alice
    good = _Group(TENANT, [Prepared(make_span(key, author), str(key.public_key))])
    bad = _Group(OTHER_TENANT, [Prepared(make_span(key, author, tenant=OTHER_TENANT),
                                         str(key.public_key))])  # fmt: skip
    real = Log._commit_tenant

    def failing(self: Log, tx: Any, tenant: str, groups: list[Any]) -> None:
        if tenant == OTHER_TENANT:
            raise RuntimeError("the database refused a value")
        real(self, tx, tenant, groups)

    monkeypatch.setattr(Log, "_commit_tenant", failing)
    log._commit([good, bad])
    assert good.error is None and [e.seq for e in good.entries] == [1]
    assert isinstance(bad.error, StorageError) and bad.entries == []
    assert _size(store) == 2 and store.log_head(OTHER_TENANT) is None


def test_sqlite_url_sets_durability(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'n.db'}?synchronous=normal")
    try:
        assert sql_store(store)._conn().raw.execute("PRAGMA synchronous").fetchone()[0] == 1
    finally:
        store.close()
    store = open_store(f"sqlite:///{tmp_path / 'f.db'}")
    try:
        assert sql_store(store)._conn().raw.execute("PRAGMA synchronous").fetchone()[0] == 2
    finally:
        store.close()
    with pytest.raises(StorageError, match="only SQLite URL option"):
        open_store(f"sqlite:///{tmp_path / 'x.db'}?journal=off")


def test_authors_of_a_range(log: Log, store: Store, alice: Identity) -> None:
    author, key = alice
    bob, _ = make_identity(log, TENANT, "bob")
    log.append(make_span(key, author), wait="sequenced")
    assert store.authors(TENANT, 0, 3) == sorted([author, bob])
    assert store.authors(TENANT, 2, 3) == [author]
    assert store.authors(OTHER_TENANT, 0, 3) == []
