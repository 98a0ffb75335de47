"""`AsyncClient`: the SDK over `httpx.AsyncClient` (asyncio or trio, through anyio).

    async with AsyncClient("http://127.0.0.1:8470", tenant="acme") as client:
        await client.login_with_key(signer.identity, signer.key)
        appended = await client.sign_and_append(signer, "payment.approved", "Approve invoice 42")
        async with client.subscribe(cursor=saved_cursor) as events:
            async for event in events:
                ...

The methods mirror `Client` one for one and run the same `Api` operations; only carrying out
their actions (send, sleep, read the stream) is asynchronous here.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Callable, Mapping, Sequence
from random import Random
from types import TracebackType
from typing import Any, TypeVar, Unpack

import anyio
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
        self.chunks: AsyncGenerator[bytes, None] | None = None

    async def hold(self, response: httpx.Response) -> None:
        await self.close()
        self.response = response
        self.chunks = response.aiter_bytes()  # type: ignore[assignment]

    async def read(self) -> bytes:
        if self.chunks is None:
            return b""
        return await anext(self.chunks, b"")

    async def close(self) -> None:
        response, self.response, self.chunks = self.response, None, None
        if response is not None:
            with anyio.CancelScope(shield=True):  # closing must finish even when cancelled
                await response.aclose()


class AsyncSubscription:
    """`async for` stream events; resumes by itself. `cursor` is where it would resume."""

    def __init__(self, events: AsyncGenerator[StreamEvent, None], state: StreamState) -> None:
        self._events = events
        self.state = state

    @property
    def cursor(self) -> str:
        return str(self.state.cursor)

    @property
    def live(self) -> bool:
        """True once caught up on the current connection."""
        return self.state.live

    def __aiter__(self) -> AsyncSubscription:
        return self

    async def __anext__(self) -> StreamEvent:
        return await anext(self._events)

    async def aclose(self) -> None:
        await self._events.aclose()

    async def __aenter__(self) -> AsyncSubscription:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


class AsyncClient:
    """An asynchronous LogLine client for one tenant (`tenant` may be changed between calls)."""

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
        transport: httpx.AsyncBaseTransport | None = None,
        rng: Random | None = None,
    ) -> None:
        self.api = Api(tenant, token=token, refresh_token=refresh_token, api_key=api_key,
                       log_key=log_key, retry=retry, on_retry=on_retry, rng=rng)  # fmt: skip
        self._http = httpx.AsyncClient(
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

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    # --- running operations -----------------------------------------------------------------------

    async def _run(self, op: Operation[T]) -> T:
        result: list[T] = []
        events = self._iterate(capture(op, result))
        try:
            async for _ in events:
                raise RuntimeError("an operation emitted stream events outside a subscription")
        finally:
            await events.aclose()
        return result[0]

    async def _iterate(self, op: Operation[None]) -> AsyncGenerator[StreamEvent, None]:
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
                    reply = await self._perform(action, held)
                except httpx.HTTPError as exc:
                    failed = wire.failure(exc)
        finally:
            await held.close()
            op.close()

    async def _perform(self, action: Request | Sleep | Read | Close, held: _Held) -> Reply:
        if isinstance(action, Sleep):
            await anyio.sleep(action.seconds)
            return None
        if isinstance(action, Read):
            return await held.read()
        if isinstance(action, Close):
            await held.close()
            return None
        request = wire.build(self._http, action)
        response = await self._http.send(request, stream=action.stream)
        if not action.stream:
            return wire.response_of(response)
        if response.is_success:
            await held.hold(response)
            return wire.response_of(response, b"")
        try:
            await response.aread()
        finally:
            await response.aclose()
        return wire.response_of(response)

    # --- auth -------------------------------------------------------------------------------------

    async def login(
        self, username: str, password: str, tenants: Sequence[str] | None = None
    ) -> TokenSet:
        return await self._run(self.api.login(username, password, tenants))

    async def login_with_key(
        self, identity: str, key: PrivateKey, tenants: Sequence[str] | None = None
    ) -> TokenSet:
        return await self._run(self.api.login_with_key(identity, key, tenants))

    async def refresh(self) -> TokenSet:
        return await self._run(self.api.refresh())

    async def logout(self) -> None:
        await self._run(self.api.logout())

    async def whoami(self) -> WhoAmI:
        return await self._run(self.api.whoami())

    # --- spans ------------------------------------------------------------------------------------

    async def append(self, span: Span, *, wait: Wait = "sequenced") -> Appended:
        return await self._run(self.api.append(span, wait))

    async def append_batch(
        self, spans: Sequence[Span], *, wait: Wait = "sequenced"
    ) -> list[Appended]:
        return await self._run(self.api.append_batch(spans, wait))

    async def sign_and_append(self, signer: Signer, kind: str, title: str, payload: Any = None,
                              *, wait: Wait = "sequenced", **fields: Any) -> Appended:  # fmt: skip
        """Sign a span for this client's tenant with `signer` and append it."""
        return await self.append(
            self.api.build_span(signer, kind, title, payload, **fields), wait=wait
        )

    async def append_custodial(self, kind: str, title: str, payload: Any = None, *,
                               wait: Wait = "sequenced", **fields: Any) -> Appended:  # fmt: skip
        return await self._run(self.api.append_custodial(kind, title, payload, wait, **fields))

    async def get_span(self, span_id: str) -> LoggedSpan:
        return await self._run(self.api.get_span(span_id))

    async def receipt(self, span_id: str) -> Receipt:
        return await self._run(self.api.receipt(span_id))

    async def query(self, **filters: Unpack[QueryFilters]) -> Page:
        return await self._run(self.api.query(**filters))

    async def replay(self, span_id: str, *, wait: Wait = "sequenced") -> Appended:
        return await self._run(self.api.replay(span_id, wait))

    async def revert(
        self, span_id: str, reason: str | None = None, *, wait: Wait = "sequenced"
    ) -> Appended:
        return await self._run(self.api.revert(span_id, reason, wait))

    async def redact(
        self, span_id: str, reason: str | None = None, *, wait: Wait = "sequenced"
    ) -> Appended:
        return await self._run(self.api.redact(span_id, reason, wait))

    # --- the log ----------------------------------------------------------------------------------

    async def log_info(self) -> LogInfo:
        return await self._run(self.api.log_info())

    async def verify_receipt(self, receipt: Receipt, span: Span | None = None) -> Checkpoint:
        return await self._run(self.api.verify_receipt(receipt, span))

    async def checkpoint(self, size: int | None = None) -> CheckpointInfo:
        return await self._run(self.api.checkpoint(size))

    async def inclusion_proof(self, seq: int, size: int | None = None) -> Proof:
        return await self._run(self.api.inclusion_proof(seq, size))

    async def consistency_proof(self, size1: int, size2: int | None = None) -> Proof:
        return await self._run(self.api.consistency_proof(size1, size2))

    async def entries(self, start: int, end: int) -> EntryRange:
        return await self._run(self.api.entries(start, end))

    # --- identities and accounts ------------------------------------------------------------------

    async def identities(self) -> list[IdentityInfo]:
        return await self._run(self.api.identities())

    async def identity(self, identity: str) -> IdentityInfo:
        return await self._run(self.api.identity(identity))

    async def register_identity(self, span: Span) -> Appended:
        return await self._run(self.api.register_identity(span))

    async def grant(self, identity: str, role: str) -> None:
        await self._run(self.api.grant(identity, role))

    async def create_api_key(
        self, name: str, role: str = "member", identity: str | None = None
    ) -> ApiKeyCreated:
        return await self._run(self.api.create_api_key(name, role, identity))

    async def onboard(self, identity_span: Span, display_name: str | None = None,
                      first_span: Span | None = None) -> Onboarded:  # fmt: skip
        return await self._run(self.api.onboard(identity_span, display_name, first_span))

    # --- jobs -------------------------------------------------------------------------------------

    async def submit_job(
        self, type: str, payload: Any = None, **options: Unpack[JobOptions]
    ) -> Job:
        return await self._run(self.api.submit_job(type, payload, **options))

    async def submit_jobs(self, specs: Sequence[JobSpec | Mapping[str, Any]]) -> list[Job]:
        return await self._run(self.api.submit_jobs(specs))

    async def get_job(self, job_id: str) -> Job:
        return await self._run(self.api.get_job(job_id))

    async def jobs(
        self,
        *,
        state: str | Sequence[str] | None = None,
        type: str | None = None,
        queue: str | None = None,
        limit: int | None = None,
        before: str | None = None,
    ) -> JobPage:
        return await self._run(self.api.jobs(state, type, queue, limit, before))

    async def cancel_job(self, job_id: str) -> Job:
        return await self._run(self.api.cancel_job(job_id))

    async def retry_job(self, job_id: str) -> Job:
        return await self._run(self.api.retry_job(job_id))

    async def dead_letters(
        self,
        *,
        type: str | None = None,
        queue: str | None = None,
        limit: int | None = None,
        before: str | None = None,
    ) -> JobPage:
        return await self._run(self.api.dead_letters(type, queue, limit, before))

    async def requeue_dead_letters(
        self, *, type: str | None = None, queue: str | None = None, ids: Sequence[str] = ()
    ) -> list[Job]:
        return await self._run(self.api.requeue_dead_letters(type, queue, ids))

    async def purge_dead_letters(
        self, *, type: str | None = None, queue: str | None = None, ids: Sequence[str] = ()
    ) -> list[str]:
        return await self._run(self.api.purge_dead_letters(type, queue, ids))

    async def register_job_type(self, type: str, schema: Mapping[str, Any]) -> None:
        await self._run(self.api.register_job_type(type, schema))

    async def job_stats(
        self, *, windows: Sequence[str] = (), type: str | None = None, queue: str | None = None
    ) -> JobStats:
        return await self._run(self.api.job_stats(windows, type, queue))

    async def job_stats_series(
        self, *, minutes: int | None = None, type: str | None = None, queue: str | None = None
    ) -> list[StatsPoint]:
        return await self._run(self.api.job_stats_series(minutes, type, queue))

    # --- rules ------------------------------------------------------------------------------------

    async def rules_state(self) -> RuleState:
        return await self._run(self.api.rules_state())

    async def rule_set(self, version: int) -> RuleSetInfo:
        return await self._run(self.api.rule_set(version))

    async def publish_rules(self, source: str) -> RuleSetInfo:
        return await self._run(self.api.publish_rules(source))

    async def disable_rules(self) -> RuleState:
        return await self._run(self.api.disable_rules())

    async def rollback_rules(self, version: int) -> RuleState:
        return await self._run(self.api.rollback_rules(version))

    async def dry_run(self, span: Mapping[str, Any] | None = None, *, source: str | None = None,
                last: int | None = None) -> DryRun:  # fmt: skip
        return await self._run(self.api.dry_run(span, source=source, last=last))

    async def test_rules(self, source: str) -> RulesTest:
        return await self._run(self.api.test_rules(source))

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
    ) -> AsyncSubscription:
        """Follow new spans (from `cursor`, else from now) of `tenants` (default: all the
        credentials allow), with `async with` and `async for`. Yields `SpanEvent`s, and with
        `control` also `LiveEvent`, `HeartbeatEvent` and `DroppedEvent`; `on_live(cursor)` runs
        each time it catches up."""
        state = StreamState(tenants, kind, cursor, control=control, on_live=on_live,
                            reconnect=reconnect, read_timeout_s=read_timeout_s)  # fmt: skip
        return AsyncSubscription(self._iterate(follow(self.api, state)), state)
