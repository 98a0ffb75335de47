"""The worker node: claims jobs from a LogLine server, runs their handlers, reports outcomes.

    registry = load_handlers(["mypkg.tasks"], into=builtin_handlers())
    worker = Worker("http://127.0.0.1:8470", api_key, registry, queues=["default"], concurrency=4,
                    labels={"zone": "eu-1"})
    asyncio.run(worker.serve())          # until SIGTERM or SIGINT; then it drains and returns

The node talks to the server only (`/v1/nodes/...`, an API key of role `node`):

0. register (`/v1/nodes/register`: labels, queues, job types, concurrency, version, host, pid),
   waiting for a server that is not up yet; then heartbeat every `heartbeat_s` the server asks
   for, with the number of jobs running (and, once stopping, that it drains). A heartbeat
   refused with 409 means another process registered with the same key since: this one stops
   heartbeating (the registry shows the other) but goes on running jobs;
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

Shutdown (SIGTERM, or SIGINT): report draining, stop claiming, let running jobs finish for up to
`grace_s`, then report those still running as failed, retryable, "worker shutting down",
deregister (offline), and return. A second signal ends the grace period at once.

Execution is **at least once**. A node that dies (kill -9, lost network) stops renewing; when its
lease expires the server counts the attempt as failed and retries the job, possibly on another
node, although the first may have done the work. A handler that runs past its lease without a
heartbeat getting through is in the same position. Make handlers with effects idempotent (the
job id is a good idempotency key). Sync handlers cannot be interrupted: after a timeout or a
shutdown their thread runs on until it returns (`abandoned` counts them).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import random
import signal
import socket
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
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
    ApiNotFound,
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
from logline.engine.nodes import check_labels
from logline.errors import InvalidInput, LogLineError

log = logging.getLogger("logline.worker")

REQUEST_TIMEOUT_S = 10.0
MAX_REPORTS = 100  # the most outcomes one request carries (the server's limit)
REPORT_FOR_S = 120.0  # how long a report is retried before the outcome is given up
DEREGISTER_FOR_S = 5.0  # at the end of a shutdown: the server may be stopping too
HEARTBEAT_S = 5.0  # how often the registry hears from the node, unless the server says
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
        labels: Mapping[str, str] | None = None,
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
        self.labels = check_labels(labels or {})
        self.identity = "?"
        self.session: str | None = None  # of the registration, once registered
        self.heartbeat_s = HEARTBEAT_S
        self.running: dict[str, Running] = {}
        self.counts = {"succeeded": 0, "failed": 0, "cancelled": 0, "lost": 0}
        self._abandoned: list[JobContext] = []  # handlers given up on (timeout, shutdown)
        self._tasks: set[asyncio.Task[None]] = set()
        self._stopping = asyncio.Event()
        self._forced = asyncio.Event()
        self._wake = asyncio.Event()  # a slot freed up, or stopping
        self._pool: ThreadPoolExecutor | None = None
        self._fatal: LogLineError | None = None  # why claiming stopped, if not stop()
        self._reports = ReportBatcher(self._send_reports)

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
            whoami = await self._until_answered("GET", "/v1/auth/whoami")
            if whoami is None or not await self._register():
                return  # stopped before the server answered
            self.identity = str(whoami["identity"])
            log.info(
                "worker started: %s serving queues %s with %s",
                self.identity, ",".join(self.queues), ",".join(self.registry.names()),
                extra={"node": self.identity, "queues": self.queues, "labels": self.labels,
                       "session": self.session},
            )  # fmt: skip
            beats = asyncio.create_task(self._node_beats(), name="node-heartbeats")
            try:
                await self._claim_loop()
                await self._drain()
            finally:
                beats.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await beats
            await self._deregister()
            if self._fatal is not None:
                raise self._fatal
        finally:
            for sig in signals:
                loop.remove_signal_handler(sig)
            self._pool.shutdown(wait=False, cancel_futures=True)
            await self.api.aclose()
        log.info("worker stopped", extra={"node": self.identity, **self.counts})

    async def _until_answered(self, method: str, path: str, body: Any = None) -> Any:
        """The answer, waiting for a server that is not up yet (None if stopped meanwhile): who
        the key is, checked before any claim, and the node's registration."""
        failures = 0
        while not self._stopping.is_set():
            try:
                return await self.api.request(method, path, body)
            except LogLineError as exc:
                if not transient(exc):
                    raise
                delay = self._backoff(exc, failures)
                failures += 1
                log.warning("server not reachable (%s); retrying in %.1f s", exc, delay)
                await self._pause(delay)
        return None

    # --- the node registry ------------------------------------------------------------------------

    def _registration(self) -> dict[str, Any]:
        return {"labels": self.labels, "queues": self.queues, "types": self.registry.names(),
                "concurrency": self.concurrency, "version": __version__,
                "host": socket.gethostname()[:255], "pid": os.getpid()}  # fmt: skip

    def _registered(self, reply: Any) -> None:
        self.session = str(reply["session"])
        self.heartbeat_s = float(reply.get("heartbeat_s") or HEARTBEAT_S)

    async def _register(self) -> bool:
        """Register (a new session); False if stopped before the server answered."""
        reply = await self._until_answered("POST", "/v1/nodes/register", self._registration())
        if reply is None:
            return False
        self._registered(reply)
        return True

    async def _node_beats(self) -> None:
        """Tell the registry the node is alive and how busy; once stopping, that it drains
        (at once, then every `heartbeat_s` until the drain is over)."""
        while True:
            if self._stopping.is_set():
                await asyncio.sleep(self.heartbeat_s)
            else:
                await self._pause(self.heartbeat_s)
            body = {"session": self.session, "running": len(self.running),
                    "draining": self._stopping.is_set()}  # fmt: skip
            try:
                await self.api.request("POST", "/v1/nodes/heartbeat", body,
                                       timeout_s=max(1.0, self.heartbeat_s))  # fmt: skip
            except ApiConflict as exc:
                log.error("node heartbeats stop: %s (another process uses this node's key?)", exc)
                return
            except ApiNotFound:
                # The server has no record of this node (a new database?): register again.
                try:
                    self._registered(await self.api.request(
                        "POST", "/v1/nodes/register", self._registration()))  # fmt: skip
                except LogLineError as exc:
                    log.warning("registering again failed: %s", exc)
            except LogLineError as exc:
                log.warning("node heartbeat failed: %s", exc)

    async def _deregister(self) -> None:
        """The end of a graceful stop: the registry shows the node offline. Best effort: if the
        server does not answer in time, it marks the node lost later."""
        if self.session is None:
            return
        try:
            # Unreachable, the server is likely stopping too (`logline up` stops its node so).
            await self._retrying("/v1/nodes/deregister", {"session": self.session},
                                 for_s=DEREGISTER_FOR_S, retry_unreachable=False)  # fmt: skip
        except ConnectionFailed as exc:
            log.info("not deregistered (%s): the server will mark the node lost", exc)
        except LogLineError as exc:
            log.warning("could not deregister: %s", exc)

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
        item = {"job_id": running.id, **running.lease()}
        if outcome.error is None:
            item |= {"outcome": "succeeded", "result": outcome.result}
        else:
            # Trimmed here: the server keeps MAX_ERROR_CHARS and refuses much longer errors.
            item |= {
                "outcome": "cancelled" if outcome.cancelled else "failed",
                "error": outcome.error[:MAX_ERROR_CHARS],
                "retryable": outcome.retryable,
            }
        try:
            state = await self._reports.send(item)
        except ApiInvalidInput as exc:
            if outcome.error is not None:
                raise
            # The server refused the result itself (too large, say): that is a failure too.
            await self._report(running, Outcome(error=f"result refused: {exc}", retryable=False))
            return
        except ApiConflict as exc:
            self.counts["lost"] += 1
            log.warning("job %s: outcome not recorded: %s", running.id, exc,
                        extra=self._about(running))  # fmt: skip
            return
        key = "succeeded" if state == "succeeded" else (
            "cancelled" if state == "cancelled" else "failed")  # fmt: skip
        self.counts[key] += 1
        running.ctx.logger.info(
            "%s → %s%s", running.ctx.type, state, f" ({outcome.error})" if outcome.error else ""
        )

    async def _send_reports(self, items: list[dict[str, Any]]) -> list[str | LogLineError]:
        """One `POST /v1/nodes/reports`: per item, the job's new state or why it was refused.
        A batch refused as a whole (one bad result spoils it) is sent again one by one, so
        that only the bad item fails."""
        try:
            reply = await self._retrying("/v1/nodes/reports", {"reports": items})
        except ApiInvalidInput:
            if len(items) == 1:
                raise
            out: list[str | LogLineError] = []
            for item in items:
                try:
                    out += await self._send_reports([item])
                except ApiInvalidInput as exc:
                    out.append(exc)
            return out
        return [
            str(result["state"]) if result.get("problem") is None else _refusal(result["problem"])
            for result in reply["results"]
        ]

    async def _retrying(
        self,
        path: str,
        body: dict[str, Any],
        *,
        for_s: float = REPORT_FOR_S,
        retry_unreachable: bool = True,
    ) -> Any:
        """POST until answered; transient failures are retried for up to `for_s` (but not
        a server that cannot be reached, unless `retry_unreachable`)."""
        give_up = time.monotonic() + for_s
        attempt = 0
        while True:
            try:
                return await self.api.request("POST", path, body)
            except LogLineError as exc:
                delay = self._backoff(exc, attempt)
                unreachable = isinstance(exc, ConnectionFailed)
                if (
                    not transient(exc)
                    or (unreachable and not retry_unreachable)
                    or time.monotonic() + delay > give_up
                ):
                    raise
                log.warning("%s failed (%s); retrying in %.1f s", path, exc, delay)
                await asyncio.sleep(delay)
                attempt += 1

    def _about(self, running: Running) -> dict[str, Any]:
        return {"job": running.id, "tenant": running.ctx.tenant, "type": running.ctx.type,
                "attempt": running.ctx.attempt}  # fmt: skip


def _refusal(problem: dict[str, Any]) -> LogLineError:
    """The error an item's problem (a batch answer's) stands for, as if it were the answer."""
    return error_for(int(problem.get("status", 400)), {}, json.dumps(problem).encode())


class ReportBatcher:
    """Coalesces the reports of attempts that end close together into one request: while a
    batch is on its way, the next one gathers (up to `MAX_REPORTS`). An idle node's report goes
    out at once, alone."""

    def __init__(
        self, send: Callable[[list[dict[str, Any]]], Awaitable[list[str | LogLineError]]]
    ) -> None:
        self._send = send
        self._waiting: list[tuple[dict[str, Any], asyncio.Future[str]]] = []
        self._task: asyncio.Task[None] | None = None

    async def send(self, item: dict[str, Any]) -> str:
        """The job's state once the report is recorded; raises the error that refused it."""
        future: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._waiting.append((item, future))
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="node-reports")
        return await future

    async def _run(self) -> None:
        try:
            while self._waiting:
                batch = self._waiting[:MAX_REPORTS]
                del self._waiting[:MAX_REPORTS]
                try:
                    results = await self._send([item for item, _ in batch])
                except Exception as exc:  # every report of the batch failed the same way
                    results = [exc if isinstance(exc, LogLineError) else LogLineError(str(exc))]
                    results *= len(batch)
                for (_, future), result in zip(batch, results, strict=True):
                    if future.done():
                        continue
                    if isinstance(result, LogLineError):
                        future.set_exception(result)
                    else:
                        future.set_result(result)
        finally:
            self._task = None


def _retrieve(future: asyncio.Future[Any]) -> None:
    # An abandoned handler's outcome was reported already; retrieving its exception keeps
    # asyncio from logging it as never retrieved.
    if not future.cancelled():
        future.exception()
