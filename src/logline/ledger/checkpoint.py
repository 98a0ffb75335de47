"""Checkpoints: signed tree heads in the C2SP tlog-checkpoint signed-note format.

    >>> signer = NoteSigner("logline.example", PrivateKey.generate())
    >>> note = sign_checkpoint(Checkpoint("logline.example/acme", 5, bytes(32)), signer)
    >>> open_checkpoint(note, signer.verifier()).size
    5

A checkpoint body is three lines (`<origin>\\n<size>\\n<base64 root>\\n`); the signed note
appends an
empty line and one signature line per signer: `— <key name> <base64(key id || signature)>\\n`.
Ed25519 key ids are the first four bytes of SHA-256(key name || 0x0A || 0x01 || public key), as in
C2SP signed-note. Verifier keys are printed `<name>+<hex key id>+<base64(0x01 || public key)>`.
See docs/PROTOCOL.md §5.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from logline.canonical import b64decode, b64encode
from logline.errors import ParseError, SignatureError, VerificationError
from logline.identity.keys import PrivateKey, PublicKey
from logline.ledger.merkle import HASH_SIZE

ED25519_ALG = b"\x01"
SIG_PREFIX = "\u2014 "  # EM DASH, SPACE
_NAME = re.compile(r"[^\s+]+")
MAX_NOTE_BYTES = 1 << 16


@dataclass(frozen=True, slots=True)
class Checkpoint:
    origin: str
    size: int
    root: bytes

    def body(self) -> str:
        return f"{self.origin}\n{self.size}\n{b64encode(self.root)}\n"


def key_id(name: str, key: PublicKey) -> bytes:
    return hashlib.sha256(name.encode() + b"\n" + ED25519_ALG + key.raw).digest()[:4]


@dataclass(frozen=True, slots=True)
class NoteVerifier:
    name: str
    key: PublicKey

    @property
    def key_id(self) -> bytes:
        return key_id(self.name, self.key)

    def __str__(self) -> str:
        return f"{self.name}+{self.key_id.hex()}+{b64encode(ED25519_ALG + self.key.raw)}"

    @classmethod
    def parse(cls, text: str) -> NoteVerifier:
        parts = text.strip().split("+", 2)
        if len(parts) != 3 or not _NAME.fullmatch(parts[0]):
            raise ParseError("a verifier key looks like <name>+<hex key id>+<base64 key>")
        name, hex_id, encoded = parts
        raw = b64decode(encoded, what="verifier key")
        if len(raw) != 33 or raw[:1] != ED25519_ALG:
            raise ParseError("verifier key is not an Ed25519 (algorithm 1) key")
        verifier = cls(name, PublicKey(raw[1:]))
        if verifier.key_id.hex() != hex_id:
            raise ParseError(f"verifier key id {hex_id} does not match its name and key")
        return verifier


class NoteSigner:
    def __init__(self, name: str, key: PrivateKey) -> None:
        if not _NAME.fullmatch(name):
            raise ParseError(f"a note key name has no spaces or '+', got {name!r}")
        self.name = name
        self._key = key

    def verifier(self) -> NoteVerifier:
        return NoteVerifier(self.name, self._key.public_key)

    def signature_line(self, text: str) -> str:
        sig = self._key.sign(text.encode())
        return (
            f"{SIG_PREFIX}{self.name} {b64encode(key_id(self.name, self._key.public_key) + sig)}\n"
        )


def sign_checkpoint(checkpoint: Checkpoint, signer: NoteSigner) -> str:
    text = checkpoint.body()
    return text + "\n" + signer.signature_line(text)


def parse_checkpoint_body(text: str) -> Checkpoint:
    lines = text.split("\n")
    if len(lines) < 4 or lines[-1] != "":
        raise ParseError(
            "a checkpoint body is origin, size and root hash, each ending in a newline"
        )
    origin, size_text, root_text = lines[0], lines[1], lines[2]
    if not origin or origin != origin.strip():
        raise ParseError("checkpoint origin is empty or has surrounding spaces")
    if (
        not size_text.isascii()
        or not size_text.isdigit()
        or (size_text != "0" and size_text[0] == "0")
    ):
        raise ParseError(f"checkpoint size {size_text[:30]!r} is not a decimal number")
    root = b64decode(root_text, what="checkpoint root hash")
    if len(root) != HASH_SIZE:
        raise ParseError(f"checkpoint root hash must be {HASH_SIZE} bytes, got {len(root)}")
    return Checkpoint(origin, int(size_text), root)


def split_note(note: str) -> tuple[str, list[tuple[str, bytes, bytes]]]:
    """Split a signed note into its text and its (name, key id, signature) lines."""
    if len(note.encode()) > MAX_NOTE_BYTES:
        raise ParseError("signed note is too large")
    text, sep, sigs = note.rpartition("\n\n")
    if not sep or not sigs.endswith("\n"):
        raise ParseError("signed note has no blank line before its signatures")
    text += "\n"
    signatures = []
    for line in sigs[:-1].split("\n"):
        if not line.startswith(SIG_PREFIX):
            raise ParseError("signature line does not start with an em dash and a space")
        name, _, encoded = line[len(SIG_PREFIX) :].partition(" ")
        raw = b64decode(encoded, what="note signature")
        if not _NAME.fullmatch(name) or len(raw) < 5:
            raise ParseError("malformed note signature line")
        signatures.append((name, raw[:4], raw[4:]))
    return text, signatures


def open_checkpoint(note: str, verifier: NoteVerifier, origin: str | None = None) -> Checkpoint:
    """Verify a signed checkpoint note and return the checkpoint it carries.

    Raises `ParseError` if it is malformed, `SignatureError` if no signature by `verifier`
    verifies, and `VerificationError` if `origin` is given and differs.
    """
    text, signatures = split_note(note)
    checkpoint = parse_checkpoint_body(text)
    # C2SP signed-note: find the line whose name and key id match the verifier, then check it.
    matching = [
        sig for name, kid, sig in signatures if name == verifier.name and kid == verifier.key_id
    ]
    if not matching:
        raise SignatureError("checkpoint signature", expected=f"one by {verifier}", found="none")
    verifier.key.verify(matching[0], text.encode())
    if origin is not None and checkpoint.origin != origin:
        raise VerificationError("checkpoint origin", expected=origin, found=checkpoint.origin)
    return checkpoint
