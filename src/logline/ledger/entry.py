"""Log entries: what the log commits to for each span, and the leaf hash built from it.

    >>> entry = Entry(seq=0, span_id="0194...", span_hash=bytes(32), key="ed25519:...",
    ...               signature=bytes(64), received="2026-11-22T00:33:31.123456Z")
    >>> leaf = entry.leaf_hash()

The entry is server-side: it records the author's span hash and signature, the key that signature
verifies under, the position `seq`, when the log received the span, and the write decision. The
author's body is never changed; what the log decided lives here. Leaf data is the RFC 8785 bytes of
the entry object; the leaf hash is RFC 6962 `SHA-256(0x00 || leaf data)`. See docs/PROTOCOL.md §3.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from logline.canonical import b64decode, b64encode, canonicalize, hex_decode, loads
from logline.errors import InvalidIdentifier, ParseError
from logline.identity.ids import check_uuid7
from logline.identity.keys import PublicKey
from logline.ledger.merkle import leaf_hash
from logline.ledger.timefmt import parse_ts

ENTRY_VERSION = 1
ENTRY_FIELDS = ("v", "seq", "span_id", "span_hash", "key", "sig", "received", "decision")
DEFAULT_DECISION: dict[str, Any] = {"outcome": "allow"}
_DEFAULT_DECISION_JCS = canonicalize(DEFAULT_DECISION).decode()


@dataclass(frozen=True, slots=True)
class Entry:
    seq: int
    span_id: str
    span_hash: bytes
    key: str
    signature: bytes
    received: str
    decision: dict[str, Any] = field(default_factory=lambda: dict(DEFAULT_DECISION))

    def to_json(self) -> dict[str, Any]:
        return {
            "v": ENTRY_VERSION,
            "seq": self.seq,
            "span_id": self.span_id,
            "span_hash": self.span_hash.hex(),
            "key": self.key,
            "sig": b64encode(self.signature),
            "received": self.received,
            "decision": self.decision,
        }

    def leaf_data(self) -> bytes:
        """JCS of `to_json()`, written out directly: every string member is ASCII that needs no
        escaping (validated on parse), so only the decision goes through the general encoder.
        The members are in JCS order; a test checks this equals `canonicalize(self.to_json())`."""
        decision = (
            _DEFAULT_DECISION_JCS if self.decision == DEFAULT_DECISION
            else canonicalize(self.decision).decode()
        )  # fmt: skip
        return (
            f'{{"decision":{decision},"key":"{self.key}","received":"{self.received}",'
            f'"seq":{self.seq},"sig":"{b64encode(self.signature)}",'
            f'"span_hash":"{self.span_hash.hex()}","span_id":"{self.span_id}","v":{ENTRY_VERSION}}}'
        ).encode()

    def leaf_hash(self) -> bytes:
        return leaf_hash(self.leaf_data())

    @classmethod
    def from_json(cls, data: Any) -> Entry:
        """Parse an entry object; every field is checked, unknown fields are refused."""
        if not isinstance(data, dict) or sorted(data) != sorted(ENTRY_FIELDS):
            found = sorted(data) if isinstance(data, dict) else type(data).__name__
            raise ParseError(
                f"a log entry has exactly the fields {', '.join(ENTRY_FIELDS)}; found {found}"
            )
        if data["v"] != ENTRY_VERSION or type(data["v"]) is not int:
            raise ParseError(f"unsupported log entry version {data['v']!r}")
        seq = data["seq"]
        if type(seq) is not int or seq < 0:
            raise ParseError("entry seq must be a non-negative integer")
        for name in ("span_id", "span_hash", "key", "sig", "received"):
            if not isinstance(data[name], str):
                raise ParseError(f"entry {name} must be a string")
        PublicKey.parse(data["key"])
        try:
            check_uuid7(data["span_id"])
        except InvalidIdentifier as exc:
            raise ParseError(f"entry span_id: {exc}") from exc
        try:
            parse_ts(data["received"])
        except Exception as exc:
            raise ParseError(f"entry received: {exc}") from exc
        decision = data["decision"]
        if not isinstance(decision, dict) or not isinstance(decision.get("outcome"), str):
            raise ParseError("entry decision must be an object with a string outcome")
        return cls(
            seq=seq,
            span_id=data["span_id"],
            span_hash=hex_decode(data["span_hash"], what="entry span_hash", size=32),
            key=data["key"],
            signature=b64decode(data["sig"], what="entry sig"),
            received=data["received"],
            decision=decision,
        )

    @classmethod
    def from_leaf_data(cls, data: bytes) -> Entry:
        return cls.from_json(loads(data))
