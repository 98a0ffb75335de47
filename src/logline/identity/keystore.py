"""A local keystore: Ed25519 private keys encrypted at rest under one passphrase.

The file is UTF-8 JSON, mode 0600, replaced atomically on every write:

    {
      "v": 1,
      "kdf": {"name": "scrypt", "n": 32768, "r": 8, "p": 1, "salt": "<base64, 16 bytes>"},
      "check": {"nonce": "<base64, 12 bytes>", "ciphertext": "<base64, 52 bytes>"},
      "keys": {
        "<logline id>": {
          "public_key": "ed25519:<base64, 32 bytes>",
          "created_at": "<RFC 3339 UTC, microseconds, e.g. 2026-11-22T00:33:31.123456Z>",
          "nonce": "<base64, 12 bytes>",
          "ciphertext": "<base64, 48 bytes>"
        }
      }
    }

Base64 is standard with padding (RFC 4648 §4). `n` is a power of two from 2**10 to 2**20 (default
2**15); `r` and `p` are always 8 and 1. Cryptography:

* key = scrypt(NFC-normalized UTF-8 passphrase, salt, n, r, p) → 32 bytes, derived once per open;
* every ciphertext is AES-256-GCM under that key with a fresh random 12-byte nonce (tag appended);
* a key entry encrypts the 32-byte Ed25519 seed with associated data
  `b"logline-keystore/v1\\x00" + id + b"\\x00" + public_key` (both as UTF-8), so a ciphertext moved
  to another identity, or a public key edited in place, fails to decrypt;
* `check` encrypts the ASCII constant `logline-keystore/v1 passphrase check` with associated data
  `b"logline-keystore/v1\\x00check"`, so a wrong passphrase is recognised even with no keys.

`Keystore.open` decrypts every entry once, so a tampered file is refused up front as corrupt.
Because the public key is authenticated with its seed, `public_key()` needs no decryption.
"""

from __future__ import annotations

import getpass
import json
import os
import secrets
import stat
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from logline.canonical import b64decode, b64encode, loads
from logline.errors import InvalidInput, KeystoreError, NotFound, ParseError, WrongPassphrase
from logline.identity.ids import LogLineId
from logline.identity.keys import PrivateKey, PublicKey
from logline.ledger.timefmt import format_ts, now_ts, parse_ts

PASSPHRASE_ENV = "LOGLINE_PASSPHRASE"
DEFAULT_N = 2**15
# Bounds on the file's scrypt cost: the floor keeps brute force expensive, and the ceiling stops
# an edited file from making `open` allocate gigabytes (scrypt needs 128 * n * r bytes).
MIN_N, MAX_N = 2**10, 2**20
_R, _P, _SALT_SIZE, _NONCE_SIZE, _SEED_SIZE, _TAG_SIZE = 8, 1, 16, 12, 32, 16
_AAD_PREFIX = b"logline-keystore/v1\x00"
_CHECK_AAD = _AAD_PREFIX + b"check"
_CHECK_PLAINTEXT = b"logline-keystore/v1 passphrase check"

T = TypeVar("T")
StrPath = str | os.PathLike[str]
Sealed = tuple[bytes, bytes]  # (nonce, AES-GCM ciphertext with its tag)
Doc = dict[str, Any]


@dataclass(frozen=True, slots=True)
class _Entry:
    public_key: str
    created_at: str
    nonce: bytes
    ciphertext: bytes

    def json(self) -> dict[str, str]:
        meta = {"public_key": self.public_key, "created_at": self.created_at}
        return meta | _json(self.nonce, self.ciphertext)


class Keystore:
    """Private keys by LogLine ID. `repr` shows the path and the count, never key material."""

    __slots__ = ("_aead", "_entries", "_header", "_path")

    def __init__(self, path: Path, aead: AESGCM, header: Doc, entries: dict[str, _Entry]) -> None:
        """Internal: use `create` or `open`, which derive the key and validate the file."""
        self._path, self._aead, self._header, self._entries = path, aead, header, entries

    @classmethod
    def create(cls, path: StrPath, passphrase: str, *, n: int = DEFAULT_N) -> Keystore:
        """Write a new, empty keystore at `path`; an existing file is never overwritten."""
        target = Path(path)
        if not passphrase:
            raise KeystoreError("an empty passphrase is not allowed")
        if not _valid_n(n):
            raise KeystoreError(f"scrypt n must be a power of two from {MIN_N} to {MAX_N}, got {n}")
        if target.exists():
            raise KeystoreError(f"{target} already exists; refusing to overwrite a keystore")
        salt = secrets.token_bytes(_SALT_SIZE)
        aead = AESGCM(_derive(passphrase, salt, n))
        header = _header(n, salt, _seal(aead, _CHECK_PLAINTEXT, _CHECK_AAD))
        store = cls(target, aead, header, {})
        store._write(store._entries)
        return store

    @classmethod
    def open(cls, path: StrPath, passphrase: str) -> Keystore:
        target = Path(path)
        try:
            mode = stat.S_IMODE(target.stat().st_mode)
            data = target.read_bytes()
        except FileNotFoundError:
            raise KeystoreError(f"no keystore at {target}") from None
        except OSError as exc:
            raise KeystoreError(f"cannot read keystore {target}: {exc.strerror}") from exc
        # A key file others can read is already exposed to them; say so rather than use it.
        if os.name == "posix" and mode & 0o077:
            raise KeystoreError(
                f"keystore {target} is accessible by group or others (mode {mode:04o}); "
                f"run `chmod 600 {target}`"
            )
        try:
            doc = loads(data)
            if _field(doc, "v", int) != 1:
                raise ParseError(f"unsupported version {doc['v']!r}")
            kdf = _field(doc, "kdf", dict)
            n, salt = _field(kdf, "n", int), b64decode(_field(kdf, "salt", str), what="salt")
            params = (_field(kdf, "name", str), _field(kdf, "r", int), _field(kdf, "p", int))
            if params != ("scrypt", _R, _P) or not _valid_n(n) or len(salt) != _SALT_SIZE:
                raise ParseError(f"unsupported kdf parameters {json.dumps(kdf)}")
            check = _parse_sealed(_field(doc, "check", dict), len(_CHECK_PLAINTEXT))
            keys = _field(doc, "keys", dict).items()
            entries = {str(LogLineId.parse(i)): _parse_entry(e) for i, e in keys}
        except InvalidInput as exc:
            raise KeystoreError(f"keystore {target} is corrupt: {exc}") from exc
        aead = AESGCM(_derive(passphrase, salt, n))
        try:
            aead.decrypt(*check, _CHECK_AAD)
        except InvalidTag:
            raise WrongPassphrase(f"wrong passphrase for keystore {target}") from None
        store = cls(target, aead, _header(n, salt, check), entries)
        for identity in entries:
            store.get(identity)  # authenticates every entry now, not at some later signing
        return store

    def add(self, identity: str, key: PrivateKey) -> None:
        """Store the key for a new identity; an identity that already has one is refused."""
        identity = str(LogLineId.parse(identity))
        if identity in self._entries:
            raise KeystoreError(f"{identity} already has a key; use replace to rotate it")
        self._put(identity, key)

    def replace(self, identity: str, key: PrivateKey) -> None:
        """Rotate: the old ciphertext is dropped and the new key sealed under a fresh nonce."""
        self._require(identity)
        self._put(identity, key)

    def get(self, identity: str) -> PrivateKey:
        entry = self._require(identity)
        aad = _aad(identity, entry.public_key)
        try:
            seed = self._aead.decrypt(entry.nonce, entry.ciphertext, aad)
        except InvalidTag:
            raise KeystoreError(f"keystore {self._path} is corrupt at {identity}") from None
        return PrivateKey.from_seed(seed)

    def identities(self) -> list[str]:
        return sorted(self._entries)

    def public_key(self, identity: str) -> str:
        return self._require(identity).public_key

    def __contains__(self, identity: object) -> bool:
        return identity in self._entries

    def __repr__(self) -> str:
        return f"Keystore(path={str(self._path)!r}, identities={len(self._entries)})"

    def _require(self, identity: str) -> _Entry:
        if identity not in self._entries:
            raise NotFound(f"no key for {identity!r} in keystore {self._path}")
        return self._entries[identity]

    def _put(self, identity: str, key: PrivateKey) -> None:
        public_key = str(key.public_key)
        sealed = _seal(self._aead, key.seed(), _aad(identity, public_key))
        entries = {**self._entries, identity: _Entry(public_key, now_ts(), *sealed)}
        self._write(entries)
        self._entries = entries  # only once the file holds it

    def _write(self, entries: dict[str, _Entry]) -> None:
        doc = {**self._header, "keys": {i: e.json() for i, e in sorted(entries.items())}}
        data = (json.dumps(doc, indent=2) + "\n").encode()
        # Temp file beside the target so os.replace is a same-filesystem atomic rename; readers
        # and crashes see the old file or the new one, never a torn write.
        tmp = self._path.with_name(f".{self._path.name}.{secrets.token_hex(8)}.tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except OSError as exc:
            raise KeystoreError(f"cannot write keystore {self._path}: {exc.strerror}") from exc
        try:
            with os.fdopen(fd, "wb") as handle:
                os.fchmod(handle.fileno(), 0o600)  # the umask can only remove bits; be explicit
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, self._path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        # Persist the rename itself, not just the file contents.
        dir_fd = os.open(self._path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def passphrase_from_env_or_prompt(confirm: bool = False) -> str:
    """`LOGLINE_PASSPHRASE` if set, else a terminal prompt (asked twice when `confirm`)."""
    passphrase = os.environ.get(PASSPHRASE_ENV)
    if passphrase is None:
        try:
            passphrase = getpass.getpass("Keystore passphrase: ")
            if confirm and getpass.getpass("Repeat passphrase: ") != passphrase:
                raise KeystoreError("the passphrases do not match")
        except EOFError:
            raise KeystoreError(f"no passphrase given; set {PASSPHRASE_ENV}") from None
    if not passphrase:
        raise KeystoreError("an empty passphrase is not allowed")
    return passphrase


def _derive(passphrase: str, salt: bytes, n: int) -> bytes:
    # NFC so the same passphrase typed on systems that compose accents differently still opens.
    secret = unicodedata.normalize("NFC", passphrase).encode()
    return Scrypt(salt=salt, length=32, n=n, r=_R, p=_P).derive(secret)


def _aad(identity: str, public_key: str) -> bytes:
    return _AAD_PREFIX + identity.encode() + b"\x00" + public_key.encode()


def _seal(aead: AESGCM, plaintext: bytes, aad: bytes) -> Sealed:
    nonce = secrets.token_bytes(_NONCE_SIZE)
    return nonce, aead.encrypt(nonce, plaintext, aad)


def _json(nonce: bytes, ciphertext: bytes) -> dict[str, str]:
    return {"nonce": b64encode(nonce), "ciphertext": b64encode(ciphertext)}


def _header(n: int, salt: bytes, check: Sealed) -> Doc:
    kdf = {"name": "scrypt", "n": n, "r": _R, "p": _P, "salt": b64encode(salt)}
    return {"v": 1, "kdf": kdf, "check": _json(*check)}


def _valid_n(n: int) -> bool:
    return MIN_N <= n <= MAX_N and n & (n - 1) == 0


def _field(obj: object, name: str, kind: type[T]) -> T:
    value = obj.get(name) if isinstance(obj, dict) else None
    # bool is an int subclass; `"n": true` is not a cost parameter.
    if not isinstance(value, kind) or isinstance(value, bool):
        raise ParseError(f"{name!r} is missing or not a {kind.__name__}")
    return value


def _parse_sealed(obj: object, plaintext_size: int) -> Sealed:
    nonce = b64decode(_field(obj, "nonce", str), what="nonce")
    ciphertext = b64decode(_field(obj, "ciphertext", str), what="ciphertext")
    if len(nonce) != _NONCE_SIZE or len(ciphertext) != plaintext_size + _TAG_SIZE:
        raise ParseError("a nonce or ciphertext has the wrong length")
    return nonce, ciphertext


def _parse_entry(entry: object) -> _Entry:
    public_key = str(PublicKey.parse(_field(entry, "public_key", str)))
    created_at = format_ts(parse_ts(_field(entry, "created_at", str)))
    return _Entry(public_key, created_at, *_parse_sealed(entry, _SEED_SIZE))
