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

Everything here may be fed untrusted text; it raises only `ParseError`, `SignatureError` or
`VerificationError`. As C2SP signed-note requires, a verifier ignores signature lines from keys it
does not know, even malformed ones; only lines that carry its own key name are parsed strictly.
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
# C2SP signed-note key names: non-empty, no Unicode spaces, no '+' (and, as the whole note may hold
# no ASCII control characters but newline, none of those either).
_NAME = re.compile(r"[^\s+\x00-\x1f]+")
_CONTROL = re.compile(r"[\x00-\x09\x0b-\x1f]")
MAX_NOTE_BYTES = 1 << 16
# C2SP: verifiers must accept at least 16 signatures; like golang.org/x/mod/sumdb/note, refuse >100.
MAX_SIGNATURES = 100
MAX_SIZE_DIGITS = 20  # 2**64 - 1 has 20 digits; int() refuses more than 4300


@dataclass(frozen=True, slots=True)
class Checkpoint:
    origin: str
    size: int
    root: bytes

    def body(self) -> str:
        return f"{self.origin}\n{self.size}\n{b64encode(self.root)}\n"


def check_name(name: object) -> str:
    """Return `name` if it is a valid C2SP signed-note key name, else raise `ParseError`."""
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        shown = name[:80] if isinstance(name, str) else type(name).__name__
        raise ParseError(
            f"a note key name is non-empty, without spaces, '+' or control characters, "
            f"got {shown!r}"
        )
    _utf8(name, "note key name")
    return name


def _utf8(text: str, what: str) -> bytes:
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ParseError(f"{what} holds a lone surrogate, which is not valid UTF-8") from exc


def key_id(name: str, key: PublicKey) -> bytes:
    encoded = check_name(name).encode()  # check_name refused lone surrogates
    return hashlib.sha256(encoded + b"\n" + ED25519_ALG + key.raw).digest()[:4]


@dataclass(frozen=True, slots=True)
class NoteVerifier:
    name: str
    key: PublicKey

    def __post_init__(self) -> None:
        check_name(self.name)
        if not isinstance(self.key, PublicKey):
            raise ParseError("a note verifier needs an Ed25519 public key")

    @property
    def key_id(self) -> bytes:
        return key_id(self.name, self.key)

    def __str__(self) -> str:
        return f"{self.name}+{self.key_id.hex()}+{b64encode(ED25519_ALG + self.key.raw)}"

    @classmethod
    def parse(cls, text: str) -> NoteVerifier:
        if not isinstance(text, str):
            raise ParseError(f"a verifier key is text, got {type(text).__name__}")
        parts = text.strip().split("+", 2)
        if len(parts) != 3 or not _NAME.fullmatch(parts[0]):
            raise ParseError("a verifier key looks like <name>+<hex key id>+<base64 key>")
        name, hex_id, encoded = parts
        check_name(name)
        raw = b64decode(encoded, what="verifier key")
        if len(raw) != 33 or raw[:1] != ED25519_ALG:
            raise ParseError("verifier key is not an Ed25519 (algorithm 1) key")
        verifier = cls(name, PublicKey(raw[1:]))
        if verifier.key_id.hex() != hex_id:
            raise ParseError(f"verifier key id {hex_id} does not match its name and key")
        return verifier


class NoteSigner:
    def __init__(self, name: str, key: PrivateKey) -> None:
        self.name = check_name(name)
        self._key = key

    def verifier(self) -> NoteVerifier:
        return NoteVerifier(self.name, self._key.public_key)

    def signature_line(self, text: str) -> str:
        sig = self._key.sign(_utf8(text, "note text"))
        return (
            f"{SIG_PREFIX}{self.name} {b64encode(key_id(self.name, self._key.public_key) + sig)}\n"
        )


def sign_checkpoint(checkpoint: Checkpoint, signer: NoteSigner) -> str:
    text = checkpoint.body()
    return text + "\n" + signer.signature_line(text)


def parse_checkpoint_body(text: str) -> Checkpoint:
    if not isinstance(text, str):
        raise ParseError(f"a checkpoint body is text, got {type(text).__name__}")
    lines = text.split("\n")
    if len(lines) < 4 or lines[-1] != "":
        raise ParseError(
            "a checkpoint body is origin, size and root hash, each ending in a newline"
        )
    origin, size_text, root_text = lines[0], lines[1], lines[2]
    if not origin or origin != origin.strip():
        raise ParseError("checkpoint origin is empty or has surrounding spaces")
    if (
        len(size_text) > MAX_SIZE_DIGITS
        or not size_text.isascii()
        or not size_text.isdigit()
        or (size_text != "0" and size_text[0] == "0")
    ):
        raise ParseError(f"checkpoint size {size_text[:30]!r} is not a decimal number")
    root = b64decode(root_text, what="checkpoint root hash")
    if len(root) != HASH_SIZE:
        raise ParseError(f"checkpoint root hash must be {HASH_SIZE} bytes, got {len(root)}")
    return Checkpoint(origin, int(size_text), root)


def split_note(
    note: str, strict_name: str | None = None
) -> tuple[str, list[tuple[str, bytes, bytes]]]:
    """Split a signed note into its text and its well-formed (name, key id, signature) lines.

    The note must be valid UTF-8 without control characters other than newline, at most
    `MAX_NOTE_BYTES`, and be text, a blank line, then 1 to `MAX_SIGNATURES` lines each starting
    with an em dash and a space. A signature line that is otherwise malformed is left out, as
    C2SP signed-note has verifiers ignore lines of keys they do not know; if its key name is
    `strict_name`, it raises `ParseError` instead.
    """
    if not isinstance(note, str):
        raise ParseError(f"a signed note is text, got {type(note).__name__}")
    if len(note) > MAX_NOTE_BYTES or len(_utf8(note, "signed note")) > MAX_NOTE_BYTES:
        raise ParseError(f"signed note is larger than {MAX_NOTE_BYTES} bytes")
    if _CONTROL.search(note):
        raise ParseError("signed note holds a control character other than newline")
    text, sep, sigs = note.rpartition("\n\n")
    if not sep or not sigs.endswith("\n"):
        raise ParseError("signed note has no blank line before its signatures")
    text += "\n"
    lines = sigs[:-1].split("\n")
    if len(lines) > MAX_SIGNATURES:
        raise ParseError(f"signed note has more than {MAX_SIGNATURES} signature lines")
    signatures = []
    for line in lines:
        if not line.startswith(SIG_PREFIX):
            raise ParseError("signature line does not start with an em dash and a space")
        name, _, encoded = line[len(SIG_PREFIX) :].partition(" ")
        try:
            check_name(name)
            raw = b64decode(encoded, what="note signature")
            if len(raw) < 5:
                raise ParseError("a note signature is a 4-byte key id and at least one byte")
        except ParseError as exc:
            if name == strict_name:
                raise ParseError(f"malformed signature line of {name}: {exc}") from exc
            continue  # not our key's line: C2SP has verifiers ignore it
        signatures.append((name, raw[:4], raw[4:]))
    return text, signatures


def open_checkpoint(note: str, verifier: NoteVerifier, origin: str | None = None) -> Checkpoint:
    """Verify a signed checkpoint note and return the checkpoint it carries.

    Raises `ParseError` if it is malformed, `SignatureError` if no signature by `verifier`
    verifies or one of its signatures does not, and `VerificationError` if `origin` is given and
    differs.
    """
    text, signatures = split_note(note, strict_name=verifier.name)
    checkpoint = parse_checkpoint_body(text)
    # C2SP signed-note: the lines whose name and key id both match the verifier are its
    # signatures, and each must verify; lines of other keys (same name or same id, not both)
    # are ignored.
    matching = [
        sig for name, kid, sig in signatures if name == verifier.name and kid == verifier.key_id
    ]
    if not matching:
        raise SignatureError("checkpoint signature", expected=f"one by {verifier}", found="none")
    message = _utf8(text, "signed note")
    for sig in matching:
        verifier.key.verify(sig, message)
    if origin is not None and checkpoint.origin != origin:
        raise VerificationError("checkpoint origin", expected=origin, found=checkpoint.origin)
    return checkpoint
