"""Custodial keys: identities whose private key the server holds, sealed at rest.

    custody = Custody(instance_key, accounts)
    key = custody.create("logline-id://service/ci")    # stored sealed; returns the key
    custody.key("logline-id://service/ci")             # → the same PrivateKey, or None

Service identities (the instance's own, API keys' services, users who log in with a password and
bring no key) sign through the server. Their seeds are sealed with AES-256-GCM under a key derived
from the instance key (HKDF-SHA256, info `logline/custodial/v1`), with the identity as associated
data, so a sealed seed moved to another identity's row does not open. The API never returns one.
"""

from __future__ import annotations

import os
import threading

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from logline.errors import ConfigError
from logline.identity.keys import PrivateKey
from logline.ledger.timefmt import now_ts
from logline.store.accounts import Accounts

INFO = b"logline/custodial/v1"
NONCE_BYTES = 12


class Custody:
    def __init__(self, instance_key: PrivateKey, accounts: Accounts) -> None:
        kdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=INFO)
        self._aead = AESGCM(kdf.derive(instance_key.seed()))
        self.accounts = accounts
        self._cache: dict[str, PrivateKey] = {}
        self._lock = threading.Lock()

    def create(self, identity: str) -> PrivateKey:
        """A new key for `identity`, sealed and stored; if one is stored already, that one."""
        key = PrivateKey.generate()
        nonce = os.urandom(NONCE_BYTES)
        sealed = nonce + self._aead.encrypt(nonce, key.seed(), identity.encode())
        stored = self.accounts.put_custodial_key(identity, sealed, now_ts())
        return self._open(identity, stored)

    def key(self, identity: str) -> PrivateKey | None:
        with self._lock:
            cached = self._cache.get(identity)
        if cached is not None:
            return cached
        sealed = self.accounts.custodial_key(identity)
        return None if sealed is None else self._open(identity, sealed)

    def _open(self, identity: str, sealed: bytes) -> PrivateKey:
        try:
            seed = self._aead.decrypt(sealed[:NONCE_BYTES], sealed[NONCE_BYTES:], identity.encode())
        except InvalidTag:
            raise ConfigError(
                f"the custodial key of {identity} does not open with this instance key "
                "(was the instance key replaced?)"
            ) from None
        key = PrivateKey.from_seed(seed)
        with self._lock:
            self._cache[identity] = key
        return key
