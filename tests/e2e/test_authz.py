"""Every route, by every principal, in every tenant: who may do what, and no tenant sees another.

The app runs in-process — the real app over a real SQLite store, lifespan included — so the walk
of a few thousand requests takes seconds. `ACCESS` is the reviewed table of who may call each
route: a route missing from it fails the walk, and `test_table_matches_declarations` checks it
against what the routes declare (`require(Permission.X, ...)`), so changing either shows up here.
"""

from __future__ import annotations

import inspect
import itertools
import json
import re
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute, APIWebSocketRoute, iter_route_contexts
from starlette.exceptions import StarletteDeprecationWarning
from starlette.routing import BaseRoute, WebSocketRoute
from starlette.websockets import WebSocketDisconnect

from logline.canonical import b64decode, b64encode
from logline.errors import NotFound
from logline.identity.documents import creation_span, rotation_span
from logline.identity.ids import LogLineId
from logline.identity.keys import PrivateKey
from logline.instance import Instance
from logline.ledger.span import new_span
from logline.server.app import create_app
from logline.server.run import bootstrap
from logline.server.services import Services
from logline.server.settings import ServerSettings
from logline.store.interface import Query

with warnings.catch_warnings():
    # Starlette 1.x asks for `httpx2` under its test client; the httpx we have works with it.
    warnings.filterwarnings(
        "ignore", "Using `httpx` with `starlette.testclient`", StarletteDeprecationWarning
    )
    from starlette.testclient import TestClient

pytestmark = pytest.mark.e2e

ALPHA, BETA, GAMMA = "alpha", "beta", "gamma"
WALKED = (ALPHA, BETA)
ROLES = ("viewer", "member", "operator", "admin", "owner")  # the order is the test's own oracle
PASSWORD = "correct horse battery staple"
UNTHROTTLED = {name: "1000000/minute" for name in ("auth", "read", "write", "stream")}
DENIED = "security.access_denied"

# Who may call a route: a least tenant role (of the tenant in the path, or `?tenant=` for the
# stream), or one of these.
PUBLIC = "public"  # no credentials needed
ANY = "any"  # any valid credential; no tenant involved
INSTANCE_ADMIN = "instance-admin"
ONBOARD = "onboard"  # instance administrators; anonymous callers too, were sign-up open
NODE = "node-key"  # API keys of role node: of `system` for every tenant, else for their own
WS = "WS"  # the method of WebSocket routes in the table
T = "/v1/tenants/{tenant}"
N = "/v1/nodes"
SYSTEM = "system"  # the reserved tenant, where instance-wide node keys live
LEASE_S = 3600  # leases taken in the walk outlive it: the lease reaper must write nothing

ACCESS: dict[tuple[str, str], str] = {
    ("GET", "/openapi.json"): PUBLIC,
    ("GET", "/docs"): PUBLIC,
    ("GET", "/docs/oauth2-redirect"): PUBLIC,
    ("GET", "/redoc"): PUBLIC,
    ("GET", "/.well-known/jwks.json"): PUBLIC,
    ("GET", "/healthz"): PUBLIC,
    ("GET", "/readyz"): PUBLIC,
    ("GET", "/metrics"): PUBLIC,
    ("POST", "/v1/auth/login"): PUBLIC,
    ("POST", "/v1/auth/challenge"): PUBLIC,
    ("POST", "/v1/auth/key-login"): PUBLIC,
    ("POST", "/v1/auth/refresh"): PUBLIC,
    ("POST", "/v1/auth/logout"): ANY,
    ("GET", "/v1/auth/whoami"): ANY,
    ("GET", "/v1/tenants"): ANY,
    ("POST", "/v1/tenants"): INSTANCE_ADMIN,
    ("POST", "/v1/users"): INSTANCE_ADMIN,
    ("POST", "/v1/onboard"): ONBOARD,
    ("GET", T): "viewer",
    ("GET", T + "/members"): "viewer",
    ("PUT", T + "/members/{identity:llid}"): "admin",
    ("DELETE", T + "/members/{identity:llid}"): "admin",
    ("POST", T + "/members/{identity:llid}/sessions/revoke"): "admin",
    ("POST", T + "/api-keys"): "admin",
    ("GET", T + "/api-keys"): "admin",
    ("DELETE", T + "/api-keys/{key_id}"): "admin",
    ("POST", T + "/spans"): "member",
    ("POST", T + "/spans/batch"): "member",
    ("POST", T + "/spans/custodial"): "member",
    ("GET", T + "/spans"): "viewer",
    ("GET", T + "/spans/{span_id}"): "viewer",
    ("GET", T + "/spans/{span_id}/receipt"): "viewer",
    ("POST", T + "/spans/{span_id}/replay"): "member",
    ("POST", T + "/spans/{span_id}/revert"): "member",
    ("POST", T + "/spans/{span_id}/redact"): "admin",
    ("GET", T + "/identities"): "viewer",
    ("POST", T + "/identities"): "member",
    ("POST", T + "/identities/rotate"): "member",
    ("POST", T + "/identities/ghosts"): "member",
    ("GET", T + "/identities/claim-proof"): "member",
    ("POST", T + "/identities/claims"): "member",
    ("GET", T + "/identities/{identity:llid}"): "viewer",
    ("GET", T + "/log"): "viewer",
    ("GET", T + "/log/checkpoint"): "viewer",
    ("POST", T + "/log/checkpoint"): "operator",
    ("GET", T + "/log/proofs/inclusion"): "viewer",
    ("GET", T + "/log/proofs/consistency"): "viewer",
    ("GET", T + "/log/entries"): "viewer",
    ("GET", T + "/log/bundle"): "viewer",
    ("POST", T + "/jobs"): "member",
    ("POST", T + "/jobs/batch"): "member",
    ("GET", T + "/jobs"): "viewer",
    ("GET", T + "/jobs/{job_id}"): "viewer",
    ("POST", T + "/jobs/{job_id}/cancel"): "operator",
    ("POST", T + "/jobs/{job_id}/retry"): "operator",
    ("GET", T + "/dead-letters"): "viewer",
    ("POST", T + "/dead-letters/requeue"): "operator",
    ("POST", T + "/dead-letters/purge"): "admin",
    ("PUT", T + "/job-types/{job_type}"): "admin",
    ("POST", T + "/schedules"): "operator",
    ("GET", T + "/schedules"): "viewer",
    ("GET", T + "/schedules/{ref}"): "viewer",
    ("PATCH", T + "/schedules/{ref}"): "operator",
    ("DELETE", T + "/schedules/{ref}"): "operator",
    ("GET", T + "/rules"): "viewer",
    ("GET", T + "/rules/{version:int}"): "viewer",
    ("POST", T + "/rules"): "admin",
    ("POST", T + "/rules/disable"): "admin",
    ("POST", T + "/rules/rollback"): "admin",
    ("POST", T + "/rules/dry-run"): "member",
    ("POST", T + "/rules/test"): "member",
    ("GET", T + "/approvals"): "viewer",
    ("GET", T + "/approvals/{hold_id}"): "viewer",
    ("POST", T + "/approvals/{hold_id}/approve"): "member",
    ("POST", T + "/approvals/{hold_id}/reject"): "member",
    ("GET", T + "/stats"): "viewer",
    ("GET", T + "/stats/series"): "viewer",
    ("GET", "/v1/stats"): INSTANCE_ADMIN,
    ("POST", N + "/register"): NODE,
    ("POST", N + "/heartbeat"): NODE,
    ("POST", N + "/deregister"): NODE,
    ("GET", T + "/nodes"): "viewer",
    ("GET", N): INSTANCE_ADMIN,
    ("POST", N + "/claim"): NODE,
    ("POST", N + "/jobs/{job_id}/heartbeat"): NODE,
    ("POST", N + "/jobs/{job_id}/complete"): NODE,
    ("POST", N + "/jobs/{job_id}/fail"): NODE,
    ("POST", N + "/reports"): NODE,
    ("GET", "/v1/stream"): "viewer",
    (WS, "/v1/stream/ws"): "viewer",
}
# Routes that declare no dependency and check credentials in their own code.
SELF_AUTHORIZING = {("GET", "/v1/stream"), (WS, "/v1/stream/ws"), ("POST", "/v1/onboard")}
STREAMS = {("GET", "/v1/stream"), (WS, "/v1/stream/ws")}
# Node routes are walked per tenant (the one in the body); a claim names none: any node may claim.
CLAIM = ("POST", N + "/claim")
# Nor do the registry's routes: a node registers and heartbeats as itself, whatever it serves.
TENANTLESS = {CLAIM, ("POST", N + "/register"), ("POST", N + "/heartbeat"),
              ("POST", N + "/deregister")}  # fmt: skip
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")


def may(role: str | None, least: str) -> bool:
    """The role order, written out independently of `logline.server.roles`."""
    if role is None:
        return False
    if role == "node":
        return least in ("viewer", "member")
    return ROLES.index(role) >= ROLES.index(least)


# --- the world: tenants with data, and a principal per role per tenant ----------------------------


@dataclass
class Caller:
    name: str
    headers: dict[str, str]
    roles: dict[str, str]  # its role in each tenant it can reach (bound to, and a member of)
    kind: str = "token"  # token | api_key | anonymous | forged
    identity: str | None = None
    username: str | None = None
    password: str = PASSWORD
    bound: tuple[str, ...] = ()
    instance_admin: bool = False

    def reaches(self, tenant: str) -> bool:
        return tenant in self.roles

    def is_node(self) -> bool:
        return self.kind == "api_key" and "node" in self.roles.values()

    def serves(self, tenant: str) -> bool:
        """Whether, as a node, it may take and report jobs of `tenant`."""
        return self.is_node() and (tenant in self.roles or SYSTEM in self.roles)


@dataclass
class TenantData:
    span: str  # a span with a payload, to read and replay
    keyholder: str  # a member whose key the test holds: it signs spans, logins and rotations
    key: PrivateKey
    ghost: str  # a ghost never claimed
    victim: str  # a member the walk grants, removes and revokes the sessions of
    victim_key: str  # an API key the walk revokes
    job: str  # a job on a queue no node claims, to read and to name in denied requests
    hold: str = ""  # a span held for approval, to read and to name in denied requests


@dataclass
class World:
    client: TestClient
    services: Services
    app: FastAPI
    admin: Caller = field(init=False)
    node: Caller = field(init=False)  # an instance-wide node: a node key of `system`
    data: dict[str, TenantData] = field(default_factory=dict)
    callers: list[Caller] = field(default_factory=list)
    refresh_token: str = ""
    admin_password: str = ""
    counter: Iterator[int] = field(default_factory=itertools.count)

    def unique(self, prefix: str) -> str:
        return f"{prefix}-{next(self.counter)}"

    def send(self, caller: Caller, method: str, url: str, **kwargs: Any) -> httpx.Response:
        response: httpx.Response = self.client.request(
            method, url, headers=caller.headers, **kwargs
        )
        return response

    def ok(self, method: str, url: str, **kwargs: Any) -> Any:
        """As the instance administrator (owner of alpha and beta), expecting success."""
        response = self.send(self.admin, method, url, **kwargs)
        assert response.status_code < 300, f"{method} {url}: {response.text}"
        return None if response.status_code == 204 else response.json()

    def login(self, username: str, tenants: list[str], password: str = PASSWORD) -> Any:
        body = {"username": username, "password": password, "tenants": tenants}
        response = self.client.post("/v1/auth/login", json=body)
        assert response.status_code == 200, response.text
        return response.json()

    def user(
        self, username: str, tenant: str, role: str, also: dict[str, str] | None = None,
        bound: list[str] | None = None,
    ) -> Caller:  # fmt: skip
        """A password user with `role` in `tenant` (and `also` elsewhere), logged in to `bound`."""
        self.ok(
            "POST",
            "/v1/users",
            json={"username": username, "password": PASSWORD, "tenant": tenant, "role": role},
        )
        identity = f"logline-id://person/{username}"
        memberships = {tenant: role, **(also or {})}
        for other, other_role in (also or {}).items():
            self.ok("PUT", f"/v1/tenants/{other}/members/{identity}", json={"role": other_role})
        bound = bound or [tenant]
        token = self.login(username, bound)["access_token"]
        roles = {t: r for t, r in memberships.items() if t in bound}
        return Caller(
            username,
            bearer(token),
            roles,
            identity=identity,
            username=username,
            bound=tuple(bound),
        )

    def custodial_span(self, tenant: str) -> str:
        body = {"kind": "walk.fixture", "title": "a span to act on", "payload": {"n": 1}}
        appended = self.ok("POST", f"/v1/tenants/{tenant}/spans/custodial", json=body)
        return str(appended["span_id"])

    def size(self, tenant: str) -> int:
        return self.services.log.head(tenant).size


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _register(world: World, tenant: str, handle: str, role: str) -> tuple[str, PrivateKey]:
    key = PrivateKey.generate()
    identity = LogLineId.of("person", handle)
    world.ok(
        "POST",
        f"/v1/tenants/{tenant}/identities",
        json=creation_span(key, tenant, identity).to_json(),
    )
    world.ok("PUT", f"/v1/tenants/{tenant}/members/{identity}", json={"role": role})
    return str(identity), key


def _build_world(client: TestClient, services: Services, app: FastAPI, password: str) -> World:
    world = World(client, services, app, admin_password=password)
    first = world.login("admin", [ALPHA], password)["access_token"]
    for name in (BETA, GAMMA):
        response = client.post("/v1/tenants", json={"name": name}, headers=bearer(first))
        assert response.status_code == 201, response.text
    token = world.login("admin", [ALPHA, BETA], password)["access_token"]
    world.admin = Caller(
        "admin",
        bearer(token),
        {ALPHA: "owner", BETA: "owner"},
        identity="logline-id://person/admin",
        username="admin",
        password=password,
        bound=(ALPHA, BETA),
        instance_admin=True,
    )
    world.callers.append(world.admin)
    # The instance administrator owns `system`: its node keys serve every tenant.
    owner = bearer(world.login("admin", [SYSTEM], password)["access_token"])
    body = {"name": "instance-node", "role": "node"}
    made = client.post(f"/v1/tenants/{SYSTEM}/api-keys", json=body, headers=owner)
    assert made.status_code == 201, made.text
    world.node = Caller(
        "system-node-key",
        {"X-API-Key": made.json()["key"]},
        {SYSTEM: "node"},
        kind="api_key",
        identity=made.json()["identity"],
    )
    world.callers.append(world.node)
    for tenant in WALKED:
        for role in ROLES:
            world.callers.append(world.user(f"{tenant}-{role}", tenant, role))
        for i, role in enumerate((*ROLES, "node")):
            made = world.ok(
                "POST",
                f"/v1/tenants/{tenant}/api-keys",
                json={"name": f"{tenant}-{role}", "role": role},
            )
            # Both ways of presenting a key are walked.
            headers = bearer(made["key"]) if i % 2 else {"X-API-Key": made["key"]}
            world.callers.append(
                Caller(
                    f"{tenant}-{role}-key",
                    headers,
                    {tenant: role},
                    kind="api_key",
                    identity=made["identity"],
                )
            )
        keyholder, key = _register(world, tenant, f"{tenant}-keyholder", "member")
        victim, _ = _register(world, tenant, f"{tenant}-victim", "viewer")
        ghost = world.ok(
            "POST", f"/v1/tenants/{tenant}/identities/ghosts", json={"handle": f"{tenant}-ghost"}
        )["id"]
        victim_key = world.ok(
            "POST", f"/v1/tenants/{tenant}/api-keys", json={"name": "victim", "role": "viewer"}
        )["id"]
        held = _submit(world, tenant, "walk-held")["id"]
        world.data[tenant] = TenantData(
            world.custodial_span(tenant), keyholder, key, ghost, victim, victim_key, held
        )
        world.data[tenant].hold = _new_hold(world, tenant)
    # Not a member of alpha or beta: a member of gamma only.
    world.callers.append(world.user("outsider", GAMMA, "owner"))
    # Admin in alpha, viewer in beta, with a token bound to both: the role is per tenant.
    world.callers.append(world.user("multi", ALPHA, "admin", {BETA: "viewer"}, [ALPHA, BETA]))
    # Owner of beta, but logged in to alpha only: the binding decides, not the membership.
    world.callers.append(world.user("split", ALPHA, "member", {BETA: "owner"}))
    world.callers += [
        Caller("anonymous", {}, {}, kind="anonymous"),
        Caller("forged-token", bearer("not.a.jwt"), {}, kind="forged"),
        Caller("forged-key", {"X-API-Key": "llk_0123456789ab_not-the-secret"}, {}, kind="forged"),
    ]
    world.refresh_token = world.login(f"{ALPHA}-viewer", [ALPHA])["refresh_token"]
    return world


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    home: Path = tmp_path_factory.mktemp("authz") / "home"
    instance = Instance.init(home, name="authz.test", tenant=ALPHA)
    settings = ServerSettings.model_validate(
        {"rate_limits": UNTHROTTLED, "allow_signup": False, "trusted_proxies": []}
    )
    # Nodes registered in the walk never heartbeat: none may be marked lost meanwhile.
    settings = settings.model_copy(update={"node_lost_after_s": 3600})
    services = Services(instance, settings)
    try:
        login = bootstrap(services)
        assert login.password is not None
        app = create_app(services)
        # Server errors are answers to check (500), not exceptions in the test.
        with TestClient(app, raise_server_exceptions=False) as client:
            yield _build_world(client, services, app, login.password)
    finally:
        services.close()


# --- routes of the app ----------------------------------------------------------------------------


def app_routes(app: FastAPI) -> list[tuple[str, str, BaseRoute]]:
    """(method, path, route) of every route, HEAD aside (the GET handler answers it)."""
    out: list[tuple[str, str, BaseRoute]] = []
    for context in iter_route_contexts(app.routes):
        route, path = context.original_route, context.path
        assert path is not None
        if isinstance(route, APIWebSocketRoute | WebSocketRoute):
            out.append((WS, path, route))
        else:
            out += [(m, path, route) for m in sorted(context.methods or ()) if m != "HEAD"]
    return out


def declared(route: BaseRoute, path: str) -> str | None:
    """What the route declares: a least role, ANY, PUBLIC, "authenticated", or None."""
    if not isinstance(route, APIRoute | APIWebSocketRoute):
        return None
    for dependency in route.dependant.dependencies:
        call = dependency.call
        if call is None:
            continue
        name = getattr(call, "__qualname__", "")
        if name.startswith("require."):
            permission = inspect.getclosurevars(call).nonlocals["permission"]
            # Without a tenant in the path, `authorize` has nothing to check a role in.
            return str(permission.value) if "{tenant}" in path else ANY
        if name.startswith("authenticated."):
            return "authenticated"
        if name.startswith("public."):
            return PUBLIC
        if name == "_node":
            return NODE
    return None


def test_table_matches_declarations(world: World) -> None:
    problems = []
    seen = set()
    for method, path, route in app_routes(world.app):
        seen.add((method, path))
        want, got = ACCESS.get((method, path)), declared(route, path)
        if want is None:
            problems.append(f"{method} {path}: not in ACCESS (declares {got}); review it")
        elif (method, path) in SELF_AUTHORIZING:
            ok = got is None
        elif want in (ANY, INSTANCE_ADMIN):
            ok = got == "authenticated" or (want == ANY and got == ANY)
        elif want == PUBLIC:
            ok = got in (PUBLIC, None)
        else:
            ok = got == want
        if want is not None and not ok:
            problems.append(f"{method} {path}: table says {want}, the route declares {got}")
    problems += [f"{m} {p}: in ACCESS but not a route" for m, p in sorted(set(ACCESS) - seen)]
    assert not problems, "\n".join(problems)


# --- requests for each route ----------------------------------------------------------------------


@dataclass
class Req:
    method: str
    url: str
    json: Any = None
    params: dict[str, Any] | None = None
    headers: dict[str, str] | None = None  # instead of the caller's
    # Run after the request with its status and body: a check (returning a failure) or an update.
    after: Callable[[int, bytes], str | None] | None = None


Builder = Callable[[World, Caller, str, bool], Req]
BUILDERS: dict[tuple[str, str], Builder] = {}


def builds(method: str, path: str) -> Callable[[Builder], Builder]:
    def register(fn: Builder) -> Builder:
        BUILDERS[(method, path)] = fn
        return fn

    return register


def simple(method: str, path: str, json: Any = None, **params: Any) -> None:
    """A request that needs nothing but the tenant filled in."""

    def build(w: World, c: Caller, t: str, allowed: bool) -> Req:
        return Req(method, path.format(tenant=t), json=json, params=params or None)

    BUILDERS[(method, path)] = build


for _path in (
    "/openapi.json",
    "/docs",
    "/docs/oauth2-redirect",
    "/redoc",
    "/healthz",
    "/readyz",
    "/metrics",
    "/.well-known/jwks.json",
    "/v1/auth/whoami",
    "/v1/tenants",
    T,
    T + "/members",
    T + "/api-keys",
    T + "/spans",
    T + "/identities",
    T + "/log",
    T + "/log/checkpoint",
):
    simple("GET", _path)
simple("POST", T + "/log/checkpoint")
simple("GET", T + "/log/proofs/inclusion", seq=0)
simple("GET", T + "/log/proofs/consistency", **{"from": 1})
simple("GET", T + "/log/entries", start=0, end=3)
simple("GET", T + "/log/bundle", start=0, end=3)
simple("POST", T + "/spans/custodial", {"kind": "walk.event", "title": "walked", "payload": {}})
simple("POST", T + "/api-keys", {"name": "walk", "role": "viewer"})
simple("GET", "/v1/stream")  # ?tenant= is added for streams
simple(WS, "/v1/stream/ws")


@builds("POST", "/v1/auth/login")
def _login(w: World, c: Caller, t: str, allowed: bool) -> Req:
    body = {"username": f"{ALPHA}-viewer", "password": PASSWORD, "tenants": [ALPHA]}
    return Req("POST", "/v1/auth/login", body)


@builds("POST", "/v1/auth/challenge")
def _challenge(w: World, c: Caller, t: str, allowed: bool) -> Req:
    return Req(
        "POST", "/v1/auth/challenge", {"identity": w.data[ALPHA].keyholder, "tenants": [ALPHA]}
    )


@builds("POST", "/v1/auth/key-login")
def _key_login(w: World, c: Caller, t: str, allowed: bool) -> Req:
    data = w.data[ALPHA]
    found = w.client.post(
        "/v1/auth/challenge", json={"identity": data.keyholder, "tenants": [ALPHA]}
    ).json()
    signature = data.key.sign(b64decode(found["message"], what="message"))
    return Req(
        "POST", "/v1/auth/key-login", {"nonce": found["nonce"], "signature": b64encode(signature)}
    )


@builds("POST", "/v1/auth/refresh")
def _refresh(w: World, c: Caller, t: str, allowed: bool) -> Req:
    def keep(status: int, body: bytes) -> None:
        if status == 200:  # each use replaces the refresh token
            w.refresh_token = json.loads(body)["refresh_token"]

    return Req("POST", "/v1/auth/refresh", {"refresh_token": w.refresh_token}, after=keep)


@builds("POST", "/v1/auth/logout")
def _logout(w: World, c: Caller, t: str, allowed: bool) -> Req:
    if c.kind != "token":  # an API key's logout does nothing; the others have no session
        return Req("POST", "/v1/auth/logout")
    assert c.username is not None
    # Logging out revokes the session: use a fresh one, and check it is dead afterwards.
    fresh = bearer(w.login(c.username, list(c.bound), c.password)["access_token"])

    def dead(status: int, body: bytes) -> str | None:
        after = w.client.get("/v1/auth/whoami", headers=fresh).status_code
        return None if after == 401 else f"token still answers {after} after logout"

    return Req("POST", "/v1/auth/logout", headers=fresh, after=dead)


@builds("POST", "/v1/tenants")
def _tenant(w: World, c: Caller, t: str, allowed: bool) -> Req:
    return Req("POST", "/v1/tenants", {"name": w.unique("walk")})


@builds("POST", "/v1/users")
def _user(w: World, c: Caller, t: str, allowed: bool) -> Req:
    return Req(
        "POST",
        "/v1/users",
        {"username": w.unique("walker"), "password": PASSWORD, "tenant": ALPHA, "role": "viewer"},
    )


@builds("POST", "/v1/onboard")
def _onboard(w: World, c: Caller, t: str, allowed: bool) -> Req:
    name = w.unique("onboarded")
    span = creation_span(PrivateKey.generate(), name, LogLineId.of("person", name))
    return Req("POST", "/v1/onboard", {"identity_span": span.to_json(), "tenant": {"name": name}})


def _member_url(t: str, identity: str, suffix: str = "") -> str:
    return f"/v1/tenants/{t}/members/{identity}{suffix}"


def _ensure_victim(w: World, t: str) -> str:
    victim = w.data[t].victim
    if w.services.accounts.membership(t, victim) is None:
        w.ok("PUT", _member_url(t, victim), json={"role": "viewer"})
    return victim


@builds("PUT", T + "/members/{identity:llid}")
def _put_member(w: World, c: Caller, t: str, allowed: bool) -> Req:
    return Req("PUT", _member_url(t, w.data[t].victim), {"role": "viewer"})


@builds("DELETE", T + "/members/{identity:llid}")
def _delete_member(w: World, c: Caller, t: str, allowed: bool) -> Req:
    victim = _ensure_victim(w, t) if allowed else w.data[t].victim
    return Req("DELETE", _member_url(t, victim))


@builds("POST", T + "/members/{identity:llid}/sessions/revoke")
def _revoke_sessions(w: World, c: Caller, t: str, allowed: bool) -> Req:
    victim = _ensure_victim(w, t) if allowed else w.data[t].victim
    return Req("POST", _member_url(t, victim, "/sessions/revoke"))


@builds("DELETE", T + "/api-keys/{key_id}")
def _revoke_key(w: World, c: Caller, t: str, allowed: bool) -> Req:
    key_id = w.data[t].victim_key
    if allowed:
        body = {"name": "victim", "role": "viewer"}
        key_id = w.ok("POST", f"/v1/tenants/{t}/api-keys", json=body)["id"]
    return Req("DELETE", f"/v1/tenants/{t}/api-keys/{key_id}")


def _signed(w: World, t: str) -> dict[str, Any]:
    data = w.data[t]
    span = new_span(data.key, tenant=t, author=data.keyholder, kind="walk.signed", title="signed")
    return span.to_json()


@builds("POST", T + "/spans")
def _append(w: World, c: Caller, t: str, allowed: bool) -> Req:
    return Req("POST", f"/v1/tenants/{t}/spans", _signed(w, t))


@builds("POST", T + "/spans/batch")
def _append_batch(w: World, c: Caller, t: str, allowed: bool) -> Req:
    return Req("POST", f"/v1/tenants/{t}/spans/batch", {"spans": [_signed(w, t), _signed(w, t)]})


def _on_span(suffix: str, method: str = "GET", json: Any = None, fresh: bool = False) -> Builder:
    def build(w: World, c: Caller, t: str, allowed: bool) -> Req:
        span = w.custodial_span(t) if fresh and allowed else w.data[t].span
        return Req(method, f"/v1/tenants/{t}/spans/{span}{suffix}", json)

    return build


BUILDERS[("GET", T + "/spans/{span_id}")] = _on_span("")
BUILDERS[("GET", T + "/spans/{span_id}/receipt")] = _on_span("/receipt")
BUILDERS[("POST", T + "/spans/{span_id}/replay")] = _on_span("/replay", "POST")
# A span is reverted or redacted once: allowed callers act on a fresh one.
BUILDERS[("POST", T + "/spans/{span_id}/revert")] = _on_span(
    "/revert", "POST", {"reason": "walk"}, fresh=True
)
BUILDERS[("POST", T + "/spans/{span_id}/redact")] = _on_span(
    "/redact", "POST", {"reason": "walk"}, fresh=True
)


@builds("POST", T + "/identities")
def _register_identity(w: World, c: Caller, t: str, allowed: bool) -> Req:
    identity = LogLineId.of("person", w.unique("registered"))
    return Req(
        "POST",
        f"/v1/tenants/{t}/identities",
        creation_span(PrivateKey.generate(), t, identity).to_json(),
    )


@builds("POST", T + "/identities/rotate")
def _rotate(w: World, c: Caller, t: str, allowed: bool) -> Req:
    data, new = w.data[t], PrivateKey.generate()
    span = rotation_span(data.key, new.public_key, t, data.keyholder)

    def keep(status: int, body: bytes) -> None:
        if status == 201:
            data.key = new

    return Req("POST", f"/v1/tenants/{t}/identities/rotate", span.to_json(), after=keep)


@builds("POST", T + "/identities/ghosts")
def _ghost(w: World, c: Caller, t: str, allowed: bool) -> Req:
    return Req("POST", f"/v1/tenants/{t}/identities/ghosts", {"handle": w.unique("ghost")})


@builds("GET", T + "/identities/claim-proof")
def _claim_proof(w: World, c: Caller, t: str, allowed: bool) -> Req:
    return Req("GET", f"/v1/tenants/{t}/identities/claim-proof", params={"ghost": w.data[t].ghost})


@builds("POST", T + "/identities/claims")
def _claim(w: World, c: Caller, t: str, allowed: bool) -> Req:
    ghost = w.data[t].ghost
    if allowed:  # a ghost is claimed once
        body = {"handle": w.unique("claimable")}
        ghost = w.ok("POST", f"/v1/tenants/{t}/identities/ghosts", json=body)["id"]
    return Req("POST", f"/v1/tenants/{t}/identities/claims", params={"ghost": ghost})


@builds("GET", T + "/identities/{identity:llid}")
def _identity(w: World, c: Caller, t: str, allowed: bool) -> Req:
    return Req("GET", f"/v1/tenants/{t}/identities/{w.data[t].keyholder}")


def _submit(w: World, t: str, queue: str, **extra: Any) -> dict[str, Any]:
    """A job of `t`, queued (as the instance administrator) on `queue`."""
    body = {"type": "walk.job", "queue": queue, "payload": {"n": 1}, **extra}
    job: dict[str, Any] = w.ok("POST", f"/v1/tenants/{t}/jobs", json=body)
    return job


def _claim_as(w: World, node: Caller, queue: str, limit: int = 1) -> list[dict[str, Any]]:
    body = {"queues": [queue], "limit": limit, "lease_s": LEASE_S}
    response = w.send(node, "POST", N + "/claim", json=body)
    assert response.status_code == 200, response.text
    jobs: list[dict[str, Any]] = response.json()["jobs"]
    return jobs


def _leased(w: World, node: Caller, t: str, **extra: Any) -> dict[str, Any]:
    """A new job of `t`, claimed by `node`: the only job on a queue of its own."""
    job = _submit(w, t, w.unique("walk-lease"), **extra)
    [claimed] = _claim_as(w, node, job["queue"])
    assert claimed["id"] == job["id"], claimed
    return claimed


def _dead_letter(w: World, t: str) -> str:
    """A new job of `t` that failed for good (a dead letter)."""
    job = _leased(w, w.node, t)
    body = {"tenant": t, "attempt": job["attempts"], "error": "walk", "retryable": False}
    response = w.send(w.node, "POST", f"{N}/jobs/{job['id']}/fail", json=body)
    assert response.status_code == 200 and response.json()["state"] == "failed", response.text
    return str(job["id"])


def _answers(want: Any, key: str | None = None) -> Callable[[int, bytes], str | None]:
    """A check of an allowed request's answer (or of its `key`)."""

    def check(status: int, body: bytes) -> str | None:
        if status >= 300:
            return None
        got = json.loads(body)
        got = got if key is None else got.get(key)
        return None if got == want else f"answered {key or 'body'} {got!r}, expected {want!r}"

    return check


_JOB = {"type": "walk.job", "queue": "walk", "payload": {"n": 1}}
simple("POST", T + "/jobs", _JOB)
simple("POST", T + "/jobs/batch", {"jobs": [_JOB, {**_JOB, "priority": "high"}]})
simple("GET", T + "/jobs")
simple("GET", T + "/dead-letters")
simple("GET", T + "/stats", window="5m")
simple("GET", T + "/stats/series", minutes=5)
simple("GET", "/v1/stats")


@builds("GET", T + "/jobs/{job_id}")
def _job(w: World, c: Caller, t: str, allowed: bool) -> Req:
    return Req("GET", f"/v1/tenants/{t}/jobs/{w.data[t].job}", after=_answers(t, "tenant"))


@builds("POST", T + "/jobs/{job_id}/cancel")
def _cancel(w: World, c: Caller, t: str, allowed: bool) -> Req:
    if not allowed:
        return Req("POST", f"/v1/tenants/{t}/jobs/{w.data[t].job}/cancel")
    job = _submit(w, t, "walk")["id"]
    return Req("POST", f"/v1/tenants/{t}/jobs/{job}/cancel", after=_answers("cancelled", "state"))


@builds("POST", T + "/jobs/{job_id}/retry")
def _retry(w: World, c: Caller, t: str, allowed: bool) -> Req:
    if not allowed:
        return Req("POST", f"/v1/tenants/{t}/jobs/{w.data[t].job}/retry")
    job = _dead_letter(w, t)
    return Req("POST", f"/v1/tenants/{t}/jobs/{job}/retry", after=_answers("queued", "state"))


def _on_dead_letters(action: str) -> Builder:
    def build(w: World, c: Caller, t: str, allowed: bool) -> Req:
        url = f"/v1/tenants/{t}/dead-letters/{action}"
        if not allowed:
            return Req("POST", url, {"ids": [w.data[t].job]})
        job = _dead_letter(w, t)

        def check(status: int, body: bytes) -> str | None:
            got = json.loads(body) if status < 300 else None
            ids = got if action == "purge" else [j["id"] for j in (got or {}).get("jobs", [])]
            return None if got is None or ids == [job] else f"{action}d {ids}, expected [{job}]"

        return Req("POST", url, {"ids": [job]}, after=check)

    return build


BUILDERS[("POST", T + "/dead-letters/requeue")] = _on_dead_letters("requeue")
BUILDERS[("POST", T + "/dead-letters/purge")] = _on_dead_letters("purge")


@builds("PUT", T + "/job-types/{job_type}")
def _job_type(w: World, c: Caller, t: str, allowed: bool) -> Req:
    return Req("PUT", f"/v1/tenants/{t}/job-types/walk.typed", {"schema": {"type": "object"}})


# Schedules made in the walk run once a day: none fires (and writes) while the walk goes on.
HELD_SCHEDULE = "walk-held"


def _new_schedule(w: World, t: str, name: str | None = None) -> str:
    """A schedule of `t` (made as the instance administrator); its id."""
    body = {"name": name or w.unique("walk-schedule"), "interval_s": 86_400,
            "job": {"type": "walk.job", "queue": "walk"}}  # fmt: skip
    made: dict[str, Any] = w.ok("POST", f"/v1/tenants/{t}/schedules", json=body)
    return str(made["id"])


def _held_schedule(w: World, t: str) -> str:
    """The schedule of `t` that readers read and denied callers name."""
    try:
        return w.services.schedules.get(t, HELD_SCHEDULE).id
    except NotFound:
        return _new_schedule(w, t, HELD_SCHEDULE)


@builds("POST", T + "/schedules")
def _create_schedule(w: World, c: Caller, t: str, allowed: bool) -> Req:
    body = {"name": w.unique("walk-schedule"), "interval_s": 86_400,
            "job": {"type": "walk.job", "queue": "walk", "payload": {"n": 1}}}  # fmt: skip
    return Req("POST", f"/v1/tenants/{t}/schedules", body, after=_answers(t, "tenant"))


simple("GET", T + "/schedules")


@builds("GET", T + "/schedules/{ref}")
def _schedule(w: World, c: Caller, t: str, allowed: bool) -> Req:
    url = f"/v1/tenants/{t}/schedules/{_held_schedule(w, t)}"
    return Req("GET", url, after=_answers(t, "tenant"))


@builds("PATCH", T + "/schedules/{ref}")
def _change_schedule(w: World, c: Caller, t: str, allowed: bool) -> Req:
    ref = _new_schedule(w, t) if allowed else _held_schedule(w, t)
    url = f"/v1/tenants/{t}/schedules/{ref}"
    return Req("PATCH", url, {"enabled": False}, after=_answers(False, "enabled"))


@builds("DELETE", T + "/schedules/{ref}")
def _delete_schedule(w: World, c: Caller, t: str, allowed: bool) -> Req:
    ref = _new_schedule(w, t) if allowed else _held_schedule(w, t)
    return Req("DELETE", f"/v1/tenants/{t}/schedules/{ref}")


# Rule sets published in the walk allow everything: the other routes' appends stay allowed.
WALK_RULES = (
    "description: walk\nrules:\n  - id: walked\n    when: {kind: walk.*}\n    then: [allow]\n"
)


def _rule_versions(w: World, t: str, at_least: int = 1) -> tuple[int | None, list[int]]:
    """(the active version, every version) of `t`, publishing until there are `at_least`."""
    sets = w.services.rules
    while len(sets.history(t)) < at_least:
        sets.publish(t, WALK_RULES, by=str(w.admin.identity))
    return sets.state(t).active_version, [info.version for info in sets.history(t)]


simple("GET", T + "/rules")
simple("POST", T + "/rules/test", {"source": WALK_RULES})


@builds("GET", T + "/rules/{version:int}")
def _rule_set(w: World, c: Caller, t: str, allowed: bool) -> Req:
    _, versions = _rule_versions(w, t)
    return Req("GET", f"/v1/tenants/{t}/rules/{versions[-1]}", after=_answers(t, "tenant"))


@builds("POST", T + "/rules")
def _publish_rules(w: World, c: Caller, t: str, allowed: bool) -> Req:
    return Req("POST", f"/v1/tenants/{t}/rules", {"source": WALK_RULES},
               after=_answers(True, "active"))  # fmt: skip


@builds("POST", T + "/rules/disable")
def _disable_rules(w: World, c: Caller, t: str, allowed: bool) -> Req:
    if allowed and w.services.rules.state(t).active_version is None:
        w.services.rules.rollback(t, _rule_versions(w, t)[1][0], by=str(w.admin.identity))
    return Req("POST", f"/v1/tenants/{t}/rules/disable", after=_answers(None, "active_version"))


@builds("POST", T + "/rules/rollback")
def _rollback_rules(w: World, c: Caller, t: str, allowed: bool) -> Req:
    active, versions = _rule_versions(w, t, 2)
    target = next(v for v in versions if v != active)
    return Req("POST", f"/v1/tenants/{t}/rules/rollback", {"version": target},
               after=_answers(target, "active_version") if allowed else None)  # fmt: skip


@builds("POST", T + "/rules/dry-run")
def _dry_run(w: World, c: Caller, t: str, allowed: bool) -> Req:
    """A span decided by the active set, or a proposal against the last spans (alternately)."""
    if next(w.counter) % 2:
        body: dict[str, Any] = {"span": {"kind": "walk.event", "payload": {"n": 1}}}

        def outcome(status: int, body: bytes) -> str | None:
            got = json.loads(body)["decision"]["outcome"] if status == 200 else "allow"
            return None if got == "allow" else f"decided {got}, expected allow"

        return Req("POST", f"/v1/tenants/{t}/rules/dry-run", body, after=outcome)
    body = {"source": WALK_RULES, "last": 20}
    return Req("POST", f"/v1/tenants/{t}/rules/dry-run", body, after=_answers("history", "mode"))


# Held spans: the walk's approvers are any member (and node keys), one vote approves.
HOLD_RULES = """description: walk approvals
rules:
  - id: walk-held
    when: {kind: walk.held}
    then: [{require_approval: {approvers: [member, node], timeout: 30d}}]
  - id: walk-finance
    when: {kind: walk.finance}
    then: [{require_approval: {approvers: [finance], timeout: 30d}}]
  - id: walk-pair
    when: {kind: walk.pair}
    then: [{require_approval: {approvers: [member], quorum: 2, timeout: 30d}}]
"""


def _new_hold(w: World, t: str, kind: str = "walk.held") -> str:
    """A span of `t`'s keyholder held for approval; the hold's id. The walk publishes other
    rule sets too: the holding one is published again when another is active."""
    data = w.data[t]
    for _ in range(2):
        span = new_span(data.key, tenant=t, author=data.keyholder, kind=kind, title="held")
        response = w.send(w.admin, "POST", f"/v1/tenants/{t}/spans", json=span.to_json())
        if response.status_code == 202:
            return str(response.json()["hold"])
        assert response.status_code < 300, response.text
        w.services.rules.publish(t, HOLD_RULES, by=str(w.admin.identity))
    raise AssertionError(f"{kind} is not held in {t}")


simple("GET", T + "/approvals", state="all")


@builds("GET", T + "/approvals/{hold_id}")
def _approval(w: World, c: Caller, t: str, allowed: bool) -> Req:
    url = f"/v1/tenants/{t}/approvals/{w.data[t].hold}"
    return Req("GET", url, after=_answers(t, "tenant"))


def _vote(action: str, want: str, body: Any = None) -> Builder:
    """A vote on a fresh hold when the caller may vote (answering `want`), else on the held one."""

    def build(w: World, c: Caller, t: str, allowed: bool) -> Req:
        hold = _new_hold(w, t) if allowed else w.data[t].hold
        url = f"/v1/tenants/{t}/approvals/{hold}/{action}"
        return Req("POST", url, body, after=_answers(want, "state"))

    return build


BUILDERS[("POST", T + "/approvals/{hold_id}/approve")] = _vote("approve", "approved")
BUILDERS[("POST", T + "/approvals/{hold_id}/reject")] = _vote(
    "reject", "rejected", {"reason": "walk"}
)


@builds("POST", N + "/claim")
def _node_claim(w: World, c: Caller, t: str, allowed: bool) -> Req:
    """Claims from a queue with a job of `t` ready: a node gets jobs of the tenants it serves,
    and of `t` when it serves `t`."""
    if allowed:
        _submit(w, t, "walk-claim")

    def check(status: int, body: bytes) -> str | None:
        if status != 200:
            return None
        tenants = [job["tenant"] for job in json.loads(body)["jobs"]]
        if any(not c.serves(tenant) for tenant in tenants):
            return f"claimed jobs of {tenants}"
        return None if t in tenants or not c.serves(t) else f"claimed none of {t}: {tenants}"

    return Req("POST", N + "/claim", {"queues": ["walk-claim"], "limit": 10, "lease_s": LEASE_S},
               after=check)  # fmt: skip


def _on_lease(action: str, key: str, want: Any, **extra: Any) -> Builder:
    """Reports on a job of `t`: one the caller holds when it may (answering `want` in `key`),
    else the held job."""

    def build(w: World, c: Caller, t: str, allowed: bool) -> Req:
        job, attempt = w.data[t].job, 1
        if allowed:
            leased = _leased(w, c, t)
            job, attempt = leased["id"], leased["attempts"]
        body = {"tenant": t, "attempt": attempt, **extra}
        return Req("POST", f"{N}/jobs/{job}/{action}", body, after=_answers(want, key))

    return build


BUILDERS[("POST", N + "/jobs/{job_id}/heartbeat")] = _on_lease(
    "heartbeat", "cancel_requested", False, lease_s=LEASE_S
)
BUILDERS[("POST", N + "/jobs/{job_id}/complete")] = _on_lease(
    "complete", "state", "succeeded", result={"ok": True}
)
BUILDERS[("POST", N + "/jobs/{job_id}/fail")] = _on_lease(
    "fail", "state", "failed", error="walk", retryable=False
)


def _reports(w: World, c: Caller, t: str, allowed: bool) -> Req:
    """A batch of one report on a job of `t`, as `_on_lease` builds single ones."""
    job, attempt = w.data[t].job, 1
    if allowed:
        leased = _leased(w, c, t)
        job, attempt = leased["id"], leased["attempts"]
    item = {"job_id": job, "tenant": t, "attempt": attempt, "outcome": "succeeded"}
    want = [{"job_id": job, "state": "succeeded", "problem": None}]
    return Req("POST", f"{N}/reports", {"reports": [item]}, after=_answers(want, "results"))


BUILDERS[("POST", N + "/reports")] = _reports


def _register_as(w: World, node: Caller) -> str:
    """A new session of `node`, registered now."""
    response = w.send(node, "POST", N + "/register", json={"labels": {"walk": "yes"}})
    assert response.status_code == 200, response.text
    return str(response.json()["session"])


@builds("POST", N + "/register")
def _node_register(w: World, c: Caller, t: str, allowed: bool) -> Req:
    body = {"labels": {"walk": t}, "queues": ["walk-claim"], "concurrency": 2}
    return Req("POST", N + "/register", body, after=_answers("online", "state"))


def _on_session(action: str, want: str, **extra: Any) -> Builder:
    """A request naming a session of the caller's (registered now) when it may, else any."""

    def build(w: World, c: Caller, t: str, allowed: bool) -> Req:
        session = _register_as(w, c) if allowed else "0190a000-0000-7000-8000-000000000000"
        body = {"session": session, **extra}
        return Req("POST", f"{N}/{action}", body, after=_answers(want, "state"))

    return build


BUILDERS[("POST", N + "/heartbeat")] = _on_session("heartbeat", "online", running=1)
BUILDERS[("POST", N + "/deregister")] = _on_session("deregister", "offline")
simple("GET", N)


@builds("GET", T + "/nodes")
def _tenant_nodes(w: World, c: Caller, t: str, allowed: bool) -> Req:
    """The tenant's own nodes and the instance-wide ones, and no others."""
    if allowed:
        _register_as(w, w.node)
        _register_as(w, _caller(w, f"{t}-node-key"))

    def check(status: int, body: bytes) -> str | None:
        if status != 200:
            return None
        tenants = {node["tenant"] for node in json.loads(body)["nodes"]}
        return None if tenants == {t, SYSTEM} else f"listed nodes of {sorted(tenants)}"

    return Req("GET", f"/v1/tenants/{t}/nodes", after=check)


# --- the walk -------------------------------------------------------------------------------------


def expect(access: str, caller: Caller, tenant: str | None) -> int | None:
    """The status a denial must have (401, 403), or None where the caller is let through."""
    if access == PUBLIC:
        return None
    if caller.kind in ("anonymous", "forged"):
        # Onboarding without credentials is sign-up, which is closed: forbidden, not 401.
        return 403 if access == ONBOARD and caller.kind == "anonymous" else 401
    if access == ANY:
        return None
    if access == NODE:  # tokens and keys of other roles are refused, as are tenants not served
        return None if caller.is_node() and (tenant is None or caller.serves(tenant)) else 403
    if access in (INSTANCE_ADMIN, ONBOARD):
        return None if caller.instance_admin else 403
    assert tenant is not None
    return None if may(caller.roles.get(tenant), access) else 403


def send(w: World, caller: Caller, req: Req, tenant: str | None) -> tuple[int, bytes]:
    headers = caller.headers if req.headers is None else req.headers
    if req.method == WS:
        try:
            with w.client.websocket_connect(f"{req.url}?tenant={tenant}", headers=headers) as ws:
                ws.close()
                return 101, b""
        except WebSocketDisconnect as exc:  # refused before accept: "<status> <detail>"
            return int(exc.reason.split()[0]) if exc.reason[:1].isdigit() else exc.code, b""
    if req.url == "/v1/stream":
        params = {"tenant": tenant}
        with w.client.stream("GET", req.url, params=params, headers=headers) as response:
            # An accepted stream never ends: take the status and hang up.
            return response.status_code, b"" if response.status_code == 200 else response.read()
    response = w.client.request(
        req.method, req.url, json=req.json, params=req.params, headers=headers
    )
    return response.status_code, response.content


@dataclass
class Tally:
    calls: int = 0
    allowed: int = 0
    denied: dict[int, int] = field(default_factory=dict)
    routes: set[tuple[str, str]] = field(default_factory=set)
    callers: set[str] = field(default_factory=set)
    pairs: set[tuple[str, str, str | None]] = field(default_factory=set)


def _accounts(w: World, tenant: str) -> tuple[Any, ...]:
    accounts = w.services.accounts
    return tuple(accounts.members(tenant)), tuple(accounts.api_keys(tenant))


def _new_spans(w: World, tenant: str, since: int) -> list[tuple[str, str, Any]]:
    spans = [s.span for s in w.services.store.spans(tenant, since, w.size(tenant))]
    return [(s.kind, s.author, s.payload) for s in spans]


def _check_effects(
    w: World,
    caller: Caller,
    route: tuple[str, str],
    tenant: str | None,
    status: int,
    body: bytes,
    before: dict[str, tuple[int, Any]],
    seen: dict[str, set[str]],
) -> list[str]:
    """A denial is logged on its tenant; of a tenant the caller cannot reach, nothing is written
    and nothing is read."""
    failures = []
    where = f"{caller.name} {route[0]} {route[1]} @{tenant}"
    text = body.decode("utf-8", "replace")
    for other, (size, accounts) in before.items():
        new = _new_spans(w, other, size)
        kinds = [kind for kind, _, _ in new]
        # A node key asking about a tenant it does not serve is refused like any other caller.
        node_refused = ACCESS[route] == NODE and caller.is_node() and not caller.serves(other)
        if other == tenant and status == 403 and (ACCESS[route] in ROLES or node_refused):
            # Logged by the instance, naming the caller; and nothing else is written.
            named = {"identity": caller.identity, "credential": caller.kind}
            if len(new) != 1 or new[0][0] != DENIED or new[0][1] != w.services.system_identity:
                failures.append(f"{where}: wrote {kinds} into {other}, expected one denial")
            elif {k: new[0][2].get(k) for k in named} != named:
                failures.append(f"{where}: the denial {new[0][2]} does not name the caller")
            continue
        if caller.reaches(other) or (ACCESS[route] == NODE and caller.serves(other)):
            continue
        # Public login routes log the login on the tenant named in the body (alpha, here).
        if set(kinds) - ({"security.login"} if ACCESS[route] == PUBLIC else set()):
            failures.append(f"{where}: wrote {kinds} into {other}, which it cannot reach")
        if _accounts(w, other) != accounts:
            failures.append(f"{where}: changed members or API keys of {other}")
        if 200 <= status < 300:
            seen[other].update(_UUID.findall(text))
            found = _data_of(w, other, tenant, text)
            if found is None and w.services.log.origin(other) in text:
                found = f"its log origin, in {text[:300]}"
            if found is not None:
                failures.append(f"{where}: the response holds data of {other}: {found}")
    return failures


def _data_of(w: World, other: str, reader: str | None, text: str) -> Any:
    """The first object in a JSON (or NDJSON) body that belongs to tenant `other`, if any.

    An identity registered in `other` but a member of the reader's tenant is the reader's to see:
    identities are instance-wide, and a tenant lists its members wherever they registered.
    """
    try:
        documents = [json.loads(text)] if text.strip() else []
    except ValueError:
        try:
            documents = [json.loads(line) for line in text.splitlines() if line.strip()]
        except ValueError:  # HTML or Prometheus text: look for the shape of tenant data
            return text[:300] if re.search(rf'"tenant":\s*"{other}"', text) else None
    stack = list(documents)
    while stack:
        item = stack.pop()
        if isinstance(item, list):
            stack += item
        elif isinstance(item, dict):
            if item.get("tenant") == other:
                identity = "public_key" in item and "custodial" in item
                member = reader is not None and identity
                if not (member and w.services.accounts.membership(reader or "", item["id"])):
                    return item
            stack += item.values()
    return None


def test_walk(world: World) -> None:
    """Every route, caller and tenant answers as ACCESS says; tenants stay apart."""
    w, tally, failures = world, Tally(), []
    routes = app_routes(w.app)
    seen: dict[str, set[str]] = {tenant: set() for tenant in WALKED}
    missing = [f"{m} {p}" for m, p, _ in routes if (m, p) not in ACCESS or (m, p) not in BUILDERS]
    assert not missing, f"routes without an ACCESS entry or a request builder: {missing}"
    for caller in w.callers:
        for method, path, _ in routes:
            route, access = (method, path), ACCESS[(method, path)]
            scoped = "{tenant}" in path or route in STREAMS or access == NODE
            for tenant in WALKED if scoped else (None,):
                want = expect(access, caller, None if route in TENANTLESS else tenant)
                req = BUILDERS[route](w, caller, tenant or "", want is None)
                before = {t: (w.size(t), _accounts(w, t)) for t in WALKED}
                status, body = send(w, caller, req, tenant)
                where = f"{caller.name} {method} {req.url} @{tenant}"
                if want is None:
                    if status >= 400:
                        failures.append(f"{where}: allowed, but {status} {body[:300]!r}")
                elif status != want:
                    failures.append(f"{where}: expected {want}, got {status} {body[:200]!r}")
                if req.after is not None and (problem := req.after(status, body)):
                    failures.append(f"{where}: {problem}")
                failures += _check_effects(w, caller, route, tenant, status, body, before, seen)
                tally.calls += 1
                tally.allowed += want is None
                tally.denied[status] = tally.denied.get(status, 0) + (want is not None)
                tally.routes.add(route)
                tally.callers.add(caller.name)
                tally.pairs.add((caller.name, f"{method} {path}", tenant))
    for tenant in WALKED:
        spans = [s.span for s in w.services.store.spans(tenant, 0, w.size(tenant))]
        ids = {s.id for s in spans}
        # Jobs (purged ones too): each transition is a span of the tenant, flow_id the job's id.
        ids |= {s.body["flow_id"] for s in spans if s.kind.startswith("job.")}
        leaked = ids & seen[tenant]
        if leaked:
            failures.append(f"ids of {tenant} reached callers outside it: {sorted(leaked)}")
    denied = {status: n for status, n in sorted(tally.denied.items()) if n}
    print(
        f"\nauthz walk: {len(tally.routes)} routes by {len(tally.callers)} callers, "
        f"{tally.calls} requests: {tally.allowed} allowed, denied by status {denied}"
    )
    assert len(tally.routes) == len(ACCESS)
    assert not failures, f"{len(failures)} failures:\n" + "\n".join(failures[:80])


# --- changes to access take effect at once --------------------------------------------------------


def _custodial(w: World, headers: dict[str, str], tenant: str = ALPHA) -> int:
    body = {"kind": "scenario.event", "title": "scenario"}
    url = f"/v1/tenants/{tenant}/spans/custodial"
    return int(w.client.post(url, json=body, headers=headers).status_code)


def _read(w: World, headers: dict[str, str], tenant: str = ALPHA) -> int:
    return int(w.client.get(f"/v1/tenants/{tenant}/spans", headers=headers).status_code)


def test_revoked_membership_loses_access_at_once(world: World) -> None:
    user = world.user(world.unique("leaver"), ALPHA, "admin")
    made = world.client.post(
        f"/v1/tenants/{ALPHA}/api-keys",
        json={"name": "leaver", "role": "member", "identity": user.identity},
        headers=user.headers,
    )
    assert made.status_code == 201, made.text  # a key for oneself
    key = {"X-API-Key": made.json()["key"]}
    assert (_read(world, user.headers), _custodial(world, user.headers)) == (200, 201)
    assert (_read(world, key), _custodial(world, key)) == (200, 201)
    world.ok("DELETE", _member_url(ALPHA, str(user.identity)))
    # The same token and key, issued before: valid credentials, but no longer members.
    assert (_read(world, user.headers), _custodial(world, user.headers)) == (403, 403)
    assert (_read(world, key), _custodial(world, key)) == (403, 403)
    whoami = world.client.get("/v1/auth/whoami", headers=user.headers)
    assert whoami.status_code == 200 and whoami.json()["roles"] == {ALPHA: None}


def test_keys_act_only_as_oneself_or_a_lesser_service(world: World) -> None:
    """An API key signs custodially as its identity: an admin must not get one that acts as the
    owner, or as any other person."""
    admin = world.user(world.unique("keymaker"), ALPHA, "admin")
    other = world.user(world.unique("bystander"), ALPHA, "viewer")
    url = f"/v1/tenants/{ALPHA}/api-keys"
    for victim in (world.admin.identity, other.identity):
        body = {"name": "impostor", "role": "viewer", "identity": victim}
        made = world.client.post(url, json=body, headers=admin.headers)
        assert made.status_code == 403, made.text
    service = world.ok("POST", url, json={"name": "ci bot", "role": "admin"})
    body = {"name": "bot key", "role": "viewer", "identity": service["identity"]}
    assert world.client.post(url, json=body, headers=admin.headers).status_code == 201
    owner_bot = world.ok("POST", url, json={"name": "root bot", "role": "owner"})
    body = {"name": "bot key", "role": "viewer", "identity": owner_bot["identity"]}
    assert world.client.post(url, json=body, headers=admin.headers).status_code == 403


def test_revoked_api_key_is_unauthenticated(world: World) -> None:
    made = world.ok("POST", f"/v1/tenants/{ALPHA}/api-keys", json={"name": "short-lived"})
    for header in ({"X-API-Key": made["key"]}, bearer(made["key"])):
        assert _read(world, header) == 200
    world.ok("DELETE", f"/v1/tenants/{ALPHA}/api-keys/{made['id']}")
    for header in ({"X-API-Key": made["key"]}, bearer(made["key"])):
        assert _read(world, header) == 401
        assert world.client.get("/v1/auth/whoami", headers=header).status_code == 401


def test_logout_and_revoked_sessions_end_tokens(world: World) -> None:
    user = world.user(world.unique("visitor"), ALPHA, "viewer")
    tokens = world.login(str(user.username), [ALPHA])
    headers = bearer(tokens["access_token"])
    assert world.client.post("/v1/auth/logout", headers=headers).status_code == 204
    assert _read(world, headers) == 401
    assert world.client.get("/v1/auth/whoami", headers=headers).status_code == 401
    refresh = world.client.post("/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    assert refresh.status_code == 401
    # An admin revoking a member's sessions ends the tokens it holds (user.headers is another).
    assert _read(world, user.headers) == 200
    world.ok("POST", _member_url(ALPHA, str(user.identity), "/sessions/revoke"))
    assert _read(world, user.headers) == 401


def test_role_changes_take_effect_at_once(world: World) -> None:
    user = world.user(world.unique("climber"), ALPHA, "viewer")
    url = _member_url(ALPHA, str(user.identity))
    checkpoint = f"/v1/tenants/{ALPHA}/log/checkpoint"
    assert _custodial(world, user.headers) == 403
    world.ok("PUT", url, json={"role": "member"})
    assert _custodial(world, user.headers) == 201
    assert world.client.post(checkpoint, headers=user.headers).status_code == 403
    world.ok("PUT", url, json={"role": "operator"})
    assert world.client.post(checkpoint, headers=user.headers).status_code == 200
    world.ok("PUT", url, json={"role": "viewer"})
    assert _custodial(world, user.headers) == 403


def test_admin_cannot_grant_or_remove_owners(world: World) -> None:
    admin = world.user(world.unique("deputy"), ALPHA, "admin")
    target = world.user(world.unique("target"), ALPHA, "viewer")
    owner = world.user(world.unique("founder"), ALPHA, "owner")
    put = world.client.put

    def as_admin(url: str, role: str) -> int:
        return int(put(url, json={"role": role}, headers=admin.headers).status_code)

    assert as_admin(_member_url(ALPHA, str(target.identity)), "owner") == 403
    assert as_admin(_member_url(ALPHA, str(owner.identity)), "viewer") == 403
    owner_url = _member_url(ALPHA, str(owner.identity))
    assert world.client.delete(owner_url, headers=admin.headers).status_code == 403
    key = {"name": "too-strong", "role": "owner"}
    url = f"/v1/tenants/{ALPHA}/api-keys"
    assert world.client.post(url, json=key, headers=admin.headers).status_code == 403
    # What an admin may grant, it may; and an owner may grant owner.
    assert as_admin(_member_url(ALPHA, str(target.identity)), "admin") == 200
    url = _member_url(ALPHA, str(target.identity))
    assert put(url, json={"role": "owner"}, headers=owner.headers).status_code == 200


def test_last_owner_cannot_be_removed(world: World) -> None:
    name = world.unique("solo")
    world.ok("POST", "/v1/tenants", json={"name": name})
    founder = bearer(world.login("admin", [name], world.admin_password)["access_token"])
    me = _member_url(name, str(world.admin.identity))
    assert world.client.delete(me, headers=founder).status_code == 409
    assert world.client.put(me, json={"role": "admin"}, headers=founder).status_code == 409
    second = world.user(world.unique("heir"), name, "owner")
    assert world.client.put(me, json={"role": "admin"}, headers=founder).status_code == 200
    # Now `second` is the last owner: not even an owner can remove it.
    them = _member_url(name, str(second.identity))
    assert world.client.delete(them, headers=second.headers).status_code == 409
    assert world.services.accounts.count_owners(name) == 1


def test_denials_are_logged_on_the_tenant(world: World) -> None:
    viewer = world.user(world.unique("reader"), ALPHA, "viewer")
    store = world.services.store

    def last_denial(tenant: str) -> Any:
        page = store.query(Query(tenant, kind=DENIED, descending=True, limit=1))
        assert page.items, f"no {DENIED} span on {tenant}"
        span = page.items[0].span
        assert span.author == world.services.system_identity
        return span.payload

    assert _custodial(world, viewer.headers) == 403
    logged = last_denial(ALPHA)
    assert logged["identity"] == viewer.identity and logged["credential"] == "token"
    assert "viewer" in logged["reason"] and "member" in logged["reason"]
    # A tenant the token is not bound to logs the attempt on its own log.
    assert _read(world, viewer.headers, BETA) == 403
    logged = last_denial(BETA)
    assert logged["identity"] == viewer.identity and "not bound" in logged["reason"]


# --- ids of another tenant, through routes of one's own ------------------------------------------


def _caller(world: World, name: str) -> Caller:
    return next(c for c in world.callers if c.name == name)


def test_ids_of_another_tenant_are_not_found(world: World) -> None:
    """An admin of alpha naming beta's spans, identities, keys and members under alpha's paths
    finds nothing, changes nothing in beta, and cannot smuggle beta's spans into alpha."""
    admin, beta, a = _caller(world, f"{ALPHA}-admin"), world.data[BETA], f"/v1/tenants/{ALPHA}"
    beta_size, alpha_size = world.size(BETA), world.size(ALPHA)
    keys_before = world.services.accounts.api_keys(BETA)

    def status(method: str, url: str, **kwargs: Any) -> int:
        return world.send(admin, method, url, **kwargs).status_code

    reason = {"json": {"reason": "cross-tenant"}}
    assert {
        "span": status("GET", f"{a}/spans/{beta.span}"),
        "receipt": status("GET", f"{a}/spans/{beta.span}/receipt"),
        "replay": status("POST", f"{a}/spans/{beta.span}/replay"),
        "revert": status("POST", f"{a}/spans/{beta.span}/revert", **reason),
        "redact": status("POST", f"{a}/spans/{beta.span}/redact", **reason),
        "identity": status("GET", f"{a}/identities/{beta.keyholder}"),
        "claim-proof": status("GET", f"{a}/identities/claim-proof", params={"ghost": beta.ghost}),
        "claim": status("POST", f"{a}/identities/claims", params={"ghost": beta.ghost}),
        "api-key": status("DELETE", f"{a}/api-keys/{beta.victim_key}"),
        "member": status("DELETE", _member_url(ALPHA, beta.victim)),
        "sessions": status("POST", _member_url(ALPHA, beta.victim, "/sessions/revoke")),
        "hold": status("GET", f"{a}/approvals/{beta.hold}"),
        "approve": status("POST", f"{a}/approvals/{beta.hold}/approve"),
        "reject": status("POST", f"{a}/approvals/{beta.hold}/reject", **reason),
    } == dict.fromkeys(
        ["span", "receipt", "replay", "revert", "redact", "identity", "claim-proof", "claim",
         "api-key", "member", "sessions", "hold", "approve", "reject"], 404,
    )  # fmt: skip
    # Spans and identity documents made for beta are refused on alpha's routes, batches whole.
    foreign = new_span(beta.key, tenant=BETA, author=beta.keyholder, kind="x.y", title="x")
    ghost = creation_span(PrivateKey.generate(), BETA, LogLineId.of("person", "smuggled"))
    assert status("POST", f"{a}/spans", json=foreign.to_json()) == 400
    batch = {"spans": [_signed(world, ALPHA), foreign.to_json()]}
    assert status("POST", f"{a}/spans/batch", json=batch) == 400
    assert status("POST", f"{a}/identities", json=ghost.to_json()) == 400
    listed = world.send(admin, "GET", f"{a}/spans", params={"author": beta.keyholder})
    assert listed.status_code == 200 and listed.json()["items"] == []
    assert (world.size(BETA), world.size(ALPHA)) == (beta_size, alpha_size)
    assert world.services.accounts.api_keys(BETA) == keys_before
    # Subscribing to beta as well, or resuming from a position in it, is refused.
    both = world.send(admin, "GET", "/v1/stream", params={"tenant": [ALPHA, BETA]})
    assert both.status_code == 403
    resume = world.send(admin, "GET", "/v1/stream", params={"tenant": ALPHA, "from": f"{BETA}:0"})
    assert resume.status_code == 400


def test_revoking_sessions_in_one_tenant_spares_the_others(world: World) -> None:
    both = world.user(world.unique("commuter"), ALPHA, "viewer", {BETA: "owner"})
    in_beta = bearer(world.login(str(both.username), [BETA])["access_token"])
    admin = _caller(world, f"{ALPHA}-admin")
    url = _member_url(ALPHA, str(both.identity), "/sessions/revoke")
    assert world.send(admin, "POST", url).status_code == 204
    assert _read(world, both.headers) == 401  # the alpha session is gone, as it should be
    assert _read(world, in_beta, BETA) == 200  # a session bound to beta only is not alpha's


# --- nodes serve their own tenant, or every tenant from `system` ---------------------------------


def test_nodes_serve_only_their_tenant_unless_instance_wide(world: World) -> None:
    """A node key of alpha claims alpha's jobs only, and cannot report on beta's (even naming
    alpha in the body); a node key of `system` claims jobs of both tenants."""
    w, alpha_node, system_node = world, _caller(world, f"{ALPHA}-node-key"), world.node
    queue = w.unique("isolation")
    beta_jobs = {_submit(w, BETA, queue)["id"] for _ in range(2)}
    alpha_job = _submit(w, ALPHA, queue)["id"]
    assert [j["id"] for j in _claim_as(w, alpha_node, queue, limit=10)] == [alpha_job]
    assert _claim_as(w, alpha_node, queue, limit=10) == []  # beta's jobs are still queued
    claimed = _claim_as(w, system_node, queue, limit=10)
    assert {j["id"] for j in claimed} == beta_jobs and {j["tenant"] for j in claimed} == {BETA}
    beta_job = claimed[0]
    reports: dict[str, dict[str, Any]] = {
        "heartbeat": {"lease_s": LEASE_S},
        "complete": {"result": {"stolen": True}},
        "fail": {"error": "not mine", "retryable": False},
    }

    def report(node: Caller, job_id: str, action: str, tenant: str, attempt: int = 1) -> int:
        body = {"tenant": tenant, "attempt": attempt, **reports[action]}
        return w.send(node, "POST", f"{N}/jobs/{job_id}/{action}", json=body).status_code

    for action in reports:
        assert report(alpha_node, beta_job["id"], action, BETA) == 403, action
        # Naming its own tenant finds no such job there: beta's job stays out of reach.
        assert report(alpha_node, beta_job["id"], action, ALPHA) in (404, 409), action
    held = w.services.jobs.get(BETA, beta_job["id"])
    assert (held.state, held.node, held.attempts) == ("running", system_node.identity, 1)
    # Allowed, but not the holder of the lease: refused as a conflict, not as a denial.
    assert report(system_node, alpha_job, "heartbeat", ALPHA) == 409
    assert report(alpha_node, w.data[ALPHA].job, "complete", ALPHA) == 409
    # Each reports on its own.
    assert report(alpha_node, alpha_job, "complete", ALPHA) == 200
    for job_id in beta_jobs:
        assert report(system_node, job_id, "complete", BETA) == 200
    # The instance-wide node serves every tenant.
    queue = w.unique("instance-wide")
    both = {_submit(w, tenant, queue)["id"]: tenant for tenant in (ALPHA, BETA, ALPHA, BETA)}
    claimed = _claim_as(w, system_node, queue, limit=10)
    assert {j["id"]: j["tenant"] for j in claimed} == both


# --- approvals: the route lets members in, the hold's requirement decides ------------------------


def test_only_a_holds_approvers_vote(world: World) -> None:
    """A member the requirement does not name is refused (and the refusal logged); a second
    vote, and a vote on a decided hold, are conflicts."""
    w, url = world, f"/v1/tenants/{ALPHA}/approvals"
    clerk = w.user(w.unique("clerk"), ALPHA, "member")
    other = w.user(w.unique("clerk"), ALPHA, "admin")
    finance = _new_hold(w, ALPHA, "walk.finance")
    refused = w.send(clerk, "POST", f"{url}/{finance}/approve")
    assert refused.status_code == 403, refused.text
    assert "approvers are finance" in refused.json()["detail"]
    [denied] = w.services.store.query(Query(ALPHA, kind=DENIED, descending=True, limit=1)).items
    assert denied.span.payload["identity"] == clerk.identity
    assert w.services.approvals.get(ALPHA, finance).votes == ()
    pair = _new_hold(w, ALPHA, "walk.pair")
    first = w.send(clerk, "POST", f"{url}/{pair}/approve")
    assert first.status_code == 200 and first.json()["state"] == "pending", first.text
    assert w.send(clerk, "POST", f"{url}/{pair}/approve").status_code == 409
    rejected = w.send(other, "POST", f"{url}/{pair}/reject", json={"reason": "no"})
    assert rejected.status_code == 200 and rejected.json()["state"] == "rejected", rejected.text
    assert w.send(other, "POST", f"{url}/{pair}/approve").status_code == 409
    listed = w.send(clerk, "GET", url, params={"state": "rejected"}).json()["approvals"]
    assert pair in [hold["id"] for hold in listed]
