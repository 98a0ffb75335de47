"""The verifier refuses logs that break PROTOCOL.md §8, even when the log key signed them.

Each case forges a complete bundle as a misbehaving log would: the entries and the checkpoint are
signed correctly, only the history they record is impossible.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from logline.canonical import canonicalize
from logline.errors import VerificationError
from logline.identity.documents import claim_span, creation_span, rotation_span
from logline.identity.ids import LogLineId, uuid7
from logline.identity.keys import PrivateKey
from logline.ledger import merkle
from logline.ledger.admission import REDACTION
from logline.ledger.bundle import verify_bundle
from logline.ledger.checkpoint import Checkpoint, NoteSigner, sign_checkpoint
from logline.ledger.entry import Entry
from logline.ledger.span import Span, new_span
from logline.ledger.timefmt import format_ts

TENANT = "acme"
SIGNER = NoteSigner("evil.local", PrivateKey.generate())
NOW = datetime.now(UTC)
LATER = format_ts(NOW + timedelta(hours=2))

# (span, key that signed it, received, redacted_by) — received None means now
Row = tuple[Span, PrivateKey, str | None, str | None]


def forge(rows: Sequence[Row]) -> str:
    origin = f"{SIGNER.name}/{TENANT}"
    lines: list[dict[str, object]] = [{
        "type": "logline.bundle", "v": 1, "origin": origin, "tenant": TENANT,
        "log_key": str(SIGNER.verifier()), "start": 0, "end": len(rows), "tree_size": len(rows),
        "exported_at": format_ts(NOW),
    }]  # fmt: skip
    leaves = []
    for seq, (span, key, received, redacted_by) in enumerate(rows):
        entry = Entry(seq, span.id, span.hash, str(key.public_key), span.signature,
                      received or format_ts(NOW))  # fmt: skip
        leaves.append(merkle.leaf_hash(entry.leaf_data()))
        wire = span.to_json(include_payload=redacted_by is None)
        line: dict[str, object] = {"type": "entry", "seq": seq, "entry": entry.to_json(),
                                   "span": wire}  # fmt: skip
        if redacted_by is not None:
            line["redacted_by"] = redacted_by
        lines.append(line)
    checkpoint = Checkpoint(origin, len(rows), merkle.root_from_leaves(leaves))
    lines.append({"type": "checkpoint", "note": sign_checkpoint(checkpoint, SIGNER)})
    return "".join(canonicalize(line).decode() + "\n" for line in lines)


def row(span: Span, key: PrivateKey, received: str | None = None,
        redacted_by: str | None = None) -> Row:  # fmt: skip
    return span, key, received, redacted_by


GHOST_KEY, PERSON_KEY, GHOST2_KEY, NEW_KEY = (PrivateKey.generate() for _ in range(4))
GHOST, PERSON, GHOST2 = "logline-id://ghost/g1", "logline-id://person/p", "logline-id://ghost/g2"
EXPIRY = NOW + timedelta(hours=1)
CREATE_GHOST = creation_span(GHOST_KEY, TENANT, LogLineId.parse(GHOST), expires_at=EXPIRY)
CREATE_GHOST2 = creation_span(GHOST2_KEY, TENANT, LogLineId.parse(GHOST2), expires_at=EXPIRY)
CREATE_PERSON = creation_span(PERSON_KEY, TENANT, LogLineId.parse(PERSON))
BASE = new_span(PERSON_KEY, tenant=TENANT, author=PERSON, kind="a.b", title="t", payload={"x": 1})


def _span(**fields: Any) -> Span:
    return new_span(PERSON_KEY, tenant=TENANT, author=PERSON, kind="a.b", title="t", **fields)


def _revert(target: str) -> Span:
    return _span(status="reverted", caused_by=target)


def _redaction(target: Span, digest: str | None = None) -> Span:
    payload = {"span_id": target.id, "payload_digest": digest or target.body["payload_digest"],
               "reason": "r"}  # fmt: skip
    return new_span(PERSON_KEY, tenant=TENANT, author=PERSON, kind=REDACTION, title="r",
                    payload=payload)  # fmt: skip


FIRST_REVERT = _revert(BASE.id)
REDACT_BASE = _redaction(BASE)
WRONG_DIGEST = _redaction(BASE, "sha256:" + "0" * 64)

CASES: dict[str, list[Row]] = {
    "ghost-rotates-its-key": [
        row(CREATE_GHOST, GHOST_KEY),
        row(rotation_span(GHOST_KEY, NEW_KEY.public_key, TENANT, GHOST), GHOST_KEY),
    ],
    "ghost-claimed-twice": [
        row(CREATE_GHOST, GHOST_KEY), row(CREATE_PERSON, PERSON_KEY),
        row(claim_span(PERSON_KEY, PERSON, GHOST_KEY, GHOST, TENANT), PERSON_KEY),
        row(claim_span(PERSON_KEY, PERSON, GHOST_KEY, GHOST, TENANT), PERSON_KEY),
    ],
    "ghost-claims-a-ghost": [
        row(CREATE_GHOST, GHOST_KEY), row(CREATE_GHOST2, GHOST2_KEY),
        row(claim_span(GHOST2_KEY, GHOST2, GHOST_KEY, GHOST, TENANT), GHOST2_KEY),
    ],
    "claim-of-a-ghost-the-log-never-created": [
        row(CREATE_PERSON, PERSON_KEY),
        row(claim_span(PERSON_KEY, PERSON, PrivateKey.generate(), "logline-id://ghost/x", TENANT),
            PERSON_KEY),
    ],
    "claim-after-expiry": [
        row(CREATE_GHOST, GHOST_KEY), row(CREATE_PERSON, PERSON_KEY),
        row(claim_span(PERSON_KEY, PERSON, GHOST_KEY, GHOST, TENANT), PERSON_KEY, LATER),
    ],
    "ghost-created-already-expired": [
        row(creation_span(GHOST_KEY, TENANT, LogLineId.parse(GHOST),
                          expires_at=NOW - timedelta(hours=1)), GHOST_KEY),
    ],
    "received-goes-backwards": [
        row(CREATE_PERSON, PERSON_KEY, format_ts(NOW)),
        row(BASE, PERSON_KEY, format_ts(NOW - timedelta(days=1))),
    ],
    "double-revert": [
        row(CREATE_PERSON, PERSON_KEY), row(BASE, PERSON_KEY), row(FIRST_REVERT, PERSON_KEY),
        row(_revert(BASE.id), PERSON_KEY),
    ],
    "revert-of-a-revert": [
        row(CREATE_PERSON, PERSON_KEY), row(BASE, PERSON_KEY), row(FIRST_REVERT, PERSON_KEY),
        row(_revert(FIRST_REVERT.id), PERSON_KEY),
    ],
    "revert-of-a-span-not-in-the-log": [
        row(CREATE_PERSON, PERSON_KEY), row(_revert(uuid7()), PERSON_KEY),
    ],
    "replay-of-a-span-not-in-the-log": [
        row(CREATE_PERSON, PERSON_KEY), row(_span(replay_of=uuid7()), PERSON_KEY),
    ],
    "reserved-kind": [
        row(CREATE_PERSON, PERSON_KEY),
        row(new_span(PERSON_KEY, tenant=TENANT, author=PERSON, kind="identity.deleted",
                     title="t"), PERSON_KEY),
    ],
    "redaction-with-the-wrong-digest": [
        row(CREATE_PERSON, PERSON_KEY), row(BASE, PERSON_KEY, None, WRONG_DIGEST.id),
        row(WRONG_DIGEST, PERSON_KEY),
    ],
    "redaction-before-its-target": [
        row(CREATE_PERSON, PERSON_KEY), row(REDACT_BASE, PERSON_KEY),
        row(BASE, PERSON_KEY, None, REDACT_BASE.id),
    ],
    "redaction-of-a-redaction": [
        row(CREATE_PERSON, PERSON_KEY), row(BASE, PERSON_KEY, None, REDACT_BASE.id),
        row(REDACT_BASE, PERSON_KEY), row(_redaction(REDACT_BASE), PERSON_KEY),
    ],
    "payload-missing-with-an-invented-redaction": [
        row(CREATE_PERSON, PERSON_KEY), row(BASE, PERSON_KEY, None, uuid7()),
    ],
}  # fmt: skip


def test_the_honest_history_verifies() -> None:
    rows = [row(CREATE_GHOST, GHOST_KEY), row(CREATE_PERSON, PERSON_KEY),
            row(BASE, PERSON_KEY, None, REDACT_BASE.id), row(FIRST_REVERT, PERSON_KEY),
            row(REDACT_BASE, PERSON_KEY),
            row(claim_span(PERSON_KEY, PERSON, GHOST_KEY, GHOST, TENANT), PERSON_KEY)]  # fmt: skip
    summary = verify_bundle(io.StringIO(forge(rows)), trusted_key=SIGNER.verifier())
    assert (summary.size, summary.redacted) == (6, 1)


@pytest.mark.parametrize("case", sorted(CASES))
def test_an_impossible_history_is_refused(case: str) -> None:
    with pytest.raises(VerificationError) as caught:
        verify_bundle(io.StringIO(forge(CASES[case])), trusted_key=SIGNER.verifier())
    assert caught.value.seq is not None or "payload of" in str(caught.value)
