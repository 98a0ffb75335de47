"""What the API returns, as typed values parsed from its JSON.

    page = client.query(kind="payment.*", limit=50)
    for logged in page.items:                   # LoggedSpan: seq, entry, span (a ledger Span)
        print(logged.seq, logged.span.body["title"])
    page.next_cursor                            # pass back as cursor= for the next page

Every parser checks what it reads and raises only `ParseError` (or `VerificationError` when a
logged span does not match its own entry); a server that answers nonsense never leaks a
`KeyError` into the caller's code.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, TypeVar

from logline.canonical import b64decode
from logline.errors import InvalidSpan, ParseError, VerificationError
from logline.ledger.checkpoint import NoteVerifier
from logline.ledger.entry import Entry
from logline.ledger.receipt import Receipt
from logline.ledger.span import Span, parse_span

Wait = Literal["sequenced", "checkpointed"]
T = TypeVar("T")


def field(data: Any, name: str, kind: type[T], what: str) -> T:
    """`data[name]` if `data` is an object holding a `kind` there, else `ParseError`."""
    if not isinstance(data, dict):
        raise ParseError(f"{what} is not a JSON object")
    value = data.get(name)
    # bool is an int subclass; `"seq": true` is not a position.
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ParseError(f"{what}: {name!r} is missing or not a {kind.__name__}")
    return value


def optional(data: Any, name: str, kind: type[T], what: str) -> T | None:
    if isinstance(data, dict) and data.get(name) is None:
        return None
    return field(data, name, kind, what)


def number(data: Any, name: str, what: str) -> float:
    """`data[name]` as a float: JSON has one kind of number, so `2` is as good as `2.0`."""
    if not isinstance(data, dict):
        raise ParseError(f"{what} is not a JSON object")
    value = data.get(name)
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise ParseError(f"{what}: {name!r} is missing or not a number")
    return float(value)


def optional_number(data: Any, name: str, what: str) -> float | None:
    if isinstance(data, dict) and data.get(name) is None:
        return None
    return number(data, name, what)


def strings(data: Any, name: str, what: str) -> tuple[str, ...]:
    items = field(data, name, list, what)
    if not all(isinstance(item, str) for item in items):
        raise ParseError(f"{what}: {name!r} must be a list of strings")
    return tuple(items)


def server_span(data: Any, what: str) -> Span:
    """A span in wire form from the server, checked like any untrusted span."""
    try:
        return parse_span(data)
    except InvalidSpan as exc:
        raise ParseError(f"{what} holds an invalid span: {exc}") from exc


@dataclass(frozen=True, slots=True)
class TokenSet:
    access_token: str
    refresh_token: str
    expires_in: int
    identity: str
    tenants: tuple[str, ...]

    @classmethod
    def from_json(cls, data: Any) -> TokenSet:
        what = "token response"
        return cls(
            field(data, "access_token", str, what),
            field(data, "refresh_token", str, what),
            field(data, "expires_in", int, what),
            field(data, "identity", str, what),
            strings(data, "tenants", what),
        )

    def __repr__(self) -> str:  # tokens are secrets: keep them out of logs and tracebacks
        return f"TokenSet(identity={self.identity!r}, tenants={self.tenants!r})"


@dataclass(frozen=True, slots=True)
class Challenge:
    nonce: str
    message: bytes  # the exact bytes to sign
    expires_at: str

    @classmethod
    def from_json(cls, data: Any) -> Challenge:
        what = "challenge"
        message = b64decode(field(data, "message", str, what), what="challenge message")
        return cls(field(data, "nonce", str, what), message, field(data, "expires_at", str, what))


@dataclass(frozen=True, slots=True)
class WhoAmI:
    identity: str
    tenants: tuple[str, ...]
    method: str
    instance_admin: bool
    roles: dict[str, str | None]

    @classmethod
    def from_json(cls, data: Any) -> WhoAmI:
        what = "whoami"
        roles = field(data, "roles", dict, what)
        if not all(isinstance(v, str | None) for v in roles.values()):
            raise ParseError("whoami: roles must map tenants to role names")
        return cls(
            field(data, "identity", str, what),
            strings(data, "tenants", what),
            field(data, "method", str, what),
            field(data, "instance_admin", bool, what),
            roles,
        )


@dataclass(frozen=True, slots=True)
class Appended:
    """An append's acknowledgement; `receipt` verifies offline (see `Client.verify_receipt`)."""

    span_id: str
    seq: int
    status: Wait
    receipt: Receipt

    @classmethod
    def from_json(cls, data: Any) -> Appended:
        what = "append result"
        receipt = Receipt.from_json(field(data, "receipt", dict, what))
        span_id, seq = field(data, "span_id", str, what), field(data, "seq", int, what)
        if receipt.entry.span_id != span_id or receipt.seq != seq:
            raise ParseError("append result: the receipt is for another entry")
        return cls.of(receipt)

    @classmethod
    def of(cls, receipt: Receipt) -> Appended:
        status: Wait = "sequenced" if receipt.checkpoint is None else "checkpointed"
        return cls(receipt.entry.span_id, receipt.seq, status, receipt)


@dataclass(frozen=True, slots=True)
class LoggedSpan:
    """A span as the log holds it: its entry, the span, and the log's marks on it."""

    seq: int
    entry: Entry
    span: Span
    reverted_by: str | None = None
    redacted_by: str | None = None

    @classmethod
    def from_json(cls, data: Any, what: str = "logged span") -> LoggedSpan:
        entry = Entry.from_json(field(data, "entry", dict, what))
        span = server_span(field(data, "span", dict, what), what)
        seq = field(data, "seq", int, what)
        if entry.seq != seq or entry.span_id != span.id:
            raise ParseError(f"{what}: the entry is for another span or position")
        if entry.span_hash != span.hash:
            raise VerificationError(
                "logged span hash", expected=entry.span_hash.hex(), found=span.hash.hex(), seq=seq
            )
        return cls(
            seq,
            entry,
            span,
            optional(data, "reverted_by", str, what),
            optional(data, "redacted_by", str, what),
        )


@dataclass(frozen=True, slots=True)
class Page:
    items: tuple[LoggedSpan, ...]
    next_cursor: str | None

    @classmethod
    def from_json(cls, data: Any) -> Page:
        items = field(data, "items", list, "page")
        return cls(
            tuple(LoggedSpan.from_json(item) for item in items),
            optional(data, "next_cursor", str, "page"),
        )


@dataclass(frozen=True, slots=True)
class LogInfo:
    tenant: str
    origin: str
    size: int
    key: NoteVerifier  # the key that signs this log's checkpoints
    checkpoint: str | None

    @classmethod
    def from_json(cls, data: Any) -> LogInfo:
        what = "log info"
        return cls(
            field(data, "tenant", str, what),
            field(data, "origin", str, what),
            field(data, "size", int, what),
            NoteVerifier.parse(field(data, "key", str, what)),
            optional(data, "checkpoint", str, what),
        )


@dataclass(frozen=True, slots=True)
class CheckpointInfo:
    """A published checkpoint: `note` is the signed note, `open_checkpoint` verifies it."""

    size: int
    root: bytes
    note: str
    created_at: str

    @classmethod
    def from_json(cls, data: Any) -> CheckpointInfo:
        what = "checkpoint"
        return cls(
            field(data, "size", int, what),
            b64decode(field(data, "root", str, what), what="checkpoint root"),
            field(data, "checkpoint", str, what),
            field(data, "created_at", str, what),
        )


@dataclass(frozen=True, slots=True)
class Proof:
    """An inclusion proof (`index` set) or a consistency proof (`size1` set), to `size`/`root`.

    The server's `root` is a convenience: check proofs against a root from a checkpoint you
    verified, not against this one."""

    size: int
    proof: tuple[bytes, ...]
    root: bytes
    index: int | None = None
    size1: int | None = None

    @classmethod
    def from_json(cls, data: Any) -> Proof:
        what = "proof"
        hashes = strings(data, "proof", what)
        return cls(
            field(data, "size", int, what),
            tuple(b64decode(h, what="proof hash") for h in hashes),
            b64decode(field(data, "root", str, what), what="proof root"),
            optional(data, "index", int, what),
            optional(data, "size1", int, what),
        )


@dataclass(frozen=True, slots=True)
class EntryRange:
    start: int
    end: int
    items: tuple[LoggedSpan, ...]

    @classmethod
    def from_json(cls, data: Any) -> EntryRange:
        what = "entry range"
        items = field(data, "items", list, what)
        return cls(
            field(data, "start", int, what),
            field(data, "end", int, what),
            tuple(LoggedSpan.from_json(item, "entry") for item in items),
        )


@dataclass(frozen=True, slots=True)
class IdentityInfo:
    id: str
    kind: str
    public_key: str
    status: str
    tenant: str
    created_at: str
    display_name: str | None
    custodial: bool

    @classmethod
    def from_json(cls, data: Any) -> IdentityInfo:
        what = "identity"
        return cls(
            field(data, "id", str, what),
            field(data, "kind", str, what),
            field(data, "public_key", str, what),
            field(data, "status", str, what),
            field(data, "tenant", str, what),
            field(data, "created_at", str, what),
            optional(data, "display_name", str, what),
            field(data, "custodial", bool, what),
        )


@dataclass(frozen=True, slots=True)
class Onboarded:
    identity: str
    tenant: str
    role: str
    spans: tuple[str, ...]  # ids of the spans posted: the identity document, the first span

    @classmethod
    def from_json(cls, data: Any) -> Onboarded:
        what = "onboarding result"
        return cls(
            field(data, "identity", str, what),
            field(data, "tenant", str, what),
            field(data, "role", str, what),
            strings(data, "spans", what),
        )


@dataclass(frozen=True, slots=True)
class ApiKeyCreated:
    id: str
    identity: str
    role: str
    key: str  # the secret, shown once

    @classmethod
    def from_json(cls, data: Any) -> ApiKeyCreated:
        what = "API key"
        return cls(
            field(data, "id", str, what),
            field(data, "identity", str, what),
            field(data, "role", str, what),
            field(data, "key", str, what),
        )

    def __repr__(self) -> str:
        return f"ApiKeyCreated(id={self.id!r}, identity={self.identity!r}, role={self.role!r})"
