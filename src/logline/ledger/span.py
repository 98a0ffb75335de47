"""Spans: the author-signed body, its canonical bytes, hash and signature, and its payload.

    >>> key = PrivateKey.generate()
    >>> span = new_span(key, tenant="acme", author="logline-id://person/alice",
    ...                 kind="payment.approved", title="Approve invoice 42", payload={"amount": 42})
    >>> span.verify(key.public_key)

The body is signed, the payload is not: the body commits to the payload by `payload_digest`
(`sha256:` + hex of SHA-256 over the payload's RFC 8785 bytes), so the payload can be deleted later
(redaction) while every signature and proof stays valid. See docs/PROTOCOL.md §2.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from logline.canonical import (
    b64decode,
    b64encode,
    canonicalize,
    canonicalize_simple,
    loads,
    sha256,
)
from logline.errors import InvalidIdentifier, InvalidInput, InvalidSpan, ParseError
from logline.identity.ids import LogLineId, check_kind, check_tag, check_tenant, check_uuid7, uuid7
from logline.identity.keys import SPAN_DOMAIN, PrivateKey, PublicKey, domain_message
from logline.ledger.timefmt import now_ts, parse_ts

VERSION = 1
STATUSES = ("executed", "simulated", "reverted", "ghost")
VISIBILITIES = ("private", "organization", "public")
FIELDS = (
    "v", "id", "tenant", "ts", "author", "kind", "title", "status", "payload_digest",
    "caused_by", "replay_of", "contract_id", "workflow_id", "flow_id", "tags", "visibility",
)  # fmt: skip
LINK_FIELDS = ("contract_id", "workflow_id", "flow_id")
_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
_LINK = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:/-]{0,127}")


@dataclass(frozen=True, slots=True)
class Limits:
    """Size and clock limits applied to every span before it is stored."""

    max_body_bytes: int = 8 * 1024
    max_payload_bytes: int = 256 * 1024
    max_title_chars: int = 256
    max_tags: int = 32
    max_future_skew_s: float = 300.0
    max_past_skew_s: float = 3600.0


DEFAULT_LIMITS = Limits()


def payload_digest(payload: Any) -> str:
    return "sha256:" + sha256(canonicalize(payload)).hex()


@dataclass(frozen=True, slots=True)
class Span:
    """A signed span: its validated body, canonical bytes, hash, signature and payload.

    `payload` is None when the span has none or when it was redacted; `payload_digest` in the body
    tells which.
    """

    body: dict[str, Any]
    body_bytes: bytes
    hash: bytes
    signature: bytes
    payload: Any = None
    payload_bytes: bytes | None = field(default=None, repr=False)

    @property
    def id(self) -> str:
        return str(self.body["id"])

    @property
    def author(self) -> str:
        return str(self.body["author"])

    @property
    def kind(self) -> str:
        return str(self.body["kind"])

    @property
    def tenant(self) -> str:
        return str(self.body["tenant"])

    def signing_message(self) -> bytes:
        return domain_message(SPAN_DOMAIN, self.hash)

    def verify(self, key: PublicKey) -> None:
        """Raise `SignatureError` unless `key` signed this span's hash."""
        key.verify(self.signature, self.signing_message())

    def to_json(self, *, include_payload: bool = True) -> dict[str, Any]:
        """The wire form: `{"body", "signature", "payload"?}` (docs/PROTOCOL.md §2.4)."""
        out: dict[str, Any] = {"body": self.body, "signature": b64encode(self.signature)}
        if include_payload and self.payload_bytes is not None:
            out["payload"] = self.payload
        return out


def build_body(
    *,
    tenant: str,
    author: str,
    kind: str,
    title: str,
    payload: Any = None,
    status: str = "executed",
    tags: list[str] | tuple[str, ...] = (),
    caused_by: str | None = None,
    replay_of: str | None = None,
    contract_id: str | None = None,
    workflow_id: str | None = None,
    flow_id: str | None = None,
    visibility: str = "organization",
    span_id: str | None = None,
    ts: str | None = None,
) -> dict[str, Any]:
    """A body with a fresh UUIDv7 and the current time, tags sorted and de-duplicated."""
    return {
        "v": VERSION,
        "id": span_id or uuid7(),
        "tenant": tenant,
        "ts": ts or now_ts(),
        "author": author,
        "kind": kind,
        "title": title,
        "status": status,
        "payload_digest": None if payload is None else payload_digest(payload),
        "caused_by": caused_by,
        "replay_of": replay_of,
        "contract_id": contract_id,
        "workflow_id": workflow_id,
        "flow_id": flow_id,
        "tags": sorted(set(tags)),
        "visibility": visibility,
    }


def sign_body(
    key: PrivateKey, body: dict[str, Any], payload: Any = None, limits: Limits = DEFAULT_LIMITS
) -> Span:
    """Validate `body`, then sign it with `key`."""
    body_bytes = check_body(body, limits)
    digest = sha256(body_bytes)
    signature = key.sign(domain_message(SPAN_DOMAIN, digest))
    return _attach_payload(Span(body, body_bytes, digest, signature), payload, limits)


def new_span(
    key: PrivateKey, *, payload: Any = None, limits: Limits = DEFAULT_LIMITS, **fields: Any
) -> Span:
    """Build, validate and sign a span in one step (see `build_body` for the fields)."""
    return sign_body(key, build_body(payload=payload, **fields), payload, limits)


def parse_span(data: Any, limits: Limits = DEFAULT_LIMITS) -> Span:
    """Validate a span in wire form (`{"body", "signature", "payload"?}`); nothing is trusted.

    Raises only `InvalidSpan`. A present `payload` must not be null (a payload is any JSON value
    other than null); leave the member out when there is none.
    """
    if not isinstance(data, dict):
        raise InvalidSpan("a span is a JSON object with body and signature")
    unknown = set(data) - {"body", "signature", "payload"}
    if unknown:
        raise InvalidSpan(f"unknown field(s) {', '.join(sorted(unknown))}")
    if "body" not in data:
        raise InvalidSpan("is required", field="body")
    if not isinstance(data.get("signature"), str):
        raise InvalidSpan("is required and must be base64 text", field="signature")
    body = data["body"]
    body_bytes = check_body(body, limits)
    try:
        signature = b64decode(data["signature"], what="signature")
    except ParseError as exc:
        raise InvalidSpan(str(exc), field="signature") from exc
    if len(signature) != 64:
        raise InvalidSpan(f"must be 64 bytes, got {len(signature)}", field="signature")
    if "payload" in data and data["payload"] is None:
        # A payload is any JSON value but null (docs/PROTOCOL.md §2.2): no payload is written
        # by leaving the member out, so "payload": null has no meaning and is refused.
        raise InvalidSpan(
            "must not be null; leave it out when there is no payload", field="payload"
        )
    span = Span(body, body_bytes, sha256(body_bytes), signature)
    return _attach_payload(span, data.get("payload"), limits, present="payload" in data)


def span_from_stored(body_bytes: bytes, signature: bytes, payload_bytes: bytes | None) -> Span:
    """Rebuild a span from bytes this instance stored (already validated when written)."""
    body = loads(body_bytes)
    payload = None if payload_bytes is None else loads(payload_bytes)
    return Span(body, body_bytes, sha256(body_bytes), signature, payload, payload_bytes)


def _attach_payload(
    span: Span, payload: Any, limits: Limits, *, present: bool | None = None
) -> Span:
    digest = span.body["payload_digest"]
    has_payload = payload is not None if present is None else present
    if not has_payload:
        return span
    if digest is None:
        raise InvalidSpan(
            "the body has no payload_digest, so the span carries no payload", field="payload"
        )
    try:
        payload_bytes = canonicalize(payload)
    except InvalidInput as exc:
        raise InvalidSpan(str(exc), field="payload") from exc
    if len(payload_bytes) > limits.max_payload_bytes:
        raise InvalidSpan(
            f"is {len(payload_bytes)} bytes canonical, the limit is {limits.max_payload_bytes}",
            field="payload",
        )
    found = "sha256:" + sha256(payload_bytes).hex()
    if found != digest:
        raise InvalidSpan(
            f"digest {found} does not match the body's payload_digest {digest}", field="payload"
        )
    return Span(span.body, span.body_bytes, span.hash, span.signature, payload, payload_bytes)


def check_body(body: Any, limits: Limits = DEFAULT_LIMITS) -> bytes:
    """Validate every field of a span body and return its canonical bytes."""
    if not isinstance(body, dict):
        raise InvalidSpan("must be a JSON object", field="body")
    missing = [name for name in FIELDS if name not in body]
    if missing:
        raise InvalidSpan(f"missing required field(s) {', '.join(missing)}", field="body")
    unknown = sorted(set(body) - set(FIELDS))
    if unknown:
        raise InvalidSpan(f"unknown field(s) {', '.join(unknown)}", field="body")
    if type(body["v"]) is not int or body["v"] != VERSION:
        raise InvalidSpan(f"must be {VERSION}", field="body.v")
    _check_ident(body, "id", check_uuid7)
    _check_ident(body, "tenant", check_tenant)
    _check_ident(body, "kind", check_kind)
    _check_ident(body, "author", LogLineId.parse)
    try:
        parse_ts(_string(body, "ts"))
    except InvalidInput as exc:
        raise InvalidSpan(str(exc), field="body.ts") from exc
    title = _string(body, "title")
    if not title.strip() or len(title) > limits.max_title_chars:
        raise InvalidSpan(
            f"must be 1-{limits.max_title_chars} characters and not blank", field="body.title"
        )
    if _string(body, "status") not in STATUSES:
        raise InvalidSpan(f"must be one of {', '.join(STATUSES)}", field="body.status")
    if _string(body, "visibility") not in VISIBILITIES:
        raise InvalidSpan(f"must be one of {', '.join(VISIBILITIES)}", field="body.visibility")
    digest = body["payload_digest"]
    if digest is not None and not (isinstance(digest, str) and _DIGEST.fullmatch(digest)):
        raise InvalidSpan("must be null or sha256:<64 lowercase hex>", field="body.payload_digest")
    for name in ("caused_by", "replay_of"):
        if body[name] is not None:
            _check_ident(body, name, check_uuid7)
    for name in LINK_FIELDS:
        value = body[name]
        if value is not None and not (isinstance(value, str) and _LINK.fullmatch(value)):
            raise InvalidSpan(
                "must be null or 1-128 characters of letters, digits and '._:/-'",
                field=f"body.{name}",
            )
    _check_tags(body["tags"], limits)
    try:
        canonical = canonicalize_simple(body)
        canonical.decode("utf-8")
    except (UnicodeEncodeError, UnicodeDecodeError) as exc:
        raise InvalidSpan("holds a string that is not valid UTF-8", field="body") from exc
    if len(canonical) > limits.max_body_bytes:
        raise InvalidSpan(
            f"is {len(canonical)} bytes canonical, the limit is {limits.max_body_bytes}",
            field="body",
        )
    return canonical


def _string(body: dict[str, Any], name: str) -> str:
    value = body[name]
    if not isinstance(value, str):
        raise InvalidSpan(f"must be a string, got {type(value).__name__}", field=f"body.{name}")
    return value


def _check_ident(body: dict[str, Any], name: str, check: Any) -> None:
    try:
        check(_string(body, name))
    except InvalidIdentifier as exc:
        raise InvalidSpan(str(exc), field=f"body.{name}") from exc


def _check_tags(tags: Any, limits: Limits) -> None:
    if not isinstance(tags, list):
        raise InvalidSpan("must be a list of strings", field="body.tags")
    if len(tags) > limits.max_tags:
        raise InvalidSpan(
            f"has {len(tags)} tags, the limit is {limits.max_tags}", field="body.tags"
        )
    for i, tag in enumerate(tags):
        try:
            check_tag(tag)
        except InvalidIdentifier as exc:
            raise InvalidSpan(str(exc), field=f"body.tags[{i}]") from exc
    if tags != sorted(set(tags)):
        raise InvalidSpan("must be sorted and without duplicates", field="body.tags")
