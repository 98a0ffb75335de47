"""Client-side signing: an identity and its private key, from memory or the local keystore.

    >>> signer = Signer.generate("logline-id://person/alice")
    >>> span = signer.span("acme", "payment.approved", "Approve invoice 42", {"amount": 42})
    >>> span.author, span.tenant
    ('logline-id://person/alice', 'acme')

The key never leaves the process: spans are signed here and the server only ever sees signatures.
`Signer.from_keystore` opens the same encrypted keystore the CLI uses (`LOGLINE_PASSPHRASE`, or a
prompt, when no passphrase is given).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from logline.identity.documents import creation_span
from logline.identity.ids import LogLineId
from logline.identity.keys import PrivateKey
from logline.identity.keystore import Keystore, passphrase_from_env_or_prompt
from logline.ledger.span import Span, new_span


@dataclass(frozen=True, slots=True)
class Signer:
    identity: str
    key: PrivateKey

    def __post_init__(self) -> None:
        LogLineId.parse(self.identity)  # InvalidIdentifier now, not at the first signature

    @classmethod
    def generate(cls, identity: str) -> Signer:
        """A new identity key (register it with `identity_span` before signing with it)."""
        return cls(identity, PrivateKey.generate())

    @classmethod
    def from_keystore(
        cls, path: str | os.PathLike[str], identity: str, passphrase: str | None = None
    ) -> Signer:
        """The identity's key from an encrypted keystore file."""
        secret = passphrase if passphrase is not None else passphrase_from_env_or_prompt()
        identity = str(LogLineId.parse(identity))
        return cls(identity, Keystore.open(path, secret).get(identity))

    def span(self, tenant: str, kind: str, title: str, payload: Any = None, **fields: Any) -> Span:
        """A signed span by this identity (fields as in `ledger.span.build_body`)."""
        return new_span(
            self.key,
            tenant=tenant,
            author=self.identity,
            kind=kind,
            title=title,
            payload=payload,
            **fields,
        )

    def identity_span(self, tenant: str, display_name: str | None = None) -> Span:
        """The `identity.created` document that registers this identity and key on `tenant`."""
        return creation_span(self.key, tenant, LogLineId.parse(self.identity), display_name)
