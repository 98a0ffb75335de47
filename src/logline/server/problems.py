"""Errors as RFC 9457 problem details (`application/problem+json`) with stable types.

    problem = problem_for(InvalidSpan("too long", field="body.title"))
    problem.status, problem.type        # → 422, "urn:logline:problem:invalid-span"

Every `LogLineError` maps to one type, listed in docs/PROTOCOL.md §11; clients match on `type`,
never on `detail`, which is for people.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from logline import errors
from logline.rules.sets import ExamplesFailed

MEDIA_TYPE = "application/problem+json"
PREFIX = "urn:logline:problem:"
log = logging.getLogger("logline.server")

# Most specific first: the first class an error is an instance of decides.
_TYPES: list[tuple[type[errors.LogLineError], int, str, str]] = [
    (errors.InvalidSpan, 422, "invalid-span", "Invalid span"),
    (errors.InvalidIdentifier, 422, "invalid-identifier", "Invalid identifier"),
    (errors.ParseError, 400, "parse-error", "Unparseable input"),
    (errors.RedactionRefused, 422, "redaction-refused", "Redaction refused"),
    (errors.PayloadTooLarge, 413, "payload-too-large", "Request body too large"),
    (errors.RuleError, 400, "invalid-rules", "Invalid rule set"),
    (ExamplesFailed, 400, "examples-failed", "The rule set's examples fail"),
    (errors.InvalidInput, 400, "invalid-input", "Invalid input"),
    (errors.UnknownAuthor, 422, "unknown-author", "Unknown author"),
    (errors.NotFound, 404, "not-found", "Not found"),
    (errors.Unauthenticated, 401, "unauthenticated", "Authentication required"),
    (errors.RuleRejected, 403, "rejected-by-rule", "Rejected by the tenant's rules"),
    (errors.Forbidden, 403, "forbidden", "Forbidden"),
    (errors.RateLimited, 429, "rate-limited", "Too many requests"),
    (errors.Conflict, 409, "conflict", "Conflict"),
    (errors.SignatureError, 422, "invalid-signature", "Invalid signature"),
    (errors.VerificationError, 500, "integrity-error", "Stored data failed verification"),
    (errors.StorageError, 503, "storage-unavailable", "Storage unavailable"),
    (errors.LogLineError, 500, "server-error", "Server error"),
]
_HTTP_TYPES = {404: "not-found", 405: "method-not-allowed", 413: "payload-too-large"}


@dataclass(frozen=True, slots=True)
class Problem:
    status: int
    type: str
    title: str
    detail: str
    extra: dict[str, Any] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)

    def body(self) -> dict[str, Any]:
        return {
            "type": self.type,
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
            **self.extra,
        }

    def response(self, instance: str | None = None) -> JSONResponse:
        body = self.body()
        if instance is not None:
            body["instance"] = instance
        return JSONResponse(body, self.status, headers=self.headers, media_type=MEDIA_TYPE)


def problem_for(exc: errors.LogLineError) -> Problem:
    status, slug, title = next((s, t, x) for c, s, t, x in _TYPES if isinstance(exc, c))
    extra: dict[str, Any] = {}
    headers: dict[str, str] = {}
    detail = str(exc)
    if isinstance(exc, errors.InvalidSpan) and exc.field is not None:
        extra["field"] = exc.field
    if isinstance(exc, errors.RuleError):
        extra |= {"location": exc.location, "line": exc.line, "column": exc.column}
    if isinstance(exc, ExamplesFailed):
        extra["failures"] = [failure.to_json() for failure in exc.failures]
    if isinstance(exc, errors.RuleRejected):
        extra |= {"span_id": exc.span_id, "decision": exc.decision}
    if isinstance(exc, errors.RateLimited):
        headers["Retry-After"] = str(exc.retry_after)
        extra["retry_after"] = exc.retry_after
    if isinstance(exc, errors.Unauthenticated):
        headers["WWW-Authenticate"] = 'Bearer realm="logline"'
    if status >= 500 and not isinstance(exc, errors.StorageError):
        detail = "the server failed; the request id in the logs has the details"
    return Problem(status, PREFIX + slug, title, detail, extra, headers)


ERROR_STATUSES = {
    400: "Bad input",
    401: "No valid credentials",
    403: "Not allowed for this credential, role or tenant",
    404: "Not found",
    409: "Conflicts with stored state",
    413: "Request body too large",
    422: "Invalid request, span or signature",
    429: "Rate limited (see Retry-After)",
    500: "Server error",
    503: "Storage unavailable",
}
PUBLIC_PATHS = {
    "/healthz",
    "/readyz",
    "/metrics",
    "/.well-known/jwks.json",
    "/v1/auth/login",
    "/v1/auth/challenge",
    "/v1/auth/key-login",
    "/v1/auth/refresh",
}


def document(schema: dict[str, Any], problem_schema: dict[str, Any]) -> dict[str, Any]:
    """Describe the problems in the OpenAPI document: every operation may answer with any of
    them, as `application/problem+json` (FastAPI would describe 422 as its own JSON shape)."""
    components = schema.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    schemas.pop("HTTPValidationError", None)
    schemas.pop("ValidationError", None)
    schemas["Problem"] = problem_schema
    components["securitySchemes"] = {
        "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT or llk_ API key"},
        "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
    }
    ref = {"$ref": "#/components/schemas/Problem"}
    for path, operations in schema.get("paths", {}).items():
        for operation in operations.values():
            responses = operation.setdefault("responses", {})
            for status, description in ERROR_STATUSES.items():
                responses[str(status)] = {
                    "description": description,
                    "content": {MEDIA_TYPE: {"schema": ref}},
                }
            if path in PUBLIC_PATHS:
                operation["security"] = []
            elif path == "/v1/onboard":
                operation["security"] = [{}, {"bearer": []}, {"apiKey": []}]
            else:
                operation["security"] = [{"bearer": []}, {"apiKey": []}]
    return schema


def install(app: FastAPI) -> None:
    """Route every error the app can raise through `problem_for`."""

    async def logline_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, errors.LogLineError)
        if isinstance(exc, errors.HeldForApproval):
            # Not a failure: the span waits for approval (docs/PROTOCOL.md §14). The hold's own
            # state (a new hold is pending) must not shadow what the answer says: held.
            return JSONResponse({**exc.held, "state": "held"}, 202)
        problem = problem_for(exc)
        if problem.status >= 500:
            log.error("request failed: %s", exc, exc_info=exc)
        return problem.response(request.url.path)

    async def validation_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        found = [
            {"loc": [str(part) for part in e["loc"]], "msg": str(e["msg"]), "type": str(e["type"])}
            for e in exc.errors()
        ]
        detail = "; ".join(f"{'.'.join(e['loc'])}: {e['msg']}" for e in found[:5])
        problem = Problem(
            422, PREFIX + "validation-error", "Invalid request", detail, {"errors": found}
        )
        return problem.response(request.url.path)

    async def http_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        slug = _HTTP_TYPES.get(exc.status_code, "http-error")
        headers = dict(exc.headers or {})
        problem = Problem(
            exc.status_code, PREFIX + slug, str(exc.detail), str(exc.detail), headers=headers
        )
        return problem.response(request.url.path)

    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.error("unexpected error", exc_info=exc)
        problem = Problem(
            500,
            PREFIX + "server-error",
            "Server error",
            "the server failed; the request id in the logs has the details",
        )
        return problem.response(request.url.path)

    app.add_exception_handler(errors.LogLineError, logline_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(Exception, unexpected)
