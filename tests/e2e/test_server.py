"""`logline up` and `logline serve` as real processes, driven over HTTP.

What a client sees: problems for bad input with nothing stored, receipts and proofs that verify
offline, bundles, the live stream across restarts and across two servers on one PostgreSQL, and
no acknowledged write lost to `kill -9` or to a graceful stop in the middle of a burst.
"""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest

from logline.canonical import b64decode
from logline.config import load_config
from logline.identity.documents import creation_span
from logline.identity.ids import LogLineId
from logline.identity.keys import PrivateKey
from logline.instance import Instance
from logline.ledger.bundle import verify_bundle
from logline.ledger.checkpoint import NoteVerifier, open_checkpoint
from logline.ledger.merkle import leaf_hash, verify_consistency, verify_inclusion
from logline.ledger.receipt import Receipt, verify_receipt
from logline.ledger.span import new_span, parse_span
from logline.ledger.verify import verify_store
from servers import RunningServer, logline_command, running_server, scratch_postgres, server_env

pytestmark = pytest.mark.e2e
TENANT = "default"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    with running_server(tmp_path_factory.mktemp("server") / "home") as running:
        yield running


@pytest.fixture(scope="module")
def admin(server: RunningServer) -> Iterator[httpx.Client]:
    with server.client(server.login()) as client:
        yield client


def register(client: httpx.Client, handle: str, tenant: str = TENANT) -> tuple[str, PrivateKey]:
    """A client-held identity, registered and made a member (so the admin may post its spans)."""
    key = PrivateKey.generate()
    identity = f"logline-id://person/{handle}"
    span = creation_span(key, tenant, LogLineId.parse(identity), handle.title())
    response = client.post(f"/v1/tenants/{tenant}/identities", json=span.to_json())
    assert response.status_code == 201, response.text
    response = client.put(f"/v1/tenants/{tenant}/members/{identity}", json={"role": "member"})
    assert response.status_code == 200, response.text
    return identity, key


def size(client: httpx.Client, tenant: str = TENANT) -> int:
    response = client.get(f"/v1/tenants/{tenant}/log")
    assert response.status_code == 200, response.text
    value: int = response.json()["size"]
    return value


def verified_size(home: Path, database_url: str | None = None) -> int:
    """Verify the whole stored log of TENANT (entries, nodes, checkpoints); its size."""
    config = load_config(home)
    if database_url is not None:
        config = replace(config, database_url=database_url)
    with Instance(config) as instance:
        log = instance.log
        return verify_store(instance.store, TENANT, log.origin(TENANT), log.verifier()).size


def problem(response: httpx.Response, status: int, slug: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    assert body["type"] == f"urn:logline:problem:{slug}", body
    assert body["status"] == status and body["detail"]
    return body


# --- writing and reading --------------------------------------------------------------------------


def test_signed_append_and_an_offline_receipt(admin: httpx.Client) -> None:
    alice, key = register(admin, "alice")
    span = new_span(
        key,
        tenant=TENANT,
        author=alice,
        kind="payment.approved",
        title="Invoice 7 paid",
        payload={"amount": 120},
    )
    response = admin.post(
        f"/v1/tenants/{TENANT}/spans", params={"wait": "checkpointed"}, json=span.to_json()
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["span_id"] == span.id and body["status"] == "checkpointed"
    receipt = Receipt.from_json(body["receipt"])
    verifier = NoteVerifier.parse(admin.get(f"/v1/tenants/{TENANT}/log").json()["key"])
    verify_receipt(receipt, verifier, span)  # with no server: the log key is all it needs
    stored = admin.get(f"/v1/tenants/{TENANT}/spans/{span.id}").json()
    assert parse_span(stored["span"]).hash == span.hash
    assert stored["span"]["payload"] == {"amount": 120}
    later = Receipt.from_json(admin.get(f"/v1/tenants/{TENANT}/spans/{span.id}/receipt").json())
    verify_receipt(later, verifier, span)


def test_bad_input_is_a_problem_and_stores_nothing(admin: httpx.Client) -> None:
    alice, key = register(admin, "mallory")
    before = size(admin)
    good = new_span(key, tenant=TENANT, author=alice, kind="test.ok", title="fine")
    forged = good.to_json()
    forged["body"] = {**forged["body"], "title": "changed after signing"}
    cases: list[tuple[Any, int, str]] = [
        (forged, 422, "invalid-signature"),
        ({**good.to_json(), "signature": "AAAA"}, 422, "invalid-span"),
        ({**good.to_json(), "signature": "not base64!"}, 422, "invalid-span"),
        ({"body": {}, "signature": good.to_json()["signature"]}, 422, "invalid-span"),
        ({"nope": 1}, 422, "validation-error"),
    ]
    for body, status, slug in cases:
        problem(admin.post(f"/v1/tenants/{TENANT}/spans", json=body), status, slug)
    other = new_span(key, tenant="elsewhere", author=alice, kind="test.ok", title="wrong log")
    problem(admin.post(f"/v1/tenants/{TENANT}/spans", json=other.to_json()), 400, "invalid-input")
    # A batch is atomic: one bad span and none is logged.
    batch = [
        new_span(key, tenant=TENANT, author=alice, kind="test.ok", title=f"{i}").to_json()
        for i in range(3)
    ] + [forged]
    problem(
        admin.post(f"/v1/tenants/{TENANT}/spans/batch", json={"spans": batch}),
        422,
        "invalid-signature",
    )
    problem(
        admin.post(f"/v1/tenants/{TENANT}/spans", content=b"{" * (5 << 20)),
        413,
        "payload-too-large",
    )
    problem(admin.get("/v1/nowhere"), 404, "not-found")
    problem(admin.get(f"/v1/tenants/{TENANT}/spans/{good.id}"), 404, "not-found")
    problem(
        admin.get(f"/v1/tenants/{TENANT}/spans", params={"cursor": "junk"}), 400, "invalid-input"
    )
    assert size(admin) == before
    # The same span twice: the second is a conflict, and the first stays.
    assert admin.post(f"/v1/tenants/{TENANT}/spans", json=good.to_json()).status_code == 201
    problem(admin.post(f"/v1/tenants/{TENANT}/spans", json=good.to_json()), 409, "conflict")
    assert size(admin) == before + 1


def test_custodial_spans_replay_revert_redact(admin: httpx.Client) -> None:
    url = f"/v1/tenants/{TENANT}/spans"
    made = admin.post(
        f"{url}/custodial",
        json={
            "kind": "order.created",
            "title": "Order 12",
            "payload": {"card": "4111"},
            "tags": ["q4"],
        },
    )
    assert made.status_code == 201, made.text
    span_id = made.json()["span_id"]
    stored = admin.get(f"{url}/{span_id}").json()
    assert stored["span"]["body"]["author"] == "logline-id://person/admin"
    replayed = admin.post(f"{url}/{span_id}/replay")
    assert replayed.status_code == 201, replayed.text
    reverted = admin.post(f"{url}/{span_id}/revert", json={"reason": "duplicate"})
    assert reverted.status_code == 201, reverted.text
    redacted = admin.post(f"{url}/{span_id}/redact", json={"reason": "card number"})
    assert redacted.status_code == 201, redacted.text
    after = admin.get(f"{url}/{span_id}").json()
    assert "payload" not in after["span"]
    assert after["reverted_by"] == reverted.json()["span_id"]
    assert after["redacted_by"] == redacted.json()["span_id"]
    problem(
        admin.post(f"{url}/{span_id}/redact", json={"reason": "again"}), 422, "redaction-refused"
    )


def test_query_filters_text_and_cursors(admin: httpx.Client) -> None:
    bob, key = register(admin, "bob")
    spans = [
        new_span(
            key,
            tenant=TENANT,
            author=bob,
            kind=f"shipment.{state}",
            title=f"Parcel {i} {state}",
            tags=["parcel"],
        )
        for i, state in enumerate(["sent", "lost", "sent", "delivered", "sent"])
    ]
    response = admin.post(
        f"/v1/tenants/{TENANT}/spans/batch", json={"spans": [s.to_json() for s in spans]}
    )
    assert response.status_code == 201, response.text

    def ids(**params: Any) -> list[str]:
        found: list[str] = []
        cursor = None
        while True:
            page = admin.get(
                f"/v1/tenants/{TENANT}/spans",
                params={**params, **({"cursor": cursor} if cursor else {})},
            ).json()
            found += [item["span"]["body"]["id"] for item in page["items"]]
            cursor = page["next_cursor"]
            if cursor is None:
                return found

    assert ids(author=bob, kind="shipment.*", limit=2) == [s.id for s in spans]
    assert ids(author=bob, q="parcel SENT", limit=1) == [spans[0].id, spans[2].id, spans[4].id]
    assert ids(author=bob, kind="*.lost") == [spans[1].id]
    assert ids(author=bob, kind="shipment.*", order="desc", limit=3) == [s.id for s in spans[::-1]]
    assert ids(tag="parcel", author=bob, kind="shipment.delivered") == [spans[3].id]


def test_proofs_entries_and_bundle_verify_offline(admin: httpx.Client) -> None:
    admin.post(f"/v1/tenants/{TENANT}/spans/custodial", json={"kind": "x.y", "title": "one"})
    checkpoint = admin.post(f"/v1/tenants/{TENANT}/log/checkpoint")
    assert checkpoint.status_code == 200, checkpoint.text
    info = admin.get(f"/v1/tenants/{TENANT}/log").json()
    verifier = NoteVerifier.parse(info["key"])
    head = open_checkpoint(checkpoint.json()["checkpoint"], verifier)
    n = head.size
    entries = admin.get(f"/v1/tenants/{TENANT}/log/entries", params={"start": 0, "end": n}).json()
    assert [item["seq"] for item in entries["items"]] == list(range(n))
    for seq in (0, n // 2, n - 1):
        proof = admin.get(
            f"/v1/tenants/{TENANT}/log/proofs/inclusion", params={"seq": seq, "size": n}
        ).json()
        leaf = Receipt.from_json(
            {
                "v": 1,
                "status": "sequenced",
                "origin": info["origin"],
                "entry": entries["items"][seq]["entry"],
            }
        ).entry
        verify_inclusion(
            seq, n, leaf_hash(leaf.leaf_data()), [b64decode(h) for h in proof["proof"]], head.root
        )
    proof = admin.get(
        f"/v1/tenants/{TENANT}/log/proofs/consistency", params={"from": 3, "to": n}
    ).json()
    old_root = b64decode(
        admin.get(
            f"/v1/tenants/{TENANT}/log/proofs/inclusion", params={"seq": 0, "size": 3}
        ).json()["root"]
    )
    verify_consistency(3, n, [b64decode(h) for h in proof["proof"]], old_root, head.root)
    bundle = admin.get(f"/v1/tenants/{TENANT}/log/bundle")
    assert bundle.status_code == 200 and bundle.headers["content-type"] == "application/x-ndjson"
    summary = verify_bundle(io.StringIO(bundle.text))
    assert summary.size >= n
    problem(
        admin.get(f"/v1/tenants/{TENANT}/log/proofs/inclusion", params={"seq": 10**6}),
        404,
        "not-found",
    )


def test_health_metrics_and_openapi(server: RunningServer, admin: httpx.Client) -> None:
    assert admin.get(f"/v1/tenants/{TENANT}/spans", params={"limit": 1}).status_code == 200
    with server.client() as anonymous:
        assert anonymous.get("/healthz").json()["status"] == "ok"
        ready = anonymous.get("/readyz").json()
        assert ready["checks"] == {"database": "ok", "rate_limit_storage": "ok"}
        metrics = anonymous.get("/metrics").text
        assert "logline_http_requests_total" in metrics
        assert 'route="/v1/tenants/{tenant}/spans"' in metrics  # templates, never raw paths
        spec = anonymous.get("/openapi.json").json()
        assert "/v1/tenants/{tenant}/spans" in spec["paths"]
        assert anonymous.get("/docs").status_code == 200
        request_id = anonymous.get("/healthz", headers={"X-Request-ID": "abc-123"})
        assert request_id.headers["x-request-id"] == "abc-123"


# --- accounts and credentials ---------------------------------------------------------------------


def test_refresh_reuse_is_told_from_a_guess(server: RunningServer) -> None:
    body = {"username": "admin", "password": server.password, "tenants": [TENANT]}
    with server.client() as client:
        tokens = client.post("/v1/auth/login", json=body).json()
        session = tokens["refresh_token"].split("_")[1]
        guessed = client.post("/v1/auth/refresh", json={"refresh_token": f"llr_{session}_guess"})
        problem(guessed, 401, "unauthenticated")  # a guess does not end the session...
        fresh = client.post("/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
        assert fresh.status_code == 200, fresh.text
        reused = client.post("/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
        problem(reused, 401, "unauthenticated")  # ...replaying the replaced token does
        headers = {"Authorization": f"Bearer {fresh.json()['access_token']}"}
        problem(client.get("/v1/auth/whoami", headers=headers), 401, "unauthenticated")
        problem(
            client.post("/v1/auth/challenge", json={"identity": "x" * 300, "tenants": [TENANT]}),
            422,
            "invalid-identifier",
        )


def test_member_keys_cannot_redact_or_act_as_instance_admin(admin: httpx.Client) -> None:
    url = f"/v1/tenants/{TENANT}"
    target = admin.post(
        f"{url}/spans/custodial", json={"kind": "x.secret", "title": "t", "payload": {"pin": 1234}}
    ).json()
    member_key = admin.post(f"{url}/api-keys", json={"name": "writer", "role": "member"}).json()
    owner_key = admin.post(f"{url}/api-keys", json={"name": "root", "role": "owner"}).json()
    digest = admin.get(f"{url}/spans/{target['span_id']}").json()["span"]["body"]["payload_digest"]
    draft = {
        "kind": "logline.redaction",
        "title": "sneaky",
        "payload": {"span_id": target["span_id"], "payload_digest": digest, "reason": "x"},
    }
    with httpx.Client(
        base_url=str(admin.base_url), headers={"X-API-Key": member_key["key"]}
    ) as member:
        problem(member.post(f"{url}/spans/custodial", json=draft), 403, "forbidden")
    assert "payload" in admin.get(f"{url}/spans/{target['span_id']}").json()["span"]
    with httpx.Client(base_url=str(admin.base_url), headers={"X-API-Key": owner_key["key"]}) as key:
        problem(key.post("/v1/tenants", json={"name": "via-key"}), 403, "forbidden")


def test_a_failed_onboarding_leaves_nothing(admin: httpx.Client) -> None:
    key = PrivateKey.generate()
    identity = LogLineId.parse("logline-id://person/newcomer")
    good = creation_span(key, "fresh", identity, "Newcomer").to_json()
    first = new_span(key, tenant="fresh", author=str(identity), kind="hello.world", title="hi")
    forged = {**first.to_json(), "body": {**first.to_json()["body"], "title": "changed"}}
    body = {"identity_span": good, "tenant": {"name": "fresh"}, "first_span": forged}
    problem(admin.post("/v1/onboard", json=body), 422, "invalid-signature")
    assert admin.get("/v1/tenants/fresh").status_code == 403  # not created: nobody's tenant
    body["first_span"] = first.to_json()
    done = admin.post("/v1/onboard", json=body)
    assert done.status_code == 201, done.text
    assert done.json() == {
        "identity": str(identity),
        "tenant": "fresh",
        "role": "owner",
        "spans": [good["body"]["id"], first.id],
    }


def test_a_stream_ends_when_access_is_revoked(tmp_path: Path) -> None:
    env = {"LOGLINE_STREAM_HEARTBEAT_S": "0.3"}
    with (
        running_server(tmp_path / "home", env=env) as server,
        server.client(server.login()) as admin,
    ):
        made = admin.post(
            f"/v1/tenants/{TENANT}/api-keys", json={"name": "reader", "role": "viewer"}
        )
        key = made.json()
        headers = {"X-API-Key": key["key"]}
        with httpx.stream(
            "GET", f"{server.url}/v1/stream", params={"tenant": TENANT}, headers=headers, timeout=30
        ) as response:
            events = sse_events(response)
            assert next(events)[1] == "live"
            assert admin.delete(f"/v1/tenants/{TENANT}/api-keys/{key['id']}").status_code == 204
            kinds = []
            for _, kind, data in events:
                kinds.append(kind)
                if kind == "dropped":
                    assert data["reason"] == "revoked"
                    break
            assert kinds[-1] == "dropped"


# --- the live stream ------------------------------------------------------------------------------


def sse_events(response: httpx.Response) -> Iterator[tuple[str, str, dict[str, Any]]]:
    event_id = event = ""
    for line in response.iter_lines():
        if line.startswith("id: "):
            event_id = line[4:]
        elif line.startswith("event: "):
            event = line[7:]
        elif line.startswith("data: "):
            yield event_id, event, json.loads(line[6:])


def test_sse_live_and_resume_with_last_event_id(server: RunningServer, admin: httpx.Client) -> None:
    token = admin.headers["authorization"].split()[1]
    url = f"{server.url}/v1/stream"
    params = {"tenant": TENANT, "kind": "sse.*"}
    with httpx.stream(
        "GET", url, params=params, headers={"Authorization": f"Bearer {token}"}, timeout=30
    ) as response:
        assert response.status_code == 200
        events = sse_events(response)
        assert next(events)[1] == "live"
        written = admin.post(
            f"/v1/tenants/{TENANT}/spans/custodial", json={"kind": "sse.first", "title": "one"}
        ).json()
        event_id, kind, data = next(events)
        assert kind == "span" and data["span"]["body"]["id"] == written["span_id"]
        assert event_id == f"{TENANT}:{written['seq'] + 1}"
    missed = [
        admin.post(
            f"/v1/tenants/{TENANT}/spans/custodial", json={"kind": f"sse.n{i}", "title": "later"}
        ).json()["span_id"]
        for i in range(3)
    ]
    headers = {"Authorization": f"Bearer {token}", "Last-Event-ID": event_id}
    with httpx.stream("GET", url, params=params, headers=headers, timeout=30) as response:
        events = sse_events(response)
        resumed = [next(events)[2]["span"]["body"]["id"] for _ in range(3)]
    assert resumed == missed


def test_websocket_needs_a_token_and_delivers(server: RunningServer, admin: httpx.Client) -> None:
    from websockets.exceptions import InvalidStatus
    from websockets.sync.client import connect

    ws_url = server.url.replace("http://", "ws://") + "/v1/stream/ws"
    with pytest.raises(InvalidStatus):
        connect(f"{ws_url}?tenant={TENANT}", open_timeout=10).close()
    token = admin.headers["authorization"].split()[1]
    with connect(f"{ws_url}?tenant={TENANT}&kind=ws.*&access_token={token}", open_timeout=10) as ws:
        assert json.loads(ws.recv(10))["type"] == "live"
        written = admin.post(
            f"/v1/tenants/{TENANT}/spans/custodial", json={"kind": "ws.event", "title": "over ws"}
        ).json()
        message = json.loads(ws.recv(10))
        assert message["type"] == "span" and message["seq"] == written["seq"]


# --- processes dying ------------------------------------------------------------------------------


def _writer(server: RunningServer, token: str, acked: list[str], stop: threading.Event) -> None:
    with server.client(token) as client:
        i = 0
        while not stop.is_set():
            try:
                response = client.post(
                    f"/v1/tenants/{TENANT}/spans/custodial",
                    json={"kind": "burst.write", "title": f"w{i}"},
                )
            except httpx.HTTPError:
                return
            if response.status_code == 201:
                acked.append(response.json()["span_id"])
            i += 1


@pytest.mark.slow
@pytest.mark.parametrize("how", ["sigterm", "sigkill"])
def test_no_acknowledged_write_is_lost(tmp_path: Path, how: str) -> None:
    home = tmp_path / "home"
    acked: list[str] = []
    with running_server(home) as server:
        token = server.login()
        stop = threading.Event()
        writers = [
            threading.Thread(target=_writer, args=(server, token, acked, stop)) for _ in range(4)
        ]
        for writer in writers:
            writer.start()
        time.sleep(1.5)
        if how == "sigterm":
            assert server.stop(signal.SIGTERM) == 0  # graceful: in-flight writes finish
        else:
            server.kill()
        stop.set()
        for writer in writers:
            writer.join(30)
    assert len(acked) > 10
    with running_server(home) as again, again.client(again.login()) as client:
        for span_id in acked:
            assert client.get(f"/v1/tenants/{TENANT}/spans/{span_id}").status_code == 200
    assert verified_size(home) >= len(acked)


# --- two servers, one PostgreSQL ------------------------------------------------------------------


@pytest.mark.postgres
def test_two_servers_share_one_postgres(tmp_path: Path) -> None:
    home = tmp_path / "home"
    with scratch_postgres() as url, running_server(home, database_url=url) as first:
        with running_server(home, command="serve", database_url=url) as second:
            token = first.login()
            with first.client(token) as a, second.client(token) as b:
                stream_url = f"{second.url}/v1/stream"
                with httpx.stream(
                    "GET",
                    stream_url,
                    params={"tenant": TENANT, "kind": "pg.*"},
                    headers={"Authorization": f"Bearer {token}"},
                    timeout=30,
                ) as response:
                    events = sse_events(response)
                    assert next(events)[1] == "live"
                    written = a.post(
                        f"/v1/tenants/{TENANT}/spans/custodial",
                        json={"kind": "pg.via_first", "title": "through A"},
                    ).json()
                    _, _, data = next(events)  # seen on B: NOTIFY crossed processes
                    assert data["span"]["body"]["id"] == written["span_id"]
                results: list[int] = []

                def burst(client: httpx.Client, n: int) -> None:
                    for i in range(n):
                        r = client.post(
                            f"/v1/tenants/{TENANT}/spans/custodial",
                            json={"kind": "pg.burst", "title": f"{i}"},
                        )
                        results.append(r.status_code)

                threads = [threading.Thread(target=burst, args=(c, 30)) for c in (a, b, a, b)]
                for thread in threads:
                    thread.start()
                for thread in threads:
                    thread.join()
                assert results == [201] * 120
        assert verified_size(home, url) >= 121


# --- rate limits --------------------------------------------------------------------------------


def test_rate_limits_are_shared_through_redis(tmp_path: Path) -> None:
    import redis

    uri = os.environ.get("LOGLINE_TEST_REDIS", "redis://127.0.0.1:6379/0")
    try:
        redis.Redis.from_url(uri, socket_connect_timeout=2).ping()
    except redis.RedisError as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"Redis is required when CI=true: {exc}", pytrace=False)
        pytest.skip(f"Redis at {uri} unreachable: {exc}")
    env = {
        "LOGLINE_RATE_LIMIT_STORAGE": uri,
        "LOGLINE_RATE_LIMIT_PREFIX": uuid.uuid4().hex,
        "LOGLINE_RATE_LIMITS": json.dumps({"read": "5/minute"}),
    }
    home = tmp_path / "home"
    with running_server(home, env=env) as first:
        token = first.login()
        with running_server(home, command="serve", env=env) as second:
            statuses = []
            for i in range(6):  # one budget across both processes
                with (first if i % 2 else second).client(token) as client:
                    response = client.get(f"/v1/tenants/{TENANT}/spans")
                statuses.append(response.status_code)
            assert statuses == [200] * 5 + [429]
            limited = problem(response, 429, "rate-limited")
            assert int(response.headers["retry-after"]) >= 1
            assert limited["retry_after"] == int(response.headers["retry-after"])
            with second.client() as anonymous:  # health is not rate-limited
                assert anonymous.get("/readyz").json()["checks"]["rate_limit_storage"] == "ok"


# --- the embedded node ---------------------------------------------------------------------------


def test_up_runs_a_node_that_runs_jobs(tmp_path: Path) -> None:
    env = {"LOGLINE_EMBEDDED_NODE": "true"}
    with running_server(tmp_path / "home", env=env) as server, server.client(server.login()) as c:
        job = c.post(f"/v1/tenants/{TENANT}/jobs", json={"type": "logline.noop"}).json()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            state = c.get(f"/v1/tenants/{TENANT}/jobs/{job['id']}").json()
            if state["state"] == "succeeded":
                break
            time.sleep(0.1)
        assert state["state"] == "succeeded", state
        assert state["node"].startswith("logline-id://service/system.embedded-node")
        kinds = [
            i["span"]["body"]["kind"]
            for i in c.get(f"/v1/tenants/{TENANT}/spans", params={"flow_id": job["id"]}).json()[
                "items"
            ]
        ]
        assert kinds == ["job.queued", "job.started", "job.succeeded"]
    assert server.process.returncode == 0  # the node was stopped with the server


# --- configuration --------------------------------------------------------------------------------


def test_config_check_and_bad_settings(tmp_path: Path) -> None:
    home = tmp_path / "home"
    with running_server(home):
        pass
    ok = subprocess.run(
        [*logline_command(), "--home", str(home), "config", "check"],
        capture_output=True,
        text=True,
        env=server_env(),
    )
    assert ok.returncode == 0, ok.stderr
    assert "reachable" in ok.stdout
    for name, value in [
        ("LOGLINE_PORT", "99999"),
        ("LOGLINE_RATE_LIMITS", '{"nope": "1/s"}'),
        ("LOGLINE_RATE_LIMIT_STORAGE", "bogus://x"),
    ]:
        bad = subprocess.run(
            [*logline_command(), "--home", str(home), "config", "check"],
            capture_output=True,
            text=True,
            env=server_env(**{name: value}),
        )
        assert bad.returncode == 1, (name, bad.stdout, bad.stderr)
        lines = bad.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), bad.stderr
    served = subprocess.run(
        [*logline_command(), "--home", str(home), "serve", "--port", "0"],
        capture_output=True,
        text=True,
        timeout=60,
        env=server_env(LOGLINE_PORT="-5"),
    )
    assert served.returncode == 1 and served.stderr.startswith("error: server setting port")
