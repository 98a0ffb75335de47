"""The rules' follow-ups and approvals against a real `logline` server: every acknowledged
trigger's follow-ups happen exactly once though the server is killed with `kill -9` right after
acknowledging, and `logline approvals` decides held spans from a terminal."""

from __future__ import annotations

import io
import json
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from logline.ledger.bundle import verify_bundle
from servers import RunningServer, logline_command, running_server, scratch_postgres, start_server

pytestmark = pytest.mark.e2e

TENANT = "default"
QUEUE = "rules-e2e"  # no worker serves it: the jobs stay queued, to be counted
GENEROUS = {
    "LOGLINE_RATE_LIMITS": json.dumps(
        {"auth": "10000/minute", "read": "1000000/minute", "write": "1000000/minute"}
    )
}
FOLLOW_UPS = f"""
rules:
  - id: on-order
    when: {{kind: order.placed}}
    then:
      - enqueue: {{job: invoice.render, queue: {QUEUE}, payload: {{order: "${{span.id}}"}}}}
      - emit: {{kind: order.noted, title: "noted", payload: {{order: "${{span.id}}"}}}}
"""
APPROVALS = """
rules:
  - id: big
    when: {kind: payment.*, path: payload.amount, greater_than: 1000}
    then:
      - require_approval: {approvers: [admin], timeout: 1h}
      - emit: {kind: payment.booked, title: booked}
"""


@contextmanager
def backend(kind: str) -> Iterator[str | None]:
    if kind == "sqlite":
        yield None
    else:
        with scratch_postgres() as url:
            yield url


def wait_for(done: Callable[[], Any], timeout: float, explain: Callable[[], object] = str) -> Any:
    deadline = time.monotonic() + timeout
    while not (found := done()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s: {explain()}")
        time.sleep(0.2)
    return found


def pages(client: httpx.Client, url: str, key: str, cursor: str, **params: Any) -> list[Any]:
    """Every item of a paged list (`key` the items, `cursor` the next page's parameter)."""
    found: list[Any] = []
    after: str | None = None
    next_name = {"cursor": "next_cursor", "before": "next_before"}[cursor]
    while True:
        page = client.get(url, params={**params, **({cursor: after} if after else {})})
        assert page.status_code == 200, page.text
        body = page.json()
        found += body[key]
        after = body[next_name]
        if after is None:
            return found


def publish(client: httpx.Client, source: str) -> None:
    published = client.post(f"/v1/tenants/{TENANT}/rules", json={"source": source})
    assert published.status_code in (200, 201), published.text


# --- kill -9 right after the acknowledgements -----------------------------------------------------


def append_orders(server: RunningServer, token: str, count: int, threads: int = 4) -> list[str]:
    """Append `count` order.placed spans from `threads` clients; the acknowledged span ids."""
    acked: list[str] = []
    errors: list[str] = []

    def run(n: int) -> None:
        with server.client(token) as client:
            for i in range(n):
                body = {"kind": "order.placed", "title": f"order {i}", "payload": {"n": i}}
                response = client.post(f"/v1/tenants/{TENANT}/spans/custodial", json=body)
                if response.status_code == 201:
                    acked.append(str(response.json()["span_id"]))
                else:
                    errors.append(f"{response.status_code} {response.text[:200]}")

    workers = [threading.Thread(target=run, args=(count // threads,)) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(120)
    assert not errors, errors[:5]
    return acked


def follow_ups_of(client: httpx.Client) -> tuple[Counter[str], Counter[str]]:
    """(emitted order.noted spans, queued jobs) per trigger span id."""
    spans = pages(client, f"/v1/tenants/{TENANT}/spans", "items", "cursor", kind="order.noted",
                  limit=1000)  # fmt: skip
    noted = Counter(str(item["span"]["body"]["caused_by"]) for item in spans)
    jobs = pages(client, f"/v1/tenants/{TENANT}/jobs", "jobs", "before", queue=QUEUE, limit=1000)
    return noted, Counter(str(job["payload"]["order"]) for job in jobs)


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_kill_9_after_the_acks_runs_every_follow_up_once(tmp_path: Path, kind: str) -> None:
    home = tmp_path / "home"
    with backend(kind) as url:
        server = start_server(home, database_url=url, env=GENEROUS)
        port = urlsplit(server.url).port
        try:
            token = server.login()
            with server.client(token) as client:
                publish(client, FOLLOW_UPS)
            acked: list[str] = []
            for _ in range(2):  # killed twice: follow-ups of the first round may still be due
                acked += append_orders(server, token, 60)
                server.kill()  # no graceful anything: SIGKILL right after the last ack
                server = start_server(home, database_url=url, env=GENEROUS, port=port or 0)
                token = server.login()
            assert len(set(acked)) == len(acked) == 120
            with server.client(token) as client:

                def complete() -> bool:
                    noted, jobs = follow_ups_of(client)
                    return set(noted) >= set(acked) and set(jobs) >= set(acked)

                def explain() -> str:
                    noted, jobs = follow_ups_of(client)
                    lost = (len(set(acked) - set(noted)), len(set(acked) - set(jobs)))
                    return f"{lost[0]} without their span, {lost[1]} without their job\n" + (
                        server.log()
                    )

                # Rows a killed dispatcher had taken are due again when its lease (10 s) ends.
                wait_for(complete, 60, explain)
                time.sleep(1.5)  # a few more dispatcher passes: nothing may run twice
                noted, jobs = follow_ups_of(client)
                assert set(noted) == set(jobs) == set(acked)
                assert set(noted.values()) == {1}, noted.most_common(3)
                assert set(jobs.values()) == {1}, jobs.most_common(3)
                bundle = client.get(f"/v1/tenants/{TENANT}/log/bundle", timeout=120)
                assert bundle.status_code == 200, bundle.text
                verify_bundle(io.StringIO(bundle.text))
        finally:
            if server.process.poll() is None:
                server.stop()


# --- approvals from a terminal --------------------------------------------------------------------


def cli(server: RunningServer, token: str, *args: str) -> Any:
    done = subprocess.run(
        [*logline_command(), "approvals", *args, "--server", server.url, "--token", token,
         "--tenant", TENANT, "--json"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    return json.loads(done.stdout)


def test_approvals_from_the_cli(tmp_path: Path) -> None:
    with running_server(tmp_path / "home", env=GENEROUS) as server:
        owner = server.login()
        with server.client(owner) as client:
            publish(client, APPROVALS)
            made = client.post("/v1/users", json={"username": "auditor", "password": "x" * 16,
                                                  "tenant": TENANT, "role": "admin"})  # fmt: skip
            assert made.status_code == 201, made.text
            held = []
            for amount in (5000, 7000):
                body = {"kind": "payment.sent", "title": "pay", "payload": {"amount": amount}}
                response = client.post(f"/v1/tenants/{TENANT}/spans/custodial", json=body)
                assert response.status_code == 202 and response.json()["state"] == "held"
                held.append(response.json())
        auditor = server.login(username="auditor", password="x" * 16)
        pending = cli(server, auditor, "list")["approvals"]
        assert sorted(h["id"] for h in pending) == sorted(h["hold"] for h in held)
        shown = cli(server, auditor, "show", held[0]["hold"])
        assert (shown["state"], shown["span_id"]) == ("pending", held[0]["span_id"])
        # The author (the owner, who appended them) may not approve: separation of duties.
        refused = subprocess.run(
            [*logline_command(), "approvals", "approve", held[0]["hold"], "--server", server.url,
             "--token", owner, "--tenant", TENANT],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert refused.returncode != 0 and "separation of duties" in refused.stdout + refused.stderr
        approved = cli(server, auditor, "approve", held[0]["hold"])
        assert approved["state"] == "approved"
        rejected = cli(server, auditor, "reject", held[1]["hold"], "--reason", "too much")
        assert (rejected["state"], rejected["reason"]) == ("rejected", "too much")
        assert cli(server, auditor, "list")["approvals"] == []
        assert len(cli(server, auditor, "list", "--state", "all")["approvals"]) == 2
        with server.client(auditor) as client:
            logged = client.get(f"/v1/tenants/{TENANT}/spans/{held[0]['span_id']}")
            assert logged.status_code == 200, logged.text
            assert client.get(f"/v1/tenants/{TENANT}/spans/{held[1]['span_id']}").status_code == 404

            def booked() -> list[Any]:
                found = client.get(f"/v1/tenants/{TENANT}/spans", params={"kind": "payment.booked"})
                return list(found.json()["items"])

            # The approved span's follow-ups run once it is logged.
            [item] = wait_for(booked, 30)
            assert item["span"]["body"]["caused_by"] == held[0]["span_id"]
