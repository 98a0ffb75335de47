"""The Python SDK against real `logline up` servers, on SQLite and on PostgreSQL.

Login (password, key challenge, API key) with refresh rotation and reuse detection; client-signed
appends whose receipts verify, and tampered ones that do not; atomic batches; paginated queries;
the live stream, resumed across a server restart; retries on 429 and after a lost response; and
the `logline onboard` wizard as a user runs it.
"""

from __future__ import annotations

import os
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from logline.client import (
    NO_RETRY,
    ApiConflict,
    ApiInvalidInput,
    ApiNotFound,
    ApiRateLimited,
    ApiUnauthenticated,
    AsyncClient,
    Client,
    ConnectionFailed,
    DroppedEvent,
    LiveEvent,
    RetryNotice,
    RetryPolicy,
    Signer,
    SpanEvent,
    Subscription,
)
from logline.errors import SignatureError, VerificationError
from logline.identity.keys import PrivateKey
from logline.ledger.receipt import Receipt
from logline.ledger.span import sign_body
from servers import RunningServer, logline_command, running_server, scratch_postgres, start_server

pytestmark = pytest.mark.e2e

ACME = "acme"
ALICE = Signer.generate("logline-id://person/alice")
# Module servers serve many logins and streams: the default auth budget (20/minute) is for people.
GENEROUS = {"LOGLINE_RATE_LIMITS": '{"auth": "6000/minute", "stream": "6000/minute"}'}
BACKENDS = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("postgres", id="postgres", marks=pytest.mark.postgres),
]
PASSPHRASE = "sdk e2e passphrase"


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


def start(
    stack: ExitStack, backend: str, home: Path, env: dict[str, str] | None = None
) -> tuple[RunningServer, str | None]:
    database_url = stack.enter_context(scratch_postgres()) if backend == "postgres" else None
    server = stack.enter_context(running_server(home, database_url=database_url, env=env))
    return server, database_url


@pytest.fixture(scope="module", params=BACKENDS)
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningServer]:
    with ExitStack() as stack:
        home = tmp_path_factory.mktemp(f"sdk-{request.param}") / "home"
        yield start(stack, request.param, home, GENEROUS)[0]


@pytest.fixture(scope="module")
def admin(server: RunningServer) -> Iterator[Client]:
    """The instance administrator, logged in with a password, on the default tenant."""
    with Client(server.url) as client:
        client.login("admin", server.password)
        yield client


@pytest.fixture(scope="module")
def owner(server: RunningServer, admin: Client) -> Iterator[Client]:
    """ALICE, onboarded as the owner of ACME, logged in with a key challenge."""
    with Client(server.url, ACME, token=admin.api.access_token) as onboarding:
        onboarded = onboarding.onboard(ALICE.identity_span(ACME, "Alice"), "Acme Corp")
    assert (onboarded.identity, onboarded.tenant, onboarded.role) == (ALICE.identity, ACME, "owner")
    with Client(server.url, ACME) as client:
        tokens = client.login_with_key(ALICE.identity, ALICE.key)
        assert tokens.identity == ALICE.identity and tokens.tenants == (ACME,)
        yield client


# --- logging in -----------------------------------------------------------------------------------


def test_password_login_refresh_rotation_and_reuse_detection(server: RunningServer) -> None:
    with Client(server.url) as client, Client(server.url) as thief:
        first = client.login("admin", server.password)
        assert client.whoami().identity == "logline-id://person/admin"
        second = client.refresh()
        assert second.refresh_token != first.refresh_token
        assert client.whoami().method == "token"
        # The used refresh token, presented again: the server revokes the whole session...
        thief.api.refresh_token = first.refresh_token
        with pytest.raises(ApiUnauthenticated, match="already used"):
            thief.refresh()
        # ...so the rightful client's tokens stop working too, refresh included.
        with pytest.raises(ApiUnauthenticated):
            client.whoami()
        assert client.api.refresh_token is None
        with pytest.raises(ApiUnauthenticated):
            client.login("admin", "not the password")


def test_a_stale_access_token_is_refreshed_once_automatically(server: RunningServer) -> None:
    with Client(server.url) as client:
        client.login("admin", server.password)
        refresh_token = client.api.refresh_token
        client.api.access_token = "eyJhbGciOiJFZERTQSJ9.e30.c2lnbmF0dXJl"  # not a valid token
        assert client.whoami().identity == "logline-id://person/admin"
        assert client.api.refresh_token != refresh_token  # rotated
        client.logout()
        assert client.api.access_token is None
        client.api.refresh_token = refresh_token
        with pytest.raises(ApiUnauthenticated):
            client.refresh()


def test_api_keys_and_key_challenge_login(owner: Client, server: RunningServer) -> None:
    who = owner.whoami()
    assert (who.identity, who.roles, who.method) == (ALICE.identity, {ACME: "owner"}, "token")
    created = owner.create_api_key("ci robot", "member")
    with Client(server.url, ACME, api_key=created.key) as robot:
        assert robot.whoami().method == "api_key"
        appended = robot.append_custodial("test.robot", "beep", {"n": 1}, wait="checkpointed")
        assert robot.verify_receipt(appended.receipt).size > appended.seq
    with Client(server.url, ACME) as impostor, pytest.raises(ApiUnauthenticated):
        impostor.login_with_key(ALICE.identity, PrivateKey.generate())


# --- appends and receipts -------------------------------------------------------------------------


def test_client_signed_appends_have_receipts_that_verify(
    owner: Client, server: RunningServer
) -> None:
    span = owner.api.build_span(ALICE, "payment.approved", "Approve invoice 42", {"amount": 42})
    sequenced = owner.append(span)
    assert (sequenced.span_id, sequenced.status) == (span.id, "sequenced")
    assert owner.verify_receipt(sequenced.receipt, span).size > sequenced.seq  # upgraded first
    checkpointed = owner.sign_and_append(
        ALICE, "payment.settled", "Settle", {"amount": 42}, wait="checkpointed", tags=["inv"]
    )
    logged = owner.get_span(checkpointed.span_id)
    assert checkpointed.status == "checkpointed" and logged.span.body["tags"] == ["inv"]
    checkpoint = owner.verify_receipt(checkpointed.receipt, logged.span)
    assert checkpoint.origin == owner.log_info().origin

    with pytest.raises(VerificationError):  # a receipt for another span
        owner.verify_receipt(checkpointed.receipt, span)
    wire = checkpointed.receipt.to_json()
    for tampered in (
        {**wire, "entry": {**wire["entry"], "received": wire["entry"]["received"][:-2] + "9Z"}},
        {**wire, "entry": {**wire["entry"], "seq": checkpointed.seq + 1}},
        {**wire, "checkpoint": wire["checkpoint"].replace(f"\n{checkpoint.size}\n", "\n1\n")},
        {**wire, "origin": "logline.local/elsewhere"},
    ):
        with pytest.raises(VerificationError):
            owner.verify_receipt(Receipt.from_json(tampered), logged.span)
    # Pinned to another key, the genuine receipt does not verify.
    rogue = owner.api.log_key
    assert rogue is not None
    other = type(rogue)(rogue.name, PrivateKey.generate().public_key)
    with Client(server.url, ACME, log_key=str(other)) as pinned:
        with pytest.raises(SignatureError):
            pinned.verify_receipt(checkpointed.receipt)


def test_a_batch_is_atomic(owner: Client) -> None:
    existing = owner.sign_and_append(ALICE, "test.batch", "already logged")
    fresh = owner.api.build_span(ALICE, "test.batch", "would be logged")
    duplicate = owner.api.build_span(ALICE, "test.batch", "same id", span_id=existing.span_id)
    with pytest.raises(ApiConflict):
        owner.append_batch([fresh, duplicate])
    # Signed with a key that is not ALICE's: refused at admission, with the fresh span.
    forged = sign_body(PrivateKey.generate(), owner.api.build_span(ALICE, "test.batch", "x").body)
    with pytest.raises(ApiInvalidInput):
        owner.append_batch([fresh, forged])
    for span_id in (fresh.id, forged.id):
        with pytest.raises(ApiNotFound):
            owner.get_span(span_id)
    results = owner.append_batch([fresh, owner.api.build_span(ALICE, "test.batch", "second")])
    assert [r.seq for r in results] == [results[0].seq, results[0].seq + 1]


def test_query_pages_with_a_cursor(owner: Client) -> None:
    titles = [f"page item {i}" for i in range(5)]
    appended = owner.append_batch([owner.api.build_span(ALICE, "test.page", t) for t in titles])
    seen: list[str] = []
    cursor: str | None = None
    pages = 0
    while True:
        page = owner.query(kind="test.page", limit=2, cursor=cursor)
        seen += [item.span.body["title"] for item in page.items]
        pages += 1
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert seen == titles and pages in (3, 4)
    newest = owner.query(kind="test.page", order="desc", limit=2)
    assert [i.seq for i in newest.items] == [appended[4].seq, appended[3].seq]
    found = owner.query(text="item 3", kind="test.page")
    assert [i.span.id for i in found.items] == [appended[3].span_id]
    assert owner.query(kind="test.page", author="logline-id://person/nobody").items == ()


class LoseFirstAppend(httpx.HTTPTransport):
    """Delivers the first span append to the server, then loses its response."""

    def __init__(self) -> None:
        super().__init__()
        self.lost = 0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = super().handle_request(request)
        if self.lost == 0 and request.method == "POST" and request.url.path.endswith("/spans"):
            self.lost += 1
            response.read()
            response.close()
            raise httpx.ReadError("connection reset by the test", request=request)
        return response


def test_an_append_whose_response_was_lost_is_retried_and_resolved(
    owner: Client, server: RunningServer
) -> None:
    lossy = LoseFirstAppend()
    notices: list[RetryNotice] = []
    with Client(server.url, ACME, token=owner.api.access_token, transport=lossy,
                on_retry=notices.append) as client:  # fmt: skip
        span = client.api.build_span(ALICE, "test.lost", "logged once")
        appended = client.append(span, wait="checkpointed")
        assert lossy.lost == 1 and notices[0].reason.startswith("connection")
        assert appended.span_id == span.id
        client.verify_receipt(appended.receipt, span)
    assert len(owner.query(kind="test.lost").items) == 1


# --- the live stream ------------------------------------------------------------------------------


def test_a_subscription_receives_spans_written_after_it(owner: Client) -> None:
    lives: list[str] = []
    with owner.subscribe([ACME], kind="test.stream", control=True, on_live=lives.append) as sub:
        assert isinstance(next(sub), LiveEvent) and sub.live and lives
        appended = owner.sign_and_append(ALICE, "test.stream", "streamed")
        owner.sign_and_append(ALICE, "test.other", "filtered out")
        event = next(e for e in sub if isinstance(e, SpanEvent))
    assert (event.span.id, event.seq, event.tenant) == (appended.span_id, appended.seq, ACME)
    assert sub.cursor == f"{ACME}:{appended.seq + 1}"


@pytest.mark.anyio
async def test_the_async_client(server: RunningServer, admin: Client) -> None:
    bob = Signer.generate("logline-id://person/bob")
    async with AsyncClient(server.url, "beta", token=admin.api.access_token) as onboarding:
        await onboarding.onboard(bob.identity_span("beta"))
    async with AsyncClient(server.url, "beta") as client:
        await client.login_with_key(bob.identity, bob.key)
        with anyio.fail_after(30):
            async with client.subscribe(control=True) as sub:
                assert isinstance(await anext(sub), LiveEvent)
                appended = await client.sign_and_append(bob, "test.async", "hello",
                                                        wait="checkpointed")  # fmt: skip
                got: list[SpanEvent] = []
                async for event in sub:
                    if isinstance(event, SpanEvent):
                        got.append(event)
                        break
        assert [e.span.id for e in got] == [appended.span_id]
        await client.verify_receipt(appended.receipt, got[0].span)
        page = await client.query(kind="test.async")
        assert [i.span.id for i in page.items] == [appended.span_id]
        api_refresh = client.api.refresh_token
        assert (await client.refresh()).refresh_token != api_refresh


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_subscription_resumes_across_a_server_restart(backend: str, tmp_path: Path) -> None:
    home = tmp_path / "home"
    # A short grace: a stream that slips in during shutdown holds the server that long (see the
    # report on run.py); the subscription must resume either way.
    env = {**GENEROUS, "LOGLINE_SHUTDOWN_GRACE_S": "2"}
    with ExitStack() as stack:
        first, database_url = start(stack, backend, home, env)
        admin = stack.enter_context(Client(first.url))
        admin.login("admin", first.password)
        reader = stack.enter_context(Client(first.url, token=admin.api.access_token))
        patient = RetryPolicy(attempts=400, base_s=0.05, cap_s=0.25)
        sub = reader.subscribe(kind="test.restart", control=True, reconnect=patient)
        events: queue.Queue[Any] = queue.Queue()
        spans: list[SpanEvent] = []

        def consume(sub: Subscription) -> None:
            try:
                for event in sub:
                    events.put(event)
                    if isinstance(event, SpanEvent):
                        spans.append(event)
                        if len(spans) == 2:
                            break
            except Exception as exc:  # handed to the test thread
                events.put(exc)
            finally:
                sub.close()

        def wait_for(kind: type[Any]) -> Any:
            while True:
                event = events.get(timeout=60)
                assert not isinstance(event, Exception), event
                if isinstance(event, kind):
                    return event

        thread = threading.Thread(target=consume, args=(sub,), daemon=True)
        thread.start()
        wait_for(LiveEvent)
        a = admin.append_custodial("test.restart", "before the restart")
        assert wait_for(SpanEvent).span.id == a.span_id
        first.stop()
        assert wait_for(DroppedEvent).reason == "shutdown"

        second = start_server(home, database_url=database_url, env=env)
        stack.callback(lambda: second.stop() if second.process.poll() is None else None)
        admin.base_url = second.url
        b = admin.append_custodial("test.restart", "while the subscriber was away")
        reader.base_url = second.url  # the subscription's next reconnect goes there
        assert wait_for(SpanEvent).span.id == b.span_id
        thread.join(30)
        assert [e.span.id for e in spans] == [a.span_id, b.span_id]  # none lost, none twice
        assert sub.state.connections >= 2

        # A new client resumes from the saved cursor, too.
        c = admin.append_custodial("test.restart", "after the subscriber left")
        with Client(second.url, token=admin.api.access_token) as fresh:
            with fresh.subscribe(kind="test.restart", cursor=sub.cursor, control=True) as resumed:
                got = [e for e in _until_live(resumed) if isinstance(e, SpanEvent)]
        assert [e.span.id for e in got] == [c.span_id]


def _until_live(sub: Subscription) -> Iterator[Any]:
    for event in sub:
        yield event
        if isinstance(event, LiveEvent):
            return


def test_a_subscription_gives_up_with_its_cursor_when_the_server_stays_away(
    tmp_path: Path,
) -> None:
    with running_server(tmp_path / "home", env=GENEROUS) as server, Client(server.url) as client:
        client.login("admin", server.password)
        with client.subscribe(control=True, reconnect=RetryPolicy(3, 0.01, 0.02)) as sub:
            live = next(sub)
            assert isinstance(live, LiveEvent)
            server.stop()
            with pytest.raises(ConnectionFailed):
                for _ in sub:
                    pass
            assert sub.cursor == live.cursor


# --- retries on 429 -------------------------------------------------------------------------------


def test_rate_limited_requests_wait_and_retry(tmp_path: Path) -> None:
    limits = '{"write": "2/second", "auth": "6000/minute"}'
    with running_server(tmp_path / "home", env={"LOGLINE_RATE_LIMITS": limits}) as server:
        notices: list[RetryNotice] = []
        with Client(server.url, on_retry=notices.append) as client:
            client.login("admin", server.password)
            started = time.monotonic()
            seqs = [client.append_custodial("test.limited", f"write {i}").seq for i in range(6)]
            assert len(set(seqs)) == 6
            assert any(n.reason == "HTTP 429" and n.delay_s >= 1 for n in notices)
            assert time.monotonic() - started >= 1.0
        with Client(server.url, retry=NO_RETRY) as impatient:
            impatient.login("admin", server.password)
            with pytest.raises(ApiRateLimited) as caught:
                for i in range(5):
                    impatient.append_custodial("test.limited", f"burst {i}")
            assert caught.value.retry_after >= 1


# --- the onboarding wizard ------------------------------------------------------------------------


def _onboard_command() -> list[str]:
    """`logline onboard` once registered in the CLI; until then the module's own entry point."""
    from typer.main import get_command

    from logline.cli.main import app

    commands = getattr(get_command(app), "commands", {})
    if "onboard" in commands:
        return logline_command()
    return [sys.executable, "-m", "logline.cli.onboard"]


def wizard(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOGLINE_")}
    env |= {"LOGLINE_PASSPHRASE": PASSPHRASE, "COLUMNS": "250"}
    return subprocess.run([*_onboard_command(), "--home", str(home), "onboard", *args],
                          capture_output=True, text=True, env=env, timeout=120)  # fmt: skip


def test_the_onboard_wizard(server: RunningServer, admin: Client, tmp_path: Path) -> None:
    home = tmp_path / "carol-home"
    args = ["--server", server.url, "--tenant", "wizard", "--handle", "carol", "--name", "Carol"]
    token = ["--token", admin.api.access_token or ""]
    result = wizard(home, *args)
    assert result.returncode == 1 and result.stderr.splitlines()[-1].startswith("error: sign-up")
    result = wizard(home, *args, *token)
    assert result.returncode == 0, result.stderr
    for step in ("identity", "tenant", "membership", "token", "first span"):
        assert f"✓ {step}" in result.stdout, result.stdout
    carol = Signer.from_keystore(home / "keystore.json", "logline-id://person/carol", PASSPHRASE)
    with Client(server.url, "wizard") as client:
        client.login_with_key(carol.identity, carol.key)
        [first] = client.query(kind="onboarding.completed").items
        assert first.span.author == carol.identity
    again = wizard(home, *args, *token)
    assert again.returncode == 0 and "earlier run" in again.stdout, again.stderr
    taken = wizard(home, *args[:-4], "--handle", "dave", *token)
    assert taken.returncode == 1
    assert taken.stderr.splitlines() == ["error: tenant wizard already exists"], taken.stderr
