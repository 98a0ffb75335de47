"""Receipts: what a writer gets back, verifiable offline with only the log's verifier key.

    receipt = log.append(span, wait="checkpointed")
    verify_receipt(Receipt.from_json(receipt.to_json()), log.verifier(), span)

A *sequenced* receipt carries the entry (seq assigned, durable). A *checkpointed* receipt adds a
signed checkpoint and the inclusion proof of the entry's leaf in the tree that checkpoint signs.
See docs/PROTOCOL.md §6.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from logline.canonical import b64decode, b64encode
from logline.errors import ParseError, VerificationError
from logline.identity.keys import PublicKey
from logline.ledger.checkpoint import Checkpoint, NoteVerifier, open_checkpoint
from logline.ledger.entry import Entry
from logline.ledger.merkle import HASH_SIZE, verify_inclusion
from logline.ledger.span import Span

RECEIPT_VERSION = 1
MAX_PROOF_HASHES = 64  # a tree of fewer than 2**64 leaves


@dataclass(frozen=True, slots=True)
class Receipt:
    origin: str
    entry: Entry
    checkpoint: str | None = None
    inclusion: tuple[bytes, ...] = ()

    @property
    def status(self) -> str:
        return "sequenced" if self.checkpoint is None else "checkpointed"

    @property
    def seq(self) -> int:
        return self.entry.seq

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "v": RECEIPT_VERSION,
            "status": self.status,
            "origin": self.origin,
            "entry": self.entry.to_json(),
        }
        if self.checkpoint is not None:
            out["checkpoint"] = self.checkpoint
            out["inclusion"] = [b64encode(h) for h in self.inclusion]
        return out

    @classmethod
    def from_json(cls, data: Any) -> Receipt:
        """Parse a receipt object; every member is checked and unknown members are refused.

        Raises only `ParseError` (never ValueError, TypeError or KeyError), whatever `data` is.
        """
        if not isinstance(data, dict):
            raise ParseError(f"a receipt is a JSON object, got {type(data).__name__}")
        version = data.get("v")
        if type(version) is not int or version != RECEIPT_VERSION:
            raise ParseError(f"not a version {RECEIPT_VERSION} receipt (v must be the integer 1)")
        status = data.get("status")
        expected = {"v", "status", "origin", "entry"}
        if status == "checkpointed":
            expected |= {"checkpoint", "inclusion"}
        elif status != "sequenced":
            shown = status[:40] if isinstance(status, str) else type(status).__name__
            raise ParseError(f"receipt status must be sequenced or checkpointed, got {shown!r}")
        if set(data) != expected:
            raise ParseError(
                f"a {status} receipt has exactly the fields {', '.join(sorted(expected))}"
            )
        origin = data["origin"]
        if not isinstance(origin, str):
            raise ParseError("receipt origin must be a string")
        entry = Entry.from_json(data["entry"])
        if status == "sequenced":
            return cls(origin, entry)
        checkpoint, inclusion = data["checkpoint"], data["inclusion"]
        if (
            not isinstance(checkpoint, str)
            or not isinstance(inclusion, list)
            or not all(isinstance(h, str) for h in inclusion)
        ):
            raise ParseError(
                "receipt checkpoint must be text and inclusion a list of base64 hashes"
            )
        if len(inclusion) > MAX_PROOF_HASHES:
            raise ParseError(
                f"an inclusion proof has at most {MAX_PROOF_HASHES} hashes, got {len(inclusion)}"
            )
        proof = tuple(b64decode(h, what="inclusion proof hash") for h in inclusion)
        for h in proof:
            if len(h) != HASH_SIZE:
                raise ParseError(f"inclusion proof hashes are {HASH_SIZE} bytes, got {len(h)}")
        return cls(origin, entry, checkpoint, proof)


def verify_receipt(
    receipt: Receipt, verifier: NoteVerifier, span: Span | None = None
) -> Checkpoint:
    """Check a checkpointed receipt offline; with `span`, also check it is the span logged.

    Steps: (1) the checkpoint note is signed by `verifier` and names the receipt's origin;
    (2) the entry's leaf hash is included at index `seq` in the checkpoint's tree;
    (3) if `span` is given, its hash is the entry's span_hash and its signature verifies under
    the entry's key. Raises `VerificationError` (or `ParseError`) on the first failure.
    """
    if receipt.checkpoint is None:
        raise VerificationError("receipt status", expected="checkpointed", found="sequenced")
    # 1.
    checkpoint = open_checkpoint(receipt.checkpoint, verifier, origin=receipt.origin)
    # 2.
    if receipt.seq >= checkpoint.size:
        raise VerificationError("receipt seq", expected=f"< {checkpoint.size}", found=receipt.seq)
    verify_inclusion(
        receipt.seq, checkpoint.size, receipt.entry.leaf_hash(), receipt.inclusion, checkpoint.root
    )
    # 3.
    if span is not None:
        if span.hash != receipt.entry.span_hash:
            raise VerificationError(
                "span hash", expected=receipt.entry.span_hash.hex(), found=span.hash.hex()
            )
        if span.signature != receipt.entry.signature:
            raise VerificationError(
                "span signature", expected="the one in the entry", found="a different one"
            )
        span.verify(PublicKey.parse(receipt.entry.key))
    return checkpoint
