"""`Client`: the SDK over `httpx.Client`, blocking. Every method runs an `Api` operation.

    with Client("http://127.0.0.1:8470", tenant="acme") as client:
        client.login("admin", password)
        appended = client.sign_and_append(signer, "payment.approved", "Approve invoice 42",
                                          {"amount": 42}, wait="checkpointed")
        client.verify_receipt(appended.receipt)           # against the pinned log key
        with client.subscribe(control=True) as events:
            for event in events:                          # SpanEvent, LiveEvent, ...
                ...

The methods mirror `AsyncClient` one for one; their docstrings are on `Api`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Generator, Iterator, Mapping, Sequence
from random import Random
from types import TracebackType
from typing import Any, TypeVar, Unpack

import httpx

from logline.client import transport as wire
from logline.client.api import Api, QueryFilters
from logline.client.core import RetryNotice
from logline.client.errors import ConnectionFailed
from logline.client.jobs import Job, JobOptions, JobPage, JobSpec, JobStats, StatsPoint
from logline.client.models import (
    ApiKeyCreated,
    Appended,
    CheckpointInfo,
    EntryRange,
    IdentityInfo,
    LoggedSpan,
    LogInfo,
    Onboarded,
    Page,
    Proof,
    TokenSet,
    Wait,
    WhoAmI,
)
from logline.client.protocol import Close, Emit, Operation, Read, Reply, Request, Sleep, capture
from logline.client.retry import RetryPolicy
from logline.client.rules import DryRun, RuleSetInfo, RuleState, RulesTest
from logline.client.signing import Signer
from logline.client.sse import Cursor, StreamEvent
from logline.client.stream import DEFAULT_READ_TIMEOUT_S, DEFAULT_RECONNECT, StreamState, follow
from logline.identity.ids import check_tenant
from logline.identity.keys import PrivateKey
from logline.ledger.checkpoint import Checkpoint, NoteVerifier
from logline.ledger.receipt import Receipt
from logline.ledger.span import Span

T = TypeVar("T")


class _Held:
    """The streaming response an operation holds open, if any."""

    def __init__(self) -> None:
        self.response: httpx.Response | None = None
        self.chunks: Iterator[bytes] | None = None

    def hold(self, response: httpx.Response) -> None:
        self.close()
        self.response, self.chunks = response, response.iter_bytes()

    def read(self) -> bytes:
        return b"" if self.chunks is None else next(self.chunks, b"")

    def close(self) -> None:
        if self.response is not None:
            self.response.close()
        self.response = self.chunks = None


class Subscription:
    """Iterate for stream events; resumes by itself. `cursor` is where it would resume."""

    def __init__(self, events: Generator[StreamEvent, None, None], state: StreamState) -> None:
        self._events = events
        self.state = state

    @property
    def cursor(self) -> str:
        return str(self.state.cursor)

    @property
    def live(self) -> bool:
        """True once caught up on the current connection."""
        return self.state.live

    def __iter__(self) -> Subscription:
        return self

    def __next__(self) -> StreamEvent:
        return next(self._events)

    def close(self) -> None:
        self._events.close()

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Client:
    """A blocking LogLine client for one tenant (`tenant` may be changed between calls)."""

    def __init__(
        self,
        base_url: str,
        tenant: str = "default",
        *,
        token: str | None = None,
        refresh_token: str | None = None,
        api_key: str | None = None,
        log_key: NoteVerifier | str | None = None,
        retry: RetryPolicy | None = None,
        on_retry: Callable[[RetryNotice], None] | None = None,
        timeout_s: float = 30.0,
        transport: httpx.BaseTransport | None = None,
        rng: Random | None = None,
    ) -> None:
        self.api = Api(tenant, token=token, refresh_token=refresh_token, api_key=api_key,
                       log_key=log_key, retry=retry, on_retry=on_retry, rng=rng)  # fmt: skip
        self._http = httpx.Client(
            base_url=base_url,
            timeout=timeout_s,
            transport=transport,
            headers={"User-Agent": wire.USER_AGENT},
        )

    signer_from_keystore = staticmethod(Signer.from_keystore)

    @property
    def base_url(self) -> str:
        return str(self._http.base_url)

    @base_url.setter
    def base_url(self, url: str) -> None:
        """Point the client (and its subscriptions, at their next reconnect) elsewhere."""
        self._http.base_url = httpx.URL(url)

    @property
    def tenant(self) -> str:
        return self.api.tenant

    @tenant.setter
    def tenant(self, tenant: str) -> None:
        self.api.tenant = check_tenant(tenant)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # --- running operations -----------------------------------------------------------------------

    def _run(self, op: Operation[T]) -> T:
        result: list[T] = []
        for _ in self._iterate(capture(op, result)):
            raise RuntimeError("an operation emitted stream events outside a subscription")
        return result[0]

    def _iterate(self, op: Operation[None]) -> Generator[StreamEvent, None, None]:
        held = _Held()
        reply: Reply = None
        failed: ConnectionFailed | None = None
        try:
            while True:
                try:
                    action = op.send(reply) if failed is None else op.throw(failed)
                except StopIteration:
                    return
                reply, failed = None, None
                if isinstance(action, Emit):
                    yield action.event
                    continue
                try:
                    reply = self._perform(action, held)
                except httpx.HTTPError as exc:
                    failed = wire.failure(exc)
        finally:
            held.close()
            op.close()

    def _perform(self, action: Request | Sleep | Read | Close, held: _Held) -> Reply:
        if isinstance(action, Sleep):
            time.sleep(action.seconds)
            return None
        if isinstance(action, Read):
            return held.read()
        if isinstance(action, Close):
            held.close()
            return None
        response = self._http.send(wire.build(self._http, action), stream=action.stream)
        if not action.stream:
            return wire.response_of(response)
        if response.is_success:
            held.hold(response)
            return wire.response_of(response, b"")
        try:
            response.read()
        finally:
            response.close()
        return wire.response_of(response)

    # --- auth -------------------------------------------------------------------------------------

    def login(self, username: str, password: str, tenants: Sequence[str] | None = None) -> TokenSet:
        return self._run(self.api.login(username, password, tenants))

    def login_with_key(
        self, identity: str, key: PrivateKey, tenants: Sequence[str] | None = None
    ) -> TokenSet:
        return self._run(self.api.login_with_key(identity, key, tenants))

    def refresh(self) -> TokenSet:
        return self._run(self.api.refresh())

    def logout(self) -> None:
        self._run(self.api.logout())

    def whoami(self) -> WhoAmI:
        return self._run(self.api.whoami())

    # --- spans ------------------------------------------------------------------------------------

    def append(self, span: Span, *, wait: Wait = "sequenced") -> Appended:
        return self._run(self.api.append(span, wait))

    def append_batch(self, spans: Sequence[Span], *, wait: Wait = "sequenced") -> list[Appended]:
        return self._run(self.api.append_batch(spans, wait))

    def sign_and_append(self, signer: Signer, kind: str, title: str, payload: Any = None, *,
                        wait: Wait = "sequenced", **fields: Any) -> Appended:  # fmt: skip
        """Sign a span for this client's tenant with `signer` and append it."""
        return self.append(self.api.build_span(signer, kind, title, payload, **fields), wait=wait)

    def append_custodial(self, kind: str, title: str, payload: Any = None, *,
                         wait: Wait = "sequenced", **fields: Any) -> Appended:  # fmt: skip
        return self._run(self.api.append_custodial(kind, title, payload, wait, **fields))

    def get_span(self, span_id: str) -> LoggedSpan:
        return self._run(self.api.get_span(span_id))

    def receipt(self, span_id: str) -> Receipt:
        return self._run(self.api.receipt(span_id))

    def query(self, **filters: Unpack[QueryFilters]) -> Page:
        return self._run(self.api.query(**filters))

    def replay(self, span_id: str, *, wait: Wait = "sequenced") -> Appended:
        return self._run(self.api.replay(span_id, wait))

    def revert(
        self, span_id: str, reason: str | None = None, *, wait: Wait = "sequenced"
    ) -> Appended:
        return self._run(self.api.revert(span_id, reason, wait))

    def redact(
        self, span_id: str, reason: str | None = None, *, wait: Wait = "sequenced"
    ) -> Appended:
        return self._run(self.api.redact(span_id, reason, wait))

    # --- the log ----------------------------------------------------------------------------------

    def log_info(self) -> LogInfo:
        return self._run(self.api.log_info())

    def verify_receipt(self, receipt: Receipt, span: Span | None = None) -> Checkpoint:
        return self._run(self.api.verify_receipt(receipt, span))

    def checkpoint(self, size: int | None = None) -> CheckpointInfo:
        return self._run(self.api.checkpoint(size))

    def inclusion_proof(self, seq: int, size: int | None = None) -> Proof:
        return self._run(self.api.inclusion_proof(seq, size))

    def consistency_proof(self, size1: int, size2: int | None = None) -> Proof:
        return self._run(self.api.consistency_proof(size1, size2))

    def entries(self, start: int, end: int) -> EntryRange:
        return self._run(self.api.entries(start, end))

    # --- identities and accounts ------------------------------------------------------------------

    def identities(self) -> list[IdentityInfo]:
        return self._run(self.api.identities())

    def identity(self, identity: str) -> IdentityInfo:
        return self._run(self.api.identity(identity))

    def register_identity(self, span: Span) -> Appended:
        return self._run(self.api.register_identity(span))

    def grant(self, identity: str, role: str) -> None:
        self._run(self.api.grant(identity, role))

    def create_api_key(
        self, name: str, role: str = "member", identity: str | None = None
    ) -> ApiKeyCreated:
        return self._run(self.api.create_api_key(name, role, identity))

    def onboard(self, identity_span: Span, display_name: str | None = None,
                first_span: Span | None = None) -> Onboarded:  # fmt: skip
        return self._run(self.api.onboard(identity_span, display_name, first_span))

    # --- jobs -------------------------------------------------------------------------------------

    def submit_job(self, type: str, payload: Any = None, **options: Unpack[JobOptions]) -> Job:
        return self._run(self.api.submit_job(type, payload, **options))

    def submit_jobs(self, specs: Sequence[JobSpec | Mapping[str, Any]]) -> list[Job]:
        return self._run(self.api.submit_jobs(specs))

    def get_job(self, job_id: str) -> Job:
        return self._run(self.api.get_job(job_id))

    def jobs(
        self,
        *,
        state: str | Sequence[str] | None = None,
        type: str | None = None,
        queue: str | None = None,
        limit: int | None = None,
        before: str | None = None,
    ) -> JobPage:
        return self._run(self.api.jobs(state, type, queue, limit, before))

    def cancel_job(self, job_id: str) -> Job:
        return self._run(self.api.cancel_job(job_id))

    def retry_job(self, job_id: str) -> Job:
        return self._run(self.api.retry_job(job_id))

    def dead_letters(
        self,
        *,
        type: str | None = None,
        queue: str | None = None,
        limit: int | None = None,
        before: str | None = None,
    ) -> JobPage:
        return self._run(self.api.dead_letters(type, queue, limit, before))

    def requeue_dead_letters(
        self, *, type: str | None = None, queue: str | None = None, ids: Sequence[str] = ()
    ) -> list[Job]:
        return self._run(self.api.requeue_dead_letters(type, queue, ids))

    def purge_dead_letters(
        self, *, type: str | None = None, queue: str | None = None, ids: Sequence[str] = ()
    ) -> list[str]:
        return self._run(self.api.purge_dead_letters(type, queue, ids))

    def register_job_type(self, type: str, schema: Mapping[str, Any]) -> None:
        self._run(self.api.register_job_type(type, schema))

    def job_stats(
        self, *, windows: Sequence[str] = (), type: str | None = None, queue: str | None = None
    ) -> JobStats:
        return self._run(self.api.job_stats(windows, type, queue))

    def job_stats_series(
        self, *, minutes: int | None = None, type: str | None = None, queue: str | None = None
    ) -> list[StatsPoint]:
        return self._run(self.api.job_stats_series(minutes, type, queue))

    # --- rules ------------------------------------------------------------------------------------

    def rules_state(self) -> RuleState:
        return self._run(self.api.rules_state())

    def rule_set(self, version: int) -> RuleSetInfo:
        return self._run(self.api.rule_set(version))

    def publish_rules(self, source: str) -> RuleSetInfo:
        return self._run(self.api.publish_rules(source))

    def disable_rules(self) -> RuleState:
        return self._run(self.api.disable_rules())

    def rollback_rules(self, version: int) -> RuleState:
        return self._run(self.api.rollback_rules(version))

    def dry_run(self, span: Mapping[str, Any] | None = None, *, source: str | None = None,
                last: int | None = None) -> DryRun:  # fmt: skip
        return self._run(self.api.dry_run(span, source=source, last=last))

    def test_rules(self, source: str) -> RulesTest:
        return self._run(self.api.test_rules(source))

    # --- the live stream --------------------------------------------------------------------------

    def subscribe(
        self,
        tenants: Sequence[str] = (),
        *,
        kind: str | None = None,
        cursor: Cursor | str | None = None,
        control: bool = False,
        on_live: Callable[[str], None] | None = None,
        reconnect: RetryPolicy = DEFAULT_RECONNECT,
        read_timeout_s: float = DEFAULT_READ_TIMEOUT_S,
    ) -> Subscription:
        """Follow new spans (from `cursor`, else from now) of `tenants` (default: all the
        credentials allow). Yields `SpanEvent`s, and with `control` also `LiveEvent`,
        `HeartbeatEvent` and `DroppedEvent`; `on_live(cursor)` runs each time it catches up."""
        state = StreamState(tenants, kind, cursor, control=control, on_live=on_live,
                            reconnect=reconnect, read_timeout_s=read_timeout_s)  # fmt: skip
        return Subscription(self._iterate(follow(self.api, state)), state)
