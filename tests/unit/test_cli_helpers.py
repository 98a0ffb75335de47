"""The CLI's pure helpers: time bounds, masking, one-line errors, and the spans that edit spans."""

from __future__ import annotations

import dataclasses
import sys
from datetime import UTC, datetime

import pytest
import typer

from logline.canonical import canonicalize
from logline.cli.bundles import _span_json
from logline.cli.common import parse_when
from logline.cli.main import main
from logline.cli.output import mask_url, one_line
from logline.cli.spans import parse_payload
from logline.errors import Conflict, InvalidInput, RedactionRefused
from logline.identity.documents import creation_span
from logline.identity.ids import LogLineId
from logline.identity.keys import PrivateKey
from logline.ledger.edits import (
    check_redactable,
    check_replayable,
    check_revertible,
    redaction_span,
    replay_span,
    revert_span,
    revert_title,
)
from logline.ledger.entry import Entry
from logline.ledger.span import Span, new_span
from logline.store.interface import StoredSpan

NOW = datetime(2026, 11, 22, 12, 0, 0, tzinfo=UTC)
ALICE = "logline-id://person/alice"
KEY = PrivateKey.generate()


def stored(span: Span, *, redacted_by: str | None = None) -> StoredSpan:
    entry = Entry(0, span.id, span.hash, str(KEY.public_key), span.signature, span.body["ts"])
    payload = None if redacted_by or span.payload_bytes is None else span.payload_bytes
    return StoredSpan("acme", 0, entry.leaf_data(), span.body_bytes, span.signature, payload,
                      redacted_by=redacted_by)  # fmt: skip


def payment(contract_id: str | None = None) -> Span:
    return new_span(KEY, tenant="acme", author=ALICE, kind="payment.approved", title="Approve 42",
                    payload={"amount": 42}, tags=["finance"], workflow_id="wf-1",
                    contract_id=contract_id)  # fmt: skip


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("90m", "2026-11-22T10:30:00.000000Z"),
        ("7d", "2026-11-15T12:00:00.000000Z"),
        ("2026-11-01", "2026-11-01T00:00:00.000000Z"),
        ("2026-11-01T08:00:00+02:00", "2026-11-01T06:00:00.000000Z"),
        ("2026-11-01T08:00:00Z", "2026-11-01T08:00:00.000000Z"),
        ("2026-11-01T08:00:00.123456Z", "2026-11-01T08:00:00.123456Z"),
    ],
)
def test_time_bounds_accept_durations_and_iso_times(text: str, expected: str) -> None:
    assert parse_when(text, NOW) == expected


@pytest.mark.parametrize("text", ["yesterday", "7w", "", "2026-13-01"])
def test_time_bounds_refuse_anything_else(text: str) -> None:
    with pytest.raises(InvalidInput):
        parse_when(text, NOW)


def test_database_passwords_are_masked() -> None:
    assert mask_url("postgresql://u:s3cret@db:5432/x?sslmode=require") == (
        "postgresql://u:***@db:5432/x?sslmode=require"
    )
    assert mask_url("sqlite:////tmp/logline.db") == "sqlite:////tmp/logline.db"


def test_error_messages_become_one_line() -> None:
    assert one_line("bad\n  thing\t here ") == "bad thing here"
    assert one_line("") == "unknown error"


def test_main_prints_one_error_line_and_exits_1(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(sys, "argv", ["logline", "verify", "/nonexistent/bundle.ndjson"])
    with pytest.raises(SystemExit) as exit_info:
        main()
    assert exit_info.value.code == 1
    assert capsys.readouterr().err == (
        "error: cannot read bundle /nonexistent/bundle.ndjson: No such file or directory\n"
    )


def test_payload_comes_from_exactly_one_place() -> None:
    assert parse_payload(None, None) is None
    assert parse_payload('{"a": [1, 2]}', None) == {"a": [1, 2]}
    with pytest.raises(InvalidInput, match="--payload"):
        parse_payload('{"a": 1, "a": 2}', None)
    with pytest.raises(typer.BadParameter):
        parse_payload("{}", "payload.json")


def test_receipt_spans_may_be_wrapped_like_span_show_output() -> None:
    wire = payment().to_json()
    assert _span_json(wire) is wire
    assert _span_json({"seq": 3, "entry": {}, "span": wire}) is wire


def test_revert_titles_stay_within_the_limit() -> None:
    assert revert_title("Approve 42") == "Revert: Approve 42"
    long = revert_title("x" * 256)
    assert len(long) == 256 and long.endswith("x…")


def test_a_revert_names_the_original_and_keeps_its_kind_and_links() -> None:
    original = stored(payment())
    span = revert_span(KEY, ALICE, original, "typo")
    body = span.body
    assert (body["kind"], body["status"], body["caused_by"]) == (
        "payment.approved", "reverted", original.span.id,
    )  # fmt: skip
    assert body["title"] == "Revert: Approve 42" and body["workflow_id"] == "wf-1"
    assert span.payload == {"reason": "typo"}


def test_a_replay_copies_the_original() -> None:
    original = stored(payment(contract_id="c-9"))
    body = replay_span(KEY, ALICE, original).body
    for name in ("kind", "title", "payload_digest", "tags", "contract_id", "workflow_id"):
        assert body[name] == original.span.body[name]
    assert body["replay_of"] == original.span.id and body["id"] != original.span.id


def test_reverts_and_reverted_spans_cannot_be_reverted() -> None:
    original = stored(payment())
    revert = stored(revert_span(KEY, ALICE, original, None))
    with pytest.raises(InvalidInput, match="itself a revert"):
        check_revertible(revert)
    marked = dataclasses.replace(original, reverted_by=revert.span.id)
    with pytest.raises(Conflict, match="already reverted"):
        check_revertible(marked)


def test_a_redacted_payload_cannot_be_replayed_or_redacted_again() -> None:
    original = stored(payment(), redacted_by="01a200b8-0000-7000-8000-000000000000")
    with pytest.raises(InvalidInput, match="redacted"):
        check_replayable(original)
    with pytest.raises(RedactionRefused, match="already redacted"):
        check_redactable(original, "again")


def test_identity_documents_cannot_be_redacted_or_reverted() -> None:
    document = stored(creation_span(KEY, "acme", LogLineId.parse(ALICE), "Alice"))
    with pytest.raises(RedactionRefused, match="identity documents"):
        check_redactable(document, "gdpr")
    with pytest.raises(InvalidInput, match="cannot be reverted"):
        revert_span(KEY, ALICE, document, None)


def test_a_redaction_commits_to_the_digest_it_removes() -> None:
    original = stored(payment())
    span = redaction_span(KEY, ALICE, original, "customer request")
    assert span.kind == "logline.redaction"
    assert span.payload == {"span_id": original.span.id, "reason": "customer request",
                            "payload_digest": original.span.body["payload_digest"]}  # fmt: skip
    assert canonicalize(span.payload)  # a valid JSON payload
    with pytest.raises(InvalidInput, match="why"):
        redaction_span(KEY, ALICE, original, "  ")
