"""Bundles: export, offline verification, import, and that tampering with any byte is caught."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from helpers import TENANT, make_identity
from logline.canonical import canonicalize
from logline.errors import (
    Conflict,
    LogLineError,
    ParseError,
    SignatureError,
    UnknownAuthor,
    VerificationError,
)
from logline.identity.keys import PrivateKey
from logline.ledger.admission import REDACTION
from logline.ledger.bundle import export_bundle, import_bundle, verify_bundle
from logline.ledger.checkpoint import NoteVerifier
from logline.ledger.log import Log
from logline.ledger.span import new_span
from logline.ledger.verify import verify_store
from logline.store import open_store


def _populate(log: Log) -> None:
    alice, alice_key = make_identity(log, TENANT, "alice")
    bob, bob_key = make_identity(log, TENANT, "bob", "service")
    first = None
    for i in range(12):
        author, key = (alice, alice_key) if i % 2 else (bob, bob_key)
        span = new_span(key, tenant=TENANT, author=author, kind="payment.approved",
                        title=f"payment {i} ✓", payload={"amount": i * 1.5, "n": i},
                        tags=["finance", f"batch-{i % 3}"], caused_by=first)  # fmt: skip
        log.append(span, wait="sequenced")
        first = first or span.id
    stored = next(s for s in log.store.spans(TENANT, 0, 20) if s.payload is not None
                  and s.span.kind == "payment.approved")  # fmt: skip
    redaction = new_span(alice_key, tenant=TENANT, author=alice, kind=REDACTION,
                         title="forget a payment",
                         payload={"span_id": stored.span.id,
                                  "payload_digest": stored.span.body["payload_digest"],
                                  "reason": "customer request"})  # fmt: skip
    log.append(redaction, wait="sequenced")
    log.checkpoint(TENANT)


@pytest.fixture(scope="module")
def bundle_text(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    path = tmp_path_factory.mktemp("bundle") / "source.db"
    store = open_store(f"sqlite:///{path}")
    log = Log(store, "source.local", PrivateKey.generate())
    try:
        _populate(log)
        out = io.StringIO()
        export_bundle(log, TENANT, out)
        yield out.getvalue(), str(log.verifier())
    finally:
        log.close()
        store.close()


@pytest.fixture
def replica(tmp_path: Path) -> Iterator[Log]:
    """A second, empty instance to import into."""
    store = open_store(f"sqlite:///{tmp_path / 'replica.db'}")
    log = Log(store, "replica.local", PrivateKey.generate())
    try:
        yield log
    finally:
        log.close()
        store.close()


def test_bundle_verifies_offline_and_counts_redaction(bundle_text: tuple[str, str]) -> None:
    text, key = bundle_text
    summary = verify_bundle(io.StringIO(text), trusted_key=NoteVerifier.parse(key))
    assert summary.size == 15
    assert summary.redacted == 1


def test_pinned_key_mismatch_is_refused(bundle_text: tuple[str, str]) -> None:
    other = NoteVerifier("source.local", PrivateKey.generate().public_key)
    with pytest.raises(VerificationError, match="log key"):
        verify_bundle(io.StringIO(bundle_text[0]), trusted_key=other)


def test_truncated_bundle_is_refused(bundle_text: tuple[str, str]) -> None:
    lines = bundle_text[0].splitlines(keepends=True)
    with pytest.raises(VerificationError):
        verify_bundle(io.StringIO("".join(lines[:-1])))
    with pytest.raises(LogLineError):
        verify_bundle(io.StringIO("".join(lines[:-2] + lines[-1:])))
    with pytest.raises(ParseError):
        verify_bundle(io.StringIO(""))


def _mutate(text: str, line_no: int, position: int, replacement: str) -> str | None:
    lines = text.split("\n")
    line = lines[line_no]
    position %= len(line)
    if line[position] == replacement:
        return None
    lines[line_no] = line[:position] + replacement + line[position + 1 :]
    return "\n".join(lines)


def _verified_lines(text: str) -> list[int]:
    """Lines whose every byte is covered: entries and the checkpoint (not header metadata)."""
    return [
        i for i, line in enumerate(text.split("\n"))
        if line and json.loads(line)["type"] in ("entry", "checkpoint")
    ]  # fmt: skip


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_any_changed_byte_of_an_entry_or_checkpoint_is_detected(
    bundle_text: tuple[str, str], data: st.DataObject
) -> None:
    text, key = bundle_text
    line_no = data.draw(st.sampled_from(_verified_lines(text)))
    position = data.draw(st.integers(min_value=0, max_value=10_000))
    replacement = data.draw(st.characters(min_codepoint=0x20, max_codepoint=0x7E))
    tampered = _mutate(text, line_no, position, replacement)
    if tampered is None:
        return
    # Every failure must be one of ours, never a leaked KeyError or TypeError.
    with pytest.raises(LogLineError):
        verify_bundle(io.StringIO(tampered), trusted_key=NoteVerifier.parse(key))


def test_range_bundle_verifies_with_left_frontier_and_consistency(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'r.db'}")
    log = Log(store, "range.local", PrivateKey.generate())
    try:
        _populate(log)
        for start, end in [(0, 1), (3, 9), (5, 15), (14, 15), (1, 2)]:
            out = io.StringIO()
            assert export_bundle(log, TENANT, out, start=start, end=end) == end - start
            summary = verify_bundle(io.StringIO(out.getvalue()))
            assert (summary.start, summary.size) == (start, end)
    finally:
        log.close()
        store.close()


def test_import_replicates_exact_tree_and_refuses_twice(
    bundle_text: tuple[str, str], replica: Log
) -> None:
    text, key = bundle_text
    summary = import_bundle(replica, io.StringIO(text), trusted_key=NoteVerifier.parse(key))
    head = replica.head(TENANT)
    assert head.size == summary.size
    assert replica.root(head.log_id, head.size) == summary.root
    # The replica verifies on its own, under its own checkpoints.
    replica.checkpoint(TENANT)
    verify_store(replica.store, TENANT, replica.origin(TENANT), replica.verifier())
    with pytest.raises(Conflict):
        import_bundle(replica, io.StringIO(text))


def test_import_of_a_tampered_bundle_stores_nothing(
    bundle_text: tuple[str, str], replica: Log
) -> None:
    text = bundle_text[0]
    lines = text.split("\n")
    entry_line = _verified_lines(text)[-2]
    lines[entry_line] = lines[entry_line].replace("payment", "pavment", 1)
    with pytest.raises(LogLineError):
        import_bundle(replica, io.StringIO("\n".join(lines)))
    assert replica.store.log_head(TENANT) is None
    assert replica.store.identities() == []


def _export(log: Log, tenant: str) -> str:
    out = io.StringIO()
    export_bundle(log, tenant, out)
    return out.getvalue()


@pytest.fixture
def two_tenant_source(tmp_path: Path) -> Iterator[tuple[Log, str, PrivateKey]]:
    """alice is created on globex's log and writes on acme's."""
    store = open_store(f"sqlite:///{tmp_path / 'two.db'}")
    log = Log(store, "source.local", PrivateKey.generate())
    try:
        alice, key = make_identity(log, "globex", "alice")
        for i in range(3):
            log.append(new_span(key, tenant=TENANT, author=alice, kind="a.b", title=f"{i}"))
        yield log, alice, key
    finally:
        log.close()
        store.close()


def test_imported_authors_from_elsewhere_cannot_sign_until_their_log_arrives(
    two_tenant_source: tuple[Log, str, PrivateKey], replica: Log
) -> None:
    source, alice, key = two_tenant_source
    store = replica.store
    import_bundle(replica, io.StringIO(_export(source, TENANT)))
    record = store.identity(alice)
    assert record is not None and record.status == "foreign"
    with pytest.raises(UnknownAuthor, match="registered on another log"):
        replica.append(new_span(key, tenant=TENANT, author=alice, kind="a.b", title="x"))
    replica.checkpoint(TENANT)
    verify_store(store, TENANT, replica.origin(TENANT), replica.verifier())

    import_bundle(replica, io.StringIO(_export(source, "globex")))  # the home log, second
    record = store.identity(alice)
    assert record is not None and record.status == "active"
    replica.append(new_span(key, tenant=TENANT, author=alice, kind="a.b", title="x"))
    for tenant in (TENANT, "globex"):
        replica.checkpoint(tenant)
        verify_store(store, tenant, replica.origin(tenant), replica.verifier())


def test_a_forged_key_line_gives_no_one_a_signing_key(
    two_tenant_source: tuple[Log, str, PrivateKey], replica: Log
) -> None:
    source, alice, _ = two_tenant_source
    attacker = PrivateKey.generate()
    lines = _export(source, TENANT).splitlines(keepends=True)
    line = {"type": "key", "identity": alice, "public_key": str(attacker.public_key),
            "valid_from": "2000-01-01T00:00:00.000000Z", "valid_until": None,
            "span_id": "01a200eb-8f59-7195-8d99-c92d7b7d59aa"}  # fmt: skip
    forged = canonicalize(line).decode() + "\n"
    text = "".join([lines[0], forged, *lines[1:]])
    verify_bundle(io.StringIO(text))  # key lines are claims: they change no entry
    import_bundle(replica, io.StringIO(text))
    keys = replica.store.keys(alice)
    assert [k.public_key for k in keys] != [str(attacker.public_key)]
    assert str(attacker.public_key) not in {k.public_key for k in keys}
    with pytest.raises((UnknownAuthor, SignatureError)):
        replica.append(new_span(attacker, tenant=TENANT, author=alice, kind="a.b", title="x"))
