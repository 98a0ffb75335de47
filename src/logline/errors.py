"""Every error LogLine raises on purpose, in one tree.

    LogLineError
    ├── InvalidInput                 bad input from a caller; nothing was changed
    │   ├── InvalidSpan              a span failed validation (field, reason)
    │   ├── InvalidIdentifier        a LogLine ID, kind, tag or UUID is malformed
    │   ├── ParseError               a checkpoint, receipt, bundle or key could not be parsed
    │   ├── RedactionRefused         this payload may not be redacted
    │   ├── RuleError                a rule document is invalid (location, line, column)
    │   └── PayloadTooLarge          a request body is over the size limit
    ├── NotFound                     an identity, span, tenant or entry does not exist
    │   └── UnknownAuthor            a span's author is not a registered identity
    ├── Unauthenticated              no valid credentials (missing, expired or revoked token)
    ├── Forbidden                    authenticated, but the role or tenant does not allow it
    │   └── RuleRejected             the tenant's rules reject the span (its decision attached)
    ├── HeldForApproval              not an error: the span waits for approval (`held`)
    ├── RateLimited                  too many requests; `retry_after` seconds until the next
    ├── Conflict                     the write contradicts stored state (duplicate id, stale key)
    ├── VerificationError            a hash, signature, proof or checkpoint does not check out
    │   └── SignatureError           an Ed25519 signature does not verify
    ├── KeystoreError                the local keystore could not be opened or used
    │   └── WrongPassphrase          the passphrase does not decrypt the keystore
    ├── ConfigError                  the data directory or configuration is missing or wrong
    └── StorageError                 the database failed; raised from the driver's own exception

Callers catch `LogLineError` at the edge (CLI, API) and turn it into one line or one problem
response. Parsers never leak `ValueError`, `KeyError` or driver exceptions.
"""

from __future__ import annotations

from typing import Any


class LogLineError(Exception):
    """Base of every error LogLine raises on purpose."""


class InvalidInput(LogLineError):
    """Bad input from a caller; nothing was stored or changed."""


class InvalidSpan(InvalidInput):
    """A span failed validation. `field` names the offending part (dot path), if any."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        self.field = field
        super().__init__(f"{field}: {message}" if field else message)


class InvalidIdentifier(InvalidInput):
    """A LogLine ID, kind, tag, tenant name or UUID is malformed."""


class ParseError(InvalidInput):
    """A checkpoint, receipt, bundle line or key could not be parsed."""


class RedactionRefused(InvalidInput):
    """The payload may not be redacted (identity documents, already redacted, no payload)."""


class RuleError(InvalidInput):
    """A rule document is invalid: bad YAML or JSON, an unknown condition or action, a wrong type,
    CEL that does not compile, a bad glob, a duplicate rule id.

    `location` is the path to the offending part (`rules[3].when.all[1].equals`, empty for the
    whole document); `line` and `column` (1-based) are set when the document was text that tells.
    """

    def __init__(
        self,
        message: str,
        *,
        location: str = "",
        line: int | None = None,
        column: int | None = None,
    ) -> None:
        self.reason = message
        self.location = location
        self.line = line
        self.column = column
        where = location
        if line is not None:
            position = f"line {line}" if column is None else f"line {line}, column {column}"
            where = f"{where} ({position})" if where else position
        super().__init__(f"{where}: {message}" if where else message)


class PayloadTooLarge(InvalidInput):
    """A request body is larger than the configured limit."""


class Unauthenticated(LogLineError):
    """No valid credentials: missing, malformed, expired or revoked token, or a failed login."""


class Forbidden(LogLineError):
    """The principal is authenticated, but its role or tenant does not allow the action."""


class RuleRejected(Forbidden):
    """The tenant's active rule set rejects the span; `decision` is the full decision (reasons,
    the rules that matched, the rule set version)."""

    def __init__(self, span_id: str, decision: dict[str, Any]) -> None:
        self.span_id = span_id
        self.decision = decision
        reasons = "; ".join(
            f"{r['rule']}: {r['text']}" if r.get("rule") else str(r["text"])
            for r in decision.get("reasons", [])
        )
        super().__init__(f"span {span_id} rejected by the rules: {reasons or 'no reason given'}")


class HeldForApproval(LogLineError):
    """The span is held for approval, not logged (yet): `held` describes the hold (id, the
    requirement, when it expires). Raised once the hold's own record is committed."""

    def __init__(self, held: dict[str, Any]) -> None:
        self.held = held
        super().__init__(f"span {held['span_id']} is held for approval ({held['hold']})")


class RateLimited(LogLineError):
    """Too many requests from one principal for one route class."""

    def __init__(self, message: str, *, retry_after: int) -> None:
        self.retry_after = retry_after
        super().__init__(message)


class NotFound(LogLineError):
    """An identity, span, tenant, checkpoint or entry does not exist."""


class UnknownAuthor(NotFound):
    """A span names an author that is not a registered, usable identity."""


class Conflict(LogLineError):
    """The write contradicts stored state: duplicate span id, stale key, claimed ghost."""


class VerificationError(LogLineError):
    """A hash, signature, proof or checkpoint does not check out.

    `what` names the object checked, `expected` and `found` are printable values, and `seq` is the
    log position of the first bad entry when a whole log or bundle is verified.
    """

    def __init__(
        self,
        what: str,
        *,
        expected: Any = None,
        found: Any = None,
        seq: int | None = None,
    ) -> None:
        self.what = what
        self.expected = expected
        self.found = found
        self.seq = seq
        parts = [what if seq is None else f"entry {seq}: {what}"]
        if expected is not None or found is not None:
            parts.append(f"(expected {expected}, found {found})")
        super().__init__(" ".join(parts))


class SignatureError(VerificationError):
    """An Ed25519 signature does not verify under the key it claims."""


class KeystoreError(LogLineError):
    """The local keystore is missing, corrupt, or cannot hold the key asked for."""


class WrongPassphrase(KeystoreError):
    """The passphrase does not decrypt the keystore."""


class ConfigError(LogLineError):
    """The data directory or configuration is missing or inconsistent."""


class StorageError(LogLineError):
    """The database failed. Always raised `from` the driver's exception."""
