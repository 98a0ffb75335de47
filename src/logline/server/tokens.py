"""What login hands out, and how each credential is checked.

    tokens = Tokens(instance_key, issuer="logline.example", access_ttl_s=900)
    jwt = tokens.access_token(identity, ("acme",), session_id)
    claims = tokens.verify_access(jwt)       # raises Unauthenticated if forged or expired

- Access tokens: JWTs signed by the instance key (EdDSA, Ed25519), short-lived, bound to the
  tenants named at login and to a session, which can be revoked.
- Refresh tokens: `llr_<session id>_<secret>`; each use replaces the secret (rotation). Presenting
  a replaced one means it was copied: the whole session is revoked.
- API keys: `llk_<key id>_<secret>`, shown once; only SHA-256 of the secret is stored.
- Passwords: argon2id hashes.

Secrets are 32 random bytes; digests are compared in constant time.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass
from typing import Any

import jwt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from logline.errors import Unauthenticated
from logline.identity.keys import PrivateKey

REFRESH_PREFIX = "llr"
API_KEY_PREFIX = "llk"
ACCESS_TYPE = "access"
_HASHER = PasswordHasher()
# Verifying against this when a user does not exist takes as long as a real check, so response
# times do not tell which usernames exist.
_DUMMY_HASH = _HASHER.hash(secrets.token_hex(16))


@dataclass(frozen=True, slots=True)
class AccessClaims:
    identity: str
    tenants: tuple[str, ...]
    session: str
    expires: int


@dataclass(frozen=True, slots=True)
class SplitToken:
    """A refresh token or API key, split into its id and its secret's digest."""

    id: str
    digest: bytes


def new_id() -> str:
    return secrets.token_hex(12)


def new_secret() -> tuple[str, bytes]:
    """A secret for a token and the digest to store of it."""
    secret = base64.urlsafe_b64encode(secrets.token_bytes(32)).decode().rstrip("=")
    return secret, digest(secret)


def digest(secret: str) -> bytes:
    return hashlib.sha256(secret.encode()).digest()


def same_digest(a: bytes, b: bytes) -> bool:
    return hmac.compare_digest(a, b)


def compose(prefix: str, token_id: str, secret: str) -> str:
    return f"{prefix}_{token_id}_{secret}"


def split(prefix: str, token: str) -> SplitToken:
    parts = token.split("_", 2)
    if len(parts) != 3 or parts[0] != prefix or not parts[1] or not parts[2]:
        what = "refresh token" if prefix == REFRESH_PREFIX else "API key"
        raise Unauthenticated(f"malformed {what}")
    return SplitToken(parts[1], digest(parts[2]))


def hash_password(password: str) -> str:
    return _HASHER.hash(password)


def check_password(password_hash: str | None, password: str) -> bool:
    try:
        return _HASHER.verify(password_hash or _DUMMY_HASH, password) and password_hash is not None
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


class Tokens:
    """Issues and verifies access tokens with the instance key."""

    def __init__(self, key: PrivateKey, *, issuer: str, access_ttl_s: int) -> None:
        self.issuer = issuer
        self.access_ttl_s = access_ttl_s
        self._private = Ed25519PrivateKey.from_private_bytes(key.seed())
        self._public: Ed25519PublicKey = self._private.public_key()
        self.public_key = key.public_key

    def access_token(
        self, identity: str, tenants: tuple[str, ...], session: str, *, now: float | None = None
    ) -> str:
        issued = int(time.time() if now is None else now)
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "sub": identity,
            "ten": list(tenants),
            "sid": session,
            "typ": ACCESS_TYPE,
            "jti": secrets.token_hex(8),  # no two tokens alike, even within one second
            "iat": issued,
            "exp": issued + self.access_ttl_s,
        }
        return jwt.encode(claims, self._private, algorithm="EdDSA")

    def verify_access(self, token: str) -> AccessClaims:
        try:
            claims = jwt.decode(
                token,
                self._public,
                algorithms=["EdDSA"],
                issuer=self.issuer,
                options={"require": ["exp", "iat", "sub", "sid", "iss"]},
                leeway=5,
            )
        except jwt.ExpiredSignatureError:
            raise Unauthenticated("access token expired; refresh it or log in again") from None
        except jwt.PyJWTError as exc:
            raise Unauthenticated(f"invalid access token: {exc}") from None
        tenants = claims.get("ten")
        if (
            claims.get("typ") != ACCESS_TYPE
            or not isinstance(tenants, list)
            or not all(isinstance(t, str) for t in tenants)
            or not isinstance(claims["sub"], str)
            or not isinstance(claims["sid"], str)
        ):
            raise Unauthenticated("invalid access token: unexpected claims")
        return AccessClaims(claims["sub"], tuple(tenants), claims["sid"], int(claims["exp"]))

    def jwks(self) -> dict[str, Any]:
        """The verification key as a JWK set (RFC 8037 OKP), for other services."""
        raw = self.public_key.raw
        x = base64.urlsafe_b64encode(raw).decode().rstrip("=")
        return {
            "keys": [
                {
                    "kty": "OKP",
                    "crv": "Ed25519",
                    "x": x,
                    "alg": "EdDSA",
                    "use": "sig",
                    "kid": hashlib.sha256(raw).hexdigest()[:16],
                }
            ]
        }
