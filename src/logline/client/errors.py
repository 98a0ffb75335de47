"""What the SDK raises for an error response, and for a server it cannot reach.

    try:
        client.get_span(span_id)
    except ApiNotFound as exc:                # also a `logline.errors.NotFound`
        print(exc.status, exc.type, exc.detail)

Every API error is an `ApiError` carrying the problem's `status`, `type` (the stable
`urn:logline:problem:<slug>`), `title`, `detail` and the whole `problem` object. Each class also
derives from the matching class of the one error tree (`logline/errors.py`), so code that catches
`NotFound` or `InvalidInput` works the same against a local log and a server:

    LogLineError
    ├── ApiError                       an error response (problem+json, or anything non-2xx)
    │   ├── ApiInvalidInput            400, 413, 422 (also an InvalidInput)
    │   │   └── ApiInvalidSpan         invalid-span (also an InvalidSpan, with `field`)
    │   ├── ApiUnknownAuthor           unknown-author (also an UnknownAuthor)
    │   ├── ApiNotFound                404 (also a NotFound)
    │   ├── ApiUnauthenticated         401 (also an Unauthenticated)
    │   ├── ApiForbidden               403 (also a Forbidden)
    │   │   └── ApiRuleRejected        rejected-by-rule (also a RuleRejected, with `decision`)
    │   ├── ApiRateLimited             429 (also a RateLimited, with `retry_after`)
    │   ├── ApiConflict                409 (also a Conflict)
    │   ├── ApiServerError             5xx and anything else
    │   └── SpanHeld                   202 on an append: held for approval, not logged (also a
    │                                  HeldForApproval, with `held`)
    └── ConnectionFailed               no response: refused, reset, timed out (`sent` tells whether
                                       the request may have reached the server)

Match on `type` or on the class, never on `detail`, which is for people.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from logline.canonical import loads
from logline.errors import (
    Conflict,
    Forbidden,
    HeldForApproval,
    InvalidInput,
    InvalidSpan,
    LogLineError,
    NotFound,
    ParseError,
    RateLimited,
    RuleRejected,
    Unauthenticated,
    UnknownAuthor,
)

PROBLEM_PREFIX = "urn:logline:problem:"


class ApiError(LogLineError):
    """An error response. `str()` is the problem's detail (or title), one line for people."""

    def __init__(self, status: int, problem: Mapping[str, Any]) -> None:
        self.status = status
        self.problem = dict(problem)
        self.type = _text(problem.get("type")) or f"{PROBLEM_PREFIX}http-{status}"
        self.title = _text(problem.get("title")) or f"HTTP {status}"
        self.detail = _text(problem.get("detail")) or self.title
        # Not super().__init__: some bases (RateLimited, InvalidSpan) take other arguments; their
        # attributes are set by the subclasses below.
        LogLineError.__init__(self, self.detail)

    @property
    def slug(self) -> str:
        """The type without its prefix, e.g. `not-found`."""
        return self.type.removeprefix(PROBLEM_PREFIX)


class ApiInvalidInput(ApiError, InvalidInput):
    """The request was refused as bad input (400, 413, 422); nothing was stored."""


class ApiInvalidSpan(ApiInvalidInput, InvalidSpan):
    """A span failed the server's validation; `field` names the offending part, if known."""

    def __init__(self, status: int, problem: Mapping[str, Any]) -> None:
        super().__init__(status, problem)
        self.field = _text(problem.get("field"))


class ApiUnknownAuthor(ApiError, UnknownAuthor):
    """A span's author is not a registered, usable identity on the server."""


class ApiNotFound(ApiError, NotFound):
    """The span, identity, tenant or entry does not exist (or is not visible to the caller)."""


class ApiUnauthenticated(ApiError, Unauthenticated):
    """No valid credentials: missing, expired or revoked token, or a failed login."""


class ApiForbidden(ApiError, Forbidden):
    """Authenticated, but the role or the tenant does not allow the request."""


class ApiRuleRejected(ApiForbidden, RuleRejected):
    """The tenant's rules rejected the span; nothing was logged. `decision` is the whole decision
    (reasons, the rules that matched, the rule set version: docs/RULES.md §6.5)."""

    def __init__(self, status: int, problem: Mapping[str, Any]) -> None:
        super().__init__(status, problem)
        decision = problem.get("decision")
        self.decision: dict[str, Any] = decision if isinstance(decision, dict) else {}
        self.span_id = _text(problem.get("span_id")) or ""

    @property
    def reasons(self) -> list[str]:
        """The reasons' texts, for people."""
        found = self.decision.get("reasons")
        items = found if isinstance(found, list) else []
        return [str(r.get("text")) for r in items if isinstance(r, dict)]


class ApiRateLimited(ApiError, RateLimited):
    """Too many requests; `retry_after` seconds until the server takes more."""

    def __init__(self, status: int, problem: Mapping[str, Any], retry_after: int = 1) -> None:
        super().__init__(status, problem)
        self.retry_after = retry_after


class ApiConflict(ApiError, Conflict):
    """The write contradicts the server's state (duplicate span id, existing tenant...)."""


class ApiServerError(ApiError):
    """The server failed (5xx), or answered with a status the SDK does not expect."""


class SpanHeld(ApiError, HeldForApproval):
    """An append answered 202: the tenant's rules hold the span for approval, and it is not
    logged (yet). `held` is the server's answer: `hold` (its id), `span_id`, `state`,
    `expires_at`, `requirement` (who may approve, quorum), `reasons` and `record` (the
    `approval.requested` span logged instead). Not a failure, but the append has no receipt."""

    def __init__(self, held: Mapping[str, Any]) -> None:
        self.held = dict(held)
        detail = (
            f"span {held.get('span_id')} is held for approval (hold {held.get('hold')}, "
            f"expires {held.get('expires_at')})"
        )
        super().__init__(202, {"type": PROBLEM_PREFIX + "held", "title": "Held for approval",
                               "detail": detail})  # fmt: skip


class ConnectionFailed(LogLineError):
    """No response. `sent` is False only when the request surely never reached the server
    (connection refused, connect timeout), so even a non-idempotent request may be retried."""

    def __init__(self, message: str, *, sent: bool) -> None:
        self.sent = sent
        super().__init__(message)


# Most specific first; a type not listed falls back to the status.
_BY_TYPE: dict[str, type[ApiError]] = {
    "invalid-span": ApiInvalidSpan,
    "unknown-author": ApiUnknownAuthor,
    "rejected-by-rule": ApiRuleRejected,
}
_BY_STATUS: dict[int, type[ApiError]] = {
    400: ApiInvalidInput,
    401: ApiUnauthenticated,
    403: ApiForbidden,
    404: ApiNotFound,
    409: ApiConflict,
    413: ApiInvalidInput,
    422: ApiInvalidInput,
    429: ApiRateLimited,
}


def error_for(status: int, headers: Mapping[str, str], content: bytes) -> ApiError:
    """The `ApiError` for a non-2xx response; `headers` has lowercase names.

    A body that is not a problem object (a proxy's HTML page) still gives an error of the right
    class, with the start of the body as its detail.
    """
    problem = _problem(content)
    if problem is None:
        text = content[:200].decode("utf-8", "replace").strip()
        problem = {"title": f"HTTP {status}", "detail": " ".join(text.split()) or None}
    slug = (_text(problem.get("type")) or "").removeprefix(PROBLEM_PREFIX)
    cls = (_BY_TYPE.get(slug) if status < 500 else None) or _BY_STATUS.get(status, ApiServerError)
    if cls is ApiRateLimited:
        return ApiRateLimited(status, problem, retry_after_seconds(headers, problem) or 1)
    return cls(status, problem)


def retry_after_seconds(
    headers: Mapping[str, str], problem: Mapping[str, Any] | None = None
) -> int:
    """Whole seconds from `Retry-After` (delay-seconds form) or the problem's `retry_after`;
    0 when neither is usable. HTTP-date values are ignored: clocks differ, the backoff stands."""
    value = headers.get("retry-after", "").strip()
    if value.isascii() and value.isdigit():
        return int(value)
    found = None if problem is None else problem.get("retry_after")
    return found if type(found) is int and found >= 0 else 0


def _problem(content: bytes) -> dict[str, Any] | None:
    if not content:
        return None
    try:
        data = loads(content)
    except ParseError:
        return None
    return data if isinstance(data, dict) else None


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None
