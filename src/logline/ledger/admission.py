"""Admission: the checks a span must pass inside the sequencing transaction, and its effects.

Structural validation and the signature check happen before the transaction (in parallel); what
depends on the log's current state happens here, under the tenant's log lock: duplicate span ids,
the author's identity and current key, identity documents, reverts, replays and redactions. A group
of spans is admitted against an overlay of the effects of the spans admitted before it in the same
transaction, so a batch may create an identity and use it at once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from logline.errors import Conflict, InvalidSpan, LogLineError, NotFound, UnknownAuthor
from logline.identity import documents
from logline.identity.keys import PublicKey
from logline.ledger.span import Span
from logline.store.interface import IdentityRecord, KeyRecord, SpanRef, Tx

REDACTION = "logline.redaction"
FOREIGN = "foreign"  # an imported log's author registered elsewhere: verifiable, cannot sign
RESERVED_PREFIXES = ("identity.", "logline.")
SYSTEM_KINDS = (*documents.KINDS, REDACTION)


@dataclass(frozen=True, slots=True)
class Prepared:
    """A span whose structure and signature checked out under `key` before the transaction."""

    span: Span
    key: str
    decision: dict[str, Any] | None = None  # the entry's write decision; None: allow


@dataclass(frozen=True, slots=True)
class CreateIdentity:
    record: IdentityRecord
    replaces_foreign: bool = False


@dataclass(frozen=True, slots=True)
class RotateKey:
    identity: str
    old_key: str
    new_key: str
    span_id: str


@dataclass(frozen=True, slots=True)
class ClaimGhost:
    ghost: str
    claimant: str


@dataclass(frozen=True, slots=True)
class Revert:
    target: str
    by: str


@dataclass(frozen=True, slots=True)
class Redact:
    target: str
    by: str


Effect = CreateIdentity | RotateKey | ClaimGhost | Revert | Redact


def signing_key_hint(span: Span) -> str | None:
    """For an `identity.created` span the key comes from its own payload; otherwise None."""
    if span.kind != documents.CREATED:
        return None
    _, key, _, _ = documents.parse_creation(span)
    return str(key)


class Admission:
    """Admits the spans of one tenant within one transaction. Not thread-safe; one per commit."""

    def __init__(
        self,
        tx: Tx,
        log_id: int,
        tenant: str,
        received: str,
        existing_ids: set[str],
        *,
        replaying: bool = False,
    ) -> None:
        self.tx = tx
        self.log_id = log_id
        self.tenant = tenant
        self.received = received
        self.existing_ids = existing_ids
        # Replaying an imported, already verified log: its authors' keys and states were checked
        # in log order by the verifier; only the effects are wanted.
        self.replaying = replaying
        self.identities: dict[str, IdentityRecord | None] = {}
        self.spans: dict[str, SpanRef] = {}
        self.effects: list[Effect] = []

    def admit(self, items: Sequence[Prepared]) -> None:
        """Admit all of `items` or none: on a `LogLineError` the overlay is left as it was."""
        saved = self.save()
        try:
            for item in items:
                self._admit_one(item)
        except LogLineError:
            self.restore(saved)
            raise

    def save(self) -> tuple[Any, ...]:
        """The overlay as it is, for `restore` (when what was admitted since is not logged)."""
        return dict(self.identities), dict(self.spans), len(self.effects)

    def restore(self, saved: tuple[Any, ...]) -> None:
        self.identities, self.spans = dict(saved[0]), dict(saved[1])
        del self.effects[saved[2] :]

    # --- lookups through the overlay ------------------------------------------------------------

    def _identity(self, identity: str) -> IdentityRecord | None:
        if identity not in self.identities:
            self.identities[identity] = self.tx.identity(identity)
        return self.identities[identity]

    def _span(self, span_id: str) -> SpanRef | None:
        if span_id in self.spans:
            return self.spans[span_id]
        return self.tx.span_ref(self.log_id, span_id)

    # --- the checks -----------------------------------------------------------------------------

    def _admit_one(self, item: Prepared) -> None:
        span, body = item.span, item.span.body
        if span.id in self.existing_ids or span.id in self.spans:
            raise Conflict(f"span {span.id} is already in the log of {self.tenant}")
        kind = span.kind
        if kind.startswith(RESERVED_PREFIXES) and kind not in SYSTEM_KINDS:
            raise InvalidSpan(
                f"kinds under identity.* and logline.* are reserved; {kind} is not "
                "one LogLine defines",
                field="body.kind",
            )
        effects: list[Effect] = []
        if kind == documents.CREATED:
            effects.append(self._creation(item))
        else:
            author = self._author(span.author, item.key)
            if kind == documents.ROTATED:
                effects.append(self._rotation(span, author))
            elif kind == documents.CLAIMED:
                effects.append(self._claim(span, author))
            elif kind == REDACTION:
                effects.append(self._redaction(span))
        if body["status"] == "reverted":
            effects.append(self._revert(span))
        if body["replay_of"] is not None and self._span(body["replay_of"]) is None:
            raise InvalidSpan(
                f"names span {body['replay_of']}, which is not in the log of {self.tenant}",
                field="body.replay_of",
            )
        self.spans[span.id] = SpanRef(
            seq=-1, author=span.author, kind=kind, status=body["status"],
            payload_digest=body["payload_digest"], reverted_by=None, redacted_by=None,
            has_payload=span.payload_bytes is not None,
        )  # fmt: skip
        for effect in effects:
            self._apply_to_overlay(effect)
        self.effects.extend(effects)

    def _author(self, author: str, key: str) -> IdentityRecord:
        record = self._identity(author)
        if record is None:
            raise UnknownAuthor(f"author {author} is not a registered identity")
        if self.replaying:
            return record
        if record.status == FOREIGN:
            raise UnknownAuthor(
                f"author {author} was registered on another log ({record.tenant} of an imported "
                "bundle); it can sign here once the log where it was created is imported"
            )
        if record.status != "active":
            raise UnknownAuthor(
                f"author {author} was claimed by {record.claimed_by} and can no longer sign spans"
            )
        if record.expires_at is not None and record.expires_at <= self.received:
            raise UnknownAuthor(f"ghost identity {author} expired at {record.expires_at}")
        if record.public_key != key:
            raise Conflict(
                f"the key of {author} changed while this span was being written; "
                "sign it again with the current key"
            )
        return record

    def _creation(self, item: Prepared) -> Effect:
        identity, key, name, expires = documents.parse_creation(item.span)
        existing = self._identity(str(identity))
        if existing is not None and existing.status != FOREIGN:
            raise Conflict(f"identity {identity} already exists")
        if str(key) != item.key:
            raise InvalidSpan(
                "an identity document is signed with the key it registers", field="signature"
            )
        if expires is not None and expires <= self.received:
            raise InvalidSpan("the ghost would already be expired", field="payload.expires_at")
        return CreateIdentity(IdentityRecord(
            id=str(identity), kind=identity.kind, public_key=str(key), status="active",
            tenant=self.tenant, created_at=self.received, span_id=item.span.id,
            display_name=name, expires_at=expires,
        ), replaces_foreign=existing is not None)  # fmt: skip

    def _rotation(self, span: Span, author: IdentityRecord) -> Effect:
        new_key = documents.parse_rotation(span)
        self._home_log(author)
        if str(new_key) == author.public_key:
            raise InvalidSpan("the new key is the current key", field="payload.public_key")
        if any(record.public_key == str(new_key) for record in self.tx.keys(author.id)):
            raise InvalidSpan(
                f"{author.id} used this key before; a retired key never returns",
                field="payload.public_key",
            )
        if author.kind == "ghost":
            raise InvalidSpan(
                "ghost identities cannot rotate keys; claim them instead", field="body.author"
            )
        return RotateKey(author.id, author.public_key, str(new_key), span.id)

    def _claim(self, span: Span, claimant: IdentityRecord) -> Effect:
        ghost_id, proof = documents.parse_claim(span)
        if claimant.kind == "ghost":
            raise InvalidSpan("a ghost cannot claim another ghost", field="body.author")
        ghost = self._identity(ghost_id)
        if ghost is None:
            raise NotFound(f"ghost identity {ghost_id} does not exist")
        self._home_log(ghost)
        if ghost.status == FOREIGN:
            raise Conflict(f"ghost {ghost_id} was registered on another log; claim it there")
        if ghost.status != "active":
            raise Conflict(f"ghost {ghost_id} was already claimed by {ghost.claimed_by}")
        if ghost.expires_at is not None and ghost.expires_at <= self.received:
            raise Conflict(f"ghost {ghost_id} expired at {ghost.expires_at} and can't be claimed")
        try:
            PublicKey.parse(ghost.public_key).verify(
                proof, documents.claim_message(ghost_id, claimant.id)
            )
        except LogLineError as exc:
            raise InvalidSpan(
                "the claim proof is not the ghost key's signature of the claim",
                field="payload.proof",
            ) from exc
        return ClaimGhost(ghost_id, claimant.id)

    def _home_log(self, identity: IdentityRecord) -> None:
        # Key history must be followable within one log, so identity documents stay on the log
        # where the identity was created.
        if identity.tenant != self.tenant:
            raise InvalidSpan(
                f"identity documents of {identity.id} belong on the log of "
                f"{identity.tenant}, where it was created",
                field="body.tenant",
            )

    def _revert(self, span: Span) -> Effect:
        target_id = span.body["caused_by"]
        if target_id is None:
            raise InvalidSpan(
                "a revert (status reverted) names the span it reverts in caused_by",
                field="body.caused_by",
            )
        target = self._span(target_id)
        if target is None:
            raise InvalidSpan(
                f"names span {target_id}, which is not in the log of {self.tenant}",
                field="body.caused_by",
            )
        if target.status == "reverted":
            raise InvalidSpan("a revert cannot itself be reverted", field="body.caused_by")
        if target.reverted_by is not None:
            raise Conflict(f"span {target_id} was already reverted by {target.reverted_by}")
        return Revert(target_id, span.id)

    def _redaction(self, span: Span) -> Effect:
        payload: Any = span.payload
        if not isinstance(payload, dict) or sorted(payload) != [
            "payload_digest",
            "reason",
            "span_id",
        ]:
            raise InvalidSpan(
                "a redaction's payload has exactly span_id, payload_digest and reason",
                field="payload",
            )
        if not isinstance(payload["reason"], str) or not payload["reason"].strip():
            raise InvalidSpan("a redaction states its reason", field="payload.reason")
        target = self._span(payload["span_id"]) if isinstance(payload["span_id"], str) else None
        if target is None:
            raise NotFound(f"span {payload['span_id']} is not in the log of {self.tenant}")
        if target.kind in SYSTEM_KINDS:
            raise InvalidSpan(
                "identity documents and redactions can't be redacted: verifiers need them",
                field="payload.span_id",
            )
        if not target.has_payload or target.redacted_by is not None:
            raise InvalidSpan(
                f"span {payload['span_id']} has no payload to redact", field="payload.span_id"
            )
        if target.payload_digest != payload["payload_digest"]:
            raise InvalidSpan(
                f"does not match the target's digest {target.payload_digest}",
                field="payload.payload_digest",
            )
        return Redact(payload["span_id"], span.id)

    # --- effects --------------------------------------------------------------------------------

    def _apply_to_overlay(self, effect: Effect) -> None:
        match effect:
            case CreateIdentity(record, _):
                self.identities[record.id] = record
            case RotateKey(identity, _, new_key, _):
                current = self._identity(identity)
                assert current is not None
                self.identities[identity] = replace(current, public_key=new_key)
            case ClaimGhost(ghost, claimant):
                current = self._identity(ghost)
                assert current is not None
                self.identities[ghost] = replace(current, status="claimed", claimed_by=claimant)
            case Revert(target, by):
                ref = self._span(target)
                assert ref is not None
                self.spans[target] = replace(ref, reverted_by=by)
            case Redact(target, by):
                ref = self._span(target)
                assert ref is not None
                self.spans[target] = replace(ref, redacted_by=by, has_payload=False)

    def apply(self) -> None:
        """Write the admitted effects; call after the entries are inserted."""
        tx, received = self.tx, self.received
        for effect in self.effects:
            match effect:
                case CreateIdentity(record, replaces_foreign):
                    if replaces_foreign:
                        tx.delete_identity(record.id)
                    tx.insert_identity(record)
                    tx.insert_key(
                        KeyRecord(record.id, record.public_key, received, None, record.span_id)
                    )
                case RotateKey(identity, old_key, new_key, span_id):
                    tx.close_key(identity, old_key, received)
                    tx.insert_key(KeyRecord(identity, new_key, received, None, span_id))
                    tx.update_identity(identity, public_key=new_key)
                case ClaimGhost(ghost, claimant):
                    tx.update_identity(ghost, status="claimed", claimed_by=claimant)
                case Revert(target, by):
                    tx.mark_span(self.log_id, target, reverted_by=by)
                case Redact(target, by):
                    tx.delete_payload(self.log_id, target)
                    tx.mark_span(self.log_id, target, redacted_by=by)
