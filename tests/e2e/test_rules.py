"""Rules against a real server: publishing (and refusing) rule sets, the decisions appends get,
versions, dry runs, tenants kept apart, and `logline rules` from a terminal.

Each test onboards a tenant of its own, owned by a key-holding identity that signs its spans, on
one server per backend (the approvals API is tested elsewhere: here a hold is only its 202).
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from logline.client import ApiRuleRejected, Client, Signer, SpanHeld
from logline.ledger.checkpoint import NoteVerifier
from logline.ledger.receipt import Receipt, verify_receipt
from servers import RunningServer, logline_command, running_server, scratch_postgres

pytestmark = pytest.mark.e2e

GENEROUS = {"LOGLINE_RATE_LIMITS": '{"auth": "6000/minute", "write": "60000/minute"}'}
BACKENDS = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("postgres", id="postgres", marks=pytest.mark.postgres),
]
RULES = """
description: the e2e policy
rules:
  - id: no-test-payments
    when: {kind: payment.*, path: payload.test, equals: true}
    then: [{reject: test payments are not allowed}]
  - id: big
    when: {kind: payment.*, path: payload.amount, greater_than: 1000}
    then:
      - add_tag: big
      - set_metadata: {review: manual, amount: "${payload.amount}"}
      - note: looked at by the rules
  - id: dry
    when: {kind: deploy.*}
    then: [{simulate: deploys are simulated this week}]
  - id: brute-force
    when:
      kind: login.failed
      count: {kind: login.failed, by: author, within: 5m}
      greater_than: 2
    then: [{reject: too many failed logins}]
  - id: huge
    when: {kind: payment.*, path: payload.amount, greater_than: 100000}
    then:
      - require_approval: {approvers: [admin], quorum: 1, timeout: 1h}
    examples:
      - span: {kind: payment.approved, payload: {amount: 500000}}
        expect: {outcome: hold, tags: [big]}
"""
DENY = """
default: deny
rules:
  - id: only-ok
    when: {kind: ok.*}
    then: [allow]
"""
INVALID = """
rules:
  - id: typo
    when: {kind: payment.*}
    then: [{rejekt: nope}]
"""
FAILING = """
rules:
  - id: strict
    when: {kind: a.b}
    then: [{reject: never}]
    examples:
      - name: wrongly expected
        span: {kind: a.b}
        expect: {outcome: allow}
"""
_names = itertools.count()


@pytest.fixture(scope="module", params=BACKENDS)
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningServer]:
    home = tmp_path_factory.mktemp(f"rules-{request.param}") / "home"
    if request.param == "postgres":
        with scratch_postgres() as url, running_server(home, database_url=url, env=GENEROUS) as s:
            yield s
    else:
        with running_server(home, env=GENEROUS) as s:
            yield s


@pytest.fixture(scope="module")
def admin_token(server: RunningServer) -> str:
    return server.login()


class Tenant:
    """A tenant of the test's own, owned by `owner` (who holds its key), through `client`."""

    def __init__(self, server: RunningServer, admin_token: str) -> None:
        self.name = f"rules{next(_names)}"
        self.owner = Signer.generate(f"logline-id://person/{self.name}-owner")
        with Client(server.url, self.name, token=admin_token) as onboarding:
            onboarding.onboard(self.owner.identity_span(self.name), f"Rules {self.name}")
        self.client = Client(server.url, self.name)
        self.client.login_with_key(self.owner.identity, self.owner.key)
        token = self.client.api.access_token
        assert token is not None
        self.token = token
        self.http = server.client(token)
        self.base = f"/v1/tenants/{self.name}"

    def member(self, handle: str, role: str = "member") -> Signer:
        signer = Signer.generate(f"logline-id://person/{self.name}-{handle}")
        self.client.register_identity(signer.identity_span(self.name))
        self.client.grant(signer.identity, role)
        return signer

    def post(self, path: str, body: Any = None) -> httpx.Response:
        return self.http.post(self.base + path, json=body)

    def get(self, path: str, **params: Any) -> httpx.Response:
        return self.http.get(self.base + path, params=params)

    def publish(self, source: str) -> httpx.Response:
        return self.post("/rules", {"source": source})

    def append(self, signer: Signer, kind: str, payload: Any = None, **fields: Any) -> Any:
        span = signer.span(self.name, kind, f"{kind} by {signer.identity}", payload, **fields)
        return span, self.post("/spans", span.to_json())

    def size(self) -> int:
        return int(self.get("/log").json()["size"])

    def decision(self, span_id: str) -> dict[str, Any]:
        found: dict[str, Any] = self.get(f"/spans/{span_id}").json()["entry"]["decision"]
        return found

    def close(self) -> None:
        self.client.close()
        self.http.close()


@pytest.fixture
def tenant(server: RunningServer, admin_token: str) -> Iterator[Tenant]:
    made = Tenant(server, admin_token)
    yield made
    made.close()


# --- publishing -----------------------------------------------------------------------------------


def test_invalid_and_failing_sets_are_refused_and_change_nothing(tenant: Tenant) -> None:
    published = tenant.publish(RULES)
    assert published.status_code == 201, published.text
    info = published.json()
    assert (info["version"], info["active"], info["rules"]) == (1, True, 5)
    size = tenant.size()

    invalid = tenant.publish(INVALID)
    assert invalid.status_code == 400
    problem = invalid.json()
    assert problem["type"] == "urn:logline:problem:invalid-rules"
    where = (problem["location"], problem["line"], problem["column"])
    assert where == ("rules[0].then[0].rejekt", 5, 21)
    assert "did you mean 'reject'" in problem["detail"]

    failing = tenant.publish(FAILING)
    assert failing.status_code == 400
    problem = failing.json()
    assert problem["type"] == "urn:logline:problem:examples-failed"
    [failure] = problem["failures"]
    assert (failure["location"], failure["line"], failure["name"]) == (
        "rules[0].examples[0]", 7, "wrongly expected")  # fmt: skip
    assert failure["problems"] == ["outcome: expected allow, got reject"]
    assert failure["decision"]["outcome"] == "reject"

    state = tenant.get("/rules").json()
    assert state["active_version"] == 1 and [v["version"] for v in state["versions"]] == [1]
    assert "source" not in state["versions"][0]
    assert tenant.size() == size  # nothing logged for the refusals
    shown = tenant.get("/rules/1").json()
    assert shown["source"] == RULES and shown["document"]["description"] == "the e2e policy"
    assert tenant.get("/rules/2").status_code == 404


def test_only_admins_publish(tenant: Tenant, server: RunningServer) -> None:
    member = tenant.member("writer")
    viewer = tenant.member("reader", "viewer")
    for signer, publish, read in ((member, 403, 200), (viewer, 403, 200)):
        with Client(server.url, tenant.name) as client:
            client.login_with_key(signer.identity, signer.key)
            headers = {"Authorization": f"Bearer {client.api.access_token}"}
            url = f"{server.url}{tenant.base}/rules"
            assert httpx.post(url, json={"source": RULES}, headers=headers).status_code == publish
            assert httpx.get(url, headers=headers).status_code == read
            dry = httpx.post(url + "/dry-run", json={"span": {"kind": "a.b"}}, headers=headers)
            assert dry.status_code == (200 if signer is member else 403)


# --- the write path -------------------------------------------------------------------------------


def test_appends_get_the_decisions_of_the_active_set(tenant: Tenant) -> None:
    payer, other = tenant.member("payer"), tenant.member("other")
    assert tenant.publish(RULES).status_code == 201

    # Rejected: 403 with the decision; nothing logged.
    size = tenant.size()
    span, rejected = tenant.append(payer, "payment.approved", {"amount": 5, "test": True})
    assert rejected.status_code == 403, rejected.text
    problem = rejected.json()
    assert problem["type"] == "urn:logline:problem:rejected-by-rule"
    assert problem["span_id"] == span.id
    assert problem["decision"]["reasons"] == [
        {"rule": "no-test-payments", "text": "test payments are not allowed"}]  # fmt: skip
    assert problem["decision"]["ruleset"]["version"] == "1"
    assert tenant.size() == size
    assert tenant.get(f"/spans/{span.id}").status_code == 404

    # Simulated: logged, and the entry says so.
    span, simulated = tenant.append(payer, "deploy.started")
    assert simulated.status_code == 201
    decision = tenant.decision(span.id)
    assert decision["outcome"] == "simulate"
    assert decision["reasons"] == [{"rule": "dry", "text": "deploys are simulated this week"}]

    # Tagged: tags and metadata in the entry, the signed body as the author wrote it, and the
    # receipt verifies offline against the log key.
    span = payer.span(tenant.name, "payment.approved", "a big one", {"amount": 5000}, tags=["q4"])
    appended = tenant.http.post(
        f"{tenant.base}/spans", params={"wait": "checkpointed"}, json=span.to_json()
    )
    assert appended.status_code == 201, appended.text
    decision = tenant.decision(span.id)
    assert decision["outcome"] == "allow" and decision["rules"] == ["big"]
    assert decision["tags"] == ["big"] and decision["metadata"] == {
        "review": "manual", "amount": 5000}  # fmt: skip
    assert decision["notes"] == [{"rule": "big", "text": "looked at by the rules"}]
    assert decision["ruleset"]["version"] == "1"
    logged = tenant.get(f"/spans/{span.id}").json()
    assert logged["span"]["body"] == span.body and logged["span"]["body"]["tags"] == ["q4"]
    receipt = Receipt.from_json(appended.json()["receipt"])
    assert receipt.entry.decision == decision
    key = NoteVerifier.parse(tenant.get("/log").json()["key"])
    assert verify_receipt(receipt, key, span).size >= receipt.seq + 1

    # A window count: the 4th failed login by one author in 5 minutes is rejected, not another's.
    for _ in range(3):
        assert tenant.append(payer, "login.failed")[1].status_code == 201
    span, fourth = tenant.append(payer, "login.failed")
    assert fourth.status_code == 403
    assert fourth.json()["decision"]["matched"] == ["brute-force"]
    assert tenant.append(other, "login.failed")[1].status_code == 201

    # Held for approval: 202, and the span is not logged (an approval request is, instead).
    span, held = tenant.append(payer, "payment.approved", {"amount": 500_000})
    assert held.status_code == 202, held.text
    hold = held.json()
    assert hold["state"] == "held" and hold["span_id"] == span.id
    assert hold["requirement"]["groups"][0]["roles"] == ["admin"]
    assert tenant.get(f"/spans/{span.id}").status_code == 404
    record = tenant.get(f"/spans/{hold['record']}").json()["span"]["body"]
    assert record["kind"] == "approval.requested"


def test_the_sdk_raises_for_rejected_and_held_spans(tenant: Tenant) -> None:
    tenant.client.publish_rules(RULES)
    with pytest.raises(ApiRuleRejected) as rejected:
        tenant.client.sign_and_append(tenant.owner, "payment.approved", "x", {"test": True})
    assert rejected.value.reasons == ["test payments are not allowed"]
    with pytest.raises(SpanHeld) as held:
        tenant.client.sign_and_append(tenant.owner, "payment.approved", "x", {"amount": 10**6})
    assert held.value.held["state"] == "held"
    # A service's API key: spans the server signs for it (custodial) are decided the same way.
    key = tenant.client.create_api_key("bot", "member")
    with Client(tenant.client.base_url, tenant.name, api_key=key.key) as bot:
        with pytest.raises(ApiRuleRejected):
            bot.append_custodial("payment.approved", "x", {"test": True})
        ok = bot.append_custodial("payment.approved", "fine", {"amount": 2})
        assert ok.receipt.entry.decision["outcome"] == "allow"


def test_default_deny_rollback_disable_and_history(tenant: Tenant) -> None:
    payer = tenant.member("payer")
    assert tenant.publish(RULES).status_code == 201
    assert tenant.publish(DENY).status_code == 201
    span, denied = tenant.append(payer, "payment.approved", {"amount": 1})
    assert denied.status_code == 403
    default = "no rule allows this span and the rule set's default is deny"
    assert denied.json()["decision"]["reasons"] == [{"rule": None, "text": default}]
    assert tenant.append(payer, "ok.fine")[1].status_code == 201

    rolled = tenant.post("/rules/rollback", {"version": 1})
    assert rolled.status_code == 200 and rolled.json()["active_version"] == 1
    assert tenant.post("/rules/rollback", {"version": 1}).status_code == 409
    assert tenant.post("/rules/rollback", {"version": 9}).status_code == 404
    span, allowed = tenant.append(payer, "payment.approved", {"amount": 1})
    assert allowed.status_code == 201 and tenant.decision(span.id)["ruleset"]["version"] == "1"

    disabled = tenant.post("/rules/disable")
    assert disabled.status_code == 200 and disabled.json()["active_version"] is None
    assert tenant.post("/rules/disable").status_code == 409
    span, allowed = tenant.append(payer, "payment.approved", {"amount": 1, "test": True})
    assert allowed.status_code == 201 and tenant.decision(span.id) == {"outcome": "allow"}

    state = tenant.get("/rules").json()
    assert state["active_version"] is None
    assert [(v["version"], v["active"], v["default"]) for v in state["versions"]] == [
        (2, False, "deny"), (1, False, "allow")]  # fmt: skip
    changes = tenant.get("/spans", kind="rules.*").json()["items"]
    kinds = [item["span"]["body"]["kind"] for item in changes]
    assert kinds == ["rules.published", "rules.published", "rules.rolled_back", "rules.disabled"]
    payloads = [item["span"]["payload"] for item in changes]
    by = tenant.owner.identity
    assert payloads[0] == {"version": 1, "digest": state["versions"][1]["digest"], "rules": 5,
                           "default": "allow", "previous": None, "by": by}  # fmt: skip
    assert payloads[1]["previous"] == 1 and payloads[1]["default"] == "deny"
    assert payloads[2] == {"version": 1, "previous": 2, "by": by}
    assert payloads[3] == {"previous": 1, "by": by}
    assert {item["span"]["body"]["author"] for item in changes} == {
        f"logline-id://service/{tenant.get('/log').json()['origin'].split('/')[0]}"}  # fmt: skip


def test_tenants_are_decided_by_their_own_rules(server: RunningServer, admin_token: str) -> None:
    a, b = Tenant(server, admin_token), Tenant(server, admin_token)
    try:
        assert a.publish(DENY).status_code == 201
        assert a.append(a.owner, "payment.approved")[1].status_code == 403
        span, response = b.append(b.owner, "payment.approved", {"test": True})
        assert response.status_code == 201 and b.decision(span.id) == {"outcome": "allow"}
        assert b.get("/rules").json() == {"tenant": b.name, "active_version": None,
                                          "updated_at": None, "updated_by": None,
                                          "span_id": None, "versions": []}  # fmt: skip
        # A's owner, asking about B's rules, is not a member there.
        assert a.http.get(f"{b.base}/rules").status_code == 403
    finally:
        a.close()
        b.close()


# --- dry runs -------------------------------------------------------------------------------------


def test_dry_runs_decide_as_the_write_path_and_write_nothing(tenant: Tenant) -> None:
    payer = tenant.member("payer")
    nothing = tenant.post("/rules/dry-run", {"span": {"kind": "payment.approved"}}).json()
    assert nothing["gated"] is False and nothing["decision"] == {"outcome": "allow"}
    assert tenant.publish(RULES).status_code == 201
    for _ in range(3):
        assert tenant.append(payer, "login.failed")[1].status_code == 201
    size = tenant.size()

    def dry(body: dict[str, Any]) -> dict[str, Any]:
        answer = tenant.post("/rules/dry-run", body)
        assert answer.status_code == 200, answer.text
        found: dict[str, Any] = answer.json()
        return found

    # A span, by the active set, with the author's window count and the caller as default author.
    fourth = dry({"span": {"kind": "login.failed", "author": payer.identity}})
    assert fourth["mode"] == "span" and fourth["gated"] is True
    assert fourth["decision"]["outcome"] == "reject"
    assert fourth["decision"]["matched"] == ["brute-force"]
    assert dry({"span": {"kind": "login.failed"}})["decision"]["outcome"] == "allow"
    big = dry({"span": {"kind": "payment.approved", "payload": {"amount": 5000}}})
    assert big["decision"]["tags"] == ["big"] and big["span"]["author"] == tenant.owner.identity
    held = dry({"span": {"kind": "payment.approved", "payload": {"amount": 10**6}}})
    assert held["decision"]["outcome"] == "hold" and held["decision"]["approval"]["groups"]
    # ...or by a proposal.
    proposal = dry({"span": {"kind": "payment.approved"}, "source": DENY})
    assert proposal["decision"]["outcome"] == "reject" and proposal["ruleset"]["version"] == (
        "proposal")  # fmt: skip
    # A proposal against the last spans: the 3rd failed login would be rejected with > 1.
    stricter = RULES.replace("greater_than: 2", "greater_than: 1")
    history = dry({"source": stricter, "last": 1000})
    assert history["mode"] == "history" and history["active"]["version"] == "1"
    failed = [s for s in history["spans"] if s["kind"] == "login.failed"]
    assert [(s["active"], s["proposed"]) for s in failed] == [
        ("allow", "allow"), ("allow", "allow"), ("allow", "reject")]  # fmt: skip
    assert failed[2]["changed"] and failed[2]["proposed_rules"] == ["brute-force"]
    summary = history["summary"]
    assert summary["changed"] == 1 and summary["transitions"] == {"allow->reject": 1}
    assert summary["skipped"] > 0  # the instance's own records (tenant.created, rules.published)
    assert summary["spans"] + summary["skipped"] == size
    assert dry({"source": stricter, "last": 2})["summary"]["spans"] <= 2
    # Bad requests.
    assert tenant.post("/rules/dry-run", {}).status_code == 400
    assert tenant.post("/rules/dry-run", {"last": 5}).status_code == 400
    assert tenant.post("/rules/dry-run", {"source": stricter, "last": 1001}).status_code == 422
    bad = tenant.post("/rules/dry-run", {"span": {"kind": "a.b"}, "source": INVALID})
    assert bad.status_code == 400 and bad.json()["location"] == "rules[0].then[0].rejekt"
    assert tenant.post("/rules/dry-run", {"span": {"kind": "Not A Kind"}}).status_code == 422
    assert tenant.size() == size  # nothing was written

    tested = tenant.post("/rules/test", {"source": FAILING}).json()
    assert tested["ok"] is False and tested["failures"][0]["name"] == "wrongly expected"
    assert tenant.post("/rules/test", {"source": RULES}).json()["ok"] is True
    assert tenant.post("/rules/test", {"source": INVALID}).status_code == 400
    assert tenant.size() == size


# --- the CLI --------------------------------------------------------------------------------------


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOGLINE_")}
    env["COLUMNS"] = "200"  # Rich tables one line per row
    return subprocess.run([*logline_command(), "rules", *args], capture_output=True, text=True,
                          env=env, timeout=60)  # fmt: skip


def test_the_cli(tenant: Tenant, server: RunningServer, tmp_path: Path) -> None:
    texts = {"rules": RULES, "deny": DENY, "invalid": INVALID, "failing": FAILING}
    files = {name: tmp_path / f"{name}.yaml" for name in texts}
    for name, path in files.items():
        path.write_text(texts[name])
    span = tmp_path / "span.json"
    span.write_text(json.dumps({"kind": "payment.approved", "payload": {"test": True}}))
    remote = ["--server", server.url, "--token", tenant.token, "--tenant", tenant.name]

    # Offline: no server at all.
    tested = cli("test", str(files["rules"]))
    assert tested.returncode == 0 and "ok: 1 example(s) of 5 rule(s) hold" in tested.stderr
    bad = cli("test", str(files["invalid"]))
    assert bad.returncode == 1 and bad.stderr.splitlines() == [
        "error: rules[0].then[0].rejekt (line 5, column 21): unknown action 'rejekt' (did you mean "
        "'reject'? known: allow, reject, simulate, add_tag, set_metadata, note, "
        "require_approval, enqueue, emit, webhook)"]  # fmt: skip
    failing = cli("test", str(files["failing"]))
    assert failing.returncode == 1 and "wrongly expected" in failing.stdout
    assert "rules[0].examples[0]" in failing.stdout and "1 of 1 example(s) fail" in failing.stderr
    assert cli("test", "--remote", str(files["failing"]), *remote).returncode == 1

    # Publishing: refused, then accepted.
    refused = cli("publish", str(files["failing"]), *remote)
    assert refused.returncode == 1 and "wrongly expected" in refused.stdout
    refused = cli("publish", str(files["invalid"]), *remote)
    assert refused.returncode == 1
    assert "rules[0].then[0].rejekt (line 5, column 21)" in refused.stderr
    published = cli("publish", str(files["rules"]), *remote)
    assert published.returncode == 0, published.stderr
    assert "published version 1" in published.stderr
    assert cli("publish", str(files["deny"]), *remote).returncode == 0

    listed = cli("list", *remote)
    assert listed.returncode == 0 and "only-ok" in listed.stdout and "default deny" in listed.stdout
    listed = cli("list", "--version", "1", "--json", *remote)
    assert [rule["id"] for rule in json.loads(listed.stdout)] == [
        "big", "brute-force", "dry", "huge", "no-test-payments"]  # fmt: skip
    shown = cli("show", "1", *remote)
    assert shown.returncode == 0 and "description: the e2e policy" in shown.stdout

    dry = cli("dry-run", "--span", str(span), *remote)
    assert dry.returncode == 0 and "reject" in dry.stdout and "only-ok" not in dry.stdout
    dry = cli("dry-run", "--span", str(span), "--file", str(files["rules"]), "--json", *remote)
    assert json.loads(dry.stdout)["decision"]["matched"] == ["no-test-payments"]
    compared = cli("dry-run", "--file", str(files["rules"]), "--last", "100", "--json", *remote)
    assert json.loads(compared.stdout)["mode"] == "history"
    compared = cli("dry-run", "--file", str(files["rules"]), "--last", "100", *remote)
    assert compared.returncode == 0 and "would be decided differently" in compared.stderr
    assert cli("dry-run", *remote).returncode == 1

    rolled = cli("rollback", "1", *remote)
    assert rolled.returncode == 0 and "version 1 is active again" in rolled.stderr
    disabled = cli("disable", *remote)
    assert disabled.returncode == 0 and "rules are off" in disabled.stderr
    again = cli("disable", *remote)
    assert again.returncode == 1 and again.stderr.startswith("error: no rule set is active")
    history = cli("history", *remote)
    assert history.returncode == 0, history.stderr
    for needle in ("rules.published", "rules.rolled_back", "rules.disabled", "versions"):
        assert needle in history.stdout
