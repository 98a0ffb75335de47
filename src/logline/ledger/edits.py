"""Spans that act on an earlier span: replay, revert and redaction.

The log is append-only, so each of these is a new span pointing at the original: a replay names it
in `replay_of`, a revert in `caused_by` with status `reverted`, and a redaction in its payload (and
the log then deletes the original payload, which the body's digest still commits to). The CLI and
the API build them here; admission enforces the same rules again under the log lock.
"""

from __future__ import annotations

from typing import Any

from logline.errors import Conflict, InvalidInput, RedactionRefused
from logline.identity.keys import PrivateKey
from logline.ledger.admission import REDACTION, SYSTEM_KINDS
from logline.ledger.span import DEFAULT_LIMITS, LINK_FIELDS, Span, new_span
from logline.store.interface import StoredSpan


def is_redacted(stored: StoredSpan) -> bool:
    return stored.payload is None and stored.span.body["payload_digest"] is not None


def revert_title(title: str, limit: int = DEFAULT_LIMITS.max_title_chars) -> str:
    text = f"Revert: {title}"
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _links(body: dict[str, Any]) -> dict[str, Any]:
    return {name: body[name] for name in LINK_FIELDS}


def check_replayable(original: StoredSpan) -> None:
    body = original.span.body
    if body["kind"] in SYSTEM_KINDS:
        raise InvalidInput(f"{body['kind']} spans cannot be replayed")
    if is_redacted(original):
        raise InvalidInput(
            f"the payload of span {body['id']} was redacted; there is nothing to replay"
        )


def check_revertible(original: StoredSpan) -> None:
    """Admission enforces these too; checking first spares a passphrase prompt for nothing."""
    body = original.span.body
    if body["kind"] in SYSTEM_KINDS:
        raise InvalidInput(f"{body['kind']} spans cannot be reverted")
    if body["status"] == "reverted":
        raise InvalidInput(f"span {body['id']} is itself a revert and cannot be reverted")
    if original.reverted_by is not None:
        raise Conflict(f"span {body['id']} was already reverted by {original.reverted_by}")


def check_redactable(original: StoredSpan, reason: str) -> None:
    if not reason.strip():
        raise InvalidInput("a redaction must say why the payload is removed")
    body = original.span.body
    if body["kind"] in SYSTEM_KINDS:
        raise RedactionRefused(
            "identity documents and redactions can't be redacted: verifiers need them"
        )
    if body["payload_digest"] is None:
        raise RedactionRefused(f"span {body['id']} has no payload to redact")
    if is_redacted(original):
        raise RedactionRefused(
            f"the payload of span {body['id']} was already redacted by {original.redacted_by}"
        )


def replay_span(key: PrivateKey, author: str, original: StoredSpan) -> Span:
    """The original's kind, title, payload, tags and links again, with `replay_of` set."""
    check_replayable(original)
    body = original.span.body
    return new_span(
        key,
        tenant=body["tenant"],
        author=author,
        kind=body["kind"],
        title=body["title"],
        payload=original.span.payload,
        tags=body["tags"],
        replay_of=body["id"],
        visibility=body["visibility"],
        **_links(body),
    )


def revert_span(key: PrivateKey, author: str, original: StoredSpan, reason: str | None) -> Span:
    """Same kind, status `reverted`, `caused_by` the original; admission marks the original."""
    check_revertible(original)
    body = original.span.body
    return new_span(key, tenant=body["tenant"], author=author, kind=body["kind"],
                    title=revert_title(body["title"]), payload={"reason": reason},
                    status="reverted", caused_by=body["id"], visibility=body["visibility"],
                    **_links(body))  # fmt: skip


def redaction_span(key: PrivateKey, author: str, original: StoredSpan, reason: str) -> Span:
    check_redactable(original, reason)
    body = original.span.body
    payload = {"span_id": body["id"], "payload_digest": body["payload_digest"], "reason": reason}
    return new_span(
        key,
        tenant=body["tenant"],
        author=author,
        kind=REDACTION,
        title=f"Redact payload of {body['id']}",
        payload=payload,
    )
