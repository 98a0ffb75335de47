"""What the observing middlewares need to know about an ASGI request, in one place.

    >>> from starlette.applications import Starlette
    >>> from starlette.routing import Mount, Route
    >>> app = Starlette(routes=[Mount("/v1/{tenant}", routes=[Route("/spans/{id}", print)])])
    >>> scope = {"type": "http", "method": "GET", "path": "/v1/acme/spans/7", "root_path": ""}
    >>> route_template(scope, app)  # before routing
    '<unmatched>'
    >>> scope.update(route=app.routes[0].routes[0], root_path="/v1/acme", app_root_path="")
    >>> route_template(scope, app)  # after: the template, with the mount's own
    '/v1/{tenant}/spans/{id}'

Labels must stay bounded: a metric labelled with raw paths grows a series per span id. So the
route is the matched route's template, which Starlette leaves in `scope["route"]` (the scope dict
is shared with the routers below us, so it is there once the app has run); unmatched requests
are `<unmatched>`. Inside a `Mount` that template is relative to the mount and the mount's prefix
survives only as the raw matched path (`root_path`, possibly holding a tenant name), so then the
routes are matched again from the top to rebuild the full template.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from starlette.routing import BaseRoute, Host, Match, Mount
from starlette.types import Scope

UNMATCHED = "<unmatched>"
# Methods outside this set become one label value, as OpenTelemetry's conventions say: a client
# may send any token as its method.
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
OTHER_METHOD = "_OTHER"


def route_template(scope: Scope, app: Any = None) -> str:
    """The template of the route that handled `scope`, or `UNMATCHED`.

    `app` is the application whose routes were matched (the scope's `app` when the request came
    in; a mounted Starlette app replaces it); it is needed only to rebuild templates under a Mount.
    """
    path = getattr(scope.get("route"), "path", None)
    if not isinstance(path, str):
        return UNMATCHED
    root_path = scope.get("root_path", "")
    app_root_path = scope.get("app_root_path", root_path)
    if root_path == app_root_path:
        return path
    top = {
        "type": scope["type"],
        "path": scope["path"],
        "root_path": app_root_path,
        "method": scope.get("method"),
        "headers": scope.get("headers", []),
    }
    full = _match(getattr(app, "routes", None) or [], top)
    return full if full is not None else path


def request_method(scope: Scope) -> str:
    """The request method as a bounded label value."""
    method = str(scope.get("method", "")).upper()
    return method if method in KNOWN_METHODS else OTHER_METHOD


def header(scope: Scope, name: bytes) -> str | None:
    """The first value of header `name` (lower case), decoded as Latin-1, or None."""
    for key, value in scope.get("headers", []):
        if key.lower() == name:
            return bytes(value).decode("latin-1")
    return None


def _match(routes: Iterable[BaseRoute], scope: Scope) -> str | None:
    """The full template the router would pick for `scope`: a full match, else the first partial."""
    partial: tuple[BaseRoute, Scope] | None = None
    for route in routes:
        match, child = route.matches(scope)
        if match is Match.FULL:
            return _template(route, {**scope, **child})
        if match is Match.PARTIAL and partial is None:
            partial = (route, {**scope, **child})
    return _template(*partial) if partial is not None else None


def _template(route: BaseRoute, scope: Scope) -> str | None:
    if isinstance(route, Mount | Host):
        prefix = route.path if isinstance(route, Mount) else ""
        inner = _match(route.routes, scope)
        return prefix + inner if inner is not None else prefix or None
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else None
