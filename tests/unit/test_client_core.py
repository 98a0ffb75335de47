"""The SDK's sans-IO core, driven by scripted responses: no server, no sockets.

Problems become typed errors, the retry policy decides waits, `Core.call` retries and refreshes,
appends resolve a retried 409, receipts verify (or do not) against the pinned key, the SSE parser
survives any chunking, and the stream resumes from its cursor.
"""

from __future__ import annotations

import base64
import doctest
import importlib
import json
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from logline.client.api import Api
from logline.client.core import RetryNotice
from logline.client.errors import (
    ApiConflict,
    ApiError,
    ApiInvalidInput,
    ApiInvalidSpan,
    ApiNotFound,
    ApiRateLimited,
    ApiServerError,
    ApiUnauthenticated,
    ApiUnknownAuthor,
    ConnectionFailed,
    error_for,
)
from logline.client.jobs import (
    Job,
    JobAttempt,
    JobPage,
    JobSpec,
    JobStats,
    JobStatsGroup,
    StatsPoint,
    Timing,
    WindowStats,
)
from logline.client.models import (
    ApiKeyCreated,
    Appended,
    Challenge,
    CheckpointInfo,
    EntryRange,
    IdentityInfo,
    LoggedSpan,
    LogInfo,
    Onboarded,
    Page,
    Proof,
    TokenSet,
    WhoAmI,
)
from logline.client.protocol import (
    Action,
    Close,
    Emit,
    Operation,
    Read,
    Reply,
    Request,
    Response,
    Sleep,
)
from logline.client.retry import RetryPolicy
from logline.client.signing import Signer
from logline.client.sse import (
    Cursor,
    DroppedEvent,
    HeartbeatEvent,
    LiveEvent,
    SpanEvent,
    SseParser,
    StreamEvent,
    envelope,
)
from logline.client.stream import StreamState, follow
from logline.engine.jobs import Attempt
from logline.engine.jobs import Job as EngineJob
from logline.errors import (
    Conflict,
    InvalidInput,
    NotFound,
    ParseError,
    RateLimited,
    SignatureError,
    Unauthenticated,
    VerificationError,
)
from logline.identity.keys import PrivateKey
from logline.ledger.checkpoint import Checkpoint, NoteSigner, sign_checkpoint
from logline.ledger.entry import Entry
from logline.ledger.merkle import node_hash
from logline.ledger.receipt import Receipt
from logline.ledger.span import Span
from logline.ledger.timefmt import now_ts

TENANT = "acme"
INSTANCE = "test.local"
PREFIX = "urn:logline:problem:"
ALICE = Signer.generate("logline-id://person/alice")
LOG_KEY = PrivateKey.generate()
SIGNER = NoteSigner(INSTANCE, LOG_KEY)


# --- scripted transport ---------------------------------------------------------------------------


def response(status: int, body: Any = None, **headers: str) -> Response:
    content = b"" if body is None else json.dumps(body).encode()
    return Response(status, {k.replace("_", "-"): v for k, v in headers.items()}, content)


def problem(status: int, slug: str, detail: str = "no", **extra: Any) -> Response:
    body = {"type": PREFIX + slug, "title": slug, "status": status, "detail": detail, **extra}
    return response(status, body, content_type="application/problem+json")


@dataclass
class Script:
    """Answers each Request or Read with the next reply; a ConnectionFailed is thrown instead.
    When the replies run out, the operation is closed (how a caller stops a subscription)."""

    replies: list[Reply | ConnectionFailed]
    actions: list[Action] = field(default_factory=list)
    events: list[StreamEvent] = field(default_factory=list)

    def run(self, op: Operation[Any]) -> Any:
        reply: Reply = None
        failed: ConnectionFailed | None = None
        while True:
            try:
                action = op.send(reply) if failed is None else op.throw(failed)
            except StopIteration as stop:
                return stop.value
            self.actions.append(action)
            reply, failed = None, None
            if isinstance(action, Emit):
                self.events.append(action.event)
            elif isinstance(action, Request | Read):
                if not self.replies:
                    op.close()
                    return None
                nxt = self.replies.pop(0)
                if isinstance(nxt, ConnectionFailed):
                    failed = nxt
                else:
                    reply = nxt

    def requests(self) -> list[Request]:
        return [a for a in self.actions if isinstance(a, Request)]

    def sleeps(self) -> list[float]:
        return [a.seconds for a in self.actions if isinstance(a, Sleep)]


def api(**kwargs: Any) -> Api:
    return Api(TENANT, rng=random.Random(0), **kwargs)


def entry_for(span: Span, seq: int) -> Entry:
    return Entry(seq, span.id, span.hash, str(ALICE.key.public_key), span.signature, now_ts())


def logged_json(span: Span, seq: int) -> dict[str, Any]:
    return {"seq": seq, "entry": entry_for(span, seq).to_json(), "span": span.to_json()}


def checkpointed(entries: list[Entry], index: int, signer: NoteSigner = SIGNER) -> Receipt:
    """A receipt for entry `index` of a two-entry tree, under a checkpoint `signer` signed."""
    leaves = [e.leaf_hash() for e in entries]
    assert len(leaves) == 2
    note = sign_checkpoint(Checkpoint(f"{INSTANCE}/{TENANT}", 2, node_hash(*leaves)), signer)
    return Receipt(f"{INSTANCE}/{TENANT}", entries[index], note, (leaves[1 - index],))


# --- module examples ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "module_name",
    ["logline.client.sse", "logline.client.retry", "logline.client.core", "logline.client.api",
     "logline.client.signing", "logline.client.jobs"],
)  # fmt: skip
def test_module_examples_run(module_name: str) -> None:
    result = doctest.testmod(importlib.import_module(module_name), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0


# --- problems -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "slug", "cls", "base"),
    [
        (404, "not-found", ApiNotFound, NotFound),
        (401, "unauthenticated", ApiUnauthenticated, Unauthenticated),
        (409, "conflict", ApiConflict, Conflict),
        (422, "validation-error", ApiInvalidInput, InvalidInput),
        (413, "payload-too-large", ApiInvalidInput, InvalidInput),
        (422, "unknown-author", ApiUnknownAuthor, NotFound),
        (429, "rate-limited", ApiRateLimited, RateLimited),
        (500, "server-error", ApiServerError, ApiError),
        (503, "storage-unavailable", ApiServerError, ApiError),
        (418, "teapot", ApiServerError, ApiError),
    ],
)
def test_problems_map_to_typed_errors_in_the_one_tree(
    status: int, slug: str, cls: type[ApiError], base: type[Exception]
) -> None:
    r = problem(status, slug, "what went wrong")
    error = error_for(r.status, r.headers, r.content)
    assert type(error) is cls and isinstance(error, base)
    assert (error.status, error.type, error.slug, str(error)) == (
        status, PREFIX + slug, slug, "what went wrong")  # fmt: skip


def test_invalid_span_keeps_its_field_and_rate_limits_their_wait() -> None:
    r = problem(422, "invalid-span", "too long", field="body.title")
    error = error_for(r.status, r.headers, r.content)
    assert isinstance(error, ApiInvalidSpan) and error.field == "body.title"
    r = problem(429, "rate-limited", retry_after=7)
    limited = error_for(r.status, {"retry-after": "3"}, r.content)
    assert isinstance(limited, ApiRateLimited) and limited.retry_after == 3
    limited = error_for(r.status, {}, r.content)
    assert isinstance(limited, ApiRateLimited) and limited.retry_after == 7


@pytest.mark.parametrize("body", [b"", b"<html>Bad   gateway</html>", b"[1, 2]", b"{bad json"])
def test_a_body_that_is_no_problem_still_gives_a_typed_error(body: bytes) -> None:
    error = error_for(502, {}, body)
    assert isinstance(error, ApiServerError) and error.status == 502
    assert "\n" not in str(error) and str(error)


MODELS = [TokenSet, Challenge, WhoAmI, Appended, LoggedSpan, Page, LogInfo, CheckpointInfo, Proof,
          EntryRange, IdentityInfo, Onboarded, ApiKeyCreated, Job, JobAttempt, JobPage, JobStats,
          JobStatsGroup, WindowStats, StatsPoint]  # fmt: skip


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.__name__)
@pytest.mark.parametrize(
    "data", [None, [], "x", {}, {"items": [{}], "size": True, "receipt": "x", "message": "%"}]
)
def test_models_refuse_nonsense_with_parse_error_only(model: Any, data: Any) -> None:
    with pytest.raises(ParseError):
        model.from_json(data)


def test_a_logged_span_must_match_its_entry() -> None:
    span, other = (ALICE.span(TENANT, "test.event", t) for t in ("a", "b"))
    assert LoggedSpan.from_json(logged_json(span, 3)).span == span
    mixed = logged_json(span, 3) | {"span": other.to_json()}
    with pytest.raises(ParseError):
        LoggedSpan.from_json(mixed)
    forged = logged_json(span, 3)
    forged["entry"]["span_hash"] = other.hash.hex()
    with pytest.raises(VerificationError):
        LoggedSpan.from_json(forged)


# --- the retry policy -----------------------------------------------------------------------------

POLICY = RetryPolicy(attempts=3, base_s=1.0, cap_s=4.0, max_retry_after_s=10)


@pytest.mark.parametrize(
    ("case", "kwargs", "low", "high"),
    [
        ("429 any request, Retry-After wins", dict(status=429, retry_after=3), 3.0, 3.0),
        ("429 backoff beats a small Retry-After", dict(attempt=1, status=429), 1.0, 2.0),
        ("429 Retry-After too long", dict(status=429, retry_after=11), None, None),
        ("503 idempotent", dict(status=503, idempotent=True), 0.5, 1.0),
        ("503 not idempotent", dict(status=503), None, None),
        ("502 from a proxy, idempotent", dict(status=502, idempotent=True), 0.5, 1.0),
        ("500 never", dict(status=500, idempotent=True), None, None),
        ("409 never", dict(status=409, idempotent=True), None, None),
        ("lost response, idempotent", dict(idempotent=True), 0.5, 1.0),
        ("lost response, not idempotent", dict(), None, None),
        ("never sent, not idempotent", dict(sent=False), 0.5, 1.0),
        ("backoff grows", dict(attempt=1, idempotent=True), 1.0, 2.0),
        ("attempts used up", dict(attempt=2, status=429), None, None),
    ],
)
def test_retry_policy_decides(
    case: str, kwargs: dict[str, Any], low: float | None, high: float | None
) -> None:
    args: dict[str, Any] = {"attempt": 0, "idempotent": False, **kwargs}
    for seed in range(20):
        delay = POLICY.decide(rng=random.Random(seed), **args)
        if low is None or high is None:
            assert delay is None, case
        else:
            assert delay is not None and low <= delay <= high, case


def test_backoff_is_capped() -> None:
    policy = RetryPolicy(attempts=100, base_s=1.0, cap_s=4.0)
    assert all(2.0 <= policy.backoff(n, random.Random(n)) <= 4.0 for n in range(3, 99))


# --- Core.call: retries and refresh ---------------------------------------------------------------


def test_429_is_retried_after_retry_after_and_reported() -> None:
    notices: list[RetryNotice] = []
    core = api(token="t1", on_retry=notices.append)
    script = Script([problem(429, "rate-limited", retry_after=2), response(200, {"ok": 1})])
    result = script.run(core.call(Request("POST", "/v1/x")))
    assert result.status == 200 and result.attempts == 2
    assert script.sleeps() == [2.0]
    assert notices == [RetryNotice("POST", "/v1/x", 1, 2.0, "HTTP 429")]
    assert all(r.headers["Authorization"] == "Bearer t1" for r in script.requests())


def test_retries_stop_when_the_policy_gives_up() -> None:
    core = api(retry=RetryPolicy(attempts=2, base_s=0.01))
    script = Script([problem(429, "rate-limited"), problem(429, "rate-limited", retry_after=1)])
    with pytest.raises(ApiRateLimited) as caught:
        script.run(core.whoami())
    assert caught.value.retry_after == 1 and len(script.requests()) == 2


def test_503_and_lost_responses_are_retried_only_when_idempotent() -> None:
    lost = ConnectionFailed("reset", sent=True)
    script = Script([problem(503, "storage-unavailable"), lost, response(200, {"ok": 1})])
    assert script.run(api().call(Request("GET", "/v1/x", idempotent=True))).attempts == 3
    for reply in (problem(503, "storage-unavailable"), lost):
        script = Script([reply, response(200, {})])
        with pytest.raises((ApiServerError, ConnectionFailed)):
            script.run(api().call_json(Request("POST", "/v1/x")))
        assert len(script.requests()) == 1
    refused = ConnectionFailed("refused", sent=False)
    script = Script([refused, response(200, {})])
    assert script.run(api().call(Request("POST", "/v1/x"))).attempts == 2


def tokens(n: int) -> dict[str, Any]:
    return {"access_token": f"a{n}", "refresh_token": f"r{n}", "expires_in": 900,
            "identity": ALICE.identity, "tenants": [TENANT]}  # fmt: skip


def test_a_401_refreshes_once_and_retries_with_the_new_token() -> None:
    core = api(token="a1", refresh_token="r1")
    script = Script([problem(401, "unauthenticated"), response(200, tokens(2)),
                     response(200, {"ok": 1})])  # fmt: skip
    assert script.run(core.call_json(Request("GET", "/v1/x"))) == {"ok": 1}
    first, refresh, retried = script.requests()
    assert first.headers["Authorization"] == "Bearer a1"
    assert refresh.path == "/v1/auth/refresh" and "Authorization" not in refresh.headers
    assert refresh.json == {"refresh_token": "r1"}
    assert retried.headers["Authorization"] == "Bearer a2"
    assert (core.access_token, core.refresh_token, core.principal) == ("a2", "r2", ALICE.identity)
    script = Script([problem(401, "unauthenticated"), response(200, tokens(3)),
                     problem(401, "unauthenticated", "still no")])  # fmt: skip
    with pytest.raises(ApiUnauthenticated, match="still no"):
        script.run(core.call_json(Request("GET", "/v1/x")))
    assert len(script.requests()) == 3


def test_a_rejected_refresh_token_ends_the_session() -> None:
    core = api(token="a1", refresh_token="r1")
    script = Script([problem(401, "unauthenticated"), problem(401, "unauthenticated", "reused")])
    with pytest.raises(ApiUnauthenticated, match="reused"):
        script.run(core.whoami())
    assert core.access_token is None and core.refresh_token is None
    with pytest.raises(ApiUnauthenticated):
        Script([]).run(core.refresh())


def test_api_keys_are_not_refreshed() -> None:
    core = api(api_key="llk_a_b", refresh_token="r1")
    script = Script([problem(401, "unauthenticated")])
    with pytest.raises(ApiUnauthenticated):
        script.run(core.whoami())
    assert [r.headers["Authorization"] for r in script.requests()] == ["Bearer llk_a_b"]


def test_key_login_signs_the_challenge_message() -> None:
    core = api()
    message = b"logline/login/v1\x00challenge"
    challenge = {"nonce": "n1", "message": "bG9nbGluZS9sb2dpbi92MQBjaGFsbGVuZ2U=",
                 "expires_at": now_ts()}  # fmt: skip
    script = Script([response(200, challenge), response(200, tokens(1))])
    assert script.run(core.login_with_key(ALICE.identity, ALICE.key)).access_token == "a1"
    _, login = script.requests()
    assert login.json["nonce"] == "n1"
    ALICE.key.public_key.verify(base64.b64decode(login.json["signature"]), message)


# --- appends --------------------------------------------------------------------------------------


def test_a_retried_append_that_meets_409_returns_the_logged_span_receipt() -> None:
    span = ALICE.span(TENANT, "test.event", "once")
    lost = ConnectionFailed("read timeout", sent=True)
    script = Script([lost, problem(409, "conflict", "already in the log"),
                     response(200, logged_json(span, 5))])  # fmt: skip
    appended = script.run(api(log_key=SIGNER.verifier()).append(span))
    assert (appended.span_id, appended.seq, appended.status) == (span.id, 5, "sequenced")
    assert appended.receipt.origin == f"{INSTANCE}/{TENANT}"
    assert [r.method for r in script.requests()] == ["POST", "POST", "GET"]

    other = ALICE.span(TENANT, "test.event", "another span, same id", span_id=span.id)
    script = Script([lost, problem(409, "conflict"), response(200, logged_json(other, 5))])
    with pytest.raises(ApiConflict):
        script.run(api(log_key=SIGNER.verifier()).append(span))


def test_a_first_try_409_is_a_conflict_and_a_checkpointed_retry_fetches_the_receipt() -> None:
    span = ALICE.span(TENANT, "test.event", "once")
    with pytest.raises(ApiConflict):
        Script([problem(409, "conflict")]).run(api().append(span))
    e0, e1 = entry_for(ALICE.span(TENANT, "test.event", "before"), 0), entry_for(span, 1)
    receipt = checkpointed([e0, e1], 1)
    script = Script(
        [
            ConnectionFailed("x", sent=True),
            problem(409, "conflict"),
            response(200, logged_json(span, 1)),
            response(200, receipt.to_json()),
        ]
    )
    appended = script.run(api().append_batch([span], "checkpointed"))[0]  # fmt: skip
    assert appended.status == "checkpointed" and appended.receipt == receipt


def test_an_append_receipt_for_another_span_is_refused() -> None:
    span, other = (ALICE.span(TENANT, "test.event", t) for t in ("mine", "other"))
    receipt = Receipt(f"{INSTANCE}/{TENANT}", entry_for(other, 0))
    body = {"span_id": other.id, "seq": 0, "status": "sequenced", "receipt": receipt.to_json()}
    with pytest.raises(VerificationError):
        Script([response(201, body)]).run(api().append(span))


# --- receipts -------------------------------------------------------------------------------------


def log_info(key: NoteSigner = SIGNER) -> Response:
    return response(200, {"tenant": TENANT, "origin": f"{INSTANCE}/{TENANT}", "size": 2,
                          "key": str(key.verifier()), "checkpoint": None})  # fmt: skip


def test_receipts_verify_against_the_key_trusted_on_first_use() -> None:
    spans = [ALICE.span(TENANT, "test.event", t) for t in ("a", "b")]
    entries = [entry_for(s, i) for i, s in enumerate(spans)]
    receipt = checkpointed(entries, 1)
    core = api()
    script = Script([log_info()])
    assert script.run(core.verify_receipt(receipt, spans[1])).size == 2
    assert core.log_key == SIGNER.verifier()
    assert Script([]).run(core.verify_receipt(checkpointed(entries, 0), spans[0])).size == 2
    with pytest.raises(VerificationError):  # the receipt is not for this span
        Script([]).run(core.verify_receipt(receipt, spans[0]))
    rogue = checkpointed(entries, 1, NoteSigner(INSTANCE, PrivateKey.generate()))
    with pytest.raises(SignatureError):
        Script([]).run(core.verify_receipt(rogue))
    with pytest.raises(VerificationError, match="log key"):  # a server that changed its key
        Script([log_info(NoteSigner(INSTANCE, PrivateKey.generate()))]).run(core.log_info())


@pytest.mark.parametrize(
    "tamper",
    [
        lambda r: {**r, "origin": "test.local/other"},
        lambda r: {**r, "entry": {**r["entry"], "seq": 0}},
        lambda r: {**r, "entry": {**r["entry"], "received": now_ts()}},
        lambda r: {**r, "inclusion": [r["inclusion"][0][:-4] + "AAA="]},
        lambda r: {**r, "checkpoint": r["checkpoint"].replace("\n2\n", "\n3\n")},
    ],
    ids=["origin", "seq", "received", "proof", "size"],
)
def test_a_tampered_receipt_fails(tamper: Callable[[dict[str, Any]], dict[str, Any]]) -> None:
    spans = [ALICE.span(TENANT, "test.event", t) for t in ("a", "b")]
    receipt = checkpointed([entry_for(s, i) for i, s in enumerate(spans)], 1)
    bad = Receipt.from_json(tamper(receipt.to_json()))
    with pytest.raises(VerificationError):
        Script([]).run(api(log_key=str(SIGNER.verifier())).verify_receipt(bad))


def test_a_sequenced_receipt_is_upgraded_to_the_same_entry_checkpointed() -> None:
    spans = [ALICE.span(TENANT, "test.event", t) for t in ("a", "b")]
    entries = [entry_for(s, i) for i, s in enumerate(spans)]
    core = api(log_key=SIGNER.verifier())
    sequenced = Receipt(f"{INSTANCE}/{TENANT}", entries[1])
    script = Script([response(200, checkpointed(entries, 1).to_json())])
    assert script.run(core.verify_receipt(sequenced, spans[1])).size == 2
    swapped = Receipt(f"{INSTANCE}/{TENANT}", entries[0])
    with pytest.raises(VerificationError, match="receipt entry"):
        Script([response(200, checkpointed(entries, 1).to_json())]).run(
            core.verify_receipt(swapped)
        )


# --- SSE parsing ----------------------------------------------------------------------------------

STREAM = (
    "\ufeff: a comment\r\n"
    'id: acme:1\r\nevent: span\r\ndata: {"a":\r\ndata: 1}\r\n\r\n'
    "retry: 500\nevent: heartbeat\ndata:x\n\n"
    "event: nodata\n\n"
    "id: acme:2\rdata: caf\u00e9 \u2014 ok\r\r"
    "data: no event name\n\n"
    "data: unfinished"
).encode()
EXPECTED = [
    ("span", '{"a":\n1}', "acme:1", None),
    ("heartbeat", "x", None, 500),
    ("message", "caf\u00e9 \u2014 ok", "acme:2", None),
    ("message", "no event name", None, None),
]


def test_sse_parsing_follows_the_event_stream_rules() -> None:
    events = SseParser().feed(STREAM)
    assert [(e.event, e.data, e.id, e.retry_ms) for e in events] == EXPECTED


def test_sse_parsing_does_not_depend_on_chunk_boundaries() -> None:
    failures = []
    for size in range(1, 12):
        parser = SseParser()
        events = []
        for start in range(0, len(STREAM), size):
            events += parser.feed(STREAM[start : start + size])
        if [(e.event, e.data, e.id, e.retry_ms) for e in events] != EXPECTED:
            failures.append(size)
    for split in range(len(STREAM)):
        parser = SseParser()
        events = parser.feed(STREAM[:split]) + parser.feed(STREAM[split:])
        if [(e.event, e.data, e.id, e.retry_ms) for e in events] != EXPECTED:
            failures.append(-split)
    assert failures == []


def span_message(span: Span, seq: int) -> str:
    return json.dumps({"v": 1, "type": "span", "tenant": TENANT, **logged_json(span, seq)})


def sse(event: str, data: str, cursor: str | None = None) -> bytes:
    head = "" if cursor is None else f"id: {cursor}\n"
    return f"{head}event: {event}\ndata: {data}\n\n".encode()


def test_envelopes_parse_and_refuse_nonsense() -> None:
    span = ALICE.span(TENANT, "test.event", "streamed")
    event = envelope(span_message(span, 4))
    assert isinstance(event, SpanEvent) and (event.seq, event.span.id) == (4, span.id)
    assert envelope('{"v":1,"type":"heartbeat","time":"t"}') == HeartbeatEvent("t")
    dropped = '{"v":1,"type":"dropped","reason":"shutdown","detail":"bye","cursor":"acme:3"}'
    assert envelope(dropped) == DroppedEvent("shutdown", "bye", "acme:3")
    assert envelope('{"v":1,"type":"from-the-future"}') is None
    wrong = json.loads(span_message(span, 4)) | {"seq": 5}
    for bad in ('{"v":2,"type":"live","cursor":""}', "[]", "{", json.dumps(wrong)):
        with pytest.raises(ParseError):
            envelope(bad)


def test_cursor_tracking() -> None:
    cursor = Cursor.parse("acme:3, beta:7")
    cursor.advance("acme", 2)  # older: no change
    cursor.advance("acme", 9)
    cursor.merge(Cursor.parse("beta:5,gamma:1"))
    assert str(cursor) == "acme:10,beta:7,gamma:1"
    assert not Cursor.parse("") and str(Cursor()) == ""
    for bad in ("acme", "acme:x", "ACME:1", "acme:-1"):
        with pytest.raises(ParseError):
            Cursor.parse(bad)


def test_stream_state_tracks_cursor_and_live() -> None:
    lives: list[str] = []
    state = StreamState([TENANT], kind="test.*", cursor="acme:4", on_live=lives.append)
    assert dict(state.request().params) == {"tenant": TENANT, "kind": "test.*", "from": "acme:4"}
    assert str(StreamState([TENANT], cursor="7").cursor) == "acme:7"
    state.opened()
    span = ALICE.span(TENANT, "test.event", "e")
    data = sse("span", span_message(span, 4), "acme:5") + sse(
        "live", '{"v":1,"type":"live","cursor":"acme:9"}', "acme:9"
    )
    events = state.feed(data[:40]) + state.feed(data[40:])  # fmt: skip
    assert [type(e) for e in events] == [SpanEvent, LiveEvent]
    assert state.live and lives == ["acme:9"] and str(state.cursor) == "acme:9"
    state.feed(sse("span", span_message(ALICE.span(TENANT, "test.event", "f"), 9)))
    assert str(state.cursor) == "acme:10"  # no SSE id: the span itself advances it


# --- following the stream -------------------------------------------------------------------------


def test_the_stream_reconnects_from_its_cursor_after_a_drop_and_a_break() -> None:
    spans = [ALICE.span(TENANT, "test.event", t) for t in ("a", "b", "c")]
    live = '{"v":1,"type":"live","cursor":"acme:1"}'
    dropped = '{"v":1,"type":"dropped","reason":"shutdown","detail":"","cursor":"acme:2"}'
    ok = response(200)
    script = Script([
        ok, sse("live", live, "acme:1"), sse("span", span_message(spans[0], 1), "acme:2"),
        sse("dropped", dropped, "acme:2"), b"",               # the server shuts down...
        ConnectionFailed("refused", sent=False), ok,          # ...and is back
        sse("span", span_message(spans[1], 2), "acme:3"),
        ConnectionFailed("reset", sent=True),                 # the connection breaks
        ok, sse("span", span_message(spans[2], 3), "acme:4"),
    ])  # fmt: skip
    state = StreamState([TENANT])
    script.run(follow(api(token="t"), state))
    assert [e.span.id for e in script.events if isinstance(e, SpanEvent)] == [s.id for s in spans]
    assert [dict(r.params).get("from") for r in script.requests()] == [
        None, "acme:2", "acme:2", "acme:3"]  # fmt: skip
    assert sum(isinstance(a, Close) for a in script.actions) == 2
    assert script.sleeps()[0] >= 1.0  # after `dropped: shutdown`, give the server time to go
    assert str(state.cursor) == "acme:4" and state.connections == 3


def test_control_events_are_emitted_on_request() -> None:
    live = sse("live", '{"v":1,"type":"live","cursor":"acme:0"}')
    beat = sse("heartbeat", '{"v":1,"type":"heartbeat","time":"t"}')
    script = Script([response(200), live + beat])
    script.run(follow(api(), StreamState(control=True)))
    assert script.events == [LiveEvent("acme:0"), HeartbeatEvent("t")]
    script = Script([response(200), live + beat])
    script.run(follow(api(), StreamState()))
    assert script.events == []


def test_a_stream_that_keeps_closing_empty_gives_up_and_errors_are_raised() -> None:
    state = StreamState(reconnect=RetryPolicy(attempts=3, base_s=0.01))
    script = Script([response(200), b"", response(200), b"", response(200), b""])
    with pytest.raises(ConnectionFailed, match="3 times"):
        script.run(follow(api(), state))
    with pytest.raises(ApiNotFound):
        Script([problem(404, "not-found")]).run(follow(api(), StreamState()))


# --- jobs -----------------------------------------------------------------------------------------

JOB_ID = "01890000-0000-7000-8000-000000000001"


def first_request(op: Operation[Any]) -> Request:
    """The request an operation starts with (its checks of the arguments run first)."""
    action = next(op)
    op.close()
    assert isinstance(action, Request)
    return action


def job_json(**changes: Any) -> dict[str, Any]:
    """A job as the server's own `Job.to_json` writes it (one attempt, failed), with `changes`."""
    at = now_ts()
    job = EngineJob(
        id=JOB_ID, tenant=TENANT, type="report.render", queue="default", state="retrying",
        priority=1, run_at=at, payload={"month": "2026-10"}, tags=("monthly",), dedupe_key="r-10",
        max_attempts=3, attempts=1, backoff_base_s=1.0, backoff_cap_s=300, timeout_s=60.0,
        node=None, lease_expires=None, cancel_requested=False, result=None, error="boom",
        created_at=at, updated_at=at, finished_at=None, span_id=JOB_ID, attempt_budget=3,
        history=(Attempt(JOB_ID, 1, "logline-id://node/n1", at, at, "failed", "boom"),),
    )  # fmt: skip
    return {**job.to_json(), **changes}


def test_a_job_parses_from_what_the_server_writes() -> None:
    job = Job.from_json(job_json())
    assert (job.id, job.state, job.priority, job.tags, job.deduplicated) == (
        JOB_ID, "retrying", "high", ("monthly",), False)  # fmt: skip
    assert job.payload == {"month": "2026-10"} and job.backoff_cap_s == 300.0
    [attempt] = job.history
    assert (attempt.attempt, attempt.outcome, attempt.error) == (1, "failed", "boom")
    assert Job.from_json(job_json(deduplicated=True, history=[])).deduplicated
    no_id = {k: v for k, v in job_json().items() if k != "id"}
    for broken in (job_json(attempts="1"), job_json(timeout_s=True), job_json(history=[{}]),
                   job_json(tags="monthly"), no_id):  # fmt: skip
        with pytest.raises(ParseError):
            Job.from_json(broken)


def test_submit_job_sends_only_the_options_given() -> None:
    run_at = datetime(2026, 10, 1, 9, 30, tzinfo=timezone(timedelta(hours=2)))
    script = Script([response(201, job_json())])
    op = api().submit_job("report.render", {"month": "2026-10"}, priority="high", run_at=run_at,
                          tags=["monthly"])  # fmt: skip
    job = script.run(op)
    [request] = script.requests()
    assert (request.method, request.path, request.idempotent) == (
        "POST", f"/v1/tenants/{TENANT}/jobs", False)  # fmt: skip
    assert request.json == {"type": "report.render", "payload": {"month": "2026-10"},
                            "priority": "high", "run_at": "2026-10-01T09:30:00+02:00",
                            "tags": ["monthly"]}  # fmt: skip
    assert isinstance(job, Job) and job.id == JOB_ID
    with pytest.raises(InvalidInput, match="time zone"):
        first_request(api().submit_job("report.render", run_at=datetime(2026, 10, 1)))
    with pytest.raises(InvalidInput, match="list of strings"):
        first_request(api().submit_job("report.render", tags="monthly"))


def test_only_a_submission_with_a_dedupe_key_is_retried_after_a_lost_response() -> None:
    lost = ConnectionFailed("read timeout", sent=True)
    script = Script([lost, response(200, job_json(deduplicated=True))])
    job = script.run(api().submit_job("report.render", dedupe_key="r-10"))
    assert job.deduplicated and len(script.requests()) == 2
    assert script.requests()[0].json == {"type": "report.render", "payload": None,
                                         "dedupe_key": "r-10"}  # fmt: skip
    script = Script([lost, response(201, job_json())])
    with pytest.raises(ConnectionFailed):
        script.run(api().submit_job("report.render"))
    assert len(script.requests()) == 1


def test_a_batch_takes_specs_and_mappings() -> None:
    specs: list[JobSpec | dict[str, Any]] = [
        JobSpec("report.render", {"month": "2026-09"}, dedupe_key="r-09"),
        {"type": "report.render", "payload": {"month": "2026-10"}, "dedupe_key": "r-10"},
    ]
    script = Script([response(201, [job_json(), job_json(deduplicated=True)])])
    jobs = script.run(api().submit_jobs(specs))
    assert [j.deduplicated for j in jobs] == [False, True]
    [request] = script.requests()
    assert request.path == f"/v1/tenants/{TENANT}/jobs/batch" and request.idempotent
    assert [j["payload"] for j in request.json["jobs"]] == [
        {"month": "2026-09"},
        {"month": "2026-10"},
    ]
    assert not first_request(api().submit_jobs([specs[0], JobSpec("report.render")])).idempotent
    with pytest.raises(InvalidInput, match="not a job spec"):
        first_request(api().submit_jobs([{"type": "report.render", "colour": "red"}]))
    with pytest.raises(ParseError):
        Script([response(201, job_json())]).run(api().submit_jobs(specs))


def test_job_reads_build_their_queries_and_parse_pages() -> None:
    page = {"jobs": [job_json(), job_json(id="j0")], "next_before": "j0"}
    script = Script([response(200, page), response(200, job_json()), response(200, page)])
    core = api()
    got = script.run(core.jobs(["queued", "retrying"], "report.render", limit=2, before="j9"))
    assert [j.id for j in got.jobs] == [JOB_ID, "j0"] and got.next_before == "j0"
    assert script.run(core.get_job("a/b")).history[0].node == "logline-id://node/n1"
    script.run(core.dead_letters(queue="reports"))
    listed, one, dead = script.requests()
    assert listed.params == (("state", "queued"), ("state", "retrying"), ("type", "report.render"),
                             ("limit", "2"), ("before", "j9"))  # fmt: skip
    assert one.path == f"/v1/tenants/{TENANT}/jobs/a%2Fb" and one.idempotent
    assert (dead.path, dead.params) == (
        f"/v1/tenants/{TENANT}/dead-letters",
        (("queue", "reports"),),
    )
    assert first_request(core.jobs("running")).params == (("state", "running"),)
    assert JobPage.from_json({"jobs": [], "next_before": None}) == JobPage((), None)


def test_job_actions_and_their_problems() -> None:
    core = api()
    script = Script([response(200, job_json(state="cancelled")), response(200, job_json())])
    assert script.run(core.cancel_job(JOB_ID)).state == "cancelled"
    script.run(core.retry_job(JOB_ID))
    assert [(r.method, r.path.rsplit("/", 2)[1:], r.idempotent) for r in script.requests()] == [
        ("POST", [JOB_ID, "cancel"], False), ("POST", [JOB_ID, "retry"], False)]  # fmt: skip
    with pytest.raises(ApiConflict, match="cannot be cancelled"):
        Script([problem(409, "conflict", "job x is succeeded; it cannot be cancelled")]).run(
            core.cancel_job(JOB_ID))  # fmt: skip
    with pytest.raises(ApiNotFound):
        Script([problem(404, "not-found", "no job")]).run(core.retry_job(JOB_ID))
    schema_says = "payload does not match the schema of report.render at month: 'x' is not valid"
    with pytest.raises(ApiInvalidInput, match="does not match the schema") as caught:
        Script([problem(400, "invalid-input", schema_says)]).run(core.submit_job("report.render"))
    assert caught.value.slug == "invalid-input" and str(caught.value) == schema_says


def test_dead_letters_requeue_and_purge_and_job_types() -> None:
    core = api()
    script = Script([response(200, {"jobs": [job_json(state="queued")], "next_before": None}),
                     response(200, ["j1", "j2"]), response(204)])  # fmt: skip
    assert [j.state for j in script.run(core.requeue_dead_letters(ids=["j1"]))] == ["queued"]
    assert script.run(core.purge_dead_letters("report.render", "reports")) == ["j1", "j2"]
    schema = {"type": "object", "required": ["month"]}
    assert script.run(core.register_job_type("report.render", schema)) is None
    requeue, purge, register = script.requests()
    assert requeue.path == f"/v1/tenants/{TENANT}/dead-letters/requeue"
    assert requeue.json == {"type": None, "queue": None, "ids": ["j1"]}
    assert purge.json == {"type": "report.render", "queue": "reports", "ids": []}
    assert not (requeue.idempotent or purge.idempotent)
    assert (register.method, register.path) == (
        "PUT",
        f"/v1/tenants/{TENANT}/job-types/report.render",
    )
    assert register.json == {"schema": schema} and register.idempotent
    with pytest.raises(ParseError):
        Script([response(200, [1])]).run(core.purge_dead_letters())


def window_json(submitted: int = 0, seconds: float = 60.0) -> dict[str, Any]:
    timing = {"mean": None, "p50": None, "p90": None, "p99": None}
    return {"submitted": submitted, "started": 0, "succeeded": 0, "failed": 0, "dead": 0,
            "cancelled": 0, "seconds": seconds, "throughput_per_s": 0.0, "failure_rate": None,
            "wait_ms": timing, "run_ms": {**timing, "mean": 12.5, "p50": 11}}  # fmt: skip


def group_json(**more: Any) -> dict[str, Any]:
    states = {"queued": 2, "running": 0, "retrying": 0, "dead": 0, "failed": 0, "succeeded": 0,
              "cancelled": 0}  # fmt: skip
    totals = {"submitted": 2, "started": 0, "succeeded": 0, "failed": 0, "dead": 0, "cancelled": 0}
    return {"states": states, "queue_depth": 2, "oldest_ready_age_s": 1.5, "totals": totals,
            "windows": {"5m": window_json(2, 272.5)}, **more}  # fmt: skip


def test_job_stats_queries_and_parsing() -> None:
    summary = {"tenant": TENANT, "at": now_ts(), "windows": ["5m"], "total": group_json(),
               "groups": [group_json(type="report.render", queue="default")]}  # fmt: skip
    series = [{"minute": "2026-10-01T09:30", **window_json(2)}]
    script = Script([response(200, summary), response(200, series)])
    stats = script.run(api().job_stats(["5m", "1h"], queue="default"))
    points = script.run(api().job_stats_series(30, "report.render"))
    got, by_minute = script.requests()
    assert (got.path, got.params) == (f"/v1/tenants/{TENANT}/stats",
        (("window", "5m"), ("window", "1h"), ("queue", "default")))  # fmt: skip
    assert (by_minute.path, by_minute.params) == (f"/v1/tenants/{TENANT}/stats/series",
        (("minutes", "30"), ("type", "report.render")))  # fmt: skip
    assert (stats.total.type, stats.total.totals["submitted"], stats.total.queue_depth) == (
        None, 2, 2)  # fmt: skip
    window = stats.total.windows["5m"]
    assert (window.counts["submitted"], window.seconds, window.failure_rate) == (2, 272.5, None)
    assert window.run_ms == Timing(12.5, 11.0, None, None) and window.wait_ms.mean is None
    group = stats.group("report.render", "default")
    assert group is not None and group.states["queued"] == 2
    assert [(p.minute, p.stats.counts["submitted"]) for p in points] == [("2026-10-01T09:30", 2)]
    assert first_request(api().job_stats()).params == ()
    bad_states: dict[str, Any] = {**group_json(), "states": {"queued": "2"}}
    bad_window: dict[str, Any] = {**group_json(), "windows": {"5m": {}}}
    for broken in ({**summary, "total": bad_states}, {**summary, "groups": [bad_window]}):
        with pytest.raises(ParseError):
            JobStats.from_json(broken)
    with pytest.raises(ParseError):
        Script([response(200, {"minute": "x"})]).run(api().job_stats_series())
