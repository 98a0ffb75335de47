"""The boundary with httpx, shared by both clients: building requests, reading responses, and
turning httpx's exceptions into `ConnectionFailed`.

    request = build(http, Request("GET", "/v1/auth/whoami"))    # an httpx.Request
    response = response_of(http.send(request))                  # a protocol.Response
"""

from __future__ import annotations

import httpx

from logline import __version__
from logline.client.errors import ConnectionFailed
from logline.client.protocol import Request, Response

USER_AGENT = f"logline-python/{__version__}"
CONNECT_TIMEOUT_S = 10.0
# Raised before a byte of the request left this process: safe to retry whatever it was.
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout, httpx.UnsupportedProtocol)


def build(http: httpx.Client | httpx.AsyncClient, request: Request) -> httpx.Request:
    built = http.build_request(
        request.method,
        request.path,
        params=list(request.params),
        json=request.json,
        headers=dict(request.headers),
    )
    if request.timeout_s is not None:
        timeout = httpx.Timeout(CONNECT_TIMEOUT_S, read=request.timeout_s)
        built.extensions["timeout"] = timeout.as_dict()
    return built


def response_of(response: httpx.Response, content: bytes | None = None) -> Response:
    """A `Response` with `content` (default: the body, which must have been read)."""
    headers = {name.lower(): value for name, value in response.headers.items()}
    body = response.content if content is None else content
    return Response(response.status_code, headers, body)


def failure(exc: httpx.HTTPError) -> ConnectionFailed:
    where = ""
    try:
        where = f" ({exc.request.method} {exc.request.url})"
    except RuntimeError:  # httpx raises this when the exception has no request
        pass
    error = ConnectionFailed(
        f"{type(exc).__name__}: {exc or 'no details'}{where}", sent=not isinstance(exc, _NOT_SENT)
    )
    error.__cause__ = exc
    return error
