"""Ed25519 keys and the domain-separated messages LogLine signs.

    >>> key = PrivateKey.generate()
    >>> sig = key.sign(b"hello")
    >>> key.public_key.verify(sig, b"hello")

Every signature LogLine makes is over `domain || 0x00 || data`, where `domain` is an ASCII label
naming what is signed (`SPAN_DOMAIN` for span hashes). A signature made for one purpose can
therefore never be replayed as another. Checkpoints are the exception: they follow the C2SP
signed-note format, which signs the note text itself.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from logline.canonical import b64decode, b64encode
from logline.errors import ParseError, SignatureError

SPAN_DOMAIN = b"logline/span/v1"
SIGNATURE_SIZE = 64
KEY_SIZE = 32


_SMALL_ORDER = frozenset(
    bytes.fromhex(h)
    for h in (
        "00" * 32,
        "01" + "00" * 31,
        "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05",
        "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a",
        "ec" + "ff" * 30 + "7f",
        "ed" + "ff" * 30 + "7f",
        "ee" + "ff" * 30 + "7f",
    )
)


@functools.lru_cache(maxsize=4096)
def _load_public_key(raw: bytes) -> Ed25519PublicKey:
    # Loading decompresses the curve point; a log sees the same few authors' keys over and over.
    try:
        return Ed25519PublicKey.from_public_bytes(raw)
    except ValueError as exc:
        raise ParseError("not a valid Ed25519 public key") from exc


def domain_message(domain: bytes, data: bytes) -> bytes:
    """The bytes actually signed: `domain || 0x00 || data`."""
    return domain + b"\x00" + data


@dataclass(frozen=True, slots=True)
class PublicKey:
    """An Ed25519 public key; printed as `ed25519:<base64 of the 32 raw bytes>`."""

    raw: bytes

    def __post_init__(self) -> None:
        if len(self.raw) != KEY_SIZE:
            raise ParseError(f"an Ed25519 public key is {KEY_SIZE} bytes, got {len(self.raw)}")
        # Small-order points accept forged signatures for many messages (libsodium refuses them
        # too); the sign bit does not change the point's order, so compare without it.
        if self.raw[:31] + bytes([self.raw[31] & 0x7F]) in _SMALL_ORDER:
            raise ParseError("refusing a small-order Ed25519 public key: it verifies forgeries")

    @classmethod
    def parse(cls, text: str) -> PublicKey:
        prefix, sep, rest = text.partition(":")
        if prefix != "ed25519" or not sep:
            raise ParseError(f"public key must look like ed25519:<base64>, got {text[:40]!r}")
        return cls(b64decode(rest, what="public key"))

    def __str__(self) -> str:
        return "ed25519:" + b64encode(self.raw)

    def verify(self, signature: bytes, message: bytes) -> None:
        """Raise `SignatureError` unless `signature` is this key's signature of `message`."""
        if len(signature) != SIGNATURE_SIZE:
            raise SignatureError("signature length", expected=SIGNATURE_SIZE, found=len(signature))
        try:
            self._key().verify(signature, message)
        except InvalidSignature as exc:
            raise SignatureError(
                "Ed25519 signature", expected=f"valid under {self}", found="invalid"
            ) from exc

    def _key(self) -> Ed25519PublicKey:
        return _load_public_key(self.raw)


class PrivateKey:
    """An Ed25519 signing key. Its `repr` never shows the secret."""

    __slots__ = ("_key", "public_key")

    def __init__(self, key: Ed25519PrivateKey) -> None:
        self._key = key
        self.public_key = PublicKey(key.public_key().public_bytes_raw())

    @classmethod
    def generate(cls) -> PrivateKey:
        return cls(Ed25519PrivateKey.generate())

    @classmethod
    def from_seed(cls, seed: bytes) -> PrivateKey:
        if len(seed) != KEY_SIZE:
            raise ParseError(f"an Ed25519 seed is {KEY_SIZE} bytes, got {len(seed)}")
        return cls(Ed25519PrivateKey.from_private_bytes(seed))

    def seed(self) -> bytes:
        """The 32-byte secret seed. Only the keystore should ever call this."""
        return self._key.private_bytes_raw()

    def sign(self, message: bytes) -> bytes:
        return self._key.sign(message)

    def __repr__(self) -> str:
        return f"PrivateKey(public_key={self.public_key})"
