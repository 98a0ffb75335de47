"""The worker node: claims jobs from a LogLine server, runs their handlers, reports outcomes.

    registry = load_handlers(["mypkg.tasks"], into=builtin_handlers())
    worker = Worker("http://127.0.0.1:8470", api_key, registry, queues=["default"], concurrency=4)
    asyncio.run(worker.serve())          # until SIGTERM or SIGINT; then it drains and returns

The node talks to the server only (`/v1/nodes/...`, an API key of role `node`):

1. claim up to `concurrency - running` jobs, long-polling `wait_s` when there are none;
2. run each job's handler (`logline.engine.handlers.invoke`) with the job's `timeout_s`;
   a timeout is a retryable failure, "timed out after N s";
3. meanwhile renew the job's lease every `lease_s / 3`; a heartbeat that reports
   `cancel_requested` cancels the handler's context, and the attempt is then reported as
   cancelled however the handler ends; a heartbeat refused with 409 means the lease is lost (the
   server gave the job to another attempt): the handler is told to stop and nothing is reported;
4. report `complete` with the result, or `fail` with the exception's message on one line —
   retryable unless it is a `PermanentError`, the job type has no handler, or the result is not
   JSON. Reports are retried with backoff on 5xx, 429 and connection failures.

Shutdown (SIGTERM, or SIGINT): stop claiming, let running jobs finish for up to `grace_s`, then
report those still running as failed, retryable, "worker shutting down", and return. A second
signal ends the grace period at once.

Execution is **at least once**. A node that dies (kill -9, lost network) stops renewing; when its
lease expires the server counts the attempt as failed and retries the job, possibly on another
node, although the first may have done the work. A handler that runs past its lease without a
heartbeat getting through is in the same position. Make handlers with effects idempotent (the
job id is a good idempotency key). Sync handlers cannot be interrupted: after a timeout or a
shutdown their thread runs on until it returns (`abandoned` counts them).
"""

from __future__ import annotations

import asyncio
import logging
import random
import signal
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import httpx

from logline import __version__
from logline.canonical import canonicalize
from logline.client.errors import (
    ApiConflict,
    ApiError,
    ApiInvalidInput,
    ApiRateLimited,
    ConnectionFailed,
    error_for,
)
from logline.client.retry import RetryPolicy
from logline.client.transport import failure
from logline.engine.handlers import (
    HandlerRegistry,
    JobCancelled,
    JobContext,
    PermanentError,
    invoke,
)
from logline.engine.jobs import DEFAULT_QUEUE, MAX_ERROR_CHARS, MAX_RESULT_BYTES
from logline.errors import InvalidInput, LogLineError

log = logging.getLogger("logline.worker")

REQUEST_TIMEOUT_S = 10.0
REPORT_FOR_S = 120.0  # how long a report is retried before the outcome is given up
AFTER_GRACE_S = 10.0  # after the grace period: time for the "shutting down" reports to land
SHUTTING_DOWN = "worker shutting down"
BACKOFF = RetryPolicy(base_s=0.5, cap_s=15.0)


def one_line_error(exc: BaseException) -> str:
    """What a failed attempt records: the message on one line, prefixed with the exception's type
    unless the type adds nothing (plain `Exception`, `RuntimeError`, the handler signals)."""
    message = " ".join(str(exc).split())
    if type(exc) in (Exception, RuntimeError, PermanentError, JobCancelled):
        return message or type(exc).__name__
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__


def transient(exc: LogLineError) -> bool:
    """Worth trying again: no response, a 5xx, or a rate limit."""
    if isinstance(exc, ConnectionFailed | ApiRateLimited):
        return True
    return isinstance(exc, ApiError) and exc.status >= 500


class NodeApi:
    """The server's node routes over httpx; the one place httpx errors and problem responses
    become LogLine errors (`ConnectionFailed`, `ApiError` subclasses)."""

    def __init__(
        self,
        server_url: str,
        api_key: str,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.http = httpx.AsyncClient(
            base_url=server_url.rstrip("/"),
            headers={"X-API-Key": api_key, "User-Agent": f"logline-worker/{__version__}"},
            timeout=REQUEST_TIMEOUT_S,
            transport=transport,
        )

    async def request(
        self, method: str, path: str, body: Any = None, *, timeout_s: float | None = None
    ) -> Any:
        timeout = httpx.Timeout(REQUEST_TIMEOUT_S, read=timeout_s or REQUEST_TIMEOUT_S)
        try:
            response = await self.http.request(method, path, json=body, timeout=timeout)
        except httpx.HTTPError as exc:
            raise failure(exc) from exc
        if not response.is_success:
            headers = {name.lower(): value for name, value in response.headers.items()}
            raise error_for(response.status_code, headers, response.content)
        return response.json() if response.content else None

    async def aclose(self) -> None:
        await self.http.aclose()


@dataclass(frozen=True, slots=True)
class Outcome:
    """How an attempt ended: `result` when `error` is None."""

    result: Any = None
    error: str | None = None
    retryable: bool = True
    cancelled: bool = False


@dataclass
class Running:
    """A job this node holds, and what its heartbeats learned."""

    job: dict[str, Any]
    ctx: JobContext
    abandon: asyncio.Event = field(default_factory=asyncio.Event)  # the grace period is over
    cancel_requested: bool = False
    lease_lost: bool = False

    @property
    def id(self) -> str:
        return str(self.job["id"])

    def lease(self, **more: Any) -> dict[str, Any]:
        return {"tenant": self.job["tenant"], "attempt": self.job["attempts"], **more}


class Worker:
    """One node process: up to `concurrency` jobs at a time from `queues`."""

    def __init__(
        self,
        server_url: str,
        api_key: str,
        registry: HandlerRegistry,
        *,
        queues: Sequence[str] = (DEFAULT_QUEUE,),
        concurrency: int = 4,
        lease_s: float = 30.0,
        wait_s: float = 5.0,
        grace_s: float = 30.0,
        transport: httpx.AsyncBaseTransport | None = None,
        rng: random.Random | None = None,
    ) -> None:
        if concurrency < 1:
            raise InvalidInput("concurrency must be at least 1")
        if not 1 <= lease_s <= 3600:
            raise InvalidInput("lease_s must be between 1 and 3600 seconds")
        self.api = NodeApi(server_url, api_key, transport=transport)
        self.registry = registry
        self.queues = list(queues) or [DEFAULT_QUEUE]
        self.concurrency = concurrency
        self.lease_s = lease_s
        self.wait_s = wait_s
        self.grace_s = grace_s
        self.rng = rng or random.Random()
        self.identity = "?"
        self.running: dict[str, Running] = {}
        self.counts = {"succeeded": 0, "failed": 0, "cancelled": 0, "lost": 0}
        self._abandoned: list[JobContext] = []  # handlers given up on (timeout, shutdown)
        self._tasks: set[asyncio.Task[None]] = set()
        self._stopping = asyncio.Event()
        self._forced = asyncio.Event()
        self._wake = asyncio.Event()  # a slot freed up, or stopping
        self._pool: ThreadPoolExecutor | None = None
        self._fatal: LogLineError | None = None  # why claiming stopped, if not stop()

    @property
    def abandoned(self) -> int:
        """Handlers given up on that are still running: sync ones ignoring cancellation."""
        self._abandoned = [ctx for ctx in self._abandoned if not ctx.returned]
        return len(self._abandoned)

    # --- life cycle -------------------------------------------------------------------------------

    def stop(self) -> None:
        """Stop claiming and drain; called again, end the grace period now. Call on the loop."""
        if self._stopping.is_set():
            self._forced.set()
        self._stopping.set()
        self._wake.set()

    async def serve(self, *, handle_signals: bool = True) -> None:
        """Run until `stop()` (or SIGTERM/SIGINT with `handle_signals`), then drain and return.
        A claim refused for good (a rejected key: `Unauthenticated`, `Forbidden`) is raised once
        the running jobs are drained."""
        loop = asyncio.get_running_loop()
        signals = (signal.SIGTERM, signal.SIGINT) if handle_signals else ()
        for sig in signals:
            loop.add_signal_handler(sig, self._signalled, sig)
        # A thread per job slot. A sync handler abandoned after a timeout keeps its thread until
        # it returns, so a later sync job may queue for one (its timeout counting).
        self._pool = ThreadPoolExecutor(self.concurrency, thread_name_prefix="logline-job")
        try:
            whoami = await self._whoami()
            if whoami is None:
                return  # stopped before the server answered
            self.identity = str(whoami["identity"])
            log.info(
                "worker started: %s serving queues %s with %s",
                self.identity, ",".join(self.queues), ",".join(self.registry.names()),
                extra={"node": self.identity, "queues": self.queues},
            )  # fmt: skip
            await self._claim_loop()
            await self._drain()
            if self._fatal is not None:
                raise self._fatal
        finally:
            for sig in signals:
                loop.remove_signal_handler(sig)
            self._pool.shutdown(wait=False, cancel_futures=True)
            await self.api.aclose()
        log.info("worker stopped", extra={"node": self.identity, **self.counts})

    async def _whoami(self) -> Any:
        """Who the key is: checks it before any claim, waiting for a server that is not up yet."""
        failures = 0
        while not self._stopping.is_set():
            try:
                return await self.api.request("GET", "/v1/auth/whoami")
            except LogLineError as exc:
                if not transient(exc):
                    raise
                delay = self._backoff(exc, failures)
                failures += 1
                log.warning("server not reachable (%s); retrying in %.1f s", exc, delay)
                await self._pause(delay)
        return None

    def _signalled(self, sig: int) -> None:
        name = signal.Signals(sig).name
        if self._stopping.is_set():
            log.warning("%s again: ending the grace period now", name)
        else:
            log.info(
                "%s: no more claims; draining %d running job(s) for up to %g s",
                name, len(self.running), self.grace_s,
            )  # fmt: skip
        self.stop()

    async def _claim_loop(self) -> None:
        failures = 0
        while not self._stopping.is_set():
            free = self.concurrency - len(self.running)
            if free <= 0:
                self._wake.clear()
                await self._wake.wait()
                continue
            try:
                # Not interrupted by stop(): jobs the server claims for an abandoned request
                # would be lost until their leases expire. It returns within wait_s.
                reply = await self.api.request(
                    "POST",
                    "/v1/nodes/claim",
                    {"queues": self.queues, "limit": free, "lease_s": self.lease_s,
                     "wait_s": self.wait_s, "types": self.registry.names()},
                    timeout_s=self.wait_s + REQUEST_TIMEOUT_S,
                )  # fmt: skip
            except LogLineError as exc:
                if not transient(exc):
                    # A revoked key, a key that is not a node's, a refused option: retrying
                    # cannot help. Drain what runs, then fail loudly.
                    log.error("claim refused: %s", exc)
                    self._fatal = exc
                    self.stop()
                    break
                delay = self._backoff(exc, failures)
                failures += 1
                log.warning("claim failed (%s); retrying in %.1f s", exc, delay)
                await self._pause(delay)
                continue
            failures = 0
            for job in reply["jobs"]:
                self._start(job)

    async def _pause(self, seconds: float) -> None:
        """Sleep, but wake for stop()."""
        try:
            await asyncio.wait_for(self._stopping.wait(), seconds)
        except TimeoutError:
            pass

    def _backoff(self, exc: LogLineError, attempt: int) -> float:
        delay = BACKOFF.backoff(attempt, self.rng)
        if isinstance(exc, ApiRateLimited):
            delay = max(delay, float(exc.retry_after))
        return delay

    async def _drain(self) -> None:
        """Wait for running jobs up to the grace period (or a second signal), then make the
        rest report "worker shutting down" and give those reports a little more time."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.grace_s
        while self._tasks and not self._forced.is_set():
            self._wake.clear()  # set when a job finishes, and by a second stop()
            try:
                await asyncio.wait_for(self._wake.wait(), deadline - loop.time())
            except TimeoutError:
                break
        for running in list(self.running.values()):
            running.abandon.set()
        if self._tasks:
            _, pending = await asyncio.wait(set(self._tasks), timeout=AFTER_GRACE_S)
            for task in pending:
                task.cancel()

    # --- one job ----------------------------------------------------------------------------------

    def _start(self, job: dict[str, Any]) -> None:
        ctx = JobContext(
            job_id=str(job["id"]),
            tenant=str(job["tenant"]),
            type=str(job["type"]),
            attempt=int(job["attempts"]),
            timeout_s=float(job["timeout_s"]),
        )
        running = Running(job, ctx)
        self.running[running.id] = running
        task = asyncio.create_task(self._run(running), name=f"job-{running.id}")
        self._tasks.add(task)

        def finished(task: asyncio.Task[None]) -> None:
            self._tasks.discard(task)
            self.running.pop(running.id, None)
            self._wake.set()
            if not task.cancelled() and task.exception() is not None:
                log.error("job %s: %s", running.id, task.exception(), extra=self._about(running))

        task.add_done_callback(finished)

    async def _run(self, running: Running) -> None:
        ctx = running.ctx
        ctx.logger.debug("started")
        beat = asyncio.create_task(self._heartbeats(running))
        try:
            outcome = await self._attempt(running)
            if running.lease_lost:
                self.counts["lost"] += 1
                log.warning(
                    "job %s: lease lost; its outcome is not reported (another attempt owns it)",
                    running.id, extra=self._about(running),
                )  # fmt: skip
                return
            if running.cancel_requested:
                outcome = Outcome(
                    error=outcome.error or "cancelled on request", retryable=False, cancelled=True
                )
            await self._report(running, outcome)
        finally:
            beat.cancel()

    async def _attempt(self, running: Running) -> Outcome:
        ctx = running.ctx
        handler = asyncio.ensure_future(
            invoke(self.registry.get(ctx.type), ctx, running.job.get("payload"), self._pool)
        )
        abandon = asyncio.create_task(running.abandon.wait())
        try:
            await asyncio.wait({handler, abandon}, timeout=ctx.remaining_s,
                               return_when=asyncio.FIRST_COMPLETED)  # fmt: skip
        finally:
            abandon.cancel()
        if not handler.done():
            ctx.cancel()  # cooperative handlers stop; a sync one's thread may run on
            handler.cancel()
            handler.add_done_callback(_retrieve)
            self._abandoned.append(ctx)
            if running.abandon.is_set():
                return Outcome(error=SHUTTING_DOWN)
            return Outcome(error=f"timed out after {ctx.timeout_s:g} s")
        try:
            result = handler.result()
        except PermanentError as exc:
            return Outcome(error=one_line_error(exc), retryable=False)
        except Exception as exc:  # any failure of user code is the attempt's failure
            return Outcome(error=one_line_error(exc))
        try:
            size = len(canonicalize(result))
        except InvalidInput as exc:
            return Outcome(error=f"the result is not JSON: {exc}", retryable=False)
        if size > MAX_RESULT_BYTES:
            return Outcome(error=f"the result is {size} bytes; at most {MAX_RESULT_BYTES}",
                           retryable=False)  # fmt: skip
        return Outcome(result=result)

    async def _heartbeats(self, running: Running) -> None:
        interval = self.lease_s / 3
        while True:
            await asyncio.sleep(interval)
            try:
                reply = await self.api.request(
                    "POST",
                    f"/v1/nodes/jobs/{running.id}/heartbeat",
                    running.lease(lease_s=self.lease_s),
                    timeout_s=max(1.0, interval),
                )
            except ApiConflict:
                running.lease_lost = True
                running.ctx.cancel()
                return
            except LogLineError as exc:
                # The next beat may get through before the lease runs out.
                log.warning("job %s: heartbeat failed: %s", running.id, exc,
                            extra=self._about(running))  # fmt: skip
                continue
            if reply.get("cancel_requested") and not running.cancel_requested:
                running.cancel_requested = True
                running.ctx.logger.info("cancellation requested")
                running.ctx.cancel()

    async def _report(self, running: Running, outcome: Outcome) -> None:
        if outcome.error is None:
            path, body = "complete", running.lease(result=outcome.result)
        else:
            # Trimmed here: the server keeps MAX_ERROR_CHARS and refuses much longer errors.
            error = outcome.error[:MAX_ERROR_CHARS]
            path = "fail"
            body = running.lease(
                error=error, retryable=outcome.retryable, cancelled=outcome.cancelled
            )
        try:
            reply = await self._retrying(f"/v1/nodes/jobs/{running.id}/{path}", body)
        except ApiInvalidInput as exc:
            if path != "complete":
                raise
            # The server refused the result itself (too large, say): that is a failure too.
            await self._report(running, Outcome(error=f"result refused: {exc}", retryable=False))
            return
        except ApiConflict as exc:
            self.counts["lost"] += 1
            log.warning("job %s: outcome not recorded: %s", running.id, exc,
                        extra=self._about(running))  # fmt: skip
            return
        state = str(reply.get("state"))
        key = "succeeded" if state == "succeeded" else (
            "cancelled" if state == "cancelled" else "failed")  # fmt: skip
        self.counts[key] += 1
        running.ctx.logger.info(
            "%s → %s%s", running.ctx.type, state, f" ({outcome.error})" if outcome.error else ""
        )

    async def _retrying(self, path: str, body: dict[str, Any]) -> Any:
        """POST until answered; transient failures are retried for up to REPORT_FOR_S."""
        give_up = time.monotonic() + REPORT_FOR_S
        attempt = 0
        while True:
            try:
                return await self.api.request("POST", path, body)
            except LogLineError as exc:
                delay = self._backoff(exc, attempt)
                if not transient(exc) or time.monotonic() + delay > give_up:
                    raise
                log.warning("%s failed (%s); retrying in %.1f s", path, exc, delay)
                await asyncio.sleep(delay)
                attempt += 1

    def _about(self, running: Running) -> dict[str, Any]:
        return {"job": running.id, "tenant": running.ctx.tenant, "type": running.ctx.type,
                "attempt": running.ctx.attempt}  # fmt: skip


def _retrieve(future: asyncio.Future[Any]) -> None:
    # An abandoned handler's outcome was reported already; retrieving its exception keeps
    # asyncio from logging it as never retrieved.
    if not future.cancelled():
        future.exception()
