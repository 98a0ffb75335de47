"""The bytes a webhook delivery's signature covers (docs/PROTOCOL.md §14), and decisions read
back from their recorded form (what an approval logs a held span with)."""

from __future__ import annotations

import base64

import pytest

from logline.errors import InvalidInput, SignatureError
from logline.identity.keys import PrivateKey
from logline.rules import compile_ruleset
from logline.rules.decision import Decision
from logline.rules.outbox import sign_webhook, verify_webhook, webhook_message

DELIVERY = "01a2b3c4-d5e6-7f00-8123-456789abcdef"
BODY = b'{"amount":12,"paid":"x"}'


def test_the_signed_message_is_domain_delivery_and_body() -> None:
    assert webhook_message(DELIVERY, BODY) == (
        b"logline/webhook/v1" + b"\x00" + DELIVERY.encode() + b"\n" + BODY
    )


def test_a_signature_verifies_with_the_key_only_over_the_same_delivery_and_bytes() -> None:
    key = PrivateKey.generate()
    header = sign_webhook(key, DELIVERY, BODY)
    scheme, _, value = header.partition("=")
    assert scheme == "ed25519" and len(base64.b64decode(value, validate=True)) == 64
    key.public_key.verify(base64.b64decode(value), webhook_message(DELIVERY, BODY))
    verify_webhook(key.public_key, DELIVERY, BODY, header)
    for delivery, body, signature in [
        (DELIVERY, BODY + b"\n", header),
        (DELIVERY.replace("01a2", "01a3"), BODY, header),
        (DELIVERY, BODY, "ed25519=" + base64.b64encode(bytes(64)).decode()),
        (DELIVERY, BODY, header.replace("ed25519=", "hmac=")),
    ]:
        with pytest.raises(SignatureError):
            verify_webhook(key.public_key, delivery, body, signature)
    with pytest.raises(SignatureError):
        verify_webhook(PrivateKey.generate().public_key, DELIVERY, BODY, header)


def test_a_decision_reads_back_from_its_recorded_form() -> None:
    ruleset = compile_ruleset("""
rules:
  - id: big
    when: {kind: payment.*}
    then:
      - require_approval: {approvers: [finance, "logline-id://person/cfo"], quorum: 2}
      - add_tag: big
      - set_metadata: {review: manual}
      - note: looked at
      - enqueue: {job: payment.book, payload: {id: "${span.id}"}}
      - emit: {kind: payment.flagged, title: flagged, tags: [x]}
""")
    decision = ruleset.evaluate({"kind": "payment.sent", "id": "s1"})
    assert decision.outcome == "hold"
    assert Decision.from_json(decision.to_json()) == decision
    with pytest.raises(InvalidInput):
        Decision.from_json({**decision.to_json(), "outcome": "maybe"})
    with pytest.raises(InvalidInput):
        Decision.from_json({"outcome": "allow"})
