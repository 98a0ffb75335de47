"""Identity documents: the spans that create, rotate and claim identities.

    >>> key = PrivateKey.generate()
    >>> span = creation_span(key, "acme", LogLineId.parse("logline-id://person/alice"), "Alice")

- `identity.created` — authored by the new identity and signed with its new key; the payload holds
  `id`, `kind`, `public_key`, `display_name` and `expires_at` (ghosts only, required for them).
- `identity.rotated` — authored by the identity and signed with its *current* key; the payload holds
  `id` and the new `public_key`. From that entry on, only the new key is accepted.
- `identity.claimed` — authored by the claimant (signed with its key); the payload holds `ghost`
  and `proof`: the ghost key's signature over `logline/ghost-claim/v1 || 0x00 || ghost || "\\n" ||
  claimant`. Both keys thus consent. A claimed ghost authors nothing more.

Payloads of identity documents can never be redacted: verifiers need them to follow key history.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from logline.canonical import b64decode, b64encode
from logline.errors import InvalidSpan, ParseError
from logline.identity.ids import LogLineId
from logline.identity.keys import PrivateKey, PublicKey, domain_message
from logline.ledger.span import Span, new_span
from logline.ledger.timefmt import format_ts, parse_ts

CREATED = "identity.created"
ROTATED = "identity.rotated"
CLAIMED = "identity.claimed"
KINDS = (CREATED, ROTATED, CLAIMED)
CLAIM_DOMAIN = b"logline/ghost-claim/v1"


def claim_message(ghost: str, claimant: str) -> bytes:
    return domain_message(CLAIM_DOMAIN, f"{ghost}\n{claimant}".encode())


def creation_span(
    key: PrivateKey,
    tenant: str,
    identity: LogLineId,
    display_name: str | None = None,
    expires_at: datetime | None = None,
) -> Span:
    if (identity.kind == "ghost") != (expires_at is not None):
        raise InvalidSpan(
            "ghost identities need an expiry, and only they may have one",
            field="payload.expires_at",
        )
    payload = {
        "id": str(identity),
        "kind": identity.kind,
        "public_key": str(key.public_key),
        "display_name": display_name,
        "expires_at": None if expires_at is None else format_ts(expires_at),
    }
    return new_span(
        key,
        tenant=tenant,
        author=str(identity),
        kind=CREATED,
        title=f"Identity {identity} created",
        payload=payload,
        tags=["identity"],
    )


def rotation_span(old_key: PrivateKey, new_key: PublicKey, tenant: str, identity: str) -> Span:
    payload = {"id": identity, "public_key": str(new_key)}
    return new_span(
        old_key,
        tenant=tenant,
        author=identity,
        kind=ROTATED,
        title=f"Key of {identity} rotated",
        payload=payload,
        tags=["identity"],
    )


def claim_span(
    claimant_key: PrivateKey, claimant: str, ghost_key: PrivateKey, ghost: str, tenant: str
) -> Span:
    proof = b64encode(ghost_key.sign(claim_message(ghost, claimant)))
    payload = {"ghost": ghost, "proof": proof}
    return new_span(
        claimant_key,
        tenant=tenant,
        author=claimant,
        kind=CLAIMED,
        title=f"Ghost {ghost} claimed by {claimant}",
        payload=payload,
        tags=["identity"],
    )


def _fields(span: Span, names: tuple[str, ...]) -> dict[str, Any]:
    payload = span.payload
    if not isinstance(payload, dict) or sorted(payload) != sorted(names):
        raise InvalidSpan(
            f"{span.kind} needs a payload with exactly {', '.join(names)}", field="payload"
        )
    return payload


def parse_creation(span: Span) -> tuple[LogLineId, PublicKey, str | None, str | None]:
    """(identity, key, display name, expires_at) of an `identity.created` span."""
    data = _fields(span, ("id", "kind", "public_key", "display_name", "expires_at"))
    try:
        identity = LogLineId.parse(data["id"])
        key = PublicKey.parse(data["public_key"])
    except ParseError as exc:
        raise InvalidSpan(str(exc), field="payload") from exc
    if str(identity) != span.author or data["kind"] != identity.kind:
        raise InvalidSpan("payload id and kind must match the span's author", field="payload.id")
    name, expires = data["display_name"], data["expires_at"]
    if name is not None and (not isinstance(name, str) or len(name) > 200):
        raise InvalidSpan("must be null or at most 200 characters", field="payload.display_name")
    if (identity.kind == "ghost") != (expires is not None):
        raise InvalidSpan(
            "ghost identities need an expiry, and only they may have one",
            field="payload.expires_at",
        )
    if expires is not None:
        parse_ts(expires)
    return identity, key, name, expires


def parse_rotation(span: Span) -> PublicKey:
    data = _fields(span, ("id", "public_key"))
    if data["id"] != span.author:
        raise InvalidSpan("a rotation names its own author", field="payload.id")
    try:
        return PublicKey.parse(data["public_key"])
    except ParseError as exc:
        raise InvalidSpan(str(exc), field="payload.public_key") from exc


def parse_claim(span: Span) -> tuple[str, bytes]:
    data = _fields(span, ("ghost", "proof"))
    try:
        ghost = LogLineId.parse(data["ghost"])
        proof = b64decode(data["proof"], what="claim proof")
    except ParseError as exc:
        raise InvalidSpan(str(exc), field="payload") from exc
    if ghost.kind != "ghost":
        raise InvalidSpan("only ghost identities can be claimed", field="payload.ghost")
    return str(ghost), proof
